"""The rule for tests that need the organisers' files: skip on a lone clone, fail under CI."""
import os

import pytest

from conftest import SHARED_FILES, in_ci, require_annotations


def test_present_files_are_used(tmp_path):
    for name in SHARED_FILES:
        (tmp_path / name).write_text("{}\n")
    assert require_annotations(tmp_path) == tmp_path


@pytest.mark.parametrize("ci", [None, "", "0", "false", "False"])
def test_absent_files_skip_outside_ci_saying_where_they_come_from(tmp_path, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    (tmp_path / "train.json").write_text("{}\n")
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception) as skip:
        require_annotations(tmp_path)
    reason = str(skip.value)
    assert f"dev_seen.json, test.jsonl in {tmp_path}" in reason
    assert "see data/README.md" in reason and "train.json" not in reason


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_absent_files_fail_under_ci(tmp_path, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="CI is set, so a missing data set fails"):
        require_annotations(tmp_path / "nowhere")


def test_blas_runs_on_the_threads_openblas_num_threads_names():
    """conftest sets OPENBLAS_NUM_THREADS (1 unless given) before numpy loads OpenBLAS: set
    after, it would not hold, and the suite's small fits would spin on every core again."""
    from threadpoolctl import threadpool_info

    import numpy  # noqa: F401  (loaded already; its OpenBLAS too)

    limit = os.environ.get("OPENBLAS_NUM_THREADS")
    assert limit, "conftest.py sets OPENBLAS_NUM_THREADS for the tests"
    pools = [p for p in threadpool_info() if p["internal_api"] == "openblas"]
    assert pools and all(p["num_threads"] <= int(limit) for p in pools), pools
