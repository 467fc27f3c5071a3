"""Presenting an evaluation (the dict of metrics.evaluate) on the terminal and as files."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

# The object-oriented Figure API with the Agg canvas needs no display and leaves pyplot's
# global backend alone for any caller that uses it.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..labels import TASKS
from ..runtime.files import write_files

TASK_NAMES: dict[str, str] = {"hate": "hate", "pc": "Task A (pc)", "attack": "Task B (attack)"}


def _tasks(report: dict) -> list[str]:
    return [task for task in TASKS if task in report]


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


NOT_PREDICTED = "not predicted"


def hate_auroc_text(report: dict) -> str:
    """The hate binary AUROC as shown: "not predicted" when the file holds no pred_hate (an
    A or B run alone), "n/a" when it does but the AUROC is undefined (one gold class only)."""
    return NOT_PREDICTED if "hate" not in report else _num(report["hate_auroc_binary"])


def _coverage(report: dict) -> str:
    line = f"scored {report['n_scored']} of {report['n_gold']} memes"
    missing = report["n_gold"] - report["n_scored"]
    return line + (f" ({missing} without a prediction)" if missing else "")


def _summary_rows(report: dict) -> list[list[str]]:
    return [[TASK_NAMES[task], _num(report[task]["roc_auc_micro"]), _num(report[task]["f1_micro"]),
             _num(report[task]["f1_macro"])] for task in _tasks(report)]


def _label_rows(task_report: dict) -> list[list[str]]:
    return [[label, _num(m["precision"]), _num(m["recall"]), _num(m["f1"]), str(m["support"]),
             _num(m["auroc"]), _num(m["average_precision"])]
            for label, m in task_report["per_label"].items()]


SUMMARY_HEADER = ["task", "micro AUROC", "micro F1", "macro F1"]
LABEL_HEADER = ["label", "precision", "recall", "F1", "support", "AUROC", "AP"]


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    # First column left-aligned (names), the numbers right-aligned.
    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(header), *map(line, rows)]


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |",
            "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |",
            *("| " + " | ".join(row) + " |" for row in rows)]


def format_report(report: dict) -> str:
    """Terminal text: coverage, hate binary AUROC, a line per task, per-label tables."""
    lines = [_coverage(report), f"hate binary AUROC: {hate_auroc_text(report)}", ""]
    lines += _text_table(SUMMARY_HEADER, _summary_rows(report))
    for task in _tasks(report):
        lines += ["", TASK_NAMES[task], *_text_table(LABEL_HEADER, _label_rows(report[task]))]
    return "\n".join(lines) + "\n"


def format_markdown(report: dict) -> str:
    lines = ["# Evaluation", "", _coverage(report) + ".", "",
             f"hate binary AUROC: {hate_auroc_text(report)}", "",
             *_md_table(SUMMARY_HEADER, _summary_rows(report))]
    for task in _tasks(report):
        lines += ["", f"## {TASK_NAMES[task]}", "",
                  *_md_table(LABEL_HEADER, _label_rows(report[task]))]
    return "\n".join(lines) + "\n"


INSIDE_FROM = 0.8  # F1 from which per_label_f1.png writes the value inside the bar


def per_label_f1_figure(report: dict) -> Figure:
    """Horizontal bars of per-label F1, one panel per task."""
    tasks = _tasks(report)
    heights = [len(report[task]["per_label"]) for task in tasks]
    fig = Figure(figsize=(6, 1.0 + 0.35 * sum(heights) + 0.6 * len(tasks)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tasks), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, task in zip(axes[:, 0], tasks):
        per_label = report[task]["per_label"]
        labels = list(per_label)
        f1 = [per_label[label]["f1"] for label in labels]
        ax.barh(labels, f1, color="tab:blue")
        ax.invert_yaxis()  # labels read top-down in LABELS order, empty label first
        ax.set_xlim(0, 1)
        ax.set_title(f"{TASK_NAMES[task]}: macro F1 {_num(report[task]['f1_macro'])}", fontsize=10)
        for y, value in enumerate(f1):
            # A long bar leaves no room after it within the axis (0..1): its value goes inside,
            # at its end, in white on the blue; a shorter one's in black beside it.
            inside = value >= INSIDE_FROM
            ax.text(value - 0.01 if inside else value + 0.01, y, f"{value:.2f}", va="center",
                    ha="right" if inside else "left", color="white" if inside else "black",
                    fontsize=8)
    axes[-1, 0].set_xlabel("F1 at threshold 0.5")
    return fig


def write_report(report: dict, out_dir: str | os.PathLike,
                 extra: dict[str, bytes] | None = None) -> dict[str, Path]:
    """Write report.json (the evaluate() dict as is), report.md and per_label_f1.png, and the
    `extra` files (name -> content, e.g. report.html) as a set: all are rendered first, then
    written together (files.write_files), so a failure leaves a previous report whole."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md",
             "png": out_dir / "per_label_f1.png"}
    png = io.BytesIO()
    per_label_f1_figure(report).savefig(png, format="png", dpi=100)
    contents = {paths["json"]: (json.dumps(report, indent=2) + "\n").encode("utf-8"),
                paths["md"]: format_markdown(report).encode("utf-8"),
                paths["png"]: png.getvalue()}
    for name, data in (extra or {}).items():
        paths[Path(name).suffix.lstrip(".") or name] = out_dir / name
        contents[out_dir / name] = data
    write_files(contents)
    return paths
