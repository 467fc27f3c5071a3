"""`train.py --task A|B|AB`: train the fused model (K bagged folds), write a run directory.

A run directory holds `config.yaml` (the resolved settings), `checkpoint.pt` (the K heads,
their config, the TF-IDF view, the Platt maps and thresholds chosen out of fold and the
training prevalence: enough to rebuild and use it), `fold<k>/` (each head's `last.pt` for
`--resume`, `best.pt`, `stats.jsonl`, TensorBoard logs in `tb/`), the out-of-fold reports
on train (`oof_report/` at the 0.5 cut, `oof_report_thresholds/` as a submission would be
scored, `oof_scores.npz`), and the dev reports: `dev_report/` (0.5 cut),
`dev_report_thresholds/` (what predict.py writes) and `dev_report_decided/` (the label sets
people are shown, see decision.py).

Settings come from the defaults below, then `--config experiments/NAME.yaml`, then the flags.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ..data.annotations import AnnotationError, gold_matrix, read_annotations
from ..data.crossval import group_folds
from ..data.twins import CaptionTwins
from ..engine.predictor import RunPredictor, blend, caption_embeddings
from ..engine.training import FitConfig, fit, predict_scores, resolve_device
from ..evaluation.metrics import evaluate
from ..evaluation.report import format_report, write_report
from ..features.cache import ImageReadError
from ..features.inputs import (Encoders, MissingImagesError, build_inputs, check_images,
                               drop_bad_images)
from ..labels import tasks_for
from ..models.baselines import TfidfLogReg
from ..models.encoders import (absolute_image_spec, absolute_text_spec, same_image_spec,
                               same_text_spec)
from ..models.model import TEXT_JOINS, MemeModel, ModelConfig, load_head, save_checkpoint
from ..models.neighbours import CaptionNeighbours
from ..runtime import checkpoints, distributed, rundir
from ..runtime.files import atomic_open, same_path, write_json, write_text
from ..runtime.commands import (EVERY_RANK, ArgumentParser, ends_quietly, error_exit, raised_on,
                                stderr_line)
from ..runtime.progress import plural
from ..scoring import calibration
from ..scoring import thresholds as th
from ..scoring.decision import decide_all, multi_hot

DEFAULTS = {
    "task": None,
    "train": "data/annotations/train.json",
    "dev": "data/annotations/dev_seen.json",
    "image_root": None,  # the parent of the annotations folder, as in the organisers' layout
    "image_encoder": "effnet-lite0",
    # MiniLM and MPNet read each caption, one head each per fold, their probabilities averaged:
    # against MiniLM alone it gains on train out of fold and on dev_seen, which neither MPNet
    # alone nor one head over both did (both lost dev_seen's macro F1; experiments/README.md,
    # "Unseen-like check").
    "text_encoder": "minilm+mpnet",
    "text_join": "ensemble",
    "fusion": "concat",
    "empty": "gate",
    "hidden": 512,
    # Measured best on train out of fold and on dev_seen, text only (experiments/README.md,
    # "Unseen-like check"): a regularised head, 5 bagged folds, TF-IDF blended in at 0.5.
    "dropout": 0.5,
    "finetune": False,
    "finetune_image": False,
    "init_head": None,
    # The most a head may train; each fold keeps its best epoch on the memes it did not see.
    # Two heads a fold often chose the last of 12; 16 measured better than 12 and 20.
    "epochs": 16,
    "batch_size": 256,
    "lr": 2e-3,
    "encoder_lr": 2e-5,
    "weight_decay": 0.1,
    "warmup": 0.05,
    "seed": 0,
    "select": "roc_auc_micro",
    "folds": 5,
    "tfidf_weight": 0.5,
    "tfidf_c": 1.0,
    # The labels of each meme's 10 nearest train captions (models/neighbours.py) mixed into the
    # task's scores at 0.1: ahead of the blend without them on every column of both checks
    # (train out of fold, dev_seen), Task A's F1s most (experiments/README.md, "A
    # nearest-neighbour view of the caption").
    "knn_weight": 0.1,
    "knn_k": 10,
    "fold_thresholds": True,
    # A Platt map per label, fitted where the thresholds are chosen: decisions compare scores
    # across labels, which an average of two models' probabilities does not support.
    "calibrate": True,
    # The maps also read what train says of each meme's caption twins (data/twins.py): every
    # column of both checks gained, the hateful AUROC on dev_seen by 0.07. The gain is on memes
    # whose caption train holds; on the others the written scores are about level and the
    # decided label sets lose (experiments/README.md, "Unseen-like check").
    "caption_twins": True,
    "cache_dir": "cache/features",
    "device": "auto",
    "skip_bad_images": False,
    "out": None,
}

# The most folds a run may have: fold0/ ... fold19/ are the run's own folders.
MAX_FOLDS = 20
# Everything a run writes at the top of its folder (rundir: --overwrite deletes these only).
RUN_NAMES = frozenset({
    "config.yaml", "checkpoint.pt", "last.pt", "best.pt", "stats.jsonl", "summary.json", "tb",
    "dev_report", "dev_report_thresholds", "dev_report_decided", "oof_report",
    "oof_report_thresholds", "oof_scores.npz", *(f"fold{k}" for k in range(MAX_FOLDS))})


# What training writes inside each fold<k>/ folder (fit's state, stats and logs).
FOLD_LAYOUT = rundir.RunLayout("train.py", frozenset({"last.pt", "best.pt", "stats.jsonl", "tb"}),
                               resume_needs=("last.pt",))


def run_layout(folds: int) -> rundir.RunLayout:
    """What a run of `folds` folds writes, and what --resume reads (the first fold's state)."""
    last = "last.pt" if folds == 1 else "fold0/last.pt"
    return rundir.RunLayout("train.py", RUN_NAMES, resume_needs=("config.yaml", last),
                            finished="summary.json")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    # The flags default to None, so that a YAML config can fill them: show DEFAULTS' value
    # instead of "(default: None)".
    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is not None:
            return super()._get_help_string(action)
        value = DEFAULTS.get(action.dest)
        negated = action.option_strings[0].startswith("--no-")  # its setting defaults to on
        if value is None or negated or "(default" in text:
            return text
        return f"{text} (default: {value})".strip()


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0],
                       formatter_class=_Help)
    # Every flag defaults to None so that only what the user typed overrides the YAML.
    a = p.add_argument
    a("--config", help="YAML file of settings (keys as the flags, with _), overridden by flags")
    a("--task", choices=["A", "B", "AB"], help="A: protected categories, B: attack types, AB: both")
    a("--train", help=f"training annotations (default {DEFAULTS['train']})")
    a("--dev", help="dev annotations, reported on (with --folds 1 they also choose the epoch "
      f"and the thresholds) (default {DEFAULTS['dev']})")
    a("--image-root", help="folder the `img` paths are relative to "
      "(default: the annotations' parent's parent)")
    a("--image-encoder",
      help="effnet-lite0 | timm:NAME[=PATH] | bt:CHECKPOINT | clip:NAME_OR_DIR | none")
    a("--text-encoder", help="minilm | mpnet | hf:NAME_OR_DIR | clip:NAME_OR_DIR | none, or "
      "several joined by + (minilm+mpnet); minilm, mpnet and hf may end in @LAYERS (e.g. "
      "minilm@3,6: those layers mean-pooled side by side)")
    a("--text-join", choices=TEXT_JOINS,
      help="for joined text encoders (minilm+mpnet): one head per encoder, their "
      "probabilities averaged (ensemble), or one head reading them side by side (concat)")
    a("--fusion", choices=["concat", "interact"], help="how the two embeddings are joined")
    a("--empty", choices=["gate", "independent"], help="how the empty labels are scored")
    a("--hidden", type=int, help="width of the head's layers")
    a("--dropout", type=float, help="dropout in the head")
    a("--finetune", action="store_const", const=True, help="train the text encoder end to end")
    a("--finetune-image", action="store_const", const=True,
      help="train the image encoder end to end too")
    a("--init-head", metavar="CHECKPOINT",
      help="start the head from a trained run's RUN/checkpoint.pt (same encoders and head "
      "settings; with --folds K >= 2 a run of the same folds, each fold's head from its own): "
      "train on frozen features first, then --finetune from it (LP-FT)")
    a("--epochs", type=int, help="epochs per head (the best one is kept)")
    a("--batch-size", type=int,
      help="memes a step (under torchrun: all processes together)")
    a("--lr", type=float, help="learning rate of the head")
    a("--encoder-lr", type=float, help="learning rate of fine-tuned encoders")
    a("--weight-decay", type=float, help="AdamW's weight decay")
    a("--warmup", type=float, help="fraction of steps of linear warm-up before cosine decay")
    a("--seed", type=int, help="seed of the folds, the initial weights and the batches")
    a("--select", choices=["roc_auc_micro", "f1_macro", "loss"],
      help="metric for choosing each head's epoch (on its held-out fold, or on dev with "
      "--folds 1)")
    a("--folds", type=int, help="K >= 2: bag K heads trained on K-1 folds of train, thresholds "
      "chosen out of fold on train; 1: one head, epoch and thresholds chosen on dev")
    a("--tfidf-weight", type=float, help="weight of the caption's TF-IDF + logistic regression "
      "model in the blend with the heads (0 turns it off)")
    a("--tfidf-c", type=float, help="inverse L2 strength of the TF-IDF logistic regressions")
    a("--knn-weight", type=float, help="weight of the labels of each meme's nearest training "
      "captions (by the text encoder's embeddings) in its task scores (0 turns it off; no "
      "effect with --text-encoder none)")
    a("--knn-k", type=int, help="how many nearest training captions vote")
    a("--no-fold-thresholds", dest="fold_thresholds", action="store_const", const=False,
      help="write raw scores instead of folding the chosen thresholds into them")
    a("--no-calibrate", dest="calibrate", action="store_const", const=False,
      help="keep the blended scores as they are instead of mapping each label's by a Platt "
      "fit on train's out-of-fold scores (with --folds 1 there are none: no maps)")
    a("--no-caption-twins", dest="caption_twins", action="store_const", const=False,
      help="plain Platt maps: do not let them read the training labels of the memes that share "
      "a meme's caption")
    a("--cache-dir", help="where frozen encoder features are cached (\"\": no cache, "
      "nothing written)")
    a("--device", help="auto (cuda when there is one), cpu, cuda, cuda:1, ...")
    a("--out", help="run directory (default runs/task<T>_<time>)")
    a("--skip-bad-images", action="store_const", const=True,
      help="leave out memes whose image is missing or cannot be decoded (with a count) "
      "instead of stopping")
    a("--resume", action="store_true", help="continue the run in --out from its last epoch")
    a("--overwrite", action="store_true",
      help="delete the run already in --out (its own files only) and start again")
    a("--quiet", action="store_true", help="no progress bars")
    return p


