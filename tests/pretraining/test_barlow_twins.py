import socket

import numpy as np
import pytest
import timm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from hateful_memes.pretraining.barlow_twins import (BN_EPS, BarlowTwins, BarlowTwinsLoss,
                                                    GlobalBatchNorm, barlow_twins_loss,
                                                    convert_sync_batchnorm, off_diagonal,
                                                    projector_from_spec)

LAMBD = 0.0051


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> bool:
    """Equal up to float32 summation order, relative to the tensor's size."""
    return bool((a.double() - b.double()).norm() <= rel * b.double().norm() + 1e-12)


def reference_loss(z1: np.ndarray, z2: np.ndarray, lambd: float) -> float:
    """The paper's formula, written out with loops in float64."""
    n, d = z1.shape
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + BN_EPS)
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + BN_EPS)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c_ij) ** 2 if i == j else lambd * c_ij ** 2
    return loss


def decorrelated(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """(n, d) with zero-mean, unit-variance, mutually uncorrelated columns."""
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))  # orthonormal columns, still zero-mean
    return q * n ** 0.5


def test_off_diagonal_is_every_element_but_the_diagonal():
    x = torch.arange(25.0).view(5, 5)
    mask = ~torch.eye(5, dtype=torch.bool)
    assert torch.equal(off_diagonal(x), x[mask])
    with pytest.raises(ValueError, match="square"):
        off_diagonal(torch.zeros(2, 3))


def test_loss_matches_the_formula_written_out():
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(12, 6, generator=g) * 3 + 1
    z2 = z1 @ torch.randn(6, 6, generator=g) + 0.5 * torch.randn(12, 6, generator=g)
    for lambd in (LAMBD, 0.5):
        expected = reference_loss(z1.double().numpy(), z2.double().numpy(), lambd)
        assert barlow_twins_loss(z1, z2, lambd).item() == pytest.approx(expected, rel=1e-5)
        assert BarlowTwinsLoss(lambd)(z1, z2).item() == pytest.approx(expected, rel=1e-5)


def test_loss_is_invariant_to_a_positive_affine_change_of_each_dimension():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g)
    z2 = z2 + z1
    scale = torch.rand(2, 8, generator=g) * 5 + 0.5
    shift = torch.randn(2, 8, generator=g) * 10
    loss = barlow_twins_loss(z1, z2)
    moved = barlow_twins_loss(z1 * scale[0] + shift[0], z2 * scale[1] + shift[1])
    assert moved.item() == pytest.approx(loss.item(), rel=1e-4)
    # ... and the same permutation of the batch of both views changes nothing either
    perm = torch.randperm(32, generator=g)
    assert barlow_twins_loss(z1[perm], z2[perm]).item() == pytest.approx(loss.item(), rel=1e-5)
    # but a negative scale does: it flips the sign of a correlation that should be +1
    flipped = z2.clone()
    flipped[:, 0] *= -1
    assert barlow_twins_loss(z1, flipped).item() > loss.item() + 1


def test_loss_is_minimal_for_identical_decorrelated_views():
    n, d = 64, 8
    z = decorrelated(n, d).float()
    best = barlow_twins_loss(z, z).item()
    # c = diag(1 / (1 + eps)): only the batch norm's eps keeps it off 0
    assert best == pytest.approx(d * (1 - 1 / (1 + BN_EPS)) ** 2, abs=1e-9)
    noisy = z + 0.3 * torch.randn(n, d, generator=torch.Generator().manual_seed(3))
    other = decorrelated(n, d, seed=4).float()
    for z2 in (noisy, other, z[torch.randperm(n)]):
        assert barlow_twins_loss(z, z2).item() > best + 1e-3
    # perfectly correlated but redundant dimensions: every off-diagonal c is 1
    redundant = z[:, :1].repeat(1, d)
    expected = LAMBD * d * (d - 1) / (1 + BN_EPS) ** 2 + d * (1 - 1 / (1 + BN_EPS)) ** 2
    assert barlow_twins_loss(redundant, redundant).item() == pytest.approx(expected, rel=1e-5)
    # the loss is a sum of squares
    assert barlow_twins_loss(torch.randn(16, d), torch.randn(16, d)).item() >= 0


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        barlow_twins_loss(torch.zeros(4, 3), torch.zeros(4, 2))


