"""Reading `.pt` files without ever running what they say.

A `.pt` file is a pickle, and unpickling can call any Python function the file names: a
checkpoint passed around between people is a program. Every checkpoint this project writes
(`checkpoint.pt`, `last.pt`, `best.pt`, Barlow Twins' `checkpoint.pt` and `backbone.pth`) holds
only tensors and plain data (dicts, lists, tuples, strings, numbers, None), so every one is read
with torch's restricted unpickler (`weights_only=True`), which refuses any other global. We chose
that over safetensors + JSON because `last.pt` must also round-trip the optimizer state and the
RNG state, which torch already serialises as plain data; one format keeps one reader.

Any failure, a refused global or a file that is no checkpoint at all, becomes a
`CheckpointError` that names the file and says what is wrong.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A file that cannot be read as a checkpoint ("PATH: what is wrong")."""


def load(path: str | os.PathLike, map_location="cpu", what: str = "checkpoint"):
    """The object saved at `path`, read by torch's restricted unpickler; raise CheckpointError
    naming the file if it is missing, unreadable, not a torch file, or asks to run code."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such {what}")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a {what} file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).split("\n")
        global_ = next((line.strip() for line in lines if "global" in line.lower()), None)
        if global_ is None:  # bytes that are no pickle at all, not a refused function
            raise CheckpointError(f"{path}: not a readable torch {what} (truncated, damaged or "
                                  f"another format; {lines[0][:200]})") from None
        # The restricted unpickler stops at the first global it does not allow, before calling
        # anything: name that global; the rest of torch's message is advice for trusted files.
        raise CheckpointError(
            f"{path}: refused to load this {what}: it holds more than tensors and plain data "
            f"and could run code when read ({global_[:200]}). Checkpoints written by "
            "hateful_memes never do; do not load this file unless you trust who made it.") from None
    except PermissionError:
        raise CheckpointError(f"{path}: no permission to read this {what}") from None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
        detail = f"{type(e).__name__}: {e}".split("\n")[0][:200]
        raise CheckpointError(
            f"{path}: not a readable torch {what} (truncated, damaged or another format; "
            f"{detail})") from None


def load_dict(path: str | os.PathLike, keys: tuple[str, ...], map_location="cpu",
              what: str = "checkpoint") -> dict:
    """`load`, then check that the result is a dict with every one of `keys`."""
    obj = load(path, map_location, what)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a hateful_memes {what} (holds a "
                              f"{type(obj).__name__}, expected a dict)")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: not a hateful_memes {what} (no {', '.join(missing)})")
    return obj