def resolve(args: argparse.Namespace) -> dict:
    """Defaults, then the YAML file, then the flags that were given."""
    cfg = dict(DEFAULTS)
    if args.config:
        path = Path(args.config)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: cannot read config: {e}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config must be a mapping of settings")
        loaded = {k.replace("-", "_"): v for k, v in loaded.items()}
        unknown = sorted(set(loaded) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"{path}: unknown {plural('setting', len(unknown))} {unknown}; known: "
                             f"{sorted(DEFAULTS)}")
        cfg.update(loaded)
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    if cfg["task"] is None:
        raise ValueError("--task is required: A (protected categories), B (attack types) or AB "
                         "(both, one model)")
    if cfg["task"] not in ("A", "B", "AB"):
        raise ValueError(f"--task must be A, B or AB (got {cfg['task']!r})")
    # A `train` that is no path (a YAML number, '') is left for validate to name.
    if cfg["image_root"] is None and isinstance(cfg["train"], str) and cfg["train"]:
        cfg["image_root"] = str(Path(cfg["train"]).resolve().parent.parent)
    if cfg["out"] is None:
        cfg["out"] = f"runs/task{cfg['task']}_{time.strftime('%Y%m%d-%H%M%S')}"
    validate(cfg)
    # Stored absolute, so that config.yaml names the same files from any folder it is read in
    # (--resume, --config) whichever folder the run was started from.
    for name in _FILES:
        if cfg[name] is not None:
            cfg[name] = os.path.abspath(cfg[name])
    # bt:PATH, timm:NAME=PATH and a local folder's hf:DIR, clip:DIR; hub names stay as typed.
    cfg["image_encoder"] = absolute_image_spec(cfg["image_encoder"])
    cfg["text_encoder"] = absolute_text_spec(cfg["text_encoder"])
    return cfg


