"""The training loop: epochs over cached features (or raw inputs when fine-tuning), model
selection on dev, a resumable state written after every epoch. Knows nothing of argv."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import f1_score

from ..evaluation.metrics import official
from ..features.inputs import Inputs
from ..models.model import MemeModel, batch_totals
from ..runtime import checkpoints
from ..runtime.distributed import on_all, rank_world
from ..runtime.files import atomic_open, write_jsonl
from ..runtime.progress import bar as progress_bar, plural

SELECT_METRICS = ("roc_auc_micro", "f1_macro", "loss")


def resolve_device(name: str = "auto") -> torch.device:
    """The device `name` names, or a one-line ValueError when it is no device name or is not
    there (`cuda` on a machine without a GPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name!r} is not a device name "
                         "(auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA GPU is available here; "
                             "use --device cpu (or auto)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: there {'is' if count == 1 else 'are'} only "
                             f"{count} CUDA {plural('device', count)}, numbered from 0")
    elif device.type != "cpu":
        backend = getattr(torch, device.type, None) or getattr(torch.backends, device.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise ValueError(f"--device {name}: no {device.type} device is available here")
    return device


def _to(x, device: torch.device):
    if x is None:
        return None
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@dataclass
class FitConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    encoder_lr: float = 2e-5
    weight_decay: float = 0.01
    warmup: float = 0.05
    seed: int = 0
    select: str = "roc_auc_micro"

    def __post_init__(self):
        if self.select not in SELECT_METRICS:
            raise ValueError(f"select must be one of {SELECT_METRICS}, got {self.select!r}")


def _batches(model: MemeModel, inputs: Inputs, batch_size: int, progress: bool = False):
    """(index list, logits) for consecutive batches, in eval mode without gradients."""
    model.eval()
    device = _device_of(model)
    with torch.inference_mode():
        for start in progress_bar(range(0, len(inputs), batch_size), desc="scoring",
                                  unit="batch", disable=not progress, leave=False):
            idx = list(range(start, min(start + batch_size, len(inputs))))
            image, text = inputs.batch(idx)
            yield idx, model(_to(image, device), _to(text, device))


def predict_scores(model: MemeModel, inputs: Inputs, batch_size: int = 256,
                   progress: bool = False) -> dict[str, np.ndarray]:
    """Scores in LABELS order for every task of the model, `hate` included."""
    out: dict[str, list[np.ndarray]] = {}
    for _, logits in _batches(model, inputs, batch_size, progress):
        for task, s in model.scores(logits).items():
            out.setdefault(task, []).append(s.float().cpu().numpy())
    return {task: np.concatenate(parts) for task, parts in out.items()}


def _dev_metrics(model: MemeModel, inputs: Inputs, targets: dict[str, torch.Tensor],
                 batch_size: int) -> dict:
    """Dev loss and metrics from one pass over dev."""
    device = _device_of(model)
    parts: dict[str, list[np.ndarray]] = {}
    loss = 0.0
    for idx, logits in _batches(model, inputs, batch_size):
        batch_targets = {k: v[idx].to(device) for k, v in targets.items()}
        loss += float(model.loss(logits, batch_targets)) * len(idx)
        for task, s in model.scores(logits).items():
            parts.setdefault(task, []).append(s.float().cpu().numpy())
    scores = {task: np.concatenate(p) for task, p in parts.items()}
    metrics = {"loss": loss / max(len(inputs), 1)}
    tasks = list(model.cfg.tasks)
    per = [official(targets[t].numpy(), scores[t]) for t in tasks]
    metrics["roc_auc_micro"] = float(np.mean([p["roc_auc_micro"] for p in per]))
    metrics["f1_macro"] = float(np.mean([
        f1_score(targets[t].numpy(), scores[t] > 0.5, average="macro", zero_division=0)
        for t in tasks]))
    for t, p in zip(tasks, per):
        metrics[f"{t}/roc_auc_micro"] = p["roc_auc_micro"]
        metrics[f"{t}/f1_micro"] = p["f1_micro"]
    return metrics


def _better(metric: str, new: float, old: float | None) -> bool:
    if old is None:
        return True
    return new < old if metric == "loss" else new > old


def _optimizer(model: MemeModel, cfg: FitConfig) -> torch.optim.Optimizer:
    head = [p for p in model.head.parameters() if p.requires_grad]
    groups = [{"params": head, "lr": cfg.lr}]
    enc = [p for m in (model.image_encoder, model.text_encoder) if m is not None
           for p in m.parameters() if p.requires_grad]
    if enc:
        groups.append({"params": enc, "lr": cfg.encoder_lr})
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay, fused=True)


