"""A command whose reader goes away early (`evaluate.py ... | head -1`) ends quietly.

Python ignores SIGPIPE, so a write to a pipe whose reader has closed raises BrokenPipeError:
without this, `| head` ended in a traceback (and, for output still buffered at exit, in an
"Exception ignored ... BrokenPipeError" line). `quiet_broken_pipe` wraps a command's `main`
the way Python's docs show (signal module, "Note on SIGPIPE"): the error is caught around all
of the command's output, stdout is pointed at devnull so that the flush at interpreter exit
finds nothing to fail on, and the command exits with EXIT_BROKEN_PIPE.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Callable

# 141 = 128 + SIGPIPE (13), the status a shell reports for a command that SIGPIPE ended
# (`seq 1000000 | head -1; echo ${PIPESTATUS[0]}`). Python's docs exit 1 instead, but here
# 1 means an error of the command's own (bad input), and 0 would claim that the whole output
# was delivered; 141 tells `set -o pipefail` scripts and $PIPESTATUS what happened, as for any
# other program at the head of such a pipe.
EXIT_BROKEN_PIPE = 141


def stdout_to_devnull() -> None:
    """Point stdout at devnull: at the file descriptor where there is one (what is still
    buffered then goes nowhere at exit), else by replacing sys.stdout (an in-memory stream)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        fd = None
    if fd is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def quiet_broken_pipe(main: Callable[..., int]) -> Callable[..., int]:
    """`main(argv) -> int`, returning EXIT_BROKEN_PIPE without a traceback when stdout's
    reader has gone away."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            try:
                code = main(argv)
            except SystemExit:  # argparse's --help and usage errors: their text out first
                sys.stdout.flush()
                raise
            # Inside the try: what is still buffered would otherwise fail at exit.
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            stdout_to_devnull()
            return EXIT_BROKEN_PIPE

    return wrapper
