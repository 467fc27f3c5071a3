import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hateful_memes.cli.evaluate import main
from hateful_memes.data.annotations import gold_matrix, read_annotations
from hateful_memes.data.submission import write_submission
from hateful_memes.evaluation.metrics import evaluate
from hateful_memes.labels import LABELS

ROOT = Path(__file__).resolve().parents[2]


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
    assert captured.err == (f"evaluate.py: error: {pred}: 2 of 6 ids of {gold} have no "
                            f"prediction, first: [4, 5]\n")
    pred.write_text('{"id": 1, "pred_pc": {"race": 2}}\n')
    assert main(["--check", str(pred)]) == 1
    assert capsys.readouterr().err.startswith(
        f"evaluate.py: error: {pred}:1: id 1: pred_pc lacks labels [")


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
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert text.rstrip().splitlines()[-1].endswith(f"{out / 'report.html'}")


def test_images_must_be_a_folder_and_compare_must_share_ids(tmp_path, capsys):
    gold = tiny_gold(tmp_path)
    pred = tmp_path / "pred.jsonl"
    write_submission(pred, range(6), random_scores(6, ("pc",)))
    out = tmp_path / "eval"
    argv = ["--gold", str(gold), "--pred", str(pred), "--out", str(out)]
    for flag in ("--image-root", "--images"):  # --images: the name it had first
        assert main([*argv, flag, str(tmp_path / "nowhere")]) == 1
        assert capsys.readouterr().err == (
            f"evaluate.py: error: --image-root {tmp_path / 'nowhere'}: not a folder\n")
    other = tmp_path / "other.jsonl"
    write_submission(other, [100, 101], random_scores(2, ("pc",)))
    assert main([*argv, "--compare", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"evaluate.py: error: {other} against {gold}: none of the 2 predicted ids")
    assert not out.exists()  # tried up front (so made), removed again when nothing is written


def test_a_failed_evaluation_removes_the_out_folders_it_made_and_keeps_the_others(
        tmp_path, capsys):
    gold = tiny_gold(tmp_path)
    pred = tmp_path / "pred.jsonl"
    write_submission(pred, [100, 101], random_scores(2, ("pc",)))  # no id of the gold
    out = tmp_path / "new" / "eval"
    assert main(["--gold", str(gold), "--pred", str(pred), "--out", str(out)]) == 1
    assert "none of the 2 predicted ids" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # the parent it made too
    kept = tmp_path / "kept"
    kept.mkdir()  # there before the run: not this run's to remove, even empty
    assert main(["--gold", str(gold), "--pred", str(tmp_path / "absent.jsonl"),
                 "--out", str(kept / "eval")]) == 1
    assert kept.is_dir() and not any(kept.iterdir())


def test_partial_coverage_on_real_dev_seen(tmp_path, capsys, real_annotations):
    dev = read_annotations(real_annotations / "dev_seen.json")
    train = read_annotations(real_annotations / "train.json")
    prior = {task: np.tile(gold_matrix(train, task).mean(axis=0), (480, 1)) for task in ("pc",)}
    pred = tmp_path / "dev_A.jsonl"
    write_submission(pred, [meme.id for meme in dev[:480]], prior)
    assert main(["--gold", str(real_annotations / "dev_seen.json"), "--pred", str(pred)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "scored 480 of 500 memes (20 without a prediction)"
    assert lines[1] == "hate binary AUROC: not predicted"


def organisers_baseline(ids, set_name, seed=0, repeat=(3, 41, 42, 300)):
    """Lines shaped like the organisers' published baseline predictions for a split: every
    line carries set_name, and 4 ids come twice (each repeat right after its first line)."""
    rng = np.random.default_rng(seed)
    lines = []
    for i, id_ in enumerate(ids):
        row = {"id": id_, "set_name": set_name}
        for task in ("pc", "attack"):
            row[f"pred_{task}"] = dict(zip(LABELS[task], rng.random(len(LABELS[task])).tolist()))
        lines.append(json.dumps(row))
        if i in repeat:
            lines.append(json.dumps(row))
    return lines


def test_the_organisers_baseline_format_scores_once_duplicates_are_removed(
        tmp_path, capsys, real_annotations):
    gold = real_annotations / "dev_seen.json"
    dev = read_annotations(gold)
    lines = organisers_baseline([meme.id for meme in dev], "dev_seen")
    assert len(lines) == len(dev) + 4
    pred = tmp_path / "dev_seen_baseline.json"
    pred.write_text("\n".join(lines) + "\n")
    assert main(["--gold", str(gold), "--pred", str(pred)]) == 1
    err = capsys.readouterr().err
    # Ids 3, 41, 42 and 300 of the file repeat on the line after their first.
    d = [dev[i].id for i in (3, 41, 42, 300)]
    assert err == (f"evaluate.py: error: {pred}:5: 4 duplicated ids (4 extra lines): "
                   f"id {d[0]} on lines 4, 5; id {d[1]} on lines 43, 44; "
                   f"id {d[2]} on lines 45, 46; id {d[3]} on lines 304, 305; "
                   f"every id needs exactly one prediction\n")
    unique = list(dict.fromkeys(lines))  # what a user does: drop the repeated lines
    pred.write_text("\n".join(unique) + "\n")
    out = tmp_path / "eval"
    assert main(["--gold", str(gold), "--pred", str(pred), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("scored 500 of 500 memes\n") and captured.err == ""
    report = json.loads((out / "report.json").read_text())
    rows = [json.loads(line) for line in unique]
    for task in ("pc", "attack"):
        scores = np.array([[row[f"pred_{task}"][label] for label in LABELS[task]]
                           for row in rows])
        expected = evaluate(dev, [row["id"] for row in rows], {task: scores})[task]
        assert report[task] == expected
    # The same file named for another split is refused, naming the line and both names.
    pred.write_text("\n".join(organisers_baseline([meme.id for meme in dev], "dev_unseen",
                                                  repeat=())) + "\n")
    assert main(["--gold", str(gold), "--pred", str(pred)]) == 1
    assert capsys.readouterr().err == (
        f"evaluate.py: error: {pred}:1: id {dev[0].id}: set_name 'dev_unseen', but {gold} has "
        f"set_name 'dev_seen' for this id; is this the prediction file for dev_seen?\n")


def test_set_names_are_checked_against_a_small_gold_file(tmp_path, capsys):
    gold = tiny_gold(tmp_path)
    rows = [json.loads(line) | {"set_name": "dev_seen"} for line in gold.read_text().splitlines()]
    gold.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pred = tmp_path / "pred.json"
    lines = organisers_baseline(range(6), "dev_seen", repeat=())
    pred.write_text("\n".join(lines) + "\n")
    assert main(["--gold", str(gold), "--pred", str(pred)]) == 0
    assert main(["--check", str(pred), "--gold", str(gold)]) == 0
    capsys.readouterr()
    lines[4] = lines[4].replace('"dev_seen"', '"test_unseen"')
    pred.write_text("\n".join(lines) + "\n")
    for argv in (["--gold", str(gold), "--pred", str(pred)],
                 ["--check", str(pred), "--gold", str(gold)]):
        assert main(argv) == 1
        assert capsys.readouterr().err == (
            f"evaluate.py: error: {pred}:5: id 4: set_name 'test_unseen', but {gold} has set_name "
            f"'dev_seen' for this id; is this the prediction file for dev_seen?\n")


def test_prediction_ids_unknown_to_the_gold_are_counted_and_the_first_named(tmp_path, capsys):
    gold = tiny_gold(tmp_path)
    pred = tmp_path / "pred.jsonl"
    write_submission(pred, [0, 1, 2, 77, 3, 4, 5, 78, 79], random_scores(9, ("pc",)))
    assert main(["--gold", str(gold), "--pred", str(pred)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"evaluate.py: warning: 3 of 9 prediction ids are not in {gold} "
                            f"and are ignored; the first is id 77 on line 4 of {pred}\n")
    assert captured.out.startswith("scored 6 of 6 memes\n")
    write_submission(pred, [0, 1, 2, 77, 3, 4, 5], random_scores(7, ("pc",)))
    assert main(["--gold", str(gold), "--pred", str(pred)]) == 0
    assert capsys.readouterr().err == (
        f"evaluate.py: warning: 1 of 7 prediction ids is not in {gold} and is ignored; the "
        f"first is id 77 on line 4 of {pred}\n")


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
    assert err[-1].startswith("evaluate.py: error: ") and expected in err[-1]
    assert "Traceback" not in captured.err


def test_argument_misuse_is_a_usage_error(capsys):
    for argv in ([], ["--pred", "p.jsonl"], ["--check", "p.jsonl", "--out", "d"],
                 ["--check", "a", "--pred", "b", "--gold", "g"],
                 ["--pred", "p", "--gold", "g", "--images", "img"],
                 ["--pred", "p", "--gold", "g", "--image-root", "img"],
                 ["--pred", "p", "--gold", "g", "--compare", "q"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "usage: evaluate.py" in err
        if "img" in argv:
            assert "evaluate.py: error: --image-root goes with --out" in err


def test_root_script_runs_the_cli(tmp_path):
    pred = tmp_path / "pred.jsonl"
    write_submission(pred, [1], random_scores(1, ("hate",)))
    done = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--check", str(pred)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{pred}: valid, 1 rows with pred_hate\n"


def test_a_reader_that_stops_early_ends_it_quietly_with_141(tmp_path):
    # `evaluate.py ... | head -1` ended in a BrokenPipeError traceback. The reader here closes
    # its end before the command has written anything.
    gold = tiny_gold(tmp_path)
    pred = tmp_path / "pred.jsonl"
    write_submission(pred, range(6), random_scores(6, ("hate", "pc")))
    for argv in (["--check", str(pred)], ["--gold", str(gold), "--pred", str(pred)]):
        proc = subprocess.Popen([sys.executable, str(ROOT / "evaluate.py"), *argv], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 141, err
        assert err == ""


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
