"""The feature cache's store: one SQLite file that many processes read and write at once.

CACHE/features.sqlite3 holds one table, `vectors`, keyed by (space, key): `space` names the
encoder, its preprocessing and its weights (features.cache_space), `key` is the sha256 of an
item's content. Each row keeps the float32 bytes with their dtype and shape and a checksum of
all of it, key included, so that a damaged or misplaced value is detected on read, reported,
and recomputed by the caller instead of being served. Damage SQLite itself finds (in its pages,
not in a value), a full disk or a store this user may not write raise StoreError naming the
file and what to do, which is to delete the file only when it is damaged.

Lookups walk the primary key's B-tree, so they cost the keys asked for, not the size of the
cache. Why SQLite rather than LMDB: with 1,000,000 512-d vectors (experiments/RESULTS.md,
"Feature store", on a loaded 2-core VM) it took 2.14 GiB on disk against LMDB's 4.00 GiB (LMDB
gives each 2 KB value its own 4 KB overflow page), looked up 10,000 random keys in 0.31 s
against 0.23 s, and inserted 7,200 vectors/s against 17,300, both far above the 36-44
images/s of the whole image feature path on this machine (RESULTS.md, "Speed"). It also ships
with Python and needs no map size fixed in advance. The shard scan it replaces took 2.7 s for
any lookup in that cache, one key or 10,000.

The database runs in WAL mode: readers never block, and writers (processes, such as torchrun
ranks) take turns, each batch of rows one transaction, waiting up to `timeout` seconds for the
lock. WAL needs a local file system (not NFS), like any SQLite database written by several
processes.

The same table holds texts (TextStore: UTF-8 bytes, dtype "utf-8"), in spaces of their own:
the captions OCR read off images (serving/ocr_cache.py), under the same checksums and locking.

Shard folders of the former layout (CACHE/{image,text}/{spec}-{hash}/*.npz) are migrated: the
first open of a space copies its shards' rows into the store, then deletes the shards and the
emptied folder, so the features computed before are kept and no folder is left to confuse.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
import warnings
import zipfile
from pathlib import Path
from typing import Iterable, Iterator, Self

import numpy as np

FILENAME = "features.sqlite3"
SCHEMA_VERSION = 1
# SQLite's default 4 KB page holds one 2 KB vector and wastes the rest; a 64 KB page packs them:
# 1,000,000 512-d vectors took 3.93 GiB in 4 KB pages, 2.14 GiB in 64 KB pages, and looked up
# faster (experiments/bench_feature_store.py).
PAGE_SIZE = 65536
# Reads through a memory map, as much of the file as SQLite's build allows (2 GiB for Python
# 3.11's): random lookups are faster than through read() calls (experiments/
# bench_feature_store.py --stores sqlite-64k sqlite-64k-read measures both). The price: an I/O
# error on the file kills the process (SIGBUS) instead of raising, acceptable for a cache on a
# local disk.
MMAP_BYTES = 1 << 40
# Keys per SELECT ... IN (...): below SQLite's oldest limit of 999 bound parameters.
LOOKUP_CHUNK = 900
DTYPE = np.dtype("<f4")


class StoreError(RuntimeError):
    """A store file that cannot be used (the message names it and what to do)."""


def _remedy(e: sqlite3.Error) -> str:
    """What to do about SQLite's error `e`, by its result code: deleting the file is the answer
    to a damaged one only, never to a full disk or a folder this user may not write."""
    name = getattr(e, "sqlite_errorname", "")
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return "delete it (and its -wal and -shm files) to start an empty cache"
    if name.startswith("SQLITE_FULL"):
        return "free space on its disk, or use a cache folder on another disk"
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        return ("make its folder and files writable by this user, or use another cache "
                "folder")
    return "see SQLite's message"


def checksum(space: str, key: str, dtype: str, shape: str, value: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in (space.encode(), key.encode(), dtype.encode(), shape.encode(), value):
        h.update(len(part).to_bytes(8, "little") + part)
    return h.digest()


def lookup_sql(n: int) -> str:
    """The query for `n` keys of one space: a search of the primary key's index, not a scan."""
    return ("SELECT key, dtype, shape, value, checksum FROM vectors WHERE space = ? AND key "
            f"IN ({','.join('?' * n)})")


