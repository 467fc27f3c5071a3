"""How a command's `main` ends when it is cut short: one line or none, never a traceback.

A reader that goes away early (`evaluate.py ... | head -1`). Python ignores SIGPIPE, so a write
to a pipe whose reader has closed raises BrokenPipeError: without this, `| head` ended in a
traceback (and, for output still buffered at exit, in an "Exception ignored ...
BrokenPipeError" line). `ends_quietly` catches it around all of the command's output the way
Python's docs show (signal module, "Note on SIGPIPE"), points stdout at devnull so that the
flush at interpreter exit finds nothing to fail on, and exits with EXIT_BROKEN_PIPE.

Ctrl-C. KeyboardInterrupt ended every command in a traceback of wherever it was (a forward
pass, a JSON write); now it is one line, "PROG: interrupted" (once under torchrun, below),
and EXIT_INTERRUPTED. Nothing is left half written by it: outputs are written whole or not at
all (runtime.files), and what resumes picks up where it stopped (train.py and pretrain.py with
--resume, predict.py --images by itself).

Error lines go out through `stderr_line`, whole, so that ranks under torchrun do not interleave
them.

Errors under torchrun. Every rank runs the command and the ranks share one stderr: an error
that all of 8 ranks hit was said 8 times. `error_exit` says a command's error
(`PROG: error: ...`) by this rule, and every rank exits non-zero:

- Raised alike on every rank (marked EVERY_RANK): said once on each machine, by its first
  process (LOCAL_RANK 0; on one machine that is rank 0), as one process says it. These are the
  usage errors (`ArgumentParser`) and the settings checked before the process group exists
  (train.py's flags and --config): they come of the command line and of files, which the
  processes of a machine are given alike. Once the group exists, `distributed.gather` marks an
  error that every rank raised with the same message.
- Raised on some ranks only: said by each of them, naming its rank
  (`PROG: error: rank 3 of 8: ...`).
- Raised only because another rank failed (`distributed.RankFailed`, marked ANOTHER_RANK): not
  said here; the rank that failed says its own. On several machines (torchrun's GROUP_RANK)
  that rank's machine alone would say it, and the others' users would see their job stop
  without a reason: where no rank of this machine failed (marked ANOTHER_MACHINE), its first
  process says once which rank did (`PROG: error: ... failed on rank 9 of 16: ...`), or, when
  a collective broke without saying which, that another rank failed.

`--help` is said as an error raised on every rank is (`ArgumentParser`): it too comes of the
command line, and every rank exits 0. So is Ctrl-C's "interrupted", every rank exiting with
EXIT_INTERRUPTED: torchrun passes the SIGINT it gets on to every rank of its machine (which it
starts in sessions of their own, out of the terminal's reach). A SIGINT sent to one rank alone
(`kill -INT PID`) is told apart where the ranks meet in `distributed.gather`: the ranks that
were not interrupted stop there (RankFailed), and the interrupted one (marked SOME_RANKS) says
`PROG: rank 3 of 8: interrupted`. Interrupted anywhere else, a rank cannot tell whether the
others were too, and leaves it to the first process of its machine, as for Ctrl-C.

Deciding this takes no communication on the way out, which could leave a rank waiting for one
that died: the ranks learn of each other's errors in the collectives they were in anyway
(`distributed.gather`), or the error cannot differ between them. Nor does a rank that says
nothing wait for the one that speaks: it exits about when that one writes its line (they leave
the same collective, or did the same work before there was one), and a process with torch
loaded takes far longer to end than a line takes to be written, so torchrun, which stops the
other processes once one has failed, does not in practice stop the speaker first.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Callable, TypeVar

E = TypeVar("E", bound=BaseException)

# 141 = 128 + SIGPIPE (13), the status a shell reports for a command that SIGPIPE ended
# (`seq 1000000 | head -1; echo ${PIPESTATUS[0]}`). Python's docs exit 1 instead, but here
# 1 means an error of the command's own (bad input), and 0 would claim that the whole output
# was delivered; 141 tells `set -o pipefail` scripts and $PIPESTATUS what happened, as for any
# other program at the head of such a pipe.
EXIT_BROKEN_PIPE = 141
# 130 = 128 + SIGINT (2), what a shell reports for a command stopped by Ctrl-C.
EXIT_INTERRUPTED = 130


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


def ends_quietly(main: Callable[..., int]) -> Callable[..., int]:
    """`main(argv) -> int`, returning EXIT_BROKEN_PIPE without a traceback when stdout's
    reader has gone away, and EXIT_INTERRUPTED with one line on stderr at Ctrl-C."""

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
        except KeyboardInterrupt as e:
            if getattr(e, "raised_on", None) == SOME_RANKS:  # not Ctrl-C: a signal to this rank
                stderr_line(f"{_prog(main)}: rank {os.environ.get('RANK')} of "
                            f"{os.environ.get('WORLD_SIZE')}: interrupted")
            elif _says_for_every_rank():
                stderr_line(f"\n{_prog(main)}: interrupted")
            return EXIT_INTERRUPTED

    return wrapper


# What `raised_on` marks an error with, for `error_exit` (and a KeyboardInterrupt, for
# `ends_quietly`).
EVERY_RANK = "every rank"
ANOTHER_RANK = "another rank"  # ... of this machine, which says it
ANOTHER_MACHINE = "another machine"  # ... or no rank known; this machine's first process says it
SOME_RANKS = "some ranks"  # here, and known not to be on every rank


def raised_on(error: E, where: str) -> E:
    """`error`, marked as raised alike on EVERY_RANK, on SOME_RANKS only, or here only because
    ANOTHER_RANK (of this machine) or a rank on ANOTHER_MACHINE failed."""
    error.raised_on = where
    return error


def error_exit(prog: str, error: BaseException) -> int:
    """`PROG: error: ERROR` on stderr, or not, as this module's rule has it under torchrun;
    the exit status, 1."""
    where = getattr(error, "raised_on", None)
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world in (None, "1"):  # one process
        stderr_line(f"{prog}: error: {error}")
    elif where in (EVERY_RANK, ANOTHER_MACHINE):
        if _says_for_every_rank():
            stderr_line(f"{prog}: error: {error}")
    elif where != ANOTHER_RANK:
        stderr_line(f"{prog}: error: rank {rank} of {world}: {error}")
    return 1


def _says_for_every_rank() -> bool:
    # torchrun sets these before any process group exists; without it this is the one process.
    return os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) == "0"


class ArgumentParser(argparse.ArgumentParser):
    """argparse's, whose usage errors and --help under torchrun are said by one rank
    (EVERY_RANK): they come of the command line, which torchrun gives every rank alike."""

    def error(self, message: str):
        if not _says_for_every_rank():
            self.exit(2)
        super().error(message)

    def print_help(self, file=None) -> None:
        # argparse's --help prints this, then exits 0: on every rank, as it should.
        if _says_for_every_rank():
            super().print_help(file)


def stderr_line(text: str) -> None:
    """`text` and its newline on stderr in one write. print() writes them apart, and stderr is
    unbuffered: under torchrun every rank writes to the same terminal or pipe, and two ranks'
    errors ran into one line ("...imagespretrain.py: error: ...")."""
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


def _prog(main: Callable) -> str:
    # argparse's own default prog: the script as the user ran it (train.py).
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else main.__name__
