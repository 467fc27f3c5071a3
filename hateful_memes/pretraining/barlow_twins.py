"""Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230): the loss, the projector and the model.

Two distorted views y1, y2 of a batch go through the same backbone and projector; each
embedding dimension of z1, z2 is normalised over the batch and the cross-correlation

    c = z1_norm.T @ z2_norm / N

is pushed towards the identity: `sum((1 - diag(c))^2) + lambd * sum(offdiag(c)^2)`.

Under torch.distributed every batch statistic is taken over the whole batch of all
processes, so the loss on each process equals the single-process loss on the whole batch:
the normalisation uses all-reduced moments and c is all-reduced (summed) after dividing
by the global N, as in the paper's code. The all-reduces here are differentiable (their
backward sums the gradient over the processes): each of the W processes then
back-propagates d(W * loss) through its share of the batch, and DDP's averaging of the
parameter gradients divides by W, so the gradients equal the single-process ones.
(The paper's in-place `all_reduce` is not differentiable; there each process only sees
its own share of the gradient and DDP's average is 1/W of it.)

Batch norm layers inside the backbone and the projector need the same whole-batch
statistics: `convert_sync_batchnorm` uses timm's SyncBatchNorm conversion on GPUs and
`GlobalBatchNorm`, which also runs on CPUs (gloo), elsewhere.

`load_backbone` reads the pretrained backbone back from what cli/pretrain.py wrote; it lives
here, beside the model, so that the encoders (models/encoders.py) need not import a command.
"""
from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
import torch.distributed as dist
from timm.layers import BatchNormAct2d
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..runtime import checkpoints

# What cli/pretrain.py writes into its output folder: the whole state, and the backbone alone.
CHECKPOINT = "checkpoint.pt"
BACKBONE = "backbone.pth"
# The default of BatchNorm1d, which the paper uses to normalise z.
BN_EPS = 1e-5


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes, whose gradient is the sum over processes of the gradients: every
    process's loss depends on every process's share. (torch.distributed.nn's is deprecated.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over processes, differentiably; the identity outside torch.distributed."""
    if world_size() == 1:
        return x
    return _AllReduceSum.apply(x)


def _moments(x: torch.Tensor, dims: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean and biased variance over `dims` of the whole batch of all processes, and its
    count. Two passes (mean first) rather than E[x^2] - E[x]^2, which cancels badly."""
    count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
    sums = _all_reduce_sum(torch.cat([x.sum(dims), count]))
    n = sums[-1].detach()
    mean = sums[:-1] / n
    shape = [1, -1] + [1] * (x.dim() - 2)
    centred = x - mean.view(shape)
    var = _all_reduce_sum((centred * centred).sum(dims)) / n
    return mean, var, n


def batch_normalise(z: torch.Tensor, eps: float = BN_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Each dimension of z (N, D) to zero mean and unit variance over the (global) batch,
    exactly as `BatchNorm1d(D, affine=False)` in training mode; returns it and the global N."""
    mean, var, n = _moments(z, [0])
    return (z - mean) * torch.rsqrt(var + eps), n


def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """The off-diagonal elements of a square matrix, flattened (the paper's trick)."""
    n, m = x.shape
    if n != m:
        raise ValueError(f"off_diagonal needs a square matrix, got {n}x{m}")
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051) -> torch.Tensor:
    """The Barlow Twins loss of two batches of embeddings (N, D), computed in float32.

    Under torch.distributed, z1/z2 are this process's share and the result is the loss of
    the whole batch of all processes (see the module docstring)."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must be (N, D) of one shape, got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")
    # c is a sum over the batch of products of unit-variance values: half precision loses
    # the small off-diagonal terms that the loss is about.
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z1_norm, n = batch_normalise(z1.float())
        z2_norm, _ = batch_normalise(z2.float())
        c = _all_reduce_sum(z1_norm.T @ z2_norm / n)
        on_diag = (torch.diagonal(c) - 1).pow(2).sum()
        off_diag = off_diagonal(c).pow(2).sum()
        return on_diag + lambd * off_diag


class BarlowTwinsLoss(nn.Module):
    def __init__(self, lambd: float = 0.0051):
        super().__init__()
        self.lambd = lambd

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return barlow_twins_loss(z1, z2, self.lambd)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"


def parse_projector(spec: str) -> list[int]:
    """'8192-8192-8192' -> [8192, 8192, 8192]."""
    try:
        sizes = [int(s) for s in spec.split("-")]
    except ValueError:
        sizes = []
    if not sizes or any(s <= 0 for s in sizes):
        raise ValueError(f"projector {spec!r}: expected layer sizes joined by '-', "
                         "such as '8192-8192-8192'")
    return sizes


def projector_from_spec(in_dim: int, spec: str) -> nn.Sequential:
    """The paper's projector: Linear (no bias) -> BatchNorm -> ReLU between layers, and a
    last Linear without bias (the loss normalises its output)."""
    sizes = [in_dim] + parse_projector(spec)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 2):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=False))
        layers.append(nn.BatchNorm1d(sizes[i + 1]))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
    return nn.Sequential(*layers)


def backbone_dim(backbone: nn.Module) -> int:
    """Width of a timm backbone's pooled output (created with num_classes=0). Models with a
    hidden head (MobileNetV3...) return head_hidden_size, not num_features."""
    return getattr(backbone, "head_hidden_size", None) or backbone.num_features


class BarlowTwins(nn.Module):
    """timm backbone (num_classes=0) + projector; forward(y1, y2) returns the loss."""

    def __init__(self, backbone: str | nn.Module, projector: str = "8192-8192-8192",
                 lambd: float = 0.0051, pretrained: bool = False):
        super().__init__()
        if isinstance(backbone, str):
            backbone = timm.create_model(backbone, pretrained=pretrained, num_classes=0)
        self.backbone = backbone
        self.projector = projector_from_spec(backbone_dim(backbone), projector)
        self.loss = BarlowTwinsLoss(lambd)

    def forward(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        z1 = self.projector(self.backbone(y1))
        z2 = self.projector(self.backbone(y2))
        return self.loss(z1, z2)


class GlobalBatchNorm(_BatchNorm):
    """Batch norm over the batch of all processes, on any device and backend (torch's
    SyncBatchNorm only runs on GPUs). Outside torch.distributed, or in eval mode, it is a
    plain BatchNorm. `act`/`drop` carry over timm's BatchNormAct2d."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.drop: nn.Module = nn.Identity()
        self.act: nn.Module = nn.Identity()

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return self.act(self.drop(super().forward(x)))
        self._check_input_dim(x)
        mean, var, n = _moments(x, [0, *range(2, x.dim())])
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = (self.momentum if self.momentum is not None
                        else 1.0 / float(self.num_batches_tracked))
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), momentum)
                # the running variance is the unbiased one, as in BatchNorm
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), momentum)
        shape = [1, -1] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return self.act(self.drop(y))


