import numpy as np
import pytest

from hateful_memes import labels as L
from hateful_memes.scoring.decision import decide, decide_all, multi_hot


def test_empty_never_beside_a_real_label_on_random_scores():
    scores = np.random.default_rng(0).random((500, len(L.PC)))
    decided = decide("pc", scores)
    assert all(L.check("pc", labels) for labels in decided)
    on = multi_hot("pc", decided)
    assert L.is_consistent("pc", on).all()


def test_the_larger_margin_wins():
    # empty and a real label both above their cuts: the larger score wins
    s = np.array([[0.9, 0.6, 0, 0, 0, 0], [0.6, 0.9, 0.7, 0, 0, 0.1]])
    assert decide("pc", s) == [("pc_empty",), ("disability", "nationality")]


def test_when_nothing_passes_the_best_side_wins():
    s = np.array([[0.4, 0.45, 0.1, 0, 0, 0], [0.4, 0.3, 0.1, 0, 0, 0]])
    assert decide("pc", s) == [("disability",), ("pc_empty",)]


def test_hate_and_all_tasks():
    scores = {"hate": np.array([[0.3, 0.7], [0.8, 0.2]]),
              "attack": np.array([[0.2, 0.9, 0, 0, 0, 0, 0, 0], [0.9, 0, 0, 0, 0, 0, 0, 0]])}
    assert decide_all(scores) == [{"hate": ("hateful",), "attack": ("contempt",)},
                                  {"hate": ("not_hateful",), "attack": ("attack_empty",)}]


def test_bad_shape():
    with pytest.raises(ValueError, match="pc"):
        decide("pc", np.zeros((2, 3)))
