"""The shared task's metric, and the per-label view that shows what it hides.

The official score (the organisers' scripts/scorer.py) is micro-averaged ROC AUC over the
(n, K) score matrix and micro F1 of `scores > 0.5`, both with the empty label counted as a
label. Micro AUROC is dominated by the empty label, which most memes carry: a constant
per-label prior already reaches 0.765 (Task A) on dev_seen. Per-label and macro F1 are
reported beside it because they are what show skill on the protected categories and
attack types themselves.

All results are plain Python floats (or None where a score is undefined) so a report
goes straight to JSON. The error-analysis views (precision-recall curves, calibration, label
co-occurrence, the most confident errors, the comparison of two prediction files) are computed
here too, so the HTML report draws only what this module computed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import (average_precision_score, f1_score, precision_recall_curve,
                             precision_recall_fscore_support, roc_auc_score)

from ..data.annotations import Meme, gold_matrix
from ..labels import LABELS, TASKS
from ..runtime.progress import plural


def _check_shapes(gold: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gold = np.asarray(gold)
    scores = np.asarray(scores, dtype=float)
    if gold.ndim != 2 or gold.shape != scores.shape or len(gold) == 0:
        raise ValueError(f"gold and scores must be equal non-empty (n, K) arrays, "
                         f"got {gold.shape} and {scores.shape}")
    return gold.astype(int), scores


def _auroc(gold: np.ndarray, scores: np.ndarray, **kwargs) -> float | None:
    # ROC AUC needs both classes; one alone (e.g. a dev subset with no hateful meme) is
    # "undefined", not an error that should end an evaluation.
    if len(np.unique(gold)) < 2:
        return None
    return float(roc_auc_score(gold, scores, **kwargs))


def _average_precision(gold: np.ndarray, scores: np.ndarray) -> float | None:
    # Without a positive there is no recall to average over.
    if not np.any(gold):
        return None
    return float(average_precision_score(gold, scores))


CALIBRATION_BINS = 10


def calibration(gold: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability of scores read as probabilities: {"ece", "bins": [...]} over equal-width bins.

    Each cell (meme, label) is one probability forecast, whatever the shape of the arrays.
    Per non-empty bin: its edges, count, mean score and fraction of positives; the expected
    calibration error is the count-weighted mean of |fraction positive - mean score|.
    """
    gold = np.asarray(gold, dtype=float).ravel()
    scores = np.asarray(scores, dtype=float).ravel()
    if gold.shape != scores.shape or len(gold) == 0:
        raise ValueError(f"gold and scores must be equal non-empty arrays, "
                         f"got {np.shape(gold)} and {np.shape(scores)}")
    # A score of exactly 1 belongs to the last bin, not to an eleventh.
    index = np.minimum((np.clip(scores, 0, 1) * bins).astype(int), bins - 1)
    out, ece = [], 0.0
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        if not n:
            continue
        mean_score, frac = float(scores[inside].mean()), float(gold[inside].mean())
        ece += n * abs(frac - mean_score)
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "n": n,
                    "mean_score": mean_score, "frac_positive": frac})
    return {"ece": float(ece / len(gold)), "bins": out}


