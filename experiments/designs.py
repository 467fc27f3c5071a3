"""Design comparisons behind the defaults of train.py, each row a real training run.

  python experiments/designs.py fusion   # demo data: image only, text only, concat, interact
  python experiments/designs.py empty    # real data, text only: gate vs independent empty labels

`fusion` generates the synthetic demo set if needed (data/demo) and trains Task A and Task B
with the offline encoders. `empty` trains on train.json and scores dev_seen.json of
../shared/data/woah2021/annotations (or of the folder WOAH2021_ANNOTATIONS names). Both print a
Markdown table (mean ± sample standard deviation over the seeds).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench import DATA as REAL, add_seeds, mean_pm, missing_annotations  # noqa: E402

from hateful_memes.cli import train  # noqa: E402
from hateful_memes.data import demo  # noqa: E402

COLUMNS = ("roc_auc_micro", "f1_micro", "f1_macro")
# The dev reports a run writes: with K >= 2 folds (the default) its thresholds come from
# train's out-of-fold scores; with --folds 1 from dev itself (then also cross-fitted on dev).
WHICH = {"thresholds_off": "scores cut at 0.5",
         "thresholds_on": "per-label thresholds as the run chose them (K folds: out of fold on "
                          "train; --folds 1: on dev, in-sample)",
         "thresholds_crossfit": "per-label dev thresholds, 2-fold cross-fitted on dev "
                                "(--folds 1 only)",
         "decided": "the label sets people are shown (decision.decide)"}


def _run(cfg: dict) -> dict:
    full = {**train.DEFAULTS, **cfg}
    full["image_root"] = full["image_root"] or str(Path(full["train"]).resolve().parent.parent)
    return train.run(full, progress=False, overwrite=True)  # the script's own runs


def _table(rows: dict[str, list[dict]], tasks: tuple[str, ...], which: str) -> str:
    head = (["design"] + [f"{t} {c}" for t in tasks for c in ("AUROC", "F1", "macro F1")]
            + ["hate AUROC"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, summaries in rows.items():
        reps = [s["dev"][which] for s in summaries]
        cells = [mean_pm([r[t][c] for r in reps]) for t in tasks for c in COLUMNS]
        cells.append(mean_pm([r["hate_auroc_binary"] for r in reps]))
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def _written(rows: dict[str, list[dict]]) -> list[str]:
    """The reports every run wrote, in WHICH's order."""
    return [w for w in WHICH if all(w in s["dev"] for runs in rows.values() for s in runs)]


def fusion(args) -> None:
    data = Path(args.data)
    if not (data / "annotations" / "train.json").exists():
        demo.generate(data, n=args.n)
    ann = data / "annotations"
    designs = {
        "image only": {"text_encoder": "none"},
        "text only": {"image_encoder": "none"},
        "concat": {"fusion": "concat"},
        "interact (concat + product)": {"fusion": "interact"},
    }
    rows: dict[str, list[dict]] = {}
    for name, extra in designs.items():
        for seed in args.seeds:
            merged = []
            for task in ("A", "B"):
                # Plain maps, as `make demo`: the demo's repeated captions keep their labels.
                s = _run({"task": task, "train": str(ann / "train.json"),
                          "dev": str(ann / "dev.json"), "seed": seed, "cache_dir": args.cache_dir,
                          "caption_twins": False,
                          "out": f"{args.runs}/fusion/{name}/{task}{seed}", **extra})
                merged.append(s)
            a, b = merged
            # Task A's run and Task B's run each have their own hate head: report A's.
            rows.setdefault(name, []).append(
                {"dev": {k: {**a["dev"][k], "attack": b["dev"][k]["attack"]} for k in a["dev"]}})
            print(f"done: {name} seed {seed}", file=sys.stderr)
    for which in _written(rows):
        print(f"\nDemo dev split ({args.n} generated memes), seeds {args.seeds}, {WHICH[which]}:\n")
        print(_table(rows, ("pc", "attack"), which))


def empty(args) -> None:
    if (missing := missing_annotations(REAL, ("train.json", "dev_seen.json"))):
        raise SystemExit(f"designs.py empty: {missing}")
    rows: dict[str, list[dict]] = {}
    for design in ("gate", "independent"):
        for seed in args.seeds:
            s = _run({"task": "AB", "train": str(REAL / "train.json"),
                      "dev": str(REAL / "dev_seen.json"), "image_encoder": "none", "empty": design,
                      "seed": seed, "cache_dir": args.cache_dir,
                      "out": f"{args.runs}/empty/{design}{seed}"})
            rows.setdefault(design, []).append(s)
            print(f"done: {design} seed {seed}", file=sys.stderr)
    for which in _written(rows):
        print(f"\nReal dev_seen, text only (MiniLM frozen), seeds {args.seeds}, {WHICH[which]}:\n")
        print(_table(rows, ("pc", "attack"), which))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=["fusion", "empty"])
    add_seeds(p)
    p.add_argument("--data", default=str(ROOT / "data" / "demo"))
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--runs", default=str(ROOT / "experiments" / "runs"))
    p.add_argument("--cache-dir", default=str(ROOT / "cache" / "features"))
    args = p.parse_args(argv)
    {"fusion": fusion, "empty": empty}[args.part](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
