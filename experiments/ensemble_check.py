"""Three cheap levers on the default blend, on both checks of the unseen-like check.

    python experiments/ensemble_check.py               # seeds 0, 1, 2
    python experiments/ensemble_check.py --seeds 0,1   # fewer seeds (bags of what is given)

Issue 9's Task B macro F1 is short on both checks and Task A's micro AUROC on dev_seen. The
first stage is train.py's default run (`experiments/text_best.yaml`); the runs are
unseen_check.py's own, under experiments/runs/unseen, reused where they exist and trained
otherwise. Every row is scored as the default is (unseen_check.py: per-label Platt maps that
read the caption twins, then thresholds), nothing chosen on what it is scored on:

1. **Seed bagging**: the blend scores of several seeds' runs averaged (out of fold and on
   dev_seen; pred_hate too). Out of fold this is honest: each seed's score of a meme comes from
   heads that never saw it, though seeds use different folds. Thresholds as the default chooses
   them: on dev_seen `choose_joint` on the averaged out-of-fold scores of all of train; out of
   fold cross-fitted over the folds of the bag's first seed (caption-grouped, as every seed's:
   a meme's threshold is chosen on the gold labels of other captions only). Every bag of 2
   seeds (a spread over the pairs) and the bag of all seeds (one row, no spread). Out of fold
   a bag averages n one-head scores of each meme, where a deployed run already averages 5
   heads: the out-of-fold gain overstates a deployed bag's (the table says so).
2. **TF-IDF blend weight per label** (and per task): the weight w of TF-IDF in
   `(1 - w) * heads + w * tfidf`, from WEIGHTS, chosen on train's out-of-fold scores of the
   heads and of TF-IDF: per label by that label's AUROC (or log loss), per task by the task's
   micro AUROC (the official column; one weight a run, as train.py's `tfidf_weight`). The
   hateful column of a run gets its own weight (by its AUROC) in the per-label variants and the
   run's weight in the per-task one. Nested: out of fold, each fold's weights and thresholds are
   chosen on the other folds only; on dev_seen, on all of train.
3. **Threshold objective**: `choose_joint(weight=v)` (v * micro F1 + (1 - v) * macro F1) for v
   in JOINT, thresholds chosen as the default otherwise. A trade-off between the two F1s.

Writes experiments/results_ensemble.md.
"""
from __future__ import annotations

import datetime
import functools
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench import load_avg, machine_brief, mean_pm  # noqa: E402

from hateful_memes.runtime.files import write_text  # noqa: E402
from hateful_memes.scoring import calibration  # noqa: E402
from hateful_memes.scoring import thresholds as th  # noqa: E402

import unseen_check as uc  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_WEIGHT = 0.5  # text_best.yaml's tfidf_weight
JOINT = (0.3, 0.4, 0.6)  # besides the default 0.5
EPS = 1e-6
BASE = "default (written, thresholds folded)"


def written(gold_train: dict, oof: dict, dev: dict, fold_of: np.ndarray,
            choose_fn=th.choose_joint, sides: dict | None = None) -> tuple[dict, dict]:
    """The default's treatment (unseen_check.treatments, "written") with any threshold
    chooser: per-label Platt maps (reading `sides`, unseen_check.twin_sides' features, when
    given) and thresholds, out of fold nested over `fold_of`, dev_seen's from all of train's
    out-of-fold scores. The hateful scores stay as given."""
    s_oof, s_dev = {"hate": oof["hate"]}, {"hate": dev["hate"]}
    for task in ("pc", "attack"):
        g, s = gold_train[task], oof[task]
        side_oof, side_dev = sides[task] if sides else (None, None)
        s_oof[task] = calibration.crossfit(g, s, fold_of, choose_fn, side_oof)[1]
        s_dev[task] = calibration.fit_apply(g, s, dev[task], choose_fn, side_oof, side_dev)[1]
    return s_oof, s_dev


# --- 1. seed bagging -------------------------------------------------------------------------

def bag(runs: list[dict], where: str) -> dict:
    """The blend scores of several seeds' runs (unseen_check.run_seed's dicts) averaged."""
    combined = [uc.combine(per_task, where, "blend") for per_task in runs]
    return {t: np.mean([c[t] for c in combined], axis=0).astype(np.float32)
            for t in ("hate", "pc", "attack")}


