"""models/neighbours.py: the vote of a meme's nearest training captions matches its formula,
never counts the meme's caption twins, comes from the other folds out of fold, and a
checkpoint keeps it as tensors and plain data."""
import io

import numpy as np
import pytest
import torch

from conftest import labelled_meme
from hateful_memes.data.annotations import gold_matrix
from hateful_memes.labels import LABELS
from hateful_memes.models.neighbours import CaptionNeighbours


def _train(n=40, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    memes = [labelled_meme(i, f"caption {i}", i % 3 == 0, ("race",), ("mocking",))
             for i in range(n)]
    return memes, rng.normal(size=(n, dim)).astype(np.float32)


def _formula(query, base, gold, k, tau, alpha):
    """The module docstring's formula, written out for one query."""
    cos = base @ query / (np.linalg.norm(base, axis=1) * np.linalg.norm(query))
    near = np.argsort(-cos)[:k]
    w = np.exp((cos[near] - cos[near].max()) / tau)
    return ((w[:, None] * gold[near]).sum(0) + alpha * gold.mean(0)) / (w.sum() + alpha)


@pytest.mark.parametrize("k,tau,alpha", [(1, 0.05, 1.0), (5, 0.05, 1.0), (7, 0.5, 0.0),
                                         (40, 1.0, 3.0)])
def test_the_vote_is_the_formula(k, tau, alpha):
    memes, emb = _train()
    nb = CaptionNeighbours.from_memes(memes, emb, k=k, tau=tau, alpha=alpha)
    queries = np.random.default_rng(1).normal(size=(6, emb.shape[1])).astype(np.float32)
    votes = nb.predict(queries, [f"new {i}" for i in range(6)])
    base = nb.embeddings.astype(np.float32)  # the float16 copy a checkpoint keeps
    for task in LABELS:
        gold = gold_matrix(memes, task)
        for i, q in enumerate(queries):
            np.testing.assert_allclose(votes[task][i], _formula(q, base, gold, k, tau, alpha),
                                       rtol=1e-5, atol=1e-6)


def test_votes_are_shares_that_shrink_to_the_training_prior():
    memes, emb = _train()
    queries = np.random.default_rng(2).normal(size=(5, emb.shape[1]))
    texts = [f"q{i}" for i in range(5)]
    votes = CaptionNeighbours.from_memes(memes, emb, k=3).predict(queries, texts)
    for task in LABELS:
        assert ((votes[task] >= 0) & (votes[task] <= 1)).all()
    # Many pseudo-neighbours of the train shares drown the few real ones.
    prior = CaptionNeighbours.from_memes(memes, emb, k=3, alpha=1e6).predict(queries, texts)
    np.testing.assert_allclose(prior["pc"], np.tile(gold_matrix(memes, "pc").mean(0), (5, 1)),
                               atol=1e-5)


def test_a_close_neighbour_carries_its_labels_and_scale_does_not_matter():
    memes, emb = _train()
    nb = CaptionNeighbours.from_memes(memes, emb, k=5, tau=0.01, alpha=0.01)
    # A new caption whose embedding is (a multiple of) meme 3's: meme 3 decides its vote.
    vote = nb.predict(emb[3:4] * 7.5, ["a new caption"])
    race = LABELS["pc"].index("race")
    assert vote["pc"][0, race] > 0.95 and vote["hate"][0, 1] > 0.95
    np.testing.assert_allclose(nb.predict(emb[3:4], ["a new caption"])["pc"], vote["pc"],
                               rtol=1e-6)


def test_caption_twins_never_vote():
    memes, emb = _train()
    race = LABELS["pc"].index("race")
    # Meme 3 (hateful, race) is the nearest by embedding, but it shares the caption's key.
    memes[3] = labelled_meme(3, "look at them", True, ("race",), ("mocking",))
    nb = CaptionNeighbours.from_memes(memes, emb, k=1, tau=0.01, alpha=0.0)
    assert nb.predict(emb[3:4], ["LOOK at them..."])["pc"][0, race] == 0
    assert nb.predict(emb[3:4], ["another caption"])["pc"][0, race] == 1


def test_a_caption_with_every_neighbour_left_out_gets_the_prior():
    memes = [labelled_meme(i, "the same caption", i == 0, ("race",), ("mocking",))
             for i in range(3)]
    nb = CaptionNeighbours.from_memes(memes, np.eye(3), k=2)
    vote = nb.predict(np.eye(3)[:1], ["The same caption!"])
    np.testing.assert_allclose(vote["hate"][0], gold_matrix(memes, "hate").mean(0), rtol=1e-6)


def test_out_of_fold_votes_come_from_the_other_folds_only():
    memes, emb = _train(n=30)
    fold_of = np.arange(30) % 3
    nb = CaptionNeighbours.from_memes(memes, emb, k=4)
    oof = nb.crossfit(fold_of)
    for f in range(3):
        held, rest = fold_of == f, fold_of != f
        alone = CaptionNeighbours([e for e in nb.embeddings[rest]],
                                  [k for k, r in zip(nb.keys, rest) if r],
                                  {t: g[rest] for t, g in nb.gold.items()}, k=4)
        want = alone.predict(nb.embeddings[held].astype(np.float32),
                             [m.text for m, h in zip(memes, held) if h])
        for task in LABELS:
            np.testing.assert_allclose(oof[task][held], want[task], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="29 folds for 30 memes"):
        nb.crossfit(fold_of[:29])


def test_bad_shapes_are_named():
    memes, emb = _train()
    nb = CaptionNeighbours.from_memes(memes, emb)
    with pytest.raises(ValueError, match="2 embeddings for 3 captions"):
        nb.predict(emb[:2], ["a", "b", "c"])
    with pytest.raises(ValueError, match="width 5, the run's are 8 wide"):
        nb.predict(emb[:1, :5], ["a"])
    with pytest.raises(ValueError, match="k must be a whole number"):
        CaptionNeighbours.from_memes(memes, emb, k=0)
    assert nb.predict(emb[:0], [])["pc"].shape == (0, len(LABELS["pc"]))


def test_the_state_is_what_torch_reads_without_running_code():
    memes, emb = _train()
    nb = CaptionNeighbours.from_memes(memes, emb, k=3, tau=0.1, alpha=2.0)
    buffer = io.BytesIO()
    torch.save({"neighbours": nb.state_dict()}, buffer)
    buffer.seek(0)
    back = CaptionNeighbours.from_state(torch.load(buffer, weights_only=True)["neighbours"])
    queries = np.random.default_rng(3).normal(size=(4, emb.shape[1]))
    texts = ["caption 1", "a", "b", "c"]
    for task in LABELS:
        np.testing.assert_array_equal(back.predict(queries, texts)[task],
                                      nb.predict(queries, texts)[task])
