"""How much a fold head's out-of-fold scores flatter it, its epoch being chosen on them.

train.py's default trains one head per caption-grouped fold and keeps the epoch that scores
best on the fold it did not see; that fold's out-of-fold scores then fit the Platt maps and
thresholds and make the unseen-like check. Choosing among E epochs on the same memes that are
then scored is a (small) selection on the test data. The unbiased alternative the check is
measured against is nested: fold f's epoch chosen on the mean curve of the other folds. Each
fold's stats.jsonl holds its held-out metric after every epoch, so both can be read off the
runs already trained, with no retraining:

  python experiments/epoch_check.py                    # the runs of unseen_check.py
  python experiments/epoch_check.py --run RUN [--run RUN ...]

For each run: the epoch each fold kept, the nested epoch, and the held-out metric (the run's
`select`, e.g. micro AUROC) at both, averaged over folds; "optimism" is the difference (how much
the kept epoch beats the nested one on memes that chose it). Prints a Markdown table; --out
writes it too.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench import machine_brief  # noqa: E402

from hateful_memes.runtime.files import write_text  # noqa: E402

UNSEEN_RUNS = ROOT / "experiments" / "runs" / "unseen"


def curves(run: Path, metric: str) -> np.ndarray:
    """(folds, epochs): the held-out `metric` of each fold head after each epoch."""
    folds = sorted(run.glob("fold*/stats.jsonl"), key=lambda p: int(p.parent.name[4:]))
    if not folds:
        raise ValueError(f"{run}: no fold*/stats.jsonl (a run with --folds 1 has no folds)")
    rows = []
    for path in folds:
        values = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            try:
                values.append(float(json.loads(line)[f"dev/{metric}"]))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: no number dev/{metric} ({e})") from None
        rows.append(values)
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"{run}: folds trained different numbers of epochs "
                         f"({[len(r) for r in rows]}); is one still training?")
    return np.asarray(rows)


def nested(m: np.ndarray, lower_is_better: bool = False) -> dict:
    """Kept epochs (each fold's own best) against nested ones (the others' mean curve)."""
    s = -m if lower_is_better else m
    own = s.argmax(1)
    others = np.array([s[np.arange(len(s)) != f].mean(0).argmax() for f in range(len(s))])
    rows = np.arange(len(s))
    return {"kept": own + 1, "nested": others + 1, "at_kept": m[rows, own].mean(),
            "at_nested": m[rows, others].mean(),
            "optimism": (s[rows, own] - s[rows, others]).mean()}


def table(runs: list[Path]) -> str:
    lines = ["| run | select | epochs kept | nested epochs | held-out, kept | held-out, nested "
             "| optimism |", "|---|---|---|---|---|---|---|"]
    for run in runs:
        summary = run / "summary.json"
        try:
            metric = json.loads(summary.read_text())["select"]
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{summary}: cannot read the run's select metric ({e})") from None
        r = nested(curves(run, metric), lower_is_better=metric == "loss")
        lines.append(f"| {run.name} | {metric} | {' '.join(map(str, r['kept']))} | "
                     f"{' '.join(map(str, r['nested']))} | {r['at_kept']:.4f} | "
                     f"{r['at_nested']:.4f} | {r['optimism']:.4f} |")
    return "\n".join(lines)


def section(text: str, argv: list[str]) -> str:
    """The table as a results file: what it is, the command that made it and when."""
    command = " ".join(["python experiments/epoch_check.py", *argv])
    return "\n".join([
        "## Each fold's epoch: kept on its own held-out fold, against nested", "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; read from the runs' "
        f"fold*/stats.jsonl, nothing retrained.  ",
        f"Machine: {machine_brief()}.", "",
        "Per run: the epoch each fold head kept (its best on the fold it did not see), the "
        "nested epoch (the best of the other folds' mean curve), the run's `select` metric on "
        "the held-out folds at each (mean over folds), and the optimism, what the kept epoch "
        "gains over the nested one on the memes that chose it.", "", text, ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", action="append", type=Path,
                   help=f"a run directory of train.py with --folds >= 2 (repeatable; default: "
                        f"every run under {UNSEEN_RUNS.relative_to(ROOT)})")
    p.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    runs = args.run or sorted(d for d in UNSEEN_RUNS.glob("*") if d.is_dir())
    if not runs:
        print(f"epoch_check.py: error: no runs under {UNSEEN_RUNS}; run "
              "experiments/unseen_check.py first, or pass --run", file=sys.stderr)
        return 1
    try:
        text = table(runs)
    except ValueError as e:
        print(f"epoch_check.py: error: {e}", file=sys.stderr)
        return 1
    print(text)
    if args.out:
        write_text(args.out, section(text, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
