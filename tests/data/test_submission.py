import json

import numpy as np
import pytest

from hateful_memes.data.submission import (SubmissionError, check_submission, make_rows,
                                           read_predictions, read_submission, write_submission)
from hateful_memes.labels import ATTACK, HATE, PC


def scores_for(n, tasks=("hate", "pc", "attack"), seed=0):
    rng = np.random.default_rng(seed)
    sizes = {"hate": len(HATE), "pc": len(PC), "attack": len(ATTACK)}
    return {task: rng.random((n, sizes[task])) for task in tasks}


def pred_row(id, tasks=("hate", "pc", "attack")):
    return make_rows([id], scores_for(1, tasks, seed=id))[0]


def write_lines(tmp_path, lines, name="pred.jsonl"):
    def encoded(line):
        if isinstance(line, bytes):
            return line
        return (line if isinstance(line, str) else json.dumps(line)).encode()

    path = tmp_path / name
    path.write_bytes(b"".join(encoded(line) + b"\n" for line in lines))
    return path


def test_write_then_read_round_trips_in_labels_order(tmp_path):
    ids = [42953, 23058, 5349]
    scores = scores_for(3, ("hate", "pc"))
    scores["pc"][1] = [0.0, 1, 0.5, 1e-9, 1.0, 0]  # the bounds are valid scores
    path = tmp_path / "sub" / "test_A.jsonl"
    write_submission(path, np.array(ids), scores)
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["id", "pred_hate", "pred_pc"]
    assert list(first["pred_pc"]) == list(PC)
    read_ids, read_scores = read_submission(path)
    assert read_ids == ids and type(read_ids[0]) is int
    assert set(read_scores) == {"hate", "pc"}
    for task in scores:
        np.testing.assert_array_equal(read_scores[task], scores[task])
    assert check_submission(path) == {"n": 3, "tasks": ["hate", "pc"]}


def test_make_rows_refuses_wrong_shapes_and_unknown_tasks():
    with pytest.raises(ValueError, match=r"pc: expected scores of shape \(2, 6\)"):
        make_rows([1, 2], {"pc": np.zeros((2, 5))})
    with pytest.raises(ValueError, match=r"unknown task \['colour'\]"):
        make_rows([1], {"pc": np.zeros((1, 6)), "colour": np.zeros((1, 2))})
    with pytest.raises(ValueError, match=r"unknown tasks \['colour', 'size'\]"):
        make_rows([1], {"colour": np.zeros((1, 2)), "size": np.zeros((1, 2))})
    with pytest.raises(ValueError, match="no task scores"):
        make_rows([1], {})


def test_writer_refuses_what_the_reader_would_and_writes_nothing(tmp_path):
    path = tmp_path / "pred.jsonl"
    bad = scores_for(2, ("pc",))
    bad["pc"][1, 3] = np.nan
    with pytest.raises(SubmissionError, match=f"{path}:2: id 8: pred_pc\\['race'\\] is nan"):
        write_submission(path, [7, 8], bad)
    with pytest.raises(SubmissionError,
                       match=r"1 duplicated id \(1 extra line\): id 7 on lines 1, 2"):
        write_submission(path, [7, 7], scores_for(2, ("pc",)))
    assert not path.exists()


def with_score(label_field, label, value, id=3):
    row = pred_row(id)
    row[label_field][label] = value
    return row


def without(row, field):
    row = dict(row)
    del row[field]
    return row


