import numpy as np
import pytest

from hateful_memes import labels as L


def test_lists_are_the_tasks_with_empty_first():
    assert L.PC[0] == "pc_empty" and len(L.PC) == 6
    assert L.ATTACK[0] == "attack_empty" and len(L.ATTACK) == 8
    assert L.HATE == ("not_hateful", "hateful")
    assert L.EMPTY == {"hate": "not_hateful", "pc": "pc_empty", "attack": "attack_empty"}
    assert L.tasks_for("A") == ("pc",) and L.tasks_for("AB") == ("pc", "attack")
    for bad in ("C", "", "AA"):
        with pytest.raises(ValueError, match="task must be A, B or AB"):
            L.tasks_for(bad)


def test_encode_sets_each_labels_position_and_reads_back():
    vec = L.encode("pc", ["race", "sex"])
    assert vec.dtype == np.float32 and vec.tolist() == [0, 0, 0, 1, 0, 1]
    rows = [["attack_empty"], ["mocking", "contempt"], ["slurs"]]
    m = L.encode_many("attack", rows)
    assert m.shape == (3, len(L.ATTACK))
    back = [sorted(L.ATTACK[j] for j in np.flatnonzero(row)) for row in m]
    assert back == [sorted(r) for r in rows]
    assert L.encode_many("hate", []).shape == (0, 2)
    assert L.check("hate", ["hateful"]) == ("hateful",)


@pytest.mark.parametrize("bad, match", [
    (["pc_empty", "race"], "stands beside"),
    (["martian"], r"unknown label \['martian'\]"),
    (["martian", "race", "venusian"], r"unknown labels \['martian', 'venusian'\]"),
    ([], "empty label list"),
    ("race", "must be a list"),
    (["race", "race"], "repeated"),
])
def test_invalid_label_lists_are_refused(bad, match):
    with pytest.raises(L.LabelError, match=match):
        L.encode("pc", bad)


def test_an_unknown_task_is_refused_naming_the_tasks():
    with pytest.raises(ValueError, match="unknown task 'xyz'; expected one of hate, pc, attack"):
        L.encode("xyz", ["race"])


def test_every_valid_label_list_encodes_consistently():
    valid = [[label] for label in L.ATTACK] + [["contempt", "slurs"], list(L.ATTACK[1:])]
    assert L.is_consistent("attack", L.encode_many("attack", valid)).all()


def test_is_consistent_flags_conflicts():
    m = np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]])
    assert L.is_consistent("pc", m).tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match=r"expected \(n, 6\) array"):
        L.is_consistent("pc", m[:, :5])
