import contextlib
import io
import json
import logging
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.multiprocessing as mp
from PIL import Image

from conftest import spawn_and_join
from hateful_memes.cli import pretrain
from hateful_memes.cli.pretrain import (ImageDataset, ImageSetError, Skipped, collate_views,
                                        collect_images, main)
from hateful_memes.pretraining.barlow_twins import BarlowTwins, load_backbone

BACKBONE = "test_resnet"


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = rng.integers(24, 64, 2)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = folder / f"{i:03d}.{('png', 'jpg')[i % 2]}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def args(images: Path, out: Path, *extra: str) -> list[str]:
    return ["--images", str(images), "--out", str(out), "--backbone", BACKBONE,
            "--projector", "64-64", "--epochs", "2", "--batch-size", "8", "--image-size", "32",
            "--workers", "0", "--device", "cpu", *extra]


def error_of(argv: list[str], capsys) -> str:
    """The one-line error of a run that main refuses (exit code 1), without its prefix."""
    capsys.readouterr()
    assert main(argv) == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("pretrain.py: error: "), last
    return last.removeprefix("pretrain.py: error: ")


def test_collect_images_from_folders_and_annotations(tmp_path, caplog):
    data = tmp_path / "data"
    found = make_images(data / "img", 3)
    (data / "img" / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(data / "img" / "sub" / "upper.PNG")
    (data / "img" / "notes.txt").write_text("not an image")
    ann = data / "annotations" / "train.json"
    ann.parent.mkdir()
    rows = [{"id": 1, "img": "img/000.png"}, {"id": 2, "img": "img/missing.png"}]
    ann.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")

    with caplog.at_level(logging.WARNING):
        paths = collect_images([data / "img", ann, data / "img"])
    # recursive, any case of extension, each image once, in a fixed order
    assert paths == sorted(p.resolve() for p in found + [data / "img" / "sub" / "upper.PNG"])
    assert "1 image listed in the annotations does not exist and is left out" in caplog.text
    assert "missing.png" in caplog.text

    # the annotation's own root is its parent's parent; --image-root overrides it
    assert collect_images([ann]) == [found[0].resolve()]
    other = tmp_path / "elsewhere"
    make_images(other / "img", 1)
    assert collect_images([ann], image_root=other) == [(other / "img" / "000.png").resolve()]


def test_no_images_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageSetError, match=f"no images found in {tmp_path / 'empty'}"):
        collect_images([tmp_path / "empty"])
    with pytest.raises(ImageSetError, match="no such directory"):
        collect_images([tmp_path / "nowhere"])
    ann = tmp_path / "a" / "train.json"
    ann.parent.mkdir()
    ann.write_text('{"img": "img/1.png"}\n')
    with pytest.raises(ImageSetError, match="no images found"):
        collect_images([ann])
    ann.write_text('{"img": "img/1.png"}\n{"img": \n')
    with pytest.raises(ImageSetError, match=r"train.json:2: malformed JSON"):
        collect_images([ann])
    ann.write_text('{"id": 3}\n')
    with pytest.raises(ImageSetError, match=r"train.json:1: expected an object with an 'img'"):
        collect_images([ann])
    # A stranger's file cannot point the pretraining at files outside the image root.
    for img, problem in (("../../etc/hostname", "climbs out of the image root"),
                         ("/etc/hostname", "is absolute")):
        ann.write_text('{"img": "img/1.png"}\n' + json.dumps({"img": img}) + "\n")
        with pytest.raises(ImageSetError, match=f"train.json:2: img '{img}' {problem}"):
            collect_images([ann])
    assert error_of(args(tmp_path / "empty", tmp_path / "out"), capsys).startswith(
        f"no images found in {tmp_path / 'empty'}")


