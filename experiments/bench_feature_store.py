"""The feature cache's store, measured: SQLite (the product's), LMDB, and the former shard scan.

    python experiments/bench_feature_store.py --write        # 1,000,000 vectors in each store
    python experiments/bench_feature_store.py --n 20000 --lookups 1000     # a quick look

For each store: insert `--n` synthetic 512-d float32 vectors under sha256 keys, in batches of
features.FLUSH_ROWS (one transaction, or one shard, each, as the product flushes), then close
it, reopen it and look up `--lookups` keys drawn at random (the best of `--repeats` times,
each on a freshly opened store), checking every vector returned against the one inserted.
Reports insert rate, lookup time and size on disk (allocated blocks). Each store is deleted
before the next one is built, so the disk holds one at a time.

- sqlite-Nk: hateful_memes.features.store.FeatureStore as the cache uses it (WAL,
  memory-mapped reads, checksummed rows), with pages of N KB (the cache's: PAGE_SIZE).
  sqlite-64k-read: the same with reads through read() calls instead of the memory map
  (MMAP_BYTES 0), what store.MMAP_BYTES is chosen against.
- lmdb: the same rows (checksum + float32 bytes) in an LMDB environment, the store the MMF
  features used; durable commits (LMDB's default), one write transaction per batch.
- shards: the cache before the store: one .npz shard per batch, written atomically, and a
  lookup that opens every shard (features.py up to commit 2e95505).

Lookups run on the OS page cache as the inserts left it (this machine has the RAM to hold a
store): they measure the store's work, not the disk's. `--write` puts the table in
experiments/results_feature_store.md, the "Feature store" section of experiments/RESULTS.md.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, load_avg, assemble  # noqa: E402

from hateful_memes.features import store as feature_store  # noqa: E402
from hateful_memes.features.cache import FLUSH_ROWS  # noqa: E402
from hateful_memes.features.store import FeatureStore, checksum, read_shard  # noqa: E402
from hateful_memes.runtime.files import atomic_open, write_text  # noqa: E402

SPACE = "image/bench-0123456789abcdef"
STORES = ("sqlite-4k", "sqlite-8k", "sqlite-16k", "sqlite-32k", "sqlite-64k", "sqlite-64k-read",
          "lmdb", "shards")
DEFAULT_STORES = ("sqlite-4k", "sqlite-8k", "sqlite-16k", "sqlite-64k", "lmdb", "shards")
SECTION = ROOT / "experiments" / "results_feature_store.md"


def keys_for(n: int) -> list[str]:
    return [hashlib.sha256(i.to_bytes(8, "little")).hexdigest() for i in range(n)]


def batch_vectors(batch: int, rows: int, dim: int) -> np.ndarray:
    """The vectors of batch `batch`: regenerated on demand instead of 2 GB held in memory."""
    return np.random.default_rng(batch).standard_normal((rows, dim), dtype=np.float32)


def batches(keys: list[str], dim: int):
    for b, start in enumerate(range(0, len(keys), FLUSH_ROWS)):
        chunk = keys[start:start + FLUSH_ROWS]
        yield chunk, batch_vectors(b, len(chunk), dim)


# --- the stores: open_store(...) -> object with write(rows), read(keys), close() ------------

class Sqlite:
    def __init__(self, folder: Path, dim: int):
        self.store = FeatureStore(folder / feature_store.FILENAME, SPACE, dim)

    def write(self, rows: dict[str, np.ndarray]) -> None:
        self.store.write(rows)

    def read(self, keys: list[str]) -> dict[str, np.ndarray]:
        return self.store.read(keys)

    def close(self) -> None:
        self.store.close()


class Lmdb:
    def __init__(self, folder: Path, dim: int, n: int):
        try:
            import lmdb
        except ImportError:
            others = " ".join(s for s in DEFAULT_STORES if s != "lmdb")
            raise SystemExit("the lmdb row needs the lmdb package: pip install -e '.[bench]' "
                             f"(or leave it out: --stores {others})") from None

        self.dim = dim
        self.shape = f"[{dim}]"
        # The map is a sparse file: room for 3x the vectors costs no disk until written.
        self.env = lmdb.open(str(folder), map_size=max(1 << 30, n * dim * 4 * 3),
                             max_readers=64)

    def write(self, rows: dict[str, np.ndarray]) -> None:
        with self.env.begin(write=True) as txn:
            for key, vector in rows.items():
                value = np.ascontiguousarray(vector, "<f4").tobytes()
                txn.put(f"{SPACE}/{key}".encode(),
                        checksum(SPACE, key, "<f4", self.shape, value) + value)

    def read(self, keys: list[str]) -> dict[str, np.ndarray]:
        found = {}
        with self.env.begin(buffers=False) as txn:
            for key in keys:
                stored = txn.get(f"{SPACE}/{key}".encode())
                if stored is None:
                    continue
                value = stored[16:]
                if checksum(SPACE, key, "<f4", self.shape, value) == stored[:16]:
                    found[key] = np.frombuffer(value, dtype="<f4")
        return found

    def close(self) -> None:
        self.env.close()


class Shards:
    """The former cache: features.py's FeatureStore before the SQLite store."""

    def __init__(self, folder: Path, dim: int):
        self.folder = folder
        self.dim = dim

    def write(self, rows: dict[str, np.ndarray]) -> None:
        name = f"{time.time_ns():016x}-{os.getpid()}.npz"
        with atomic_open(self.folder / name, "wb") as f:
            np.savez(f, keys=np.array(list(rows), dtype="U64"),
                     vectors=np.stack(list(rows.values())).astype(np.float32))

    def read(self, keys: list[str]) -> dict[str, np.ndarray]:
        wanted, found = set(keys), {}
        for shard in sorted(self.folder.glob("*.npz")):
            shard_keys, vectors = read_shard(shard, self.dim)
            for key, row in zip(shard_keys, vectors):
                if key in wanted:
                    found[key] = row
        return found

    def close(self) -> None:
        pass


