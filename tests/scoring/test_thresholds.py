import numpy as np
from sklearn.metrics import roc_auc_score

from hateful_memes.scoring import thresholds as th


def test_fold_puts_each_threshold_at_one_half_and_keeps_order():
    rng = np.random.default_rng(0)
    s = rng.random((300, 4))
    t = np.array([0.2, 0.5, 0.7, 0.05])
    f = th.fold(s, t)
    np.testing.assert_array_equal(f > 0.5, s > t)
    for k in range(4):
        order = np.argsort(s[:, k], kind="stable")
        assert np.all(np.diff(f[order, k]) >= 0)
    assert f.min() >= 0 and f.max() <= 1
    y = rng.random(300) > 0.5
    assert roc_auc_score(y, f[:, 2]) == roc_auc_score(y, s[:, 2])


def test_fold_keeps_the_cut_for_scores_a_few_float32_steps_from_the_threshold():
    # The folded scores are float32: a score just above a low threshold folds to a hair above
    # 0.5 in float64, which float32 rounds to 0.5 itself, no longer above the official cut.
    for t in (0.05, 0.23, 0.5, 0.71, 0.95):
        t32 = np.float32(t)
        steps = np.arange(-40, 41, dtype=np.float32) * np.spacing(t32)
        s = np.repeat((t32 + steps)[:, None], 2, axis=1)
        f = th.fold(s, np.array([t, t]))
        assert f.dtype == np.float32
        np.testing.assert_array_equal(f > 0.5, s.astype(np.float64) > t, err_msg=f"threshold {t}")
        order = np.argsort(s[:, 0], kind="stable")
        assert np.all(np.diff(f[order, 0]) >= 0)


def test_choose_finds_the_separating_threshold():
    # Label 1 is positive exactly when its score exceeds 0.58, so 0.5 would be wrong.
    gold = np.zeros((6, 2))
    gold[:3, 0] = 1
    gold[3:, 1] = 1
    scores = np.array([[0.9, 0.1], [0.8, 0.58], [0.7, 0.15], [0.2, 0.6], [0.1, 0.65], [0.3, 0.7]])
    t = th.choose(gold, scores)
    assert t[1] == 0.58 and t[0] == 0.5
    folded = th.fold(scores, t)
    assert ((folded > 0.5) == (gold > 0.5)).all()


def test_fold_moves_only_the_scores_near_the_cut():
    rng = np.random.default_rng(3)
    scores = rng.random((2000, 6)).astype(np.float32)
    t = np.array([0.3, 0.2, 0.4, 0.6, 0.1, 0.5])
    out = th.fold(scores, t)
    lo = np.minimum(t - th.BAND, 0.5 - th.BAND)
    hi = np.maximum(t + th.BAND, 0.5 + th.BAND)
    outside = (scores < lo) | (scores > hi)
    assert outside.mean() > 0.5
    np.testing.assert_allclose(out[outside], scores[outside], atol=1e-6)
    np.testing.assert_array_equal(out > 0.5, scores > t)


def test_fold_keeps_micro_auroc_where_a_whole_column_fold_does_not():
    # Calibrated scores: the pooled ranking is already right, a stretched column spoils it.
    rng = np.random.default_rng(4)
    p = rng.beta(0.5, 2.0, size=(3000, 5))
    gold = (rng.random(p.shape) < p).astype(int)
    raw = roc_auc_score(gold, p, average="micro")

    def losses(t):
        whole = np.where(p <= t, 0.5 * p / t, 0.5 + 0.5 * (p - t) / (1 - t))
        return (raw - roc_auc_score(gold, th.fold(p, t), average="micro"),
                raw - roc_auc_score(gold, whole, average="micro"))

    band, whole = losses(th.choose_joint(gold, p))  # thresholds as train.py chooses them
    assert abs(band) < 0.0005 and whole > 0.0005
    band, whole = losses(np.array([0.5, 0.15, 0.2, 0.3, 0.1]))  # far from those: still less
    assert band < whole / 2


def test_choose_joint_trades_macro_for_micro_f1():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(6)
    p = rng.beta(0.6, 2.5, size=(3000, 6))
    gold = (rng.random(p.shape) < p).astype(int)

    def f1s(t):
        pred = th.fold(p, t) > 0.5
        return (f1_score(gold, pred, average="micro"), f1_score(gold, pred, average="macro"))

    own, joint = f1s(th.choose(gold, p)), f1s(th.choose_joint(gold, p))
    assert sum(joint) >= sum(own) - 1e-9
    assert th.choose_joint(gold, p, weight=0.0).tolist() == th.choose(gold, p).tolist()


def test_crossfit_uses_thresholds_from_the_other_fold():
    rng = np.random.default_rng(5)
    scores = rng.random((40, 3)).astype(np.float32)
    gold = (rng.random((40, 3)) > 0.5).astype(float)
    out = th.crossfit(gold, scores, folds=2, seed=0)
    fold_of = np.random.default_rng(0).permutation(40) % 2
    for f in range(2):
        held = fold_of == f
        expected = th.apply(scores[held], th.choose_joint(gold[~held], scores[~held]))
        np.testing.assert_array_equal(out[held], expected)
    # In-sample thresholds fit noise: they score at least as well on their own memes.
    in_sample = th.apply(scores, th.choose(gold, scores))
    from sklearn.metrics import f1_score
    assert (f1_score(gold, in_sample > 0.5, average="macro")
            >= f1_score(gold, out > 0.5, average="macro"))