def _lr_factor(step: int, total: int, warmup: float) -> float:
    w = max(1, int(total * warmup))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + math.cos(math.pi * (step - w) / max(1, total - w)))


def _save_state(path: Path, state: dict) -> None:
    # atomic_open: a unique temp beside `path`, removed if torch.save fails (a full disk).
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def _share(idx: list[int], rank: int, world: int) -> tuple[list[int], bool]:
    """This process's share of a batch: every `world`-th meme from `rank` on (the interleaving
    of torch's DistributedSampler, without its padding, so that no meme counts twice). A
    process whose share is empty (a last batch smaller than the world) takes the first meme
    with no weight (False): under DDP every process must run every step."""
    part = idx[rank::world]
    return (part, True) if part else (idx[:1], False)


def step_loss(net: torch.nn.Module, model: MemeModel, inputs: Inputs,
              targets: dict[str, torch.Tensor], idx: list[int], rank: int = 0,
              world: int = 1) -> torch.Tensor:
    """This process's part of the loss of the batch `idx`: the batch's loss in one process;
    under DDP the part whose gradient, averaged over the processes by DDP, is the whole
    batch's gradient (and the parts' values add up to the batch's loss, times `world`)."""
    device = _device_of(model)
    if world == 1:
        image, text = inputs.batch(idx)
        return model.loss(net(_to(image, device), _to(text, device)),
                          {k: v[idx].to(device) for k, v in targets.items()})
    part, weighted = _share(idx, rank, world)
    image, text = inputs.batch(part)
    # The denominators are the whole batch's: every process knows all the targets.
    totals = batch_totals({k: v[idx] for k, v in targets.items()})
    loss = model.loss(net(_to(image, device), _to(text, device)),
                      {k: v[part].to(device) for k, v in targets.items()}, totals)
    # DDP averages gradients over the processes while the parts' losses add up: scale by the
    # world size so that the average is the sum.
    return loss * (world if weighted else 0.0)


def _cuda_started() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _cuda_rng_state() -> list[torch.Tensor] | None:
    """This process's CUDA RNG states, one per visible device (dropout masks on a GPU are
    drawn from them), or None where this process has not started CUDA: a CPU run on a machine
    with a GPU draws nothing there, and asking for the states would start CUDA up (seconds,
    and memory on every GPU) for nothing."""
    if not _cuda_started():
        return None
    return torch.cuda.get_rng_state_all()


def _rng_states() -> tuple[list[torch.Tensor], list[list[torch.Tensor] | None]]:
    """Every process's CPU RNG state and its CUDA RNG states (None off CUDA), in rank
    order: what draws the dropout masks."""
    rank, world = rank_world()
    mine = (torch.get_rng_state(), _cuda_rng_state())
    if world == 1:
        gathered = [mine]
    else:
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, mine)
    return [g[0] for g in gathered], [g[1] for g in gathered]


def _set_cuda_rng_state(states: list[torch.Tensor]) -> None:
    """Restore a process's CUDA RNG states saved by `_cuda_rng_state`, when this machine has
    as many CUDA devices as the saving one. Resumed on another device kind (a GPU run on a
    CPU) there is nothing to restore: the CPU draws the masks from its own, restored state,
    and the run goes on, though not bit for bit (other kernels, other masks). With another
    number of GPUs the devices do not correspond: they keep the seed `fit` gave them."""
    if torch.cuda.is_available() and len(states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in states])


