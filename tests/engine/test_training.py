import json

import numpy as np
import pytest
import torch

from hateful_memes import labels as L
from hateful_memes.engine import training
from hateful_memes.engine.training import FitConfig, fit, predict_scores, resolve_device
from hateful_memes.features.inputs import Inputs
from hateful_memes.models.model import MemeModel, ModelConfig
from hateful_memes.runtime import distributed


def _data(n, seed):
    """Text features whose first coordinates carry the labels, so training has signal."""
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, 16)).astype(np.float32)
    hateful = x[:, 0] > 0
    pc = np.zeros((n, len(L.PC)), np.float32)
    attack = np.zeros((n, len(L.ATTACK)), np.float32)
    pc[~hateful, 0] = attack[~hateful, 0] = 1
    pc[hateful, 1 + (x[hateful, 1] > 0)] = 1
    attack[hateful, 1 + (x[hateful, 2] > 0)] = 1
    hate = np.stack([~hateful, hateful], 1).astype(np.float32)
    targets = {"hate": torch.from_numpy(hate), "pc": torch.from_numpy(pc),
               "attack": torch.from_numpy(attack)}
    return Inputs(None, torch.from_numpy(x)), targets


def _model(seed=0):
    torch.manual_seed(seed)
    return MemeModel(ModelConfig(tasks=("pc", "attack"), text_dim=16, hidden=16, dropout=0.1))


def _fit(run_dir, epochs=4, **kw):
    train, ttrain = _data(96, 0)
    dev, tdev = _data(48, 1)
    model = _model()
    state = fit(model, train, ttrain, dev, tdev,
                FitConfig(epochs=epochs, batch_size=16, lr=3e-3, seed=0), run_dir,
                progress=False, **kw)
    return model, state, dev


def test_fit_learns_writes_stats_and_keeps_the_best_epoch(tmp_path):
    model, state, dev = _fit(tmp_path, epochs=6)
    lines = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 7))
    aucs = [r["dev/roc_auc_micro"] for r in lines]
    assert state["best_epoch"] == int(np.argmax(aucs)) + 1
    assert max(aucs) > 0.8  # the labels are a function of the features
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    # The model handed back is the best epoch's, not the last one's.
    best = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k])


def test_same_seed_gives_identical_predictions(tmp_path):
    a, _, dev = _fit(tmp_path / "a")
    b, _, _ = _fit(tmp_path / "b")
    sa, sb = predict_scores(a, dev), predict_scores(b, dev)
    for task in sa:
        np.testing.assert_array_equal(sa[task], sb[task])


def test_resume_after_an_interrupted_epoch_matches_an_uninterrupted_run(tmp_path):
    full, _, dev = _fit(tmp_path / "full", epochs=5)

    def crash(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "cut", epochs=5, on_epoch_end=crash)
    assert len((tmp_path / "cut" / "stats.jsonl").read_text().splitlines()) == 2
    resumed, state, _ = _fit(tmp_path / "cut", epochs=5, resume=True)
    assert [r["epoch"] for r in state["history"]] == [1, 2, 3, 4, 5]
    sa, sb = predict_scores(full, dev), predict_scores(resumed, dev)
    for task in sa:
        np.testing.assert_array_equal(sa[task], sb[task])

    def losses(run):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (tmp_path / run / "stats.jsonl").read_text().splitlines()]

    assert losses("full") == losses("cut")


def test_resume_without_a_saved_state_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume"):
        _fit(tmp_path, resume=True)


def _full_disk_save(obj, f, *args, **kwargs):
    """torch.save that writes part of the file, then finds the disk full."""
    import errno
    f.write(b"PK\x03\x04 half a checkpoint")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_keeps_the_old_state_and_leaves_no_temp(tmp_path, monkeypatch):
    from hateful_memes.engine import training
    path = tmp_path / "last.pt"
    training._save_state(path, {"epoch": 1})
    monkeypatch.setattr(training.torch, "save", _full_disk_save)
    with pytest.raises(OSError, match="No space left"):
        training._save_state(path, {"epoch": 2})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert torch.load(path, weights_only=True) == {"epoch": 1}


# --- DDP: two processes, as torchrun starts them (gloo on CPU) ---------------------------


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exact_model():
    """No dropout: its masks are drawn per process, the rest of a step must match exactly."""
    torch.manual_seed(0)
    return MemeModel(ModelConfig(tasks=("pc", "attack"), text_dim=16, hidden=16, dropout=0.0))


