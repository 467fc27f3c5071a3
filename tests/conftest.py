import contextlib
import importlib.util
import os
import sys
from pathlib import Path

# OpenBLAS (numpy's and scipy's) runs each call on every core, its threads spinning while they
# wait: the suite's many tiny sklearn fits (Platt maps and TF-IDF models of tens of memes) took
# three to six times as long on a loaded 2-core machine as with one thread. Set before numpy
# loads it, so that it holds here and in every process the tests start (torchrun's ranks,
# mp.spawn's workers, servers); a value already set is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from hateful_memes.data import demo  # noqa: E402
from hateful_memes.data.annotations import Meme  # noqa: E402


def labelled_meme(i, text, hateful, pc=(), attack=()) -> Meme:
    """A train meme: not hateful (the empty labels), or hateful with these pc and attack labels."""
    if not hateful:
        return Meme(id=i, img=f"img/{i}.png", text=text, gold_hate=("not_hateful",),
                    gold_pc=("pc_empty",), gold_attack=("attack_empty",))
    return Meme(id=i, img=f"img/{i}.png", text=text, gold_hate=("hateful",), gold_pc=pc,
                gold_attack=attack)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    # The tests' tensors are tiny: a second thread only adds contention, and on a shared
    # machine OpenMP's spin-waiting made small steps up to ten times slower. Session-wide, so
    # that module fixtures run with the same thread count as the tests comparing against them
    # (float sums, hence bit-exact results, depend on it).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A tiny generated demo set (annotations/ and img/), shared by the end-to-end tests."""
    root = tmp_path_factory.mktemp("demo")
    demo.generate(root, n=40, seed=0, image_size=96)
    return root


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


# The organisers' annotation files live beside the repository, never in it (data/README.md);
# WOAH2021_ANNOTATIONS names another folder (e.g. for a git worktree, whose ../shared differs).
SHARED_ANNOTATIONS = Path(os.environ.get("WOAH2021_ANNOTATIONS") or (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "woah2021" / "annotations"))
SHARED_FILES = ("train.json", "dev_seen.json", "test.jsonl")


def in_ci() -> bool:
    """CI sets CI (GitHub Actions, GitLab, ... set CI=true); "", "0" and "false" do not count."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def require_annotations(folder: Path = SHARED_ANNOTATIONS) -> Path:
    """`folder` when it holds the organisers' files; otherwise skip the test, saying where the
    files come from, or, under CI, fail it, so that CI can never pass by skipping them."""
    missing = [name for name in SHARED_FILES if not (folder / name).is_file()]
    if missing:
        reason = (f"needs the organisers' annotation files {', '.join(missing)} in {folder} "
                  f"(they come from github.com/facebookresearch/fine_grained_hateful_memes; "
                  f"see data/README.md)")
        if in_ci():
            pytest.fail(f"CI is set, so a missing data set fails instead of skipping: {reason}",
                        pytrace=False)
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="session")
def real_annotations() -> Path:
    """The folder of the organisers' train.json, dev_seen.json and test.jsonl (see
    require_annotations for what happens when it is absent)."""
    return require_annotations()


@pytest.fixture(scope="session")
def tiny_runs(demo_data, feature_cache, tmp_path_factory):
    """A Task A and a Task B run trained briefly on `demo_data` (the API's and service's tests)."""
    from hateful_memes.cli import train

    root = tmp_path_factory.mktemp("tiny_runs")
    ann = demo_data / "annotations"
    for task in ("A", "B"):
        assert train.main(["--task", task, "--train", str(ann / "train.json"),
                           "--dev", str(ann / "dev.json"), "--epochs", "3", "--hidden", "32",
                           "--folds", "2", "--cache-dir", str(feature_cache),
                           "--out", str(root / task), "--quiet"]) == 0
    return root


@pytest.fixture(scope="session")
def text_only_run(demo_data, feature_cache, tmp_path_factory):
    """A Task B run trained with --image-encoder none (what a user without the meme images
    trains), shared by the API's and the service's tests, which each trained the same one."""
    from hateful_memes.cli import train

    ann, out = demo_data / "annotations", tmp_path_factory.mktemp("text_only") / "B"
    assert train.main(["--task", "B", "--train", str(ann / "train.json"), "--dev",
                       str(ann / "dev.json"), "--epochs", "1", "--hidden", "16", "--folds", "2",
                       "--image-encoder", "none", "--cache-dir", str(feature_cache),
                       "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def classifier(tiny_runs):
    """Both tiny runs with the real OCR engine (loaded at the first meme without a caption)."""
    from hateful_memes import MemeClassifier

    return MemeClassifier.load(tiny_runs / "A", tiny_runs / "B", device="cpu")


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@contextlib.contextmanager
def experiment_script(name: str):
    """experiments/NAME.py as a module (the scripts are no package), registered in sys.modules
    while in use: a dataclass looks its module up there, and a script imports its siblings."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


def spawn_and_join(worker, args: tuple, seconds: float, nprocs: int = 2) -> None:
    """`worker(rank, *args)` in `nprocs` spawned processes, joined within `seconds`: a failing
    worker's exception is raised here, and a rank still waiting at the deadline (for one that
    failed) fails the test instead of hanging it; any process left is killed."""
    import time

    import torch.multiprocessing as mp

    context = mp.spawn(worker, args=args, nprocs=nprocs, join=False)
    deadline = time.monotonic() + seconds
    try:
        while not context.join(timeout=1):  # raises what a worker raised
            assert time.monotonic() < deadline, "a rank is still waiting for the failed one"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()


def rewrite_after_hashing(monkeypatch, image: Path) -> None:
    """features.cache.file_digest, patched to rewrite `image` (a PNG of other pixels) once it
    has hashed it: the file changes between the feature cache's lookup and its decode."""
    from PIL import Image

    from hateful_memes.features import cache as features

    digest = features.file_digest

    def hashed_then_rewritten(path):
        key = digest(path)
        if Path(path).resolve() == image.resolve():
            Image.new("RGB", (50, 50), (255, 0, 0)).save(image, format="PNG")
        return key

    monkeypatch.setattr(features, "file_digest", hashed_then_rewritten)
