import json

import numpy as np
import pytest

from hateful_memes.data.annotations import Meme, gold_matrix, read_annotations
from hateful_memes.evaluation.metrics import (calibration, compare_reports, cooccurrence,
                                              disagreements, evaluate, expected_calibration_error,
                                              official, pr_curve, task_report, top_errors)
from hateful_memes.labels import LABELS, PC

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
# Per-label AUROC.  not_hateful: positives 0.6, 0.45 vs negatives 0.3, 0.7 -> 1 + 1 of 4 pairs.
#                  hateful: positives 0.8, 0.2 vs negatives 0.4, 0.1 -> 2 + 1 of 4 pairs.
# Average precision, sum over the positives in score order of (recall step) x precision there.
#   not_hateful by score: 0.7 -, 0.6 +, 0.45 +, 0.3 -  -> 1/2 * 1/2 + 1/2 * 2/3
#   hateful by score:     0.8 +, 0.4 -, 0.2 +, 0.1 -   -> 1/2 * 1   + 1/2 * 2/3
# Calibration error with ten equal bins, per label each cell alone in its bin:
#   not_hateful |0.3-0| |0.6-1| |0.7-0| |0.45-1| -> (0.3 + 0.4 + 0.7 + 0.55) / 4
#   hateful     |0.8-1| |0.4-0| |0.2-1| |0.1-0|  -> (0.2 + 0.4 + 0.8 + 0.1) / 4
PER_LABEL = {"not_hateful": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2,
                             "auroc": 2 / 4, "average_precision": 1 / 4 + 1 / 3,
                             "ece": 1.95 / 4},
             "hateful": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2,
                         "auroc": 3 / 4, "average_precision": 1 / 2 + 1 / 3, "ece": 1.5 / 4}}
MACRO_F1 = (1 / 2 + 2 / 3) / 2
# Pooled over all 8 cells, only 0.4 (-) and 0.45 (+) share a bin (0.4-0.5): mean score 0.425,
# positives 1/2 -> 2 * 0.075; the six cells alone in their bins, 0.3-, 0.8+, 0.6+, 0.7-,
# 0.2+, 0.1-, add 0.3 + 0.2 + 0.4 + 0.7 + 0.8 + 0.1 = 2.5.
ECE = (2.5 + 2 * 0.075) / 8
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
                                    "f1_macro": MACRO_F1, "ece": ECE})
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
    disability = report["per_label"]["disability"]
    assert {k: disability[k] for k in ("precision", "recall", "f1", "support")} == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # With no positive in the gold, AUROC and average precision are undefined, not 0.
    assert report["per_label"]["religion"]["auroc"] is None
    assert report["per_label"]["religion"]["average_precision"] is None
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
    with pytest.raises(ValueError, match=r"unknown task \['colour'\]; expected some of"):
        evaluate(memes, [1, 2, 3, 4], {"colour": np.full((4, 2), 0.5)})
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


def test_calibration_error_is_about_zero_when_calibrated_and_not_when_shifted():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    gold = rng.random(p.size) < p  # each outcome drawn with the score's own probability
    assert expected_calibration_error(gold, p) < 0.01
    # Scores 0.2 too high (clipped at 1) miss by about 0.2 except in the clipped top bins.
    shifted = np.clip(p + 0.2, 0, 1)
    assert expected_calibration_error(gold, shifted) > 0.15
    bins = calibration(gold, p)["bins"]
    assert sum(b["n"] for b in bins) == p.size and len(bins) == 10
    for b in bins:
        assert b["lo"] <= b["mean_score"] < b["hi"]
        assert b["frac_positive"] == pytest.approx(b["mean_score"], abs=0.02)


def test_calibration_puts_a_score_of_one_in_the_last_bin():
    result = calibration(np.array([1, 1, 0]), np.array([1.0, 0.95, 0.0]))
    assert [(b["lo"], b["n"]) for b in result["bins"]] == [(0.0, 1), (0.9, 2)]
    # last bin: mean score 0.975, all positive; first: 0 and 0.
    assert result["ece"] == pytest.approx(2 * 0.025 / 3)