# Batches of 96 memes: the last is ragged (7 % 2), another holds one meme (rank 1's share is
# empty), another has rank 1's share without a real label of any task.
def _batches_to_check(targets):
    empty = np.flatnonzero(targets["pc"][:, 0].numpy() == 1)
    labelled = np.flatnonzero(targets["pc"][:, 0].numpy() == 0)
    no_label_on_rank_1 = [int(v) for pair in zip(labelled[:3], empty[:3]) for v in pair]
    return [list(range(7)), [5], no_label_on_rank_1]


def _join(rank, world, port):
    import os
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)


def _step_worker(rank, world, port, out):
    from torch.nn.parallel import DistributedDataParallel

    from hateful_memes.engine.training import step_loss
    _join(rank, world, port)
    inputs, targets = _data(96, 0)
    results = []
    for idx in _batches_to_check(targets):
        model = _exact_model()
        net = DistributedDataParallel(model)
        loss = step_loss(net, model, inputs, targets, idx, rank, world)
        loss.backward()
        results.append((loss.item() / world,
                        {k: p.grad.clone() for k, p in model.named_parameters()}))
    torch.save(results, f"{out}.{rank}")
    distributed.finish()


def test_two_processes_with_a_share_each_give_the_whole_batch_loss_and_gradients(tmp_path):
    import torch.multiprocessing as mp

    from hateful_memes.engine.training import step_loss
    inputs, targets = _data(96, 0)
    out = tmp_path / "step"
    mp.spawn(_step_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    for b, idx in enumerate(_batches_to_check(targets)):
        model = _exact_model()
        loss = step_loss(model, model, inputs, targets, idx)
        loss.backward()
        # The parts of the loss add up to the batch's, and after DDP's all-reduce each
        # process holds the one-process gradient of the whole batch.
        assert ranks[0][b][0] + ranks[1][b][0] == pytest.approx(loss.item(), abs=1e-6)
        for name, p in model.named_parameters():
            for r in range(2):
                torch.testing.assert_close(ranks[r][b][1][name], p.grad, atol=1e-6, rtol=1e-5)


class _Interrupted(Exception):
    pass


def _fit_exact(run_dir, **kw):
    train, ttrain = _data(90, 0)  # 16 a batch: the last batch holds 10
    dev, tdev = _data(48, 1)
    model = _exact_model()
    state = fit(model, train, ttrain, dev, tdev,
                FitConfig(epochs=4, batch_size=16, lr=3e-3, seed=0), run_dir, progress=False,
                **kw)
    return model, state


def _fit_worker(rank, world, port, tmp):
    from pathlib import Path
    _join(rank, world, port)
    tmp = Path(tmp)
    model, state = _fit_exact(tmp / "two")

    def crash(epoch):
        if epoch == 2:
            raise _Interrupted

    try:
        _fit_exact(tmp / "cut", on_epoch_end=crash)
    except _Interrupted:
        torch.distributed.barrier()  # as a new torchrun would: rank 0 has written last.pt
    resumed, resumed_state = _fit_exact(tmp / "cut", resume=True)
    torch.save({"model": model.state_dict(), "state": state,
                "resumed": resumed.state_dict(), "resumed_state": resumed_state},
               tmp / f"result.{rank}")
    distributed.finish()


def test_fit_on_two_processes_matches_one_process_and_resumes(tmp_path):
    """DDP fit: each batch shared by 2 processes gives the one-process run (weights, dev
    metrics each epoch, best epoch) to float tolerance; rank 0 alone writes the run folder;
    an interrupted 2-process run resumes from last.pt to the same result."""
    import torch.multiprocessing as mp

    one, one_state = _fit_exact(tmp_path / "one")
    mp.spawn(_fit_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"result.{r}", weights_only=True) for r in range(2)]
    for r in ranks:
        assert r["state"]["best_epoch"] == one_state["best_epoch"]
        for k, v in one.state_dict().items():
            torch.testing.assert_close(r["model"][k], v, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(r["resumed"][k], r["model"][k], atol=1e-6, rtol=1e-5)
        for mine, theirs in zip(r["state"]["history"], one_state["history"]):
            for key in ("train_loss", "dev/loss", "dev/roc_auc_micro", "dev/f1_macro"):
                assert mine[key] == pytest.approx(theirs[key], abs=1e-5), key
        assert ([h["epoch"] for h in r["resumed_state"]["history"]]
                == [1, 2, 3, 4])
    stats = [json.loads(line) for line in (tmp_path / "two" / "stats.jsonl").read_text()
             .splitlines()]
    assert [s["epoch"] for s in stats] == [1, 2, 3, 4]  # one writer: no line twice
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "best.pt", "last.pt", "stats.jsonl", "tb"]
    assert len(list((tmp_path / "two" / "tb").iterdir())) == 1  # rank 0's event file only


