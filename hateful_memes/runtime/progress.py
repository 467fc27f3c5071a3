"""Progress for people: a tqdm bar on a terminal, plain periodic log lines anywhere else.

A bar redrawn with carriage returns is noise in a CI log or a file that `nohup` writes, so when
stderr is not a terminal `bar` returns `LogProgress`, which takes the same calls (iteration,
`update`, `set_postfix`, `close`, use as a context manager) and prints one line every
`every` seconds and one at the end ("done", or "stopped at" where an error ends its block). A
bar that tqdm would erase when done (`leave=False`: an epoch, a scoring pass) prints its
closing line only if it had printed one on its way: a job of many short epochs otherwise logged
a line for each (300 for `make demo`).
"""
from __future__ import annotations

import sys
import time
from typing import Iterable

from tqdm.auto import tqdm

LOG_EVERY = 30.0  # seconds between lines when not on a terminal


def plural(unit: str, n: int | None = None) -> str:
    """`unit` as a count of `n` reads it in a sentence ("90/90 memes", "1 meme", "2
    batches"). tqdm's units are singular ("meme/s"), and its own "it" stays as it is."""
    if n == 1 or unit == "it" or unit.endswith("s"):
        return unit
    # -es after a hiss (batch, box); "epoch" ends in ch without one.
    if unit.endswith(("ch", "sh", "x", "z")) and unit != "epoch":
        return unit + "es"
    return unit + "s"


class LogProgress:
    def __init__(self, iterable: Iterable | None = None, total: int | None = None,
                 desc: str = "", unit: str = "it", disable: bool = False,
                 every: float = LOG_EVERY, file=None, leave: bool = True, **_ignored):
        self.iterable, self.desc, self.unit, self.disable = iterable, desc, unit, disable
        self.leave, self.lines = leave is not False, 0
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.every = total, 0, every
        self.file = file or sys.stderr
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False

    def _line(self, final: bool = False, failed: bool = False) -> None:
        seconds = max(time.monotonic() - self.start, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        extra = f" {self.postfix}" if self.postfix else ""
        state = "stopped at" if failed else "done" if final else "at"
        # Out of a total the count is plural even at 1 ("1/90 memes").
        counted = plural(self.unit, self.n if self.total is None else None)
        print(f"{self.desc}: {state} {self.n}{of} {counted} in {seconds:.0f}s "
              f"({self.n / seconds:.1f} {plural(self.unit)}/s){extra}", file=self.file,
              flush=True)
        self.lines += 1

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self.last >= self.every:
            self.last = now
            self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def close(self) -> None:
        if not self.closed and not self.disable and (self.leave or self.lines):
            self._line(final=True)
        self.closed = True

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and not self.closed:
            # An error (or ^C) ends the block: "done" would read as if the work were finished.
            if not self.disable:
                self._line(final=True, failed=True)
            self.closed = True
        self.close()


def bar(iterable: Iterable | None = None, **kwargs):
    """tqdm(iterable, **kwargs) on a terminal, LogProgress(iterable, **kwargs) otherwise
    (`leave=None`, tqdm's "only when first", counts as leaving the line)."""
    if sys.stderr.isatty():
        return tqdm(iterable, **kwargs)
    disable = kwargs.pop("disable", False)
    return LogProgress(iterable, disable=bool(disable), **kwargs)
