"""The shared task's metric, and the per-label view that shows what it hides.

The official score (the organisers' scripts/scorer.py) is micro-averaged ROC AUC over the
(n, K) score matrix and micro F1 of `scores > 0.5`, both with the empty label counted as a
label. Micro AUROC is dominated by the empty label, which most memes carry: a constant
per-label prior already reaches 0.765 (Task A) on dev_seen. Per-label and macro F1 are
reported beside it because they are what show skill on the protected categories and
attack types themselves.

All results are plain Python floats (or None where a score is undefined) so a report
goes straight to JSON.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

from hateful_memes.data import Meme, gold_matrix
from hateful_memes.labels import LABELS, TASKS


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


def official(gold: np.ndarray, scores: np.ndarray) -> dict:
    """{"roc_auc_micro", "f1_micro"} exactly as the organisers' scorer computes them."""
    gold, scores = _check_shapes(gold, scores)
    return {
        "roc_auc_micro": _auroc(gold, scores, average="micro"),
        # zero_division=0 is the value sklearn's default gives, without its warning.
        "f1_micro": float(f1_score(gold, scores > 0.5, average="micro", zero_division=0)),
    }


def task_report(task: str, gold: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
    """Official micro scores plus macro F1 and precision/recall/F1/support per label."""
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
        "per_label": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
    }


def evaluate(memes: Sequence[Meme], ids: Sequence[int], scores: dict[str, np.ndarray]) -> dict:
    """Score each task in `scores` (rows aligned with `ids`) on the ids that `memes` label.

    Predictions for ids the gold does not know are ignored and gold memes without a
    prediction are left out; `n_scored` of `n_gold` says how much was covered.
    """
    if not scores:
        raise ValueError(f"no task scores given; expected some of {', '.join(TASKS)}")
    unknown = sorted(set(scores) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; expected some of {', '.join(TASKS)}")
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

    report: dict = {"n_gold": len(memes), "n_scored": len(scored), "hate_auroc_binary": None}
    for task in TASKS:
        if task not in scores:
            continue
        gold = gold_matrix(scored, task)
        task_scores = np.asarray(scores[task], dtype=float)[rows]
        report[task] = task_report(task, gold, task_scores)
        if task == "hate":
            hateful = LABELS["hate"].index("hateful")
            report["hate_auroc_binary"] = _auroc(gold[:, hateful], task_scores[:, hateful])
    return report
