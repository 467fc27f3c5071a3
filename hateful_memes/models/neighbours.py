"""A nearest-neighbour view of the caption: the labels of the training memes that read alike.

A meme's k nearest training memes by the cosine of the text encoder's caption embeddings vote
for its labels, each with weight exp(cosine / tau) (so the nearest counts most), and the vote
is shrunk towards train's label shares by `alpha` pseudo-neighbours of the nearest one's
weight, so that a meme with one close neighbour is not scored 0 or 1 by it:

    knn(x) = (sum_i w_i * y_i + alpha * prior) / (sum_i w_i + alpha),
    w_i = exp((cos(x, x_i) - max_j cos(x, x_j)) / tau)

The heads read the same embeddings, but through a layer fitted to all of train, which
smooths over the few memes a rare label has; the neighbours keep them. train.py mixes this
view into each task's scores (not the hateful one) before the Platt maps: measured on both
checks in experiments/README.md ("A nearest-neighbour view of the caption").

A training meme's caption twins (the same caption, `crossval.caption_key`) are never its
neighbours: the Platt maps read what train says of them already (data/twins.py), and a
confounder's twin carries the opposite label. Out of fold (`crossfit`), a meme's neighbours
come from the other folds only, as a new meme's come from all of train.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..data.annotations import Meme, gold_matrix
from ..data.crossval import caption_key
from ..labels import LABELS

# Queries are compared with train in blocks of this many rows (8,500 train memes: 35 MB).
_BLOCK = 1024


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class CaptionNeighbours:
    """Training memes' caption embeddings and gold labels, scored against by cosine."""

    def __init__(self, embeddings: np.ndarray, keys: Sequence[str], gold: dict[str, np.ndarray],
                 k: int = 10, tau: float = 0.05, alpha: float = 1.0):
        if not (isinstance(k, int) and k >= 1):
            raise ValueError(f"caption neighbours: k must be a whole number >= 1, got {k!r}")
        if not (tau > 0 and alpha >= 0):
            raise ValueError(f"caption neighbours: tau must be > 0 and alpha >= 0, got "
                             f"{tau!r}, {alpha!r}")
        # Kept at float16, as the checkpoint holds them (from_memes makes them unit rows
        # first): the scores a run reports at training are the ones its checkpoint reproduces.
        self.embeddings = np.asarray(embeddings, dtype=np.float16)
        self.keys = list(keys)
        n = len(self.keys)
        if self.embeddings.shape[0] != n or n == 0:
            raise ValueError(f"caption neighbours: {self.embeddings.shape[0]} embeddings for "
                             f"{n} captions")
        self.gold = {t: np.asarray(gold[t], dtype=np.float32) for t in LABELS}
        for task, g in self.gold.items():
            if g.shape != (n, len(LABELS[task])):
                raise ValueError(f"caption neighbours: {task} gold has shape {g.shape}, "
                                 f"expected ({n}, {len(LABELS[task])})")
        self.k, self.tau, self.alpha = k, float(tau), float(alpha)
        # What every query is compared with, made once: a service scoring one meme a request
        # would otherwise renormalise all of train each time.
        self._base = _unit_rows(self.embeddings)
        codes: dict[str, int] = {}
        self._codes = np.array([codes.setdefault(key, len(codes)) for key in self.keys])
        self._code_of = codes

    @classmethod
    def from_memes(cls, memes: Sequence[Meme], embeddings: np.ndarray,
                   **kw) -> "CaptionNeighbours":
        return cls(_unit_rows(embeddings), [caption_key(m.text) for m in memes],
                   {t: gold_matrix(memes, t) for t in LABELS}, **kw)

    def _vote(self, sim: np.ndarray, rows: np.ndarray | None) -> dict[str, np.ndarray]:
        """Each query's vote over train's `rows` (None: all), given its cosines to them (-inf:
        excluded)."""
        k = min(self.k, sim.shape[1])
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sim, idx, 1)
        # Twins left out are -inf; a query with nothing left votes train's shares alone.
        finite = np.isfinite(s)
        w = np.zeros_like(s)
        w[finite] = np.exp((s[finite] - s.max(1)[np.nonzero(finite)[0]]) / self.tau)
        out = {}
        for task, g in self.gold.items():
            y = g if rows is None else g[rows]
            prior = y.mean(0)
            out[task] = (((w[:, :, None] * y[idx]).sum(1) + self.alpha * prior)
                         / (w.sum(1)[:, None] + self.alpha)).astype(np.float32)
        return out

    def _scores(self, queries: np.ndarray, codes: np.ndarray, rows: np.ndarray | None) -> dict:
        """Votes of `queries` (unit rows) over train's `rows` (None: all, without copying
        them), twins (same code) excluded."""
        base, base_codes = ((self._base, self._codes) if rows is None
                            else (self._base[rows], self._codes[rows]))
        parts = []
        for start in range(0, len(queries), _BLOCK):
            q, c = queries[start:start + _BLOCK], codes[start:start + _BLOCK]
            sim = q @ base.T
            sim[c[:, None] == base_codes[None, :]] = -np.inf
            parts.append(self._vote(sim, rows))
        return {t: np.concatenate([p[t] for p in parts]) for t in LABELS}

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """{task: (n, K) float32} for memes with these caption embeddings and captions; a
        caption train holds never votes for itself (its twins are left out)."""
        if len(embeddings) != len(texts):
            raise ValueError(f"caption neighbours: {len(embeddings)} embeddings for "
                             f"{len(texts)} captions")
        if len(texts) == 0:
            return {t: np.zeros((0, len(LABELS[t])), np.float32) for t in LABELS}
        if np.shape(embeddings)[1] != self.embeddings.shape[1]:
            raise ValueError(f"caption neighbours: embeddings of width {np.shape(embeddings)[1]}, "
                             f"the run's are {self.embeddings.shape[1]} wide")
        codes = np.array([self._code_of.get(caption_key(t), -1) for t in texts])
        return self._scores(_unit_rows(embeddings), codes, None)

    def crossfit(self, fold_of: np.ndarray) -> dict[str, np.ndarray]:
        """Out-of-fold votes of the training memes themselves: each from the other folds."""
        fold_of = np.asarray(fold_of)
        if fold_of.shape != (len(self.keys),):
            raise ValueError(f"caption neighbours: {fold_of.shape[0]} folds for "
                             f"{len(self.keys)} memes")
        out = {t: np.zeros_like(g) for t, g in self.gold.items()}
        for f in np.unique(fold_of):
            held = np.flatnonzero(fold_of == f)
            rest = np.flatnonzero(fold_of != f)
            if len(rest) == 0:
                raise ValueError("caption neighbours: one fold holds every meme")
            votes = self._scores(self._base[held], self._codes[held], rest)
            for t in out:
                out[t][held] = votes[t]
        return out

    def state_dict(self) -> dict:
        """Tensors and plain data for a checkpoint (float16 embeddings: 20 MB for train)."""
        return {"embeddings": torch.from_numpy(self.embeddings.copy()), "keys": list(self.keys),
                "gold": {t: g.astype(np.uint8).tolist() for t, g in self.gold.items()},
                "k": self.k, "tau": self.tau, "alpha": self.alpha}

    @classmethod
    def from_state(cls, state: dict) -> "CaptionNeighbours":
        n = len(state["keys"])
        return cls(state["embeddings"].numpy(), state["keys"],
                   {t: np.asarray(state["gold"][t], dtype=np.float32).reshape(n, len(LABELS[t]))
                    for t in LABELS}, k=state["k"], tau=state["tau"], alpha=state["alpha"])
