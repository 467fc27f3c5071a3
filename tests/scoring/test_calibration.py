"""scoring/calibration.py: Platt maps recover a known miscalibration, keep each label's ranking,
leave signal-less columns alone, and the out-of-fold version never reads a fold's own gold."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hateful_memes.scoring import calibration
from hateful_memes.scoring import thresholds as th


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _miscalibrated(n, seed, a=(2.0, 0.5), b=(-1.0, 0.7)):
    """Scores whose true probability is sigmoid(a * logit(score) + b), column by column."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, len(a)))
    truth = _sigmoid(np.asarray(a) * z + np.asarray(b))
    gold = (rng.random(truth.shape) < truth).astype(np.float32)
    return gold, _sigmoid(z).astype(np.float32)


def test_fit_recovers_the_map_that_made_the_scores():
    gold, scores = _miscalibrated(20000, 0)
    params = calibration.fit(gold, scores)
    np.testing.assert_allclose(params, [[2.0, -1.0], [0.5, 0.7]], atol=0.1)
    # Logistic regression with an intercept matches the label frequency on its own data.
    np.testing.assert_allclose(calibration.apply(scores, params).mean(0), gold.mean(0),
                               atol=1e-3)


def test_the_map_keeps_each_labels_ranking_and_lowers_log_loss():
    gold, scores = _miscalibrated(4000, 1)
    mapped = calibration.apply(scores, calibration.fit(gold, scores))
    for k in range(2):
        assert roc_auc_score(gold[:, k], mapped[:, k]) == pytest.approx(
            roc_auc_score(gold[:, k], scores[:, k]))

    def log_loss(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return -np.mean(gold * np.log(p) + (1 - gold) * np.log(1 - p))

    assert log_loss(mapped) < log_loss(scores) - 0.01


def test_a_column_without_signal_or_one_class_keeps_the_identity():
    rng = np.random.default_rng(2)
    scores = rng.uniform(0.05, 0.95, (500, 3)).astype(np.float32)
    gold = np.stack([np.zeros(500), np.ones(500),
                     (scores[:, 2] < 0.5).astype(float)], 1)  # the third ranks backwards
    params = calibration.fit(gold, scores)
    np.testing.assert_array_equal(params, np.tile(calibration.IDENTITY, (3, 1)))
    np.testing.assert_allclose(calibration.apply(scores, params), scores, atol=1e-6)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="differ"):
        calibration.fit(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="parameters for 3 columns"):
        calibration.apply(np.zeros((4, 3)), np.zeros((2, 2)))


def test_out_of_fold_scores_of_a_fold_ignore_its_gold():
    gold, scores = _miscalibrated(900, 3)
    fold_of = np.arange(900) % 3
    cal, written = calibration.crossfit(gold, scores, fold_of, th.choose_joint)
    held = fold_of == 1
    shuffled = gold.copy()
    shuffled[held] = shuffled[held][np.random.default_rng(4).permutation(held.sum())]
    cal2, written2 = calibration.crossfit(shuffled, scores, fold_of, th.choose_joint)
    np.testing.assert_array_equal(cal[held], cal2[held])
    np.testing.assert_array_equal(written[held], written2[held])
    assert not np.array_equal(cal[~held], cal2[~held])
    # Fold 1's scores are its blend mapped by the fit on folds 0 and 2, thresholds folded in.
    params = calibration.fit(gold[~held], scores[~held])
    np.testing.assert_allclose(cal[held], calibration.apply(scores[held], params), atol=1e-6)
    t = th.choose_joint(gold[~held], calibration.apply(scores[~held], params))
    np.testing.assert_allclose(written[held], th.apply(cal[held], t), atol=1e-6)
    # Without a chooser the written scores are the calibrated ones.
    np.testing.assert_array_equal(*calibration.crossfit(gold, scores, fold_of))


def test_side_features_of_zeros_give_the_plain_map():
    gold, scores = _miscalibrated(4000, 5)
    plain = calibration.fit(gold, scores)
    with_side = calibration.fit(gold, scores, np.zeros((*scores.shape, 3)))
    assert with_side.shape == (2, 5)
    np.testing.assert_allclose(with_side[:, :2], plain, atol=1e-3)
    np.testing.assert_allclose(with_side[:, 2:], 0, atol=1e-6)
    np.testing.assert_allclose(calibration.apply(scores, with_side, np.zeros((*scores.shape, 3))),
                               calibration.apply(scores, plain), atol=1e-4)


def test_side_features_that_carry_signal_are_learnt():
    rng = np.random.default_rng(6)
    n = 20000
    z = rng.normal(0, 1.5, (n, 1))
    flag = (rng.random((n, 1)) < 0.3).astype(np.float64)
    # Memes with the flag are positive more often than their score says: +1.5 on the logit.
    gold = (rng.random((n, 1)) < _sigmoid(z + 1.5 * flag)).astype(np.float32)
    scores, side = _sigmoid(z).astype(np.float32), flag[:, :, None]
    params = calibration.fit(gold, scores, side)
    np.testing.assert_allclose(params[0], [1.0, 0.0, 1.5], atol=0.12)
    mapped = calibration.apply(scores, params, side)
    assert roc_auc_score(gold[:, 0], mapped[:, 0]) > roc_auc_score(gold[:, 0], scores[:, 0]) + 0.01
    # The out-of-fold version passes each fold its own side features.
    fold_of = np.arange(n) % 4
    cal, _ = calibration.crossfit(gold, scores, fold_of, side=side)
    held = fold_of == 2
    np.testing.assert_allclose(cal[held], calibration.apply(
        scores[held], calibration.fit(gold[~held], scores[~held], side[~held]), side[held]),
        atol=1e-6)


def test_side_features_must_fit_the_scores_and_both_sets():
    gold, scores = _miscalibrated(200, 7)
    with pytest.raises(ValueError, match="do not fit scores"):
        calibration.fit(gold, scores, np.zeros((200, 3, 1)))
    params = calibration.fit(gold, scores, np.zeros((200, 2, 1)))
    with pytest.raises(ValueError, match="1 side features"):
        calibration.apply(scores, params[:, :2], np.zeros((200, 2, 1)))
    with pytest.raises(ValueError, match="0 side features"):
        calibration.apply(scores, params)
    with pytest.raises(ValueError, match="one set of scores but not the other"):
        calibration.fit_apply(gold, scores, scores, fit_side=np.zeros((200, 2, 1)))
