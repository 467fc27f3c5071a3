"""Per-label Platt scaling of a run's blended scores, fitted on train's out-of-fold scores.

A run's raw score is an average of K heads' probabilities and a TF-IDF model's: a ranking
within each label, but not a probability that means the same in every column. Two readers
need it to: the decision (`decision.decide` lets the empty label win when its score beats the
best real label's, a comparison across columns) and the pooled ranking of micro AUROC. So each
column is mapped by a logistic regression on its logit (Platt 1999),

    p' = sigmoid(a * logit(p) + b),

fitted where the thresholds are chosen: on the out-of-fold scores of train. With a > 0 the map
is monotone, so each label's own ranking, AUROC and best threshold stay where they were.
Measured in experiments/README.md ("Unseen-like check"): the decided label sets gain 0.01-0.03
macro F1 on both checks, the written scores move within the spread of seeds.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-6
IDENTITY = (1.0, 0.0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def fit(gold: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(K, 2) parameters (a, b), one row per column of `scores` ((n, K), gold the same shape).

    A column whose gold holds one class only, or whose fit would reverse its ranking (a <= 0:
    a score that carries no signal), keeps the identity map."""
    from sklearn.linear_model import LogisticRegression

    gold, scores = np.asarray(gold), np.asarray(scores)
    if gold.shape != scores.shape or gold.ndim != 2:
        raise ValueError(f"calibration: gold {gold.shape} and scores {scores.shape} differ")
    params = np.tile(np.array(IDENTITY), (scores.shape[1], 1))
    x = _logit(scores)
    for k in range(scores.shape[1]):
        y = gold[:, k] > 0.5
        if y.all() or not y.any():
            continue
        # C large: two parameters on thousands of memes need no shrinking towards 0.
        model = LogisticRegression(C=1e4, max_iter=1000).fit(x[:, k:k + 1], y)
        a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
        if a > 0:
            params[k] = (a, b)
    return params


def apply(scores: np.ndarray, params: np.ndarray) -> np.ndarray:
    """`scores` (n, K) mapped column by column with `fit`'s (K, 2) parameters."""
    scores, params = np.asarray(scores), np.asarray(params, dtype=np.float64)
    if params.shape != (scores.shape[1], 2):
        raise ValueError(f"calibration: {params.shape} parameters for {scores.shape[1]} columns")
    z = params[:, 0] * _logit(scores) + params[:, 1]
    return (1 / (1 + np.exp(-z))).astype(np.float32)


def fit_apply(gold: np.ndarray, fit_scores: np.ndarray, scores: np.ndarray,
              choose=None) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated, written) `scores`: mapped with parameters fitted on (gold, fit_scores), and
    folded with thresholds chosen by `choose(gold, mapped fit_scores)` (e.g.
    `thresholds.choose_joint`). Without `choose` the written scores are the calibrated ones."""
    from . import thresholds as th

    params = fit(gold, fit_scores)
    calibrated = apply(scores, params)
    if choose is None:
        return calibrated, calibrated
    return calibrated, th.apply(calibrated, choose(gold, apply(fit_scores, params)))


def crossfit(gold: np.ndarray, scores: np.ndarray, fold_of: np.ndarray,
             choose=None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold (calibrated, written) scores: fold f's memes are mapped, and folded with
    thresholds (`choose`, as in `fit_apply`), both fitted on the other folds' scores only, so
    no meme's gold reaches its own scores."""
    gold, scores, fold_of = np.asarray(gold), np.asarray(scores), np.asarray(fold_of)
    calibrated = np.empty(scores.shape, dtype=np.float32)
    written = np.empty(scores.shape, dtype=np.float32)
    for f in np.unique(fold_of):
        held = fold_of == f
        calibrated[held], written[held] = fit_apply(gold[~held], scores[~held], scores[held],
                                                    choose)
    return calibrated, written
