"""experiments/unseen_check.py: its rows are the official metric, and dev_seen weighted to the
unseen prevalence counts each meme as that many copies of it."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from conftest import experiment_script
from hateful_memes.evaluation.metrics import official


@pytest.fixture(scope="module")
def uc():
    with experiment_script("unseen_check") as module:
        yield module


def _scored(n, seed):
    rng = np.random.default_rng(seed)
    hateful = rng.random(n) < 0.5
    gold, scores = {}, {}
    for task, k in (("pc", 6), ("attack", 8)):
        real = (rng.random((n, k - 1)) < 0.3) & hateful[:, None]
        real[hateful & ~real.any(1), rng.integers(0, k - 1)] = True
        gold[task] = np.concatenate([~hateful[:, None], real], 1).astype(np.float32)
        scores[task] = np.clip(gold[task] + rng.normal(0, 0.45, (n, k)), 0, 1).astype(np.float32)
    gold["hate"] = np.stack([~hateful, hateful], 1).astype(np.float32)
    h = np.clip(hateful + rng.normal(0, 0.6, n), 0, 1)
    scores["hate"] = np.stack([1 - h, h], 1).astype(np.float32)
    return gold, scores


def test_unweighted_row_is_the_official_metric_and_macro_f1(uc):
    gold, scores = _scored(300, 0)
    row = uc.scores_row(gold, scores)
    for task in ("pc", "attack"):
        o = official(gold[task], scores[task])
        macro = f1_score(gold[task], scores[task] > 0.5, average="macro", zero_division=0)
        assert row[task] == pytest.approx((o["roc_auc_micro"], o["f1_micro"], macro))


def test_integer_weights_count_a_meme_as_that_many_copies(uc):
    gold, scores = _scored(200, 1)
    w = np.random.default_rng(2).integers(1, 4, 200)
    rep = np.repeat(np.arange(200), w)
    copied = uc.scores_row({t: g[rep] for t, g in gold.items()},
                           {t: s[rep] for t, s in scores.items()})
    weighted = uc.scores_row(gold, scores, w)
    for key in ("pc", "attack"):
        assert weighted[key] == pytest.approx(copied[key])
    assert weighted["hate"] == pytest.approx(copied["hate"])
    assert weighted["pc"] != pytest.approx(uc.scores_row(gold, scores)["pc"])


def test_prevalence_weights_set_the_hateful_share_and_leave_hateful_auroc(uc):
    gold, scores = _scored(400, 3)
    hateful = gold["hate"][:, 1]
    w = uc.prevalence_weights(hateful, 0.37)
    assert (w * hateful).sum() / w.sum() == pytest.approx(0.37)
    assert uc.scores_row(gold, scores, w)["hate"] == pytest.approx(
        uc.scores_row(gold, scores)["hate"])
    with pytest.raises(ValueError, match="hateful and not-hateful"):
        uc.prevalence_weights(np.ones(5), 0.37)


def test_twinless_memes_are_those_whose_caption_no_other_train_meme_holds(uc):
    from hateful_memes.data.annotations import Meme

    def meme(i, text, hateful):
        return Meme(i, f"img/{i}.png", text, ("hateful",) if hateful else ("not_hateful",),
                    ("race",) if hateful else ("pc_empty",),
                    ("mocking",) if hateful else ("attack_empty",))

    train = [meme(1, "Same words", True), meme(2, "same  words!", False), meme(3, "alone", True)]
    dev = [meme(4, "SAME words", True), meme(5, "new words", False), meme(6, "alone", False)]
    alone_train, alone_dev = uc.twinless(uc.twin_sides(train, dev))
    # A train meme is never its own twin; a dev meme's twins are all train memes with its caption.
    assert alone_train.tolist() == [False, False, True]
    assert alone_dev.tolist() == [False, True, False]
    scores = {"hate": np.arange(6).reshape(3, 2), "pc": np.arange(3)}
    kept = uc.subset(scores, alone_dev)
    assert kept["hate"].tolist() == [[2, 3]] and kept["pc"].tolist() == [1]


def test_repeated_within_marks_the_memes_whose_caption_another_meme_of_the_split_holds(uc):
    from hateful_memes.data.annotations import Meme

    memes = [Meme(i, f"img/{i}.png", text, None, None, None)
             for i, text in enumerate(["Same words", "same  words!", "alone", "other"])]
    assert uc.repeated_within(memes).tolist() == [True, True, False, False]
    assert uc.repeated_within(memes[2:]).tolist() == [False, False]


def test_hidden_twins_fit_with_the_twin_features_and_score_without_them(uc):
    from hateful_memes.scoring import calibration
    from hateful_memes.scoring import thresholds as th

    gold, scores = _scored(300, 7)
    g, s = gold["attack"], scores["attack"]
    rng = np.random.default_rng(1)
    side = np.zeros((300, g.shape[1], 3))
    twin = rng.random(300) < 0.4
    side[twin, :, 0] = 1
    side[twin, :, 1:] = rng.random((twin.sum(), g.shape[1], 2))
    fold_of = np.arange(300) % 3
    dev = s[:40] ** 2
    oof, dev_out = uc.hidden_twins(g, s, dev, fold_of, side, th.choose_joint)
    # Without twin features it is the ordinary nested fit.
    plain = uc.hidden_twins(g, s, dev, fold_of, np.zeros_like(side), th.choose_joint)
    zero = np.zeros_like(side)
    assert np.allclose(plain[0], calibration.crossfit(g, s, fold_of, th.choose_joint, zero)[1])
    assert np.allclose(plain[1], calibration.fit_apply(g, s, dev, th.choose_joint, zero,
                                                       zero[:40])[1])
    # The features are read where the maps are fitted (they move the scores)...
    assert not np.allclose(oof, plain[0]) and not np.allclose(dev_out, plain[1])
    # ... and never where they are applied: a fold's own features do not reach its scores.
    changed = side.copy()
    changed[fold_of == 0] = rng.random(changed[fold_of == 0].shape)
    again = uc.hidden_twins(g, s, dev, fold_of, changed, th.choose_joint)[0]
    assert np.allclose(again[fold_of == 0], oof[fold_of == 0])
    assert not np.allclose(again[fold_of != 0], oof[fold_of != 0])


def test_each_encoder_and_design_run_writes_its_own_section(uc):
    names = {args: uc.results_path(*args).name for args in [
        (False, None, None), (True, None, None), (False, "mpnet", None), (True, "mpnet", None),
        (False, "minilm,mpnet", "concat"), (True, "minilm,mpnet", "concat")]}
    assert names[(False, None, None)] == "results_unseen.md"
    assert names[(True, None, None)] == "results_designs.md"
    assert names[(False, "mpnet", None)] == "results_unseen-mpnet.md"
    # --designs on another encoder's runs must not overwrite the default's designs section.
    assert names[(True, "mpnet", None)] == "results_designs-mpnet.md"
    assert names[(True, "minilm,mpnet", "concat")] == "results_designs-minilm_mpnet-concat.md"
    assert len(set(names.values())) == len(names)
    assert all(uc.results_path(*args).parent == uc.ROOT / "experiments" for args in names)
