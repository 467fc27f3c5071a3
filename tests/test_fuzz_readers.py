"""Random damage to annotation and prediction files: the readers either read the file, and
what they return is valid, or raise the project's own error naming the file and the line.

A seeded loop (no dependency, the same cases on every run) mutates generated lines the way
files get damaged: flipped and inserted bytes, truncation, byte order marks, invalid UTF-8,
deleted, duplicated and renamed keys, values of the wrong type, huge numbers, NaN, lone
surrogates and deep nesting. A failure prints the case's seed and the file's bytes.
"""
from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from hateful_memes.data import demo
from hateful_memes.data.annotations import AnnotationError, image_path_problem, read_annotations
from hateful_memes.data.submission import (SubmissionError, check_submission, make_rows,
                                           read_predictions)
from hateful_memes.labels import LABELS

CASES = 1000
BOM = b"\xef\xbb\xbf"
LINE = re.compile(r"(\d+): \S")
JUNK_VALUES = [None, True, False, 0, -1, 1, 2, 1.5, -0.0, 1e-320, 1e308, 10 ** 30, 10 ** 400,
               -(10 ** 19), float("nan"), float("inf"), float("-inf"), "", "x", "0.5", "\ud800",
               "\udfff\ud800", "é", "\x00", "../../etc/hostname", "/etc/hostname", "a" * 5000,
               [], {}, [[[[]]]], {"a": {"b": [1, {}]}}, ["race"], ["pc_empty", "race"],
               {"hateful": 0.5}, list(range(50))]


def _memes(split):
    return [m for m in demo.make_memes(n=80, seed=1) if m.split == split]


LABELLED = [m.row() for m in _memes("train")[:12]]
UNLABELLED = [m.row() for m in _memes("test")[:12]]


def _prediction_rows(rng: np.random.Generator, n: int = 12, set_name: str | None = None):
    ids = [m["id"] for m in LABELLED[:n]]
    tasks = ("hate", "pc", "attack")
    rows = make_rows(ids, {t: rng.random((n, len(LABELS[t]))) for t in tasks})
    if set_name:
        for row in rows:
            row["set_name"] = set_name
    return rows


PREDICTIONS = _prediction_rows(np.random.default_rng(0))
ORGANISERS = _prediction_rows(np.random.default_rng(1), set_name="train")


# --------------------------------------------------------------------------- mutations


def _containers(obj, found):
    if isinstance(obj, dict):
        found.append(obj)
        for value in obj.values():
            _containers(value, found)
    elif isinstance(obj, list):
        found.append(obj)
        for value in obj:
            _containers(value, found)
    return found


def _mutate_value(rng: random.Random, row: dict) -> str:
    """A structural change to one JSON object, returned as its JSON text."""
    row = json.loads(json.dumps(row))  # a deep copy
    where = rng.choice(_containers(row, []))
    kind = rng.randrange(5)
    if isinstance(where, dict) and where:
        key = rng.choice(list(where))
        if kind == 0:
            del where[key]
        elif kind == 1:
            where[key + rng.choice(["", "_", "x", "\ud800"])] = where.pop(key)
        elif kind == 2:
            where[rng.choice(["set_name", "pred_hate", "gold_pc", "img", "extra", "id"])] = \
                rng.choice(JUNK_VALUES)
        else:
            where[key] = rng.choice(JUNK_VALUES)
    elif isinstance(where, list) and where:
        i = rng.randrange(len(where))
        if kind == 0:
            del where[i]
        elif kind == 1:
            where.append(where[i])
        else:
            where[i] = rng.choice(JUNK_VALUES)
    text = json.dumps(row, ensure_ascii=rng.random() < 0.5)  # NaN and Infinity as JSON5 writes
    if rng.random() < 0.2:  # a duplicated key: the last one wins in json.loads
        text = text.replace("{", '{"id": ' + rng.choice(['"7"', "7", "null", "1e999"]) + ", ", 1)
    return text


def _mutate_bytes(rng: random.Random, data: bytearray) -> bytearray:
    kind = rng.randrange(9)
    at = rng.randrange(len(data) + 1)
    if kind == 0 and data:  # flip bits of one byte
        i = rng.randrange(len(data))
        data[i] ^= rng.randrange(1, 256)
    elif kind == 1:  # truncation
        del data[at:]
    elif kind == 2:  # a byte order mark, at the start (read) or elsewhere (damage)
        data[0 if rng.random() < 0.5 else at:0 if rng.random() < 0.5 else at] = BOM
    elif kind == 3:  # bytes that are not UTF-8, or control bytes
        data[at:at] = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\x1b"])
    elif kind == 4:  # nested junk
        depth = rng.choice([2, 50, 5000, 200_000])
        data[at:at] = rng.choice([b"[" * depth + b"]" * depth, b"{" * depth, b'{"a":' * depth])
    elif kind == 5:  # a huge number
        data[at:at] = rng.choice([b"9" * 5000, b"1e999", b"-1e999", b"NaN", b"Infinity"])
    elif kind == 6:  # a line lost, repeated or cut in two
        lines = bytes(data).split(b"\n")
        i = rng.randrange(len(lines))
        choice = rng.randrange(3)
        if choice == 0:
            del lines[i]
        elif choice == 1:
            lines.insert(i, lines[i])
        else:
            cut = rng.randrange(len(lines[i]) + 1)
            lines[i:i + 1] = [lines[i][:cut], lines[i][cut:]]
        data = bytearray(b"\n".join(lines))
    elif kind == 7:  # the file as one JSON array
        rows = [line for line in bytes(data).split(b"\n") if line.strip()]
        data = bytearray(b"[" + b",\n".join(rows) + b"]\n")
    else:  # a stray character
        data[at:at] = bytes([rng.randrange(32, 127)])
    return data


