"""The captions OCR reads, kept in the feature cache: the same pictures are read only once.

They live in CACHE/features.sqlite3 beside the features (features/store.py, `TextStore`: the
same checksums, and the same locking, so predict.py runs writing at once are safe), one space
per engine: `ocr/{engine}-{h}`, where h hashes `ocr.engine_identity` (the engine, its packages'
versions, its weights, its device kind and the code of ocr.py) and how an image file decodes
(features.cache.IMAGE_DECODING). Another engine, package version, weights file or option is
another space, so a caption read before is never served for it. The key is the image's key in
the feature cache (api.open_keyed): the sha256 of the image file's bytes (a path, or the bytes
of a file), or of the pixels for a picture given in memory. An entry whose checksum fails is
reported and read again.

An engine without an identity (an object handed to MemeClassifier that has no `identity`)
is never cached: nothing says when its captions would change. Without a cache folder nothing
is cached either.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

from PIL import Image

from ..features.cache import IMAGE_DECODING
from ..features.store import FILENAME, TextStore

# Captions are stored every so many images: a run killed in the middle of a large batch keeps
# what it read. A transaction costs milliseconds, an image's OCR about a second on the CPU.
FLUSH_IMAGES = 8


def space(identity: str) -> str:
    """`ocr/{engine}-{h}`: h hashes the engine's identity and the image decoding."""
    h = hashlib.sha256()
    for part in (identity.encode(), IMAGE_DECODING.encode()):
        h.update(len(part).to_bytes(8, "little") + part)
    engine = re.sub(r"[^A-Za-z0-9._-]+", "_", identity.split(":")[0]).strip("_")[:32]
    return f"ocr/{engine}-{h.hexdigest()[:16]}"


@contextlib.contextmanager
def open_cache(cache_dir: str | os.PathLike | None,
               identity: str | None) -> Iterator[TextStore | None]:
    """The captions of the engine `identity` under `cache_dir`; None when either is None."""
    if not cache_dir or identity is None:
        yield None
        return
    with TextStore(Path(cache_dir) / FILENAME, space(identity)) as store:
        yield store


def lookup(cache_dir: str | os.PathLike | None, identity: str | None,
           keys: Sequence[str | None]) -> dict[str, str]:
    """The cached captions of `keys` (None keys are never cached)."""
    wanted = [k for k in keys if k is not None]
    with open_cache(cache_dir, identity) as store:
        return store.read(wanted) if store is not None and wanted else {}


def read_captions(pictures: Sequence[Image.Image], keys: Sequence[str | None],
                  cache_dir: str | os.PathLike | None, identity: str | None,
                  load: Callable[[], object]) -> list[str]:
    """One caption per picture: from the cache when the engine `identity` has read a picture
    of the same key before, else read by the engine that `load()` returns (called only then)
    and stored under the loaded engine's own identity. A key given twice is read once; a None
    key is read every time and not stored."""
    if len(keys) != len(pictures):
        raise ValueError(f"{len(pictures)} pictures but {len(keys)} keys")
    found = lookup(cache_dir, identity, keys)
    todo, seen = [], set()
    for i, key in enumerate(keys):
        if key is None or (key not in found and key not in seen):
            todo.append(i)
            seen.add(key)
    read: dict[int, str] = {}
    if todo:
        engine = load()
        own = getattr(engine, "identity", None)
        if own != identity:
            # The engine loaded is not the one guessed before loading (another device than
            # asked for, say): entries are read and written under its own identity.
            found.update(lookup(cache_dir, own, [keys[i] for i in todo]))
            todo = [i for i in todo if keys[i] is None or keys[i] not in found]
        with open_cache(cache_dir, own) as store:
            for start in range(0, len(todo), FLUSH_IMAGES):
                batch = todo[start:start + FLUSH_IMAGES]
                texts = list(engine.read([pictures[i] for i in batch]))
                if len(texts) != len(batch):
                    raise RuntimeError(f"OCR engine {getattr(engine, 'name', engine)!r} read "
                                       f"{len(texts)} captions for {len(batch)} pictures")
                read.update(zip(batch, texts))
                if store is not None:
                    new = {keys[i]: text for i, text in zip(batch, texts) if keys[i] is not None}
                    if new:
                        store.write(new)
    by_key = {**found, **{keys[i]: text for i, text in read.items() if keys[i] is not None}}
    return [read[i] if i in read else by_key[key] for i, key in enumerate(keys)]