def _retry_busy(fn, timeout: float):
    # Switching to WAL needs the database to itself for a moment, and SQLite reports a clash
    # there at once instead of waiting, so wait here.
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class _Store:
    """The rows of one space in the store at `path`: opening, locking, checksums. Subclasses
    say what a value is (FeatureStore: a float32 vector; TextStore: a text)."""

    # Names the cache in the warning about a damaged entry.
    label = "cache"

    def __init__(self, path: str | Path, space: str, timeout: float = 600.0):
        self.path = Path(path)
        self.space = space
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Autocommit mode: every write below opens its own BEGIN IMMEDIATE transaction.
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open the feature store ({e}); "
                             f"{_remedy(e)}") from None
        try:
            self._setup(timeout)
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise StoreError(f"{self.path}: not a usable feature store ({e}); "
                             f"{_remedy(e)}") from None

    def _setup(self, timeout: float) -> None:
        db = self._db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: feature store schema {version} is newer than this "
                             f"code's {SCHEMA_VERSION}")
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect only on a new file
        mode = _retry_busy(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone()[0], timeout)
        if mode.lower() != "wal":
            raise StoreError(f"{self.path}: cannot switch the feature store to WAL mode "
                             f"(got {mode!r})")
        # A crash may lose the last transactions but never corrupts the file: enough for a cache.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        if version < SCHEMA_VERSION:
            with self._transaction():
                db.execute("CREATE TABLE IF NOT EXISTS vectors (space TEXT NOT NULL, "
                           "key TEXT NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL, "
                           "value BLOB NOT NULL, checksum BLOB NOT NULL, "
                           "PRIMARY KEY (space, key))")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _named(self, doing: str) -> Iterator[None]:
        # Damage deep in the file shows only when a lookup or a write reaches it, and a full
        # disk only at a write: SQLite's own message names neither the file nor the remedy.
        try:
            yield
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: cannot {doing} the feature store ({e}); "
                             f"{_remedy(e)}") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # SQLite rolls back by itself after some errors
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _rows(self, keys: Iterable[str]) -> list[tuple[str, str, str, bytes]]:
        """(key, dtype, shape, value) of the `keys` present whose checksum holds; the others
        are reported as damaged (each key costs an index lookup)."""
        keys = list(dict.fromkeys(keys))
        intact = []
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start:start + LOOKUP_CHUNK]
            with self._named("read"):
                rows = self._db.execute(lookup_sql(len(chunk)), (self.space, *chunk)).fetchall()
            for key, dtype, shape, value, stored in rows:
                if checksum(self.space, key, dtype, shape, value) == stored:
                    intact.append((key, dtype, shape, value))
                else:
                    self._damaged(key, "its checksum does not match")
        return intact

    def _damaged(self, key: str, problem: str) -> None:
        warnings.warn(f"{self.label} {self.path}: entry {self.space}/{key} is damaged "
                      f"({problem}); it will be recomputed", stacklevel=4)

    def _put(self, records: list[tuple[str, str, str, bytes]]) -> None:
        """Store (key, dtype, shape, value) rows in one transaction; a key already there is
        replaced if it differs."""
        rows = [(self.space, key, dtype, shape, value,
                 checksum(self.space, key, dtype, shape, value))
                for key, dtype, shape, value in records]
        # Concurrent writers of one key store the same value: rewriting an identical row
        # would only cost I/O. A row that differs in any column (a damaged value keeps its
        # stored checksum) is replaced, which repairs it.
        with self._named("write to"), self._transaction():
            self._db.executemany(
                "INSERT INTO vectors (space, key, dtype, shape, value, checksum) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (space, key) DO UPDATE SET "
                "dtype = excluded.dtype, shape = excluded.shape, value = excluded.value, "
                "checksum = excluded.checksum WHERE value IS NOT excluded.value "
                "OR checksum IS NOT excluded.checksum OR dtype IS NOT excluded.dtype "
                "OR shape IS NOT excluded.shape", rows)

    def __len__(self) -> int:
        with self._named("read"):
            return self._db.execute("SELECT COUNT(*) FROM vectors WHERE space = ?",
                                    (self.space,)).fetchone()[0]