def _damaged_file(rng: random.Random, rows: list[dict]) -> bytes:
    rows = rows[:rng.randrange(1, len(rows) + 1)]
    lines = [json.dumps(row) for row in rows]  # fresh: the mutations below change them
    for _ in range(rng.randrange(3)):
        i = rng.randrange(len(lines))
        lines[i] = _mutate_value(rng, rows[i])
    data = bytearray("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n")
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        data = _mutate_bytes(rng, data)
    return bytes(data)


# --------------------------------------------------------------------------- checks


def _assert_names_file_and_line(error: Exception, path, data: bytes, empty_message: str):
    message = str(error)
    assert "\n" not in message and len(message) < len(str(path)) + 600, message[:2000]
    if message == f"{path}: {empty_message}":
        text = data[len(BOM):] if data.startswith(BOM) else data
        assert not text.strip(), message  # the reader skips blank lines, as its docs say
        return
    assert message.startswith(f"{path}:"), message[:2000]
    match = LINE.match(message, len(str(path)) + 1)
    assert match, message[:2000]
    assert int(match.group(1)) <= data.count(b"\n") + 1, message[:2000]


def _write_case(tmp_path, seed: int, data: bytes):
    # A fresh name per case: rewriting one file costs milliseconds on ext4, which flushes a
    # file truncated and rewritten when it is closed.
    path = tmp_path / f"case{seed}.jsonl"
    path.write_bytes(data)
    return path


def _run(tmp_path, seed: int, base: list[dict], read, error_type, empty_message, check=None):
    rng = random.Random(seed)
    data = _damaged_file(rng, base)
    path = _write_case(tmp_path, seed, data)
    try:
        result = read(path)
    except error_type as e:
        _assert_names_file_and_line(e, path, data, empty_message)
        return "refused"
    except Exception as e:  # pragma: no cover - what the test exists to catch
        raise AssertionError(f"seed {seed}: {type(e).__name__}: {str(e)[:500]}\n"
                             f"file: {data[:2000]!r}") from e
    if check:
        check(result)
    return "read"


def _valid_memes(memes):
    assert memes and len({m.id for m in memes}) == len(memes)
    for meme in memes:
        assert type(meme.id) is int and -2 ** 63 <= meme.id < 2 ** 63
        assert image_path_problem(meme.img) is None
        meme.text.encode("utf-8")  # no lone surrogate gets through
        meme.img.encode("utf-8")


def _valid_predictions(preds):
    assert preds.ids and len(set(preds.ids)) == len(preds.ids)
    for task, scores in preds.scores.items():
        assert scores.shape == (len(preds.ids), len(LABELS[task]))
        assert np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 1))


@pytest.mark.parametrize("base", ["labelled", "unlabelled"])
def test_damaged_annotation_files_are_read_or_refused_naming_file_and_line(tmp_path, base):
    rows = LABELLED if base == "labelled" else UNLABELLED
    outcomes = [_run(tmp_path, seed, rows, read_annotations, AnnotationError,
                     "no memes (empty file)", _valid_memes) for seed in range(CASES)]
    # The mutations reach both sides: a test that only ever refused would prove little.
    assert outcomes.count("read") > CASES // 20 and outcomes.count("refused") > CASES // 2


@pytest.mark.parametrize("base", ["ours", "organisers"])
def test_damaged_prediction_files_are_read_or_refused_naming_file_and_line(tmp_path, base):
    rows = PREDICTIONS if base == "ours" else ORGANISERS
    outcomes = [_run(tmp_path, seed, rows, read_predictions, SubmissionError,
                     "no predictions (empty file)", _valid_predictions)
                for seed in range(CASES)]
    assert outcomes.count("read") > CASES // 20 and outcomes.count("refused") > CASES // 2


def test_damaged_prediction_files_checked_against_gold_raise_only_submission_errors(tmp_path):
    gold = tmp_path / "gold.json"
    gold.write_text("".join(json.dumps(row) + "\n" for row in LABELLED))
    for seed in range(CASES // 3):
        data = _damaged_file(random.Random(seed), ORGANISERS)
        path = _write_case(tmp_path, seed, data)
        try:
            check_submission(path, gold)
        except SubmissionError as e:
            message = str(e)
            # Ids of the gold without a prediction are a fact of the whole file: no line.
            assert message.startswith(f"{path}:") and "\n" not in message, message[:2000]
        except Exception as e:  # pragma: no cover
            raise AssertionError(f"seed {seed}: {type(e).__name__}: {str(e)[:500]}\n"
                                 f"file: {data[:2000]!r}") from e


def test_the_mutations_cover_what_they_claim():
    # Each kind of damage shows up among the cases (so the loop above is not vacuous).
    seen = b"".join(_damaged_file(random.Random(seed), PREDICTIONS) for seed in range(300))
    for needle in (BOM, b"\xff", b"NaN", b"9" * 5000, b"[" * 5000, b"\\ud800", b"set_name"):
        assert needle in seen, needle
