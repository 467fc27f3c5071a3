"""experiments/bench_feature_store.py: without lmdb installed, the way out it suggests runs."""
import sys

import pytest

from conftest import experiment_script


@pytest.fixture
def bench_feature_store():
    with experiment_script("bench_feature_store") as module:
        yield module


def test_without_lmdb_the_suggested_stores_are_accepted(bench_feature_store, tmp_path,
                                                        monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb raises ImportError
    with pytest.raises(SystemExit) as e:
        bench_feature_store.Lmdb(tmp_path, 4, 10)
    message = str(e.value.code)
    assert "pip install -e '.[bench]'" in message
    suggested = message.split("--stores ", 1)[1].rstrip(")").split()
    assert suggested and "lmdb" not in suggested
    assert bench_feature_store.main(["--stores", *suggested, "--n", "20", "--dim", "4",
                                     "--lookups", "5", "--repeats", "1",
                                     "--dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert all(f"| {name} | 20 |" in table for name in suggested)