def _to_global_batchnorm(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum,
                              module.affine, module.track_running_stats)
        if isinstance(module, BatchNormAct2d):
            out.act, out.drop = module.act, module.drop
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _to_global_batchnorm(child))
    return out


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every batch norm layer to one that uses whole-batch statistics across processes. The
    state_dict keys do not change, so checkpoints load either way."""
    if any(p.is_cuda for p in module.parameters()):
        return timm.layers.convert_sync_batchnorm(module)
    return _to_global_batchnorm(module)


def load_backbone(path: str | os.PathLike, backbone: str | None = None) -> tuple[nn.Module, dict]:
    """The pretrained timm backbone (num_classes=0, eval mode) and the run's config, from
    OUT/checkpoint.pt (or OUT itself), or from OUT/backbone.pth (the name then comes from
    a checkpoint.pt beside it or from `backbone`)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    state = checkpoints.load(path, what="Barlow Twins checkpoint")
    if not isinstance(state, dict):
        raise checkpoints.CheckpointError(f"{path}: not a Barlow Twins checkpoint or backbone "
                                          f"state_dict (holds a {type(state).__name__})")
    if "model" in state and "config" in state:
        config = state["config"]
        prefix = "backbone."
        weights = {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
    else:
        weights, config = state, {}
        beside = path.parent / CHECKPOINT
        if backbone is None and beside.is_file():
            config = checkpoints.load_dict(beside, ("config",),
                                           what="Barlow Twins checkpoint")["config"]
    name = backbone or config.get("backbone")
    if not name:
        # bt:PATH has no place for a name; timm:NAME=PATH has (models.encoders).
        raise ValueError(f"{path}: a bare backbone state_dict, with no {CHECKPOINT} beside it "
                         "to name its timm architecture; give it as timm:NAME=PATH")
    model = timm.create_model(name, pretrained=False, num_classes=0)
    model.load_state_dict(weights)
    return model.eval(), config
