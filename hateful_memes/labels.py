"""The label lists of the shared task, in one place, and what a valid label list is.

Every other module takes its labels from here. Each task is multi-label over a fixed,
ordered list whose first entry is the "empty" label (`not_hateful`, `pc_empty`,
`attack_empty`). The empty label means "none of the others": it never stands beside a
real label, and a meme with no real label carries it. How scores become such label lists
is decision.decide's business.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

HATE: tuple[str, ...] = ("not_hateful", "hateful")
PC: tuple[str, ...] = ("pc_empty", "disability", "nationality", "race", "religion", "sex")
ATTACK: tuple[str, ...] = (
    "attack_empty", "contempt", "dehumanizing", "exclusion",
    "inciting_violence", "inferiority", "mocking", "slurs",
)

# Keyed by the short task name used in field names: gold_<task>, pred_<task>.
LABELS: dict[str, tuple[str, ...]] = {"hate": HATE, "pc": PC, "attack": ATTACK}
TASKS: tuple[str, ...] = tuple(LABELS)
EMPTY: dict[str, str] = {task: labels[0] for task, labels in LABELS.items()}

# The shared task's letters: Task A is the protected categories, Task B the attack types.
TASK_LETTERS: dict[str, str] = {"A": "pc", "B": "attack"}


class LabelError(ValueError):
    """A label list that is not valid for its task."""


def _labels(task: str) -> tuple[str, ...]:
    try:
        return LABELS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}") from None


def tasks_for(letters: str) -> tuple[str, ...]:
    """`"A"` -> `("pc",)`, `"B"` -> `("attack",)`, `"AB"` -> `("pc", "attack")`."""
    if (not letters or any(c not in TASK_LETTERS for c in letters)
            or len(set(letters)) != len(letters)):
        raise ValueError(f"task must be A, B or AB, got {letters!r}")
    return tuple(TASK_LETTERS[c] for c in letters)


def check(task: str, labels: Iterable[str]) -> tuple[str, ...]:
    """Validate a gold label list and return it as a tuple; raise LabelError if it is not valid."""
    names = _labels(task)
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        raise LabelError(f"{task}: labels must be a list, got {type(labels).__name__} {labels!r}")
    labels = tuple(labels)
    if not labels:
        raise LabelError(f"{task}: empty label list (use [{EMPTY[task]!r}] for none)")
    unknown = [label for label in labels if label not in names]
    if unknown:
        # Spelt out, not runtime.progress.plural: the label lists import nothing of the package.
        raise LabelError(f"{task}: unknown {'label' if len(unknown) == 1 else 'labels'} {unknown}; "
                         f"expected some of {list(names)}")
    if len(set(labels)) != len(labels):
        raise LabelError(f"{task}: repeated label in {list(labels)}")
    if EMPTY[task] in labels and len(labels) > 1:
        raise LabelError(f"{task}: {EMPTY[task]!r} stands beside real labels in {list(labels)}")
    if task == "hate" and len(labels) != 1:
        raise LabelError(f"hate: exactly one of {list(HATE)} expected, got {list(labels)}")
    return labels


def encode(task: str, labels: Iterable[str]) -> np.ndarray:
    """Multi-hot float32 vector over LABELS[task] for one valid label list."""
    names = _labels(task)
    vec = np.zeros(len(names), dtype=np.float32)
    for label in check(task, labels):
        vec[names.index(label)] = 1.0
    return vec


def encode_many(task: str, label_lists: Sequence[Iterable[str]]) -> np.ndarray:
    """(n, len(LABELS[task])) multi-hot matrix."""
    n = len(_labels(task))
    if not label_lists:
        return np.zeros((0, n), dtype=np.float32)
    return np.stack([encode(task, labels) for labels in label_lists])


def is_consistent(task: str, multi_hot: np.ndarray) -> np.ndarray:
    """Per row: True where the empty label is on exactly when no real label is on."""
    multi_hot = np.asarray(multi_hot) > 0.5
    if multi_hot.ndim != 2 or multi_hot.shape[1] != len(_labels(task)):
        raise ValueError(f"{task}: expected (n, {len(_labels(task))}) array, got {multi_hot.shape}")
    return multi_hot[:, 0] != multi_hot[:, 1:].any(axis=1)
