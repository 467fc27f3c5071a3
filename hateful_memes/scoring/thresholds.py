"""Per-label decision thresholds, chosen out of fold on train, folded into the scores.

The official metric cuts every score at 0.5 (micro F1) and pools every cell of the score matrix
into one ranking (micro ROC AUC). Rare labels are seldom scored above 0.5, so a per-label
threshold t helps their F1. `fold` maps each column monotonically so that t lands on 0.5 and
moves as few scores as it can: only those in a narrow band around t and 0.5 change, every other
score keeps its value. The official cut then applies t, each label's own ranking is unchanged,
and the pooled ranking that micro AUROC reads moves only inside the bands (a piecewise-linear
fold of the whole column, [0, t] onto [0, .5], cost 0.003-0.006 micro AUROC out of fold on
train; this one costs none measurable: experiments/README.md, "Unseen-like check").

Thresholds are chosen by `choose_joint`, for the mean of micro and macro F1: each label's own
best F1 (`choose`) gives the best macro F1 but fires rare labels often enough to lower micro F1,
which most memes' empty label decides. Consistency (an empty label never beside a real one) is
not the scores' business: the official metric reads every column on its own. The label sets a
person reads are decided from these scores by `decision.decide`.
"""
from __future__ import annotations

import numpy as np

GRID = np.round(np.arange(0.05, 0.951, 0.01), 4)
BAND = 0.02


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
    """Per-label thresholds maximising each label's F1 on (gold, scores)."""
    gold, scores = np.asarray(gold), np.asarray(scores)
    return np.array([_best(gold[:, k], scores[:, k], GRID) for k in range(gold.shape[1])])


def _counts(gold: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(K, len(GRID), 3): true positives, false positives, false negatives per cut."""
    y = np.asarray(gold) > 0.5
    s = np.asarray(scores)
    pred = s[:, :, None] > GRID[None, None, :]                       # (n, K, G)
    tp = (pred & y[:, :, None]).sum(0)
    fp = (pred & ~y[:, :, None]).sum(0)
    fn = y.sum(0)[:, None] - tp
    return np.stack([tp, fp, fn], axis=-1).astype(np.float64)


def _f1_of(c: np.ndarray) -> np.ndarray:
    denom = 2 * c[..., 0] + c[..., 1] + c[..., 2]
    return np.divide(2 * c[..., 0], denom, out=np.zeros_like(denom), where=denom > 0)


def choose_joint(gold: np.ndarray, scores: np.ndarray, weight: float = 0.5,
                 passes: int = 3) -> np.ndarray:
    """Per-label thresholds maximising `weight` * micro F1 + (1 - weight) * macro F1.

    Coordinate ascent from each label's own best threshold: a few passes over the labels, each
    moving one threshold to its best cut given the others (the counts are precomputed, so a pass
    costs K x len(GRID) sums)."""
    gold, scores = np.asarray(gold), np.asarray(scores)
    counts = _counts(gold, scores)
    k_labels = counts.shape[0]
    rows = np.arange(k_labels)
    idx = np.array([int(np.argmin(np.abs(GRID - t))) for t in choose(gold, scores)])

    def objective(idx):
        c = counts[rows, idx]
        return weight * _f1_of(c.sum(0)) + (1 - weight) * _f1_of(c).mean()

    best = objective(idx)
    for _ in range(passes):
        moved = False
        for k in range(k_labels):
            for j in range(len(GRID)):
                trial = idx.copy()
                trial[k] = j
                value = objective(trial)
                if value > best + 1e-12:
                    best, idx, moved = value, trial, True
        if not moved:
            break
    return GRID[idx].astype(float)


def fold(scores: np.ndarray, thresholds: np.ndarray, band: float = BAND) -> np.ndarray:
    """Monotone map of each column taking its threshold t to the 0.5 cut (`score > t` becomes
    `score > 0.5`), the identity outside [t - band, 0.5 + band] (t < 0.5) or
    [0.5 - band, t + band] (t >= 0.5)."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    out = np.empty(s.shape, dtype=np.float32)
    for k in range(s.shape[1]):
        tk = float(t[k])
        if tk < 0.5:
            lo = max(tk - band, 0.0)
            xs, ys = [0.0, lo, tk, 0.5 + band, 1.0], [0.0, lo, 0.5, 0.5 + band, 1.0]
        else:
            hi = min(tk + band, 1.0)
            xs, ys = [0.0, 0.5 - band, tk, hi, 1.0], [0.0, 0.5 - band, 0.5, hi, 1.0]
        # In float32, what is written: a score a few float32 steps above a low threshold
        # folds to within float32's step of 0.5, and the cast would round it to 0.5 itself.
        col = np.clip(np.interp(s[:, k], xs, ys), 0.0, 1.0).astype(np.float32)
        # `score > t` decides the side exactly, whatever float rounding did near the kink.
        above = s[:, k] > tk
        col[above & (col <= 0.5)] = np.nextafter(np.float32(0.5), np.float32(1.0))
        col[~above & (col > 0.5)] = np.float32(0.5)
        out[:, k] = col
    return out


def apply(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The thresholds folded into one task's scores (what a submission holds)."""
    return fold(scores, thresholds)


def crossfit(gold: np.ndarray, scores: np.ndarray, folds: int = 2, seed: int = 0,
             fold_of: np.ndarray | None = None, choose_fn=choose_joint) -> np.ndarray:
    """Scores with thresholds applied out of fold: each fold's thresholds come from the others.

    Thresholds chosen and scored on the same memes flatter the result; this is the honest
    estimate of what chosen thresholds will do on unseen memes. `fold_of` gives the folds
    (e.g. train.py's K folds), else a seeded random split into `folds`.
    """
    gold, scores = np.asarray(gold), np.asarray(scores)
    n = len(gold)
    if fold_of is None:
        if n < 2 * folds:
            raise ValueError(f"cross-fitting needs at least {2 * folds} memes, got {n}")
        fold_of = np.random.default_rng(seed).permutation(n) % folds
    out = np.empty_like(scores, dtype=np.float32)
    for f in np.unique(fold_of):
        held = fold_of == f
        out[held] = apply(scores[held], choose_fn(gold[~held], scores[~held]))
    return out