def test_pr_curve_marks_the_operating_point_and_the_best_f1_cut():
    gold = np.array([1, 0, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.2, 0.1])
    curve = pr_curve(gold, scores)
    # > 0.5 predicts 0.9 (+) and 0.8 (-): P 1/2, R 1/3, F1 2/5.
    assert curve["at_threshold"] == pytest.approx(
        {"threshold": 0.5, "precision": 1 / 2, "recall": 1 / 3, "f1": 2 / 5, "n_predicted": 2})
    # Cuts at each score: >= 0.3 takes 4 rows with 3 positives: P 3/4 R 1, F1 6/7, the best.
    assert curve["best_f1"] == pytest.approx(
        {"threshold": 0.3, "precision": 3 / 4, "recall": 1.0, "f1": 6 / 7})
    assert curve["prevalence"] == 0.5
    assert len(curve["precision"]) == len(curve["recall"])
    assert pr_curve(np.zeros(3), np.array([0.1, 0.6, 0.9])) is None


def test_top_errors_are_the_most_confident_wrong_rows_in_order():
    gold = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    scores = np.array([0.6, 0.9, 0.2, 0.5, 0.4, 0.8, 0.6, 0.1])
    # FP: gold 0 above 0.5 -> rows 1 (0.9), 0 and 6 (0.6 tie, row order); 4 (0.4) is no error.
    # FN: gold 1 at or below 0.5 -> 7 (0.1), 2 (0.2), 3 (0.5); row 5 (0.8) is a hit.
    assert top_errors(gold, scores) == {"fp": [1, 0, 6], "fn": [7, 2, 3]}
    assert top_errors(gold, scores, k=2) == {"fp": [1, 0], "fn": [7, 2]}


def test_cooccurrence_counts_gold_against_predicted_labels():
    # pc_empty, disability, race: three memes.
    gold = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0]])
    pred = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    # meme 1: empty -> race; meme 2: {dis, race} -> dis; meme 3: dis -> empty.
    assert cooccurrence(gold, pred) == [[0, 0, 1], [1, 1, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="equal"):
        cooccurrence(gold, pred[:2])


def test_compare_reports_of_a_report_with_itself_is_all_zero_and_signs_are_b_minus_a():
    memes = memes_for(GOLD, [1, 2, 3, 4])
    a = evaluate(memes, [1, 2, 3, 4], {"hate": SCORES})
    same = compare_reports(a, a)
    headline = same["hate"]["headline"].values()
    deltas = [same["hate_auroc_binary"]["delta"], *(d["delta"] for d in headline)]
    deltas += [d["delta"] for m in same["hate"]["per_label"].values() for d in m.values()]
    assert deltas and all(d == 0 for d in deltas)
    perfect = evaluate(memes, [1, 2, 3, 4], {"hate": GOLD.astype(float)})
    better = compare_reports(a, perfect)
    assert better["hate_auroc_binary"]["delta"] == pytest.approx(1 - BINARY_AUROC)
    assert better["hate"]["per_label"]["hateful"]["f1"]["delta"] == pytest.approx(1 - 2 / 3)


def test_disagreements_rank_rows_by_their_largest_score_difference():
    a = {"hate": SCORES, "pc": np.full((4, len(PC)), 0.5)}
    b = {"hate": SCORES.copy(), "pc": np.full((4, len(PC)), 0.5)}
    b["hate"][2, 1] += 0.3
    b["pc"][0, 3] = 0.1  # 0.4 away on "race"
    b["pc"][3, 0] = 0.45
    found = disagreements(a, b)
    assert [d[:3] for d in found] == [(0, "pc", "race"), (2, "hate", "hateful"),
                                      (3, "pc", "pc_empty")]
    assert [d[3] for d in found] == pytest.approx([0.4, 0.3, 0.05])
    assert disagreements(a, a) == []
    assert disagreements(a, b, k=1)[0][:3] == (0, "pc", "race")
    assert LABELS["pc"][3] == "race"