class FeatureStore(_Store):
    """The vectors of one space (encoder, preprocessing, weights) in the store at `path`."""

    label = "feature cache"

    def __init__(self, path: str | Path, space: str, dim: int, timeout: float = 600.0):
        self.dim = dim
        super().__init__(path, space, timeout)

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of `keys` (those present and intact); each costs an index lookup."""
        found: dict[str, np.ndarray] = {}
        expected_shape = json.dumps([self.dim])
        for key, dtype, shape, value in self._rows(keys):
            if dtype != DTYPE.str or shape != expected_shape:
                self._damaged(key, f"it is {dtype} {shape}, expected {DTYPE.str} "
                              f"{expected_shape}")
                continue
            vector = np.frombuffer(value, dtype=DTYPE)
            if np.isfinite(vector).all():
                found[key] = vector
            else:
                self._damaged(key, "it holds non-finite values")
        return found

    def write(self, rows: dict[str, np.ndarray]) -> None:
        """Store `rows` in one transaction; a key already there is replaced if it differs."""
        shape = json.dumps([self.dim])
        records = []
        for key, vector in rows.items():
            vector = np.ascontiguousarray(vector, dtype=DTYPE)
            if vector.shape != (self.dim,):
                raise ValueError(f"feature store {self.space}: {key} has shape {vector.shape}, "
                                 f"expected ({self.dim},)")
            records.append((key, DTYPE.str, shape, vector.tobytes()))
        self._put(records)


TEXT_DTYPE = "utf-8"


class TextStore(_Store):
    """The texts of one space in the store at `path` (stored as UTF-8, their byte count as
    the shape)."""

    label = "text cache"

    def read(self, keys: Iterable[str]) -> dict[str, str]:
        """The stored texts of `keys` (those present and intact)."""
        found: dict[str, str] = {}
        for key, dtype, shape, value in self._rows(keys):
            if dtype != TEXT_DTYPE or shape != json.dumps([len(value)]):
                self._damaged(key, f"it is {dtype} {shape}, expected {TEXT_DTYPE} "
                              f"[{len(value)}]")
                continue
            try:
                found[key] = value.decode(TEXT_DTYPE)
            except UnicodeDecodeError as e:
                self._damaged(key, f"not UTF-8: {e}")
        return found

    def write(self, rows: dict[str, str]) -> None:
        """Store `rows` in one transaction; a key already there is replaced if it differs."""
        records = []
        for key, text in rows.items():
            if not isinstance(text, str):
                raise TypeError(f"text store {self.space}: {key} is a {type(text).__name__}, "
                                "not a str")
            value = text.encode(TEXT_DTYPE)
            records.append((key, TEXT_DTYPE, json.dumps([len(value)]), value))
        self._put(records)


# --- the former layout: a folder of .npz shards per space -------------------------------------

def read_shard(shard: Path, dim: int) -> tuple[list[str], np.ndarray]:
    """The keys and (len(keys), dim) float32 vectors of one former-layout shard."""
    with np.load(shard, allow_pickle=False) as z:
        keys, vectors = z["keys"], z["vectors"]
    if vectors.dtype != np.float32 or vectors.shape != (len(keys), dim):
        raise ValueError(f"vectors {vectors.dtype} {vectors.shape}, expected float32 "
                         f"({len(keys)}, {dim})")
    if not np.isfinite(vectors).all():
        raise ValueError("non-finite values")
    return keys.tolist(), vectors


def migrate_shards(directory: Path, store: FeatureStore) -> int:
    """Move the rows of `directory`'s shards into `store`; delete the shards, then the folder
    if it is left empty. Returns the number of rows moved."""
    moved = 0
    for shard in sorted(directory.glob("*.npz")):
        try:
            keys, vectors = read_shard(shard, store.dim)
        except FileNotFoundError:
            continue  # another process migrated it first
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            warnings.warn(f"feature cache: {shard} is unreadable ({e}); removing it, its items "
                          "will be recomputed", stacklevel=3)
        else:
            store.write(dict(zip(keys, vectors)))
            moved += len(keys)
        shard.unlink(missing_ok=True)
    for folder in (directory, directory.parent):
        with contextlib.suppress(OSError):  # not empty, or already gone
            folder.rmdir()
    return moved
