import numpy as np
import pytest
import torch

from hateful_memes import labels as L
from hateful_memes.models.model import (Dropout, FusionHead, MemeModel, ModelConfig, PartHeads,
                                        batch_totals, load_checkpoint, load_head,
                                        loss_from_logits, save_checkpoint, scores_from_logits)
from hateful_memes.runtime.checkpoints import CheckpointError


def _model(**kw):
    torch.manual_seed(0)
    cfg = ModelConfig(**{"tasks": ("pc", "attack"), "image_dim": 12, "text_dim": 8, "hidden": 16,
                         **kw})
    return MemeModel(cfg)


@pytest.mark.parametrize("fusion", ["concat", "interact"])
@pytest.mark.parametrize("empty", ["gate", "independent"])
def test_scores_have_task_shapes_and_are_probabilities(fusion, empty):
    model = _model(fusion=fusion, empty=empty).eval()
    scores = model.scores(model(torch.randn(5, 12), torch.randn(5, 8)))
    assert scores["hate"].shape == (5, 2)
    assert scores["pc"].shape == (5, len(L.PC)) and scores["attack"].shape == (5, len(L.ATTACK))
    for s in scores.values():
        assert torch.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()
    assert torch.allclose(scores["hate"].sum(-1), torch.ones(5))


@pytest.mark.parametrize("empty", ["gate", "independent"])
def test_empty_label_never_passes_with_a_real_one(empty):
    # Extreme logits push every score towards 0 or 1: the worst case for a conflict.
    g = torch.Generator().manual_seed(1)
    logits = {"hate": torch.randn(500, generator=g) * 8,
              "pc": torch.randn(500, len(L.PC), generator=g) * 8,
              "attack": torch.randn(500, len(L.ATTACK), generator=g) * 8}
    scores = scores_from_logits(logits, empty)
    for task in ("pc", "attack"):
        s = scores[task].numpy()
        assert not ((s[:, 0] > 0.5) & (s[:, 1:] > 0.5).any(axis=1)).any()


def test_gate_loss_ignores_conditional_logits_of_empty_memes():
    logits = {"hate": torch.zeros(2), "pc": torch.zeros(2, len(L.PC), requires_grad=True)}
    targets = {"hate": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
               "pc": torch.from_numpy(L.encode_many("pc", [["pc_empty"], ["race"]]))}
    loss_from_logits(logits, targets, "gate").backward()
    grad = logits["pc"].grad
    assert torch.all(grad[0, 1:] == 0) and torch.any(grad[1, 1:] != 0)
    assert grad[0, 0] != 0  # the gate still learns from the empty meme


@pytest.mark.parametrize("empty", ["gate", "independent"])
def test_shares_of_a_batch_add_up_to_its_loss_with_the_whole_batch_totals(empty):
    """What DDP relies on: however a batch is split, each share's loss over the whole batch's
    counts adds up to the batch's mean loss (a share may hold no labelled meme at all)."""
    g = torch.Generator().manual_seed(3)
    n = 12
    logits = {"hate": torch.randn(n, generator=g), "pc": torch.randn(n, len(L.PC), generator=g),
              "attack": torch.randn(n, len(L.ATTACK), generator=g)}
    hateful = torch.arange(n) % 3 == 0  # memes 0, 3, 6, 9
    targets = {"hate": torch.stack([~hateful, hateful], 1).float()}
    for task in ("pc", "attack"):
        y = torch.zeros(n, len(L.LABELS[task]))
        y[~hateful, 0] = 1
        y[hateful, 1 + torch.arange(int(hateful.sum())) % (y.shape[1] - 1)] = 1
        targets[task] = y
    whole = loss_from_logits(logits, targets, empty)
    totals = batch_totals(targets)
    assert totals == {"n": n, "pc": 4, "attack": 4}
    for share in ([0, 1, 2], [1, 2, 4, 5, 7]):  # the second holds no labelled meme
        rest = [i for i in range(n) if i not in share]
        parts = [loss_from_logits({k: v[s] for k, v in logits.items()},
                                  {k: v[s] for k, v in targets.items()}, empty, totals)
                 for s in (share, rest)]
        assert float(sum(parts)) == pytest.approx(float(whole), rel=1e-6)


def test_text_only_and_image_only_models():
    assert _model(image_dim=0).eval()(None, torch.randn(3, 8))["pc"].shape == (3, len(L.PC))
    assert _model(text_dim=0).eval()(torch.randn(3, 12), None)["attack"].shape == (3, len(L.ATTACK))
    with pytest.raises(ValueError):
        _model()(torch.randn(3, 12), None)
    with pytest.raises(ValueError):
        ModelConfig(image_dim=0, text_dim=0)
    with pytest.raises(ValueError):
        ModelConfig(text_dim=4, fusion="sum")


