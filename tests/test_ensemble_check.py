"""experiments/ensemble_check.py: the chosen TF-IDF weights and thresholds use no gold label of
the memes they score, the weights follow the view that carries the label, a bag averages its
seeds, and the default's chooser gives unseen_check's written scores."""

import numpy as np
import pytest

from conftest import experiment_script


@pytest.fixture(scope="module")
def ens():
    with experiment_script("ensemble_check") as module:
        yield module


def _run(n, seed, task="pc"):
    """A run of a 3-label task: the heads see label 1, TF-IDF sees label 2, label 0 (empty)
    is seen by both; the hateful score is seen by the heads."""
    rng = np.random.default_rng(seed)
    one, two = rng.random(n) < 0.3, rng.random(n) < 0.3
    gold = np.stack([~(one | two), one, two], axis=1).astype(np.float32)
    hate = np.stack([~(one | two), one | two], axis=1).astype(np.float32)

    def noisy(y, sd):
        return np.clip(y + rng.normal(0, sd, y.shape), 0.01, 0.99).astype(np.float32)

    heads = np.stack([noisy(gold[:, 0], 0.4), noisy(gold[:, 1], 0.3),
                      rng.uniform(0.01, 0.99, n)], axis=1).astype(np.float32)
    tfidf = np.stack([noisy(gold[:, 0], 0.4), rng.uniform(0.01, 0.99, n),
                      noisy(gold[:, 2], 0.3)], axis=1).astype(np.float32)
    h_heads = noisy(hate[:, 1], 0.3)
    h_tfidf = rng.uniform(0.01, 0.99, n).astype(np.float32)
    run = {"oof": {"heads": {task: heads, "hate": np.stack([1 - h_heads, h_heads], 1)},
                   "tfidf": {task: tfidf, "hate": np.stack([1 - h_tfidf, h_tfidf], 1)}}}
    run["dev"] = {k: {t: v[:40] for t, v in d.items()} for k, d in run["oof"].items()}
    return {task: gold, "hate": hate}, run


def test_weights_follow_the_view_that_carries_the_label(ens):
    gold, run = _run(600, 0)
    for how in ("auroc", "logloss"):
        w = ens.run_weights(gold, run["oof"]["heads"], run["oof"]["tfidf"], "pc", how)
        assert w["pc"][1] == 0.0 and w["pc"][2] == 1.0
        assert w["hate"][0] == 0.0
    w = ens.run_weights(gold, run["oof"]["heads"], run["oof"]["tfidf"], "pc", "task")
    assert len(set(w["pc"])) == 1 and w["hate"][0] == w["pc"][0]


def _sides(n, n_dev, seed, widths=(("hate", 2), ("pc", 3))):
    """Twin-like side features, (n, K, 3) and (n_dev, K, 3), for columns of these widths."""
    rng = np.random.default_rng(seed)

    def one(k, m):
        has = (rng.random(m) < 0.3).astype(np.float32)
        side = rng.random((m, k, 3)).astype(np.float32) * has[:, None, None]
        side[:, :, 0] = has[:, None]
        return side

    return {t: (one(k, n), one(k, n_dev)) for t, k in widths}


@pytest.mark.parametrize("twins", [False, True])
@pytest.mark.parametrize("how", ["auroc", "logloss", "task"])
def test_train_check_scores_of_a_fold_ignore_its_gold(ens, how, twins):
    gold, run = _run(300, 1)
    fold_of = np.arange(300) % 3
    sides = _sides(300, 40, 9) if twins else None
    a = ens.weighted_run(gold, run, "pc", fold_of, how, sides)
    held = fold_of == 0
    shuffled = {t: g.copy() for t, g in gold.items()}
    order = np.random.default_rng(2).permutation(held.sum())
    for t in shuffled:
        shuffled[t][held] = shuffled[t][held][order]
    b = ens.weighted_run(shuffled, run, "pc", fold_of, how, sides)
    for t in ("pc", "hate"):
        assert np.array_equal(a["oof"][t][held], b["oof"][t][held])
    # The shuffle did reach what may read fold 0: the other folds' thresholds, or dev's.
    assert not (np.array_equal(a["oof"]["pc"][~held], b["oof"]["pc"][~held])
                and np.array_equal(a["dev"]["pc"], b["dev"]["pc"]))


def test_a_bag_averages_its_seeds_and_one_seed_is_itself(ens):
    runs = []
    for seed in (3, 4):
        per_task = {}
        for task in ("pc", "attack"):
            _, run = _run(50, seed * 10 + len(task), task)
            blend = {t: ens._mix(run["oof"]["heads"][t], run["oof"]["tfidf"][t], 0.5)
                     for t in (task, "hate")}
            per_task[task] = {"oof": {"blend": blend}, "dev": {"blend": blend}}
        runs.append(per_task)
    one = ens.bag(runs[:1], "oof")
    assert np.allclose(one["pc"], runs[0]["pc"]["oof"]["blend"]["pc"])
    two = ens.bag(runs, "oof")
    assert np.allclose(two["attack"], (runs[0]["attack"]["oof"]["blend"]["attack"]
                                       + runs[1]["attack"]["oof"]["blend"]["attack"]) / 2)
    hate = [(r["pc"]["oof"]["blend"]["hate"] + r["attack"]["oof"]["blend"]["hate"]) / 2
            for r in runs]
    assert np.allclose(two["hate"], (hate[0] + hate[1]) / 2)


def test_written_with_the_default_chooser_is_unseen_checks(ens):
    rng = np.random.default_rng(5)
    n = 120
    gold = {"pc": (rng.random((n, 6)) < 0.3).astype(np.float32),
            "attack": (rng.random((n, 8)) < 0.3).astype(np.float32),
            "hate": np.eye(2, dtype=np.float32)[rng.integers(0, 2, n)]}
    oof = {t: np.clip(g + rng.normal(0, 0.5, g.shape), 0, 1).astype(np.float32)
           for t, g in gold.items()}
    dev = {t: s[:30] for t, s in oof.items()}
    fold_of = np.arange(n) % 4
    mine = ens.written(gold, oof, dev, fold_of)
    theirs = ens.uc.treatments(gold, oof, dev, fold_of)["written (thresholds folded)"]
    for side in (0, 1):
        for t in ("pc", "attack", "hate"):
            assert np.array_equal(mine[side][t], theirs[side][t])
    # With the caption twins' features, as the default's maps read them.
    twins = _sides(n, 30, 6, (("pc", 6), ("attack", 8)))
    with_twins = ens.written(gold, oof, dev, fold_of, sides=twins)
    theirs = ens.uc.treatments(gold, oof, dev, fold_of, twins)["written (thresholds folded)"]
    for side in (0, 1):
        for t in ("pc", "attack"):
            assert np.array_equal(with_twins[side][t], theirs[side][t])
    assert not np.array_equal(with_twins[1]["pc"], mine[1]["pc"])
    other = ens.written(gold, oof, dev, fold_of,
                        lambda g, s: np.full(g.shape[1], 0.9))
    assert not np.array_equal(other[0]["pc"], mine[0]["pc"])
