import math

import pytest
import torch
from torch import nn

from hateful_memes.pretraining.lars import (LARS, END_LR_FRACTION, adjust_learning_rate,
                                            exclude_bias_and_norm, learning_rate, make_optimizer,
                                            param_groups)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2, bias=False))


def test_groups_split_weights_from_biases_and_norm_parameters():
    model = net()
    weights, biases = param_groups(model, weight_decay=0.1)
    assert {id(p) for p in weights["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert {id(p) for p in biases["params"]} == {id(model[0].bias), id(model[1].weight),
                                                 id(model[1].bias)}
    assert (weights["weight_decay"], biases["weight_decay"]) == (0.1, 0.0)
    assert all(exclude_bias_and_norm(p) for p in biases["params"])
    assert not any(exclude_bias_and_norm(p) for p in weights["params"])


def test_lars_step_follows_the_trust_ratio_and_spares_biases():
    model = net()
    wd, eta, lr = 0.01, 0.001, 0.5
    opt = make_optimizer(model, "lars", weight_decay=wd)
    opt.param_groups[0]["lr"] = opt.param_groups[1]["lr"] = lr
    for g in opt.param_groups:
        assert g["eta"] == eta and g["momentum"] == 0.9
    model(torch.randn(8, 4)).pow(2).sum().backward()
    before = {id(p): p.detach().clone() for p in model.parameters()}
    grads = {id(p): p.grad.clone() for p in model.parameters()}
    opt.step()
    for p in model.parameters():
        w, g = before[id(p)], grads[id(p)]
        if p.ndim == 1:  # no weight decay, no adaptation: plain SGD (momentum starts at 0)
            expected = w - lr * g
        else:
            d = g + wd * w
            expected = w - lr * (eta * w.norm() / d.norm()) * d
        assert torch.allclose(p.detach(), expected, atol=1e-7)
    # the update of every weight matrix is lr * eta of its norm, whatever its gradient
    for p in (model[0].weight, model[2].weight):
        step = (p.detach() - before[id(p)]).norm()
        assert step.item() == pytest.approx(lr * eta * before[id(p)].norm().item(), rel=1e-3)


def test_lars_momentum_and_zero_norm_guard():
    p = nn.Parameter(torch.zeros(2, 2))
    opt = LARS([p], lr=1.0, weight_decay=0.0, momentum=0.9)
    p.grad = torch.ones(2, 2)
    opt.step()  # ||w|| = 0: the trust ratio falls back to 1
    assert torch.allclose(p.detach(), -torch.ones(2, 2))
    p.grad = torch.zeros(2, 2)
    opt.step()  # ||update|| = 0: ratio 1 again; momentum carries 0.9 of the first step
    assert torch.allclose(p.detach(), -1.9 * torch.ones(2, 2))
    state = opt.state_dict()
    fresh = LARS([p], lr=1.0)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.state[p]["mu"], opt.state[p]["mu"])


def test_adamw_option_spares_biases_from_weight_decay():
    opt = make_optimizer(net(), "adamw", weight_decay=0.05)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    with pytest.raises(ValueError, match="sgd"):
        make_optimizer(net(), "sgd")


def test_schedule_warms_up_then_decays_by_a_cosine():
    steps, epochs, warmup, batch = 10, 20, 2, 512
    base = batch / 256
    lrs = [learning_rate(s, steps, epochs, warmup, batch) for s in range(steps * epochs)]
    assert lrs[0] == 0
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:21]))  # warm-up rises to the base
    assert lrs[20] == pytest.approx(base)
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))  # and then only falls
    halfway = 20 + (steps * epochs - 20) // 2
    assert lrs[halfway] == pytest.approx(base * (1 + END_LR_FRACTION) / 2)
    assert learning_rate(steps * epochs, steps, epochs, warmup, batch) == pytest.approx(
        base * END_LR_FRACTION)
    # the decay is a cosine: q = (1 + cos(pi t)) / 2 between base and end
    t = 0.3
    s = 20 + round(t * (steps * epochs - 20))
    q = 0.5 * (1 + math.cos(math.pi * (s - 20) / (steps * epochs - 20)))
    assert lrs[s] == pytest.approx(base * q + base * END_LR_FRACTION * (1 - q))


def test_adjust_sets_the_papers_two_rates_scaled_by_the_batch():
    opt = make_optimizer(net(), "lars")
    w, b = adjust_learning_rate(opt, step=10, steps_per_epoch=10, epochs=100,
                                warmup_epochs=1, batch_size=2048)
    assert (w, b) == (pytest.approx(0.2 * 8), pytest.approx(0.0048 * 8))
    assert [g["lr"] for g in opt.param_groups] == [w, b]
    # no warm-up at all is allowed (a short run)
    assert learning_rate(0, 5, 1, 0, 256) == pytest.approx(1.0)