# Number settings: the least whole value (_INTS); (least, greatest, greatest allowed itself).
_INTS = {"hidden": 1, "epochs": 1, "batch_size": 1, "seed": 0, "folds": 1, "knn_k": 1}
_FLOATS = {"lr": (0, None, False), "encoder_lr": (0, None, False),
           "weight_decay": (0, None, True), "dropout": (0, 1, False), "warmup": (0, 1, True),
           "tfidf_weight": (0, 1, True), "tfidf_c": (0, None, False),
           "knn_weight": (0, 1, True)}
_BOOLS = ("finetune", "finetune_image", "fold_thresholds", "calibrate", "caption_twins",
          "skip_bad_images")
_CHOICES = {"fusion": ("concat", "interact"), "empty": ("gate", "independent"),
            "text_join": TEXT_JOINS,
            "select": ("roc_auc_micro", "f1_macro", "loss")}
_PATHS = {"train": True, "dev": True, "image_root": True, "out": True, "cache_dir": False,
          "init_head": False}
# The settings that name input files: --resume compares them by the file they name, not by
# how it is written (./data or data, relative or absolute, through a link).
_FILES = ("train", "dev", "image_root", "init_head")
# Settings a resumed run may change: the run is the folder --resume is given, wherever it has
# been moved (`out`), the feature cache is keyed by content, not by folder (`cache_dir`), and
# the device only says where the same steps are computed (a run started on a GPU goes on on
# a CPU; its saved state is mapped to the new device when read).
RESUMABLE_CHANGES = frozenset({"out", "cache_dir", "device"})


