import pytest

from hateful_memes import demo


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A tiny generated demo set (annotations/ and img/), shared by the end-to-end tests."""
    root = tmp_path_factory.mktemp("demo")
    demo.generate(root, n=40, seed=0, image_size=96)
    return root


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("features")
