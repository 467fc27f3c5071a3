import json

import numpy as np
import pytest

from hateful_memes.data import Meme, gold_matrix, read_annotations
from hateful_memes.labels import PC
from hateful_memes.metrics import evaluate, official, task_report

# Four memes, hate task, columns (not_hateful, hateful).
GOLD = np.array([[0, 1],   # meme 1 hateful
                 [1, 0],   # meme 2 not
                 [0, 1],   # meme 3 hateful
                 [1, 0]])  # meme 4 not
SCORES = np.array([[0.3, 0.8],
                   [0.6, 0.4],
                   [0.7, 0.2],
                   [0.45, 0.1]])
# Micro AUROC ranks all 8 cells together.
#   positive cells: 0.8, 0.6, 0.2, 0.45     negative cells: 0.3, 0.4, 0.7, 0.1
#   positive above negative: 0.8 -> 4, 0.6 -> 3, 0.2 -> 1, 0.45 -> 3   = 11 of 16 pairs
MICRO_AUROC = 11 / 16
# Micro F1 at > 0.5: predicted cells 0.8 (TP), 0.6 (TP), 0.7 (FP); missed 0.2, 0.45 (FN).
#   TP 2, FP 1, FN 2 -> F1 = 2*2 / (2*2 + 1 + 2)
MICRO_F1 = 4 / 7
# Per label.  not_hateful: gold 0 1 0 1, pred 0 1 1 0 -> TP 1 FP 1 FN 1: P 1/2 R 1/2 F1 1/2
#             hateful:     gold 1 0 1 0, pred 1 0 0 0 -> TP 1 FP 0 FN 1: P 1   R 1/2 F1 2/3
PER_LABEL = {"not_hateful": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
             "hateful": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}}
MACRO_F1 = (1 / 2 + 2 / 3) / 2
# Binary AUROC on the hateful column: positives 0.8, 0.2; negatives 0.4, 0.1
#   0.8 -> 2, 0.2 -> 1  = 3 of 4 pairs
BINARY_AUROC = 3 / 4


def memes_for(gold_hate, ids):
    names = ("not_hateful", "hateful")
    return [Meme(id, f"img/{id}.png", "t", (names[int(np.argmax(g))],),
                 ("race",) if g[1] else ("pc_empty",), ("attack_empty",))
            for id, g in zip(ids, gold_hate)]


def test_official_matches_hand_computed_pair_and_count_values():
    result = official(GOLD, SCORES)
    assert result == pytest.approx({"roc_auc_micro": MICRO_AUROC, "f1_micro": MICRO_F1})
    assert all(type(v) is float for v in result.values())


def test_official_auroc_counts_a_tie_as_half_a_pair():
    # positives 0.5, 0.9; negatives 0.5, 0.1: 0.5 ties 0.5 (1/2), beats 0.1; 0.9 beats both.
    gold = np.array([[1, 0], [0, 1]])
    scores = np.array([[0.5, 0.5], [0.1, 0.9]])
    assert official(gold, scores)["roc_auc_micro"] == pytest.approx(3.5 / 4)


def test_task_report_per_label_and_macro_by_hand():
    report = task_report("hate", GOLD, SCORES)
    per_label = report.pop("per_label")
    assert report == pytest.approx({"roc_auc_micro": MICRO_AUROC, "f1_micro": MICRO_F1,
                                    "f1_macro": MACRO_F1})
    assert list(per_label) == ["not_hateful", "hateful"]
    for label, expected in PER_LABEL.items():
        assert per_label[label] == pytest.approx(expected)
    assert type(per_label["hateful"]["support"]) is int


