import json

import numpy as np
import pytest
from PIL import Image

from hateful_memes.data.annotations import Meme
from hateful_memes.evaluation.metrics import evaluate
from hateful_memes.evaluation.report import (format_markdown, format_report, per_label_f1_figure,
                                             write_report)
from hateful_memes.labels import ATTACK, PC


@pytest.fixture
def report():
    rng = np.random.default_rng(0)
    memes = [Meme(i, f"img/{i}.png", "t", (("hateful",) if i % 2 else ("not_hateful",)),
                  ("race", "sex") if i % 2 else ("pc_empty",),
                  ("mocking",) if i % 2 else ("attack_empty",)) for i in range(10)]
    ids = list(range(2, 10))  # two gold memes left without a prediction
    scores = {"hate": rng.random((8, 2)), "pc": rng.random((8, len(PC))),
              "attack": rng.random((8, len(ATTACK)))}
    return evaluate(memes, ids, scores)


def test_format_report_lists_coverage_tasks_and_every_label(report):
    text = format_report(report)
    lines = text.splitlines()
    assert lines[0] == "scored 8 of 10 memes (2 without a prediction)"
    assert lines[1] == f"hate binary AUROC: {report['hate_auroc_binary']:.3f}"
    pc_line = next(line for line in lines if line.startswith("Task A (pc) "))
    assert pc_line.split()[-3:] == [f"{report['pc'][k]:.3f}"
                                    for k in ("roc_auc_micro", "f1_micro", "f1_macro")]
    for label in (*PC, *ATTACK):
        row = next(line for line in lines if line.split()[:1] == [label])
        task = "pc" if label in PC else "attack"
        m = report[task]["per_label"][label]
        assert row.split()[1:] == [f"{m['precision']:.3f}", f"{m['recall']:.3f}",
                                   f"{m['f1']:.3f}", str(m["support"]),
                                   "n/a" if m["auroc"] is None else f"{m['auroc']:.3f}",
                                   "n/a" if m["average_precision"] is None
                                   else f"{m['average_precision']:.3f}"]


def test_format_report_without_hate_says_not_predicted_and_full_coverage_nothing_missing(
        report):
    # "n/a" read as an AUROC that cannot be computed; without pred_hate there is none to compute.
    report = {k: v for k, v in report.items() if k != "hate"}
    report.update(hate_auroc_binary=None, n_gold=8)
    lines = format_report(report).splitlines()
    assert lines[:2] == ["scored 8 of 8 memes", "hate binary AUROC: not predicted"]
    assert not any(line.startswith("hate ") for line in lines[2:])
    assert "\nhate binary AUROC: not predicted\n" in format_markdown(report)


def test_a_predicted_hate_auroc_that_cannot_be_computed_is_n_a():
    # Gold with one class only: pred_hate is there, its AUROC undefined.
    memes = [Meme(i, f"img/{i}.png", "t", ("not_hateful",), ("pc_empty",), ("attack_empty",))
             for i in range(4)]
    report = evaluate(memes, range(4), {"hate": np.full((4, 2), 0.5)})
    assert "hate" in report and report["hate_auroc_binary"] is None
    assert format_report(report).splitlines()[1] == "hate binary AUROC: n/a"
    assert "\nhate binary AUROC: n/a\n" in format_markdown(report)


def test_write_report_writes_json_markdown_and_png(tmp_path, report):
    paths = write_report(report, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "per_label_f1.png", "report.json", "report.md"]
    assert json.loads(paths["json"].read_text()) == report
    md = paths["md"].read_text()
    assert "| task | micro AUROC | micro F1 | macro F1 |" in md
    assert "## Task B (attack)" in md and "| inciting_violence |" in md
    with Image.open(paths["png"]) as image:
        image.verify()
        assert image.format == "PNG"


def test_markdown_holds_one_table_row_per_label(report):
    md = format_markdown(report)
    assert sum(line.startswith("| ") for line in md.splitlines()) == (
        2 + 3) + sum(2 + len(report[t]["per_label"]) for t in ("hate", "pc", "attack"))


def test_a_failed_write_leaves_the_old_report_whole(report, tmp_path, monkeypatch):
    import errno
    import os

    write_report(report, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    changed = dict(report, n_gold=report["n_gold"] + 1)
    calls = []
    real_fsync = os.fsync

    def full_disk_at_the_png(fd):  # json and md go through, the third file hits a full disk
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk_at_the_png)
    with pytest.raises(OSError):
        write_report(changed, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_every_f1_value_in_the_figure_is_readable():
    # F1 >= 0.9 was drawn inside its bar in black on blue, which no one could read.
    from matplotlib.colors import to_rgb

    values = [0.0, 0.3, 0.79, 0.8, 0.86, 0.9, 0.95, 1.0]
    labels = [f"label {i}" for i in range(len(values))]
    report = {"pc": {"f1_macro": 0.5, "per_label": {k: {"f1": v} for k, v in zip(labels, values)}}}
    fig = per_label_f1_figure(report)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    frame = ax.get_window_extent(renderer)
    assert len(ax.texts) == len(ax.patches) == len(values)
    for value, text, bar in zip(values, ax.texts, ax.patches):
        assert text.get_text() == f"{value:.2f}"
        box, drawn = text.get_window_extent(renderer), bar.get_window_extent(renderer)
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1, value  # not cut off by the frame
        if box.x1 <= drawn.x1:  # inside the bar: all of it, in white on the blue
            assert box.x0 >= drawn.x0 and to_rgb(text.get_color()) == (1, 1, 1), value
        else:  # beside it: none of it on the bar, dark on the white background
            assert box.x0 >= drawn.x1 and sum(to_rgb(text.get_color())) < 1, value
