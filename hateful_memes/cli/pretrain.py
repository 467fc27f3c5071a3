r"""Barlow Twins pretraining of an image backbone on unlabelled images.

    python pretrain.py --images data/img --backbone resnet50 --epochs 100 \
        --batch-size 256 --out runs/bt

The same command runs on many processes under torchrun (DDP: NCCL on GPUs, gloo on CPUs;
--batch-size is the global batch). OUT gets checkpoint.pt (every epoch; --resume goes on
from it), backbone.pth (the timm backbone's state_dict alone), stats.jsonl and tb/.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..data.annotations import ImagePathError, image_path, json_lines
from ..features.cache import load_rgb
from ..pretraining.augment import Transform, backbone_data_config
from ..pretraining.barlow_twins import (BACKBONE, CHECKPOINT, BarlowTwins, convert_sync_batchnorm,
                                        parse_projector)
from ..pretraining.lars import LR_BIASES, LR_WEIGHTS, adjust_learning_rate, make_optimizer
from ..runtime import checkpoints, rundir
from ..runtime.distributed import RankFailed, finish, init_from_env, on_all
from ..runtime.files import atomic_open, same_path, write_jsonl
from ..runtime.commands import EVERY_RANK, ArgumentParser, ends_quietly, error_exit, raised_on
from ..runtime.progress import bar as progress_bar, plural

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
STATS = "stats.jsonl"
# Defaults that depend on --optimizer: the paper's for LARS; for AdamW, values that are
# common for self-supervised training with it.
OPTIMIZER_DEFAULTS = {
    "lars": {"lr_weights": LR_WEIGHTS, "lr_biases": LR_BIASES, "weight_decay": 1.5e-6},
    "adamw": {"lr_weights": 1e-3, "lr_biases": 1e-3, "weight_decay": 0.05},
}
# What a run writes at the top of --out (rundir: what --overwrite may remove).
RUN_LAYOUT = rundir.RunLayout("pretrain.py",
                              frozenset({CHECKPOINT, BACKBONE, STATS, "tb"}),
                              resume_needs=(CHECKPOINT,))
# Settings that may change when a run is resumed; any other change is refused.
RESUMABLE_CHANGES = {"epochs", "workers", "log_every", "amp", "amp_dtype", "n_images"}


class ImageSetError(ValueError):
    """No images, or an input that names images badly."""


class PretrainError(Exception):
    """What stops a run, as main's one-line error (the others' CLIs' `PROG: error: ...`)."""


# --------------------------------------------------------------------------- images


def annotation_images(path: Path, image_root: Path | None = None) -> list[Path]:
    """The `img` paths of a JSON-lines annotation file, relative to `image_root` (default:
    the file's parent's parent, data/annotations/train.json -> data/); an `img` that would
    leave that root is an ImageSetError."""
    root = image_root if image_root is not None else path.parent.parent
    images = []
    for n, row in json_lines(path, ImageSetError):
        if not isinstance(row.get("img"), str):
            raise ImageSetError(f"{path}:{n}: expected an object with an 'img' path")
        try:
            images.append(image_path(root, row["img"]))
        except ImagePathError as e:
            raise ImageSetError(f"{path}:{n}: {e}") from None
    return images


