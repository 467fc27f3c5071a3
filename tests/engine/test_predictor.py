"""engine/predictor.py: a trained run as one scorer (bagged heads, TF-IDF view, prior,
thresholds), and the checkpoint that alone rebuilds it."""
import re

import numpy as np
import pytest
import torch

from hateful_memes.engine.predictor import RunPredictor, blend
from hateful_memes.engine.training import predict_scores
from hateful_memes.features.inputs import Inputs
from hateful_memes.models.model import MemeModel, ModelConfig, save_checkpoint
from hateful_memes.runtime.checkpoints import CheckpointError
from hateful_memes.scoring import calibration
from hateful_memes.scoring import thresholds as th

CFG = dict(tasks=("pc",), text_encoder="minilm", image_encoder="none", text_dim=8, hidden=8,
           dropout=0.0)


def _heads(n=2):
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(MemeModel(ModelConfig(**CFG)).eval())
    return out


def _inputs(n=40):
    return Inputs(None, torch.from_numpy(np.random.default_rng(0).normal(size=(n, 8))
                                         .astype(np.float32)))


def test_blend_is_the_weighted_mean_of_the_two_views():
    g = np.random.default_rng(1)
    heads = {"pc": g.random((5, 6)).astype(np.float32)}
    tfidf = {"pc": g.random((5, 6)).astype(np.float32)}
    np.testing.assert_array_equal(blend(heads, tfidf, 0.0)["pc"], heads["pc"])
    np.testing.assert_allclose(blend(heads, tfidf, 1.0)["pc"], tfidf["pc"])
    np.testing.assert_allclose(blend(heads, tfidf, 0.25)["pc"],
                               0.75 * heads["pc"] + 0.25 * tfidf["pc"], rtol=1e-6)
    assert blend(heads, None, 0.5)["pc"] is heads["pc"]


def test_the_neighbours_are_mixed_into_the_task_labels_and_not_the_hateful_score():
    g = np.random.default_rng(2)
    views = [{t: g.random((5, w)).astype(np.float32) for t, w in (("hate", 2), ("pc", 6))}
             for _ in range(3)]
    heads, tfidf, knn = views
    mixed = blend(heads, tfidf, 0.5, knn, 0.1)
    np.testing.assert_allclose(mixed["pc"], 0.9 * (0.5 * heads["pc"] + 0.5 * tfidf["pc"])
                               + 0.1 * knn["pc"], rtol=1e-6)
    np.testing.assert_allclose(mixed["hate"], 0.5 * heads["hate"] + 0.5 * tfidf["hate"],
                               rtol=1e-6)
    np.testing.assert_array_equal(blend(heads, None, 0.0, knn, 0.0)["pc"], heads["pc"])


def _neighbours(n=30):
    from hateful_memes.data.annotations import Meme
    from hateful_memes.models.neighbours import CaptionNeighbours

    memes = [Meme(id=i, img=f"img/{i}.png", text=f"caption {i}",
                  gold_hate=("hateful",) if i % 2 else ("not_hateful",),
                  gold_pc=("race",) if i % 2 else ("pc_empty",),
                  gold_attack=("mocking",) if i % 2 else ("attack_empty",)) for i in range(n)]
    emb = np.random.default_rng(4).normal(size=(n, 8)).astype(np.float32)
    return CaptionNeighbours.from_memes(memes, emb, k=3)


def test_a_run_with_neighbours_reads_the_captions_features_and_its_checkpoint_keeps_them(
        tmp_path):
    heads, inputs = _heads(2), _inputs()
    texts = [f"caption {i}" for i in range(len(inputs))]
    nb = _neighbours()
    plain = RunPredictor(heads).raw_scores_of(inputs, texts)
    scorer = RunPredictor(heads, neighbours=nb, knn_weight=0.2)
    raw = scorer.raw_scores_of(inputs, texts)
    knn = nb.predict(inputs.text.numpy(), texts)
    np.testing.assert_allclose(raw["pc"], 0.8 * plain["pc"] + 0.2 * knn["pc"], rtol=1e-6)
    np.testing.assert_array_equal(raw["hate"], plain["hate"])
    save_checkpoint(tmp_path / "checkpoint.pt", heads[0], members=[heads[1].state_dict()],
                    neighbours=nb.state_dict(), knn_weight=0.2)
    loaded = RunPredictor.load(tmp_path, device="cpu")
    np.testing.assert_array_equal(loaded.raw_scores_of(inputs, texts)["pc"], raw["pc"])
    with pytest.raises(ValueError, match="knn_weight > 0 needs the caption neighbours"):
        RunPredictor(heads, knn_weight=0.1)
    save_checkpoint(tmp_path / "checkpoint.pt", heads[0], knn_weight=0.1)
    with pytest.raises(CheckpointError, match="knn_weight is 0.1 but it holds no caption"):
        RunPredictor.load(tmp_path, device="cpu")
    save_checkpoint(tmp_path / "checkpoint.pt", heads[0], knn_weight=0.1,
                    neighbours={**nb.state_dict(), "keys": ["x"]})
    with pytest.raises(CheckpointError, match="its caption neighbours is damaged"):
        RunPredictor.load(tmp_path, device="cpu")


