"""Per-label Platt scaling of a run's blended scores, fitted on train's out-of-fold scores.

A run's raw score is an average of K heads' probabilities and a TF-IDF model's: a ranking
within each label, but not a probability that means the same in every column. Two readers
need it to: the decision (`decision.decide` weighs the empty label's score against the best
real label's, a comparison across columns) and the pooled ranking of micro AUROC. So each
column is mapped by a logistic regression on its logit (Platt 1999),

    p' = sigmoid(a * logit(p) + b),

fitted where the thresholds are chosen: on the out-of-fold scores of train. With a > 0 the map
is monotone, so each label's own ranking, AUROC and best threshold stay where they were.

A map may also read side features of each meme and label, `side` of shape (n, K, E):

    p' = sigmoid(a * logit(p) + b + c . side)

train.py gives it what the training data says of the meme's caption twins
(`data.twins.CaptionTwins`); among memes with the same side features the map is still
monotone in p, and memes whose captions the training data lacks all get the same zeros.
Measured in experiments/README.md ("Unseen-like check"): the decided label sets gain 0.01-0.03
macro F1 on both checks, the written scores move within the spread of seeds.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-6
IDENTITY = (1.0, 0.0)


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), p clipped to [EPS, 1 - EPS] so that 0 and 1 stay finite."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _side(side: np.ndarray | None, scores: np.ndarray) -> np.ndarray:
    """`side` checked against `scores` (n, K): (n, K, E), E = 0 when None."""
    if side is None:
        return np.zeros((*scores.shape, 0))
    side = np.asarray(side, dtype=np.float64)
    if side.ndim != 3 or side.shape[:2] != scores.shape:
        raise ValueError(f"calibration: side features {side.shape} do not fit scores "
                         f"{scores.shape} (expected (n, K, E))")
    return side


def fit(gold: np.ndarray, scores: np.ndarray, side: np.ndarray | None = None) -> np.ndarray:
    """(K, 2 + E) parameters (a, b, c...), one row per column of `scores` ((n, K), gold the
    same shape; `side` (n, K, E) or None).

    A column whose gold holds one class only, or whose fit would reverse its ranking (a <= 0:
    a score that carries no signal), keeps the identity map."""
    from sklearn.linear_model import LogisticRegression

    gold, scores = np.asarray(gold), np.asarray(scores)
    if gold.shape != scores.shape or gold.ndim != 2:
        raise ValueError(f"calibration: gold {gold.shape} and scores {scores.shape} differ")
    side = _side(side, scores)
    params = np.zeros((scores.shape[1], 2 + side.shape[2]))
    params[:, :2] = IDENTITY
    x = logit(scores)
    for k in range(scores.shape[1]):
        y = gold[:, k] > 0.5
        if y.all() or not y.any():
            continue
        # C large: a few parameters on thousands of memes need no shrinking towards 0.
        model = LogisticRegression(C=1e4, max_iter=1000).fit(
            np.column_stack([x[:, k], side[:, k]]), y)
        coef = model.coef_[0]
        if coef[0] > 0:
            params[k] = (coef[0], model.intercept_[0], *coef[1:])
    return params


def apply(scores: np.ndarray, params: np.ndarray, side: np.ndarray | None = None) -> np.ndarray:
    """`scores` (n, K) mapped column by column with `fit`'s (K, 2 + E) parameters (and the
    same side features, (n, K, E), when E > 0)."""
    scores, params = np.asarray(scores), np.asarray(params, dtype=np.float64)
    side = _side(side, scores)
    if params.shape != (scores.shape[1], 2 + side.shape[2]):
        raise ValueError(f"calibration: {params.shape} parameters for {scores.shape[1]} columns "
                         f"and {side.shape[2]} side features")
    z = params[:, 0] * logit(scores) + params[:, 1] + np.einsum("nke,ke->nk", side, params[:, 2:])
    return (1 / (1 + np.exp(-z))).astype(np.float32)


def fit_apply(gold: np.ndarray, fit_scores: np.ndarray, scores: np.ndarray,
              choose=None, fit_side: np.ndarray | None = None,
              side: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated, written) `scores`: mapped with parameters fitted on (gold, fit_scores), and
    folded with thresholds chosen by `choose(gold, mapped fit_scores)` (e.g.
    `thresholds.choose_joint`). Without `choose` the written scores are the calibrated ones.
    `fit_side` and `side` are the side features of the two sets (both or neither)."""
    from . import thresholds as th

    if (fit_side is None) != (side is None):
        raise ValueError("calibration: side features for one set of scores but not the other")
    params = fit(gold, fit_scores, fit_side)
    calibrated = apply(scores, params, side)
    if choose is None:
        return calibrated, calibrated
    return calibrated, th.apply(calibrated, choose(gold, apply(fit_scores, params, fit_side)))


def crossfit(gold: np.ndarray, scores: np.ndarray, fold_of: np.ndarray,
             choose=None, side: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold (calibrated, written) scores: fold f's memes are mapped, and folded with
    thresholds (`choose`, as in `fit_apply`), both fitted on the other folds' scores only, so
    no meme's gold reaches its own scores."""
    gold, scores, fold_of = np.asarray(gold), np.asarray(scores), np.asarray(fold_of)
    calibrated = np.empty(scores.shape, dtype=np.float32)
    written = np.empty(scores.shape, dtype=np.float32)
    for f in np.unique(fold_of):
        held = fold_of == f
        fit_side, held_side = (None, None) if side is None else (side[~held], side[held])
        calibrated[held], written[held] = fit_apply(gold[~held], scores[~held], scores[held],
                                                    choose, fit_side, held_side)
    return calibrated, written