def test_projector_is_the_papers():
    projector = projector_from_spec(16, "64-32-8")
    kinds = [type(m) for m in projector]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU,
                     nn.Linear]
    linears = [m for m in projector if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 64), (64, 32), (32, 8)]
    assert all(m.bias is None for m in linears)
    assert projector(torch.randn(4, 16)).shape == (4, 8)
    assert [type(m) for m in projector_from_spec(16, "8")] == [nn.Linear]
    for bad in ("", "64-", "64-x", "0-8", "-8"):
        with pytest.raises(ValueError, match="projector"):
            projector_from_spec(16, bad)


def test_model_loss_is_the_loss_of_its_projected_embeddings():
    torch.manual_seed(0)
    model = BarlowTwins("test_resnet", "32-16").train()
    y1, y2 = torch.randn(2, 6, 3, 32, 32)
    loss = model(y1, y2)
    torch.manual_seed(0)
    twin = BarlowTwins("test_resnet", "32-16").train()
    z1 = twin.projector(twin.backbone(y1))
    z2 = twin.projector(twin.backbone(y2))
    assert loss.item() == pytest.approx(barlow_twins_loss(z1, z2).item(), rel=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_projector_takes_the_width_of_a_hidden_head():
    # MobileNetV3 pools to its head's hidden size, not num_features
    model = BarlowTwins("mobilenetv3_small_050", "8").eval()
    assert model.projector[0].in_features == model.backbone(torch.randn(1, 3, 32, 32)).shape[1]


def test_global_batchnorm_is_batchnorm_in_one_process():
    bn = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
    bn[0].weight.data.uniform_(0.5, 2)
    converted = convert_sync_batchnorm(bn)
    assert isinstance(converted[0], GlobalBatchNorm)
    assert converted[0].weight is bn[0].weight  # the same parameters, so the same state_dict
    x = torch.randn(4, 3, 5, 5)
    reference = nn.BatchNorm2d(3)
    reference.load_state_dict(bn[0].state_dict())
    assert torch.allclose(converted[0](x), reference(x))
    assert torch.allclose(converted[0].running_var, reference.running_var)


def test_timm_norm_act_keeps_its_activation():
    model = timm.create_model("test_efficientnet", num_classes=0)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    expected = model(x)
    converted = convert_sync_batchnorm(model).eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    assert torch.allclose(converted(x), expected, atol=1e-6)


# --- two processes --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, path: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        data = torch.load(path)
        model = BarlowTwins("test_resnet", data["projector"])
        model.load_state_dict(data["state"])
        ddp = nn.parallel.DistributedDataParallel(convert_sync_batchnorm(model))
        half = data["y1"].shape[0] // world
        rows = slice(rank * half, (rank + 1) * half)
        loss = ddp(data["y1"][rows], data["y2"][rows])
        loss.backward()
        grads = {k: p.grad for k, p in model.named_parameters()}
        torch.save({"loss": loss.detach(), "grads": grads, "buffers": dict(model.named_buffers())},
                   f"{path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_processes_with_half_a_batch_each_equal_one_process_with_all(tmp_path):
    torch.manual_seed(0)
    model = BarlowTwins("test_resnet", "32-16").train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    y1, y2 = torch.randn(2, 8, 3, 32, 32)
    path = str(tmp_path / "batch.pt")
    torch.save({"state": state, "projector": "32-16", "y1": y1, "y2": y2}, path)

    loss = model(y1, y2)
    loss.backward()

    mp.spawn(_worker, args=(2, _free_port(), path), nprocs=2, join=True)
    results = [torch.load(f"{path}.{rank}") for rank in range(2)]
    for r in results:
        # Every process computes the loss of the whole batch from all-reduced statistics.
        assert r["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
        # Gradients: the all-reduces are differentiable, their backward sums over the 2
        # processes, so each process back-propagates d(2 * loss) through its half of the
        # batch; DDP then averages over the 2 processes: 2 * (1/2) = a factor of exactly 1.
        # (With the paper's non-differentiable all_reduce the factor would be 1/2.)
        for name, p in model.named_parameters():
            assert close(r["grads"][name], p.grad), name
        # the batch norm running statistics are those of the whole batch too
        for name, b in model.named_buffers():
            assert close(r["buffers"][name], b), name


def test_a_bare_backbone_without_its_checkpoint_says_how_to_name_it(tmp_path):
    from hateful_memes.pretraining.barlow_twins import load_backbone
    path = tmp_path / "backbone.pth"
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict(), path)
    with pytest.raises(ValueError, match=r"backbone\.pth: a bare backbone state_dict.*"
                                         r"timm:NAME=PATH"):
        load_backbone(path)
    model, _ = load_backbone(path, backbone="resnet18")  # named, as timm:resnet18=PATH does
    assert model.num_features == 512