def test_the_heads_of_a_run_are_averaged():
    heads, inputs = _heads(3), _inputs()
    raw = RunPredictor(heads).raw_scores_of(inputs, [""] * len(inputs))
    each = [predict_scores(m, inputs) for m in heads]
    for task in ("hate", "pc"):
        np.testing.assert_allclose(raw[task], np.mean([e[task] for e in each], axis=0),
                                   rtol=1e-6)


def test_finish_folds_each_threshold_onto_the_cut_and_keeps_each_label_s_order():
    inputs = _inputs(200)
    raw = RunPredictor(_heads(1)).raw_scores_of(inputs, [""] * 200)
    t = np.quantile(raw["pc"], 0.7, axis=0)  # one threshold per label, away from 0.5
    scorer = RunPredictor(_heads(1), thresholds={"pc": t}, train_prior=0.35)
    out = scorer.finish(raw)
    np.testing.assert_array_equal(out["pc"] > 0.5, raw["pc"] > t)
    for j in range(raw["pc"].shape[1]):
        order = np.argsort(raw["pc"][:, j], kind="stable")
        assert np.all(np.diff(out["pc"][order, j]) >= 0)
    np.testing.assert_array_equal(out["pc"], th.apply(raw["pc"], t))
    np.testing.assert_array_equal(scorer.finish(raw, fold=False)["pc"], raw["pc"])
    # The training prevalence as the target moves nothing; another one moves the scores.
    np.testing.assert_allclose(scorer.finish(raw, prior=0.35, fold=False)["hate"], raw["hate"],
                               atol=1e-6)
    lower = scorer.finish(raw, prior=0.05, fold=False)["hate"][:, 1]
    assert np.all(lower <= raw["hate"][:, 1] + 1e-7) and np.any(lower < raw["hate"][:, 1])


def test_a_prior_needs_the_training_prevalence_and_a_blend_its_tfidf_model():
    raw = RunPredictor(_heads(1)).raw_scores_of(_inputs(), [""] * 40)
    with pytest.raises(ValueError, match="run old: its checkpoint records no training"):
        RunPredictor(_heads(1), name="old").finish(raw, prior=0.2)
    with pytest.raises(ValueError, match="needs a TF-IDF model"):
        RunPredictor(_heads(1), tfidf_weight=0.5)
    with pytest.raises(ValueError, match="at least one model"):
        RunPredictor([])


def test_raw_scores_are_the_blend_mapped_by_the_runs_platt_fits():
    heads, inputs = _heads(2), _inputs()
    texts = [""] * len(inputs)
    blended = RunPredictor(heads).raw_scores_of(inputs, texts)
    params = {"pc": np.tile([2.0, -1.0], (6, 1)), "hate": np.tile([0.5, 0.3], (2, 1))}
    raw = RunPredictor(heads, calibration=params).raw_scores_of(inputs, texts)
    for task in ("hate", "pc"):
        np.testing.assert_allclose(raw[task], calibration.apply(blended[task], params[task]),
                                   rtol=1e-6)
        assert not np.allclose(raw[task], blended[task], atol=1e-3)
    # A run without maps (older checkpoints) scores the blend as it is.
    only_pc = RunPredictor(heads, calibration={"pc": params["pc"]}).raw_scores_of(inputs, texts)
    np.testing.assert_array_equal(only_pc["hate"], blended["hate"])


def test_the_checkpoint_alone_rebuilds_the_scorer(tmp_path):
    heads, inputs = _heads(2), _inputs()
    t = {"pc": [0.3, 0.4, 0.5, 0.6, 0.2, 0.45]}
    cal = {"pc": [[1.5, -0.5]] * 6, "hate": [[0.8, 0.1]] * 2}
    save_checkpoint(tmp_path / "checkpoint.pt", heads[0], members=[heads[1].state_dict()],
                    tfidf=None, tfidf_weight=0.0, thresholds=t, fold_thresholds=True,
                    train_prior=0.35, calibration=cal)
    loaded = RunPredictor.load(tmp_path, device="cpu")
    assert (len(loaded.models), loaded.train_prior, loaded.name) == (2, 0.35, tmp_path.name)
    here = RunPredictor(heads, thresholds=t, train_prior=0.35, calibration=cal)
    texts = [""] * len(inputs)
    for task in ("hate", "pc"):
        np.testing.assert_array_equal(loaded.finish(loaded.raw_scores_of(inputs, texts))[task],
                                      here.finish(here.raw_scores_of(inputs, texts))[task])


