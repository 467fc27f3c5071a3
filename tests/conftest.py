import pytest
import torch

from hateful_memes import demo


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


@pytest.fixture(scope="session")
def tiny_runs(demo_data, feature_cache, tmp_path_factory):
    """A Task A and a Task B run trained briefly on `demo_data` (the API's and service's tests)."""
    from hateful_memes import train

    root = tmp_path_factory.mktemp("tiny_runs")
    ann = demo_data / "annotations"
    for task in ("A", "B"):
        assert train.main(["--task", task, "--train", str(ann / "train.json"),
                           "--dev", str(ann / "dev.json"), "--epochs", "3", "--hidden", "32",
                           "--folds", "2", "--cache-dir", str(feature_cache),
                           "--out", str(root / task), "--quiet"]) == 0
    return root


@pytest.fixture(scope="session")
def classifier(tiny_runs):
    """Both tiny runs with the real OCR engine (loaded at the first meme without a caption)."""
    from hateful_memes import MemeClassifier

    return MemeClassifier.load(tiny_runs / "A", tiny_runs / "B", device="cpu")