@pytest.mark.parametrize("lines, line, match", [
    ([pred_row(1), '{"id": 2, "pred_hate": {'], 2, "malformed JSON"),
    ([pred_row(1), "7"], 2, "expected a JSON object, got int"),
    ([without(pred_row(1), "id")], 1, "missing 'id'"),
    ([dict(pred_row(1), id="1")], 1, "id must be an integer, got '1'"),
    ([dict(pred_row(1), id=False)], 1, "id must be an integer, got False"),
    ([pred_row(1), pred_row(2), pred_row(1)], 3,
     r"1 duplicated id \(1 extra line\): id 1 on lines 1, 3; every id needs"),
    ([dict(pred_row(1), set_name=None)], 1, r"id 1: set_name must be a string, got None"),
    ([dict(pred_row(1), id=-2 ** 63 - 1)], 1, "id -9223372036854775809 is out of range"),
    ([pred_row(1), '{"id": 2, "pred_hate": {"hateful": 1e999, "not_hateful": 0}}'], 2,
     r"id 2: pred_hate\['hateful'\] is inf"),
    (["[" + json.dumps(pred_row(1)) + "]"], 1,
     "this file is a JSON array; expected one JSON object per line"),
    ([pred_row(1), b"\xef\xbb\xbf" + json.dumps(pred_row(2)).encode()], 2, "malformed JSON"),
    ([pred_row(1), b'{"id": 2, "set_name": "dev_\xe9"}'], 2, "not UTF-8"),
    ([pred_row(1), without(pred_row(2), "pred_attack")], 2,
     "id 2: has pred_hate, pred_pc but line 1 has pred_hate, pred_pc, pred_attack"),
    ([pred_row(1, ("pc",)), pred_row(2, ("pc", "attack"))], 2, "id 2: has pred_pc, pred_attack"),
    ([{"id": 4}], 1, "id 4: no prediction"),
    ([dict(pred_row(4), pred_atack={})], 1, r"id 4: unknown key \['pred_atack'\]"),
    ([dict(pred_row(4), pred_atack={}, x=1)], 1, r"id 4: unknown keys \['pred_atack', 'x'\]"),
    ([dict(pred_row(4), pred_pc=[0.1] * 6)], 1, "id 4: pred_pc must be an object"),
    ([without(pred_row(4), "pred_pc") | {"pred_pc": {label: 0.1 for label in PC[:-1]}}], 1,
     r"id 4: pred_pc lacks label \['sex'\]"),
    ([without(pred_row(4), "pred_pc") | {"pred_pc": {label: 0.1 for label in PC[:-2]}}], 1,
     r"id 4: pred_pc lacks labels \['religion', 'sex'\]"),
    ([with_score("pred_attack", "shouting", 0.2)], 1,
     r"id 3: pred_attack has unknown label \['shouting'\]"),
    ([with_score("pred_hate", "hateful", "0.7")], 1,
     r"id 3: pred_hate\['hateful'\] is not a number"),
    ([with_score("pred_hate", "hateful", True)], 1,
     r"pred_hate\['hateful'\] is not a number: True"),
    ([with_score("pred_hate", "hateful", None)], 1, "is not a number: None"),
    ([with_score("pred_pc", "race", 1.5)], 1, r"id 3: pred_pc\['race'\] = 1.5 is outside \[0, 1\]"),
    ([with_score("pred_pc", "race", -0.01)], 1, r"-0.01 is outside \[0, 1\]"),
    (['{"id": 3, "pred_hate": {"not_hateful": NaN, "hateful": 0.5}}'], 1,
     r"id 3: pred_hate\['not_hateful'\] is nan"),
    (['{"id": 3, "pred_hate": {"not_hateful": 0.5, "hateful": Infinity}}'], 1,
     r"pred_hate\['hateful'\] is inf"),
])
def test_each_problem_is_refused_naming_path_line_and_id(tmp_path, lines, line, match):
    path = write_lines(tmp_path, lines)
    with pytest.raises(SubmissionError, match=match) as err:
        read_submission(path)
    assert str(err.value).startswith(f"{path}:{line}: ")


def organisers_row(id, set_name="dev_seen"):
    """A line as in the organisers' published baseline predictions: set_name on every line."""
    return dict(pred_row(id, ("pc", "attack")), set_name=set_name)


def test_the_organisers_set_name_is_read_and_kept(tmp_path):
    plain = pred_row(7, ("pc", "attack"))
    path = write_lines(tmp_path, [organisers_row(5), organisers_row(6), plain])
    preds = read_predictions(path)
    assert preds.ids == [5, 6, 7] and preds.lines == {5: 1, 6: 2, 7: 3}
    assert preds.set_names == {5: "dev_seen", 6: "dev_seen"}  # 7 has none, and needs none
    assert set(preds.scores) == {"pc", "attack"}


def test_a_byte_order_mark_at_the_start_is_read(tmp_path):
    path = tmp_path / "pred.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(pred_row(1)).encode() + b"\n")
    assert read_submission(path)[0] == [1]


def test_a_directory_is_refused_naming_it(tmp_path):
    with pytest.raises(SubmissionError) as err:
        read_submission(tmp_path)
    assert str(err.value).startswith(f"{tmp_path}: is a directory")


def test_duplicates_are_counted_and_the_first_named_with_their_lines(tmp_path):
    # As in the organisers' dev_seen baselines: 4 ids repeated further down the file.
    ids = list(range(100, 120))
    lines = [organisers_row(id) for id in ids]
    for at, id in ((5, 103), (9, 101), (14, 117), (20, 108)):
        lines.insert(at, organisers_row(id))
    path = write_lines(tmp_path, lines)
    with pytest.raises(SubmissionError) as err:
        read_submission(path)
    # Ordered by where the repeat is met; each with all its lines.
    assert str(err.value) == (
        f"{path}:6: 4 duplicated ids (4 extra lines): id 103 on lines 4, 6; "
        f"id 101 on lines 2, 10; id 108 on lines 11, 21; id 117 on lines 15, 22; "
        f"every id needs exactly one prediction")