def test_task_report_counts_a_never_predicted_label_as_zero_f1():
    gold = np.zeros((3, len(PC)), dtype=int)
    gold[:, 0] = 1
    gold[0] = [0, 1, 0, 0, 0, 0]
    gold[0, 0] = 0
    scores = np.where(gold == 1, 0.9, 0.1)
    scores[0, 1] = 0.2  # the one disability meme is missed
    report = task_report("pc", gold, scores)
    # pc_empty: TP 2, FP 0, FN 0 -> F1 1; disability: missed -> 0; the four absent labels: 0.
    assert report["per_label"]["pc_empty"]["f1"] == 1.0
    assert report["per_label"]["disability"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                 "support": 1}
    assert report["f1_macro"] == pytest.approx(1 / 6)


def test_undefined_auroc_is_none_not_a_crash():
    assert official(np.zeros((2, 3)), np.full((2, 3), 0.2))["roc_auc_micro"] is None
    memes = memes_for(np.array([[0, 1], [0, 1]]), [1, 2])
    report = evaluate(memes, [1, 2], {"hate": np.array([[0.2, 0.8], [0.6, 0.4]])})
    assert report["hate_auroc_binary"] is None
    # Micro AUROC is still defined: positives 0.8, 0.4 vs negatives 0.2, 0.6 -> 2 + 1 of 4.
    assert report["hate"]["roc_auc_micro"] == pytest.approx(3 / 4)


def test_evaluate_aligns_by_id_on_the_overlap_only():
    memes = memes_for(np.vstack([GOLD, [[1, 0]]]), [11, 12, 13, 14, 15])
    # Predictions in another order, with meme 15 missing and an id (99) gold does not know.
    order = [3, 1, 0, 2]
    ids = [14, 12, 11, 13, 99]
    hate = np.vstack([SCORES[order], [[0.0, 1.0]]])
    pc = np.full((5, len(PC)), 0.5)
    report = evaluate(memes, ids, {"hate": hate, "pc": pc})
    assert set(report) == {"n_gold", "n_scored", "hate_auroc_binary", "hate", "pc"}
    assert (report["n_gold"], report["n_scored"]) == (5, 4)
    assert report["hate"] == task_report("hate", GOLD, SCORES)
    assert report["hate_auroc_binary"] == pytest.approx(BINARY_AUROC)
    assert json.loads(json.dumps(report)) == report


def test_evaluate_without_hate_has_no_binary_auroc_and_refuses_bad_input():
    memes = memes_for(GOLD, [1, 2, 3, 4])
    report = evaluate(memes, [1, 2, 3, 4], {"pc": np.full((4, len(PC)), 0.3)})
    assert report["hate_auroc_binary"] is None and set(report) == {
        "n_gold", "n_scored", "hate_auroc_binary", "pc"}
    with pytest.raises(ValueError, match="no task scores given"):
        evaluate(memes, [1, 2, 3, 4], {})
    with pytest.raises(ValueError, match="none of the 1 predicted ids"):
        evaluate(memes, [77], {"hate": np.full((1, 2), 0.5)})
    with pytest.raises(ValueError, match="id 2 predicted twice"):
        evaluate(memes, [1, 2, 2], {"hate": np.full((3, 2), 0.5)})
    with pytest.raises(ValueError, match=r"hate: expected scores of shape \(2, 2\)"):
        evaluate(memes, [1, 2], {"hate": np.full((2, 3), 0.5)})
    unlabelled = [Meme(1, "img/1.png", "t")]
    with pytest.raises(ValueError, match="meme 1 has no gold_hate"):
        evaluate(unlabelled, [1], {"hate": np.full((1, 2), 0.5)})


@pytest.mark.parametrize("task, expected", [("pc", 0.765), ("attack", 0.832)])
def test_constant_train_prior_on_real_dev_seen_matches_the_readme(task, expected,
                                                                  real_annotations):
    # The annotations' README: a constant per-label prior reaches these micro AUROCs.
    prior = gold_matrix(read_annotations(real_annotations / "train.json"), task).mean(axis=0)
    dev = read_annotations(real_annotations / "dev_seen.json")
    scores = np.tile(prior, (len(dev), 1))
    result = official(gold_matrix(dev, task), scores)
    assert round(result["roc_auc_micro"], 3) == expected