CAPTIONS = ["look at this dog", "they all should go back", "happy monday everyone",
            "when the teacher says no homework", "you people are not welcome here",
            "my cat is judging me", "that moment when it rains"]


def _tuned_model():
    """A head on MiniLM that is fine-tuned, without dropout (eval mode): what a step computes
    must then not depend on how the batch is shared out."""
    from hateful_memes.models.encoders import create_text_encoder
    encoder = create_text_encoder("minilm")
    torch.manual_seed(0)
    model = MemeModel(ModelConfig(tasks=("pc", "attack"), text_encoder="minilm",
                                  text_dim=encoder.dim, hidden=16, dropout=0.0,
                                  finetune_text=True), None, encoder)
    return model.eval()


def _checked(name: str) -> bool:
    return name.startswith("head.") or ".layer.5." in name  # the head and the last block


def _tuned_step_worker(rank, world, port, out):
    from torch.nn.parallel import DistributedDataParallel

    from hateful_memes.engine.training import step_loss
    _join(rank, world, port)
    _, targets = _data(len(CAPTIONS), 0)
    model = _tuned_model()
    inputs = Inputs(None, CAPTIONS, None, model.text_encoder.tokenize)
    net = DistributedDataParallel(model, find_unused_parameters=True)
    loss = step_loss(net, model, inputs, targets, list(range(len(CAPTIONS))), rank, world)
    loss.backward()
    torch.save((loss.item() / world, {k: p.grad.clone() for k, p in model.named_parameters()
                                      if _checked(k) and p.grad is not None}),
               f"{out}.{rank}")
    distributed.finish()


def test_a_fine_tuned_encoder_gets_the_whole_batch_gradient_on_two_processes(tmp_path):
    import torch.multiprocessing as mp

    from hateful_memes.engine.training import step_loss
    out = tmp_path / "tuned"
    mp.spawn(_tuned_step_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    _, targets = _data(len(CAPTIONS), 0)
    model = _tuned_model()
    inputs = Inputs(None, CAPTIONS, None, model.text_encoder.tokenize)
    loss = step_loss(model, model, inputs, targets, list(range(len(CAPTIONS))))
    loss.backward()
    assert ranks[0][0] + ranks[1][0] == pytest.approx(loss.item(), abs=1e-5)
    grads = {k: p.grad for k, p in model.named_parameters() if _checked(k)}
    assert any(k.startswith("text_encoder.") for k in grads) and len(grads) > 10
    for r in range(2):
        assert set(ranks[r][1]) == set(grads)
        for name, g in grads.items():
            torch.testing.assert_close(ranks[r][1][name], g, atol=1e-5, rtol=1e-4)


def test_a_damaged_rng_state_in_last_pt_is_an_error_naming_the_file(tmp_path):
    from hateful_memes.runtime.checkpoints import CheckpointError
    _fit(tmp_path, epochs=1)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    state["rng"] = [1, 2]
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=r"last\.pt: does not fit this run's model"):
        _fit(tmp_path, epochs=2, resume=True)


def _resume_worker(rank, world, port, tmp):
    import contextlib
    import io
    from pathlib import Path

    from hateful_memes.runtime.commands import error_exit
    _join(rank, world, port)
    err = io.StringIO()
    try:
        _fit(Path(tmp), epochs=2, resume=True)
    except ValueError as e:
        with contextlib.redirect_stderr(err):
            error_exit("train.py", e)
    Path(tmp, f"said.{rank}").write_text(err.getvalue())
    distributed.finish()