def test_many_duplicates_show_the_first_five_and_the_count(tmp_path):
    lines = [pred_row(i % 8) for i in range(20)]  # ids 0..7, then 12 more lines of them
    path = write_lines(tmp_path, lines)
    with pytest.raises(SubmissionError) as err:
        read_submission(path)
    message = str(err.value)
    assert message.startswith(f"{path}:9: 8 duplicated ids (12 extra lines): "
                              f"id 0 on lines 1, 9, 17; id 1 on lines 2, 10, 18; ")
    assert "id 4 on lines 5, 13; and 3 more; every id" in message


def test_a_broken_line_after_a_duplicate_is_the_error_reported(tmp_path):
    path = write_lines(tmp_path, [pred_row(1), pred_row(1), "{broken"])
    with pytest.raises(SubmissionError, match=f"{path}:3: malformed JSON"):
        read_submission(path)


def test_empty_file_is_refused(tmp_path):
    path = write_lines(tmp_path, [""])
    with pytest.raises(SubmissionError, match="no predictions"):
        read_submission(path)


def gold_file(tmp_path, ids):
    return write_lines(tmp_path, [{"id": i, "img": f"img/{i}.png", "text": "t"} for i in ids],
                       name="test.jsonl")


def test_check_against_gold_accepts_any_order(tmp_path):
    gold = gold_file(tmp_path, [5, 6, 7])
    path = tmp_path / "pred.jsonl"
    write_submission(path, [7, 5, 6], scores_for(3, ("pc", "attack")))
    assert check_submission(path, gold) == {"n": 3, "tasks": ["pc", "attack"]}


def test_check_against_gold_counts_and_names_ids_it_does_not_have(tmp_path):
    gold = gold_file(tmp_path, [5, 6, 7])
    path = tmp_path / "pred.jsonl"
    write_submission(path, [5, 6, 7, 8], scores_for(4, ("hate",)))
    with pytest.raises(SubmissionError, match=r":4: id 8: not in .*test.jsonl \(1 such id, "
                                              r"first: \[8\]\)"):
        check_submission(path, gold)
    write_submission(path, [5, 6, 7, 8, 9], scores_for(5, ("hate",)))
    with pytest.raises(SubmissionError, match=r":4: id 8: not in .*test.jsonl \(2 such ids, "
                                              r"first: \[8, 9\]\)"):
        check_submission(path, gold)


def test_check_against_gold_counts_and_names_missing_ids(tmp_path):
    gold = gold_file(tmp_path, range(1, 21))
    path = tmp_path / "pred.jsonl"
    write_submission(path, [1, 2, 3, 9, 10], scores_for(5, ("hate",)))
    with pytest.raises(SubmissionError,
                       match=r"15 of 20 ids of .*test.jsonl have no prediction, "
                             r"first: \[4, 5, 6, 7, 8\]"):
        check_submission(path, gold)
    write_submission(path, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
                     scores_for(19, ("hate",)))
    with pytest.raises(SubmissionError, match=r"1 of 20 ids of .*test.jsonl has no prediction, "
                                              r"first: \[20\]"):
        check_submission(path, gold)


def test_check_against_gold_compares_set_names_where_both_have_one(tmp_path):
    gold = write_lines(tmp_path, [{"id": i, "set_name": "dev_seen", "img": f"img/{i}.png",
                                   "text": "t"} for i in (1, 2, 3)], name="dev_seen.json")
    path = write_lines(tmp_path, [organisers_row(1), pred_row(2, ("pc", "attack")),
                                  organisers_row(3)])
    assert check_submission(path, gold) == {"n": 3, "tasks": ["pc", "attack"]}
    path = write_lines(tmp_path, [organisers_row(1), organisers_row(2, "dev_unseen"),
                                  organisers_row(3, "dev_unseen")])
    with pytest.raises(SubmissionError) as err:
        check_submission(path, gold)
    assert str(err.value) == (f"{path}:2: id 2: set_name 'dev_unseen', but {gold} has set_name "
                              f"'dev_seen' for this id; is this the prediction file for dev_seen?")
    # A gold file without set_name (test.jsonl) accepts any.
    assert check_submission(path, gold_file(tmp_path, [1, 2, 3]))["n"] == 3


def test_check_against_gold_names_the_line_of_an_unknown_id(tmp_path):
    gold = gold_file(tmp_path, [1, 2, 3])
    path = tmp_path / "pred.jsonl"
    write_submission(path, [1, 2, 3, 99, 98], scores_for(5, ("hate",)))
    with pytest.raises(SubmissionError, match=r"id 99: not in .*first: \[99, 98\]") as err:
        check_submission(path, gold)
    assert str(err.value).startswith(f"{path}:4: ")
