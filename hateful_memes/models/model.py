"""The fused multimodal classifier: two embeddings in, one multi-label head per task out.

The empty labels (`pc_empty`, `attack_empty`) are not free outputs. In the default "gate"
design each task head has a gate, P(the meme carries some label of this task), and
conditional scores P(label | some label); the written scores are

    empty = 1 - gate,        label_k = gate * cond_k,

so a real label can only pass 0.5 when the gate does, which puts the empty label below 0.5:
an empty label never stands beside a real one. The "independent" design (one sigmoid per
label, the empty one capped at 1 - max real score) is kept for comparison.

A checkpoint stores `ModelConfig` next to the weights, so a checkpoint alone rebuilds the
model (see `save_checkpoint` / `load_checkpoint`).
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.annotations import clip
from ..labels import LABELS
from ..runtime import checkpoints
from ..runtime.files import atomic_open

FUSIONS = ("concat", "interact")
EMPTY_DESIGNS = ("gate", "independent")
TEXT_JOINS = ("ensemble", "concat")


@dataclass
class ModelConfig:
    tasks: tuple[str, ...] = ("pc", "attack")
    image_encoder: str = "none"
    text_encoder: str = "minilm"
    image_dim: int = 0
    text_dim: int = 0
    fusion: str = "concat"
    empty: str = "gate"
    hidden: int = 512
    dropout: float = 0.3
    # Encoder weights live in the checkpoint only when they were trained (--finetune);
    # frozen encoders are rebuilt from their spec.
    finetune_text: bool = False
    finetune_image: bool = False
    # A joined text encoder (`minilm+mpnet`) gives its parts side by side, of these widths.
    # "ensemble": one head per part (each with the image), their probabilities averaged;
    # "concat": one head reads all parts.
    text_part_dims: tuple[int, ...] = ()
    text_join: str = "ensemble"

    def __post_init__(self):
        # A checkpoint's config comes from a file: a wrong type would fail deep inside torch.
        for name, least in (("image_dim", 0), ("text_dim", 0), ("hidden", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
            setattr(self, name, int(value))
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real):
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        self.tasks = tuple(self.tasks)
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.empty not in EMPTY_DESIGNS:
            raise ValueError(f"empty must be one of {EMPTY_DESIGNS}, got {self.empty!r}")
        bad = [t for t in self.tasks if t not in ("pc", "attack")]
        if bad or not self.tasks:
            raise ValueError(f"tasks must be some of ('pc', 'attack'), got {self.tasks}")
        if self.image_dim <= 0 and self.text_dim <= 0:
            raise ValueError("at least one of image_dim, text_dim must be positive")
        self.text_part_dims = tuple(int(d) for d in self.text_part_dims)
        if self.text_join not in TEXT_JOINS:
            raise ValueError(f"text_join must be one of {TEXT_JOINS}, got {self.text_join!r}")
        if self.text_part_dims and (sum(self.text_part_dims) != self.text_dim
                                    or min(self.text_part_dims) <= 0):
            raise ValueError(f"text_part_dims {self.text_part_dims} do not add up to text_dim "
                             f"{self.text_dim}")

    @property
    def per_part_heads(self) -> bool:
        return self.text_join == "ensemble" and len(self.text_part_dims) > 1


class Dropout(nn.Module):
    """nn.Dropout whose mask costs less on the CPU; elsewhere it is nn.Dropout.

    torch's CPU dropout draws one Bernoulli sample per element, about 20 ns each on the 2-core
    machine this was written on: the three dropouts of a head took a third of the time of
    training it on cached features (experiments/README.md, "Benchmark"). Here one 32-bit draw of
    the same generator (so `torch.manual_seed` and a saved RNG state still reproduce a run)
    gives two 16-bit numbers, each kept when at or above p * 2**16: p is rounded to a multiple
    of 2**-16.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self._cut = round(p * 2**16) - 2**15  # on the int16 scale, [-2**15, 2**15)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        n = x.numel()
        bits = torch.randint(-2**31, 2**31, ((n + 1) // 2,), dtype=torch.int32)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= self._cut
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _Branch(nn.Module):
    """Projects one modality's embedding to the shared width; L2-normalising first puts
    encoders of very different scales (CLIP, MiniLM, EfficientNet) on the same footing."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.proj = nn.Sequential(Dropout(dropout), nn.Linear(dim, hidden), nn.LayerNorm(hidden),
                                  nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.normalize(x, dim=-1))


class FusionHead(nn.Module):
    """Everything trained on top of the (possibly cached) encoder features."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.image = _Branch(cfg.image_dim, h, cfg.dropout) if cfg.image_dim > 0 else None
        self.text = _Branch(cfg.text_dim, h, cfg.dropout) if cfg.text_dim > 0 else None
        n_modalities = (self.image is not None) + (self.text is not None)
        # "interact" adds the elementwise product of the two projections: memes are hateful
        # through the combination of picture and caption, which a sum of parts misses.
        width = h * n_modalities + (h if cfg.fusion == "interact" and n_modalities == 2 else 0)
        self.trunk = nn.Sequential(Dropout(cfg.dropout), nn.Linear(width, h), nn.GELU(),
                                   Dropout(cfg.dropout))
        self.hate = nn.Linear(h, 1)
        # gate design: one gate logit + K-1 conditional logits; independent: K logits.
        self.heads = nn.ModuleDict({task: nn.Linear(h, len(LABELS[task])) for task in cfg.tasks})

    def forward(self, image: torch.Tensor | None = None,
                text: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        parts = []
        if self.image is not None:
            if image is None:
                raise ValueError("this model needs image features")
            a = self.image(image)
            parts.append(a)
        if self.text is not None:
            if text is None:
                raise ValueError("this model needs text features")
            b = self.text(text)
            parts.append(b)
        if self.cfg.fusion == "interact" and len(parts) == 2:
            parts.append(parts[0] * parts[1])
        z = self.trunk(torch.cat(parts, dim=-1))
        logits = {"hate": self.hate(z).squeeze(-1)}
        logits.update({task: head(z) for task, head in self.heads.items()})
        return logits


class PartHeads(nn.Module):
    """One FusionHead per part of a joined text encoder (`minilm+mpnet`), each reading the
    image features and its own part of the caption's; their logits are stacked on dim 1, and
    `scores_from_logits` averages their probabilities.

    Heads trained on different encoders err differently. Against MiniLM alone, their average
    gained on both checks of experiments/unseen_check.py; one head over both encoders side by
    side gained more out of fold but lost dev_seen's Task A (experiments/README.md,
    "Unseen-like check"). Each head has its own loss (they share no weight), so training them
    together is training each alone on the same batches."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dims = list(cfg.text_part_dims)
        self.members = nn.ModuleList(
            FusionHead(dataclasses.replace(cfg, text_dim=d, text_part_dims=()))
            for d in self.dims)

    def forward(self, image: torch.Tensor | None = None,
                text: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if text is None:
            raise ValueError("this model needs text features")
        outs = [head(image, part) for head, part in
                zip(self.members, torch.split(text, self.dims, dim=-1))]
        return {k: torch.stack([o[k] for o in outs], dim=1) for k in outs[0]}


def _per_part(logits: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]] | None:
    """PartHeads' stacked logits as one dict per head; None for a single head's logits."""
    if logits["hate"].dim() == 1:
        return None
    return [{k: v[:, i] for k, v in logits.items()} for i in range(logits["hate"].shape[1])]


def scores_from_logits(logits: dict[str, torch.Tensor], empty: str) -> dict[str, torch.Tensor]:
    """Probabilities in LABELS order for every task, the empty label made consistent (for
    PartHeads, the mean of its heads' probabilities: each is consistent, so is their mean)."""
    parts = _per_part(logits)
    if parts is not None:
        each = [scores_from_logits(p, empty) for p in parts]
        return {k: torch.stack([e[k] for e in each]).mean(0) for k in each[0]}
    p_hate = torch.sigmoid(logits["hate"])
    out = {"hate": torch.stack([1 - p_hate, p_hate], dim=-1)}
    for task, lg in logits.items():
        if task == "hate":
            continue
        if empty == "gate":
            gate = torch.sigmoid(lg[:, :1])
            real = gate * torch.sigmoid(lg[:, 1:])
            out[task] = torch.cat([1 - gate, real], dim=-1)
        else:
            p = torch.sigmoid(lg)
            capped = torch.minimum(p[:, :1], 1 - p[:, 1:].max(dim=-1, keepdim=True).values)
            out[task] = torch.cat([capped, p[:, 1:]], dim=-1)
    return out


def loss_from_logits(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                     empty: str, totals: dict[str, int] | None = None) -> torch.Tensor:
    """Sum of the per-task binary cross-entropies (`targets` are multi-hot in LABELS order),
    each the mean over the batch.

    `totals` is for a process that holds one share of a batch (DDP): the whole batch's size
    ("n") and, per task, how many of its memes carry a real label. Each mean is then taken over
    the whole batch's count, so the shares' losses add up to the whole batch's loss exactly
    (`batch_totals` gives them). For PartHeads, the sum of its heads' losses.
    """
    parts = _per_part(logits)
    if parts is not None:
        return sum(loss_from_logits(p, targets, empty, totals) for p in parts)
    bce = F.binary_cross_entropy_with_logits
    n = totals["n"] if totals else len(targets["hate"])
    loss = bce(logits["hate"], targets["hate"][:, 1], reduction="sum") / n
    for task, lg in logits.items():
        if task == "hate":
            continue
        y = targets[task]
        if empty == "gate":
            nonempty = 1 - y[:, 0]
            loss = loss + bce(lg[:, 0], nonempty, reduction="sum") / n
            # The conditional scores are P(label | some label): learn them on memes that
            # carry a label of this task only.
            mask = nonempty.bool()
            labelled = totals[task] if totals else int(mask.sum())
            if labelled:
                loss = loss + (bce(lg[mask, 1:], y[mask, 1:], reduction="sum")
                               / (labelled * (lg.shape[1] - 1)))
        else:
            loss = loss + bce(lg, y, reduction="sum") / (n * lg.shape[1])
    return loss


def batch_totals(targets: dict[str, torch.Tensor]) -> dict[str, int]:
    """The counts `loss_from_logits` divides by, for a whole batch's targets."""
    totals = {"n": len(targets["hate"])}
    for task, y in targets.items():
        if task != "hate":
            totals[task] = int((1 - y[:, 0]).bool().sum())  # as loss_from_logits masks
    return totals


class MemeModel(nn.Module):
    """FusionHead, plus the encoders themselves when they are fine-tuned."""

    def __init__(self, cfg: ModelConfig, image_encoder: nn.Module | None = None,
                 text_encoder: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.head = PartHeads(cfg) if cfg.per_part_heads else FusionHead(cfg)
        self.image_encoder = image_encoder if cfg.finetune_image else None
        self.text_encoder = text_encoder if cfg.finetune_text else None

    def forward(self, image=None, text=None) -> dict[str, torch.Tensor]:
        """`image`/`text` are features, or pixels/token dicts for a fine-tuned encoder."""
        if self.image_encoder is not None and image is not None:
            image = self.image_encoder(image)
        if self.text_encoder is not None and text is not None:
            text = self.text_encoder(text)
        return self.head(image, text)

    def scores(self, logits):
        return scores_from_logits(logits, self.cfg.empty)

    def loss(self, logits, targets, totals=None):
        return loss_from_logits(logits, targets, self.cfg.empty, totals)


def save_checkpoint(path: str | os.PathLike, model: MemeModel, **extra) -> None:
    """Weights, the config that rebuilds them, and whatever else the caller keeps (atomically)."""
    # atomic_open: a unique temp beside `path`, removed if torch.save fails (a full disk).
    with atomic_open(path, "wb") as f:
        torch.save({"config": dataclasses.asdict(model.cfg), "model": model.state_dict(), **extra},
                   f)


def build_model(cfg: ModelConfig) -> MemeModel:
    """The model for `cfg`, with the encoders that will be fine-tuned made by name."""
    image = text = None
    if cfg.finetune_image or cfg.finetune_text:
        from .encoders import create_image_encoder, create_text_encoder

        image = create_image_encoder(cfg.image_encoder) if cfg.finetune_image else None
        text = create_text_encoder(cfg.text_encoder) if cfg.finetune_text else None
    return MemeModel(cfg, image, text)


# What a head's shape and meaning depend on: a head is only reused where all of these agree.
HEAD_FIELDS = ("tasks", "image_encoder", "text_encoder", "image_dim", "text_dim", "fusion", "empty",
               "hidden", "text_part_dims", "text_join")


def load_head(model: MemeModel, path: str | os.PathLike, member: int = 0) -> None:
    """Start `model.head` from the head of the checkpoint at `path` (of its `member`-th bagged
    model: fold `member`'s, 0 the first), encoders untouched.

    This is the first half of LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
    Features"): fine-tuning an encoder under a random head lets the head's early gradients
    distort the pretrained features; a head trained on the frozen features first avoids that.
    """
    from .encoders import same_image_spec, same_text_spec

    ckpt = _read_checkpoint(path, "cpu")
    theirs = ModelConfig(**ckpt["config"])
    # A run written before train.py stored bt:PATH, timm:NAME=PATH and a local hf:DIR, clip:DIR
    # absolute keeps the path as typed: the same weights, written another way.
    same = {"image_encoder": same_image_spec, "text_encoder": same_text_spec}
    differ = [f for f in HEAD_FIELDS if not (
        same[f](getattr(theirs, f), getattr(model.cfg, f)) if f in same
        else getattr(theirs, f) == getattr(model.cfg, f))]
    if differ:
        detail = ", ".join(f"{f} {getattr(theirs, f)!r} there, {getattr(model.cfg, f)!r} here"
                           for f in differ)
        raise ValueError(f"{path}: its head does not fit this model: {detail}")
    members = [ckpt["model"], *(ckpt.get("members") or [])]
    if not 0 <= member < len(members) or not isinstance(members[member], dict):
        raise checkpoints.CheckpointError(f"{path}: has no bagged model {member} (it holds "
                                          f"{len(members)})")
    head = {k[len("head."):]: v for k, v in members[member].items() if k.startswith("head.")}
    try:
        model.head.load_state_dict(head)
    except RuntimeError as e:
        raise checkpoints.CheckpointError(
            f"{path}: its head weights do not fit: {load_problem(e)}") from None


def load_problem(error: Exception) -> str:
    """What `load_state_dict`'s error says is wrong: its first line only says where
    ("Error(s) in loading state_dict for MemeModel:"); the first problem is on the next."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    return clip(lines[0] if lines else type(error).__name__)


def _read_checkpoint(path: str | os.PathLike, map_location) -> dict:
    ckpt = checkpoints.load_dict(path, ("config", "model"), map_location)
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["model"], dict):
        raise checkpoints.CheckpointError(f"{path}: not a hateful_memes checkpoint "
                                          "(config or model is not a dict)")
    try:
        ModelConfig(**ckpt["config"])
    except (TypeError, ValueError) as e:
        raise checkpoints.CheckpointError(f"{path}: its model config is not valid: {e}") from None
    return ckpt


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> tuple[MemeModel, dict]:
    """Rebuild the model from a checkpoint alone; returns (model in eval mode, the checkpoint)."""
    ckpt = _read_checkpoint(path, map_location)
    model = build_model(ModelConfig(**ckpt["config"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise checkpoints.CheckpointError(
            f"{path}: its weights do not fit the model its config describes: "
            f"{load_problem(e)}") from None
    model.eval()
    return model, ckpt
