"""Reading the shared task's annotation files into `Meme` records.

The organisers' files (train.json, dev_seen.json, dev_unseen.json, test.jsonl) hold one
JSON object a line: `id`, `img` (relative to the data root), `text`, and in labelled files
`gold_hate`, `gold_pc`, `gold_attack`. `set_name` (e.g. "dev_seen") is kept, so that a
prediction file that carries it can be checked against it; the raw annotator fields (`pc`,
`attack`) are ignored: the gold lists are what the task scores against.

A file is read whole or not at all: the first problem raises `AnnotationError` naming the
path and line (and the id, once it is known), so a model never trains on a silently truncated
or half-labelled set. `json_lines` is the line reader that the prediction files share.

`img` paths come from strangers' files: `image_path` joins one to an image root and refuses
one that is absolute or climbs out of it, and the reader refuses such a path up front.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterator, Sequence

import numpy as np

from ..labels import LABELS, TASKS, LabelError, check, encode_many

GOLD_FIELDS: dict[str, str] = {task: f"gold_{task}" for task in TASKS}
UTF8_BOM = b"\xef\xbb\xbf"
# Ids beyond 64 bits would overflow the numpy arrays that carry ids further on.
ID_RANGE = (-(2 ** 63), 2 ** 63)


class AnnotationError(ValueError):
    """An annotation file that cannot be read as the task's format ("PATH:LINE: problem")."""


class ImagePathError(ValueError):
    """An `img` path that would lead outside the image root."""


@dataclass(frozen=True)
class Meme:
    id: int
    img: str  # as in the file, e.g. "img/42953.png", relative to the data root
    text: str
    gold_hate: tuple[str, ...] | None = None  # None in unlabelled files (test.jsonl)
    gold_pc: tuple[str, ...] | None = None
    gold_attack: tuple[str, ...] | None = None
    set_name: str | None = None  # e.g. "dev_seen", where the file says

    def gold(self, task: str) -> tuple[str, ...] | None:
        if task not in GOLD_FIELDS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        return getattr(self, GOLD_FIELDS[task])


def _parse_line(raw: bytes, where: str, error: type[ValueError], first: bool) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
    # A JSON array file starts with "[", and its first line is either the whole array or
    # not JSON by itself (a pretty-printed array): either way, say what the file is.
    array = first and text.lstrip().startswith("[")
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        if array:
            raise error(f"{where}: {JSON_ARRAY}") from None
        raise error(f"{where}: malformed JSON ({e.msg}, column {e.colno})") from None
    except RecursionError:
        raise error(f"{where}: malformed JSON (nested too deeply)") from None
    except ValueError as e:  # an integer of more digits than Python converts
        raise error(f"{where}: malformed JSON ({e})") from None
    if array and isinstance(row, list):
        raise error(f"{where}: {JSON_ARRAY}")
    if not isinstance(row, dict):
        raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


JSON_ARRAY = "this file is a JSON array; expected one JSON object per line (JSON Lines)"


def json_lines(path: str | os.PathLike,
               error: type[ValueError] = AnnotationError) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON Lines file.

    Every problem is an `error` naming the path (and the line): a directory, an unreadable
    file, bytes that are not UTF-8, malformed JSON, a line that is not an object, a JSON
    array file. A missing file stays FileNotFoundError. A UTF-8 byte order mark at the start
    (what several editors write) is read as the encoding mark it is.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise error(f"{path}: is a directory; expected a file with one JSON object per "
                    f"line") from None
    except FileNotFoundError:
        raise
    except OSError as e:
        raise error(f"{path}: cannot read this file ({e.strerror or e})") from None
    first = True
    with f:
        try:
            for lineno, raw in enumerate(f, start=1):
                if lineno == 1 and raw.startswith(UTF8_BOM):
                    raw = raw[len(UTF8_BOM):]
                if not raw.strip():
                    continue
                row = _parse_line(raw, f"{path}:{lineno}", error, first)
                first = False
                yield lineno, row
        except OSError as e:  # an I/O error part-way, e.g. a file on a failing disk
            raise error(f"{path}: cannot read this file ({e.strerror or e})") from None


