"""Fault injection for the train -> predict path: `train.py` is SIGKILLed at seeded random
points (while features are computed and cached, while it trains, in the middle of writing a
file, and just before or after a file is renamed into place), then run again as a user would:
with --resume when the folder holds a resumable run, else with --overwrite. Every time:

- no output file is ever half-written: every .json/.jsonl/.yaml/.pt/.npz/.png present reads;
  a half-written file only ever exists under a temp name (".NAME.*.tmp");
- the feature cache never serves a wrong vector: every cached row equals the features of the
  image its key names, computed afresh without the cache;
- the finished run (resumed or started clean) ends with the checkpoint of an uninterrupted run,
  bit for bit, and predict.py writes the same submission from it.

A SIGKILL runs no cleanup, so this is about what is on disk at any instant, not about error
handling. The data and the encoder (timm's test_efficientnet) are tiny, and the killed
processes are forked from one that has done the imports, so each case costs about a run.
"""
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image

from hateful_memes.cli import predict, train
from hateful_memes.data import demo
from hateful_memes.features import store as feature_store
from hateful_memes.features.cache import file_digest, image_features
from hateful_memes.models.encoders import create_image_encoder
from hateful_memes.runtime import checkpoints

ROOT = Path(__file__).resolve().parents[1]

# A process that imports train.py's dependencies once and then, for each request on stdin,
# forks a child that arms one fault and runs train.main: each killed run then costs its own
# work, not the seconds of importing torch, timm and sklearn again. The parent runs no torch
# operation, so no thread pool exists to be broken by fork.
ZYGOTE = textwrap.dedent("""
    import json, os, signal, sys, threading, traceback
    import torch
    torch.set_num_threads(1)
    from hateful_memes.cli import train

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def arm(mode, k):
        calls = [0]
        if mode in ("before_rename", "after_rename"):
            real_replace = os.replace

            def replace(src, dst):
                calls[0] += 1
                if calls[0] == k and mode == "before_rename":
                    die()
                real_replace(src, dst)
                if calls[0] == k:
                    die()
            os.replace = replace
        elif mode == "mid_write":
            real_fdopen = os.fdopen

            class HalfThenDie:
                def __init__(self, f):
                    self._f = f

                def write(self, data):
                    self._f.write(data[: max(1, len(data) // 2)])
                    self._f.flush()
                    os.fsync(self._f.fileno())
                    die()

                def __getattr__(self, name):
                    return getattr(self._f, name)

                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    return self._f.__exit__(*exc)

            def fdopen(*args, **kwargs):
                f = real_fdopen(*args, **kwargs)
                calls[0] += 1
                return HalfThenDie(f) if calls[0] == k else f
            os.fdopen = fdopen
        elif mode == "timer":
            threading.Timer(k, die).start()

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(log, 1)
                os.dup2(log, 2)
                arm(request["mode"], request["k"])
                code = train.main(request["argv"])
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                          "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}),
              flush=True)
""")


