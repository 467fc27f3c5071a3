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
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from . import thresholds as th
from .data import AnnotationError, gold_matrix, read_annotations
from .files import write_json, write_text
from .inputs import Encoders, MissingImagesError, build_inputs, check_images
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
    "out": None,
}


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
    a("--resume", action="store_true", help="continue the run in --out from its last epoch")
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
    return cfg


def _targets(memes, tasks) -> dict[str, torch.Tensor]:
    return {t: torch.from_numpy(gold_matrix(memes, t)) for t in ("hate", *tasks)}


def run(cfg: dict, resume: bool = False, progress: bool = True) -> dict:
    """Train as `cfg` says; return the summary written to RUN_DIR/summary.json."""
    run_dir = Path(cfg["out"])
    tasks = tasks_for(cfg["task"])
    if resume:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        if saved != cfg:
            diff = sorted(k for k in cfg if saved.get(k) != cfg[k])
            raise ValueError(f"--resume: settings differ from {run_dir / 'config.yaml'} in {diff}")
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    train_memes = read_annotations(cfg["train"])
    dev_memes = read_annotations(cfg["dev"])

    # Missing images fail here, before any encoder is loaded or any epoch is run.
    if cfg["image_encoder"] != "none":
        check_images(train_memes, cfg["image_root"], cfg["train"])
        check_images(dev_memes, cfg["image_root"], cfg["dev"])
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
                fit_cfg, run_dir, resume=resume, progress=progress)
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
        summary = run(cfg, resume=args.resume, progress=not args.quiet)
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
