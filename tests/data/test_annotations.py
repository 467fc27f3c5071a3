import builtins
import json
import os
from pathlib import Path

import numpy as np
import pytest

from hateful_memes.cli import evaluate, predict, train
from hateful_memes.data import annotations as data
from hateful_memes.data.annotations import (AnnotationError, ImagePathError, Meme, gold_matrix,
                                            image_path, is_labelled, read_annotations)
from hateful_memes.labels import ATTACK, PC


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
        Meme(7, "img/7.png", "meme 7", ("hateful",), ("race",), ("mocking", "slurs"),
             set_name="train"),
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
    ([row(1), row(2, set_name=["dev_seen"])], 2, "id 2: set_name must be a string"),
    # A lone surrogate is valid JSON but no text: refused here, not after feature extraction.
    ([row(1), '{"id": 2, "img": "img/2.png", "text": "a \\ud800 b"}'], 2,
     r"id 2: text holds a lone surrogate \(U\+D800 at character 2\)"),
    ([row(5, img="img/\udcff.png")], 1, "id 5: img holds a lone surrogate"),
    # An img may not lead outside the image root: the service reads strangers' files.
    ([row(1), row(2, img="../../etc/hostname")], 2,
     "id 2: img '../../etc/hostname' climbs out of the image root"),
    ([row(3, img="img/../../x.png")], 1, "climbs out of the image root"),
    ([row(3, img="/etc/hostname")], 1, "id 3: img '/etc/hostname' is absolute"),
    ([row(3, img="C:\\Windows\\x.png")], 1, "is absolute"),
    ([row(3, img="")], 1, "id 3: img '' is empty"),
    ([row(2 ** 63)], 1, "id 9223372036854775808 is out of range"),
    (["[" + json.dumps(row(1)) + ", " + json.dumps(row(2)) + "]"], 1,
     r"this file is a JSON array; expected one JSON object per line \(JSON Lines\)"),
    (["[", json.dumps(row(1)) + ",", json.dumps(row(2)), "]"], 1, "this file is a JSON array"),
    ([row(1), "[" * 100_000 + "]" * 100_000], 2, "nested too deeply"),
    ([row(1), '{"id": ' + "9" * 5000 + "}"], 2, "malformed JSON .*digits"),
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


def test_utf8_byte_order_mark_at_the_start_is_read(tmp_path):
    # What Notepad and several other editors write at the start of a UTF-8 file.
    path = tmp_path / "ann.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(row(1)).encode() + b"\n"
                     + json.dumps(row(2)).encode() + b"\n")
    assert [meme.id for meme in read_annotations(path)] == [1, 2]
    path.write_bytes(b"\xef\xbb\xbf\n" + json.dumps(row(3)).encode() + b"\n")
    assert [meme.id for meme in read_annotations(path)] == [3]
    # Only at the start: one in the middle is damage, and is named.
    path.write_bytes(json.dumps(row(1)).encode() + b"\n\xef\xbb\xbf"
                     + json.dumps(row(2)).encode() + b"\n")
    with pytest.raises(AnnotationError, match=f"{path}:2: malformed JSON"):
        read_annotations(path)


def test_a_directory_is_refused_naming_it(tmp_path):
    with pytest.raises(AnnotationError) as err:
        read_annotations(tmp_path)
    assert str(err.value) == (f"{tmp_path}: is a directory; expected a file with one JSON "
                              f"object per line")


def test_an_unreadable_file_is_refused_naming_it(tmp_path, monkeypatch):
    # The tests run as root, whom chmod 000 does not stop: the denial is simulated here, and
    # test_an_unreadable_file_is_refused_for_real checks a real one where it can.
    path = write_lines(tmp_path, [row(1)])
    real_open = builtins.open

    def denying_open(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denying_open)
    with pytest.raises(AnnotationError) as err:
        read_annotations(path)
    assert str(err.value) == f"{path}: cannot read this file (Permission denied)"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads a chmod 000 file anyway; "
                           "test_an_unreadable_file_is_refused_naming_it simulates the denial")
