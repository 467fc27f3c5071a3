"""Guarding output folders: a finished run is never silently overwritten, and an output that
cannot be written fails before any computing.

A run folder (train.py's `--out`, pretrain.py's `--out`) holds only the files its program
writes, `RunLayout.names`. Starting a run in it is refused when it already holds one of them,
unless the user says `--resume` (continue it) or `--overwrite` (replace it). `--overwrite`
removes only those names (and temps that a killed writer left beside them); a folder that also
holds files the program never writes is refused even then, so that nothing the program did not
make is ever deleted: choose another folder, or move those files out first.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


class RunDirError(ValueError):
    """An output folder that cannot be used as asked (the message names it and says why)."""


@dataclass(frozen=True)
class RunLayout:
    program: str  # "train.py", for messages
    names: frozenset[str]  # every file and folder a run writes at the top of its folder
    resume_needs: tuple[str, ...]  # what --resume reads
    finished: str | None = None  # the file written last, once a run is complete

    def is_temp(self, name: str) -> bool:
        # files.atomic_open's temps are ".NAME.<random>.tmp"; older writers used ".NAME.tmp"
        return (name.startswith(".") and name.endswith(".tmp")
                and any(name.startswith(f".{n}.") for n in self.names))


def _entries(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise RunDirError(f"--out {folder}: is a file, not a folder") from None
    except OSError as e:
        raise RunDirError(f"--out {folder}: cannot list it ({e.strerror})") from None


def _show(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def check(folder: str | os.PathLike, layout: RunLayout, resume: bool = False,
          overwrite: bool = False) -> None:
    """Raise RunDirError unless a run may write `folder` as asked. Reads only; `clear`
    removes an old run once every other up-front check has passed."""
    folder = Path(folder)
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other: continue the run in "
                          f"{folder}, or replace it")
    entries = _entries(folder)
    ours = [e for e in entries if e in layout.names or layout.is_temp(e)]
    foreign = [e for e in entries if e not in ours]
    prog = layout.program
    if resume:
        lacking = [n for n in layout.resume_needs if not (folder / n).is_file()]
        if lacking:
            if not ours:
                what = "is empty" if not entries else f"holds no run of {prog}"
                advice = "start the run without --resume"
            else:
                what = "holds an incomplete run"
                advice = "start it again with --overwrite"
            raise RunDirError(f"--resume: {folder} {what} (no {', '.join(lacking)}), so there "
                              f"is nothing to continue: {advice}")
        return
    if foreign and (ours or overwrite):
        why = "--overwrite deletes only a run's own files, and " if overwrite else ""
        raise RunDirError(
            f"--out {folder}: holds files that {prog} does not write ({_show(foreign)}); "
            f"{why}a run is never mixed with other files: choose another --out or move "
            "those files out")
    if foreign:
        raise RunDirError(
            f"--out {folder}: is not empty ({_show(foreign)}) and holds no run of {prog}; "
            "choose a new or empty folder")
    if ours and not overwrite:
        state = ("a run" if layout.finished is None else
                 "a finished run" if (folder / layout.finished).is_file() else
                 "an unfinished run")
        # A finished run has nothing left to continue: --resume would only redo its last step.
        again = ("it is finished: --resume only redoes its last step" if state == "a finished run"
                 else "pass --resume to continue it")
        raise RunDirError(
            f"--out {folder}: already holds {state} ({_show(ours)}); {again}, --overwrite "
            "deletes it and starts again, or choose another --out")


def clear(folder: str | os.PathLike, layout: RunLayout) -> list[str]:
    """Remove the files and folders a run of `layout` writes (after `check` with
    overwrite=True); return the names removed."""
    folder = Path(folder)
    removed = []
    for name in _entries(folder):
        if name in layout.names or layout.is_temp(name):
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(name)
    return removed


def remove_stale_temps(folder: str | os.PathLike, layout: RunLayout) -> None:
    """Temps that a killed writer left behind (SIGKILL runs no cleanup): on --resume."""
    folder = Path(folder)
    for name in _entries(folder):
        if layout.is_temp(name) and (folder / name).is_file():
            (folder / name).unlink(missing_ok=True)


def check_writable(folder: str | os.PathLike, what: str) -> None:
    """Make `folder` (and its parents) and write a temp file in it, so that an output that
    cannot be written fails now, not after the computing. Write access is tried rather than
    asked (os.access), because permission bits say nothing for root or a read-only mount."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".write-test."):
            pass
    except FileExistsError:
        raise RunDirError(f"{what} {folder}: is a file, not a folder") from None
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno == errno.ENOTDIR:
            reason = "a part of the path is a file, not a folder"
        raise RunDirError(f"{what} {folder}: cannot write there ({reason})") from None


def check_writable_file(path: str | os.PathLike, what: str) -> None:
    """`check_writable` for the folder of an output file, and the path is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise RunDirError(f"{what} {path}: is a folder, expected a file name")
    check_writable(path.parent, what)
