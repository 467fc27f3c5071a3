"""Label co-occurrence as a second stage (stacking), on both checks of the unseen-like check.

    python experiments/cooc_check.py               # seeds 0, 1, 2
    python experiments/cooc_check.py --seeds 0     # one seed

Issue 9 asks to try label co-occurrence. The first stage is train.py's default run (the heads +
TF-IDF blend, `experiments/text_best.yaml`); the runs are unseen_check.py's own, under
experiments/runs/unseen, reused where they exist and trained otherwise. The second stage is,
for each label of a task, an L2 logistic regression reading the first stage's scores of all the
task's labels and the hateful score (as logits), so that a label's score can move with what the
other labels say: e.g. `attack_empty` with `mocking`, `race` with `nationality`. It also reads
the caption twins' features that the default's Platt maps read (data/twins.py), so that it
starts from what the default knows.

Both checks are scored as the default is (unseen_check.py), with nothing chosen on what it is
scored on:

- **train, out of fold**: for each of the run's K folds, the stacker is fitted on the other
  folds' out-of-fold first-stage scores and applied to this fold's; its thresholds are chosen
  (`thresholds.choose_joint`) on the other folds' stacked scores, themselves cross-fitted
  over those folds. So no meme's gold label touches its own stacked score or threshold.
- **dev_seen**: the stacker fitted on all of train's out-of-fold scores, applied to the run's
  dev_seen scores (before thresholds); thresholds chosen on train's cross-fitted stacked scores.

Each logistic regression's C comes from a small grid by the log loss of a grouped
cross-validation over the folds it is fitted on (the same folds; never the scored memes).
pred_hate is left as the default computes it (the mean of the two runs'), so the hateful column
is the same in every row. Variants (rows):

- stack: the task's scores + the hateful score;
- stack + pairs: also the products of every pair of the task's scores;
- stack/first-stage mix: 0.5 * stacked + 0.5 * first stage, thresholds chosen on the mix;
- cross-task stack: also the other task's run's scores (predict.py gets both runs), alone and
  mixed 0.5/0.5 with the first stage.

Writes experiments/results_cooc.md.
"""
from __future__ import annotations

import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench import load_avg, machine_brief  # noqa: E402

from hateful_memes.runtime.files import write_text  # noqa: E402
from hateful_memes.scoring import thresholds as th  # noqa: E402

import unseen_check as uc  # noqa: E402

GRID_C = (0.01, 0.1, 1.0)
EPS = 1e-4
OTHER = {"pc": "attack", "attack": "pc"}
# name -> (pairwise products, other task's scores, weight of the stacked scores in the mix)
VARIANTS = {
    "stack (task scores + hateful)": (False, False, 1.0),
    "stack + pairwise products": (True, False, 1.0),
    "0.5 stack + 0.5 first stage": (False, False, 0.5),
    "cross-task stack (both runs' scores)": (False, True, 1.0),
    "0.5 cross-task stack + 0.5 first stage": (False, True, 0.5),
}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def features(task_scores: np.ndarray, hate: np.ndarray, pairs: bool = False,
             other: np.ndarray | None = None, side: np.ndarray | None = None) -> np.ndarray:
    """The stacker's inputs: the task's scores and the hateful score as logits, optionally
    the products of every pair of the task's scores and the other task's scores (logits), and
    the caption twins' features that the default's maps read (`side`, (n, K, 3) as
    data.twins gives them: whether a twin exists, the share hateful, each label's share)."""
    cols = [_logit(task_scores), _logit(hate[:, 1:2])]
    if side is not None:
        cols += [side[:, 0, :2], side[:, :, 2]]
    if pairs:
        k = task_scores.shape[1]
        cols.append(np.stack([task_scores[:, i] * task_scores[:, j]
                              for i in range(k) for j in range(i + 1, k)], axis=1))
    if other is not None:
        cols.append(_logit(other))
    return np.hstack(cols).astype(np.float64)


