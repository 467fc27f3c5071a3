"""From written scores to the label sets a person reads: one consistent decision per meme.

Two things are kept apart. The *scores* written to a submission are chosen for the official
metric (micro ROC AUC over the score matrix and micro F1 of `score > 0.5`), which reads every
column on its own: there an empty label above 0.5 beside a real label above 0.5 is allowed,
since each is the metric's best bet for its own column. The *decision* shown to users (the
Python API, the service, the reports' cards) is a label set in which an empty label never
stands beside a real one.

The decision reads scores on which 0.5 is each label's own cut (thresholds already folded in,
see `thresholds.fold`), and nothing else, so that a report made from a submission file shows
what the API shows. For a task:

- only the empty label passes its cut: the empty label;
- real labels pass and the empty label does not: every real label above 0.5;
- both pass: the real labels, unless the empty label's logit leads the best real label's by
  at least MARGIN;
- nothing passes: the empty label if its score is at least the best real label's, otherwise
  the single best real label (the empty label lost, so the meme carries some label).

Across tasks (`decide_all`), the hateful label follows them: hateful when Task A or B shows a
real label.

The empty label's cut is low (it is chosen for micro F1, which its many positives dominate),
so the empty label passing is weak evidence, and weighing it level with a real label that
passed (MARGIN 0) dropped correct real labels. MARGIN was chosen on train's out-of-fold
scores for the mean of the label sets' micro and macro F1, the thresholds' objective (0.5
and 0.625 best, 0 the lowest of the grid 0-1), and checked on dev_seen: experiments/README.md,
"Unseen-like check".
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..labels import LABELS
from .calibration import logit

MARGIN = 0.5


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
        on = tuple(name for name, s in zip(names[1:], real) if s > 0.5)
        if on and empty > 0.5:
            empty_wins = logit(empty) >= logit(real[best]) + MARGIN
        else:
            # With 0.5 every column's cut, comparing scores is comparing margins over the cuts.
            empty_wins = empty >= real[best]
        out.append((names[0],) if empty_wins else on or (names[1 + best],))
    return out


def decide_all(scores: dict[str, np.ndarray]) -> list[dict[str, tuple[str, ...]]]:
    """Per meme, {task: label tuple} for every task in `scores` (rows aligned).

    The hateful label agrees with the tasks: where `scores` holds Task A or B, a meme is shown
    as hateful exactly when one of them shows a real label (pred_hate's 0.5 cut decides only
    without them). Cut on its own, pred_hate contradicted the tasks' label sets, where in the
    gold data a meme is hateful exactly when it has a real label; what following the tasks
    gains, out of fold on train and on dev_seen: experiments/README.md, "Unseen-like check"."""
    tasks = list(scores)
    rows = {t: len(s) for t, s in scores.items()}
    if len(set(rows.values())) > 1:
        raise ValueError(f"scores of different lengths per task: {rows} (rows must be aligned)")
    per_task = {t: decide(t, scores[t]) for t in tasks}
    shown = [t for t in ("pc", "attack") if t in per_task]
    if "hate" in per_task and shown:
        names = LABELS["hate"]
        per_task["hate"] = [
            (names[1],) if any(per_task[t][i][0] != LABELS[t][0] for t in shown) else (names[0],)
            for i in range(len(per_task["hate"]))]
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
