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

from ..data.annotations import Meme, gold_matrix, is_labelled
from ..labels import LABELS, TASKS


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

    train.py also uses it as the second view of the caption in its ensemble, so a fitted model
    is kept as plain data (vocabularies, idf and weight arrays: `state_dict`/`from_state`),
    which a checkpoint holds without pickling any sklearn object.
    """

    VECTORIZERS = {
        "word": dict(analyzer="word", ngram_range=(1, 2)),
        "char": dict(analyzer="char_wb", ngram_range=(2, 5)),
    }

    def __init__(self, C: float = 1.0, max_iter: int = 1000):
        if not C > 0:
            raise ValueError(f"C must be positive, got {C}")
        self.C = C
        self.max_iter = max_iter
        self._vectorizers: dict[str, TfidfVectorizer] = {}
        self._train: tuple[sp.csr_matrix, dict[str, np.ndarray]] | None = None
        # Per task: (weights (F, K), bias (K,)); a label that train shows in one class only
        # (liblinear cannot fit that) gets zero weights and the logit of its frequency.
        self.weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _vectorize(self, texts: Sequence[str]) -> sp.csr_matrix:
        return sp.hstack([v.transform(list(texts)) for v in self._vectorizers.values()],
                         format="csr")

    def fit(self, memes: Sequence[Meme]) -> "TfidfLogReg":
        gold = _gold(memes, "TfidfLogReg")
        texts = [m.text for m in memes]
        self._vectorizers = {
            name: TfidfVectorizer(min_df=2, sublinear_tf=True, dtype=np.float32, **kw)
            for name, kw in self.VECTORIZERS.items()}
        x = sp.hstack([v.fit_transform(texts) for v in self._vectorizers.values()], format="csr")
        self._train = (x, gold)
        self._fit_classifiers()
        return self

    def _fit_classifiers(self) -> None:
        x, gold = self._train
        self.weights = {}
        for task in TASKS:
            k_labels = len(LABELS[task])
            w = np.zeros((x.shape[1], k_labels), dtype=np.float32)
            b = np.zeros(k_labels, dtype=np.float32)
            for k in range(k_labels):
                y = gold[task][:, k]
                if y.min() == y.max():
                    b[k] = 200.0 if y[0] > 0.5 else -200.0  # exactly 1 or 0 in float32
                    continue
                clf = LogisticRegression(C=self.C, solver="liblinear", dual=True,
                                         max_iter=self.max_iter).fit(x, y)
                w[:, k], b[k] = clf.coef_[0], clf.intercept_[0]
            self.weights[task] = (w, b)

    def with_C(self, C: float) -> "TfidfLogReg":
        """A copy with classifiers refitted at `C` on the same vectorised training set."""
        if self._train is None:
            raise RuntimeError("TfidfLogReg: call fit() before with_C()")
        other = TfidfLogReg(C, self.max_iter)
        other._vectorizers, other._train = self._vectorizers, self._train
        other._fit_classifiers()
        return other

    def predict(self, memes: Sequence[Meme]) -> dict[str, np.ndarray]:
        return self.predict_texts([m.text for m in memes])

    def predict_texts(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if not self.weights:
            raise RuntimeError("TfidfLogReg: call fit() before predict()")
        x = self._vectorize(texts)
        out = {}
        for task, (w, b) in self.weights.items():
            logits = np.asarray(x @ w, dtype=np.float64) + b
            out[task] = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        return out

    def state_dict(self) -> dict:
        """Everything `predict` needs, as tensors and plain data (no sklearn object)."""
        import torch

        if not self.weights:
            raise RuntimeError("TfidfLogReg: call fit() before state_dict()")
        return {
            "C": self.C,
            "vectorizers": {name: {"vocabulary": {t: int(i) for t, i in v.vocabulary_.items()},
                                   "idf": torch.from_numpy(v.idf_.astype(np.float32))}
                            for name, v in self._vectorizers.items()},
            "weights": {task: (torch.from_numpy(w.T.copy()), torch.from_numpy(b))
                        for task, (w, b) in self.weights.items()},
        }

    @classmethod
    def from_state(cls, state: dict) -> "TfidfLogReg":
        model = cls(float(state["C"]))
        for name, kw in cls.VECTORIZERS.items():
            saved = state["vectorizers"][name]
            v = TfidfVectorizer(sublinear_tf=True, dtype=np.float32,
                                vocabulary=dict(saved["vocabulary"]), **kw)
            v.idf_ = saved["idf"].numpy().astype(np.float64)
            model._vectorizers[name] = v
        model.weights = {task: (w.numpy().T.copy(), b.numpy())
                         for task, (w, b) in state["weights"].items()}
        return model
