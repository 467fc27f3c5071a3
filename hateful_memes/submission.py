"""The prediction file format: write it, read it back, and check it before anyone scores it.

One JSON object a line: `id` (int) and, per predicted task, `pred_<task>` mapping every
label of LABELS[task] to a score in [0, 1], e.g.

    {"id": 42953, "pred_hate": {"not_hateful": 0.9, "hateful": 0.1}, "pred_pc": {...}}

A file may hold only the tasks that were predicted, but every row holds the same ones, so
a scorer never meets a row it has to guess about. The writer runs the reader's checks, so
nothing this module writes can fail to read back.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from hateful_memes.data import read_annotations
from hateful_memes.files import write_jsonl
from hateful_memes.labels import LABELS, TASKS

PRED_FIELDS: dict[str, str] = {task: f"pred_{task}" for task in TASKS}
_TASK_OF_FIELD: dict[str, str] = {field: task for task, field in PRED_FIELDS.items()}
_FIRST_IDS_SHOWN = 5


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
        raise ValueError(f"unknown task(s) {unknown}; expected some of {', '.join(TASKS)}")
    rows = []
    for i, id_ in enumerate(ids):
        row: dict = {"id": int(id_) if isinstance(id_, (int, np.integer)) else id_}
        for task, matrix in matrices.items():
            row[PRED_FIELDS[task]] = dict(zip(LABELS[task], map(float, matrix[i])))
        rows.append(row)
    return rows


def _check_score(value, where: str, field: str, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SubmissionError(f"{where}: {field}[{label!r}] is not a number: {value!r}")
    if not math.isfinite(value):
        raise SubmissionError(f"{where}: {field}[{label!r}] is {value}")
    if not 0.0 <= value <= 1.0:
        raise SubmissionError(f"{where}: {field}[{label!r}] = {value} is outside [0, 1]")
    return float(value)


def _check_row(row, where: str) -> tuple[int, dict[str, list[float]]]:
    """(id, {task: scores in LABELS order}) of one row, or SubmissionError."""
    if not isinstance(row, dict):
        raise SubmissionError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "id" not in row:
        raise SubmissionError(f"{where}: missing 'id'")
    id_ = row["id"]
    if isinstance(id_, bool) or not isinstance(id_, int):
        raise SubmissionError(f"{where}: id must be an integer, got {id_!r}")
    where = f"{where}: id {id_}"
    unknown = sorted(key for key in row if key != "id" and key not in _TASK_OF_FIELD)
    if unknown:
        raise SubmissionError(f"{where}: unknown key(s) {unknown}; expected id and some of "
                              f"{', '.join(PRED_FIELDS.values())}")
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
            raise SubmissionError(f"{where}: {field} lacks label(s) {missing}")
        extra = sorted(label for label in pred if label not in LABELS[task])
        if extra:
            raise SubmissionError(f"{where}: {field} has unknown label(s) {extra}; "
                                  f"expected {list(LABELS[task])}")
        preds[task] = [_check_score(pred[label], where, field, label) for label in LABELS[task]]
    if not preds:
        raise SubmissionError(f"{where}: no prediction; expected some of "
                              f"{', '.join(PRED_FIELDS.values())}")
    return id_, preds


class _Collector:
    """Checks rows one by one against each other: unique ids, the same tasks in every row."""

    def __init__(self, path: Path):
        self.path = path
        self.ids: list[int] = []
        self.lines: dict[int, int] = {}
        self.preds: dict[str, list[list[float]]] = {}
        self.first_line = 0

    def add(self, row, lineno: int) -> None:
        where = f"{self.path}:{lineno}"
        id_, preds = _check_row(row, where)
        if id_ in self.lines:
            raise SubmissionError(
                f"{where}: id {id_}: duplicate id (first on line {self.lines[id_]})")
        if not self.ids:
            self.preds = {task: [] for task in preds}
            self.first_line = lineno
        elif set(preds) != set(self.preds):
            def fields(tasks):
                return ", ".join(PRED_FIELDS[t] for t in TASKS if t in tasks)
            raise SubmissionError(f"{where}: id {id_}: has {fields(preds)} but line "
                                  f"{self.first_line} has {fields(self.preds)}; every row must "
                                  f"hold the same tasks")
        self.lines[id_] = lineno
        self.ids.append(id_)
        for task, values in preds.items():
            self.preds[task].append(values)

    def result(self) -> tuple[list[int], dict[str, np.ndarray]]:
        if not self.ids:
            raise SubmissionError(f"{self.path}: no predictions (empty file)")
        return list(self.ids), {task: np.asarray(values, dtype=float)
                                for task, values in self.preds.items()}


def write_submission(path: str | os.PathLike, ids: Sequence[int],
                     scores: dict[str, np.ndarray]) -> None:
    """Validate the rows exactly as read_submission would, then write them atomically."""
    rows = make_rows(ids, scores)
    collector = _Collector(Path(path))
    for lineno, row in enumerate(rows, start=1):
        collector.add(row, lineno)
    collector.result()
    write_jsonl(path, rows)


def _read(path: Path) -> _Collector:
    collector = _Collector(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise SubmissionError(f"{path}:{lineno}: not UTF-8 ({e.reason})") from None
            except json.JSONDecodeError as e:
                raise SubmissionError(
                    f"{path}:{lineno}: malformed JSON ({e.msg}, column {e.colno})") from None
            collector.add(row, lineno)
    collector.result()  # refuses an empty file
    return collector


def read_submission(path: str | os.PathLike) -> tuple[list[int], dict[str, np.ndarray]]:
    """(ids in file order, {task: (n, K) scores in LABELS[task] order}), or SubmissionError."""
    return _read(Path(path)).result()


def check_submission(path: str | os.PathLike,
                     gold_path: str | os.PathLike | None = None) -> dict:
    """{"n": rows, "tasks": [...]} of a valid file; with `gold_path`, ids must match the gold's."""
    path = Path(path)
    collector = _read(path)
    ids = collector.ids
    summary = {"n": len(ids), "tasks": [task for task in TASKS if task in collector.preds]}
    if gold_path is not None:
        gold_ids = [meme.id for meme in read_annotations(gold_path)]
        known = set(gold_ids)
        unknown = [id_ for id_ in ids if id_ not in known]
        if unknown:
            raise SubmissionError(
                f"{path}:{collector.lines[unknown[0]]}: id {unknown[0]}: not in {gold_path} "
                f"({len(unknown)} such id(s), first: {unknown[:_FIRST_IDS_SHOWN]})")
        predicted = set(ids)
        missing = [id_ for id_ in gold_ids if id_ not in predicted]
        if missing:
            raise SubmissionError(
                f"{path}: {len(missing)} of {len(gold_ids)} id(s) of {gold_path} have no "
                f"prediction, first: {missing[:_FIRST_IDS_SHOWN]}")
    return summary
