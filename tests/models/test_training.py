import json

import numpy as np
import pytest
import torch

from hateful_memes import labels as L
from hateful_memes.features.inputs import Inputs
from hateful_memes.models.model import MemeModel, ModelConfig
from hateful_memes.models.training import FitConfig, fit, predict_scores


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
    from hateful_memes.models import training
    path = tmp_path / "last.pt"
    training._save_state(path, {"epoch": 1})
    monkeypatch.setattr(training.torch, "save", _full_disk_save)
    with pytest.raises(OSError, match="No space left"):
        training._save_state(path, {"epoch": 2})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert torch.load(path, weights_only=True) == {"epoch": 1}