def test_checkpoint_alone_rebuilds_identical_predictions(tmp_path):
    model = _model(tasks=("attack",), text_encoder="none", image_encoder="none").eval()
    x, y = torch.randn(4, 12), torch.randn(4, 8)
    save_checkpoint(tmp_path / "c.pt", model, thresholds={"attack": [0.5] * 8})
    again, ckpt = load_checkpoint(tmp_path / "c.pt")
    assert again.cfg == model.cfg and ckpt["thresholds"]["attack"] == [0.5] * 8
    with torch.no_grad():
        a, b = model.scores(model(x, y)), again.scores(again(x, y))
    for task in a:
        np.testing.assert_array_equal(a[task].numpy(), b[task].numpy())


# --- one head per part of a joined text encoder (minilm+mpnet) -------------------------------

def test_part_heads_average_what_each_head_gives_on_its_own_part():
    """Each head reads the image and its own slice of the text features: the scores are the
    mean of the heads' scores, the loss the sum of their losses, and no head's gradient
    depends on another's (so training them together is training each alone)."""
    joined = _model(text_dim=8, text_part_dims=(3, 5)).eval()
    assert isinstance(joined.head, PartHeads) and len(joined.head.members) == 2
    image, text = torch.randn(6, 12), torch.randn(6, 8)
    g = torch.Generator().manual_seed(0)
    targets = {"hate": torch.eye(2)[torch.randint(0, 2, (6,), generator=g)],
               "pc": torch.eye(len(L.PC))[torch.randint(0, len(L.PC), (6,), generator=g)],
               "attack": torch.eye(len(L.ATTACK))[torch.randint(0, 8, (6,), generator=g)]}
    scores, loss = joined.scores(joined(image, text)), joined.loss(joined(image, text), targets)
    own = [head(image, part) for head, part in zip(joined.head.members, text.split([3, 5], -1))]
    each = [scores_from_logits(o, "gate") for o in own]
    for task in scores:
        assert torch.allclose(scores[task], (each[0][task] + each[1][task]) / 2)
    parts_loss = [loss_from_logits(o, targets, "gate") for o in own]
    assert torch.allclose(loss, parts_loss[0] + parts_loss[1])
    loss.backward()
    first = [p.grad.clone() for p in joined.head.members[0].parameters()]
    joined.zero_grad()
    loss_from_logits(joined.head.members[0](image, text[:, :3]), targets, "gate").backward()
    for a, p in zip(first, joined.head.members[0].parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_averaged_part_heads_never_put_an_empty_label_beside_a_real_one():
    g = torch.Generator().manual_seed(2)
    logits = {"hate": torch.randn(500, 3, generator=g) * 8,
              "attack": torch.randn(500, 3, len(L.ATTACK), generator=g) * 8}
    s = scores_from_logits(logits, "gate")["attack"].numpy()
    assert s.shape == (500, len(L.ATTACK))
    assert not ((s[:, 0] > 0.5) & (s[:, 1:] > 0.5).any(axis=1)).any()
    assert ((s[:, 0] > 0.5) | (s[:, 1:] > 0.5).any(axis=1)).mean() > 0.5  # not all undecided


def test_part_heads_round_trip_and_their_config_is_checked(tmp_path):
    model = _model(tasks=("pc",), text_dim=8, text_part_dims=(3, 5)).eval()
    save_checkpoint(tmp_path / "c.pt", model)
    again, _ = load_checkpoint(tmp_path / "c.pt")
    assert again.cfg == model.cfg and isinstance(again.head, PartHeads)
    x, y = torch.randn(4, 12), torch.randn(4, 8)
    with torch.no_grad():
        assert torch.equal(model.scores(model(x, y))["pc"], again.scores(again(x, y))["pc"])
    assert isinstance(_model(text_part_dims=(3, 5), text_join="concat").head, FusionHead)
    with pytest.raises(ValueError, match=r"text_part_dims \(3, 4\) do not add up to text_dim 8"):
        _model(text_part_dims=(3, 4))
    with pytest.raises(ValueError, match="text_join must be one of"):
        _model(text_join="mean")


def test_load_checkpoint_refuses_foreign_files(tmp_path):
    torch.save({"weights": 1}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a hateful_memes checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


@pytest.mark.parametrize("field, value", [("hidden", "32"), ("hidden", 0), ("text_dim", 8.0),
                                          ("image_dim", True), ("dropout", "0.5")])
def test_a_checkpoint_config_of_the_wrong_type_is_named_not_a_torch_error(tmp_path, field,
                                                                          value):
    model = _model(tasks=("attack",), text_encoder="none", image_encoder="none")
    save_checkpoint(tmp_path / "c.pt", model)
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    ckpt["config"][field] = value
    torch.save(ckpt, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=f"c.pt: its model config is not valid: {field}"):
        load_checkpoint(tmp_path / "c.pt")


def test_weights_that_do_not_fit_are_named_by_their_first_problem(tmp_path):
    save_checkpoint(tmp_path / "c.pt", _model(hidden=8))
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    ckpt["config"]["hidden"] = 16
    torch.save(ckpt, tmp_path / "c.pt")
    # Not torch's first line, "Error(s) in loading state_dict for MemeModel:", which says none.
    with pytest.raises(CheckpointError, match=r"do not fit .*: size mismatch for head\."):
        load_checkpoint(tmp_path / "c.pt")


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_dropout_keeps_one_minus_p_and_preserves_the_mean(p):
    drop = Dropout(p).train()
    x = torch.ones(301, 333)  # an odd element count: the last 32-bit draw is half used
    y = drop(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - (1 - p)) < 0.005
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
    assert abs(y.mean().item() - 1) < 0.02


def test_dropout_is_seeded_identity_in_eval_and_masks_the_gradient():
    drop = Dropout(0.5)
    x = torch.randn(64, 40, requires_grad=True)
    torch.manual_seed(3)
    a = drop(x)
    torch.manual_seed(3)
    b = drop(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, drop(x))  # a new mask on the next call
    a.sum().backward()
    assert torch.equal(x.grad, (a != 0).float() * 2)
    assert drop.eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match="dropout"):
        Dropout(1.0)


def test_dropout_masks_are_independent_across_elements():
    torch.manual_seed(0)
    keep = (Dropout(0.5).train()(torch.ones(200_000)) != 0).float()
    # Neighbours come from the two halves of one 32-bit draw, or from consecutive draws.
    corr = np.corrcoef(keep[:-1].numpy(), keep[1:].numpy())[0, 1]
    assert abs(corr) < 0.01


def test_load_head_copies_the_head_and_refuses_other_features(tmp_path):
    source = _model()
    save_checkpoint(tmp_path / "c.pt", source)
    torch.manual_seed(1)
    target = MemeModel(source.cfg)
    assert not torch.equal(target.head.trunk[1].weight, source.head.trunk[1].weight)
    load_head(target, tmp_path / "c.pt")
    for (name, a), b in zip(source.head.state_dict().items(), target.head.state_dict().values()):
        assert torch.equal(a, b), name
    other = MemeModel(ModelConfig(**{**source.cfg.__dict__, "text_encoder": "hf:other"}))
    with pytest.raises(ValueError, match="text_encoder 'minilm' there, 'hf:other' here"):
        load_head(other, tmp_path / "c.pt")


def test_load_head_knows_the_encoder_file_of_an_older_run_however_written(tmp_path,
                                                                          monkeypatch):
    # train.py now keeps bt:PATH absolute; a run from before kept it as typed, and LP-FT from
    # it (--init-head) with the same file named absolute must go on.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bt").mkdir()
    (tmp_path / "bt" / "checkpoint.pt").touch()
    save_checkpoint(tmp_path / "c.pt", _model(image_encoder="bt:bt/checkpoint.pt"))
    load_head(_model(image_encoder=f"bt:{tmp_path / 'bt' / 'checkpoint.pt'}"), tmp_path / "c.pt")
    with pytest.raises(ValueError, match="image_encoder 'bt:bt/checkpoint.pt' there"):
        load_head(_model(image_encoder=f"bt:{tmp_path / 'other.pt'}"), tmp_path / "c.pt")


def test_load_head_knows_the_local_text_encoder_of_an_older_run_however_written(tmp_path,
                                                                                monkeypatch):
    # train.py now keeps a local hf:DIR absolute; a run from before kept it as typed.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bert").mkdir()
    save_checkpoint(tmp_path / "c.pt", _model(text_encoder="hf:bert@2+minilm"))
    load_head(_model(text_encoder=f"hf:{tmp_path / 'bert'}@2+minilm"), tmp_path / "c.pt")
    with pytest.raises(ValueError, match="text_encoder 'hf:bert@2\\+minilm' there"):
        load_head(_model(text_encoder=f"hf:{tmp_path / 'other'}@2+minilm"), tmp_path / "c.pt")


def test_load_head_takes_the_asked_bagged_member(tmp_path):
    first = _model()
    torch.manual_seed(2)
    second = MemeModel(first.cfg)
    save_checkpoint(tmp_path / "c.pt", first, members=[second.state_dict()])
    target = MemeModel(first.cfg)
    load_head(target, tmp_path / "c.pt", member=1)
    for (name, a), b in zip(second.head.state_dict().items(), target.head.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(CheckpointError, match="has no bagged model 2 \\(it holds 2\\)"):
        load_head(target, tmp_path / "c.pt", member=2)


def test_a_full_disk_keeps_the_old_checkpoint_and_leaves_no_temp(tmp_path, monkeypatch):
    import errno

    from hateful_memes.models import model as model_module
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _model(), note="old")

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model_module.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, _model(hidden=8), note="new")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert load_checkpoint(path)[1]["note"] == "old"
