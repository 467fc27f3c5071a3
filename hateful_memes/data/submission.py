"""The prediction file format: write it, read it back, and check it before anyone scores it.

One JSON object a line: `id` (int) and, per predicted task, `pred_<task>` mapping every
label of LABELS[task] to a score in [0, 1], e.g.

    {"id": 42953, "pred_hate": {"not_hateful": 0.9, "hateful": 0.1}, "pred_pc": {...}}

A file may hold only the tasks that were predicted, but every row holds the same ones, so
a scorer never meets a row it has to guess about. The writer runs the reader's checks, so
nothing this module writes can fail to read back.

The organisers' own prediction files add `"set_name": "dev_seen"` to every line: it is read,
and checked against the gold file's set_name where both have one. An id on more than one
line is refused with the count of such ids and the first few with their lines, so that one
typo reads differently from a broken export.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..labels import LABELS, TASKS
from ..runtime.files import write_jsonl
from ..runtime.progress import plural
from .annotations import ID_RANGE, Meme, clip, json_lines, read_annotations, shown

PRED_FIELDS: dict[str, str] = {task: f"pred_{task}" for task in TASKS}
_TASK_OF_FIELD: dict[str, str] = {field: task for task, field in PRED_FIELDS.items()}
_FIRST_IDS_SHOWN = 5
SET_NAME = "set_name"


class SubmissionError(ValueError):
    """A prediction file that breaks the format ("PATH:LINE: id N: problem")."""


def make_rows(ids: Sequence[int], scores: dict[str, np.ndarray]) -> list[dict]:
    """Rows of the submission format; `scores[task]` is (len(ids), K) in LABELS[task] order."""
    if not scores:
        raise ValueError("no task scores given; expected some of " + ", ".join(TASKS))
    matrices = {}
    for task in TASKS:  # a fixed key order makes files diff cleanly between runs
        if task not in scores:
            continue
        matrix = np.asarray(scores[task], dtype=float)
        if matrix.shape != (len(ids), len(LABELS[task])):
            raise ValueError(f"{task}: expected scores of shape ({len(ids)}, {len(LABELS[task])}),"
                             f" got {matrix.shape}")
        matrices[task] = matrix
    unknown = sorted(set(scores) - set(matrices))
    if unknown:
        raise ValueError(f"unknown {plural('task', len(unknown))} {unknown}; expected some of "
                         f"{', '.join(TASKS)}")
    rows = []
    for i, id_ in enumerate(ids):
        row: dict = {"id": int(id_) if isinstance(id_, (int, np.integer)) else id_}
        for task, matrix in matrices.items():
            row[PRED_FIELDS[task]] = dict(zip(LABELS[task], map(float, matrix[i])))
        rows.append(row)
    return rows


def _check_score(value, where: str, field: str, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SubmissionError(f"{where}: {field}[{label!r}] is not a number: {shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SubmissionError(f"{where}: {field}[{label!r}] is {value}")
    # Compared as given: an integer too large for a float is still simply out of range.
    if not 0 <= value <= 1:
        raise SubmissionError(f"{where}: {field}[{label!r}] = {shown(value)} is outside [0, 1]")
    return float(value)


def _check_row(row, where: str) -> tuple[int, dict[str, list[float]], str | None]:
    """(id, {task: scores in LABELS order}, set_name or None) of one row, or SubmissionError."""
    if not isinstance(row, dict):
        raise SubmissionError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "id" not in row:
        raise SubmissionError(f"{where}: missing 'id'")
    id_ = row["id"]
    if isinstance(id_, bool) or not isinstance(id_, int):
        raise SubmissionError(f"{where}: id must be an integer, got {shown(id_)}")
    if not ID_RANGE[0] <= id_ < ID_RANGE[1]:
        raise SubmissionError(f"{where}: id {shown(id_)} is out of range (ids fit in 64 bits)")
    where = f"{where}: id {id_}"
    unknown = sorted(key for key in row
                     if key not in ("id", SET_NAME) and key not in _TASK_OF_FIELD)
    if unknown:
        raise SubmissionError(f"{where}: unknown {plural('key', len(unknown))} "
                              f"{shown(unknown, 200)}; expected id, optionally set_name, and "
                              f"some of {', '.join(PRED_FIELDS.values())}")
    set_name = row.get(SET_NAME)
    if SET_NAME in row and not isinstance(set_name, str):
        raise SubmissionError(f"{where}: set_name must be a string, got {shown(set_name)}")
    preds = {}
    for field, task in _TASK_OF_FIELD.items():
        if field not in row:
            continue
        pred = row[field]
        if not isinstance(pred, dict):
            raise SubmissionError(f"{where}: {field} must be an object of label -> score, "
                                  f"got {type(pred).__name__}")
        missing = [label for label in LABELS[task] if label not in pred]
        if missing:
            raise SubmissionError(f"{where}: {field} lacks {plural('label', len(missing))} "
                                  f"{missing}")
        extra = sorted(label for label in pred if label not in LABELS[task])
        if extra:
            raise SubmissionError(f"{where}: {field} has unknown {plural('label', len(extra))} "
                                  f"{shown(extra, 200)}; expected {list(LABELS[task])}")
        preds[task] = [_check_score(pred[label], where, field, label) for label in LABELS[task]]
    if not preds:
        raise SubmissionError(f"{where}: no prediction; expected some of "
                              f"{', '.join(PRED_FIELDS.values())}")
    return id_, preds, set_name


@dataclass
class Predictions:
    """A prediction file as read: ids in file order, scores per task in LABELS order, the
    line of each id, and the set_name of the rows that carry one."""
    path: Path
    ids: list[int]
    scores: dict[str, np.ndarray]
    lines: dict[int, int]
    set_names: dict[int, str]


class _Collector:
    """Checks rows one by one against each other: the same tasks in every row; and, once all
    are read, unique ids."""

    def __init__(self, path: Path):
        self.path = path
        self.ids: list[int] = []
        self.lines: dict[int, int] = {}
        self.repeats: dict[int, list[int]] = {}  # id -> its later lines
        self.set_names: dict[int, str] = {}
        self.preds: dict[str, list[list[float]]] = {}
        self.first_line = 0

    def add(self, row, lineno: int) -> None:
        where = f"{self.path}:{lineno}"
        id_, preds, set_name = _check_row(row, where)
        if not self.ids:
            self.preds = {task: [] for task in preds}
            self.first_line = lineno
        elif set(preds) != set(self.preds):
            def fields(tasks):
                return ", ".join(PRED_FIELDS[t] for t in TASKS if t in tasks)
            raise SubmissionError(f"{where}: id {id_}: has {fields(preds)} but line "
                                  f"{self.first_line} has {fields(self.preds)}; every row must "
                                  f"hold the same tasks")
        if id_ in self.lines:
            # Read on, so that the error can say whether this is one slip or a pattern.
            self.repeats.setdefault(id_, []).append(lineno)
            return
        self.lines[id_] = lineno
        self.ids.append(id_)
        if set_name is not None:
            self.set_names[id_] = set_name
        for task, values in preds.items():
            self.preds[task].append(values)

    def _refuse_repeats(self) -> None:
        first = sorted(self.repeats, key=lambda id_: self.repeats[id_][0])
        extra = sum(len(lines) for lines in self.repeats.values())
        shown = "; ".join(
            f"id {id_} on lines {', '.join(map(str, [self.lines[id_], *self.repeats[id_]]))}"
            for id_ in first[:_FIRST_IDS_SHOWN])
        hidden = len(first) - _FIRST_IDS_SHOWN
        more = f"; and {hidden} more" if hidden > 0 else ""
        raise SubmissionError(
            f"{self.path}:{self.repeats[first[0]][0]}: {len(first)} duplicated "
            f"{plural('id', len(first))} ({extra} extra {plural('line', extra)}): {shown}{more}; "
            "every id needs exactly one prediction")

    def result(self) -> Predictions:
        if not self.ids:
            raise SubmissionError(f"{self.path}: no predictions (empty file)")
        if self.repeats:
            self._refuse_repeats()
        scores = {task: np.asarray(values, dtype=float) for task, values in self.preds.items()}
        return Predictions(self.path, list(self.ids), scores, dict(self.lines),
                           dict(self.set_names))


def write_submission(path: str | os.PathLike, ids: Sequence[int],
                     scores: dict[str, np.ndarray]) -> None:
    """Validate the rows exactly as read_submission would, then write them atomically."""
    rows = make_rows(ids, scores)
    collector = _Collector(Path(path))
    for lineno, row in enumerate(rows, start=1):
        collector.add(row, lineno)
    collector.result()  # refuses repeated ids
    write_jsonl(path, rows)


def read_predictions(path: str | os.PathLike) -> Predictions:
    """The whole file as `Predictions`, or SubmissionError naming the file and line."""
    path = Path(path)
    collector = _Collector(path)
    for lineno, row in json_lines(path, SubmissionError):
        collector.add(row, lineno)
    return collector.result()  # refuses an empty file and repeated ids


def read_submission(path: str | os.PathLike) -> tuple[list[int], dict[str, np.ndarray]]:
    """(ids in file order, {task: (n, K) scores in LABELS[task] order}), or SubmissionError."""
    preds = read_predictions(path)
    return preds.ids, preds.scores


def check_set_names(preds: Predictions, memes: Sequence[Meme],
                    gold_path: str | os.PathLike) -> None:
    """SubmissionError at the first row whose set_name differs from the gold meme's (rows
    or memes without a set_name are not compared)."""
    gold = {meme.id: meme.set_name for meme in memes if meme.set_name is not None}
    for id_ in preds.ids:
        ours, theirs = preds.set_names.get(id_), gold.get(id_)
        if ours is not None and theirs is not None and ours != theirs:
            raise SubmissionError(
                f"{preds.path}:{preds.lines[id_]}: id {id_}: set_name {shown(ours)}, but "
                f"{gold_path} has set_name {shown(theirs)} for this id; is this the prediction "
                f"file for {clip(theirs, 80)}?")


def unknown_ids(preds: Predictions, memes: Sequence[Meme]) -> list[int]:
    """Predicted ids that are not in `memes`, in file order."""
    known = {meme.id for meme in memes}
    return [id_ for id_ in preds.ids if id_ not in known]


def check_submission(path: str | os.PathLike,
                     gold_path: str | os.PathLike | None = None) -> dict:
    """{"n": rows, "tasks": [...]} of a valid file; with `gold_path`, ids must match the gold's
    (and set_names, where both have them)."""
    preds = read_predictions(path)
    ids = preds.ids
    summary = {"n": len(ids), "tasks": [task for task in TASKS if task in preds.scores]}
    if gold_path is not None:
        memes = read_annotations(gold_path)
        gold_ids = [meme.id for meme in memes]
        unknown = unknown_ids(preds, memes)
        if unknown:
            raise SubmissionError(
                f"{preds.path}:{preds.lines[unknown[0]]}: id {unknown[0]}: not in {gold_path} "
                f"({len(unknown)} such {plural('id', len(unknown))}, first: "
                f"{unknown[:_FIRST_IDS_SHOWN]})")
        check_set_names(preds, memes, gold_path)
        predicted = set(ids)
        missing = [id_ for id_ in gold_ids if id_ not in predicted]
        if missing:
            raise SubmissionError(
                f"{preds.path}: {len(missing)} of {len(gold_ids)} {plural('id', len(gold_ids))} of "
                f"{gold_path} {'has' if len(missing) == 1 else 'have'} no prediction, first: "
                f"{missing[:_FIRST_IDS_SHOWN]}")
    return summary
