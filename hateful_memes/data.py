"""Reading the shared task's annotation files into `Meme` records.

The organisers' files (train.json, dev_seen.json, dev_unseen.json, test.jsonl) hold one
JSON object a line: `id`, `img` (relative to the data root), `text`, and in labelled files
`gold_hate`, `gold_pc`, `gold_attack`. The raw annotator fields (`pc`, `attack`) and
`set_name` are ignored: the gold lists are what the task scores against.

A file is read whole or not at all: the first problem raises `AnnotationError` naming the
path and line, so a model never trains on a silently truncated or half-labelled set.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hateful_memes.labels import LABELS, TASKS, LabelError, check, encode_many

GOLD_FIELDS: dict[str, str] = {task: f"gold_{task}" for task in TASKS}


class AnnotationError(ValueError):
    """An annotation file that cannot be read as the task's format ("PATH:LINE: problem")."""


@dataclass(frozen=True)
class Meme:
    id: int
    img: str  # as in the file, e.g. "img/42953.png", relative to the data root
    text: str
    gold_hate: tuple[str, ...] | None = None  # None in unlabelled files (test.jsonl)
    gold_pc: tuple[str, ...] | None = None
    gold_attack: tuple[str, ...] | None = None

    def gold(self, task: str) -> tuple[str, ...] | None:
        if task not in GOLD_FIELDS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        return getattr(self, GOLD_FIELDS[task])


def _parse_line(raw: bytes, where: str) -> dict:
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{where}: malformed JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(row, dict):
        raise AnnotationError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def _meme(row: dict, where: str) -> Meme:
    for key in ("id", "img", "text"):
        if key not in row:
            raise AnnotationError(f"{where}: missing {key!r}")
    # bool is a subclass of int in Python, but `true` is no meme id.
    if not isinstance(row["id"], int) or isinstance(row["id"], bool):
        raise AnnotationError(f"{where}: id must be an integer, got {row['id']!r}")
    for key in ("img", "text"):
        if not isinstance(row[key], str):
            raise AnnotationError(
                f"{where}: id {row['id']}: {key} must be a string, got {row[key]!r}")
    gold = {}
    for task, field in GOLD_FIELDS.items():
        if field in row:
            try:
                gold[field] = check(task, row[field])
            except LabelError as e:
                raise AnnotationError(f"{where}: id {row['id']}: {field}: {e}") from None
    return Meme(id=row["id"], img=row["img"], text=row["text"], **gold)


def read_annotations(path: str | os.PathLike) -> list[Meme]:
    """All memes of one annotation file, in file order; raises AnnotationError on any problem."""
    path = Path(path)
    memes: list[Meme] = []
    first_line: dict[int, int] = {}
    gold_fields: frozenset[str] | None = None
    gold_line = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            row = _parse_line(raw, where)
            meme = _meme(row, where)
            if meme.id in first_line:
                raise AnnotationError(
                    f"{where}: duplicate id {meme.id} (first on line {first_line[meme.id]})")
            first_line[meme.id] = lineno
            # A file mixing labelled and unlabelled rows is a broken export, not a partial set.
            present = frozenset(field for field in GOLD_FIELDS.values() if field in row)
            if gold_fields is None:
                gold_fields, gold_line = present, lineno
            elif present != gold_fields:
                extra = sorted(present - gold_fields)
                lacking = sorted(gold_fields - present)
                problem = (f"has {', '.join(extra)}" if extra else f"lacks {', '.join(lacking)}")
                raise AnnotationError(
                    f"{where}: id {meme.id} {problem}, unlike line {gold_line}; "
                    f"a file must be all labelled or all unlabelled")
            memes.append(meme)
    if not memes:
        raise AnnotationError(f"{path}: no memes (empty file)")
    return memes


def is_labelled(memes: Sequence[Meme]) -> bool:
    """True when every meme carries gold labels for all three tasks."""
    return all(meme.gold(task) is not None for meme in memes for task in TASKS)


def gold_matrix(memes: Sequence[Meme], task: str) -> np.ndarray:
    """(n, len(LABELS[task])) multi-hot gold matrix, columns in LABELS[task] order."""
    if task not in LABELS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    lists = []
    for meme in memes:
        gold = meme.gold(task)
        if gold is None:
            raise ValueError(f"meme {meme.id} has no {GOLD_FIELDS[task]} (an unlabelled file?)")
        lists.append(gold)
    return encode_many(task, lists)
