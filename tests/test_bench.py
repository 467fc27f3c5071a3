"""experiments/bench.py: a smoke run (--quick) leaves the committed results alone."""
import pytest

from conftest import experiment_script


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """bench with its work folder in tmp_path, its rows and section faked, and every write of
    a section or RESULTS.md recorded instead of done (the default paths are the committed
    files)."""
    with experiment_script("bench") as module:
        monkeypatch.setattr(module, "WORK", tmp_path / "work")
        monkeypatch.setattr(module, "bench_baseline", lambda system, data: {"system": system})
        monkeypatch.setattr(module, "quality_section", lambda *a: "## Quality\n")
        module.written = []
        monkeypatch.setattr(module, "write_text", lambda path, text: module.written.append(path))
        monkeypatch.setattr(module, "assemble", lambda path: module.written.append(path))
        yield module


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "annotations"
    folder.mkdir()
    for name in ("train.json", "dev_seen.json", "test.jsonl"):
        (folder / name).write_text("")
    return folder


def test_a_smoke_run_writes_under_the_ignored_quick_folder_and_says_so(bench, data, capsys):
    assert bench.main(["--quick", "--rows", "prior", "--data", str(data)]) == 0
    quick = bench.QUICK_RESULTS
    assert bench.written == [quick.parent / "results_quality.md", quick]
    assert quick.parent == bench.ROOT / "experiments" / "runs" / "quick"
    err = capsys.readouterr().err
    assert f"wrote {quick}" in err and "untouched" in err


def test_a_smoke_run_with_out_and_a_full_run_write_where_they_did(bench, data, tmp_path):
    out = tmp_path / "elsewhere" / "RESULTS.md"
    assert bench.main(["--quick", "--rows", "prior", "--data", str(data), "--out", str(out)]) == 0
    assert bench.written == [out.parent / "results_quality.md", out]
    bench.written.clear()
    assert bench.main(["--rows", "prior", "--data", str(data)]) == 0
    results = bench.ROOT / "experiments" / "RESULTS.md"
    assert bench.written == [results.parent / "results_quality.md", results]


def test_results_md_takes_every_unseen_check_section_each_after_its_family(tmp_path):
    """unseen_check.py names the section of another text encoder by its runs' folder
    (results_unseen-SPEC.md, results_designs-SPEC.md for --designs): each goes into RESULTS.md
    after the sections of its kind, the listed ones in their order."""
    with experiment_script("bench") as bench, experiment_script("unseen_check") as uc:
        names = ["results_unseen.md", "results_unseen-minilm.md", "results_designs.md",
                 "results_cooc.md", uc.results_path(True, "mpnet").name,
                 uc.results_path(True, "minilm@3").name, uc.results_path(False, "clip:x").name]
        for name in names:
            (tmp_path / name).write_text(f"## {name}\n")
        (tmp_path / "results_unseen-minilm.md.bak").write_text("## stray\n")
        bench.assemble(tmp_path / "RESULTS.md")
    shown = [line[3:] for line in (tmp_path / "RESULTS.md").read_text().splitlines()
             if line.startswith("## ")]
    assert shown == ["results_unseen.md", "results_unseen-minilm.md", "results_unseen-clip_x.md",
                     "results_designs.md", "results_designs-minilm_3.md",
                     "results_designs-mpnet.md", "results_cooc.md"]
