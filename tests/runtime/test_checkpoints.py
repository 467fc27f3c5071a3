"""A `.pt` file is a pickle: no file handed to this project may run code when it is read."""
import pickle
import re

import pytest
import torch

from hateful_memes.cli import predict, pretrain, train
from hateful_memes.models.encoders import create_image_encoder
from hateful_memes.models.model import MemeModel, ModelConfig, load_checkpoint, save_checkpoint
from hateful_memes.runtime import checkpoints


class _Payload:
    """Unpickling this writes a file: the harm a hostile checkpoint could do, made visible."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _hostile(path, marker, legacy=False, **fields):
    obj = {"config": {}, "model": {}, **fields, "payload": _Payload(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if legacy:  # a plain pickle, the format torch read before its zip files
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    else:
        torch.save(obj, path)
    return path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("legacy", [False, True])
def test_a_payload_is_refused_and_never_runs(tmp_path, legacy):
    marker = tmp_path / "ran"
    path = _hostile(tmp_path / "checkpoint.pt", marker, legacy)
    with pytest.raises(checkpoints.CheckpointError, match="refused") as e:
        checkpoints.load(path)
    assert str(path) in str(e.value)
    assert not marker.exists()


def test_the_projects_own_checkpoints_still_load(tmp_path):
    model = MemeModel(ModelConfig(text_dim=8, hidden=8))
    save_checkpoint(tmp_path / "checkpoint.pt", model, thresholds={"pc": [0.5] * 6},
                    settings={"lr": 1e-3, "out": None, "finetune": False})
    again, ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["settings"]["lr"] == 1e-3
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


@pytest.mark.parametrize("content,expect", [
    (b"garbage\n", "not a readable torch checkpoint"),
    (b"", "not a readable torch checkpoint"),
])
def test_a_damaged_file_names_itself(tmp_path, content, expect):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(checkpoints.CheckpointError, match=expect) as e:
        checkpoints.load(path)
    assert str(path) in str(e.value)


def test_a_truncated_checkpoint_names_itself(tmp_path):
    model = MemeModel(ModelConfig(text_dim=8, hidden=8))
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(checkpoints.CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_a_torch_file_that_is_not_ours(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(checkpoints.CheckpointError, match="no config, model"):
        load_checkpoint(path)
    torch.save({"config": {"hidden": "wide"}, "model": {}}, path)
    with pytest.raises(checkpoints.CheckpointError, match="config is not valid"):
        load_checkpoint(path)


# --- every door a checkpoint comes in by --------------------------------------------------


def _train_args(demo_data, cache, out, *extra):
    ann = demo_data / "annotations"
    return ["--task", "A", "--train", str(ann / "train.json"), "--dev", str(ann / "dev.json"),
            "--epochs", "1", "--cache-dir", str(cache), "--out", str(out), "--quiet",
            "--hidden", "16", "--image-encoder", "none", *extra]


def test_predict_run_refuses_a_hostile_checkpoint(tmp_path, demo_data, feature_cache, capsys):
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    _hostile(run / "checkpoint.pt", marker)
    code = predict.main(["--run", str(run), "--input",
                         str(demo_data / "annotations" / "test.jsonl"), "--out",
                         str(tmp_path / "out.jsonl"), "--cache-dir", str(feature_cache),
                         "--quiet"])
    assert code == 1 and not marker.exists()
    err = capsys.readouterr().err
    assert "refused" in err and str(run / "checkpoint.pt") in err


def test_predict_run_names_a_garbage_checkpoint(tmp_path, demo_data, feature_cache, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"garbage\n")
    code = predict.main(["--run", str(run), "--input",
                         str(demo_data / "annotations" / "test.jsonl"), "--out",
                         str(tmp_path / "out.jsonl"), "--cache-dir", str(feature_cache),
                         "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert str(run / "checkpoint.pt") in err and "not a readable torch checkpoint" in err
    assert "invalid literal" not in err


def test_init_head_refuses_a_hostile_checkpoint(tmp_path, demo_data, feature_cache, capsys):
    marker = tmp_path / "ran"
    bad = _hostile(tmp_path / "src" / "checkpoint.pt", marker)
    code = train.main(_train_args(demo_data, feature_cache, tmp_path / "run",
                                  "--init-head", str(bad)))
    assert code == 1 and not marker.exists()
    assert "refused" in capsys.readouterr().err


def test_resume_refuses_a_hostile_last_pt(tmp_path, demo_data, feature_cache, capsys):
    run = tmp_path / "run"
    assert train.main(_train_args(demo_data, feature_cache, run)) == 0
    marker = tmp_path / "ran"
    last = run / "fold0" / "last.pt"
    last.unlink()
    _hostile(last, marker, optimizer={}, rng=torch.zeros(1), state={})
    code = train.main(_train_args(demo_data, feature_cache, run, "--resume"))
    assert code == 1 and not marker.exists()
    err = capsys.readouterr().err
    assert "refused" in err and str(last) in err


def test_bt_encoder_refuses_a_hostile_checkpoint(tmp_path):
    marker = tmp_path / "ran"
    for name in ("checkpoint.pt", "backbone.pth"):
        bad = _hostile(tmp_path / name, marker)
        with pytest.raises(ValueError, match="refused"):
            create_image_encoder(f"bt:{bad}")
        assert not marker.exists()
    with pytest.raises(ValueError, match="refused"):
        create_image_encoder(f"timm:resnet18={bad}")
    assert not marker.exists()


def test_pretrain_resume_refuses_a_hostile_checkpoint(tmp_path, capsys):
    from PIL import Image

    images = tmp_path / "img"
    images.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(images / f"{i}.png")
    out = tmp_path / "bt"
    marker = tmp_path / "ran"
    _hostile(out / "checkpoint.pt", marker, epoch=1)
    assert pretrain.main(["--images", str(images), "--out", str(out), "--backbone", "resnet18",
                          "--projector", "16-16", "--epochs", "2", "--batch-size", "4",
                          "--image-size", "32", "--workers", "0", "--resume",
                          "--device", "cpu"]) == 1
    assert re.search("pretrain.py: error: --resume: .*refused", capsys.readouterr().err)
    assert not marker.exists()