def _fit_lr(x: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    if y.min() == y.max():  # a label absent (or always present) in these memes: its rate
        rate = float(np.clip(y.mean(), EPS, 1 - EPS))
        return np.zeros(x.shape[1]), float(np.log(rate / (1 - rate)))
    lr = LogisticRegression(C=C, max_iter=1000).fit(x, y)
    return lr.coef_[0], float(lr.intercept_[0])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def predict(stacker: dict, x: np.ndarray) -> np.ndarray:
    z = (x - stacker["mean"]) / stacker["scale"]
    return _sigmoid(z @ stacker["coef"].T + stacker["intercept"]).astype(np.float32)


def fit_stacker(x: np.ndarray, gold: np.ndarray, groups: np.ndarray) -> tuple[dict, np.ndarray]:
    """One logistic regression per label on standardised `x`, C per label from GRID_C by the
    log loss of a cross-validation over `groups`; returns the stacker (plain arrays) and its
    cross-validated scores on `x` at the chosen C (for choosing thresholds without leakage)."""
    mean, scale = x.mean(0), x.std(0) + 1e-9
    z = (x - mean) / scale
    coefs, intercepts = [], []
    cv_scores = np.zeros(gold.shape, np.float32)
    for k in range(gold.shape[1]):
        y = gold[:, k].astype(int)
        best = None
        for C in GRID_C:
            s = np.zeros(len(y))
            for g in np.unique(groups):
                held = groups == g
                w, b = _fit_lr(z[~held], y[~held], C)
                s[held] = _sigmoid(z[held] @ w + b)
            p = np.clip(s, EPS, 1 - EPS)
            loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
            if best is None or loss < best[0]:
                best = (loss, C, s)
        _, C, cv_scores[:, k] = best
        w, b = _fit_lr(z, y, C)
        coefs.append(w)
        intercepts.append(b)
    return {"mean": mean, "scale": scale, "coef": np.array(coefs),
            "intercept": np.array(intercepts)}, cv_scores


def second_stage(gold: np.ndarray, first_oof: np.ndarray, x_oof: np.ndarray,
                 first_dev: np.ndarray, x_dev: np.ndarray, fold_of: np.ndarray,
                 weight: float) -> dict:
    """Stacked scores of one task, before and after thresholds, on both checks."""

    def mix(stacked, first):
        return (weight * stacked + (1 - weight) * first).astype(np.float32)

    raw_oof = np.zeros_like(first_oof, dtype=np.float32)
    written_oof = np.zeros_like(raw_oof)
    for f in np.unique(fold_of):
        held = fold_of == f
        stacker, cv = fit_stacker(x_oof[~held], gold[~held], fold_of[~held])
        raw_oof[held] = mix(predict(stacker, x_oof[held]), first_oof[held])
        t = th.choose_joint(gold[~held], mix(cv, first_oof[~held]))
        written_oof[held] = th.apply(raw_oof[held], t)
    stacker, cv = fit_stacker(x_oof, gold, fold_of)
    raw_dev = mix(predict(stacker, x_dev), first_dev)
    written_dev = th.apply(raw_dev, th.choose_joint(gold, mix(cv, first_oof)))
    return {"raw": (raw_oof, raw_dev), "written": (written_oof, written_dev)}


def seed_rows(per_task: dict, gold_train: dict, gold_dev: dict, sides: dict) -> dict:
    """{row name: (train OOF row, dev_seen row)} for one seed's pair of runs; `sides` are
    unseen_check.twin_sides' features, read by the default's maps and by every stacker."""
    fold_of = per_task["pc"]["fold_of"]
    oof, dev = uc.combine(per_task, "oof", "blend"), uc.combine(per_task, "dev", "blend")
    base = uc.treatments(gold_train, oof, dev, fold_of, sides)
    rows = {}
    for how in ("0.5 cut", "written (thresholds folded)"):
        s_oof, s_dev = base[how]
        rows[f"default, {how}"] = (uc.scores_row(gold_train, s_oof),
                                   uc.scores_row(gold_dev, s_dev))
    for name, (pairs, cross, weight) in VARIANTS.items():
        out = {"raw": ({"hate": oof["hate"]}, {"hate": dev["hate"]}),
               "written": ({"hate": oof["hate"]}, {"hate": dev["hate"]})}
        for task in ("pc", "attack"):
            run = per_task[task]["oof"]["blend"], per_task[task]["dev"]["blend"]
            other = per_task[OTHER[task]]["oof"]["blend"], per_task[OTHER[task]]["dev"]["blend"]
            x = [features(r[task], r["hate"], pairs, o[OTHER[task]] if cross else None, side)
                 for r, o, side in zip(run, other, sides[task])]
            res = second_stage(gold_train[task], oof[task], x[0], dev[task], x[1], fold_of,
                               weight)
            for kind in ("raw", "written"):
                out[kind][0][task], out[kind][1][task] = res[kind]
        for kind, how in (("raw", "0.5 cut"), ("written", "written (thresholds folded)")):
            if kind == "raw" and name != next(iter(VARIANTS)):
                continue  # the 0.5 cut of the plain stack only, to keep the table short
            rows[f"{name}, {how}"] = (uc.scores_row(gold_train, out[kind][0]),
                                      uc.scores_row(gold_dev, out[kind][1]))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = uc.check_parser(__doc__, "results_cooc.md").parse_args(argv)
    seeds = args.seeds
    os.chdir(ROOT)
    t_start, load_start = time.time(), os.getloadavg()
    train_memes, dev_memes, gold_train, gold_dev = uc.load_checks()
    sides = uc.twin_sides(train_memes, dev_memes)
    rows: dict[str, list[tuple[dict, dict]]] = {}
    for seed in seeds:
        per_task = uc.run_seed(seed, train_memes, dev_memes, args.quiet, reuse=True, sides=sides)
        for name, row in seed_rows(per_task, gold_train, gold_dev, sides).items():
            rows.setdefault(name, []).append(row)
        if not args.quiet:
            print(f"cooc_check: seed {seed} done", file=sys.stderr)
    lines = render(rows, seeds, load_start, time.time() - t_start)
    write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


def render(rows: dict, seeds: list[int], load_start, took: float) -> list[str]:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    base_name = "default, written (thresholds folded)"
    lines = [
        "## Label co-occurrence: a stacked second stage on the unseen-like check", "",
        f"Command: `python experiments/cooc_check.py --seeds {','.join(map(str, seeds))}`  ",
        f"Date: {now}; took {took / 60:.1f} min (train.py runs reused where they existed).  ",
        f"Machine: {machine_brief(sklearn=True)}, no GPU. Load average at start "
        f"{load_avg(load_start)}, at end {load_avg()}.", "",
        f"Mean ± sample std over seeds {', '.join(map(str, seeds))}. Each cell: micro AUROC / "
        "micro F1 / macro F1 (the first two are the official metric), then the hateful AUROC "
        "of pred_hate (the default's in every row). Left: train.json out of fold (stacker and "
        "thresholds of each fold fitted on the other folds), right: dev_seen (stacker fitted "
        "and thresholds chosen on all of train's out-of-fold scores). Stacker: one L2 "
        f"logistic regression per label, C in {list(GRID_C)} by grouped-CV log loss.", "",
        "| system | train OOF: A | B | hate | dev_seen: A | B | hate |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += uc.table_rows(rows, (0, 1))
    lines += ["", f"Paired difference from the default's written scores (\"{base_name}\"), "
              "seed by seed, mean ± sample std over seeds:", "",
              "| system | train OOF: A | B | dev_seen: A | B |", "|---|---|---|---|---|"]
    base = rows[base_name]
    for name, per_seed in rows.items():
        if name == base_name or not name.endswith("written (thresholds folded)"):
            continue
        cells = []
        for side in (0, 1):
            for task in ("pc", "attack"):
                cells.append(" / ".join(
                    uc.signed([r[side][task][i] - b[side][task][i]
                             for r, b in zip(per_seed, base)]) for i in range(3)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