def test_an_unreadable_file_is_refused_for_real(tmp_path):
    path = write_lines(tmp_path, [row(1)])
    path.chmod(0)
    try:
        with pytest.raises(AnnotationError, match="cannot read this file"):
            read_annotations(path)
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("img", ["img/1.png", "img/./1.png", "a/../img/1.png", "img//1.png",
                                 "img/..hidden.png", "img/1..png"])
def test_image_path_joins_paths_that_stay_under_the_root(tmp_path, img):
    assert image_path(tmp_path, img) == tmp_path / img


@pytest.mark.parametrize("img, problem", [
    ("../../etc/hostname", "climbs out of the image root"),
    ("img/../../etc/hostname", "climbs out of the image root"),
    ("..", "climbs out of the image root"),
    ("..\\..\\etc\\hostname", "climbs out of the image root"),
    ("/etc/hostname", "is absolute"),
    ("\\\\server\\share\\x.png", "is absolute"),
    ("C:/x.png", "is absolute"),
    ("", "is empty"),
    ("img/\0.png", "contains a NUL character"),
])
def test_image_path_refuses_what_leaves_the_root(tmp_path, img, problem):
    with pytest.raises(ImagePathError) as err:
        image_path(tmp_path, img)
    assert str(err.value) == (f"img {img!r} {problem}; image paths must stay under the image "
                              f"root {tmp_path}")


def _cli_error(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("cli", ["train --train", "train --dev", "predict --input",
                                 "evaluate --gold", "evaluate --pred", "evaluate --check"])
def test_each_cli_names_a_directory_given_as_a_file_in_one_line(tmp_path, capsys, cli):
    folder = tmp_path / "annotations"
    folder.mkdir()
    good = write_lines(tmp_path, [row(1)])
    pred = write_lines(tmp_path, ['{"id": 1, "pred_hate": {"not_hateful": 0.5, "hateful": 0.5}}'],
                       name="pred.jsonl")
    program, flag = cli.split()
    if program == "train":
        files = {"--train": good, "--dev": good, flag: folder}
        code = train.main(["--task", "A", "--train", str(files["--train"]), "--dev",
                           str(files["--dev"]), "--image-encoder", "none",
                           "--out", str(tmp_path / "run"), "--quiet"])
    elif program == "predict":
        code = predict.main(["--run", str(tmp_path / "run"), "--input", str(folder),
                             "--out", str(tmp_path / "out.jsonl"), "--quiet"])
    elif flag == "--check":
        code = evaluate.main(["--check", str(folder)])
    else:
        files = {"--gold": good, "--pred": pred, flag: folder}
        code = evaluate.main(["--gold", str(files["--gold"]), "--pred", str(files["--pred"])])
    assert code == 1
    assert f"{folder}: is a directory; expected a file with one JSON object per line" \
        in _cli_error(capsys)


def test_the_evaluate_cli_names_an_unreadable_gold_file_in_one_line(
        tmp_path, capsys, monkeypatch):
    gold = write_lines(tmp_path, [row(1)])
    pred = write_lines(tmp_path, ['{"id": 1, "pred_hate": {"not_hateful": 0.5, "hateful": 0.5}}'],
                       name="pred.jsonl")
    real_open = builtins.open

    def denying_open(file, *args, **kwargs):
        if Path(file) == gold:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denying_open)
    assert evaluate.main(["--gold", str(gold), "--pred", str(pred)]) == 1
    assert _cli_error(capsys) == (
        f"evaluate.py: error: {gold}: cannot read this file (Permission denied)")


def test_json_lines_reports_in_the_callers_error_type(tmp_path):
    class OwnError(ValueError):
        pass

    path = write_lines(tmp_path, [row(1), "{nope"])
    with pytest.raises(OwnError, match=f"{path}:2: malformed JSON"):
        list(data.json_lines(path, OwnError))


def test_real_files_counts_and_train_label_totals(real_annotations):
    train = read_annotations(real_annotations / "train.json")
    dev = read_annotations(real_annotations / "dev_seen.json")
    test = read_annotations(real_annotations / "test.jsonl")
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
    # set_name is kept where the file has it (train and dev do; test.jsonl does not).
    assert {m.set_name for m in train} == {"train"} and {m.set_name for m in dev} == {"dev_seen"}
    assert {m.set_name for m in test} == {None}
