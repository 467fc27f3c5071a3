"""What limits a caption-only model on dev_seen, and what averaging it with TF-IDF buys.

    python experiments/text_only_analysis.py            # 3 seeds, about 1 min (features cached)
    python experiments/text_only_analysis.py --seeds 0

Our model is trained as in experiments/text_frozen.yaml (`--task AB`, one run a seed), the
TF-IDF peer with the C that bench.py chooses (1). Two tables, text only:

1. Seen captions. Hateful Memes pairs memes with "benign confounders": the same caption over
   another picture, with the other label. Dev memes whose caption (`crossval.caption_key`, as
   the folds and the twins match it) also occurs in train.json are counted, with how often
   train gave that caption the same hateful label; then the hateful AUROC of both systems on
   the seen and on the unseen captions.
2. Ensemble. Scores `(1 - w) * ours + w * tfidf`, label by label, for w from 0 (ours alone)
   to 1 (TF-IDF alone): the RESULTS.md columns at the 0.5 cut, and micro / macro F1 with 2-fold
   cross-fitted dev thresholds (split seed = the run's seed).

A measurement on one head with dev thresholds, the project's first of the TF-IDF average;
train.py's defaults have since blended TF-IDF in at 0.5 (experiments/README.md).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))
from bench import (DATA, _crossfit_scores, add_seeds, mean_pm,  # noqa: E402
                   missing_annotations)

from hateful_memes.cli import train  # noqa: E402
from hateful_memes.data.annotations import gold_matrix, read_annotations  # noqa: E402
from hateful_memes.data.crossval import caption_key  # noqa: E402
from hateful_memes.evaluation.metrics import evaluate  # noqa: E402
from hateful_memes.features.inputs import Encoders, build_inputs  # noqa: E402
from hateful_memes.labels import LABELS  # noqa: E402
from hateful_memes.models.baselines import TfidfLogReg  # noqa: E402
from hateful_memes.models.model import load_checkpoint  # noqa: E402
from hateful_memes.engine.training import predict_scores  # noqa: E402

WORK = ROOT / "experiments" / "runs" / "text_only"
CACHE = ROOT / "experiments" / "cache" / "text_only"
WEIGHTS = (0.0, 0.3, 0.5, 0.7, 1.0)
TASKS = ("pc", "attack")
HATEFUL = LABELS["hate"].index("hateful")


def our_dev_scores(seed: int, data: Path) -> dict[str, np.ndarray]:
    settings = yaml.safe_load((ROOT / "experiments" / "text_frozen.yaml").read_text())
    cfg = {**train.DEFAULTS, **settings, "task": "AB", "seed": seed,
           "train": str(data / "train.json"), "dev": str(data / "dev_seen.json"),
           "cache_dir": str(CACHE), "out": str(WORK / f"s{seed}")}
    train.run(cfg, progress=False, overwrite=True)  # the script's own run
    model, _ = load_checkpoint(WORK / f"s{seed}" / "checkpoint.pt")
    inputs = build_inputs(read_annotations(cfg["dev"]), model.cfg,
                          Encoders("none", model.cfg.text_encoder), data.parent,
                          cache_dir=CACHE, progress=False)
    return predict_scores(model, inputs)


def seen_captions_table(train_memes, dev, ours: dict, tfidf: dict) -> list[str]:
    train_hate = defaultdict(list)
    for meme, y in zip(train_memes, gold_matrix(train_memes, "hate")[:, HATEFUL]):
        train_hate[caption_key(meme.text)].append(y)
    y = gold_matrix(dev, "hate")[:, HATEFUL]
    seen = np.array([caption_key(m.text) in train_hate for m in dev])
    labels_in_train = [(train_hate[caption_key(m.text)], yi) for m, yi, s in zip(dev, y, seen) if s]
    same = sum(all(v == yi for v in vs) for vs, yi in labels_in_train)
    other = sum(all(v != yi for v in vs) for vs, yi in labels_in_train)

    def auroc(scores, mask):
        return roc_auc_score(y[mask], scores["hate"][mask, HATEFUL])

    lines = [f"Dev memes whose caption occurs in train.json: {seen.sum()} of {len(dev)}; train "
             f"gave that caption the same hateful label every time for {same}, the other label "
             f"every time for {other}, both for {seen.sum() - same - other}.", "",
             "| dev memes | n | hateful share | hateful AUROC, ours (mean ± sd) | TF-IDF |",
             "|---|---:|---:|---:|---:|"]
    for name, mask in (("caption seen in train", seen), ("caption not in train", ~seen),
                       ("all", np.ones_like(seen))):
        ours_auc = [auroc(s, mask) for s in ours.values()]
        lines.append(f"| {name} | {mask.sum()} | {y[mask].mean():.2f} | "
                     f"{mean_pm(ours_auc)} | "
                     f"{auroc(tfidf, mask):.3f} |")
    return lines


def _row(dev, scores: dict, seed: int) -> list[float]:
    ids = [m.id for m in dev]
    cut = evaluate(dev, ids, scores)
    cross = evaluate(dev, ids, _crossfit_scores(dev, scores, seed))
    out = []
    for t in TASKS:
        out += [cut[t]["roc_auc_micro"], cut[t]["f1_micro"], cut[t]["f1_macro"],
                cross[t]["f1_micro"], cross[t]["f1_macro"]]
    return out + [cut["hate_auroc_binary"]]


def ensemble_table(dev, ours: dict, tfidf: dict) -> list[str]:
    head = ["w (TF-IDF share)"]
    for letter in ("A", "B"):
        head += [f"{letter} micro AUROC", f"{letter} micro F1", f"{letter} macro F1",
                 f"{letter} micro F1 (thr)", f"{letter} macro F1 (thr)"]
    head.append("hateful AUROC")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in WEIGHTS:
        rows = np.array([_row(dev, {t: (1 - w) * s[t] + w * tfidf[t] for t in s}, seed)
                         for seed, s in ours.items()])
        cells = [mean_pm(list(column)) for column in rows.T]
        lines.append(f"| {w:g} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_seeds(p)
    p.add_argument("--C", type=float, default=1.0, help="TF-IDF's inverse regularisation")
    p.add_argument("--data", default=str(DATA))
    args = p.parse_args(argv)
    data = Path(args.data)
    if (missing := missing_annotations(data, ("train.json", "dev_seen.json"))):
        p.error(f"--data: {missing}")
    seeds = args.seeds
    train_memes = read_annotations(data / "train.json")
    dev = read_annotations(data / "dev_seen.json")
    tfidf = TfidfLogReg(args.C).fit(train_memes).predict(dev)
    ours = {seed: our_dev_scores(seed, data) for seed in seeds}
    print(f"dev_seen, text only; ours: {len(seeds)} seeds ({','.join(map(str, seeds))}); "
          "(thr): cross-fitted dev thresholds\n")
    print("\n".join(seen_captions_table(train_memes, dev, ours, tfidf)))
    print()
    print("\n".join(ensemble_table(dev, ours, tfidf)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
