import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hateful_memes.data import gold_matrix, read_annotations
from hateful_memes.evaluate import main
from hateful_memes.labels import LABELS
from hateful_memes.metrics import evaluate
from hateful_memes.submission import write_submission

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / ".." / "shared" / "data" / "woah2021" / "annotations"


def tiny_gold(tmp_path, n=6):
    rows = [{"id": i, "img": f"img/{i}.png", "text": "t",
             "gold_hate": ["hateful" if i % 2 else "not_hateful"],
             "gold_pc": ["religion"] if i % 2 else ["pc_empty"],
             "gold_attack": ["slurs"] if i % 2 else ["attack_empty"]} for i in range(n)]
    path = tmp_path / "dev.json"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def random_scores(n, tasks, seed=0):
    rng = np.random.default_rng(seed)
    return {task: rng.random((n, len(LABELS[task]))) for task in tasks}


def test_check_prints_summary_and_exits_0(tmp_path, capsys):
    gold = tiny_gold(tmp_path)
    pred = tmp_path / "pred.jsonl"
    write_submission(pred, range(6), random_scores(6, ("hate", "pc")))
    assert main(["--check", str(pred)]) == 0
    assert capsys.readouterr().out == f"{pred}: valid, 6 rows with pred_hate, pred_pc\n"
    assert main(["--check", str(pred), "--gold", str(gold)]) == 0
    assert capsys.readouterr().out.endswith(f"; ids match {gold}\n")


def test_check_reports_a_bad_file_on_stderr_and_exits_1(tmp_path, capsys):
    gold = tiny_gold(tmp_path)
    pred = tmp_path / "pred.jsonl"
    write_submission(pred, range(4), random_scores(4, ("attack",)))
    assert main(["--check", str(pred), "--gold", str(gold)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"error: {pred}: 2 of 6 id(s) of {gold} have no prediction, "
                            f"first: [4, 5]\n")
    pred.write_text('{"id": 1, "pred_pc": {"race": 2}}\n')
    assert main(["--check", str(pred)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {pred}:1: id 1: pred_pc lacks label(s)")


def test_scoring_prints_the_report_and_writes_files(tmp_path, capsys):
    gold = tiny_gold(tmp_path)
    pred = tmp_path / "pred.jsonl"
    ids = [5, 3, 1, 0, 2, 4]
    scores = random_scores(6, ("hate", "pc", "attack"))
    write_submission(pred, ids, scores)
    out = tmp_path / "eval"
    assert main(["--gold", str(gold), "--pred", str(pred), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("scored 6 of 6 memes\n")
    expected = evaluate(read_annotations(gold), ids, scores)
    assert json.loads((out / "report.json").read_text()) == expected
    assert (out / "report.md").exists() and (out / "per_label_f1.png").exists()


def test_partial_coverage_on_real_dev_seen(tmp_path, capsys):
    dev = read_annotations(REAL / "dev_seen.json")
    train = read_annotations(REAL / "train.json")
    prior = {task: np.tile(gold_matrix(train, task).mean(axis=0), (480, 1)) for task in ("pc",)}
    pred = tmp_path / "dev_A.jsonl"
    write_submission(pred, [meme.id for meme in dev[:480]], prior)
    assert main(["--gold", str(REAL / "dev_seen.json"), "--pred", str(pred)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "scored 480 of 500 memes (20 without a prediction)"
    assert lines[1] == "hate binary AUROC: n/a"


@pytest.mark.parametrize("problem", ["unlabelled", "bad_gold", "missing_pred", "no_overlap"])
def test_input_errors_give_one_line_on_stderr_and_exit_1(tmp_path, capsys, problem):
    gold = tiny_gold(tmp_path)
    pred = tmp_path / "pred.jsonl"
    write_submission(pred, range(6), random_scores(6, ("pc",)))
    if problem == "unlabelled":
        gold.write_text("".join(json.dumps({"id": i, "img": "x.png", "text": "t"}) + "\n"
                                for i in range(6)))
        expected = "carries no gold labels"
    elif problem == "bad_gold":
        gold.write_text(gold.read_text() + "{oops\n")
        expected = f"{gold}:7: malformed JSON"
    elif problem == "missing_pred":
        pred = tmp_path / "absent.jsonl"
        expected = "No such file or directory"
    else:
        write_submission(pred, [100, 101], random_scores(2, ("pc",)))
        expected = "none of the 2 predicted ids is among the 6 gold memes"
    assert main(["--gold", str(gold), "--pred", str(pred)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.splitlines()
    assert err[-1].startswith("error: ") and expected in err[-1]
    assert "Traceback" not in captured.err


def test_argument_misuse_is_a_usage_error(capsys):
    for argv in ([], ["--pred", "p.jsonl"], ["--check", "p.jsonl", "--out", "d"],
                 ["--check", "a", "--pred", "b", "--gold", "g"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    assert "usage: evaluate.py" in capsys.readouterr().err


def test_root_script_runs_the_cli(tmp_path):
    pred = tmp_path / "pred.jsonl"
    write_submission(pred, [1], random_scores(1, ("hate",)))
    done = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--check", str(pred)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{pred}: valid, 1 rows with pred_hate\n"


def test_an_unwritable_out_fails_before_scoring(tmp_path, capsys):
    gold = tiny_gold(tmp_path)
    pred = tmp_path / "pred.jsonl"
    write_submission(pred, list(range(6)), random_scores(6, ("hate", "pc")))
    (tmp_path / "a_file").write_text("x")
    assert main(["--gold", str(gold), "--pred", str(pred),
                 "--out", str(tmp_path / "a_file" / "eval")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "cannot write there" in captured.err


def test_a_full_disk_leaves_the_old_report_folder_whole(tmp_path, capsys, monkeypatch):
    import errno
    import os

    gold = tiny_gold(tmp_path)
    pred = tmp_path / "pred.jsonl"
    write_submission(pred, list(range(6)), random_scores(6, ("hate", "pc")))
    out = tmp_path / "eval"
    assert main(["--gold", str(gold), "--pred", str(pred), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_submission(pred, list(range(6)), random_scores(6, ("hate", "pc"), seed=1))
    calls = []
    real_fsync = os.fsync

    def full_disk_at_the_third_file(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk_at_the_third_file)
    assert main(["--gold", str(gold), "--pred", str(pred), "--out", str(out)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