@pytest.fixture(scope="module")
def zygote():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run_killed(mode: str, k: float, argv: list[str], log: Path) -> dict:
        proc.stdin.write(json.dumps({"mode": mode, "k": k, "argv": argv, "log": str(log)}) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line, f"the forking process died; see {log}"
        return json.loads(line)

    yield run_killed
    proc.stdin.close()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    data = root / "data"
    demo.generate(data, n=30, seed=3, image_size=32)
    torch.manual_seed(0)
    weights = root / "encoder.pt"
    torch.save(timm.create_model("test_efficientnet", num_classes=0).state_dict(), weights)
    spec = f"timm:test_efficientnet={weights}"
    return root, data, spec


def _argv(data, spec, cache, out):
    ann = data / "annotations"
    return ["--task", "A", "--train", str(ann / "train.json"), "--dev", str(ann / "dev.json"),
            "--image-encoder", spec, "--text-encoder", "none", "--epochs", "3",
            "--batch-size", "4", "--hidden", "8", "--device", "cpu", "--cache-dir", str(cache),
            "--out", str(out), "--quiet"]


@pytest.fixture(scope="module")
def reference(setup):
    """An uninterrupted run: its checkpoint and its submission for the demo test split."""
    root, data, spec = setup
    out = root / "reference"
    assert train.main(_argv(data, spec, root / "ref_cache", out)) == 0
    sub = root / "reference.jsonl"
    assert predict.main(["--run", str(out), "--input", str(data / "annotations" / "test.jsonl"),
                         "--out", str(sub), "--cache-dir", str(root / "ref_cache"),
                         "--quiet"]) == 0
    return checkpoints.load(out / "checkpoint.pt"), sub.read_bytes()


def _check_every_file_reads(folder: Path) -> None:
    """Every file present is whole; anything else may only be a temp of atomic writes."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.name
        if name.startswith(".") and name.endswith(".tmp"):
            continue  # a temp that a killed writer left: never read by anything
        if "tb" in path.relative_to(folder).parts:
            continue  # TensorBoard's event logs are append-only records, read by TensorBoard
        suffix = path.suffix
        if suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines()]
        elif suffix == ".yaml":
            assert isinstance(yaml.safe_load(path.read_text()), dict), path
        elif suffix == ".pt":
            checkpoints.load(path)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}  # every array reads whole
                if "keys" in arrays:  # a feature-cache shard
                    assert len(arrays["keys"]) == len(arrays["vectors"]), path
        elif suffix == ".png":
            with Image.open(path) as image:
                image.load()
        elif suffix == ".md":
            path.read_text()
        elif name.startswith(feature_store.FILENAME):  # the store, its WAL and shared memory
            continue  # SQLite's own journal keeps it whole; _check_cache reads every row
        else:
            raise AssertionError(f"unexpected file {path}")


@pytest.fixture(scope="module")
def fresh(setup) -> dict[str, np.ndarray]:
    """{image digest: its features computed without any cache}."""
    root, data, spec = setup
    paths = sorted((data / "img").glob("*.png"))
    rows = image_features(create_image_encoder(spec), paths, cache_dir=None, progress=False)
    return {file_digest(p): row for p, row in zip(paths, rows)}


def _check_cache(cache: Path, fresh: dict[str, np.ndarray]) -> int:
    """Every cached vector equals the fresh features of the image its key names; returns the
    number of cached rows checked."""
    checked = 0
    path = cache / feature_store.FILENAME
    if not path.is_file():
        return 0  # killed before the store was made
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        if "vectors" not in tables:
            return 0  # killed between creating the file and its table: nothing to serve
        rows = db.execute("SELECT space, key, dtype, shape, value, checksum FROM vectors")
        for space, key, dtype, shape, value, stored in rows:
            if feature_store.checksum(space, key, dtype, shape, value) != stored:
                continue  # a damaged row is detected by the store and never served
            assert key in fresh, f"{path}: a key that is no image's digest"
            row = np.frombuffer(value, dtype=np.dtype(dtype))
            # batches of other sizes may round differently in the last bits
            np.testing.assert_allclose(row, fresh[key], rtol=1e-4, atol=1e-5)
            checked += 1
    return checked


# (mode, k): k counts os.replace calls (renames), os.fdopen calls (files opened for an atomic
# write) or, for "timer", seconds after train.main starts. In an uninterrupted run both counts
# go: 1 config.yaml, 2-3 the feature cache's shards (train, dev), 4 best.pt, then last.pt and
# stats.jsonl for each of 3 epochs (5-10), the two reports of 3 files each (11-16),
# checkpoint.pt (17), summary.json (18).
rng = random.Random(10)
CASES = ([("mid_write", 2), ("after_rename", 2), ("before_rename", 3)]  # caching features
         + [("before_rename", rng.randint(4, 10)), ("mid_write", rng.randint(4, 10))]  # training
         + [("after_rename", rng.randint(11, 18)), ("mid_write", rng.randint(11, 18))]  # writing
         + [("timer", round(rng.uniform(0.2, 3.0), 2))])  # anywhere


@pytest.mark.parametrize("mode,k", CASES)
def test_a_killed_run_resumes_or_restarts_to_the_uninterrupted_result(
        setup, reference, zygote, fresh, tmp_path, mode, k):
    root, data, spec = setup
    cache, out = tmp_path / "cache", tmp_path / "run"
    log = tmp_path / "killed.log"
    status = zygote(mode, k, _argv(data, spec, cache, out), log)
    if mode != "timer":  # a timer may fire after the run ended
        assert status["signal"] == signal.SIGKILL, log.read_text()[-2000:]
    for folder in (out, cache):
        if folder.exists():
            _check_every_file_reads(folder)
    if cache.exists():
        _check_cache(cache, fresh)

    # Run again as a user would: continue what can be continued, else start clean.
    # train.py's 5 folds: --resume needs the first fold's state (later folds start or go on).
    resumable = (out / "config.yaml").is_file() and (out / "fold0" / "last.pt").is_file()
    again = ["--resume"] if resumable else ["--overwrite"]
    assert train.main(_argv(data, spec, cache, out) + again) == 0
    _check_every_file_reads(out)
    assert not [p for p in out.rglob("*.tmp")]
    train_dev = sum(len((data / "annotations" / f).read_text().splitlines())
                    for f in ("train.json", "dev.json"))
    assert _check_cache(cache, fresh) >= train_dev  # every train and dev image, once or more

    expected_ckpt, expected_sub = reference
    ckpt = checkpoints.load(out / "checkpoint.pt")
    assert ckpt["model"].keys() == expected_ckpt["model"].keys()
    for name, tensor in expected_ckpt["model"].items():
        assert torch.equal(ckpt["model"][name], tensor), name
    assert len(ckpt["members"]) == len(expected_ckpt["members"])
    for member, expected in zip(ckpt["members"], expected_ckpt["members"]):
        assert all(torch.equal(member[name], t) for name, t in expected.items())
    assert ckpt["best_epoch"] == expected_ckpt["best_epoch"]
    assert ckpt["thresholds"] == expected_ckpt["thresholds"]
    sub = tmp_path / "sub.jsonl"
    assert predict.main(["--run", str(out), "--input", str(data / "annotations" / "test.jsonl"),
                         "--out", str(sub), "--cache-dir", str(cache), "--quiet"]) == 0
    assert sub.read_bytes() == expected_sub
