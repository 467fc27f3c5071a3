"""`train.py --task A|B|AB`: train the fused model, select on dev, write a run directory.

A run directory holds `config.yaml` (the resolved settings), `checkpoint.pt` (the selected
model, its config and the dev thresholds: enough to rebuild and use it), `last.pt` (what
`--resume` continues from), `stats.jsonl`, TensorBoard logs under `tb/`, and the dev reports
with the official 0.5 cut (`dev_report/`) and with the dev thresholds folded in
(`dev_report_thresholds/`).

Settings come from the defaults below, then `--config experiments/NAME.yaml`, then the flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from . import rundir
from . import thresholds as th
from .data import AnnotationError, gold_matrix, read_annotations
from .files import write_json, write_text
from .inputs import Encoders, MissingImagesError, build_inputs, check_images, drop_bad_images
from .labels import tasks_for
from .metrics import evaluate
from .model import MemeModel, ModelConfig, load_head, save_checkpoint
from .report import format_report, write_report
from .training import FitConfig, fit, predict_scores, resolve_device

DEFAULTS = {
    "task": None,
    "train": "data/annotations/train.json",
    "dev": "data/annotations/dev_seen.json",
    "image_root": None,  # the parent of the annotations folder, as in the organisers' layout
    "image_encoder": "effnet-lite0",
    "text_encoder": "minilm",
    "fusion": "concat",
    "empty": "gate",
    "hidden": 512,
    "dropout": 0.3,
    "finetune": False,
    "finetune_image": False,
    "init_head": None,
    "epochs": 30,
    "batch_size": 64,
    "lr": 1e-3,
    "encoder_lr": 2e-5,
    "weight_decay": 0.01,
    "warmup": 0.05,
    "seed": 0,
    "select": "roc_auc_micro",
    "fold_thresholds": True,
    "cache_dir": "cache/features",
    "device": "auto",
    "skip_bad_images": False,
    "out": None,
}

# Everything a run writes at the top of its folder (rundir: what --overwrite may remove).
RUN_LAYOUT = rundir.RunLayout(
    "train.py", frozenset({"config.yaml", "checkpoint.pt", "last.pt", "best.pt", "stats.jsonl",
                           "summary.json", "tb", "dev_report", "dev_report_thresholds"}),
    resume_needs=("config.yaml", "last.pt"), finished="summary.json")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # Every flag defaults to None so that only what the user typed overrides the YAML.
    a = p.add_argument
    a("--config", help="YAML file of settings (keys as the flags, with _), overridden by flags")
    a("--task", choices=["A", "B", "AB"], help="A: protected categories, B: attack types, AB: both")
    a("--train", help=f"training annotations (default {DEFAULTS['train']})")
    a("--dev", help="dev annotations for model selection and thresholds "
      f"(default {DEFAULTS['dev']})")
    a("--image-root", help="folder the `img` paths are relative to "
      "(default: the annotations' parent's parent)")
    a("--image-encoder",
      help="effnet-lite0 | timm:NAME[=PATH] | bt:CHECKPOINT | clip:NAME_OR_DIR | none")
    a("--text-encoder", help="minilm | hf:NAME_OR_DIR | clip:NAME_OR_DIR | none")
    a("--fusion", choices=["concat", "interact"])
    a("--empty", choices=["gate", "independent"], help="how the empty labels are scored")
    a("--hidden", type=int)
    a("--dropout", type=float)
    a("--finetune", action="store_const", const=True, help="train the text encoder end to end")
    a("--finetune-image", action="store_const", const=True,
      help="train the image encoder end to end too")
    a("--init-head", metavar="CHECKPOINT",
      help="start the head from a trained run's RUN/checkpoint.pt (same encoders and head "
      "settings): train on frozen features first, then --finetune from it (LP-FT)")
    a("--epochs", type=int)
    a("--batch-size", type=int)
    a("--lr", type=float, help="learning rate of the head")
    a("--encoder-lr", type=float, help="learning rate of fine-tuned encoders")
    a("--weight-decay", type=float)
    a("--warmup", type=float, help="fraction of steps of linear warm-up before cosine decay")
    a("--seed", type=int)
    a("--select", choices=["roc_auc_micro", "f1_macro", "loss"],
      help="dev metric for choosing the epoch")
    a("--no-fold-thresholds", dest="fold_thresholds", action="store_const", const=False,
      help="write raw scores instead of folding the dev thresholds into them")
    a("--cache-dir", help="where frozen encoder features are cached")
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
            raise ValueError(f"{path}: unknown setting(s) {unknown}; known: {sorted(DEFAULTS)}")
        cfg.update(loaded)
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    if cfg["task"] not in ("A", "B", "AB"):
        raise ValueError(f"--task must be A, B or AB (got {cfg['task']!r})")
    if cfg["image_root"] is None:
        cfg["image_root"] = str(Path(cfg["train"]).resolve().parent.parent)
    if cfg["out"] is None:
        cfg["out"] = f"runs/task{cfg['task']}_{time.strftime('%Y%m%d-%H%M%S')}"
    validate(cfg)
    return cfg


# Number settings: the least whole value (_INTS); (least, greatest, greatest allowed itself).
_INTS = {"hidden": 1, "epochs": 1, "batch_size": 1, "seed": 0}
_FLOATS = {"lr": (0, None, False), "encoder_lr": (0, None, False),
           "weight_decay": (0, None, True), "dropout": (0, 1, False), "warmup": (0, 1, True)}
_BOOLS = ("finetune", "finetune_image", "fold_thresholds", "skip_bad_images")
_CHOICES = {"fusion": ("concat", "interact"), "empty": ("gate", "independent"),
            "select": ("roc_auc_micro", "f1_macro", "loss")}
_PATHS = {"train": True, "dev": True, "image_root": True, "out": True, "cache_dir": False,
          "init_head": False}


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
    for name, (low, high, high_ok) in _FLOATS.items():
        value = cfg[name] = _number(name, cfg[name], whole=False)
        flag = "--" + name.replace("_", "-")
        if name in ("lr", "encoder_lr") and not value > low:
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


def _check_saved_config(run_dir: Path, cfg: dict) -> None:
    path = run_dir / "config.yaml"
    try:
        saved = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"--resume: cannot read {path}: {e}") from None
    if not isinstance(saved, dict):
        raise ValueError(f"--resume: {path} is not a train.py config (not a mapping)")
    # A setting added since that run was written counts as its default there.
    diff = sorted(k for k in cfg if saved.get(k, DEFAULTS.get(k)) != cfg[k])
    if diff:
        detail = "; ".join(f"{k}: {saved.get(k, DEFAULTS.get(k))!r} there, {cfg[k]!r} now"
                           for k in diff)
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
    if dropped:
        print(f"train.py: left out {len(dropped)} of {len(memes)} memes of {source} whose image "
              "is missing or cannot be read (--skip-bad-images); first:\n  "
              + "\n  ".join(dropped[:5]), file=sys.stderr)
    if not kept:
        raise ValueError(f"{source}: no meme has a readable image under {cfg['image_root']}")
    return kept


def run(cfg: dict, resume: bool = False, progress: bool = True, overwrite: bool = False) -> dict:
    """Train as `cfg` says; return the summary written to RUN_DIR/summary.json."""
    run_dir = Path(cfg["out"])
    tasks = tasks_for(cfg["task"])
    # Up front, before any computing: the folder may be used as asked, and it and the
    # feature cache can be written.
    rundir.check(run_dir, RUN_LAYOUT, resume=resume, overwrite=overwrite)
    if resume:
        _check_saved_config(run_dir, cfg)
    rundir.check_writable(run_dir, "--out")
    if cfg["cache_dir"]:
        rundir.check_writable(cfg["cache_dir"], "--cache-dir")
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    train_memes = _images(read_annotations(cfg["train"]), cfg, cfg["train"])
    dev_memes = _images(read_annotations(cfg["dev"]), cfg, cfg["dev"])
    if overwrite:  # every check passed: only now is the old run deleted
        rundir.clear(run_dir, RUN_LAYOUT)
    else:
        rundir.remove_stale_temps(run_dir, RUN_LAYOUT)
    encoders = Encoders(cfg["image_encoder"], cfg["text_encoder"])
    mcfg = ModelConfig(tasks=tasks, image_encoder=cfg["image_encoder"],
                       text_encoder=cfg["text_encoder"],
                       image_dim=encoders.image.dim if encoders.image is not None else 0,
                       text_dim=encoders.text.dim if encoders.text is not None else 0,
                       fusion=cfg["fusion"], empty=cfg["empty"], hidden=cfg["hidden"],
                       dropout=cfg["dropout"],
                       finetune_text=bool(cfg["finetune"]) and cfg["text_encoder"] != "none",
                       finetune_image=(bool(cfg["finetune_image"])
                                       and cfg["image_encoder"] != "none"))
    torch.manual_seed(cfg["seed"])
    device = resolve_device(cfg["device"])
    model = MemeModel(mcfg, encoders.image, encoders.text)
    if cfg["init_head"] and not resume:  # a resumed run continues from its own last.pt
        load_head(model, cfg["init_head"])
    model.to(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=True))

    kw = dict(cfg=mcfg, encoders=encoders, image_root=cfg["image_root"], cache_dir=cfg["cache_dir"],
              model=model, progress=progress, device=str(device))
    train_in = build_inputs(train_memes, source=cfg["train"], **kw)
    dev_in = build_inputs(dev_memes, source=cfg["dev"], **kw)
    fit_cfg = FitConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                        encoder_lr=cfg["encoder_lr"], weight_decay=cfg["weight_decay"],
                        warmup=cfg["warmup"], seed=cfg["seed"], select=cfg["select"])
    t0 = time.time()
    state = fit(model, train_in, _targets(train_memes, tasks), dev_in, _targets(dev_memes, tasks),
                fit_cfg, run_dir, resume=resume, progress=progress, meta=cfg)
    train_seconds = time.time() - t0

    raw = predict_scores(model, dev_in)
    ids = [m.id for m in dev_memes]
    thresholds = {t: th.choose(gold_matrix(dev_memes, t), raw[t]) for t in tasks}
    folded = {**raw, **{t: th.apply(raw[t], thresholds[t]) for t in tasks}}
    crossfit = {**raw, **{t: th.crossfit(gold_matrix(dev_memes, t), raw[t], seed=cfg["seed"])
                          for t in tasks}}
    report_raw = evaluate(dev_memes, ids, raw)
    report_thr = evaluate(dev_memes, ids, folded)
    report_cross = evaluate(dev_memes, ids, crossfit)
    write_report(report_raw, run_dir / "dev_report")
    write_report(report_thr, run_dir / "dev_report_thresholds")
    model.cpu()
    save_checkpoint(run_dir / "checkpoint.pt", model,
                    thresholds={t: v.tolist() for t, v in thresholds.items()},
                    fold_thresholds=bool(cfg["fold_thresholds"]), fit=dataclasses.asdict(fit_cfg),
                    best_epoch=state["best_epoch"], settings=cfg)
    summary = {
        "run_dir": str(run_dir), "task": cfg["task"], "best_epoch": state["best_epoch"],
        "select": cfg["select"], "train_seconds": round(train_seconds, 2),
        # thresholds_on is in-sample (chosen and scored on dev); thresholds_crossfit is the
        # honest estimate of the same thresholds on unseen memes (2-fold cross-fitted on dev).
        "dev": {"thresholds_off": report_raw, "thresholds_on": report_thr,
                "thresholds_crossfit": report_cross},
        "thresholds": {t: v.tolist() for t, v in thresholds.items()},
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def _short(report: dict, tasks) -> str:
    return "  ".join(f"{t}: AUROC {report[t]['roc_auc_micro']:.4f} F1 {report[t]['f1_micro']:.4f} "
                     f"macro-F1 {report[t]['f1_macro']:.4f}" for t in tasks)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = resolve(args)
        summary = run(cfg, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    except (AnnotationError, MissingImagesError, ValueError, FileNotFoundError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    tasks = tasks_for(cfg["task"])
    print(format_report(summary["dev"]["thresholds_off"]))
    print(f"\nbest epoch {summary['best_epoch']} by dev {cfg['select']}; "
          f"trained in {summary['train_seconds']:.1f}s")
    print(f"dev, official 0.5 cut:      {_short(summary['dev']['thresholds_off'], tasks)}")
    print(f"dev, dev thresholds folded: {_short(summary['dev']['thresholds_on'], tasks)} "
          "(in-sample)")
    print(f"dev, thresholds cross-fit:  {_short(summary['dev']['thresholds_crossfit'], tasks)} "
          "(2-fold)")
    print(f"run directory: {summary['run_dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