def expected_calibration_error(gold: np.ndarray, scores: np.ndarray,
                               bins: int = CALIBRATION_BINS) -> float:
    return calibration(gold, scores, bins)["ece"]


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def pr_curve(gold: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict | None:
    """One label's precision-recall curve, its operating point and its best-F1 point.

    None when the gold has no positive. "at_threshold" is the official view (score >
    `threshold`, precision 0 when nothing is predicted, as in the per-label table);
    "best_f1" is the cut (predict score >= "threshold") that maximises F1 on these memes,
    an in-sample optimum, not a tuned threshold.
    """
    gold = np.asarray(gold).astype(int).ravel()
    scores = np.asarray(scores, dtype=float).ravel()
    if not gold.any():
        return None
    precision, recall, cuts = precision_recall_curve(gold, scores)
    f1 = np.array([_f1(p, r) for p, r in zip(precision[:-1], recall[:-1])])
    best = int(np.argmax(f1))
    on = scores > threshold
    tp = int((on & (gold == 1)).sum())
    p_at = tp / int(on.sum()) if on.any() else 0.0
    r_at = tp / int(gold.sum())
    return {
        "precision": precision.tolist(), "recall": recall.tolist(),
        "prevalence": float(gold.mean()),
        "at_threshold": {"threshold": threshold, "precision": p_at, "recall": r_at,
                         "f1": _f1(p_at, r_at), "n_predicted": int(on.sum())},
        "best_f1": {"threshold": float(cuts[best]), "precision": float(precision[best]),
                    "recall": float(recall[best]), "f1": float(f1[best])},
    }


def top_errors(gold: np.ndarray, scores: np.ndarray, k: int = 12,
               threshold: float = 0.5) -> dict[str, list[int]]:
    """Row indices of one label's most confident errors at score > `threshold`.

    "fp": gold negatives above the threshold, highest score first; "fn": gold positives at
    or below it, lowest score first; at most `k` each, ties broken by row order.
    """
    gold = np.asarray(gold).astype(int).ravel()
    scores = np.asarray(scores, dtype=float).ravel()
    rows = np.arange(len(gold))
    fp = rows[(gold == 0) & (scores > threshold)]
    fn = rows[(gold == 1) & (scores <= threshold)]
    # lexsort sorts by its last key first: score, then row.
    fp = fp[np.lexsort((fp, -scores[fp]))]
    fn = fn[np.lexsort((fn, scores[fn]))]
    return {"fp": [int(r) for r in fp[:k]], "fn": [int(r) for r in fn[:k]]}


def cooccurrence(gold: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    """(K, K) counts: [g][p] is the number of memes with gold label g and predicted label p.

    Both are (n, K) 0/1 matrices of one task (empty labels included), so the diagonal counts
    hits and row g off the diagonal says what was predicted instead of (or beside) g.
    """
    gold = np.asarray(gold).astype(int)
    predicted = np.asarray(predicted).astype(int)
    if gold.ndim != 2 or gold.shape != predicted.shape:
        raise ValueError(f"gold and predicted must be equal (n, K) arrays, "
                         f"got {gold.shape} and {predicted.shape}")
    return (gold.T @ predicted).tolist()


def official(gold: np.ndarray, scores: np.ndarray) -> dict:
    """{"roc_auc_micro", "f1_micro"} exactly as the organisers' scorer computes them."""
    gold, scores = _check_shapes(gold, scores)
    return {
        "roc_auc_micro": _auroc(gold, scores, average="micro"),
        # zero_division=0 is the value sklearn's default gives, without its warning.
        "f1_micro": float(f1_score(gold, scores > 0.5, average="micro", zero_division=0)),
    }


def task_report(task: str, gold: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
    """Official micro scores, macro F1, calibration error, and per label precision, recall,
    F1, support, AUROC, average precision and calibration error."""
    labels = LABELS[task]
    gold, scores = _check_shapes(gold, scores)
    if gold.shape[1] != len(labels):
        raise ValueError(f"{task}: expected {len(labels)} columns, got {gold.shape[1]}")
    pred = scores > threshold
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, pred, average=None, labels=list(range(len(labels))), zero_division=0)
    return {
        "roc_auc_micro": _auroc(gold, scores, average="micro"),
        "f1_micro": float(f1_score(gold, pred, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "ece": expected_calibration_error(gold, scores),
        "per_label": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s),
                    "auroc": _auroc(gold[:, j], scores[:, j]),
                    "average_precision": _average_precision(gold[:, j], scores[:, j]),
                    "ece": expected_calibration_error(gold[:, j], scores[:, j])}
            for j, (label, p, r, f, s) in enumerate(zip(labels, precision, recall, f1, support))
        },
    }


def align(memes: Sequence[Meme], ids: Sequence[int],
          scores: dict[str, np.ndarray]) -> tuple[list[Meme], dict[str, np.ndarray]]:
    """The gold memes that have a prediction (in gold order) and their score rows per task.

    Predictions for ids the gold does not know are dropped; raises ValueError on unknown
    tasks, repeated ids, misshapen score matrices, or no overlap at all.
    """
    if not scores:
        raise ValueError(f"no task scores given; expected some of {', '.join(TASKS)}")
    unknown = sorted(set(scores) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown {plural('task', len(unknown))} {unknown}; expected some of "
                         f"{', '.join(TASKS)}")
    row_of: dict[int, int] = {}
    for i, id_ in enumerate(ids):
        id_ = int(id_)
        if id_ in row_of:
            raise ValueError(f"id {id_} predicted twice")
        row_of[id_] = i
    for task, matrix in scores.items():
        if np.shape(matrix) != (len(ids), len(LABELS[task])):
            raise ValueError(f"{task}: expected scores of shape ({len(ids)}, {len(LABELS[task])}),"
                             f" got {np.shape(matrix)}")
    scored = [meme for meme in memes if meme.id in row_of]
    if not scored:
        raise ValueError(
            f"none of the {len(ids)} predicted ids is among the {len(memes)} gold memes")
    rows = [row_of[meme.id] for meme in scored]
    return scored, {task: np.asarray(scores[task], dtype=float)[rows]
                    for task in TASKS if task in scores}


def evaluate(memes: Sequence[Meme], ids: Sequence[int], scores: dict[str, np.ndarray]) -> dict:
    """Score each task in `scores` (rows aligned with `ids`) on the ids that `memes` label.

    Predictions for ids the gold does not know are ignored and gold memes without a
    prediction are left out; `n_scored` of `n_gold` says how much was covered.
    """
    scored, aligned = align(memes, ids, scores)
    report: dict = {"n_gold": len(memes), "n_scored": len(scored), "hate_auroc_binary": None}
    for task, task_scores in aligned.items():
        gold = gold_matrix(scored, task)
        report[task] = task_report(task, gold, task_scores)
        if task == "hate":  # column 1: its one real label, after the empty one (labels.HATE)
            report["hate_auroc_binary"] = _auroc(gold[:, 1], task_scores[:, 1])
    return report


HEADLINE = ("roc_auc_micro", "f1_micro", "f1_macro", "ece")
PER_LABEL = ("precision", "recall", "f1", "auroc", "average_precision", "ece")


def _delta(a: float | None, b: float | None) -> dict:
    return {"a": a, "b": b, "delta": None if a is None or b is None else float(b - a)}


def compare_reports(a: dict, b: dict) -> dict:
    """Per metric {"a", "b", "delta": b - a} for two evaluate() reports of the same gold.

    Covers the hate binary AUROC, each task both score (headline metrics and per label);
    a delta is None where either side is undefined.
    """
    out: dict = {"hate_auroc_binary": _delta(a["hate_auroc_binary"], b["hate_auroc_binary"])}
    for task in TASKS:
        if task not in a or task not in b:
            continue
        out[task] = {
            "headline": {m: _delta(a[task][m], b[task][m]) for m in HEADLINE},
            "per_label": {label: {m: _delta(a[task]["per_label"][label][m],
                                            b[task]["per_label"][label][m]) for m in PER_LABEL}
                          for label in LABELS[task]},
        }
    return out


def disagreements(a: dict[str, np.ndarray], b: dict[str, np.ndarray],
                  k: int = 12) -> list[tuple[int, str, str, float]]:
    """The `k` rows where two aligned score sets differ most, as (row, task, label, |diff|).

    A row's difference is its largest absolute score difference over the tasks both score;
    rows where the two agree exactly are left out. Largest first, ties by row order.
    """
    tasks = [task for task in TASKS if task in a and task in b]
    if not tasks:
        raise ValueError("the two score sets share no task")
    n = len(a[tasks[0]])
    best: list[tuple[float, int, str, str]] = []
    for row in range(n):
        diffs = [(abs(float(a[t][row, j]) - float(b[t][row, j])), t, label)
                 for t in tasks for j, label in enumerate(LABELS[t])]
        diff, task, label = max(diffs, key=lambda d: d[0])
        if diff > 0:
            best.append((-diff, row, task, label))
    best.sort()
    return [(row, task, label, -neg) for neg, row, task, label in best[:k]]