def _sync_batchnorm(model: MemeModel) -> None:
    """A fine-tuned image encoder's batch norm to whole-batch statistics across processes (the
    parameters stay the same objects; the state_dict keys do not change)."""
    if model.image_encoder is not None:
        from ..pretraining.barlow_twins import convert_sync_batchnorm
        model.image_encoder = convert_sync_batchnorm(model.image_encoder)


def _resumed(last: Path, model: MemeModel, opt: torch.optim.Optimizer, device, rank: int,
             meta: dict | None, differs: Callable[[dict, dict], list[str]] | None) -> dict:
    """`fit`'s state from `last` (a resume), its weights, optimizer and RNG state restored
    into `model`, `opt` and this process; CheckpointError if it does not belong to them."""
    if not last.exists():
        raise FileNotFoundError(f"--resume: no {last} to continue from")
    saved = checkpoints.load_dict(last, ("model", "optimizer", "rng", "state"), device,
                                  what="resume state")
    rngs = [saved["rng"], *saved.get("rng_ranks", [])]
    # Written before CUDA states were saved, or off CUDA: no "cuda_rng" (the GPUs keep the
    # seed `fit` gave them).
    cuda_rngs = saved.get("cuda_rng", [])
    try:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        # Resumed on another number of processes, the other ranks keep their fresh seeds:
        # the gradients do not depend on the number of processes, only the dropout masks.
        if rank < len(rngs):
            torch.set_rng_state(rngs[rank].cpu())
        if rank < len(cuda_rngs) and cuda_rngs[rank] is not None:
            _set_cuda_rng_state(cuda_rngs[rank])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise checkpoints.CheckpointError(
            f"{last}: does not fit this run's model and optimizer: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    theirs = saved.get("meta") if isinstance(saved.get("meta"), dict) else {}
    diff = [] if meta is None or "meta" not in saved else (
        differs(theirs, meta) if differs is not None else
        sorted(k for k in set(theirs) | set(meta) if theirs.get(k) != meta.get(k)))
    if diff:
        raise checkpoints.CheckpointError(
            f"{last}: was written by a run with other settings (differing in {diff}); the "
            "folder mixes two runs: start again with --overwrite")
    return saved["state"]


def fit(model: MemeModel, train: Inputs, train_targets: dict[str, torch.Tensor], dev: Inputs,
        dev_targets: dict[str, torch.Tensor], cfg: FitConfig, run_dir: Path, resume: bool = False,
        on_epoch_end: Callable[[int], None] | None = None, progress: bool = True,
        meta: dict | None = None,
        differs: Callable[[dict, dict], list[str]] | None = None) -> dict:
    """Train, keep the best epoch by `cfg.select` on dev, and return
    {"best_epoch", "best", "history"}.

    After each epoch `run_dir/last.pt` holds everything needed to continue (weights,
    optimizer, RNG states: the CPU's and, on GPUs, CUDA's; best so far), and
    `run_dir/best.pt` the best weights. `meta` (plain data: the run's settings) is stored in
    last.pt, and a resume whose `meta` differs from the stored one is refused: that last.pt
    belongs to another run. `differs(stored, meta)` names the settings that count as
    differing (default: any whose value differs).

    Under torchrun (DDP) every process runs this on the same data: each batch of
    `cfg.batch_size` is shared out between the processes, whose gradients add up to the one
    process gradient; rank 0 alone evaluates on dev and writes, and at the end every process
    holds the best epoch's weights and gets the same result. With `--resume` each process
    reads `last.pt`, so across machines `run_dir` must be on a shared file system.
    """
    from torch.utils.tensorboard import SummaryWriter

    rank, world = rank_world()
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    # Dropout masks differ between processes; rank 0 draws what one process draws.
    torch.manual_seed(cfg.seed + 1_000_003 * rank)
    device = _device_of(model)
    if world > 1:
        _sync_batchnorm(model)
    opt = _optimizer(model, cfg)
    n = len(train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    base_lrs = [g["lr"] for g in opt.param_groups]
    state = {"epoch": 0, "best": None, "best_epoch": None, "history": []}
    last = run_dir / "last.pt"
    if resume:
        # Every rank reads the same last.pt (the run folder is shared): a damaged one is one
        # error of every rank, said once (runtime/commands.py), not once a rank.
        state = on_all(lambda: _resumed(last, model, opt, device, rank, meta, differs),
                       f"reading {last}")
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        # A fine-tuned encoder may hold parameters its output does not use (BERT's pooler,
        # under mean pooling): DDP must then look for them at every step, or it stops.
        tuned = model.image_encoder is not None or model.text_encoder is not None
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                      else None, find_unused_parameters=tuned)
    stats_path = run_dir / "stats.jsonl"
    writer = SummaryWriter(str(run_dir / "tb")) if rank == 0 else None
    progress = progress and rank == 0
    try:
        for epoch in range(state["epoch"], cfg.epochs):
            model.train()
            # The order of an epoch depends on (seed, epoch) alone, so a resumed run sees the
            # same batches as an uninterrupted one, and every DDP process the same batches.
            order = torch.randperm(
                n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
            t0 = time.time()
            total = 0.0
            bar = progress_bar(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                               disable=not progress, leave=False)
            for i in bar:
                step = epoch * steps_per_epoch + i
                for g, base in zip(opt.param_groups, base_lrs):
                    g["lr"] = base * _lr_factor(step, total_steps, cfg.warmup)
                idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size].tolist()
                loss = step_loss(net, model, train, train_targets, idx, rank, world)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() / world * len(idx)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if world > 1:  # the processes' parts of the epoch's loss (NCCL reduces on the GPU)
                summed = torch.tensor(total, dtype=torch.float64, device=device)
                torch.distributed.all_reduce(summed)
                total = float(summed)
            rngs, cuda_rngs = _rng_states()
            if rank == 0:
                dev_m = _dev_metrics(model, dev, dev_targets, max(cfg.batch_size, 256))
                record = {"epoch": epoch + 1, "train_loss": total / n,
                          "seconds": round(time.time() - t0, 3),
                          **{f"dev/{k}": v for k, v in dev_m.items()}}
                state["history"].append(record)
                for k, v in record.items():
                    if k != "epoch":
                        writer.add_scalar(k, v, epoch + 1)
                if _better(cfg.select, dev_m[cfg.select], state["best"]):
                    state["best"], state["best_epoch"] = dev_m[cfg.select], epoch + 1
                    _save_state(run_dir / "best.pt",
                                {"model": model.state_dict(), "epoch": epoch + 1})
                state["epoch"] = epoch + 1
                _save_state(last, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                   "rng": rngs[0], "state": state,
                                   **({"rng_ranks": rngs[1:]} if world > 1 else {}),
                                   **({"cuda_rng": cuda_rngs}
                                      if any(c is not None for c in cuda_rngs) else {}),
                                   **({"meta": meta} if meta is not None else {})})
                # Rewritten whole from the saved history, so a resumed run never repeats a line.
                write_jsonl(stats_path, state["history"])
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1)
    finally:
        if writer is not None:
            writer.close()
    if rank == 0:
        best = checkpoints.load_dict(run_dir / "best.pt", ("model",), device)
        model.load_state_dict(best["model"])
    if world > 1:
        # Rank 0 alone knows the best epoch: every process leaves with its weights and state.
        for tensor in model.state_dict().values():
            torch.distributed.broadcast(tensor, 0)
        shared = [state]
        torch.distributed.broadcast_object_list(shared, 0)
        state = shared[0]
    return state
