"""From written scores to the label sets a person reads: one consistent decision per meme.

Two things are kept apart. The *scores* written to a submission are chosen for the official
metric (micro ROC AUC over the score matrix and micro F1 of `score > 0.5`), which reads every
column on its own: there an empty label above 0.5 beside a real label above 0.5 is allowed,
since each is the metric's best bet for its own column. The *decision* shown to users (the
Python API, the service, the reports' cards) is a label set in which an empty label never
stands beside a real one.

The decision reads scores on which 0.5 is each label's own cut (thresholds already folded in,
see `thresholds.fold`). For a task: the empty label wins when its margin over 0.5 is at least
the best real label's; otherwise the meme carries every real label above 0.5, or, when
none is, the single best real label (the empty label lost, so the meme carries some label).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..labels import LABELS


def decide(task: str, scores: np.ndarray) -> list[tuple[str, ...]]:
    """One label tuple per row of `scores` ((n, K) in LABELS[task] order, 0.5 the cut)."""
    names = LABELS[task]
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] != len(names):
        raise ValueError(f"{task}: expected (n, {len(names)}) scores, got {scores.shape}")
    if task == "hate":
        return [(names[1],) if row[1] > 0.5 else (names[0],) for row in scores]
    out = []
    for row in scores:
        empty, real = row[0], row[1:]
        best = int(np.argmax(real))
        # Margins over each label's own cut: with 0.5 the cut of every column, comparing
        # margins is comparing the scores.
        if empty >= real[best]:
            out.append((names[0],))
            continue
        on = tuple(name for name, s in zip(names[1:], real) if s > 0.5)
        out.append(on or (names[1 + best],))
    return out


def decide_all(scores: dict[str, np.ndarray]) -> list[dict[str, tuple[str, ...]]]:
    """Per meme, {task: label tuple} for every task in `scores` (rows aligned)."""
    tasks = list(scores)
    per_task = {t: decide(t, scores[t]) for t in tasks}
    n = len(next(iter(per_task.values()))) if per_task else 0
    return [{t: per_task[t][i] for t in tasks} for i in range(n)]


def multi_hot(task: str, decided: Sequence[tuple[str, ...]]) -> np.ndarray:
    """(n, K) 0/1 matrix of decided label tuples, for scoring a decision like gold."""
    names = LABELS[task]
    out = np.zeros((len(decided), len(names)), dtype=np.float32)
    for i, labels in enumerate(decided):
        for label in labels:
            out[i, names.index(label)] = 1.0
    return out