def collect_images(sources: Sequence[str | os.PathLike],
                   image_root: str | os.PathLike | None = None, warn: bool = True) -> list[Path]:
    """Image files from directories (recursively) and annotation files, deduplicated, in a
    fixed order. Images that annotations list but that do not exist are left out with a
    warning (unless `warn` is false); no image at all is an ImageSetError naming what was
    searched."""
    root = Path(image_root) if image_root is not None else None
    seen: dict[Path, None] = {}
    missing: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(p for p in source.rglob("*")
                           if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        elif source.is_file():
            found = []
            for p in annotation_images(source, root):
                (found if p.is_file() else missing).append(p)
        else:
            raise ImageSetError(f"--images {source}: no such directory or annotation file")
        for p in found:
            seen.setdefault(p.resolve(), None)
    if missing and warn:
        shown = ", ".join(str(p) for p in missing[:5])
        one = len(missing) == 1
        log.warning("%d %s listed in the annotations %s not exist and %s left out (e.g. %s)",
                    len(missing), plural("image", len(missing)), "does" if one else "do",
                    "is" if one else "are", shown)
    if not seen:
        raise ImageSetError(
            "no images found in " + ", ".join(str(s) for s in sources)
            + f" (directories are searched recursively for {'/'.join(IMAGE_EXTENSIONS)}; "
            + "annotation files' 'img' paths are read relative to "
            + (str(root) if root else "the file's parent's parent, or --image-root") + ")")
    return list(seen)


class Skipped(NamedTuple):
    path: str
    reason: str


class ImageDataset(Dataset):
    """Image path -> the two views; an unreadable image gives a `Skipped` instead."""

    def __init__(self, paths: Sequence[Path], transform: Transform):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:
            # Read as train.py reads its images (upright, 16-bit grey kept), decoded in full:
            # a truncated file fails here.
            img = load_rgb(path)
        except Exception as e:  # any decoder failure: skip the image, never the epoch
            return Skipped(str(path), f"{type(e).__name__}: {e}")
        return self.transform(img)


def collate_views(batch: list) -> tuple[torch.Tensor | None, torch.Tensor | None, list[Skipped]]:
    skipped = [b for b in batch if isinstance(b, Skipped)]
    views = [b for b in batch if not isinstance(b, Skipped)]
    if not views:
        return None, None, skipped
    return (torch.stack([v[0] for v in views]), torch.stack([v[1] for v in views]), skipped)


# --------------------------------------------------------------------------- checkpoints


def _save(obj, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="pretrain.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", nargs="+", required=True, metavar="DIR_OR_ANNOTATIONS",
                   help="directories (searched recursively) and/or annotation files "
                        "(JSON lines with an 'img' path)")
    p.add_argument("--image-root", help="root of annotation files' 'img' paths (default: "
                                        "the annotation file's parent's parent)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--backbone", default="resnet50",
                   help="timm model name (default resnet50, as in the paper, for GPUs; "
                        "on CPUs use a small one such as resnet18 or tf_efficientnet_lite0)")
    p.add_argument("--pretrained", action="store_true",
                   help="start from timm's ImageNet weights (downloads them)")
    p.add_argument("--projector", default="8192-8192-8192",
                   help="projector layer sizes (default %(default)s)")
    p.add_argument("--lambd", type=float, default=0.0051,
                   help="weight of the off-diagonal (default %(default)s)")
    p.add_argument("--epochs", type=int, default=100,
                   help="passes over the images (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="global, over all processes (default %(default)s)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZER_DEFAULTS), default="lars",
                   help="(default %(default)s, as in the paper; it sets the defaults of the "
                   "next three)")
    p.add_argument("--lr-weights", type=float,
                   help="learning rate of the weights per 256 images (lars 0.2, adamw 1e-3)")
    p.add_argument("--lr-biases", type=float, help="learning rate of biases and norm "
                                                   "parameters per 256 (lars 0.0048, adamw 1e-3)")
    p.add_argument("--weight-decay", type=float, help="lars 1.5e-6, adamw 0.05")
    p.add_argument("--warmup-epochs", type=float, default=10,
                   help="linear warm-up (default 10, capped at a tenth of --epochs)")
    p.add_argument("--image-size", type=int, help="default: the backbone's own")
    p.add_argument("--crop-scale", type=float, nargs=2, default=(0.08, 1.0), metavar=("MIN", "MAX"),
                   help="area range of the random resized crop (default 0.08 1.0)")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="no horizontal flips")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="auto: cuda where there is one (default %(default)s)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on for CUDA)")
    p.add_argument("--amp-dtype", choices=("bfloat16", "float16"),
                   help="default bfloat16 where the GPU has it, else float16 (loss-scaled)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="processes decoding and augmenting the images, 0: none beside the "
                   "training (default: the CPUs, at most 8: here %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of every random generator (default %(default)s)")
    p.add_argument("--log-every", type=int, default=10,
                   help="steps between stats lines (default %(default)s)")
    p.add_argument("--resume", action="store_true", help="go on from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in OUT (its own files only) and start again")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _parser()
    args = p.parse_args(argv)
    for key, value in OPTIMIZER_DEFAULTS[args.optimizer].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        parse_projector(args.projector)
    except ValueError as e:
        p.error(str(e))
    _validate(p, args)
    return args