def bag_rows(runs: list[dict], gold_train: dict, gold_dev: dict,
             sides: dict | None = None) -> tuple[dict, dict]:
    fold_of = runs[0]["pc"]["fold_of"]
    s_oof, s_dev = written(gold_train, bag(runs, "oof"), bag(runs, "dev"), fold_of,
                           sides=sides)
    return uc.scores_row(gold_train, s_oof), uc.scores_row(gold_dev, s_dev)


# --- 2. TF-IDF weight per label or per task --------------------------------------------------

def _mix(heads: np.ndarray, tfidf: np.ndarray, w) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    return ((1 - w) * heads + w * tfidf).astype(np.float32)


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else 0.5


def _neg_log_loss(y: np.ndarray, s: np.ndarray) -> float:
    p = np.clip(s.astype(np.float64), EPS, 1 - EPS)
    return float(np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _argbest(values: list[float]) -> float:
    # Ties go to the weight nearest the default: the least change.
    best = max(values)
    ties = [w for w, v in zip(WEIGHTS, values) if v >= best - 1e-12]
    return min(ties, key=lambda w: abs(w - DEFAULT_WEIGHT))


def choose_weights(gold: np.ndarray, heads: np.ndarray, tfidf: np.ndarray,
                   how: str) -> np.ndarray:
    """TF-IDF's weight for each column of one score matrix: per label by its AUROC ("auroc")
    or log loss ("logloss"), or one for all by the matrix's micro AUROC ("task")."""
    y = np.asarray(gold) > 0.5
    if how == "task":
        w = _argbest([_auroc(y.ravel(), _mix(heads, tfidf, w).ravel()) for w in WEIGHTS])
        return np.full(y.shape[1], w)
    score = {"auroc": _auroc, "logloss": _neg_log_loss}[how]
    return np.array([_argbest([score(y[:, k], _mix(heads[:, k], tfidf[:, k], w))
                               for w in WEIGHTS]) for k in range(y.shape[1])])


def run_weights(gold: dict, heads: dict, tfidf: dict, task: str, how: str) -> dict:
    """{task: per-column weights, "hate": the hateful column's} for one run."""
    w_task = choose_weights(gold[task], heads[task], tfidf[task], how)
    if how == "task":
        w_hate = w_task[0]
    else:  # the hateful column's own weight, both columns alike (they are complements)
        w_hate = choose_weights(gold["hate"][:, 1:], heads["hate"][:, 1:],
                                tfidf["hate"][:, 1:], how)[0]
    return {task: w_task, "hate": np.full(2, w_hate)}


def _rows(side: np.ndarray | None, which: np.ndarray) -> np.ndarray | None:
    return None if side is None else side[which]


def weighted_run(gold_train: dict, run: dict, task: str, fold_of: np.ndarray,
                 how: str, sides: dict | None = None) -> dict:
    """One run's blend with chosen weights and the task's thresholds, on both checks.

    Out of fold, fold f's memes get weights, Platt maps and thresholds chosen on the other folds
    (their out-of-fold scores and gold) only; dev_seen gets those chosen on all of train. Returns
    {"oof": {task, "hate"}, "dev": {...}} (task scores written, hate mapped as
    unseen_check.run_seed maps it) and the weights chosen on all of train. `sides`, when given,
    are read by the maps as the default's read them."""
    cols = (task, "hate")
    side_oof, side_dev = sides[task] if sides else (None, None)
    hate_oof, hate_dev = sides["hate"] if sides else (None, None)
    ho, to = run["oof"]["heads"], run["oof"]["tfidf"]
    oof = {t: np.empty_like(ho[t], dtype=np.float32) for t in cols}
    for f in np.unique(fold_of):
        held = fold_of == f
        w = run_weights({t: gold_train[t][~held] for t in cols}, {t: ho[t][~held] for t in cols},
                        {t: to[t][~held] for t in cols}, task, how)
        mixed = {t: _mix(ho[t], to[t], w[t]) for t in cols}
        oof[task][held] = calibration.fit_apply(
            gold_train[task][~held], mixed[task][~held], mixed[task][held], th.choose_joint,
            _rows(side_oof, ~held), _rows(side_oof, held))[1]
        # The hateful column mapped as the default's is (its Platt map reads the twins when
        # they are given, which moves its ranking), fitted on the same other folds.
        oof["hate"][held] = calibration.fit_apply(
            gold_train["hate"][~held], mixed["hate"][~held], mixed["hate"][held], None,
            _rows(hate_oof, ~held), _rows(hate_oof, held))[0]
    w = run_weights(gold_train, ho, to, task, how)
    hd, td = run["dev"]["heads"], run["dev"]["tfidf"]
    dev = {task: calibration.fit_apply(gold_train[task], _mix(ho[task], to[task], w[task]),
                                       _mix(hd[task], td[task], w[task]), th.choose_joint,
                                       side_oof, side_dev)[1],
           "hate": calibration.fit_apply(gold_train["hate"], _mix(ho["hate"], to["hate"],
                                                                  w["hate"]),
                                         _mix(hd["hate"], td["hate"], w["hate"]), None,
                                         hate_oof, hate_dev)[0]}
    return {"oof": oof, "dev": dev, "weights": w}


def weighted_rows(per_task: dict, gold_train: dict, gold_dev: dict, how: str,
                  sides: dict | None = None):
    fold_of = per_task["pc"]["fold_of"]
    out = {t: weighted_run(gold_train, per_task[t], t, fold_of, how, sides)
           for t in ("pc", "attack")}
    rows = []
    for where, gold in (("oof", gold_train), ("dev", gold_dev)):
        a, b = out["pc"][where], out["attack"][where]
        rows.append(uc.scores_row(gold, {"pc": a["pc"], "attack": b["attack"],
                                         "hate": ((a["hate"] + b["hate"]) / 2)}))
    return tuple(rows), {t: out[t]["weights"] for t in out}


# --- the table -------------------------------------------------------------------------------

def seed_rows(per_task: dict, gold_train: dict, gold_dev: dict,
              sides: dict | None = None) -> tuple[dict, dict]:
    """{row name: (train OOF row, dev_seen row)} for one seed, and the weights chosen; every
    row's maps read `sides` (unseen_check.twin_sides) when given, as the default's do."""
    fold_of = per_task["pc"]["fold_of"]
    oof, dev = uc.combine(per_task, "oof", "blend"), uc.combine(per_task, "dev", "blend")
    s_oof, s_dev = uc.treatments(gold_train, oof, dev, fold_of,
                                 sides)["written (thresholds folded)"]
    rows = {BASE: (uc.scores_row(gold_train, s_oof), uc.scores_row(gold_dev, s_dev))}
    weights = {}
    for how, name in (("auroc", "TF-IDF weight per label (by AUROC)"),
                      ("logloss", "TF-IDF weight per label (by log loss)"),
                      ("task", "TF-IDF weight per task (by micro AUROC)")):
        rows[name], weights[how] = weighted_rows(per_task, gold_train, gold_dev, how, sides)
    for v in JOINT:
        s_oof, s_dev = written(gold_train, oof, dev, fold_of,
                               functools.partial(th.choose_joint, weight=v), sides)
        rows[f"thresholds for {v} micro + {1 - v:.1f} macro F1"] = (
            uc.scores_row(gold_train, s_oof), uc.scores_row(gold_dev, s_dev))
    return rows, weights


def _mean_row(rows: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    """The metric values of several rows averaged (the baseline of a bag)."""
    out = []
    for side in (0, 1):
        r = {t: tuple(float(np.mean([x[side][t][i] for x in rows])) for i in range(3))
             for t in ("pc", "attack")}
        r["hate"] = float(np.mean([x[side]["hate"] for x in rows]))
        out.append(r)
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    args = uc.check_parser(__doc__, "results_ensemble.md").parse_args(argv)
    seeds = args.seeds
    os.chdir(ROOT)
    t_start, load_start = time.time(), os.getloadavg()
    train_memes, dev_memes, gold_train, gold_dev = uc.load_checks()
    # name -> [(row, baseline row)]: a single seed's baseline is its own default, a bag's the
    # mean of its seeds' defaults.
    rows: dict[str, list[tuple[tuple, tuple]]] = {}
    runs, weights, train_seconds = {}, {}, []
    sides = uc.twin_sides(train_memes, dev_memes)
    for seed in seeds:
        runs[seed] = uc.run_seed(seed, train_memes, dev_memes, args.quiet, reuse=True,
                                 sides=sides)
        train_seconds.append(_train_seconds(seed))
        per_seed, weights[seed] = seed_rows(runs[seed], gold_train, gold_dev, sides)
        for name, row in per_seed.items():
            rows.setdefault(name, []).append((row, per_seed[BASE]))
        if not args.quiet:
            print(f"ensemble_check: seed {seed} done", file=sys.stderr)
    base_of = {seed: rows[BASE][i][0] for i, seed in enumerate(seeds)}
    for size in range(2, len(seeds) + 1):
        for members in itertools.combinations(seeds, size):
            row = bag_rows([runs[s] for s in members], gold_train, gold_dev, sides)
            rows.setdefault(f"bag of {size} seeds", []).append(
                (row, _mean_row([base_of[s] for s in members])))
    lines = render(rows, seeds, weights, train_seconds, load_start, time.time() - t_start)
    write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


def _train_seconds(seed: int) -> float:
    """The two runs' training seconds (train.py's summary: the K heads and the TF-IDF views,
    without loading and reports)."""
    import json

    return sum(json.loads((uc.WORK / f"{letter}-s{seed}" / "summary.json").read_text())
               ["train_seconds"] for letter in uc.TASK_OF)


def render(rows: dict, seeds: list[int], weights: dict, train_seconds: list[float],
           load_start, took: float) -> list[str]:
    from hateful_memes.labels import LABELS

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Seed bagging, TF-IDF weight per label, threshold objective (unseen-like check)", "",
        f"Command: `python experiments/ensemble_check.py --seeds {','.join(map(str, seeds))}`  ",
        f"Date: {now}; took {took / 60:.1f} min (train.py runs reused where they existed).  ",
        f"Machine: {machine_brief(sklearn=True)}, no GPU. Load average at start "
        f"{load_avg(load_start)}, at end {load_avg()}.", "",
        f"Each cell: micro AUROC / micro F1 / macro F1 (the first two are the official "
        "metric), then the hateful AUROC of pred_hate. Left: train.json out of fold (weights "
        "and thresholds of each fold chosen on the other folds), right: dev_seen (chosen on all "
        f"of train's out-of-fold scores). Single-seed rows: mean ± sample std over seeds "
        f"{', '.join(map(str, seeds))}. \"bag of 2 seeds\": mean ± std over the "
        f"{len(rows.get('bag of 2 seeds', []))} pairs of seeds; \"bag of {len(seeds)} seeds\": "
        "one bag of all, so no spread. TF-IDF weights from "
        f"{list(WEIGHTS)} (the default {DEFAULT_WEIGHT}).", "",
        "| system | train OOF: A | B | hate | dev_seen: A | B | hate |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += uc.table_rows({name: [r for r, _ in entries] for name, entries in rows.items()},
                           (0, 1))
    lines += ["", f"Paired difference from the default (\"{BASE}\"): a single-seed row against "
              "the same seed's default, a bag against the mean of its seeds' defaults; mean ± "
              "sample std over seeds (or pairs; pairs share seeds, so their spread understates "
              "the noise); micro AUROC to four digits:", "",
              "| system | train OOF: A | B | hate | dev_seen: A | B | hate |",
              "|---|---|---|---|---|---|---|"]
    for name, entries in rows.items():
        if name == BASE:
            continue
        cells = []
        for side in (0, 1):
            for task in ("pc", "attack"):
                # micro AUROC moves by thousandths: four digits, so that level reads as level
                cells.append(" / ".join(uc.signed([r[side][task][i] - b[side][task][i]
                                                   for r, b in entries], 4 if i == 0 else 3)
                                        for i in range(3)))
            cells.append(uc.signed([r[side]["hate"] - b[side]["hate"] for r, b in entries]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "TF-IDF weights chosen on all of train's out-of-fold scores (those dev_seen "
              "is scored with), seed by seed:", "",
              "| variant | seed | A: " + ", ".join(LABELS["pc"]) + "; hate | B: "
              + ", ".join(LABELS["attack"]) + "; hate |", "|---|---|---|---|"]
    for how in ("auroc", "logloss", "task"):
        for seed in seeds:
            w = weights[seed][how]
            cells = [" ".join(f"{x:g}" for x in w[t][t]) + f"; {w[t]['hate'][0]:g}"
                     for t in ("pc", "attack")]
            lines.append(f"| {how} | {seed} | " + " | ".join(cells) + " |")
    lines += ["", f"Training cost: train.py's two runs (A and B) of one seed took "
              f"{mean_pm(train_seconds, '.0f')} s of training (summary.json's train_seconds, "
              f"seeds {', '.join(map(str, seeds))}); a bag of n seeds costs n times that, and "
              "n times the heads at prediction.", "",
              "What the two checks see of a bag differs: on dev_seen each seed's run already "
              "averages its 5 fold heads and the same TF-IDF model (fitted on all of train, the "
              "same in every seed), so a bag of n seeds averages 5n heads against 5; out of fold "
              "a single seed scores each meme with the one head and the one TF-IDF fit that did "
              "not see it, a bag with n of each. The out-of-fold gain of a bag is therefore "
              "larger than what a deployed bag adds; dev_seen is the closer check of it."]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
