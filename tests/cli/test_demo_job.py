"""cli/demo_job.py (`make demo`): the main job end to end, here on the tests' tiny demo set."""
import json

import pytest

from hateful_memes.cli import demo_job
from hateful_memes.data import demo
from hateful_memes.data.submission import check_submission


def test_the_demo_job_trains_predicts_evaluates_and_reads_the_images(
        demo_data, feature_cache, tmp_path, capsys):
    runs, sub = tmp_path / "runs", tmp_path / "submission" / "demo_test_AB.jsonl"
    assert demo_job.main(["--data", str(demo_data), "--runs", str(runs), "--submission",
                          str(sub), "--epochs", "2", "--cache-dir", str(feature_cache),
                          "--quiet"]) == 0
    out = capsys.readouterr().out
    assert [f"[{k}/5]" in out for k in range(1, 6)] == [True] * 5
    ann = demo_data / "annotations"
    summary = check_submission(sub, ann / "test.jsonl")  # every test id, both tasks
    assert set(summary["tasks"]) == {"hate", "pc", "attack"}
    for task in ("taskA", "taskB"):
        summary_json = json.loads((runs / task / "summary.json").read_text())
        assert summary_json["folds"] == 5
        # Plain Platt maps: the demo's repeated captions are no confounder pairs.
        assert {len(p[0]) for p in summary_json["calibration"].values()} == {2}
    report = json.loads((runs / "dev_report" / "report.json").read_text())
    assert report["n_scored"] == report["n_gold"] > 0
    assert (runs / "dev_report" / "report.html").stat().st_size > 10_000
    # From the pictures alone: OCR read a caption for every test image.
    ocr = sub.with_name("demo_test_AB_ocr.jsonl")
    lines = ocr.read_text().splitlines()
    sidecar = ocr.with_suffix(".ids.csv").read_text().splitlines()
    n_test = len((ann / "test.jsonl").read_text().splitlines())
    assert len(lines) == len(sidecar) - 1 == n_test


class _Steps:
    """train.py, predict.py and evaluate.py as the job calls them, doing nothing: what each was
    given, and `seen(argv)` at each predict.py call."""

    def __init__(self, monkeypatch, seen=None):
        self.calls = []

        def step(name):
            def main(argv):
                self.calls.append((name, list(argv)))
                if name == "predict" and seen is not None:
                    seen(argv)
                return 0
            return main

        for name in ("train", "predict", "evaluate"):
            monkeypatch.setattr(getattr(demo_job, name), "main", step(name))


def _job_args(tmp_path, data, feature_cache):
    return ["--data", str(data), "--runs", str(tmp_path / "runs"), "--submission",
            str(tmp_path / "submission" / "demo_test_AB.jsonl"), "--epochs", "1",
            "--cache-dir", str(feature_cache), "--quiet"]


def test_a_second_job_predicts_the_images_again_with_its_new_runs(
        demo_data, feature_cache, tmp_path, monkeypatch):
    """predict.py --images keeps the rows its output holds; a second job (e.g. other --epochs)
    kept every row of the first job's runs, which it had just replaced ('0 new, 90 already
    there'), and would have taken up a killed step's .partial rows likewise."""
    sub = tmp_path / "submission"
    sub.mkdir()
    stale = [sub / "demo_test_AB_ocr.jsonl", sub / "demo_test_AB_ocr.ids.csv",
             sub / "demo_test_AB_ocr.jsonl.partial", sub / "demo_test_AB_ocr.ids.csv.partial"]
    for path in stale:
        path.write_text("rows of the runs the job replaces\n")
    left = []
    steps = _Steps(monkeypatch, seen=lambda argv: left.extend(
        p.name for p in stale if "--images" in argv and p.exists()))
    assert demo_job.main(_job_args(tmp_path, demo_data, feature_cache)) == 0
    assert [name for name, _ in steps.calls] == [
        "train", "train", "predict", "predict", "evaluate", "predict"]
    assert left == []


