import json
import shutil

import pytest
import yaml

from hateful_memes import evaluate, predict, train
from hateful_memes.decision import decide, multi_hot
from hateful_memes.labels import ATTACK, PC, is_consistent
from hateful_memes.submission import read_submission


def _args(demo_data, cache, out, *extra):
    ann = demo_data / "annotations"
    return ["--train", str(ann / "train.json"), "--dev", str(ann / "dev.json"), "--epochs", "3",
            "--cache-dir", str(cache), "--out", str(out), "--quiet", "--hidden", "32", *extra]


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
            and cfg["text_encoder"] == "minilm")
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
    # Text only is the explicit way to train without images.
    assert train.main(["--task", "A", *_args(data, feature_cache, out),
                       "--image-encoder", "none"]) == 0
    assert (out / "checkpoint.pt").exists()


def test_yaml_config_is_overridden_by_flags(tmp_path):
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text("task: B\nepochs: 7\nlr: 0.01\nimage-encoder: none\n")
    args = train._parser().parse_args(["--config", str(cfg_file), "--epochs", "2"])
    cfg = train.resolve(args)
    assert (cfg["task"], cfg["epochs"], cfg["lr"], cfg["image_encoder"]) == ("B", 2, 0.01, "none")
    cfg_file.write_text("task: B\nepoch: 7\n")
    with pytest.raises(ValueError, match="unknown setting.*epoch"):
        train.resolve(train._parser().parse_args(["--config", str(cfg_file)]))


def test_resume_refuses_changed_settings(runs, demo_data, feature_cache, capsys):
    code = train.main(["--task", "A", *_args(demo_data, feature_cache, runs / "A"),
                       "--lr", "0.5", "--resume"])
    err = capsys.readouterr().err
    assert code == 1 and "settings differ" in err and "['lr']" in err


def test_finetuned_text_encoder_is_trained_and_saved_in_the_checkpoint(demo_data, feature_cache,
                                                                       tmp_path):
    import torch

    from hateful_memes.encoders import create_text_encoder
    from hateful_memes.model import load_checkpoint

    out = tmp_path / "ft"
    assert train.main(["--task", "B", *_args(demo_data, feature_cache, out),
                       "--image-encoder", "none", "--finetune", "--epochs", "1", "--folds", "2",
                       "--batch-size", "8", "--encoder-lr", "1e-3"]) == 0
    model, ckpt = load_checkpoint(out / "checkpoint.pt")
    assert model.cfg.finetune_text and any(k.startswith("text_encoder.") for k in ckpt["model"])
    fresh = create_text_encoder("minilm").state_dict()
    tuned = model.text_encoder.state_dict()
    assert any(not torch.equal(fresh[k], tuned[k]) for k in fresh)
    # Each fold tuned its own copy of the encoder.
    (other,) = ckpt["members"]
    assert any(not torch.equal(tuned[k], other[f"text_encoder.{k}"]) for k in tuned)
    # The checkpoint alone (with its tuned encoder) gives the dev report train.py wrote.
    ann = demo_data / "annotations"
    pred = tmp_path / "dev.jsonl"
    assert predict.main(["--run", str(out), "--input", str(ann / "dev.json"), "--out", str(pred),
                         "--cache-dir", str(feature_cache), "--quiet"]) == 0
    assert evaluate.main(["--gold", str(ann / "dev.json"), "--pred", str(pred),
                          "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text()) == json.loads(
        (out / "dev_report_thresholds" / "report.json").read_text())


def test_init_head_starts_from_the_given_run(demo_data, feature_cache, tmp_path):
    # One head, no TF-IDF: at lr 0 the head never moves, so the new run's dev report is the
    # source run's.
    single = ("--folds", "1", "--tfidf-weight", "0")
    source = tmp_path / "source"
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, source), *single]) == 0
    out = tmp_path / "warm"
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, out), *single, "--lr", "0",
                       "--init-head", str(source / "checkpoint.pt")]) == 0
    for report in ("dev_report", "dev_report_thresholds"):
        assert (json.loads((out / report / "report.json").read_text())
                == json.loads((source / report / "report.json").read_text()))
    # Without --init-head the same lr-0 run keeps its random head and scores otherwise.
    cold = tmp_path / "cold"
    assert train.main(["--task", "A", *_args(demo_data, feature_cache, cold), *single,
                       "--lr", "0"]) == 0
    assert (json.loads((cold / "dev_report" / "report.json").read_text())
            != json.loads((source / "dev_report" / "report.json").read_text()))


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

    from hateful_memes.checkpoints import load
    from hateful_memes.crossval import caption_key
    from hateful_memes.data import read_annotations

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
    # The blend is what it says: half heads, half TF-IDF.
    np.testing.assert_allclose(oof["raw_pc"], 0.5 * oof["heads_pc"] + 0.5 * oof["tfidf_pc"],
                               atol=1e-6)


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