def clip(text: str, limit: int = 300) -> str:
    """`text` cut to `limit` characters: a megabyte of damage must not become a megabyte of
    error message."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shown(value, limit: int = 80) -> str:
    """repr(value), clipped: how an error message names a value from the user's file."""
    try:
        return clip(repr(value), limit)
    except (RecursionError, ValueError):  # deep nesting, or an integer of too many digits
        return f"<{type(value).__name__}>"


def _lone_surrogate(text: str) -> int | None:
    """Index of the first character that no UTF-8 can hold (a JSON "\\ud800" escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


def image_path_problem(img: str) -> str | None:
    """What makes `img` unsafe to join to an image root, or None. Purely lexical: an image
    root that is a symlink to another disk stays usable."""
    if not img:
        return "is empty"
    if "\0" in img:
        return "contains a NUL character"
    if (PurePosixPath(img).is_absolute() or PureWindowsPath(img).drive
            or img.startswith("\\")):
        return "is absolute"
    depth = 0
    # Backslashes count as separators too, so that no spelling climbs out on any system.
    for part in img.replace("\\", "/").split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return "climbs out of the image root"
        elif part not in ("", "."):
            depth += 1
    return None


def image_path(root: str | os.PathLike, img: str) -> Path:
    """`root / img`, or ImagePathError when `img` is absolute or climbs out of `root`."""
    problem = image_path_problem(img)
    if problem:
        raise ImagePathError(f"img {shown(img)} {problem}; image paths must stay under the image "
                             f"root {root}")
    return Path(root) / img


def _meme(row: dict, where: str) -> Meme:
    for key in ("id", "img", "text"):
        if key not in row:
            raise AnnotationError(f"{where}: missing {key!r}")
    # bool is a subclass of int in Python, but `true` is no meme id.
    if not isinstance(row["id"], int) or isinstance(row["id"], bool):
        raise AnnotationError(f"{where}: id must be an integer, got {shown(row['id'])}")
    if not ID_RANGE[0] <= row["id"] < ID_RANGE[1]:
        raise AnnotationError(
            f"{where}: id {shown(row['id'])} is out of range (ids fit in 64 bits)")
    for key in ("img", "text", "set_name"):
        if key not in row:  # only set_name is optional; the others were checked above
            continue
        if not isinstance(row[key], str):
            raise AnnotationError(
                f"{where}: id {row['id']}: {key} must be a string, got {shown(row[key])}")
        # A lone surrogate decodes from JSON but cannot be encoded again: it would fail
        # later, in the feature cache, far from this line.
        bad = _lone_surrogate(row[key])
        if bad is not None:
            raise AnnotationError(
                f"{where}: id {row['id']}: {key} holds a lone surrogate "
                f"(U+{ord(row[key][bad]):04X} at character {bad}), which is not text")
    problem = image_path_problem(row["img"])
    if problem:
        raise AnnotationError(f"{where}: id {row['id']}: img {shown(row['img'])} {problem}; image "
                              f"paths are relative to the image root and stay under it")
    gold = {}
    for task, field in GOLD_FIELDS.items():
        if field in row:
            try:
                gold[field] = check(task, row[field])
            except LabelError as e:
                raise AnnotationError(
                    f"{where}: id {row['id']}: {field}: {clip(str(e))}") from None
    return Meme(id=row["id"], img=row["img"], text=row["text"], set_name=row.get("set_name"),
                **gold)


def read_annotations(path: str | os.PathLike) -> list[Meme]:
    """All memes of one annotation file, in file order; raises AnnotationError on any problem."""
    path = Path(path)
    memes: list[Meme] = []
    first_line: dict[int, int] = {}
    gold_fields: frozenset[str] | None = None
    gold_line = 0
    for lineno, row in json_lines(path, AnnotationError):
        where = f"{path}:{lineno}"
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
