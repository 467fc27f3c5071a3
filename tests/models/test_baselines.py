import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hateful_memes.data.annotations import Meme, gold_matrix
from hateful_memes.labels import ATTACK, LABELS, PC, TASKS
from hateful_memes.models.baselines import ConstantPrior, TfidfLogReg

FILLER = ("look", "at", "this", "when", "you", "the", "monday", "again", "really", "why")


def fixture_memes(n: int, seed: int, drop: tuple[str, ...] = ()) -> list[Meme]:
    """Memes whose caption names their labels (the label names are the cue words), with
    random filler around them: separable by construction, for any n."""
    rng = np.random.default_rng(seed)
    memes = []
    for i in range(n):
        pc = PC[i % len(PC)]
        attack = ATTACK[0] if pc == PC[0] else ATTACK[1 + (i // len(PC)) % (len(ATTACK) - 1)]
        if attack in drop:
            attack = ATTACK[1]
        hate = "not_hateful" if pc == PC[0] else "hateful"
        words = [*rng.choice(FILLER, 3), pc, *rng.choice(FILLER, 2), attack, *rng.choice(FILLER, 2)]
        memes.append(Meme(id=10_000 * seed + i, img=f"img/{i}.png", text=" ".join(words),
                          gold_hate=(hate,), gold_pc=(pc,), gold_attack=(attack,)))
    return memes


def unlabelled(memes: list[Meme]) -> list[Meme]:
    return [Meme(id=m.id, img=m.img, text=m.text) for m in memes]


def test_prior_predicts_the_train_means_for_every_row():
    train = fixture_memes(90, seed=0)
    test = unlabelled(fixture_memes(7, seed=1))
    scores = ConstantPrior().fit(train).predict(test)
    assert set(scores) == set(TASKS)
    for task in TASKS:
        means = gold_matrix(train, task).mean(axis=0)
        assert scores[task].shape == (len(test), len(LABELS[task]))
        np.testing.assert_allclose(scores[task], np.tile(means, (len(test), 1)), rtol=1e-6)


@pytest.mark.parametrize("model", [ConstantPrior, TfidfLogReg])
def test_refuses_unlabelled_training_memes_and_predicting_unfitted(model):
    memes = fixture_memes(12, seed=0)
    with pytest.raises(ValueError, match="gold labels"):
        model().fit(unlabelled(memes))
    with pytest.raises(RuntimeError, match="fit"):
        model().predict(memes)


def test_tfidf_learns_a_separable_fixture_with_scores_in_labels_order():
    model = TfidfLogReg(C=10.0).fit(fixture_memes(150, seed=0))
    test = fixture_memes(80, seed=1)
    scores = model.predict(unlabelled(test))
    for task in TASKS:
        gold = gold_matrix(test, task)
        assert scores[task].shape == gold.shape
        assert scores[task].dtype == np.float32
        assert ((scores[task] >= 0) & (scores[task] <= 1)).all()
        # Column k must rank the memes carrying LABELS[task][k] first: a column out of order
        # or a label learned from another's cue would not reach 1.0.
        for k, label in enumerate(LABELS[task]):
            assert roc_auc_score(gold[:, k], scores[task][:, k]) == 1.0, (task, label)


def test_with_c_equals_a_fresh_fit_at_that_c():
    train, test = fixture_memes(60, seed=0), fixture_memes(20, seed=1)
    shared = TfidfLogReg(C=1.0).fit(train).with_C(0.1)
    fresh = TfidfLogReg(C=0.1).fit(train)
    assert shared.C == 0.1
    a, b = shared.predict(test), fresh.predict(test)
    for task in TASKS:
        np.testing.assert_allclose(a[task], b[task], atol=1e-5)
    # And C does matter: a weaker penalty separates the fixture more sharply.
    assert not np.allclose(a["pc"], TfidfLogReg(C=10.0).fit(train).predict(test)["pc"])


def test_tfidf_scores_a_label_absent_from_train_at_its_frequency_zero():
    train = fixture_memes(60, seed=0, drop=("slurs",))
    assert gold_matrix(train, "attack")[:, ATTACK.index("slurs")].sum() == 0
    scores = TfidfLogReg().fit(train).predict(fixture_memes(10, seed=1))
    assert (scores["attack"][:, ATTACK.index("slurs")] == 0).all()


def test_tfidf_rejects_a_non_positive_c():
    with pytest.raises(ValueError, match="C must be positive"):
        TfidfLogReg(C=0)


def test_tfidf_state_round_trips_through_a_restricted_checkpoint(tmp_path):
    import torch

    from hateful_memes.runtime import checkpoints

    train, test = fixture_memes(60, seed=0), fixture_memes(20, seed=1)
    model = TfidfLogReg(C=2.0).fit(train)
    torch.save({"tfidf": model.state_dict()}, tmp_path / "t.pt")
    again = TfidfLogReg.from_state(checkpoints.load(tmp_path / "t.pt")["tfidf"])
    a, b = model.predict(test), again.predict(test)
    for task in TASKS:
        np.testing.assert_allclose(a[task], b[task], atol=1e-6)