def _number(name: str, value, whole: bool):
    """`value` as an int or float; strings as YAML leaves `1e-3` are read as numbers."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{flag}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{flag}: expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{flag}: must be a finite number, got {value}")
    if whole:
        if value != int(value):
            raise ValueError(f"{flag}: must be a whole number, got {value}")
        return int(value)
    return float(value)


def validate(cfg: dict) -> None:
    """Check every setting (and read numbers written as strings) before any work is done;
    raise ValueError naming the setting and its allowed range. Changes `cfg` in place."""
    for name, low in _INTS.items():
        cfg[name] = _number(name, cfg[name], whole=True)
        if cfg[name] < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {cfg[name]}")
    if cfg["folds"] > MAX_FOLDS:
        raise ValueError(f"--folds must be at most {MAX_FOLDS}, got {cfg['folds']}")
    for name, (low, high, high_ok) in _FLOATS.items():
        value = cfg[name] = _number(name, cfg[name], whole=False)
        flag = "--" + name.replace("_", "-")
        if name in ("lr", "encoder_lr", "tfidf_c") and not value > low:
            raise ValueError(f"{flag} must be > 0, got {value}")
        if value < low or (high is not None and (value > high or (value == high and not high_ok))):
            span = f"[{low}, {high}{']' if high_ok else ')'}" if high is not None else f">= {low}"
            raise ValueError(f"{flag} must be {'in ' if high is not None else ''}{span}, "
                             f"got {value}")
    for name in _BOOLS:
        if not isinstance(cfg[name], bool):
            raise ValueError(f"{name}: expected true or false, got {cfg[name]!r}")
    for name, choices in _CHOICES.items():
        if cfg[name] not in choices:
            raise ValueError(f"--{name} must be one of {', '.join(choices)}, got {cfg[name]!r}")
    for name, required in _PATHS.items():
        value = cfg[name]
        if not (isinstance(value, str) and value) and (required or value is not None):
            raise ValueError(f"--{name.replace('_', '-')}: expected a path, got {value!r}")
    for name in ("image_encoder", "text_encoder"):
        if not isinstance(cfg[name], str):
            raise ValueError(f"--{name.replace('_', '-')}: expected a name, got {cfg[name]!r}")
    if cfg["image_encoder"] == "none" and cfg["text_encoder"] == "none":
        raise ValueError("--image-encoder and --text-encoder are both none: nothing to learn from")
    if not isinstance(cfg["device"], str):
        raise ValueError(f"--device: expected a name, got {cfg['device']!r}")
    resolve_device(cfg["device"])  # `cuda` without a GPU is an error now, not a traceback later


def _targets(memes, tasks) -> dict[str, torch.Tensor]:
    return {t: torch.from_numpy(gold_matrix(memes, t)) for t in ("hate", *tasks)}


def _subset(targets: dict[str, torch.Tensor], idx: np.ndarray) -> dict[str, torch.Tensor]:
    index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    return {k: v[index] for k, v in targets.items()}


def _member(mcfg: ModelConfig, encoders: Encoders, cfg: dict, seed: int, device,
            resume: bool, fold: int = 0) -> MemeModel:
    """A fresh model: its own encoder copies when they are fine-tuned (each fold trains its
    own), the head from --init-head when given (a resumed fold continues from its last.pt);
    with folds, fold `fold`'s head from that run's head of the same fold (_check_init_head)."""
    torch.manual_seed(seed)
    image = copy.deepcopy(encoders.image) if mcfg.finetune_image else encoders.image
    text = copy.deepcopy(encoders.text) if mcfg.finetune_text else encoders.text
    model = MemeModel(mcfg, image, text)
    if cfg["init_head"] and not resume:
        load_head(model, cfg["init_head"], fold if int(cfg["folds"]) >= 2 else 0)
    return model.to(device)


# What decides train.py's folds (crossval.group_folds of train's memes, seeded).
FOLD_SETTINGS = ("train", "folds", "seed", "skip_bad_images")


def _check_init_head(cfg: dict) -> None:
    """With K >= 2 folds, fold f's head is selected and scored out of fold on fold f's memes,
    so it may only start from a head that never trained on them: the --init-head run's head of
    fold f, trained on the same folds. A run of other folds (or of one fold: all of train) is
    refused, before anything is written."""
    if not cfg["init_head"] or int(cfg["folds"]) < 2:
        return
    path = cfg["init_head"]
    theirs = checkpoints.load_dict(path, ("settings",))["settings"]
    theirs = theirs if isinstance(theirs, dict) else {}
    # as --resume compares, from the folder of that run
    differ = [k for k in differing(theirs, cfg, Path(path).parent) if k in FOLD_SETTINGS]
    if differ:
        detail = ", ".join(f"{k} {theirs.get(k, DEFAULTS.get(k))!r} there, {cfg[k]!r} here"
                           for k in differ)
        raise ValueError(f"--init-head {path}: with --folds {cfg['folds']} each fold's head "
                         "starts from that run's head of the same fold, which must not have "
                         f"trained on this fold's memes; that run's folds are others ({detail})")


def _oof_tfidf(memes, fold_of: np.ndarray, C: float) -> dict[str, np.ndarray]:
    """Out-of-fold TF-IDF scores over `memes` on the given folds."""
    out: dict[str, np.ndarray] = {}
    for f in np.unique(fold_of):
        held = np.flatnonzero(fold_of == f)
        model = TfidfLogReg(C).fit([m for m, g in zip(memes, fold_of) if g != f])
        for task, s in model.predict([memes[i] for i in held]).items():
            out.setdefault(task, np.zeros((len(memes), s.shape[1]), np.float32))[held] = s
    return out


def _decided(memes, ids, scores: dict, tasks) -> dict:
    """The report of the label sets decision.decide_all gives people (0/1 scores)."""
    shown = ("hate", *tasks)
    decided = decide_all({t: scores[t] for t in shown})
    return evaluate(memes, ids, {t: multi_hot(t, [d[t] for d in decided]) for t in shown})


def _started_in(saved: dict, run_dir) -> str | None:
    """The folder the run now in `run_dir` was started from, as its saved `out` tells it: the
    folder from which `out` names `run_dir`. None when `out` cannot tell (absolute, climbing
    with .., or the run folder has moved since)."""
    out = saved.get("out")
    if not isinstance(out, str) or not out or os.path.isabs(out):
        return None
    parts = Path(os.path.normpath(out)).parts
    here = Path(os.path.abspath(run_dir))
    if ".." in parts or (parts and here.parts[-len(parts):] != parts):
        return None
    return str(here.parents[len(parts) - 1] if parts else here)


def _relative_files(saved: dict) -> list[str]:
    return sorted(k for k in _FILES if isinstance(saved.get(k), str) and saved[k]
                  and not os.path.isabs(saved[k]))


def differing(saved: dict, cfg: dict, run_dir=None) -> list[str]:
    """The settings in which `cfg` differs from the `saved` ones of the run in `run_dir`
    (default: cfg's `out`), as --resume compares them. A setting added since that run was
    written counts as its default there."""
    # Runs written before the input paths were stored absolute kept them as typed, relative
    # to the folder they were started in: that folder where `out` still tells it, else the
    # current one (a resume from where the run was started).
    started_in = _started_in(saved, cfg["out"] if run_dir is None else run_dir)

    def same(k):
        old = saved.get(k, DEFAULTS.get(k))
        if k in _FILES and isinstance(old, str) and isinstance(cfg[k], str):
            return same_path(old, cfg[k]) or (
                started_in is not None and not os.path.isabs(old)
                and same_path(os.path.join(started_in, old), cfg[k]))
        if k == "image_encoder" and isinstance(old, str) and isinstance(cfg[k], str):
            return same_image_spec(old, cfg[k], started_in)
        if k == "text_encoder" and isinstance(old, str) and isinstance(cfg[k], str):
            return same_text_spec(old, cfg[k], started_in)
        return old == cfg[k]

    return sorted(k for k in cfg if k not in RESUMABLE_CHANGES and not same(k))


def _check_saved_config(run_dir: Path, cfg: dict) -> None:
    path = run_dir / "config.yaml"
    try:
        saved = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"--resume: cannot read {path}: {e}") from None
    if not isinstance(saved, dict):
        raise ValueError(f"--resume: {path} is not a train.py config (not a mapping)")
    diff = differing(saved, cfg, run_dir)
    if diff:
        detail = "; ".join(f"{k}: {saved.get(k, DEFAULTS.get(k))!r} there, {cfg[k]!r} now"
                           for k in diff)
        relative = [k for k in _relative_files(saved) if k in diff]
        if relative and _started_in(saved, run_dir) is None:
            # Only the folder the run was started in knows what these name, and nothing here
            # records it any more: the user does.
            raise ValueError(
                f"--resume: settings differ from {path} in {diff} ({detail}); it keeps "
                f"{', '.join(relative)} relative to the folder the run was started in (it was "
                "written before input paths were stored absolute), which its out "
                f"{saved.get('out')!r} no longer tells: resume from that folder, with those "
                f"paths as they were typed there (and --out {os.path.abspath(run_dir)})")
        raise ValueError(f"--resume: settings differ from {path} in {diff} ({detail}); resume "
                         "with the same settings, or start a new run in another --out")


def _images(memes, cfg: dict, source: str):
    """The memes to use: all of them once their images are checked (missing or undecodable
    ones stop the run here, before any encoder is loaded), or with --skip-bad-images the
    ones whose image is fine."""
    if cfg["image_encoder"] == "none":
        return memes
    if not cfg.get("skip_bad_images", False):
        check_images(memes, cfg["image_root"], source, decode=True)
        return memes
    kept, dropped = drop_bad_images(memes, cfg["image_root"], source)
    # Every rank reads the same data and finds the same memes: rank 0 alone says so.
    if dropped and distributed.rank_world()[0] == 0:
        stderr_line(f"train.py: left out {len(dropped)} of {len(memes)} memes of {source} whose "
                    "image is missing or cannot be read (--skip-bad-images); first:\n  "
                    + "\n  ".join(dropped[:5]))
    if not kept:
        raise ValueError(f"{source}: no meme has a readable image under {cfg['image_root']}")
    return kept


def _prepare(cfg: dict, resume: bool, overwrite: bool):
    """Everything before any computing: the output folder may be used as asked and can be
    written, the data read (and their images checked), the folds drawn. Rank 0 alone touches
    the folder (it is shared). Returns (train memes, dev memes, fold of each train meme or
    None)."""
    rank, _ = distributed.rank_world()
    run_dir, layout = Path(cfg["out"]), run_layout(int(cfg["folds"]))

    def check():
        _check_init_head(cfg)
        if rank == 0:
            rundir.check(run_dir, layout, resume=resume, overwrite=overwrite)
            if resume:
                _check_saved_config(run_dir, cfg)
            rundir.check_writable(run_dir, "--out")
            if cfg["cache_dir"]:
                rundir.check_writable(cfg["cache_dir"], "--cache-dir")

    distributed.on_all(check, "checking --out")
    train_memes, dev_memes = distributed.on_all(lambda: (
        _images(read_annotations(cfg["train"]), cfg, cfg["train"]),
        _images(read_annotations(cfg["dev"]), cfg, cfg["dev"])), "reading the data")
    folds = int(cfg["folds"])
    fold_of = group_folds(train_memes, folds, cfg["seed"]) if folds >= 2 else None
    return train_memes, dev_memes, fold_of


def _make_ready(cfg: dict, resume: bool, overwrite: bool) -> None:
    """The old run deleted (--overwrite) or its stale temps (--resume), and config.yaml
    written: the first writes to the run folder, once the encoders, --init-head and the
    features are ready, so that a start that fails before training leaves the folder as it
    was (and --overwrite the old run in it)."""
    rank, _ = distributed.rank_world()
    run_dir, layout = Path(cfg["out"]), run_layout(int(cfg["folds"]))

    def clean():
        if rank != 0:
            return
        if overwrite:  # every check passed: only now is the old run deleted
            rundir.clear(run_dir, layout)
        else:
            rundir.remove_stale_temps(run_dir, layout)
            for k in range(MAX_FOLDS):
                if (run_dir / f"fold{k}").is_dir():
                    rundir.remove_stale_temps(run_dir / f"fold{k}", FOLD_LAYOUT)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=True))

    distributed.on_all(clean, "preparing --out")


@contextlib.contextmanager
def _taken_back_on_failure(run_dir: Path, layout: rundir.RunLayout, rank: int):
    try:
        yield
    except BaseException:
        # Before --resume has a last.pt to read, all of the run's files are this start's:
        # rundir.check let it begin only in a folder without them (or --overwrite cleared it).
        if rank == 0 and not any(run_dir.glob("**/last.pt")):
            rundir.clear(run_dir, layout)
        raise


def _model_config(cfg: dict, encoders: Encoders) -> ModelConfig:
    parts = getattr(encoders.text, "parts", ())  # a joined text encoder's
    return ModelConfig(tasks=tasks_for(cfg["task"]), image_encoder=cfg["image_encoder"],
                       text_encoder=cfg["text_encoder"],
                       image_dim=encoders.image.dim if encoders.image is not None else 0,
                       text_dim=encoders.text.dim if encoders.text is not None else 0,
                       text_part_dims=tuple(p.dim for p in parts), text_join=cfg["text_join"],
                       fusion=cfg["fusion"], empty=cfg["empty"], hidden=cfg["hidden"],
                       dropout=cfg["dropout"],
                       finetune_text=bool(cfg["finetune"]) and cfg["text_encoder"] != "none",
                       finetune_image=(bool(cfg["finetune_image"])
                                       and cfg["image_encoder"] != "none"))


def _fit_config(cfg: dict, seed: int) -> FitConfig:
    return FitConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                     encoder_lr=cfg["encoder_lr"], weight_decay=cfg["weight_decay"],
                     warmup=cfg["warmup"], seed=seed, select=cfg["select"])


def run(cfg: dict, resume: bool = False, progress: bool = True,
        overwrite: bool = False) -> dict | None:
    """Train as `cfg` says; return the summary written to RUN_DIR/summary.json.

    With `folds` K >= 2 (the default) train.json is split into K folds that keep a caption's
    memes together (crossval.group_folds); one head is trained per fold, its epoch chosen on
    the fold it did not see, and the K heads are averaged at prediction (bagging). Their
    out-of-fold scores cover all of train: the thresholds are chosen there, and dev only
    reports. With `folds` 1 one head trains on train with its epoch and thresholds chosen on
    dev (dev's reports are then in-sample; a 2-fold cross-fit of them is written beside).

    Under torchrun every process runs this: they share out the encoders' features and each
    training batch (training.fit), and rank 0 alone writes; the other ranks return None.
    """
    rank, world = distributed.rank_world()
    run_dir = Path(cfg["out"])
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    train_memes, dev_memes, fold_of = _prepare(cfg, resume, overwrite)
    progress = progress and rank == 0
    encoders = Encoders(cfg["image_encoder"], cfg["text_encoder"])
    # Under torchrun each process has its own device (LOCAL_RANK's GPU, or the CPU).
    device = (distributed.init_from_env(cfg["device"])[2] if world > 1
              else resolve_device(cfg["device"]))

    def build():
        mcfg = _model_config(cfg, encoders)  # the encoders load here
        return mcfg, _member(mcfg, encoders, cfg, cfg["seed"], device, resume)

    # Weights that are missing or do not fit fail on every rank: said once (runtime/commands.py).
    mcfg, first = distributed.on_all(build, "loading the encoders and --init-head")
    kw = dict(cfg=mcfg, encoders=encoders, image_root=cfg["image_root"], cache_dir=cfg["cache_dir"],
              model=first, progress=progress, device=str(device))
    train_in = build_inputs(train_memes, source=cfg["train"], **kw)
    dev_in = build_inputs(dev_memes, source=cfg["dev"], **kw)
    _make_ready(cfg, resume, overwrite)
    # A start that fails before its first last.pt takes back what it wrote (config.yaml,
    # tb/), so that its rerun needs no --overwrite; after one the run stays, for --resume.
    with _taken_back_on_failure(run_dir, run_layout(int(cfg["folds"])), rank):
        train_t, dev_t = _targets(train_memes, mcfg.tasks), _targets(dev_memes, mcfg.tasks)

        t0 = time.time()
        oof_heads: dict[str, np.ndarray] = {}
        if fold_of is None:
            state = fit(first, train_in, train_t, dev_in, dev_t, _fit_config(cfg, cfg["seed"]),
                        run_dir, resume=resume, progress=progress, meta=cfg,
                        differs=differing)
            members, best_epochs = [first], [state["best_epoch"]]
        else:
            members, best_epochs = [], []
            folds = int(cfg["folds"])
            for f in range(folds):
                fold_dir = run_dir / f"fold{f}"
                resume_fold = resume and (fold_dir / "last.pt").is_file()
                seed = cfg["seed"] * 1000 + f
                model = (first if f == 0
                         else _member(mcfg, encoders, cfg, seed, device, resume_fold, fold=f))
                rest, held = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
                if progress:
                    print(f"fold {f + 1}/{folds}: {len(rest)} memes to train, "
                          f"{len(held)} to select")
                state = fit(model, train_in.subset(rest), _subset(train_t, rest),
                            train_in.subset(held), _subset(train_t, held), _fit_config(cfg, seed),
                            fold_dir, resume=resume_fold, progress=progress, meta=cfg,
                            differs=differing)
                if rank == 0:
                    for task, s in predict_scores(model, train_in.subset(held)).items():
                        oof_heads.setdefault(task, np.zeros((len(train_memes), s.shape[1]),
                                                            np.float32))[held] = s
                members.append(model)
                best_epochs.append(state["best_epoch"])
    # The caption neighbours' embeddings, by every rank: a fine-tuned text encoder's are
    # computed here, a collective that rank 0 cannot run alone (features/cache.py).
    embeddings = None
    if cfg["knn_weight"] > 0 and cfg["text_encoder"] != "none":
        embeddings = [caption_embeddings(inputs, [m.text for m in memes], encoders,
                                         cfg["cache_dir"] or None, str(device))
                      for inputs, memes in ((train_in, train_memes), (dev_in, dev_memes))]
    if rank != 0:
        return None  # the rest (TF-IDF view, thresholds, reports, checkpoint) is rank 0's
    weight = float(cfg["tfidf_weight"])
    tfidf = TfidfLogReg(cfg["tfidf_c"]).fit(train_memes) if weight > 0 else None
    train_seconds = time.time() - t0
    return _write_run(cfg, members, best_epochs, tfidf, train_memes, dev_memes, dev_in,
                      fold_of, oof_heads, train_seconds, embeddings)


def _write_run(cfg: dict, members: list[MemeModel], best_epochs: list, tfidf, train_memes,
               dev_memes, dev_in, fold_of, oof_heads: dict, train_seconds: float,
               embeddings: list[np.ndarray] | None) -> dict:
    """Thresholds (out of fold on train, or on dev with one fold), the reports, the
    checkpoint and summary.json: rank 0's part once the heads are trained. `embeddings`:
    train's and dev's captions' for the caption neighbours (None: no neighbours)."""
    run_dir, tasks = Path(cfg["out"]), tasks_for(cfg["task"])
    weight = float(cfg["tfidf_weight"])
    train_prior = float(gold_matrix(train_memes, "hate")[:, 1].mean())
    scorer = RunPredictor(members, tfidf, weight, {}, bool(cfg["fold_thresholds"]), train_prior,
                          name=run_dir.name)
    if embeddings is not None:
        scorer.neighbours = CaptionNeighbours.from_memes(train_memes, embeddings[0],
                                                         k=cfg["knn_k"])
        scorer.knn_weight = float(cfg["knn_weight"])
    dev_blend = scorer.raw_scores_of(dev_in, [m.text for m in dev_memes],
                                     embeddings=embeddings[1] if embeddings else None)
    dev_ids = [m.id for m in dev_memes]
    # The maps need scores of memes the heads never saw, other than those reported on: with
    # one fold there are only dev's, and maps fitted there would flatter dev's reports.
    calibrate = bool(cfg["calibrate"]) and fold_of is not None
    if fold_of is None:
        source = "dev (in-sample)"
        fit_memes, fit_blend = dev_memes, dev_blend
    else:
        source = f"train, {len(members)} folds out of fold"
        oof_tfidf = _oof_tfidf(train_memes, fold_of, cfg["tfidf_c"]) if weight > 0 else None
        oof_knn = scorer.neighbours.crossfit(fold_of) if scorer.knn_weight else None
        fit_memes, fit_blend = train_memes, blend(oof_heads, oof_tfidf, weight, oof_knn,
                                                  scorer.knn_weight)
    twins = CaptionTwins.from_memes(train_memes) if calibrate and cfg["caption_twins"] else None
    scorer.twins = twins
    # The twin features of the memes the maps are fitted on (train's, with folds), once a task.
    fit_side = {t: twins.features(t, [m.text for m in fit_memes], [m.id for m in fit_memes])
                if twins else None for t in fit_blend}
    if calibrate:
        scorer.calibration = {t: calibration.fit(gold_matrix(fit_memes, t), fit_blend[t],
                                                 fit_side[t]) for t in fit_blend}
    dev_raw = scorer.calibrate(dev_blend, [m.text for m in dev_memes], dev_ids)
    fit_raw = scorer.calibrate(fit_blend, [m.text for m in fit_memes], [m.id for m in fit_memes])
    thresholds = {t: th.choose_joint(gold_matrix(fit_memes, t), fit_raw[t]) for t in tasks}
    scorer.thresholds = thresholds
    dev_scores = scorer.finish(dev_raw, fold=True)
    reports = {"thresholds_off": evaluate(dev_memes, dev_ids, dev_raw),
               "thresholds_on": evaluate(dev_memes, dev_ids, dev_scores),
               "decided": _decided(dev_memes, dev_ids, dev_scores, tasks)}
    summary_oof = None
    if fold_of is None:
        # Thresholds chosen on dev and scored there flatter; this is their honest estimate.
        reports["thresholds_crossfit"] = evaluate(dev_memes, dev_ids, {
            **dev_raw, **{t: th.crossfit(gold_matrix(dev_memes, t), dev_raw[t],
                                         seed=cfg["seed"]) for t in tasks}})
    else:
        ids = [m.id for m in train_memes]
        # Each fold's memes mapped and thresholded with what the other folds' scores chose.
        oof_raw, oof_scores = {}, {}
        for t in fit_blend:
            gold = gold_matrix(train_memes, t)
            choose = th.choose_joint if t in tasks else None
            if calibrate:
                oof_raw[t], oof_scores[t] = calibration.crossfit(gold, fit_blend[t], fold_of,
                                                                 choose, fit_side[t])
            else:
                oof_raw[t] = fit_blend[t]
                oof_scores[t] = (th.crossfit(gold, fit_blend[t], fold_of=fold_of)
                                 if choose else fit_blend[t])
        summary_oof = {"thresholds_off": evaluate(train_memes, ids, oof_raw),
                       "thresholds_on": evaluate(train_memes, ids, oof_scores),
                       "decided": _decided(train_memes, ids, oof_scores, tasks)}
        write_report(summary_oof["thresholds_off"], run_dir / "oof_report")
        write_report(summary_oof["thresholds_on"], run_dir / "oof_report_thresholds")
        with atomic_open(run_dir / "oof_scores.npz", "wb") as f:
            np.savez(f, ids=np.asarray(ids), fold_of=fold_of,
                     **{f"raw_{t}": v for t, v in oof_raw.items()},
                     **{f"blend_{t}": v for t, v in fit_blend.items()},
                     **{f"heads_{t}": v for t, v in oof_heads.items()},
                     **({f"tfidf_{t}": v for t, v in oof_tfidf.items()} if oof_tfidf else {}),
                     **({f"knn_{t}": v for t, v in oof_knn.items()} if oof_knn else {}))
    write_report(reports["thresholds_off"], run_dir / "dev_report")
    write_report(reports["thresholds_on"], run_dir / "dev_report_thresholds")
    write_report(reports["decided"], run_dir / "dev_report_decided")
    for model in members:
        model.cpu()
    save_checkpoint(run_dir / "checkpoint.pt", members[0],
                    members=[m.state_dict() for m in members[1:]],
                    tfidf=tfidf.state_dict() if tfidf is not None else None,
                    tfidf_weight=weight, train_prior=train_prior,
                    thresholds={t: v.tolist() for t, v in thresholds.items()},
                    thresholds_from=source,
                    fold_thresholds=bool(cfg["fold_thresholds"]),
                    calibration={t: v.tolist() for t, v in scorer.calibration.items()},
                    twins=twins.state_dict() if twins is not None else None,
                    neighbours=(scorer.neighbours.state_dict()
                                if scorer.neighbours is not None else None),
                    knn_weight=scorer.knn_weight,
                    fit=dataclasses.asdict(_fit_config(cfg, cfg["seed"])),
                    best_epoch=best_epochs, settings=cfg)
    summary = {
        "run_dir": str(run_dir), "task": cfg["task"], "folds": int(cfg["folds"]),
        "best_epoch": best_epochs, "select": cfg["select"],
        "train_seconds": round(train_seconds, 2), "processes": distributed.rank_world()[1],
        "train_prior": train_prior, "thresholds_from": source,
        "dev": reports, "oof": summary_oof,
        "thresholds": {t: v.tolist() for t, v in thresholds.items()},
        "calibration": {t: v.tolist() for t, v in scorer.calibration.items()},
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def _short(report: dict, tasks) -> str:
    return "  ".join(f"{t}: AUROC {report[t]['roc_auc_micro']:.4f} F1 {report[t]['f1_micro']:.4f} "
                     f"macro-F1 {report[t]['f1_macro']:.4f}" for t in tasks)


@ends_quietly  # `| head`, Ctrl-C: one line or none, not a traceback (runtime/commands.py)
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = resolve(args)
    except ValueError as e:
        # Before the process group: of the command line and --config, alike on every rank.
        return error_exit("train.py", raised_on(e, EVERY_RANK))
    # Under torchrun (the same command, many processes) this joins the process group.
    distributed.init_from_env(cfg["device"])
    try:
        summary = run(cfg, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    except (AnnotationError, MissingImagesError, ImageReadError, ValueError, FileNotFoundError,
            distributed.RankFailed) as e:
        return error_exit("train.py", e)
    finally:
        # Left on every way out, Ctrl-C too, as pretrain.py and predict.py do: a gloo group
        # torn down by the interpreter's exit can abort the process ("terminate called without
        # an active exception", SIGABRT instead of status 1 or 130; seen once in CI in
        # test_missing_weights_under_torchrun_are_said_once). No barrier: a rank that fails
        # alone must not wait for the others (torchrun stops them when this process exits),
        # and rank 0 goes on alone (TF-IDF view, thresholds, reports) as long as the data
        # needs, while the others leave rather than wait for it in a collective that could
        # time out.
        distributed.finish(wait=False)
    if summary is None:  # not rank 0: rank 0 reports
        return 0
    tasks = tasks_for(cfg["task"])
    print(format_report(summary["dev"]["thresholds_off"]))
    print(f"\nbest {plural('epoch', len(summary['best_epoch']))} {summary['best_epoch']} by "
          f"{cfg['select']}; trained in {summary['train_seconds']:.1f}s; thresholds from "
          f"{summary['thresholds_from']}")
    if summary["oof"]:
        print(f"train out of fold, 0.5 cut:  {_short(summary['oof']['thresholds_off'], tasks)}")
        print(f"train out of fold, written:  {_short(summary['oof']['thresholds_on'], tasks)}")
    print(f"dev, official 0.5 cut:       {_short(summary['dev']['thresholds_off'], tasks)}")
    print(f"dev, as predict.py writes:   {_short(summary['dev']['thresholds_on'], tasks)}"
          + (" (in-sample)" if not summary["oof"] else ""))
    if "thresholds_crossfit" in summary["dev"]:
        print(f"dev, thresholds cross-fit:   "
              f"{_short(summary['dev']['thresholds_crossfit'], tasks)} (2-fold)")
    print(f"run directory: {summary['run_dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
