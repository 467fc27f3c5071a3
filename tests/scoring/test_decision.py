import numpy as np
import pytest

from hateful_memes import labels as L
from hateful_memes.scoring import decision
from hateful_memes.scoring.decision import decide, decide_all, multi_hot


def test_empty_never_beside_a_real_label_on_random_scores():
    scores = np.random.default_rng(0).random((500, len(L.PC)))
    decided = decide("pc", scores)
    assert all(L.check("pc", labels) for labels in decided)
    on = multi_hot("pc", decided)
    assert L.is_consistent("pc", on).all()


def test_in_a_conflict_the_empty_label_needs_a_lead_of_margin():
    # empty and a real label both above their cuts: the real labels win unless the empty
    # label's logit leads the best real label's by MARGIN (0.5: 0.6 needs 0.712 against it)
    assert decision.MARGIN == 0.5
    s = np.array([[0.9, 0.6, 0, 0, 0, 0], [0.6, 0.9, 0.7, 0, 0, 0.1],
                  [0.7, 0.6, 0, 0, 0, 0], [0.75, 0.6, 0.55, 0, 0, 0]])
    assert decide("pc", s) == [("pc_empty",), ("disability", "nationality"), ("disability",),
                               ("pc_empty",)]


def test_a_larger_margin_only_turns_empty_labels_into_real_ones(monkeypatch):
    scores = np.random.default_rng(3).random((2000, len(L.ATTACK)))
    by_margin = []
    for margin in (0.0, 0.5, 2.0):
        monkeypatch.setattr(decision, "MARGIN", margin)
        by_margin.append(decide("attack", scores))
    # margin 0: the empty label wins whenever its score is at least the best real label's
    assert by_margin[0] == [("attack_empty",) if row[0] >= row[1:].max() else
                            tuple(n for n, x in zip(L.ATTACK[1:], row[1:]) if x > 0.5)
                            or (L.ATTACK[1 + int(np.argmax(row[1:]))],) for row in scores]
    for low, high in zip(by_margin, by_margin[1:]):
        changed = [(a, b) for a, b in zip(low, high) if a != b]
        assert changed and all(a == ("attack_empty",) for a, _ in changed)


def test_when_nothing_passes_the_best_side_wins():
    s = np.array([[0.4, 0.45, 0.1, 0, 0, 0], [0.4, 0.3, 0.1, 0, 0, 0]])
    assert decide("pc", s) == [("disability",), ("pc_empty",)]


def test_hate_and_all_tasks():
    scores = {"hate": np.array([[0.3, 0.7], [0.8, 0.2]]),
              "attack": np.array([[0.2, 0.9, 0, 0, 0, 0, 0, 0], [0.9, 0, 0, 0, 0, 0, 0, 0]])}
    assert decide_all(scores) == [{"hate": ("hateful",), "attack": ("contempt",)},
                                  {"hate": ("not_hateful",), "attack": ("attack_empty",)}]


def test_the_hateful_label_follows_the_tasks_and_its_cut_only_without_them():
    hate = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])
    pc = np.array([[0.2, 0.9, 0, 0, 0, 0], [0.9, 0, 0, 0, 0, 0],
                   [0.9, 0, 0, 0, 0, 0], [0.9, 0, 0, 0, 0, 0]])
    attack = np.zeros((4, len(L.ATTACK)))
    attack[:, 0] = 0.9
    attack[2, :2] = 0.3, 0.8  # an attack shown: hateful although pred_hate says not
    decided = decide_all({"hate": hate, "pc": pc, "attack": attack})
    assert [d["hate"] for d in decided] == [("hateful",), ("not_hateful",), ("hateful",),
                                            ("not_hateful",)]
    assert [d["hate"] for d in decide_all({"hate": hate})] == [
        ("not_hateful",), ("hateful",), ("not_hateful",), ("hateful",)]
    # On random scores of both tasks the three decisions never contradict each other's
    # emptiness: hateful exactly when some task shows a real label.
    rng = np.random.default_rng(5)
    for d in decide_all({"hate": rng.random((300, 2)), "pc": rng.random((300, len(L.PC))),
                         "attack": rng.random((300, len(L.ATTACK)))}):
        real = d["pc"] != ("pc_empty",) or d["attack"] != ("attack_empty",)
        assert d["hate"] == (("hateful",) if real else ("not_hateful",))


def test_bad_shape():
    with pytest.raises(ValueError, match="pc"):
        decide("pc", np.zeros((2, 3)))


def test_tasks_scored_for_different_memes_are_refused_naming_their_lengths():
    with pytest.raises(ValueError, match=r"'hate': 2, 'pc': 3"):
        decide_all({"hate": np.zeros((2, 2)), "pc": np.zeros((3, len(L.PC)))})