def test_a_damaged_last_pt_is_one_error_of_every_rank_said_once(tmp_path):
    """Every rank of a resumed run reads the same last.pt: a damaged one was said once a
    rank ("rank 1 of 2: ...last.pt: not a readable ..."), now once, as one process says it."""
    import torch.multiprocessing as mp

    _fit(tmp_path, epochs=1)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # cut short, as by a full disk or a copy
    mp.spawn(_resume_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    said = [(tmp_path / f"said.{rank}").read_text() for rank in range(2)]
    assert said[0].startswith(f"train.py: error: {last}: not a readable torch resume state"), said
    assert said[0].count("\n") == 1 and said[1] == ""


@pytest.mark.parametrize("count, says", [(1, "there is only 1 CUDA device"),
                                         (2, "there are only 2 CUDA devices")])
def test_a_cuda_index_past_the_gpus_says_how_many_there_are(monkeypatch, count, says):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with pytest.raises(ValueError) as e:
        resolve_device("cuda:2")
    assert str(e.value) == f"--device cuda:2: {says}, numbered from 0"


CUDA_STARTED = training._cuda_started  # the real one, for a test that takes a fake back


def _fake_cuda(monkeypatch, devices=2):
    """A CUDA with `devices` GPUs as far as the RNG state goes: get_rng_state_all returns
    distinct states, set_rng_state_all records what it is given."""
    states = [torch.tensor([7, i, 42], dtype=torch.uint8) for i in range(devices)]
    restored = []
    # The optimizer's CUDA graph check (torch.accelerator) goes on seeing the real machine.
    real = torch.accelerator.is_available()
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: real)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: devices)
    # (torch.cuda.is_initialized itself stays real: torch.manual_seed reads it)
    monkeypatch.setattr(training, "_cuda_started", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all",
                        lambda new: restored.append([s.clone() for s in new]))
    return states, restored


def test_a_cpu_run_on_a_gpu_machine_does_not_start_cuda_to_save_its_states(tmp_path,
                                                                           monkeypatch):
    asked = []
    real = torch.accelerator.is_available()
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: real)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: asked.append(1) or [])
    assert not torch.cuda.is_initialized()  # this machine: the run stays on the CPU
    _fit(tmp_path, epochs=1)
    assert asked == []
    assert "cuda_rng" not in torch.load(tmp_path / "last.pt", weights_only=True)


def test_last_pt_holds_the_cuda_rng_states_and_a_resume_restores_them(tmp_path, monkeypatch):
    states, restored = _fake_cuda(monkeypatch)
    _fit(tmp_path, epochs=1)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert len(saved["cuda_rng"]) == 1  # one process, two devices
    assert [s.tolist() for s in saved["cuda_rng"][0]] == [s.tolist() for s in states]
    assert restored == []
    _fit(tmp_path, epochs=2, resume=True)
    assert len(restored) == 1
    assert [s.tolist() for s in restored[0]] == [s.tolist() for s in states]
    assert all(s.device.type == "cpu" for s in restored[0])


def test_cuda_rng_states_are_not_restored_on_another_number_of_gpus_or_without_cuda(
        tmp_path, monkeypatch):
    _fake_cuda(monkeypatch, devices=2)
    _fit(tmp_path, epochs=1)
    # One GPU now: the two saved states do not fit, the device keeps its fresh seed, and
    # last.pt then holds this machine's state.
    one, restored = _fake_cuda(monkeypatch, devices=1)
    _fit(tmp_path, epochs=2, resume=True)
    assert restored == []
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert [s.tolist() for s in saved["cuda_rng"][0]] == [s.tolist() for s in one]
    # A GPU run resumed on a CPU: nothing to restore, and nothing CUDA saved any more.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(training, "_cuda_started", CUDA_STARTED)
    _fit(tmp_path, epochs=3, resume=True)
    assert restored == []
    assert "cuda_rng" not in torch.load(tmp_path / "last.pt", weights_only=True)


def test_a_last_pt_written_before_cuda_rng_states_were_saved_resumes(tmp_path, monkeypatch):
    full, _, dev = _fit(tmp_path / "full", epochs=3)

    def crash(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # no CUDA here: last.pt as older versions wrote it
        _fit(tmp_path / "cut", epochs=3, on_epoch_end=crash)
    assert "cuda_rng" not in torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    states, restored = _fake_cuda(monkeypatch)
    resumed, state, _ = _fit(tmp_path / "cut", epochs=3, resume=True)
    assert [r["epoch"] for r in state["history"]] == [1, 2, 3]
    assert restored == []  # nothing saved, nothing restored: the devices keep their seeds
    sa, sb = predict_scores(full, dev), predict_scores(resumed, dev)
    for task in sa:
        np.testing.assert_array_equal(sa[task], sb[task])
    # From then on the run's last.pt holds them.
    saved = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert [s.tolist() for s in saved["cuda_rng"][0]] == [s.tolist() for s in states]
