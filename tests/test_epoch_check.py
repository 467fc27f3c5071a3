"""experiments/epoch_check.py: a fold's nested epoch never reads that fold's own curve, the
optimism is what the kept epoch gains over it on the same memes, and bad stats name their line."""

import json

import numpy as np
import pytest

from conftest import experiment_script


@pytest.fixture(scope="module")
def ec():
    with experiment_script("epoch_check") as module:
        yield module


def _write_run(root, curves, select="roc_auc_micro"):
    root.mkdir()
    (root / "summary.json").write_text(json.dumps({"select": select}))
    for f, curve in enumerate(curves):
        (root / f"fold{f}").mkdir()
        (root / f"fold{f}" / "stats.jsonl").write_text("".join(
            json.dumps({"epoch": e + 1, f"dev/{select}": v}) + "\n" for e, v in enumerate(curve)))
    return root


def test_a_lucky_spike_on_its_own_fold_is_counted_as_optimism(ec):
    m = np.array([[0.80, 0.90, 0.85],   # fold 0 peaks at epoch 2 on its own memes...
                  [0.80, 0.81, 0.88],   # ...the others at epoch 3
                  [0.80, 0.82, 0.89]])
    r = ec.nested(m)
    assert list(r["kept"]) == [2, 3, 3]
    assert list(r["nested"]) == [3, 3, 3]
    assert r["optimism"] == pytest.approx((0.90 - 0.85) / 3)
    assert r["at_kept"] - r["at_nested"] == pytest.approx(r["optimism"])


def test_nested_epoch_ignores_the_folds_own_curve(ec):
    m = np.array([[0.0, 1.0], [0.6, 0.5], [0.6, 0.5]])
    # Fold 0 alone prefers epoch 2 hugely; its nested epoch comes from folds 1 and 2.
    assert ec.nested(m)["nested"][0] == 1


def test_loss_is_minimised(ec):
    m = np.array([[3.0, 2.0, 2.5], [3.0, 2.5, 2.0]])
    r = ec.nested(m, lower_is_better=True)
    assert list(r["kept"]) == [2, 3]
    assert list(r["nested"]) == [3, 2]
    assert r["optimism"] == pytest.approx(0.5)


def test_table_reads_the_runs_select_metric(ec, tmp_path):
    run = _write_run(tmp_path / "B-s0", [[2.0, 1.0], [2.0, 1.5], [1.9, 1.2]], select="loss")
    line = ec.table([run]).splitlines()[-1]
    assert line.startswith("| B-s0 | loss | 2 2 2 | 2 2 2 |")
    assert line.endswith("| 0.0000 |")


def test_a_bad_stats_line_is_named(ec, tmp_path, capsys):
    run = _write_run(tmp_path / "r", [[0.5, 0.6], [0.5, 0.6]])
    with open(run / "fold1" / "stats.jsonl", "a") as f:
        f.write('{"epoch": 3}\n')
    assert ec.main(["--run", str(run)]) == 1
    assert f"{run / 'fold1' / 'stats.jsonl'}:3" in capsys.readouterr().err


def test_folds_of_unequal_length_are_refused(ec, tmp_path, capsys):
    run = _write_run(tmp_path / "r", [[0.5, 0.6], [0.5]])
    assert ec.main(["--run", str(run), "--out", str(tmp_path / "t.md")]) == 1
    assert "different numbers of epochs" in capsys.readouterr().err
    assert not (tmp_path / "t.md").exists()


def test_out_holds_the_printed_table_under_what_made_it(ec, tmp_path, capsys):
    run = _write_run(tmp_path / "r", [[0.5, 0.6], [0.5, 0.7]])
    argv = ["--run", str(run), "--out", str(tmp_path / "t.md")]
    assert ec.main(argv) == 0
    written, printed = (tmp_path / "t.md").read_text(), capsys.readouterr().out
    assert printed.startswith("| run |")
    assert written.rstrip().endswith("\n\n" + printed.rstrip())
    head = written[:written.index("\n\n| run |")]
    assert head.startswith("## Each fold's epoch")
    assert f"Command: `python experiments/epoch_check.py {' '.join(argv)}`" in head
    assert "Date: " in head and "Machine: " in head
