"""experiments/cooc_check.py: the stacked second stage uses no gold label of the memes it scores,
and it does read the other labels' scores (what co-occurrence is for)."""

import numpy as np
import pytest

from conftest import experiment_script


@pytest.fixture(scope="module")
def cooc():
    with experiment_script("cooc_check") as module:
        yield module


def _task(n, seed):
    """Label 1 is seen by its first-stage score; label 2 goes with label 1 but its own score
    is noise; label 0 (empty) is on when neither is."""
    rng = np.random.default_rng(seed)
    one = rng.random(n) < 0.4
    two = one & (rng.random(n) < 0.8)
    gold = np.stack([~one, one, two], axis=1).astype(np.float32)
    first = np.stack([np.clip(1 - one + rng.normal(0, 0.3, n), 0.01, 0.99),
                      np.clip(one + rng.normal(0, 0.3, n), 0.01, 0.99),
                      rng.uniform(0.01, 0.99, n)], axis=1).astype(np.float32)
    hate = np.stack([1 - first[:, 1], first[:, 1]], axis=1)
    return gold, first, hate


def test_train_check_scores_of_a_fold_ignore_its_gold(cooc):
    gold, first, hate = _task(240, 0)
    fold_of = np.arange(240) % 3
    x = cooc.features(first, hate)
    a = cooc.second_stage(gold, first, x, first[:20], x[:20], fold_of, 1.0)
    shuffled = gold.copy()
    held = fold_of == 0
    shuffled[held] = np.random.default_rng(1).permutation(shuffled[held])
    b = cooc.second_stage(shuffled, first, x, first[:20], x[:20], fold_of, 1.0)
    for kind in ("raw", "written"):
        assert np.array_equal(a[kind][0][held], b[kind][0][held])
    # The shuffle did reach the stackers that may read fold 0: dev's, fitted on all of train.
    assert not np.array_equal(a["raw"][1], b["raw"][1])


def test_stacker_reads_the_other_labels(cooc):
    from sklearn.metrics import roc_auc_score

    gold, first, hate = _task(300, 2)
    fold_of = np.arange(300) % 3
    x = cooc.features(first, hate)
    raw_oof = cooc.second_stage(gold, first, x, first, x, fold_of, 1.0)["raw"][0]
    assert roc_auc_score(gold[:, 2], first[:, 2]) < 0.65
    assert roc_auc_score(gold[:, 2], raw_oof[:, 2]) > 0.8


def test_stacker_reads_the_caption_twins(cooc):
    """A label that only the twins' label shares carry is learnt once they are given."""
    from sklearn.metrics import roc_auc_score

    gold, first, hate = _task(300, 3)
    rng = np.random.default_rng(4)
    side = np.zeros((300, 3, 3))
    side[:, :, 0] = 1.0
    side[:, :, 1] = rng.random((300, 1))
    side[:, :, 2] = rng.random((300, 3))
    gold[:, 2] = side[:, 2, 2] > 0.6
    fold_of = np.arange(300) % 3
    x = cooc.features(first, hate, side=side)
    assert x.shape == (300, 3 + 1 + 2 + 3)
    raw_oof = cooc.second_stage(gold, first, x, first, x, fold_of, 1.0)["raw"][0]
    plain = cooc.features(first, hate)
    raw_plain = cooc.second_stage(gold, first, plain, first, plain, fold_of, 1.0)["raw"][0]
    assert roc_auc_score(gold[:, 2], raw_plain[:, 2]) < 0.65
    assert roc_auc_score(gold[:, 2], raw_oof[:, 2]) > 0.9
