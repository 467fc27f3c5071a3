import numpy as np
import pytest

from hateful_memes import labels as L
from hateful_memes.scoring.decision import decide


def test_lists_are_the_tasks_with_empty_first():
    assert L.PC[0] == "pc_empty" and len(L.PC) == 6
    assert L.ATTACK[0] == "attack_empty" and len(L.ATTACK) == 8
    assert L.HATE == ("not_hateful", "hateful")
    assert L.tasks_for("A") == ("pc",) and L.tasks_for("AB") == ("pc", "attack")
    with pytest.raises(ValueError):
        L.tasks_for("C")


def test_encode_decode_round_trip():
    vec = L.encode("pc", ["race", "sex"])
    assert vec.tolist() == [0, 0, 0, 1, 0, 1]
    assert decide("pc", vec[None]) == [("race", "sex")]
    assert decide("attack", L.encode("attack", ["attack_empty"])[None]) == [("attack_empty",)]
    assert decide("hate", [[0.3, 0.7]]) == [("hateful",)]


@pytest.mark.parametrize("bad, match", [
    (["pc_empty", "race"], "stands beside"),
    (["martian"], "unknown"),
    ([], "empty label list"),
    ("race", "must be a list"),
    (["race", "race"], "repeated"),
])
def test_invalid_label_lists_are_refused(bad, match):
    with pytest.raises(L.LabelError, match=match):
        L.encode("pc", bad)


def test_decode_never_puts_empty_beside_a_real_label():
    rng = np.random.default_rng(0)
    for decoded in decide("attack", rng.random((200, len(L.ATTACK)))):
        assert ("attack_empty" in decoded) == (len(decoded) == 1 and decoded[0] == "attack_empty")
        assert L.is_consistent("attack", L.encode("attack", decoded)[None]).all()


def test_is_consistent_flags_conflicts():
    m = np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]])
    assert L.is_consistent("pc", m).tolist() == [False, False, True, True]
