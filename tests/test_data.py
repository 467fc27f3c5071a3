import json
from pathlib import Path

import numpy as np
import pytest

from hateful_memes.data import AnnotationError, Meme, gold_matrix, is_labelled, read_annotations
from hateful_memes.labels import ATTACK, PC

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "woah2021" / "annotations"


def row(id=1, **fields):
    base = {"id": id, "img": f"img/{id}.png", "text": f"meme {id}",
            "gold_hate": ["hateful"], "gold_pc": ["race"], "gold_attack": ["mocking", "slurs"]}
    base.update(fields)
    return base


def write_lines(tmp_path, lines, name="ann.json"):
    path = tmp_path / name
    path.write_text("".join(
        (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_labelled_file_reads_in_order_with_gold_tuples(tmp_path):
    path = write_lines(tmp_path, [
        row(7, set_name="train", pc=[["race"]], attack=[["mocking"]]),
        "",
        row(3, gold_hate=["not_hateful"], gold_pc=["pc_empty"], gold_attack=["attack_empty"],
            pc="None", attack="None"),
    ])
    memes = read_annotations(path)
    assert memes == [
        Meme(7, "img/7.png", "meme 7", ("hateful",), ("race",), ("mocking", "slurs")),
        Meme(3, "img/3.png", "meme 3", ("not_hateful",), ("pc_empty",), ("attack_empty",)),
    ]
    assert memes[0].gold("attack") == ("mocking", "slurs")
    assert is_labelled(memes)
    assert gold_matrix(memes, "pc").tolist() == [[0, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="unknown task"):
        memes[0].gold("colour")


def test_unlabelled_file_has_no_gold_and_gold_matrix_names_the_meme(tmp_path):
    path = write_lines(tmp_path, ['{"id":16395,"img":"img\\/16395.png","text":"a"}',
                                  {"id": 5, "img": "img/00005.png", "text": "b"}])
    memes = read_annotations(path)
    assert memes[0].img == "img/16395.png"
    assert memes[0].gold("hate") is None and not is_labelled(memes)
    with pytest.raises(ValueError, match="meme 16395 has no gold_pc"):
        gold_matrix(memes, "pc")


@pytest.mark.parametrize("lines, line, match", [
    ([row(1), '{"id": 2, "img": '], 2, "malformed JSON"),
    ([row(1), "[1, 2]"], 2, "expected a JSON object, got list"),
    ([{"img": "img/1.png", "text": "a"}], 1, "missing 'id'"),
    ([row(1), {"id": 2, "img": "img/2.png"}], 2, "missing 'text'"),
    ([{"id": 2, "text": "a"}], 1, "missing 'img'"),
    ([row("12")], 1, "id must be an integer, got '12'"),
    ([row(True)], 1, "id must be an integer, got True"),
    ([row(1, text=None)], 1, "text must be a string"),
    ([row(1), row(2, gold_pc=["martian"])], 2, "gold_pc: .*unknown label"),
    ([row(1, gold_attack=["attack_empty", "slurs"])], 1, "gold_attack: .*stands beside"),
    ([row(1, gold_pc="race")], 1, "gold_pc: .*must be a list"),
    ([row(1, gold_hate=None)], 1, "gold_hate: .*must be a list"),
    ([row(1), "", row(2), row(1)], 4, r"duplicate id 1 \(first on line 1\)"),
    ([row(1), {"id": 2, "img": "img/2.png", "text": "b"}], 2,
     "lacks gold_attack, gold_hate, gold_pc, unlike line 1"),
    ([{"id": 2, "img": "img/2.png", "text": "b"}, row(1)], 2, "has gold_attack"),
])
def test_each_problem_is_refused_naming_path_and_line(tmp_path, lines, line, match):
    path = write_lines(tmp_path, lines)
    with pytest.raises(AnnotationError, match=match) as err:
        read_annotations(path)
    assert str(err.value).startswith(f"{path}:{line}: ")


def test_empty_or_blank_file_is_refused(tmp_path):
    path = write_lines(tmp_path, ["", "  "])
    with pytest.raises(AnnotationError, match="no memes") as err:
        read_annotations(path)
    assert str(err.value).startswith(f"{path}: ")


def test_non_utf8_line_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "ann.json"
    path.write_bytes(json.dumps(row(1)).encode() + b"\n" + b'{"id": 2, "text": "\xff"}\n')
    with pytest.raises(AnnotationError, match="not UTF-8") as err:
        read_annotations(path)
    assert str(err.value).startswith(f"{path}:2: ")


def test_real_files_counts_and_train_label_totals():
    train = read_annotations(REAL / "train.json")
    dev = read_annotations(REAL / "dev_seen.json")
    test = read_annotations(REAL / "test.jsonl")
    assert (len(train), len(dev), len(test)) == (8500, 500, 1000)
    assert is_labelled(train) and is_labelled(dev) and not is_labelled(test)
    # The totals printed in the annotations' README.
    pc = dict(zip(PC, gold_matrix(train, "pc").sum(axis=0).astype(int).tolist()))
    assert pc == {"pc_empty": 5495, "religion": 1078, "race": 1008, "sex": 746,
                  "nationality": 325, "disability": 255}
    attack = dict(zip(ATTACK, gold_matrix(train, "attack").sum(axis=0).astype(int).tolist()))
    assert attack == {"attack_empty": 5532, "dehumanizing": 1318, "inferiority": 658,
                      "inciting_violence": 407, "mocking": 378, "contempt": 235, "slurs": 205,
                      "exclusion": 114}
    # README: 389 memes carry two or more protected categories.
    assert int((gold_matrix(train, "pc")[:, 1:].sum(axis=1) >= 2).sum()) == 389
    hate = gold_matrix(dev, "hate")
    assert np.all(hate.sum(axis=1) == 1)