def test_a_missing_or_mismatched_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        RunPredictor.load(tmp_path / "nowhere")
    other = MemeModel(ModelConfig(**{**CFG, "hidden": 4}))
    save_checkpoint(tmp_path / "checkpoint.pt", _heads(1)[0], members=[other.state_dict()])
    with pytest.raises(CheckpointError, match="member 1 does not fit"):
        RunPredictor.load(tmp_path, device="cpu")
    save_checkpoint(tmp_path / "checkpoint.pt", _heads(1)[0], calibration={"pc": [[1.0, 0.0]]})
    with pytest.raises(CheckpointError, match=r"pc calibration has shape \(1, 2\)"):
        RunPredictor.load(tmp_path, device="cpu")
    save_checkpoint(tmp_path / "checkpoint.pt", _heads(1)[0],
                    calibration={"pc": [["a", "b"]] * 6})
    with pytest.raises(CheckpointError, match="pc calibration has shape None"):
        RunPredictor.load(tmp_path, device="cpu")


@pytest.mark.parametrize("entry, value, problem", [
    ("thresholds", {"pc": [0.5]}, "'pc' thresholds are [0.5], not one number in [0, 1]"),
    ("thresholds", {"pc": [float("nan")] * 6}, "'pc' thresholds are [nan"),
    ("thresholds", {"zz": [0.5]}, "'zz' thresholds"),
    ("thresholds", [0.5] * 6, "thresholds entry is not a table by task (list)"),
    ("calibration", "platt", "calibration entry is not a table by task (str)"),
    ("members", 2, "members entry is not a list of weights (int)"),
    ("tfidf_weight", "0.5", "tfidf_weight is '0.5', not a number in [0, 1]"),
    ("knn_weight", 1.5, "knn_weight is 1.5, not a number in [0, 1]"),
    ("train_prior", 1.5, "train_prior is 1.5, not a rate in (0, 1)"),
])
def test_a_damaged_run_entry_is_named_with_the_checkpoint(tmp_path, entry, value, problem):
    # Before, these failed in numpy without naming the file (an IndexError, an
    # AttributeError), or wrote NaN scores and then blamed the submission for them.
    save_checkpoint(tmp_path / "checkpoint.pt", _heads(1)[0], **{entry: value})
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint.pt: its {problem}")):
        RunPredictor.load(tmp_path, device="cpu")


def _twins():
    from hateful_memes.data.annotations import Meme
    from hateful_memes.data.twins import CaptionTwins

    memes = [Meme(id=1, img="img/1.png", text="same words", gold_hate=("not_hateful",),
                  gold_pc=("pc_empty",), gold_attack=("attack_empty",)),
             Meme(id=2, img="img/2.png", text="other words", gold_hate=("hateful",),
                  gold_pc=("race",), gold_attack=("mocking",))]
    return CaptionTwins.from_memes(memes)


def test_maps_with_twin_features_read_the_captions_and_ids(tmp_path):
    heads, inputs = _heads(2), _inputs(4)
    texts, ids = ["Same words!", "same words", "new words", "other words"], [9, 1, 9, 2]
    # +3 on the logit for a meme with a twin. Meme 0 has one (training meme 1); meme 1 is
    # training meme 1 itself, which is not its own twin; memes 2 and 3 have none.
    cal = {"pc": [[1.0, 0.0, 3.0, 0.0, 0.0]] * 6, "hate": [[1.0, 0.0, 0.0, 0.0, 0.0]] * 2}
    run = RunPredictor(heads, calibration=cal, twins=_twins())
    plain = RunPredictor(heads).raw_scores_of(inputs, texts)["pc"]
    mapped = run.raw_scores_of(inputs, texts, ids=ids)["pc"]
    assert (mapped[0] > plain[0] + 0.1).all()
    np.testing.assert_allclose(mapped[1:], plain[1:], rtol=1e-5)
    # Without ids a training meme's caption counts its own entry.
    assert (run.raw_scores_of(inputs, texts)["pc"][1] > plain[1] + 0.1).all()
    with pytest.raises(ValueError, match="needs the run's caption twins"):
        RunPredictor(heads, calibration=cal)
    with pytest.raises(ValueError, match="give the captions"):
        run.calibrate({"pc": plain})
    # The checkpoint keeps the twins, and a run rebuilt from it scores the same.
    save_checkpoint(tmp_path / "checkpoint.pt", heads[0], members=[heads[1].state_dict()],
                    calibration=cal, twins=_twins().state_dict())
    loaded = RunPredictor.load(tmp_path, device="cpu")
    np.testing.assert_array_equal(loaded.raw_scores_of(inputs, texts, ids=ids)["pc"], mapped)
    # Twin weights without the twins they read are a damaged checkpoint.
    save_checkpoint(tmp_path / "checkpoint.pt", heads[0], calibration=cal)
    with pytest.raises(CheckpointError, match=r"pc calibration has shape \(6, 5\)"):
        RunPredictor.load(tmp_path, device="cpu")
    save_checkpoint(tmp_path / "checkpoint.pt", heads[0], calibration=cal,
                    twins={"keys": ["a"], "ids": [], "gold": {}})
    with pytest.raises(CheckpointError, match="caption twins table is damaged"):
        RunPredictor.load(tmp_path, device="cpu")
    save_checkpoint(tmp_path / "checkpoint.pt", heads[0], tfidf={"vocabulary": 3})
    with pytest.raises(CheckpointError, match="TF-IDF model is damaged"):
        RunPredictor.load(tmp_path, device="cpu")
