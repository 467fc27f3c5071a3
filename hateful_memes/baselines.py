"""Reference systems for the benchmark: what our model must beat.

`ConstantPrior` scores every meme with the label frequencies of train: it reads no input,
so whatever it reaches (micro AUROC 0.765 on Task A, because the empty label dominates)
is free. `TfidfLogReg` is the peer a practitioner reaches for first: word and character
n-gram TF-IDF of the caption with one logistic regression per label.

Both have `fit(memes)` and `predict(memes) -> {"hate", "pc", "attack": (n, K) scores}`,
columns in LABELS order, the format `metrics.evaluate` and the submission writer take.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from .data import Meme, gold_matrix, is_labelled
from .labels import LABELS, TASKS


def _gold(memes: Sequence[Meme], who: str) -> dict[str, np.ndarray]:
    if not memes:
        raise ValueError(f"{who}: no training memes")
    if not is_labelled(memes):
        raise ValueError(f"{who}: training memes must carry gold labels for every task "
                         f"(an unlabelled file such as test.jsonl?)")
    return {task: gold_matrix(memes, task) for task in TASKS}


class ConstantPrior:
    """Every meme gets train's per-label frequency: the score of knowing nothing."""

    def __init__(self):
        self.means: dict[str, np.ndarray] | None = None

    def fit(self, memes: Sequence[Meme]) -> "ConstantPrior":
        self.means = {task: y.mean(axis=0).astype(np.float32)
                      for task, y in _gold(memes, "ConstantPrior").items()}
        return self

    def predict(self, memes: Sequence[Meme]) -> dict[str, np.ndarray]:
        if self.means is None:
            raise RuntimeError("ConstantPrior: call fit() before predict()")
        return {task: np.tile(m, (len(memes), 1)) for task, m in self.means.items()}


class TfidfLogReg:
    """Caption TF-IDF (word 1-2-grams + char_wb 2-5-grams, sublinear tf), one L2 logistic
    regression per label of every task.

    With far more n-gram features than memes (55k against 8,500 on train.json) liblinear's dual
    solver fits each label in a fraction of a second: all 16 labels in ~2 s, against ~40 s for
    its primal solver and over a minute for lbfgs, to the same solution. The vectoriser is
    fitted once: `with_C` refits only the classifiers, so choosing C on a grid is cheap.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000):
        if not C > 0:
            raise ValueError(f"C must be positive, got {C}")
        self.C = C
        self.max_iter = max_iter
        self._word: TfidfVectorizer | None = None
        self._char: TfidfVectorizer | None = None
        self._train: tuple[sp.csr_matrix, dict[str, np.ndarray]] | None = None
        # Per task, per label: a fitted classifier, or the label's constant training frequency
        # where train has only one class (liblinear cannot fit that).
        self.classifiers: dict[str, list[LogisticRegression | float]] = {}

    def _vectorize(self, memes: Sequence[Meme]) -> sp.csr_matrix:
        texts = [m.text for m in memes]
        return sp.hstack([self._word.transform(texts), self._char.transform(texts)], format="csr")

    def fit(self, memes: Sequence[Meme]) -> "TfidfLogReg":
        gold = _gold(memes, "TfidfLogReg")
        texts = [m.text for m in memes]
        self._word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=2,
                                     sublinear_tf=True, dtype=np.float32)
        self._char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2,
                                     sublinear_tf=True, dtype=np.float32)
        x = sp.hstack([self._word.fit_transform(texts), self._char.fit_transform(texts)],
                      format="csr")
        self._train = (x, gold)
        self._fit_classifiers()
        return self

    def _fit_classifiers(self) -> None:
        x, gold = self._train
        self.classifiers = {}
        for task in TASKS:
            per_label: list[LogisticRegression | float] = []
            for k in range(len(LABELS[task])):
                y = gold[task][:, k]
                if y.min() == y.max():
                    per_label.append(float(y[0]))
                    continue
                clf = LogisticRegression(C=self.C, solver="liblinear", dual=True,
                                         max_iter=self.max_iter)
                per_label.append(clf.fit(x, y))
            self.classifiers[task] = per_label

    def with_C(self, C: float) -> "TfidfLogReg":
        """A copy with classifiers refitted at `C` on the same vectorised training set."""
        if self._train is None:
            raise RuntimeError("TfidfLogReg: call fit() before with_C()")
        other = TfidfLogReg(C, self.max_iter)
        other._word, other._char, other._train = self._word, self._char, self._train
        other._fit_classifiers()
        return other

    def predict(self, memes: Sequence[Meme]) -> dict[str, np.ndarray]:
        if not self.classifiers:
            raise RuntimeError("TfidfLogReg: call fit() before predict()")
        x = self._vectorize(memes)
        out = {}
        for task, per_label in self.classifiers.items():
            cols = [np.full(x.shape[0], clf, dtype=np.float64) if isinstance(clf, float)
                    else clf.predict_proba(x)[:, 1] for clf in per_label]
            out[task] = np.stack(cols, axis=1).astype(np.float32)
        return out