@pytest.mark.parametrize("flag", ["--runs", "--submission", "--cache-dir"])
def test_an_output_that_cannot_be_written_stops_the_job_before_any_work(
        demo_data, feature_cache, tmp_path, monkeypatch, capsys, flag):
    """A read-only submission/ failed at step 3, after both trainings."""
    steps = _Steps(monkeypatch)
    (tmp_path / "a_file").write_text("")
    args = _job_args(tmp_path, demo_data, feature_cache)
    args[args.index(flag) + 1] = str(tmp_path / "a_file" / "out" / "demo_test_AB.jsonl")
    assert demo_job.main(args) == 1
    out = capsys.readouterr()
    assert out.err.startswith(f"demo_job: error: {flag} ") and len(out.err.splitlines()) == 1
    assert "a part of the path is a file" in out.err
    assert steps.calls == [] and "[1/5]" not in out.out


def test_an_empty_cache_dir_is_no_cache_not_the_working_folder(demo_data, tmp_path,
                                                               monkeypatch):
    """--cache-dir "" is no cache for train.py and predict.py; the job tried the working
    folder for writing as if it were the cache."""
    steps = _Steps(monkeypatch)
    tried = []
    monkeypatch.setattr(demo_job.rundir, "check_writable", lambda folder, what: tried.append(what))
    assert demo_job.main(_job_args(tmp_path, demo_data, "")) == 0
    assert "--cache-dir" not in tried and "--runs" in tried
    assert len(steps.calls) == 6
    assert all(argv[argv.index("--cache-dir") + 1] == "" for _, argv in steps.calls
               if "--cache-dir" in argv)


def test_demo_data_that_cannot_be_written_is_one_line_not_a_traceback(
        feature_cache, tmp_path, monkeypatch, capsys):
    steps = _Steps(monkeypatch)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not the demo's")
    (tmp_path / "a_file").write_text("")
    for data, message in ((other, "is not empty (notes.txt)"),
                          (tmp_path / "a_file", "is a file, not a folder"),
                          (tmp_path / "a_file" / "demo", "cannot write the demo data there")):
        assert demo_job.main(_job_args(tmp_path, data, feature_cache)) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"demo_job: error: --data {data}") and message in err, err
        assert len(err.splitlines()) == 1
    assert (other / "notes.txt").read_text() == "not the demo's"
    with pytest.raises(SystemExit) as e:
        demo_job.main([*_job_args(tmp_path, tmp_path / "new", feature_cache), "--n", "5"])
    assert e.value.code == 2 and "--n must be between 20 and" in capsys.readouterr().err
    assert steps.calls == [] and not (tmp_path / "new").exists()


def test_a_demo_set_missing_a_split_is_generated_again(
        feature_cache, tmp_path, monkeypatch, capsys):
    """A generation stopped after train.json was taken for a whole set, and train.py then
    failed on the missing dev.json."""
    data = tmp_path / "demo"
    demo.generate(data, n=20, image_size=32)
    (data / "annotations" / "dev.json").unlink()
    (data / "annotations" / "test.jsonl").unlink()
    _Steps(monkeypatch)
    assert demo_job.main([*_job_args(tmp_path, data, feature_cache), "--n", "20"]) == 0
    assert "[1/5] generating 20 synthetic demo memes" in capsys.readouterr().out
    assert all(path.is_file() for path in demo.annotation_paths(data).values())
    assert demo_job.main([*_job_args(tmp_path, data, feature_cache), "--n", "20"]) == 0
    assert "[1/5] using the demo data in" in capsys.readouterr().out


def test_help_documents_every_flag_with_its_default(capsys):
    """--submission, --epochs, --batch-size, the encoders, --cache-dir and --quiet had no help,
    no default was shown, nor where the OCR submission goes or what a second run does."""
    with pytest.raises(SystemExit) as e:
        demo_job.main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default data/demo)", "(default 600)", "(default runs/demo)",
                  "(default submission/demo_test_AB.jsonl)", "NAME_ocr.jsonl",
                  "train.py --epochs (default 30)", "train.py --batch-size (default 64)",
                  "(default effnet-lite0)", "(default minilm)",
                  '(default cache/features; "": no cache, nothing written)',
                  "--quiet no progress lines", "A second run uses the demo data it finds"):
        assert shown in text, shown
    for action in demo_job._parser()._actions:
        assert action.help, action.option_strings