def _validate(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every setting in its range before any work, as a usage error naming the flag."""
    at_least = {"epochs": 1, "batch_size": 2, "workers": 0, "log_every": 1, "seed": 0}
    for name, low in at_least.items():
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    for name in ("lr_weights", "lr_biases", "lambd"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            p.error(f"--{name.replace('_', '-')} must be a number > 0, got {value}")
    for name in ("weight_decay", "warmup_epochs"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            p.error(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
    if args.image_size is not None and args.image_size < 8:
        p.error(f"--image-size must be >= 8 pixels, got {args.image_size}")
    low, high = args.crop_scale
    if not 0 < low <= high <= 1:
        p.error(f"--crop-scale MIN MAX must satisfy 0 < MIN <= MAX <= 1, got {low} {high}")
    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available here; use --device cpu (or auto)")
    if args.amp and not cuda:
        p.error(f"--amp needs a CUDA device (--device {args.device} runs on the CPU here); "
                "leave it out or use --no-amp")


def seed_everything(seed: int, *keys: int) -> None:
    """Seed every RNG from (seed, keys): each epoch's data order and augmentations depend
    on the epoch alone, so a resumed run repeats an uninterrupted one."""
    s = int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def _config(args: argparse.Namespace, device: torch.device, n_images: int) -> dict:
    data = backbone_data_config(args.backbone, args.image_size)
    # --amp off CUDA is refused by _validate, as a usage error before any work.
    amp = args.amp if args.amp is not None else device.type == "cuda"
    amp_dtype = args.amp_dtype or (
        "bfloat16" if amp and torch.cuda.is_bf16_supported() else "float16")
    return {
        "backbone": args.backbone, "pretrained": args.pretrained,
        "image_size": data["image_size"], "mean": list(data["mean"]), "std": list(data["std"]),
        "projector": args.projector, "lambd": args.lambd,
        "epochs": args.epochs, "batch_size": args.batch_size,
        "optimizer": args.optimizer, "lr_weights": args.lr_weights,
        "lr_biases": args.lr_biases, "weight_decay": args.weight_decay,
        "warmup_epochs": args.warmup_epochs,
        "crop_scale": list(args.crop_scale), "flip": args.flip,
        # Absolute, so that a resume from another folder finds them the same (_same).
        "images": [os.path.abspath(s) for s in args.images],
        "image_root": os.path.abspath(args.image_root) if args.image_root else None,
        "n_images": n_images, "seed": args.seed, "workers": args.workers,
        "log_every": args.log_every, "amp": amp, "amp_dtype": amp_dtype if amp else None,
    }


def _same(key: str, old, new) -> bool:
    """Whether a setting is unchanged; the image sources by what they name, not how."""
    if key == "images" and isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(
            isinstance(a, str) and same_path(a, b) for a, b in zip(old, new))
    if key == "image_root" and isinstance(old, str) and isinstance(new, str):
        return same_path(old, new)
    return old == new


def _relative(value) -> bool:
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and v and not os.path.isabs(v) for v in values)


def _check_resumable(saved: dict, config: dict, path: Path) -> None:
    changed = sorted(k for k in set(saved) | set(config)
                     if k not in RESUMABLE_CHANGES and not _same(k, saved.get(k), config.get(k)))
    if changed:
        diffs = "; ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in changed)
        # Checkpoints written before the image sources were stored absolute kept them as
        # typed, relative to the folder the run was started in, which nothing records: only a
        # resume from there reads them as they were meant.
        relative = [k for k in ("images", "image_root") if k in changed and _relative(saved[k])]
        hint = (f"; it keeps {' and '.join(relative)} relative to the folder the run was "
                "started in (it was written before they were stored absolute): if they are the "
                "same, resume from that folder with them as typed there" if relative else "")
        raise PretrainError(f"--resume: {path} was trained with other settings ({diffs}){hint}")


def _read_stats(path: Path, epochs: int) -> list[dict]:
    """The rows of a resumed run's stats log for the `epochs` its checkpoint holds (they are
    written again whole); a damaged line stops the resume, naming it, rather than lose rows."""
    rows = []
    try:
        for n, row in json_lines(path, ValueError):  # blank lines are skipped
            epoch = row.get("epoch")
            if isinstance(epoch, bool) or not isinstance(epoch, int):
                raise ValueError(f"{path}:{n}: expected a row with a whole 'epoch' number")
            if epoch < epochs:
                rows.append(row)
    except ValueError as e:
        raise PretrainError(f"--resume: {e}; mend that line, or move {path.name} away (its "
                            "rows are then lost)") from None
    return rows


@ends_quietly  # `| head`, Ctrl-C: one line or none, not a traceback (runtime/commands.py)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    rank, world, device = init_from_env(args.device)
    try:
        return _train(args, rank, world, device)
    except (PretrainError, ImageSetError, rundir.RunDirError, RankFailed) as e:
        # The user's input, not a bug: one line, as train.py, predict.py and evaluate.py say it.
        return error_exit("pretrain.py", e)
    finally:
        finish(wait=False)  # no barrier: a rank that failed alone must not wait for the others


def _train(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> int:
    out = Path(args.out)

    def check():
        # Every rank finds the same images: rank 0 alone warns of those missing.
        paths = collect_images(args.images, args.image_root, warn=rank == 0)
        if args.batch_size % world:
            raise PretrainError(f"--batch-size {args.batch_size} is not divisible by the "
                                f"{world} processes")
        try:
            config = _config(args, device, len(paths))
        except ValueError as e:  # an unknown backbone
            raise PretrainError(f"--backbone: {e}") from None
        rundir.check(out, RUN_LAYOUT, resume=args.resume, overwrite=args.overwrite)
        if rank == 0:
            rundir.check_writable(out, "--out")
        return paths, config

    # Rank 0 alone tries the folder: under torchrun its failure is raised on every rank,
    # which would otherwise wait for it at the first collective; and an error that every
    # rank finds (no images, an unknown backbone) is said once (runtime/commands.py).
    paths, config = on_all(check, "checking --images, --backbone and --out")
    if rank == 0:
        log.info("%d images; backbone %s at %d px on %s x %d", len(paths), args.backbone,
                 config["image_size"], device, world)

    seed_everything(args.seed)
    model = BarlowTwins(args.backbone, args.projector, args.lambd, args.pretrained)
    start_epoch, rows = 0, []
    checkpoint = None
    if args.resume:
        path = out / CHECKPOINT

        def read():
            try:
                saved = checkpoints.load_dict(path, ("config", "model", "epoch"),
                                              what="Barlow Twins checkpoint")
            except checkpoints.CheckpointError as e:
                raise PretrainError(f"--resume: {e}") from None
            _check_resumable(saved["config"], config, path)
            return saved

        checkpoint = on_all(read, "reading --resume's checkpoint")
        model.load_state_dict(checkpoint["model"])
        start_epoch = checkpoint["epoch"]
        if (out / STATS).is_file():
            rows = _read_stats(out / STATS, start_epoch)
    model.to(device)
    if world > 1:
        model = convert_sync_batchnorm(model)
    optimizer = make_optimizer(model, args.optimizer, args.weight_decay)
    use_scaler = config["amp"] and config["amp_dtype"] == "float16"
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        if use_scaler and "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    transform = Transform(config["image_size"], config["mean"], config["std"],
                          crop_scale=tuple(args.crop_scale), flip=args.flip)
    dataset = ImageDataset(paths, transform)
    sampler = (DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                  seed=args.seed, drop_last=True) if world > 1 else None)
    loader = DataLoader(dataset, batch_size=args.batch_size // world, shuffle=sampler is None,
                        sampler=sampler, num_workers=args.workers, pin_memory=device.type == "cuda",
                        drop_last=True, collate_fn=collate_views)
    if len(loader) == 0:  # as many images on every rank
        raise raised_on(PretrainError(f"--batch-size {args.batch_size} is larger than the "
                                      f"{len(paths)} images found"), EVERY_RANK)
    warmup = min(args.warmup_epochs, args.epochs / 10)
    amp_dtype = getattr(torch, config["amp_dtype"]) if config["amp"] else None

    # Only now, with the model, its checkpoint and the data ready, is the folder touched: a
    # start that fails before (a backbone that cannot be made, a --batch-size larger than the
    # images) leaves the old run that --overwrite was to replace.
    if rank == 0:
        if args.overwrite:
            rundir.clear(out, RUN_LAYOUT)
        else:
            rundir.remove_stale_temps(out, RUN_LAYOUT)
    if dist.is_initialized():
        dist.barrier()  # no process writes before the old run is gone
    writer = None
    try:
        if rank == 0:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(out / "tb", purge_step=start_epoch * len(loader))
        skipped: set[str] = set()
        start_time = time.time()
        for epoch in range(start_epoch, args.epochs):
            seed_everything(args.seed, epoch, rank)
            if sampler is not None:
                sampler.set_epoch(epoch)
            net.train()
            total, batches = torch.zeros((), device=device), 0
            bar = progress_bar(loader, desc=f"epoch {epoch + 1}/{args.epochs}",
                               disable=rank != 0 or args.quiet, dynamic_ncols=True)
            for i, (y1, y2, bad) in enumerate(bar):
                step = epoch * len(loader) + i
                for s in bad:
                    if s.path not in skipped:
                        skipped.add(s.path)
                        log.warning("skipping unreadable image %s (%s)", s.path, s.reason)
                if not _enough(y1, world, device):
                    continue
                lr, lr_biases = adjust_learning_rate(
                    optimizer, step, len(loader), args.epochs, warmup, args.batch_size,
                    args.lr_weights, args.lr_biases)
                y1 = y1.to(device, non_blocking=True)
                y2 = y2.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = net(y1, y2)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.detach()
                batches += 1
                if rank == 0 and (step % args.log_every == 0 or i == len(loader) - 1):
                    row = {"epoch": epoch, "step": step, "loss": loss.item(), "lr": lr,
                           "lr_biases": lr_biases, "time": round(time.time() - start_time, 3)}
                    rows.append(row)
                    writer.add_scalar("loss", row["loss"], step)
                    writer.add_scalar("lr", lr, step)
                    bar.set_postfix(loss=f"{row['loss']:.4g}")
            if batches == 0:  # every process takes this branch alike (see _enough)
                first = ", ".join(sorted(skipped)[:5])
                raise raised_on(PretrainError(
                    f"epoch {epoch + 1} ran no training step: {len(skipped)} of "
                    f"{len(paths)} {plural('image', len(paths))} could not be read"
                    f"{' (first: ' + first + ')' if first else ''} and "
                    "a step needs two readable images; nothing was saved"), EVERY_RANK)
            if rank == 0:
                mean = (total / max(batches, 1)).item()
                writer.add_scalar("epoch_loss", mean, epoch)
                writer.flush()
                log.info("epoch %d/%d: mean loss %.4g over %d steps", epoch + 1, args.epochs,
                         mean, batches)
                state = {"config": config, "epoch": epoch + 1, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict()}
                if use_scaler:
                    state["scaler"] = scaler.state_dict()
                out.mkdir(parents=True, exist_ok=True)
                _save(state, out / CHECKPOINT)
                _save(model.backbone.state_dict(), out / BACKBONE)
                write_jsonl(out / STATS, rows)
    except BaseException:
        if writer is not None:
            writer.close()
        # Before the first checkpoint the run's files (tb/) are all this start's: rundir.check
        # let it begin only without them. Taken back, its rerun needs no --overwrite.
        if rank == 0 and not (out / CHECKPOINT).exists():
            rundir.clear(out, RUN_LAYOUT)
        raise

    if writer is not None:
        writer.close()
    _report_skipped(skipped, world, rank)
    return 0


def _enough(y1: torch.Tensor | None, world: int, device: torch.device) -> bool:
    """Whether this step can run: batch norm needs two images in all, and under DDP every
    process must hold one (all processes take the same decision)."""
    n = 0 if y1 is None else y1.shape[0]
    if world == 1:
        return n >= 2
    counts = torch.zeros(world, device=device)
    counts[dist.get_rank()] = n
    dist.all_reduce(counts)
    return bool(counts.min() >= 1 and counts.sum() >= 2)


def _report_skipped(skipped: set[str], world: int, rank: int) -> None:
    if world > 1:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, sorted(skipped))
        skipped = set().union(*gathered)
    if rank == 0:
        if skipped:
            log.warning("%d unreadable %s skipped: %s", len(skipped),
                        plural("image", len(skipped)), ", ".join(sorted(skipped)))
        else:
            log.info("0 unreadable images skipped")
