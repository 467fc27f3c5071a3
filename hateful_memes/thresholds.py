"""Per-label decision thresholds chosen on dev, folded into the scores.

The official metric cuts every score at 0.5. Rare labels are seldom scored above 0.5, so a
per-label threshold t chosen on dev helps their F1. `fold` maps each score monotonically so
that t lands on 0.5: the official cut then applies t, and each label's own ranking (hence its
AUROC) is unchanged.

Consistency: with the gate design the empty label is on when gate < 1 - t_empty and a real
label k is on when gate * cond_k > t_k. Both at once need t_k < 1 - t_empty, so every real
threshold is chosen at or above 1 - t_empty and an empty label never stands beside a real one.
"""
from __future__ import annotations

import numpy as np

_GRID = np.round(np.arange(0.05, 0.951, 0.01), 4)


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float(np.sum(pred & y))
    denom = float(np.sum(pred) + np.sum(y))
    return 2 * tp / denom if denom else 0.0


def _best(y: np.ndarray, s: np.ndarray, grid: np.ndarray) -> float:
    y = y > 0.5
    f1s = [_f1(y, s > t) for t in grid]
    best = max(f1s)
    # Among equal F1s take the threshold nearest 0.5: the least change from the default.
    ties = [t for t, f in zip(grid, f1s) if f == best]
    return float(min(ties, key=lambda t: abs(t - 0.5)))


def choose(gold: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-label thresholds (column 0 is the empty label) maximising each label's dev F1."""
    gold, scores = np.asarray(gold), np.asarray(scores)
    t = np.full(gold.shape[1], 0.5)
    t[0] = _best(gold[:, 0], scores[:, 0], _GRID)
    floor = 1.0 - t[0]
    allowed = _GRID[_GRID >= floor - 1e-9]
    for k in range(1, gold.shape[1]):
        t[k] = _best(gold[:, k], scores[:, k], allowed if len(allowed) else np.array([floor]))
    return t


def fold(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Piecewise-linear, monotone map of each column taking [0, t] to [0, .5] and [t, 1] to [.5, 1]."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)[None, :]
    low = 0.5 * s / t
    high = 0.5 + 0.5 * (s - t) / (1.0 - t)
    # A score exactly at t must stay on the "off" side, as `score > t` was off.
    out = np.where(s <= t, np.minimum(low, 0.5), high)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