def open_store(name: str, folder: Path, dim: int, n: int):
    if name.startswith("sqlite"):  # PAGE_SIZE set by the caller
        return Sqlite(folder, dim)
    if name == "lmdb":
        return Lmdb(folder, dim, n)
    return Shards(folder, dim)


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def measure(name: str, folder: Path, keys: list[str], lookups: list[int], dim: int,
            repeats: int) -> dict:
    folder.mkdir(parents=True)
    load_before = load_avg()
    patches = contextlib.ExitStack()
    if name.startswith("sqlite"):  # sqlite-<N>k[-read]
        kb = int(name.split("-")[1][:-1])
        patches.enter_context(_patched(feature_store, "PAGE_SIZE", kb * 1024))
        if name.endswith("-read"):
            patches.enter_context(_patched(feature_store, "MMAP_BYTES", 0))
    with patches:
        store = open_store(name, folder, dim, len(keys))
        insert = 0.0
        for chunk, vectors in batches(keys, dim):
            rows = dict(zip(chunk, vectors))
            t = time.perf_counter()
            store.write(rows)
            insert += time.perf_counter() - t
        store.close()
        asked = [keys[i] for i in lookups]
        lookup = float("inf")
        for _ in range(repeats):  # the best of a few: other jobs share this machine
            t = time.perf_counter()
            store = open_store(name, folder, dim, len(keys))
            found = store.read(asked)
            lookup = min(lookup, time.perf_counter() - t)
            store.close()
    wrong = 0
    by_batch: dict[int, list[int]] = {}
    for i in lookups:
        by_batch.setdefault(i // FLUSH_ROWS, []).append(i)
    for b, ids in by_batch.items():
        rows = min(FLUSH_ROWS, len(keys) - b * FLUSH_ROWS)
        vectors = batch_vectors(b, rows, dim)
        for i in ids:
            got = found.get(keys[i])
            wrong += got is None or not np.array_equal(got, vectors[i - b * FLUSH_ROWS])
    return {"store": name, "n": len(keys), "insert_s": insert, "lookup_s": lookup,
            "lookups": len(lookups), "wrong": wrong, "bytes": disk_bytes(folder),
            "load": f"{load_before} -> {load_avg()}"}


@contextlib.contextmanager
def _patched(module, name: str, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def table(results: list[dict], dim: int) -> list[str]:
    raw = dim * 4
    lines = ["| store | vectors | insert (vectors/s) | lookup of random keys | per key "
             "| size on disk | bytes / vector (raw 4 x dim) | wrong | load avg (1/5/15 min) "
             "before -> after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(
            f"| {r['store']} | {r['n']:,} | {r['n'] / r['insert_s']:,.0f} "
            f"| {r['lookups']:,} in {r['lookup_s']:.3f} s "
            f"| {r['lookup_s'] / r['lookups'] * 1e6:,.0f} us | {r['bytes'] / 2**30:.2f} GiB "
            f"| {r['bytes'] / r['n']:,.0f} ({raw:,}) "
            f"| {r['wrong']} | {r['load']} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="vectors in each store")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--lookups", type=int, default=10_000, help="random keys looked up")
    p.add_argument("--repeats", type=int, default=3,
                   help="lookups timed this many times (each on a freshly opened store); the "
                        "best counts")
    p.add_argument("--stores", nargs="+", choices=STORES, default=list(DEFAULT_STORES))
    p.add_argument("--dir", type=Path, default=None,
                   help="where the stores are built (default: a new folder under $TMPDIR)")
    p.add_argument("--write", action="store_true",
                   help="write the table into experiments/RESULTS.md")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    lookups = rng.choice(args.n, size=min(args.lookups, args.n), replace=False).tolist()
    keys = keys_for(args.n)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    base = Path(tempfile.mkdtemp(prefix="bench_feature_store-", dir=args.dir))
    results = []
    try:
        for name in args.stores:
            print(f"{name}: {args.n:,} vectors ...", file=sys.stderr, flush=True)
            results.append(measure(name, base / name, keys, lookups, args.dim, args.repeats))
            shutil.rmtree(base / name)
            print("\n".join(table(results[-1:], args.dim)[2:]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lines = table(results, args.dim)
    print("\n".join(lines))
    if args.write:
        command = "python experiments/bench_feature_store.py " + shlex.join(argv or sys.argv[1:])
        write_text(SECTION, "\n".join(section(lines, command.strip(), started, args)) + "\n")
        assemble(ROOT / "experiments" / "RESULTS.md")
    return 1 if any(r["wrong"] for r in results) else 0


def section(lines: list[str], command: str, started: str, args) -> list[str]:
    from bench import machine

    return ["## Feature store", "",
            f"Command: `{command}`  ", f"Date: {started}.  ", f"Machine: {machine()}.", "",
            f"{args.n:,} synthetic {args.dim}-d float32 vectors under sha256 keys, inserted in "
            f"batches of {FLUSH_ROWS:,} (one transaction or shard each); then {args.lookups:,} "
            "keys drawn at random looked up in one call on the reopened store (best of "
            f"{args.repeats}, each on a freshly opened store), every vector "
            "returned checked against the one inserted (`wrong`). Size on disk is the blocks "
            "allocated. The lookups ran on a warm OS page cache. The shard scan reads every "
            "shard whatever is asked, so its lookup time is a cost per call, the same for one "
            f"key as for {args.lookups:,}; the stores' grows with the keys asked. The machine "
            "is a "
            "shared VM: "
            "the load average beside each row says how busy it was. The cache uses "
            f"sqlite-{feature_store.PAGE_SIZE // 1024}k.", "", *lines]


if __name__ == "__main__":
    raise SystemExit(main())
