"""LARS and the learning-rate schedule of Barlow Twins (facebookresearch/barlowtwins).

LARS (You et al. 2017) scales each parameter's update by eta * ||w|| / ||g + wd * w||, so
that every layer moves by the same fraction of its weights whatever the size of its
gradient: what lets Barlow Twins train with large batches. As in the paper, biases and
norm parameters (the 1-d ones) get neither weight decay nor this adaptation, and their
own, smaller learning rate.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn, optim

# The paper's learning rates, for a batch of 256 (they scale linearly with the batch).
LR_WEIGHTS = 0.2
LR_BIASES = 0.0048
BASE_BATCH = 256
# The cosine decays to this fraction of the base learning rate.
END_LR_FRACTION = 0.001


def exclude_bias_and_norm(p: torch.Tensor) -> bool:
    return p.ndim == 1


class LARS(optim.Optimizer):
    def __init__(self, params: Iterable, lr: float, weight_decay: float = 0.0,
                 momentum: float = 0.9, eta: float = 0.001,
                 weight_decay_filter: bool = False, lars_adaptation_filter: bool = False):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta,
                        weight_decay_filter=weight_decay_filter,
                        lars_adaptation_filter=lars_adaptation_filter)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if dp is None:
                    continue
                if not g["weight_decay_filter"] or not exclude_bias_and_norm(p):
                    dp = dp.add(p, alpha=g["weight_decay"])
                if not g["lars_adaptation_filter"] or not exclude_bias_and_norm(p):
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.0,
                                    torch.where(update_norm > 0,
                                                g["eta"] * param_norm / update_norm, one),
                                    one)
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])
        return loss


def param_groups(model: nn.Module, weight_decay: float = 0.0) -> list[dict]:
    """[weights, biases and norm parameters]: the order `adjust_learning_rate` expects. The
    second group gets no weight decay (for LARS, its filters do the same)."""
    weights = [p for p in model.parameters() if p.requires_grad and not exclude_bias_and_norm(p)]
    biases = [p for p in model.parameters() if p.requires_grad and exclude_bias_and_norm(p)]
    return [{"params": weights, "weight_decay": weight_decay},
            {"params": biases, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, name: str = "lars",
                   weight_decay: float = 1.5e-6) -> optim.Optimizer:
    """LARS as in the paper, or AdamW; the learning rates are set by adjust_learning_rate."""
    groups = param_groups(model, weight_decay)
    if name == "lars":
        return LARS(groups, lr=0.0, weight_decay=weight_decay,
                    weight_decay_filter=True, lars_adaptation_filter=True)
    if name == "adamw":
        return optim.AdamW(groups, lr=0.0)
    raise ValueError(f"unknown optimizer {name!r}: expected 'lars' or 'adamw'")


def learning_rate(step: int, steps_per_epoch: int, epochs: int, warmup_epochs: float,
                  batch_size: int) -> float:
    """The factor of the paper's schedule at `step`: linear warm-up to batch_size / 256,
    then a cosine decay to 0.001 of it at the last step."""
    max_steps = epochs * steps_per_epoch
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    base_lr = batch_size / BASE_BATCH
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    step -= warmup_steps
    max_steps -= warmup_steps
    q = 0.5 * (1 + math.cos(math.pi * step / max(max_steps, 1)))
    end_lr = base_lr * END_LR_FRACTION
    return base_lr * q + end_lr * (1 - q)


def adjust_learning_rate(optimizer: optim.Optimizer, step: int, steps_per_epoch: int,
                         epochs: int, warmup_epochs: float, batch_size: int,
                         lr_weights: float = LR_WEIGHTS,
                         lr_biases: float = LR_BIASES) -> tuple[float, float]:
    """Set the two groups' learning rates for `step`; returns them (weights, biases)."""
    lr = learning_rate(step, steps_per_epoch, epochs, warmup_epochs, batch_size)
    optimizer.param_groups[0]["lr"] = lr * lr_weights
    optimizer.param_groups[1]["lr"] = lr * lr_biases
    return lr * lr_weights, lr * lr_biases
