import numpy as np
from sklearn.metrics import roc_auc_score

from hateful_memes import thresholds as th


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


def test_apply_keeps_the_empty_label_consistent_and_real_labels_untouched():
    rng = np.random.default_rng(3)
    scores = rng.random((400, 6)).astype(np.float32)
    t = np.array([0.3, 0.2, 0.4, 0.6, 0.1, 0.5])
    out = th.apply(scores, t)
    on = out > 0.5
    assert not (on[:, 0] & on[:, 1:].any(axis=1)).any()
    np.testing.assert_array_equal(out[:, 1:], th.fold(scores, t)[:, 1:])
    # Rows with no real label on keep the folded empty score.
    free = ~on[:, 1:].any(axis=1)
    assert free.any()
    np.testing.assert_array_equal(out[free, 0], th.fold(scores, t)[free, 0])


def test_crossfit_uses_thresholds_from_the_other_fold():
    rng = np.random.default_rng(5)
    scores = rng.random((40, 3)).astype(np.float32)
    gold = (rng.random((40, 3)) > 0.5).astype(float)
    out = th.crossfit(gold, scores, folds=2, seed=0)
    fold_of = np.random.default_rng(0).permutation(40) % 2
    for f in range(2):
        held = fold_of == f
        expected = th.apply(scores[held], th.choose(gold[~held], scores[~held]))
        np.testing.assert_array_equal(out[held], expected)
    # In-sample thresholds fit noise: they score at least as well on their own memes.
    in_sample = th.apply(scores, th.choose(gold, scores))
    from sklearn.metrics import f1_score
    assert (f1_score(gold, in_sample > 0.5, average="macro")
            >= f1_score(gold, out > 0.5, average="macro"))
