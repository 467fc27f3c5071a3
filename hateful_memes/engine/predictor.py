"""One trained run as a scorer: the one code path from memes to written scores.

A run (train.py's RUN_DIR/checkpoint.pt) holds K fusion heads (one per fold, bagged: their
scores are averaged), optionally a TF-IDF + logistic-regression view of the caption blended
in and a nearest-neighbour view of it mixed into the task's labels (`models.neighbours`), a
Platt map per label and the per-label thresholds, both chosen out of fold, and the hateful
prevalence of its training data, and the training memes' labels by caption for the maps'
twin features (`data.twins`). Scoring is

    blend = (1 - w) * mean_k head_k(features) + w * tfidf(caption)     (w = tfidf_weight)
    blend = (1 - v) * blend + v * knn(caption)   task labels only       (v = knn_weight)
    raw = platt(blend, twins(caption))                                  (calibration.apply)
    scores = fold(rescale(raw, train prior -> prior), thresholds)

`raw` is what the 0.5-cut reports read; `scores` is what a submission holds (see
`thresholds.fold` for why the official metric is served best by it, and `decision.decide` for
the consistent label sets shown to people). predict.py, train.py's dev reports and the Python
API all score through `RunPredictor`, so a checkpoint alone reproduces the dev report.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.annotations import Meme, shown
from ..data.twins import FEATURES as TWIN_FEATURES
from ..data.twins import CaptionTwins
from ..features.inputs import Encoders, Inputs, build_inputs
from ..labels import LABELS
from ..models.baselines import TfidfLogReg
from ..models.model import MemeModel, build_model, load_checkpoint, load_problem
from ..models.neighbours import CaptionNeighbours
from ..runtime.checkpoints import CheckpointError
from ..scoring import calibration as calibration_
from ..scoring import prior as prior_
from ..scoring import thresholds as th
from .training import predict_scores, resolve_device


def blend(heads: dict[str, np.ndarray], tfidf: dict[str, np.ndarray] | None,
          weight: float, knn: dict[str, np.ndarray] | None = None,
          knn_weight: float = 0.0) -> dict[str, np.ndarray]:
    """(1 - weight) * heads + weight * tfidf, task by task (the heads' tasks); then the task
    labels (all but the hateful score) mixed with the neighbours' view: (1 - v) * . + v * knn.

    The hateful score is left alone: mixed there, the neighbours lowered its AUROC on
    dev_seen with every k and weight tried (experiments/README.md)."""
    out = dict(heads)
    if tfidf is not None and weight:
        out = {t: ((1 - weight) * s + weight * tfidf[t]).astype(np.float32)
               for t, s in out.items()}
    if knn is not None and knn_weight:
        out.update({t: ((1 - knn_weight) * s + knn_weight * knn[t]).astype(np.float32)
                    for t, s in out.items() if t != "hate"})
    return out


def caption_embeddings(inputs: Inputs, texts: Sequence[str], encoders: Encoders,
                       cache_dir=None, device: str = "cpu") -> np.ndarray:
    """The text encoder's embeddings of the captions, which the caption neighbours compare:
    the model inputs' own features, or (for a fine-tuned text encoder, whose inputs are the
    captions) those of the pretrained encoder. Under torchrun every rank must call this alike
    for a fine-tuned encoder (features.cache shares the work out)."""
    if isinstance(inputs.text, torch.Tensor):
        return inputs.text.cpu().numpy()
    from ..features.cache import text_features

    return text_features(encoders.text, texts, cache_dir=cache_dir, device=device,
                         progress=False)


def _from_state(path: Path, ckpt: dict, key: str, kind, what: str):
    """`kind.from_state(ckpt[key])`, None when the checkpoint has none; a CheckpointError
    naming the file and `what` when that state does not rebuild."""
    if ckpt.get(key) is None:
        return None
    try:
        return kind.from_state(ckpt[key])
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise CheckpointError(f"{path}: {what} is damaged: {e}") from None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_run_state(path: Path, ckpt: dict) -> None:
    """CheckpointError naming the file for a run-level entry of the wrong kind: a damaged or
    hand-edited checkpoint would otherwise fail later, in numpy, with no file named (or
    write a submission of NaNs and blame it)."""
    members = ckpt.get("members", [])
    if not isinstance(members, list):
        raise CheckpointError(f"{path}: its members entry is not a list of weights "
                              f"({type(members).__name__})")
    for key in ("thresholds", "calibration"):
        if not isinstance(ckpt.get(key) or {}, dict):
            raise CheckpointError(f"{path}: its {key} entry is not a table by task "
                                  f"({type(ckpt[key]).__name__})")
    for task, values in (ckpt.get("thresholds") or {}).items():
        try:
            t = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            t = None
        if (task not in LABELS or t is None or t.shape != (len(LABELS[task]),)
                or not np.all((t >= 0) & (t <= 1))):
            raise CheckpointError(f"{path}: its {shown(task)} thresholds are {shown(values)}, "
                                  "not one number in [0, 1] per label of a task")
    for key in ("tfidf_weight", "knn_weight"):
        weight = ckpt.get(key, 0.0)
        if not (_is_number(weight) and 0 <= weight <= 1):
            raise CheckpointError(f"{path}: its {key} is {shown(weight)}, not a number in "
                                  "[0, 1]")
    if ckpt.get("knn_weight") and ckpt.get("neighbours") is None:
        raise CheckpointError(f"{path}: its knn_weight is {ckpt['knn_weight']} but it holds no "
                              "caption neighbours")
    prior = ckpt.get("train_prior")
    if prior is not None and not (_is_number(prior) and 0 < prior < 1):
        raise CheckpointError(f"{path}: its train_prior is {shown(prior)}, not a rate in "
                              "(0, 1)")


class RunPredictor:
    def __init__(self, models: Sequence[MemeModel], tfidf: TfidfLogReg | None = None,
                 tfidf_weight: float = 0.0, thresholds: dict[str, Sequence[float]] | None = None,
                 fold_thresholds: bool = True, train_prior: float | None = None,
                 name: str = "", calibration: dict[str, Sequence] | None = None,
                 twins: CaptionTwins | None = None, neighbours: CaptionNeighbours | None = None,
                 knn_weight: float = 0.0):
        if not models:
            raise ValueError("a run needs at least one model")
        if tfidf_weight and tfidf is None:
            raise ValueError("tfidf_weight > 0 needs a TF-IDF model")
        if knn_weight and neighbours is None:
            raise ValueError("knn_weight > 0 needs the caption neighbours")
        self.models = list(models)
        self.cfg = self.models[0].cfg
        self.tfidf, self.tfidf_weight = tfidf, float(tfidf_weight)
        self.thresholds = {t: np.asarray(v, dtype=float) for t, v in (thresholds or {}).items()}
        self.fold_thresholds = fold_thresholds
        self.train_prior = train_prior
        self.name = name
        self.calibration = {t: np.asarray(v, dtype=np.float64)
                            for t, v in (calibration or {}).items()}
        self.twins = twins
        self.neighbours, self.knn_weight = neighbours, float(knn_weight)
        if twins is None and any(p.shape[1] > 2 for p in self.calibration.values()):
            raise ValueError("calibration with twin features needs the run's caption twins")
        self.encoders = Encoders(self.cfg.image_encoder, self.cfg.text_encoder)

    @classmethod
    def load(cls, run_dir: str | os.PathLike, device: str = "auto") -> "RunPredictor":
        run_dir = Path(run_dir)
        path = run_dir / "checkpoint.pt" if run_dir.is_dir() else run_dir
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no checkpoint (is {run_dir} a finished train.py "
                                    "run?)")
        first, ckpt = load_checkpoint(path)
        _check_run_state(path, ckpt)
        models = [first]
        for i, state in enumerate(ckpt.get("members", [])):
            model = build_model(first.cfg)
            try:
                model.load_state_dict(state)
            except (RuntimeError, TypeError, AttributeError) as e:
                raise CheckpointError(f"{path}: member {i + 1} does not fit the model's config: "
                                      f"{load_problem(e)}") from None
            models.append(model.eval())
        tfidf = _from_state(path, ckpt, "tfidf", TfidfLogReg, "its TF-IDF model")
        dev = resolve_device(device)
        for model in models:
            model.to(dev)
        twins = _from_state(path, ckpt, "twins", CaptionTwins, "its caption twins table")
        neighbours = _from_state(path, ckpt, "neighbours", CaptionNeighbours,
                                 "its caption neighbours")
        calibration = ckpt.get("calibration") or {}
        for task, params in calibration.items():
            try:
                shape = np.asarray(params, dtype=np.float64).shape
            except (TypeError, ValueError):
                shape = None
            widths = (2, 2 + len(TWIN_FEATURES)) if twins is not None else (2,)
            if task not in LABELS or shape not in [(len(LABELS[task]), w) for w in widths]:
                raise CheckpointError(f"{path}: its {task} calibration has shape {shape}, "
                                      "not one (a, b) number per label"
                                      + (" (and its twin features' weights)" if twins else ""))
        return cls(models, tfidf, ckpt.get("tfidf_weight", 0.0), ckpt.get("thresholds", {}),
                   bool(ckpt.get("fold_thresholds", False)), ckpt.get("train_prior"),
                   name=run_dir.name, calibration=calibration, twins=twins,
                   neighbours=neighbours, knn_weight=ckpt.get("knn_weight", 0.0))

    @property
    def device(self) -> str:
        return str(next(self.models[0].parameters()).device)

    def inputs(self, memes: Sequence[Meme], image_root, cache_dir=None,
               progress: bool = False, images=None, image_keys=None) -> Inputs:
        """Model inputs of `memes`: their image files under `image_root`, or `images` (RGB PIL
        images aligned with `memes`, cached by `image_keys`: build_inputs) in their place."""
        return build_inputs(memes, self.cfg, self.encoders, image_root, cache_dir,
                            model=self.models[0], progress=progress, device=self.device,
                            images=images, image_keys=image_keys)

    def raw_scores_of(self, inputs: Inputs, texts: Sequence[str], progress: bool = False,
                      ids: Sequence | None = None,
                      embeddings: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The blended scores before any prior or threshold, from model inputs and captions
        (and the memes' ids, when known: a training meme is never its own caption twin;
        and the captions' `caption_embeddings`, when already computed)."""
        # Fine-tuned members each carry their own encoder copy, but all share one spec, so the
        # raw inputs the first member's tokenizer/transform prepared suit every member.
        parts = [predict_scores(m, inputs, progress=progress) for m in self.models]
        heads = {t: np.mean([p[t] for p in parts], axis=0).astype(np.float32) for t in parts[0]}
        tfidf = self.tfidf.predict_texts(texts) if self.tfidf_weight else None
        if self.knn_weight and embeddings is None:
            embeddings = caption_embeddings(inputs, texts, self.encoders, device=self.device)
        knn = self.neighbours.predict(embeddings, texts) if self.knn_weight else None
        return self.calibrate(blend(heads, tfidf, self.tfidf_weight, knn, self.knn_weight),
                              texts, ids)

    def side(self, task: str, texts: Sequence[str] | None,
             ids: Sequence | None = None) -> np.ndarray | None:
        """The side features `task`'s map reads (None for a plain Platt map)."""
        params = self.calibration.get(task)
        if params is None or params.shape[1] == 2:
            return None
        if texts is None:
            raise ValueError(f"run {self.name}: its {task} map reads the captions' twins; "
                             "give the captions")
        return self.twins.features(task, texts, ids)

    def calibrate(self, blended: dict[str, np.ndarray], texts: Sequence[str] | None = None,
                  ids: Sequence | None = None) -> dict[str, np.ndarray]:
        """The run's Platt maps applied to blended scores (tasks without one pass unchanged)."""
        return {t: calibration_.apply(s, self.calibration[t], self.side(t, texts, ids))
                if t in self.calibration else s for t, s in blended.items()}

    def raw_scores(self, memes: Sequence[Meme], image_root, cache_dir=None,
                   progress: bool = False, images=None, image_keys=None) -> dict[str, np.ndarray]:
        inputs = self.inputs(memes, image_root, cache_dir, progress, images, image_keys)
        return self.raw_scores_of(inputs, [m.text for m in memes], progress,
                                  [m.id for m in memes])

    def resolve_prior(self, raw: dict[str, np.ndarray], prior: float | str | None) -> float | None:
        """None (the training prevalence), a rate in (0, 1), or "em" (estimated on `raw`)."""
        if prior is None:
            return None
        if self.train_prior is None:
            raise ValueError(f"run {self.name}: its checkpoint records no training prevalence, "
                             "so --prior cannot move its scores (retrain it)")
        if prior == "em":
            return prior_.estimate(raw["hate"][:, 1], self.train_prior)
        return float(prior)

    def finish(self, raw: dict[str, np.ndarray], prior: float | str | None = None,
               fold: bool = True) -> dict[str, np.ndarray]:
        """Raw scores moved to `prior` and with the thresholds folded in (unless fold=False)."""
        target = self.resolve_prior(raw, prior)
        scores = dict(raw)
        if target is not None:
            scores = prior_.adjust(scores, self.train_prior, target)
        if fold and self.fold_thresholds:
            for task, t in self.thresholds.items():
                if task in scores:
                    scores[task] = th.apply(scores[task], t)
        return scores

    def scores(self, memes: Sequence[Meme], image_root, cache_dir=None,
               prior: float | str | None = None, fold: bool = True,
               progress: bool = False, images=None, image_keys=None) -> dict[str, np.ndarray]:
        return self.finish(self.raw_scores(memes, image_root, cache_dir, progress, images,
                                           image_keys), prior, fold)
