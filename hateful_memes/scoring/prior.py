"""Scores moved to another hateful prevalence (Saerens, Latinne and Decaestecker 2002).

A model trained where a fraction `train` of memes is hateful gives posteriors for that
prevalence. Where the rate is `target` (a platform knows its own rate better than any dev
split: dev_seen is 49% hateful, train 35%, the unseen splits about 37%, a deployment far
less), Bayes' rule rescales each posterior by the ratio of the priors:

    p' = r1 p / (r1 p + r0 (1 - p)),   r1 = target / train,   r0 = (1 - target) / (1 - train).

For the fine-grained tasks the same rescaling moves P(some label) = 1 - empty, and the real
labels, which live inside it (label = gate * P(label | some label)), are scaled with it.
`estimate` finds the target rate of an unlabelled set by the paper's EM: adjust the posteriors
to the current estimate, take their mean as the next one, until it stops moving.
"""
from __future__ import annotations

import numpy as np


def _check_rate(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a prevalence strictly between 0 and 1, got {value}")
    return value


def rescale(p: np.ndarray, train: float, target: float) -> np.ndarray:
    """Posteriors `p` of the positive class moved from prevalence `train` to `target`."""
    train, target = _check_rate("train prior", train), _check_rate("prior", target)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    r1, r0 = target / train, (1 - target) / (1 - train)
    num = r1 * p
    den = num + r0 * (1 - p)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def adjust(scores: dict[str, np.ndarray], train: float, target: float) -> dict[str, np.ndarray]:
    """Every task's scores (LABELS order, column 0 the empty label) moved to `target`."""
    out = {}
    for task, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        some = 1.0 - s[:, 0]  # hate: P(hateful); fine-grained tasks: P(some label)
        moved = rescale(some, train, target)
        ratio = np.divide(moved, some, out=np.ones_like(some), where=some > 0)
        new = np.empty_like(s)
        new[:, 0] = 1.0 - moved
        new[:, 1:] = np.clip(s[:, 1:] * ratio[:, None], 0.0, 1.0)
        out[task] = new.astype(np.float32)
    return out


def estimate(p_hateful: np.ndarray, train: float, tol: float = 1e-6,
             max_iter: int = 1000) -> float:
    """The hateful prevalence of the memes whose posteriors (at prevalence `train`) are
    `p_hateful`, by Saerens et al.'s EM."""
    train = _check_rate("train prior", train)
    p = np.asarray(p_hateful, dtype=np.float64)
    if p.size == 0:
        raise ValueError("cannot estimate a prevalence from no memes")
    target = train
    for _ in range(max_iter):
        new = float(np.clip(rescale(p, train, target).mean(), 1e-6, 1 - 1e-6))
        if abs(new - target) < tol:
            return new
        target = new
    return target
