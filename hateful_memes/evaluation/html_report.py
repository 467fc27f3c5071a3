"""The evaluation as one self-contained HTML page for error analysis (evaluate.py --out).

Everything the page shows is computed by hateful_memes.evaluation.metrics: the report dict of
`metrics.evaluate` (what report.json holds) for the tables, and the per-meme scores for the
curves, calibration, label confusion and the cards of the most confident errors. This module
only lays it out: plots are matplotlib PNGs and thumbnails JPEGs, both embedded as data: URIs,
and the page comes from the Jinja2 template templates/report.html.j2, so the file opens in any
browser with no network and no other file beside it.

The per-label tables, curves and error cards take the official view (a label is predicted
when its score is above 0.5, each column on its own); the label sets printed on the cards and
counted in the confusion matrix are the decision of hateful_memes.scoring.decision, in which an
empty label never stands beside a real one.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Sequence

import jinja2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from ..data.annotations import Meme, gold_matrix
from ..data.images import upright_rgb
from ..labels import LABELS, TASKS
from ..scoring.decision import decide_all, multi_hot
from .metrics import (align, calibration, compare_reports, cooccurrence,
                      disagreements, evaluate, pr_curve, top_errors)
from .report import NOT_PREDICTED, TASK_NAMES, hate_auroc_text

TOP_K = 12  # errors per label and kind, and disagreements, shown as cards
THUMB_SIZE = 112  # pixels, longest side
TEMPLATE = "report.html.j2"
PR_COLUMNS = 4


class ReportError(ValueError):
    """An input the HTML report refuses (e.g. an image path that leaves the image root)."""


@dataclass(frozen=True)
class Predictions:
    """One prediction file as read: its path (named on the page) and its rows."""
    path: Path
    ids: Sequence[int]
    scores: dict[str, np.ndarray]


# ---------------------------------------------------------------- files and images


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_file(root: str | os.PathLike, img: str) -> Path:
    """root/img, refusing an `img` that is absolute, climbs with '..' or links out of root."""
    if (PurePosixPath(img).is_absolute() or PureWindowsPath(img).is_absolute()
            or PureWindowsPath(img).drive or ".." in PurePosixPath(img.replace("\\", "/")).parts):
        raise ReportError(f"img {img!r} leaves the image root {root} (absolute or '..')")
    root = Path(root).resolve()
    path = (root / img).resolve()
    if not path.is_relative_to(root):
        raise ReportError(f"img {img!r} leaves the image root {root} (it links to {path})")
    return path


def check_image_paths(memes: Sequence[Meme], root: str | os.PathLike, gold: str) -> None:
    """Raise ReportError naming the gold file and meme for the first path that leaves root."""
    for meme in memes:
        try:
            image_file(root, meme.img)
        except ReportError as e:
            raise ReportError(f"{gold}: meme {meme.id}: {e}") from None


def thumbnail(path: Path, size: int = THUMB_SIZE) -> str | None:
    """A small JPEG of the image as a data: URI, or None when there is no readable image."""
    try:
        with Image.open(path) as image:
            # As the model saw it (upright, RGB), as features.cache.load_rgb reads it.
            image = upright_rgb(image)
    except (FileNotFoundError, IsADirectoryError, UnidentifiedImageError, OSError,
            Image.DecompressionBombError):  # (a header claiming over 2x PIL's pixel limit)
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------- plots


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    # No Software tag: the page names no outside address, not even inside its images.
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def pr_figure(task: str, gold: np.ndarray, scores: np.ndarray) -> str:
    """One panel per label: the PR curve, the 0.5 operating point and the best-F1 point."""
    labels = LABELS[task]
    rows = -(-len(labels) // PR_COLUMNS)
    cols = min(PR_COLUMNS, len(labels))
    # Fixed margins rather than a layout engine: the engine costs more than the drawing.
    fig = Figure(figsize=(2.9 * cols, 0.3 + 2.6 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(left=0.45 / (2.9 * cols), right=1 - 0.1 / (2.9 * cols),
                        bottom=0.45 / (0.3 + 2.6 * rows), top=1 - 0.3 / (0.3 + 2.6 * rows),
                        wspace=0.25, hspace=0.35)
    for ax in axes.ravel()[len(labels):]:
        ax.set_axis_off()
    for ax, (j, label) in zip(axes.ravel(), enumerate(labels)):
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_title(label, fontsize=10)
        ax.tick_params(labelsize=7)
        curve = pr_curve(gold[:, j], scores[:, j])
        if curve is None:
            ax.text(0.5, 0.5, "no positive in gold", ha="center", va="center", fontsize=8)
            continue
        ax.step(curve["recall"], curve["precision"], where="post", color="tab:blue", lw=1.3)
        ax.axhline(curve["prevalence"], color="grey", ls=":", lw=0.8)
        at, best = curve["at_threshold"], curve["best_f1"]
        if at["n_predicted"]:
            ax.plot(at["recall"], at["precision"], "o", color="tab:red", ms=6,
                    label=f"> 0.5: F1 {at['f1']:.2f}")
        else:
            ax.plot([], [], "o", color="tab:red", label="> 0.5: none")
        ax.plot(best["recall"], best["precision"], "*", color="tab:green", ms=10,
                label=f"\u2265 {best['threshold']:.2f}: F1 {best['f1']:.2f}")
        ax.legend(fontsize=7, loc="lower left", frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel("recall", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("precision", fontsize=8)
    return _png(fig)


def reliability_figure(task: str, gold: np.ndarray, scores: np.ndarray) -> str:
    """Reliability diagram over all (meme, label) cells of a task, its ECE in the title."""
    result = calibration(gold, scores)
    bins = result["bins"]
    fig = Figure(figsize=(4.2, 4.6))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.1, top=0.94, hspace=0.08)
    top.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
    top.bar(centres, [b["frac_positive"] for b in bins], width=0.09, color="tab:blue",
            alpha=0.35, label="fraction positive")
    top.plot([b["mean_score"] for b in bins], [b["frac_positive"] for b in bins], "o-",
             color="tab:blue", ms=4, label="per bin (mean score)")
    top.set_ylim(0, 1)
    top.set_ylabel("fraction positive", fontsize=8)
    top.set_title(f"{TASK_NAMES[task]}: ECE {result['ece']:.3f}", fontsize=10)
    top.legend(fontsize=7, loc="upper left", frameon=False)
    bottom.bar(centres, [b["n"] for b in bins], width=0.09, color="grey")
    bottom.set_ylabel("cells", fontsize=8)
    bottom.set_xlabel("score", fontsize=8)
    bottom.set_xlim(0, 1)
    for ax in (top, bottom):
        ax.tick_params(labelsize=7)
    return _png(fig)


# ---------------------------------------------------------------- page content


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _task_lines(meme: Meme, scores: dict[str, np.ndarray], decided: dict, row: int) -> list:
    """Per task of `scores`: the gold labels and the decided labels with their scores."""
    out = []
    for task in scores:
        names = LABELS[task]
        pred = [(label, f"{scores[task][row, names.index(label)]:.2f}")
                for label in decided[task]]
        gold = meme.gold(task)
        out.append({"name": task, "gold": ", ".join(gold), "pred": pred,
                    "right": set(gold) == set(decided[task])})
    return out


class _Cards:
    """Card contents of the scored memes, with each thumbnail embedded once (as a CSS class)."""

    def __init__(self, memes: Sequence[Meme], scores: dict[str, np.ndarray],
                 images: str | os.PathLike | None):
        self.memes, self.scores, self.images = memes, scores, images
        self.decided = decide_all(scores)
        self.thumbs: dict[int, str | None] = {}

    def thumb(self, row: int) -> str | None:
        meme = self.memes[row]
        if self.images is None:
            return None
        if meme.id not in self.thumbs:
            self.thumbs[meme.id] = thumbnail(image_file(self.images, meme.img))
        return f"m{meme.id}" if self.thumbs[meme.id] else None

    def card(self, row: int, task: str, label: str, kind: str) -> dict:
        meme = self.memes[row]
        return {"id": meme.id, "caption": meme.text, "thumb": self.thumb(row), "kind": kind,
                "task": task, "label": label,
                "focus": f"{self.scores[task][row, LABELS[task].index(label)]:.2f}",
                "tasks": _task_lines(meme, self.scores, self.decided[row], row)}

    def css(self) -> list[tuple[str, str]]:
        return [(f"m{id_}", uri) for id_, uri in sorted(self.thumbs.items()) if uri]


def _confusion(task: str, gold: np.ndarray, decided: list[tuple[str, ...]]) -> dict:
    labels = LABELS[task]
    counts = cooccurrence(gold, multi_hot(task, decided))
    rows = []
    for g, label in enumerate(labels):
        total = int(gold[:, g].sum())
        rows.append({"label": label, "total": total, "cells": [
            {"n": n, "diag": g == p, "alpha": f"{n / total if total else 0:.2f}"}
            for p, n in enumerate(counts[g])]})
    predicted = [int(sum(counts[g][p] for g in range(len(labels)))) for p in range(len(labels))]
    return {"labels": labels, "rows": rows, "predicted": predicted}


def _label_rows(task_report: dict) -> list[dict]:
    return [{"label": label, "precision": _num(m["precision"]), "recall": _num(m["recall"]),
             "f1": _num(m["f1"]), "support": m["support"], "auroc": _num(m["auroc"]),
             "ap": _num(m["average_precision"]), "ece": _num(m["ece"])}
            for label, m in task_report["per_label"].items()]


def _error_labels(task: str) -> tuple[str, ...]:
    # For the binary hate task its one real label says it all: the empty label's errors are
    # its mirror.
    return LABELS[task][1:] if task == "hate" else LABELS[task]


def _task_section(task: str, task_report: dict, gold: np.ndarray, scores: np.ndarray,
                  cards: _Cards, k: int) -> dict:
    errors = []
    for label in _error_labels(task):
        j = LABELS[task].index(label)
        rows = top_errors(gold[:, j], scores[:, j], k=k)
        n_fp = int(((gold[:, j] == 0) & (scores[:, j] > 0.5)).sum())
        n_fn = int(((gold[:, j] == 1) & (scores[:, j] <= 0.5)).sum())
        errors.append({"label": label, "anchor": f"errors-{task}-{label}", "n_fp": n_fp,
                       "n_fn": n_fn,
                       "fp": [cards.card(r, task, label, "fp") for r in rows["fp"]],
                       "fn": [cards.card(r, task, label, "fn") for r in rows["fn"]]})
    headline = {key: _num(task_report[key]) for key in ("roc_auc_micro", "f1_micro", "f1_macro")}
    return {"key": task, "name": TASK_NAMES[task], "headline": headline,
            "ece": _num(task_report["ece"]),
            "labels": _label_rows(task_report), "pr_png": pr_figure(task, gold, scores),
            "reliability_png": reliability_figure(task, gold, scores),
            "confusion": _confusion(task, gold, [d[task] for d in cards.decided]),
            "errors": errors}


def _delta_cell(d: dict, lower_is_better: bool = False) -> dict:
    """A compare_reports entry ("a" the compared file, "b" this report's) for the page."""
    delta = d["delta"]
    # "better"/"worse" colour the cell; for a calibration error a drop is the improvement.
    better = None if not delta else (delta < 0) == lower_is_better
    sign = "na" if delta is None else "zero" if not delta else "pos" if better else "neg"
    return {"compared": _num(d["a"]), "this": _num(d["b"]), "delta": _signed(delta),
            "raw": "n/a" if delta is None else repr(delta), "sign": sign}


COMPARED_HEADLINE = (("roc_auc_micro", "micro AUROC"), ("f1_micro", "micro F1"),
                     ("f1_macro", "macro F1"), ("ece", "ECE (lower is better)"))
LOWER_IS_BETTER = frozenset({"ece"})
COMPARED_LABEL = (("f1", "F1"), ("auroc", "AUROC"), ("average_precision", "AP"),
                  ("ece", "ECE"))


def _compare_section(memes: Sequence[Meme], other: Predictions, cards: _Cards, k: int) -> dict:
    # The memes both files score, in the rows of the first.
    other_memes, other_scores = align(memes, other.ids, other.scores)
    other_row = {meme.id: i for i, meme in enumerate(other_memes)}
    shared = [i for i, meme in enumerate(cards.memes) if meme.id in other_row]
    if not shared:
        raise ValueError(f"{other.path} shares no scored meme with the prediction "
                         f"({len(cards.memes)} memes)")
    # Both scored on the memes both score: set against this file's full coverage, a compared
    # file that covers fewer memes would show deltas where the two give the same scores.
    both = [cards.memes[i] for i in shared]
    # Deltas read "this report's prediction minus the compared one": with the baseline given
    # to --compare, a positive delta is what the new prediction gained.
    deltas = compare_reports(evaluate(both, other.ids, other.scores),
                             evaluate(both, [meme.id for meme in cards.memes], cards.scores))
    tasks = []
    for task in TASKS:
        if task not in deltas:
            continue
        tasks.append({
            "key": task, "name": TASK_NAMES[task],
            "headline": [(name, _delta_cell(deltas[task]["headline"][m], m in LOWER_IS_BETTER))
                         for m, name in COMPARED_HEADLINE],
            "labels": [{"label": label,
                        "cells": [_delta_cell(deltas[task]["per_label"][label][m],
                                              m in LOWER_IS_BETTER)
                                  for m, _ in COMPARED_LABEL]}
                       for label in LABELS[task]]})
    common = [task for task in cards.scores if task in other_scores]
    a = {task: cards.scores[task][shared] for task in common}
    b = {task: other_scores[task][[other_row[cards.memes[i].id] for i in shared]]
         for task in common}
    decided_b = decide_all(b)
    found = []
    for i, task, label, diff in disagreements(a, b, k=k):
        row = shared[i]
        j = LABELS[task].index(label)
        card = cards.card(row, task, label, "disagree")
        meme = cards.memes[row]
        card.update(diff=f"{diff:.2f}", focus=f"{b[task][i, j]:.2f} \u2192 {a[task][i, j]:.2f}",
                    tasks=_task_lines(meme, a, cards.decided[row], i),
                    tasks_cmp=_task_lines(meme, b, decided_b[i], i))
        found.append(card)
    hate_auroc = _delta_cell(deltas["hate_auroc_binary"])
    # A file without pred_hate has no hateful AUROC, which is not an undefined one (n/a, one
    # gold class): its delta is none at all, not "n/a".
    hate_auroc["predicted_by"] = 0
    for side, scores in (("compared", other_scores), ("this", cards.scores)):
        if "hate" in scores:
            hate_auroc["predicted_by"] += 1
        else:
            hate_auroc[side] = NOT_PREDICTED
    return {"path": str(other.path), "tasks": tasks, "n_shared": len(shared),
            "hate_auroc": hate_auroc, "cards": found,
            "headline_names": [name for _, name in COMPARED_HEADLINE],
            "label_names": [name for _, name in COMPARED_LABEL]}


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("hateful_memes.evaluation", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render(report: dict, memes: Sequence[Meme], gold_path: str | os.PathLike,
           predictions: Predictions, images: str | os.PathLike | None = None,
           compare: Predictions | None = None, k: int = TOP_K,
           now: dt.datetime | None = None) -> str:
    """The page for `report` (metrics.evaluate of `predictions` against `memes`)."""
    scored, scores = align(memes, predictions.ids, predictions.scores)
    cards = _Cards(scored, scores, images)
    sections = [_task_section(task, report[task], gold_matrix(scored, task), scores[task],
                              cards, k) for task in scores]
    compared = None if compare is None else _compare_section(memes, compare, cards, k)
    files = [("gold", Path(gold_path)), ("prediction", predictions.path)]
    if compare is not None:
        files.append(("compared prediction", compare.path))
    now = now or dt.datetime.now(dt.timezone.utc)
    n_cards = len(cards.thumbs)
    context = {
        "generated": now.strftime("%Y-%m-%d %H:%M UTC"),
        "files": [{"role": role, "path": str(path), "sha256": sha256(path)}
                  for role, path in files],
        "n_gold": report["n_gold"], "n_scored": report["n_scored"],
        "hate_auroc": hate_auroc_text(report),
        "tasks": sections, "compare": compared, "k": k,
        "images": None if images is None else {
            "root": str(images), "found": sum(1 for uri in cards.thumbs.values() if uri),
            "looked_up": n_cards},
        "thumbs": cards.css(),
    }
    return _environment().get_template(TEMPLATE).render(**context)
