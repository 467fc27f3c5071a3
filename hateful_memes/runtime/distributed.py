"""torch.distributed as the commands use it under torchrun: join the group from the environment
torchrun sets, know this process's rank, and gather a result from every rank so that a failure
on one rank is raised on all of them (with its rank) instead of leaving the others waiting.
What the ranks learn of each other there also decides which of them says the error
(runtime.commands, "Errors under torchrun").

One process without torchrun is rank 0 of 1, and every function here is then a no-op.
"""
from __future__ import annotations

import gc
import os
import re
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from .commands import ANOTHER_MACHINE, ANOTHER_RANK, EVERY_RANK, SOME_RANKS, raised_on

T = TypeVar("T")


class RankFailed(RuntimeError):
    """What another rank raised, re-raised on this one by `gather`: that rank says it."""

    raised_on = ANOTHER_RANK


def init_from_env(device: str = "auto") -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when started by torchrun (NCCL on
    GPUs, each rank on its LOCAL_RANK device; gloo on CPUs)."""
    cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        return dist.get_rank(), dist.get_world_size(), device
    return 0, 1, torch.device("cuda" if cuda else "cpu")


def finish(wait: bool = True) -> None:
    """Leave the process group, once every rank got here (no rank exits while others write).

    `wait=False` leaves at once: for a command whose rank 0 works on alone for longer than a
    collective may wait (NCCL's timeout is minutes), once no rank needs another any more."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            try:
                dist.barrier()
            except RuntimeError:  # a rank already left (gloo: "Connection closed by peer")
                pass
        # A DistributedDataParallel left in a reference cycle (a fit stopped by an exception)
        # must go while the group it holds still exists: freed after it, at exit, it aborts
        # the process ("terminate called without an active exception").
        gc.collect()
        dist.destroy_process_group()


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group (torchrun), (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(compute: Callable[[], T], what: str) -> list[T]:
    """`compute()` on this rank and its result from every rank, in rank order. An exception on
    any rank is raised on every rank (naming the rank), instead of leaving the others waiting
    for a result that never comes: as itself on the ranks that raised it (marked EVERY_RANK
    when that is all of them, with the same message), as RankFailed on the others (marked
    ANOTHER_MACHINE where no rank of this machine failed). A Ctrl-C (KeyboardInterrupt) goes
    round the same way, marked SOME_RANKS where it did not reach every rank. A rank that left
    (died, or was interrupted elsewhere) breaks the collective: RankFailed too, that rank
    unknown. Under NCCL each rank must have set its CUDA device."""
    rank, world = rank_world()
    try:
        value, error = compute(), None
    except (Exception, KeyboardInterrupt) as e:
        value, error = None, e
    gathered: list = [None] * world
    try:
        dist.all_gather_object(gathered, (_message(error), _machine(), value))
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as e:  # gloo's "Connection closed by peer": a rank left (died, or was
        if error is not None:  # interrupted outside a collective), and which is not known
            raise error from None
        detail = re.sub(r"^\[[^\]]*\] ", "", str(e).split("\n")[0])[:200]
        raise raised_on(RankFailed(f"{what}: another rank failed ({detail})"),
                        ANOTHER_MACHINE) from None
    failed = {other: message for other, (message, _, _) in enumerate(gathered)
              if message is not None}
    if error is not None:
        if len(failed) == world and len(set(failed.values())) == 1:
            raised_on(error, EVERY_RANK)
        elif isinstance(error, KeyboardInterrupt):
            raised_on(error, SOME_RANKS)
        raise error
    if failed:
        other = min(failed)
        here = any(gathered[r][1] == _machine() for r in failed)
        raise raised_on(RankFailed(f"{what} failed on rank {other} of {world}: {failed[other]}"),
                        ANOTHER_RANK if here else ANOTHER_MACHINE)
    return [v for _, _, v in gathered]


def _message(error: BaseException | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return f"{type(error).__name__}: {error}"


def _machine() -> str:
    """This process's machine: torchrun's GROUP_RANK (one agent a machine, the one whose
    LOCAL_RANK 0 says what its ranks have to say), "0" without torchrun."""
    return os.environ.get("GROUP_RANK", "0")


def on_all(compute: Callable[[], T], what: str) -> T:
    """`compute()` here; under torchrun a failure on any rank is raised on every rank
    (`gather`), so that none waits forever for the others. Only the failures travel: the
    result stays on its rank (a model, a list of memes)."""
    if rank_world()[1] == 1:
        return compute()
    mine: list = []
    gather(lambda: mine.append(compute()), what)
    return mine[0]
