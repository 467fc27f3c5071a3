"""Does per-label Platt calibration of the blend, fitted out of fold on train, raise micro AUROC?

    python experiments/unseen_check.py          # first: its runs are what this reads
    python experiments/calibration_check.py     # a line per seed and task, a few minutes

Micro AUROC pools every (meme, label) cell into one ranking, which prefers scores calibrated
across labels; an average of two models' probabilities need not be. Each label's blended score
is mapped by a logistic regression on its logit, fitted on train's out-of-fold scores (nested:
a fold's memes by the fit on the other folds), and micro AUROC compared before and after, out
of fold and on dev_seen. Not part of train.py (yet): see experiments/README.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hateful_memes.data.annotations import gold_matrix, read_annotations  # noqa: E402
from hateful_memes.engine.predictor import RunPredictor  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "woah2021" / "annotations"
RUNS = ROOT / "experiments" / "runs" / "unseen"  # unseen_check.py's runs
CACHE = ROOT / "cache" / "features"


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def platt(fit_scores: np.ndarray, fit_gold: np.ndarray, scores: np.ndarray) -> np.ndarray:
    out = np.empty_like(scores)
    for k in range(fit_scores.shape[1]):
        if fit_gold[:, k].min() == fit_gold[:, k].max():
            out[:, k] = scores[:, k]
            continue
        model = LogisticRegression(C=100).fit(logit(fit_scores[:, k:k + 1]), fit_gold[:, k])
        out[:, k] = model.predict_proba(logit(scores[:, k:k + 1]))[:, 1]
    return out


def main() -> int:
    train, dev = read_annotations(DATA / "train.json"), read_annotations(DATA / "dev_seen.json")
    for run in sorted(RUNS.glob("[AB]-s*")):
        task = {"A": "pc", "B": "attack"}[run.name[0]]
        saved = np.load(run / "oof_scores.npz")
        oof, fold_of = saved[f"raw_{task}"], saved["fold_of"]
        gold, gold_dev = gold_matrix(train, task), gold_matrix(dev, task)
        dev_scores = RunPredictor.load(run, "cpu").raw_scores(dev, DATA.parent, CACHE)[task]
        calibrated = np.empty_like(oof)
        for f in np.unique(fold_of):
            held = fold_of == f
            calibrated[held] = platt(oof[~held], gold[~held], oof[held])
        calibrated_dev = platt(oof, gold, dev_scores)

        def auc(g, s):
            return roc_auc_score(g, s, average="micro")

        print(f"{run.name} {task}: out of fold {auc(gold, oof):.4f} -> "
              f"{auc(gold, calibrated):.4f}; dev_seen {auc(gold_dev, dev_scores):.4f} -> "
              f"{auc(gold_dev, calibrated_dev):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