def test_unreadable_images_are_skipped_by_the_dataset(tmp_path):
    good = make_images(tmp_path, 2)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[1].read_bytes()[:200])
    ds = ImageDataset([good[0], garbage, truncated, good[1]],
                      lambda img: (torch.zeros(3, 4, 4), torch.ones(3, 4, 4)))
    items = [ds[i] for i in range(4)]
    assert [isinstance(x, Skipped) for x in items] == [False, True, True, False]
    assert items[1].path == str(garbage)
    y1, y2, skipped = collate_views(items)
    assert y1.shape == y2.shape == (2, 3, 4, 4)
    assert [s.path for s in skipped] == [str(garbage), str(truncated)]
    assert collate_views(items[1:3])[:2] == (None, None)


def test_the_dataset_reads_images_as_train_py_does(tmp_path):
    from PIL import Image

    # A 16-bit grey gradient (Pillow's plain convert would make it white) and a photo stored
    # sideways with EXIF orientation 6 (upright it is landscape).
    grey = tmp_path / "grey16.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(grey)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (20, 30)).save(photo, exif=exif.tobytes())
    seen = []
    ds = ImageDataset([grey, photo], lambda img: seen.append(img) or (None, None))
    ds[0], ds[1]
    assert seen[0].mode == "RGB" and 100 < np.asarray(seen[0]).mean() < 155
    assert seen[1].size == (30, 20)


def test_pretraining_writes_what_the_encoders_load(tmp_path, caplog):
    images = tmp_path / "images"
    make_images(images, 16)
    (images / "corrupt.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        assert main(args(images, out)) == 0
    assert "skipping unreadable image " + str((images / "corrupt.png").resolve()) in caplog.text
    assert "1 unreadable image skipped" in caplog.text

    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    config = ckpt["config"]
    assert (config["backbone"], config["image_size"], config["projector"], config["lambd"]) == (
        BACKBONE, 32, "64-64", 0.0051)
    assert json.loads(json.dumps(config)) == config  # a plain dict
    assert {"model", "optimizer"} <= set(ckpt)
    assert any(k.startswith("backbone.") for k in ckpt["model"])

    # backbone.pth loads strictly into the timm model, and equals the checkpoint's backbone
    model = timm.create_model(BACKBONE, pretrained=False, num_classes=0)
    state = torch.load(out / "backbone.pth", weights_only=True)
    model.load_state_dict(state)
    for k, v in state.items():
        assert torch.equal(v, ckpt["model"]["backbone." + k])
    # ... and training moved it away from its initialisation (seed 0, the default)
    pretrain.seed_everything(0)
    start = BarlowTwins(BACKBONE, "64-64").backbone.state_dict()
    w, w0 = state["conv1.0.weight"], start["conv1.0.weight"]
    # LARS moves a layer by lr * eta of its norm a step: a little, but not nothing
    assert 0 < (w - w0).norm() < 0.01 * w0.norm()

    for source in (out / "checkpoint.pt", out, out / "backbone.pth"):
        loaded, cfg = load_backbone(source)
        assert cfg["backbone"] == BACKBONE
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), state.values()))

    rows = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in rows] == [(0, 0), (0, 1), (1, 3)]
    assert all({"loss", "lr", "time"} <= set(r) and np.isfinite(r["loss"]) for r in rows)
    assert any(f.name.startswith("events.out.tfevents") for f in (out / "tb").iterdir())

    # the project's image encoder takes it as bt:PATH
    from hateful_memes.models.encoders import create_image_encoder

    encoder = create_image_encoder(f"bt:{out / 'checkpoint.pt'}")
    pixels = encoder.transform(Image.open(images / "000.png"))
    assert pixels.shape[-1] == 32
    with torch.no_grad():
        features = encoder(pixels[None])
        expected = model.eval()(pixels[None])
    assert torch.allclose(features, expected)
    # ... and backbone.pth as plain timm weights
    encoder = create_image_encoder(f"timm:{BACKBONE}={out / 'backbone.pth'}")
    with torch.no_grad():
        assert torch.allclose(encoder(pixels[None]), expected)


