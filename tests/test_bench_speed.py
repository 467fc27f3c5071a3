"""experiments/bench_speed.py: its section goes to results_speed.md, whatever other sections
RESULTS.md has, and --render says what it needs when there is nothing to render."""
import json

import pytest

from conftest import experiment_script


@pytest.fixture
def bench_speed(tmp_path, monkeypatch):
    with experiment_script("bench_speed") as module:
        monkeypatch.setattr(module, "WORK", tmp_path / "runs" / "speed")
        yield module


def _saved_run(work):
    work.mkdir(parents=True)
    (work / "speed.json").write_text(json.dumps({
        "command": "python experiments/bench_speed.py", "started": "2026-11-29 00:00 UTC",
        "machine": "a test machine", "quick": True, "load": {"start": "0.00", "end": "0.00"},
        "peaks": {}, "images": None, "encode": None, "heads": None}))


def test_render_writes_the_speed_section_and_no_other(bench_speed, tmp_path):
    _saved_run(bench_speed.WORK)
    out = tmp_path / "experiments"
    out.mkdir()
    other = out / "results_unseen-minilm.md"
    other.write_text("## Another script's section\n")
    assert bench_speed.main(["--render", "--out", str(out / "RESULTS.md")]) == 0
    assert (out / "results_speed.md").read_text().startswith("## Speed\n")
    assert "a test machine" in (out / "results_speed.md").read_text()
    assert other.read_text() == "## Another script's section\n"
    results = (out / "RESULTS.md").read_text()
    assert "## Another script's section" in results and "## Speed" in results


def test_render_without_a_measured_run_names_the_file_it_needs(bench_speed, tmp_path, capsys):
    out = tmp_path / "experiments" / "RESULTS.md"
    with pytest.raises(SystemExit) as e:
        bench_speed.main(["--render", "--out", str(out)])
    assert e.value.code == 2
    assert str(bench_speed.WORK / "speed.json") in capsys.readouterr().err
    assert not out.parent.exists()


def test_a_smoke_run_leaves_the_committed_section_and_the_saved_measurement(bench_speed,
                                                                            monkeypatch, capsys):
    from hateful_memes.runtime.files import write_json

    def measured(cmd, log):
        write_json(cmd[-1], {})
        return 1.0, 100.0

    written = []
    monkeypatch.setattr(bench_speed, "run_measured", measured)
    monkeypatch.setattr(bench_speed, "speed_section", lambda run: "## Speed\n")
    monkeypatch.setattr(bench_speed, "write_text", lambda path, text: written.append(path))
    monkeypatch.setattr(bench_speed, "assemble", lambda path: written.append(path))
    assert bench_speed.main(["--quick", "--parts", "images"]) == 0
    quick = bench_speed.QUICK_RESULTS
    assert written == [quick.parent / "results_speed.md", quick]
    assert f"wrote {quick}" in capsys.readouterr().err
    # --render rewrites the committed section from the last real measurement, never this one.
    assert (bench_speed.WORK / "speed-quick.json").is_file()
    assert not (bench_speed.WORK / "speed.json").exists()
