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