def test_quiet_shows_no_progress_as_train_py_and_predict_py(tmp_path, capsys):
    images = tmp_path / "images"
    make_images(images, 8)
    # Off a terminal the progress is plain lines (runtime.progress), one an epoch at least.
    assert main(args(images, tmp_path / "loud", "--epochs", "1")) == 0
    assert "epoch 1/1: done 1/1 it" in capsys.readouterr().err
    assert main(args(images, tmp_path / "quiet", "--epochs", "1", "--quiet")) == 0
    assert "done 1/1 it" not in capsys.readouterr().err


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch):
    images = tmp_path / "images"
    make_images(images, 16)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(args(images, whole)) == 0

    seed = pretrain.seed_everything

    # killed just after the first epoch's checkpoint, as the second epoch begins
    def crash_in_second_epoch(s, *keys):
        if keys and keys[0] == 1:
            raise KeyboardInterrupt
        seed(s, *keys)

    monkeypatch.setattr(pretrain, "seed_everything", crash_in_second_epoch)
    assert main(args(images, parts)) == 130  # the kill, as Ctrl-C ends a command
    assert torch.load(parts / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(pretrain, "seed_everything", seed)
    assert main(args(images, parts, "--resume")) == 0

    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(parts / "checkpoint.pt", weights_only=True)
    assert b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    mu_a = [s["mu"] for s in a["optimizer"]["state"].values()]
    mu_b = [s["mu"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(mu_a, mu_b, strict=True))

    def losses(out):
        return [(r["step"], r["loss"]) for r in map(json.loads, (out / "stats.jsonl").open())]

    assert losses(parts) == losses(whole)


def test_resume_refuses_other_settings(tmp_path, capsys):
    images = tmp_path / "images"
    make_images(images, 8)
    out = tmp_path / "run"
    assert re.fullmatch(r"--resume: .*\(no checkpoint.pt\).*",
                        error_of(args(images, out, "--resume"), capsys))
    assert main(args(images, out, "--epochs", "1")) == 0
    assert re.fullmatch(rf"--resume: {re.escape(str(out / 'checkpoint.pt'))} was trained with "
                        r"other settings \(lambd: 0.0051 -> 0.1\)",
                        error_of(args(images, out, "--resume", "--lambd", "0.1"), capsys))
    assert error_of(args(images, tmp_path / "other", "--batch-size", "16"), capsys) == (
        "--batch-size 16 is larger than the 8 images found")
    assert re.fullmatch("--backbone: .*unknown timm backbone 'no_such_net'.*", error_of(
        args(images, tmp_path / "other", "--backbone", "no_such_net"), capsys))


def test_resume_names_a_damaged_stats_line_and_skips_blank_ones(tmp_path, capsys):
    images = tmp_path / "images"
    make_images(images, 8)
    out = tmp_path / "run"
    assert main(args(images, out, "--epochs", "1")) == 0
    stats = out / "stats.jsonl"
    n = len(stats.read_text().splitlines())
    stats.write_text(stats.read_text() + "\n")
    assert main(args(images, out, "--resume")) == 0
    lines = stats.read_text().splitlines()
    assert len(lines) > n and all(json.loads(line)["epoch"] < 2 for line in lines)
    before = (out / "checkpoint.pt").read_bytes()
    for damage, problem in (('{"epoch": ', "malformed JSON"), ('{"step": 3}', "'epoch' number")):
        stats.write_text("\n".join([*lines, damage]) + "\n")
        error = error_of(args(images, out, "--resume", "--epochs", "3"), capsys)
        assert re.fullmatch(f"--resume: .*stats.jsonl:{len(lines) + 1}: .*{problem}.*", error)
        assert (out / "checkpoint.pt").read_bytes() == before


def test_resume_knows_its_images_however_they_are_written(tmp_path, monkeypatch, capsys):
    images = tmp_path / "images"
    make_images(images, 8)
    make_images(tmp_path / "others", 8, seed=1)
    out = tmp_path / "run"
    assert main(args(images, out, "--epochs", "1")) == 0
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    out.rename(moved)
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(args("./../images/", "moved", "--resume")) == 0
    assert torch.load(moved / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert re.search("other settings .*images",
                     error_of(args("../others", "moved", "--resume", "--epochs", "3"), capsys))


def test_an_old_run_with_relative_images_says_where_to_resume_it(tmp_path, monkeypatch, capsys):
    """Checkpoints written before the image sources were stored absolute kept them relative to
    the folder the run was started in, which nothing records: from another folder the error
    says so, and from that folder the run resumes."""
    make_images(tmp_path / "images", 8)
    out = tmp_path / "run"
    assert main(args(tmp_path / "images", out, "--epochs", "1")) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["config"]["images"] = ["images"]  # as typed in tmp_path
    torch.save(state, out / "checkpoint.pt")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    error = error_of(args(tmp_path / "images", out, "--resume"), capsys)
    assert re.fullmatch(r".*other settings \(images: \['images'\] -> .*\); it keeps images "
                        "relative to the folder the run was started in .*resume from that "
                        "folder.*", error)
    monkeypatch.chdir(tmp_path)
    assert main(args("images", out, "--resume")) == 0


# --- two processes, as torchrun starts them --------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_main(rank: int, world: int, port: int, argv: list[str]) -> int:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return main(argv)


def _torchrun_worker(rank: int, world: int, port: int, argv: list[str]) -> None:
    assert _torchrun_main(rank, world, port, argv) == 0


def _torchrun_logged_worker(rank: int, world: int, port: int, argv: list[str],
                            logs: str) -> None:
    """As _torchrun_worker, with this rank's stderr (its log) in LOGS/rank<RANK>.err."""
    path = Path(logs) / f"rank{rank}.err"
    with open(path, "w") as err, contextlib.redirect_stderr(err):
        code = _torchrun_main(rank, world, port, argv)
    assert code == 0, path.read_text()


def test_the_same_command_runs_on_two_processes(tmp_path):
    images = tmp_path / "images"
    make_images(images, 16)
    (images / "corrupt.png").write_bytes(b"broken")
    # an annotation file naming an image already found in the folder and one that is missing
    ann = tmp_path / "annotations" / "more.json"
    ann.parent.mkdir()
    ann.write_text('{"img": "images/000.png"}\n{"img": "images/missing.png"}\n')
    out = tmp_path / "run"
    argv = args(images, out)
    argv.insert(argv.index("--images") + 2, str(ann))
    mp.spawn(_torchrun_logged_worker, args=(2, _free_port(), argv, str(tmp_path)), nprocs=2,
             join=True)
    # Every rank finds the missing image, and the ranks share one stderr: rank 0 alone warns.
    logs = [(tmp_path / f"rank{rank}.err").read_text() for rank in range(2)]
    assert logs[0].count("1 image listed in the annotations does not exist") == 1, logs[0]
    assert "does not exist" not in logs[1], logs[1]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    # SyncBatchNorm-style conversion kept the keys: the backbone loads as usual
    timm.create_model(BACKBONE, num_classes=0).load_state_dict(
        torch.load(out / "backbone.pth", weights_only=True))
    rows = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    # 17 images over 2 processes of 4 each: 2 steps an epoch, as in one process
    assert [r["step"] for r in rows] == [0, 1, 3]
    assert all(np.isfinite(r["loss"]) for r in rows)


def _out_unwritable_on_rank_0_worker(rank: int, world: int, port: int, argv: list[str]) -> None:
    from hateful_memes.runtime import rundir

    def unwritable(path, flag):
        raise rundir.RunDirError(f"{flag} {path}: not writable")

    if rank == 0:  # the one rank that tries the folder
        pretrain.rundir.check_writable = unwritable
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = _torchrun_main(rank, world, port, argv)
    assert code == 1, err.getvalue()
    errors = [line for line in err.getvalue().splitlines() if "error:" in line]
    # Rank 0 alone hit it and says it, naming itself; rank 1 stops without repeating it.
    if rank == 0:
        assert errors == ["pretrain.py: error: rank 0 of 2: --out "
                          f"{argv[argv.index('--out') + 1]}: not writable"], errors
    else:
        assert errors == [], errors


def test_a_failure_on_one_rank_stops_every_rank_and_that_rank_says_it(tmp_path):
    images = tmp_path / "images"
    make_images(images, 16)
    out = tmp_path / "run"
    spawn_and_join(_out_unwritable_on_rank_0_worker, (2, _free_port(), args(images, out)), 120)
    assert not out.exists() or not any(out.iterdir())


def _every_rank_fails_worker(rank: int, world: int, port: int, argv: list[str],
                             logs: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = _torchrun_main(rank, world, port, argv)
    Path(logs, f"rank{rank}.err").write_text(err.getvalue())
    assert code == 1, err.getvalue()


def test_an_error_every_rank_finds_is_said_once_by_rank_0(tmp_path):
    # Every rank looks for the images and finds none: the same error on both.
    nowhere = tmp_path / "nowhere"
    mp.spawn(_every_rank_fails_worker,
             args=(2, _free_port(), args(nowhere, tmp_path / "run"), str(tmp_path)), nprocs=2,
             join=True)
    said = [[line for line in (tmp_path / f"rank{rank}.err").read_text().splitlines()
             if "error:" in line] for rank in range(2)]
    assert said == [[f"pretrain.py: error: --images {nowhere}: no such directory or annotation "
                     "file"], []]


def test_train_py_uses_a_pretrained_backbone(demo_data, feature_cache, tmp_path, monkeypatch):
    """Pretrain on the demo memes' annotation file, then train the classifier on top of it,
    naming the backbone as the README does (bt:runs/bt/checkpoint.pt, relative), and predict
    with the run from another folder."""
    from hateful_memes.cli import predict, train
    from hateful_memes.models.model import load_checkpoint

    ann = demo_data / "annotations"
    out = tmp_path / "bt"
    assert main(args(ann / "train.json", out, "--epochs", "1")) == 0
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    assert train.main(["--task", "A", "--train", str(ann / "train.json"),
                       "--dev", str(ann / "dev.json"),
                       "--image-encoder", "bt:bt/checkpoint.pt", "--text-encoder", "none",
                       "--epochs", "2", "--hidden", "16", "--cache-dir", str(feature_cache),
                       "--out", str(run), "--quiet"]) == 0
    model, _ = load_checkpoint(run / "checkpoint.pt")
    # kept absolute: the spec as typed named the weights only from the folder train.py ran in
    assert model.cfg.image_encoder == f"bt:{out / 'checkpoint.pt'}"
    assert model.cfg.image_dim == load_backbone(out / "checkpoint.pt")[0].num_features
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert predict.main(["--model", str(run), "--input", str(ann / "dev.json"),
                         "--out", "pred.jsonl", "--cache-dir", str(feature_cache),
                         "--quiet"]) == 0
    # ... and --resume, given the path as typed where the run was started, knows it
    monkeypatch.chdir(tmp_path)
    saved = train.resolve(train._parser().parse_args([
        "--task", "A", "--train", str(ann / "train.json"), "--dev", str(ann / "dev.json"),
        "--image-encoder", "bt:bt/checkpoint.pt", "--text-encoder", "none", "--epochs", "2",
        "--hidden", "16", "--out", str(run)]))
    assert train.differing({**saved, "image_encoder": "bt:bt/checkpoint.pt"}, saved) == []
    assert train.differing({**saved, "image_encoder": "bt:bt/backbone.pth"}, saved) == [
        "image_encoder"]


# --- the output folder, bad settings, unreadable images (issue 10, items 3 and 6) ----------


def test_a_run_in_out_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    images = tmp_path / "images"
    make_images(images, 8)
    out = tmp_path / "run"
    assert main(args(images, out, "--epochs", "1")) == 0
    before = (out / "checkpoint.pt").read_bytes()
    assert re.search("already holds a run.*--resume.*--overwrite",
                     error_of(args(images, out, "--epochs", "1", "--seed", "1"), capsys))
    assert (out / "checkpoint.pt").read_bytes() == before
    (out / "notes.txt").write_text("mine")
    assert re.search(r"does not write \(notes.txt\)",
                     error_of(args(images, out, "--epochs", "1", "--overwrite"), capsys))
    (out / "notes.txt").unlink()
    assert main(args(images, out, "--epochs", "1", "--seed", "1", "--overwrite")) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["config"]["seed"] == 1


def test_overwrite_that_fails_before_training_keeps_the_old_run(tmp_path, capsys):
    images = tmp_path / "images"
    make_images(images, 8)
    out = tmp_path / "run"
    assert main(args(images, out, "--epochs", "1")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert "larger than the 8 images" in error_of(
        args(images, out, "--overwrite", "--batch-size", "16"), capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_all_images_unreadable_is_an_error_and_writes_nothing(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(8):
        (images / f"{i}.png").write_bytes(b"" if i % 2 else b"not an image")
    out = tmp_path / "run"
    assert error_of(args(images, out), capsys).startswith(
        "epoch 1 ran no training step: 8 of 8 image")
    # nothing at all, not even tb/: a rerun on readable images needs no --overwrite
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("extra,message", [
    (["--lr-weights=-1"], "--lr-weights must be a number > 0"),
    (["--lambd", "0"], "--lambd must be a number > 0"),
    (["--weight-decay=-1e-6"], "--weight-decay must be a number >= 0"),
    (["--warmup-epochs=-1"], "--warmup-epochs must be a number >= 0"),
    (["--crop-scale", "0.5", "0.2"], "--crop-scale MIN MAX must satisfy"),
    (["--workers=-1"], "--workers must be >= 0"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--image-size", "0"], "--image-size must be >= 8"),
])
def test_bad_settings_are_usage_errors(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as e:
        main(args(tmp_path, tmp_path / "run", *extra))
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_cuda_without_a_gpu_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        main([*args(tmp_path, tmp_path / "run")[:-2], "--device", "cuda"])
    assert e.value.code == 2 and "no CUDA GPU is available" in capsys.readouterr().err


def test_amp_without_cuda_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cpu", "auto"):
        with pytest.raises(SystemExit) as e:
            main([*args(tmp_path, tmp_path / "run")[:-2], "--device", device, "--amp"])
        assert e.value.code == 2
        assert "pretrain.py: error: --amp needs a CUDA device" in capsys.readouterr().err


def test_help_shows_its_example_command_as_it_can_be_pasted(capsys):
    """The usage example in --help keeps its line continuation: pasted into a shell, the two
    lines are one command (a plain docstring turned the backslash into a run of spaces)."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--epochs 100 \\\n        --batch-size 256 --out runs/bt" in out


def test_help_says_what_every_option_does_and_its_default():
    """A newcomer reads --help: --epochs, --optimizer, --workers and --seed said nothing,
    and the defaults of --projector, --lambd and --batch-size, among others, were hidden."""
    parser = pretrain._parser()
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "flip"):
            continue
        assert action.help, f"{action.option_strings[0]} has no help"
        if action.default not in (None, False):
            shown = parser._get_formatter()._expand_help(action)
            defaults = action.default if isinstance(action.default, tuple) else [action.default]
            for value in defaults:
                text = f"{value:g}" if isinstance(value, float) else str(value)
                assert text in shown, f"{action.option_strings[0]}: {shown}"
