"""What the training data says of a meme's caption twins: the memes with its caption.

Hateful Memes repeats captions on purpose: a hateful meme's benign confounder keeps the
caption under another picture. A text-only model cannot tell twins apart, and the bag of fold
heads has learnt each training caption with its twin's label, which for a confounder is the
wrong one. The twins' labels still carry signal, and train alone shows it: a train meme whose
twins are all not hateful is hateful 49% of the time, one whose caption appears once 30%
(dev_seen's memes with a train caption: 80% hateful, the rest 40%).

So the Platt maps of a run (`scoring.calibration`) also read three numbers per meme and label,
fitted on train out of fold like the rest of the map: whether the training data holds the
caption under another meme, the share of those twins that are hateful, and the share that
carry this label. A meme's own entry never counts (a training meme is looked up without
itself, by id), so the features of a train meme are what a new meme with that caption would
see. A caption the training data does not hold gets zeros: its map keeps the slope fitted on
all of train, with the intercept of train's memes without a twin. Measured in
experiments/README.md ("Unseen-like check"), also on the memes without a twin alone.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from ..labels import LABELS
from .annotations import Meme, gold_matrix
from .crossval import caption_key

FEATURES = ("has_twin", "twins_hateful", "twins_label")


class CaptionTwins:
    """Gold labels of the training memes, looked up by caption (`crossval.caption_key`)."""

    def __init__(self, keys: Sequence[str], ids: Sequence, gold: dict[str, np.ndarray]):
        self.keys, self.ids = list(keys), [str(i) for i in ids]
        self.gold = {t: np.asarray(gold[t], dtype=np.float32) for t in LABELS}
        for task, g in self.gold.items():
            if g.shape != (len(self.keys), len(LABELS[task])):
                raise ValueError(f"caption twins: {task} gold has shape {g.shape}, expected "
                                 f"({len(self.keys)}, {len(LABELS[task])})")
        if len(self.ids) != len(self.keys):
            raise ValueError(f"caption twins: {len(self.ids)} ids for {len(self.keys)} captions")
        self._rows: dict[str, list[int]] = defaultdict(list)
        for row, key in enumerate(self.keys):
            self._rows[key].append(row)

    @classmethod
    def from_memes(cls, memes: Sequence[Meme]) -> "CaptionTwins":
        return cls([caption_key(m.text) for m in memes], [m.id for m in memes],
                   {t: gold_matrix(memes, t) for t in LABELS})

    def features(self, task: str, texts: Sequence[str], ids: Sequence | None = None) -> np.ndarray:
        """(n, K, 3) float32: FEATURES of each meme for each label of `task`; a meme whose id
        is given is never its own twin."""
        k_labels = len(LABELS[task])
        out = np.zeros((len(texts), k_labels, len(FEATURES)), dtype=np.float32)
        ids = [None] * len(texts) if ids is None else [str(i) for i in ids]
        if len(ids) != len(texts):
            raise ValueError(f"caption twins: {len(ids)} ids for {len(texts)} captions")
        hateful = self.gold["hate"][:, 1]
        for i, (text, own) in enumerate(zip(texts, ids)):
            rows = [r for r in self._rows.get(caption_key(text), ()) if self.ids[r] != own]
            if rows:
                out[i, :, 0] = 1.0
                out[i, :, 1] = hateful[rows].mean()
                out[i, :, 2] = self.gold[task][rows].mean(0)
        return out

    def state_dict(self) -> dict:
        """Plain data (lists of strings and numbers) for a checkpoint."""
        return {"keys": list(self.keys), "ids": list(self.ids),
                "gold": {t: g.astype(np.uint8).tolist() for t, g in self.gold.items()}}

    @classmethod
    def from_state(cls, state: dict) -> "CaptionTwins":
        return cls(state["keys"], state["ids"],
                   {t: np.asarray(state["gold"][t], dtype=np.float32).reshape(
                       len(state["keys"]), len(LABELS[t])) for t in LABELS})
