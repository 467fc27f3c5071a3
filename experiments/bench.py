"""`make bench`: every system side by side on dev_seen, text only, in one run on this machine.

    python experiments/bench.py                  # the benchmark: 3 seeds of our rows (long)
    python experiments/bench.py --quick          # smoke run: 1 seed, 2 epochs (not RESULTS.md)
    python experiments/bench.py --rows prior,tfidf --out /tmp/RESULTS.md

Trains on train.json, scores dev_seen.json, and writes the quality section of
experiments/RESULTS.md (experiments/results_quality.md, joined with the speed section of
experiments/bench_speed.py); a --quick run without --out writes experiments/runs/quick/
instead (git ignores it), so that a smoke run never overwrites the committed results. The meme
images are not on this machine, so every row reads the caption alone.

Each training runs in its own process, so its peak memory (max RSS, from wait4) is its own:
the baselines in a worker of this script, our model as the `train.py` command itself (one
`--task AB` run trains the Task A and Task B heads together), followed by a worker that
measures its prediction throughput with no feature cache: the MiniLM forward is included.
Our rows are trained with an empty feature cache too, so "train s" is from raw captions.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hateful_memes.runtime.files import write_json, write_text  # noqa: E402

# The organisers' annotation files, read by every script here: beside the repository, never in
# it, or in the folder WOAH2021_ANNOTATIONS names (as for the tests: tests/conftest.py).
DATA = Path(os.path.abspath(os.environ.get("WOAH2021_ANNOTATIONS") or (
    ROOT.parent / "shared" / "data" / "woah2021" / "annotations")))
ANNOTATIONS = ("train.json", "dev_seen.json", "test.jsonl")
WORK = ROOT / "experiments" / "runs" / "bench"
# Where the sections and RESULTS.md go: the committed measured results, or, for a smoke run
# (--quick) without --out, a folder git ignores, so that it never overwrites them.
RESULTS = ROOT / "experiments" / "RESULTS.md"
QUICK_RESULTS = ROOT / "experiments" / "runs" / "quick" / "RESULTS.md"
CACHE = ROOT / "experiments" / "cache" / "bench"
C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SEEDS = (0, 1, 2)
QUICK_EPOCHS = 2
MEMORY_TARGET_MB = 4096

# (task, metric) -> target on dev_seen, text only (issue 5).
TARGETS = {
    ("pc", "roc_auc_micro"): 0.90, ("pc", "f1_micro"): 0.66, ("pc", "f1_macro"): 0.55,
    ("attack", "roc_auc_micro"): 0.93, ("attack", "f1_micro"): 0.66, ("attack", "f1_macro"): 0.55,
    ("hate", "auroc"): 0.68,
}
COLUMNS = list(TARGETS)
COLUMN_NAMES = {"roc_auc_micro": "micro AUROC", "f1_micro": "micro F1", "f1_macro": "macro F1"}
TASK_NAMES = {"pc": "A", "attack": "B"}

# Our systems: name -> (config file, what the row shows).
OURS = {
    "frozen": ("experiments/text_frozen.yaml", "frozen MiniLM features"),
    "finetune": ("experiments/text_finetune.yaml", "MiniLM fine-tuned from the frozen head"),
    "best": ("experiments/text_best.yaml", "best configuration"),
}
SYSTEMS = ("prior", "tfidf", *OURS)
# LP-FT: a row whose runs start from the head of another row's run of the same seed.
INIT_HEAD_FROM = {"finetune": "frozen"}


def missing_annotations(data: Path, names: tuple[str, ...] = ANNOTATIONS) -> str | None:
    """What is wrong with `data` as the annotation folder (the first of `names` that is no
    file there, named in full), or None: for the scripts to say before any work is done."""
    for name in names:
        if not (Path(data) / name).is_file():
            return (f"{Path(data) / name} not found: the organisers' annotation files are read "
                    f"from {data} (data/README.md; WOAH2021_ANNOTATIONS names another folder)")
    return None


# --- flags shared by the scripts -------------------------------------------------------------

def _seed_word(value: str) -> list[int]:
    """argparse type of one word after --seeds: "0", "0,1,2" or "0," (commas and spaces both
    separate seeds)."""
    words = [w for w in re.split(r"[,\s]+", value.strip()) if w]
    try:
        seeds = [int(w) for w in words]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(
            f"expected seeds (integers >= 0) such as 0,1,2 or 0 1 2, got {value!r}")
    return seeds


class _Seeds(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        seeds = [s for word in values for s in word]
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise argparse.ArgumentError(self, f"seed {', '.join(map(str, twice))} given twice")
        setattr(namespace, self.dest, seeds)


def add_seeds(p: argparse.ArgumentParser, default=SEEDS) -> None:
    """--seeds as every experiments script takes it: "0 1 2" or "0,1,2" (or both mixed), a
    clear argparse error for anything else; a list of ints."""
    p.add_argument("--seeds", type=_seed_word, nargs="+", action=_Seeds, default=list(default),
                   metavar="SEED", help=f"seeds, as 0 1 2 or 0,1,2 (default "
                   f"{','.join(map(str, default))})")


def positive_seconds(value: str) -> float:
    """An argparse type for a timeout: seconds > 0, a clear error for anything else."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {value!r}")
    return seconds


# --- running one process and measuring it --------------------------------------------------

def run_measured(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run `cmd` from the repo root with its output in `log`; return (wall seconds, peak RSS
    in MB of it and its descendants). Exits with the log's tail if the command fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        out.write(f"$ {shlex.join(cmd)}\n")
        out.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        # wait4 reports this child's own rusage (its reaped descendants folded in), unlike
        # RUSAGE_CHILDREN, which keeps the maximum over every child so far.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-25:]
        sys.exit(f"bench: command failed with exit code {proc.returncode} (log {log}):\n  "
                 f"{shlex.join(cmd)}\n" + "\n".join(tail))
    return seconds, usage.ru_maxrss / 1024  # Linux reports kilobytes


def results_out(out: str | None, quick: bool) -> Path:
    """The RESULTS.md to write (its sections beside it): `out` when given, else the committed
    one, or QUICK_RESULTS for a smoke run."""
    if out is not None:
        return Path(out)
    return QUICK_RESULTS if quick else RESULTS


def wrote(script: str, out: Path, quick: bool, given: bool) -> str:
    """The line a script prints after writing `out`."""
    line = f"{script}: wrote {out}"
    if quick and not given:
        line += (f" (a smoke run: the committed {RESULTS.relative_to(ROOT)} and its sections are "
                 "untouched; --out writes elsewhere)")
    return line


def _worker(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", *args]


def load_avg(values: tuple[float, ...] | None = None) -> str:
    """The 1/5/15-minute load averages as every script writes them ("0.52 / 0.61 / 0.70"):
    now, or `values` that os.getloadavg() gave earlier."""
    return " / ".join(f"{x:.2f}" for x in (os.getloadavg() if values is None else values))


# --- workers: run in their own process -------------------------------------------------------

def _read(data: Path):
    from hateful_memes.data.annotations import read_annotations

    return (read_annotations(data / "train.json"), read_annotations(data / "dev_seen.json"),
            read_annotations(data / "test.jsonl"))


def _crossfit_scores(dev, scores: dict, seed: int) -> dict:
    from hateful_memes.data.annotations import gold_matrix
    from hateful_memes.scoring import thresholds as th

    return {**scores, **{t: th.crossfit(gold_matrix(dev, t), scores[t], seed=seed)
                         for t in ("pc", "attack")}}


def worker_baseline(system: str, data: Path, result: Path) -> None:
    """Fit a baseline on train, score dev_seen, time predicting dev_seen + test."""
    from hateful_memes.data.annotations import gold_matrix
    from hateful_memes.evaluation.metrics import evaluate
    from hateful_memes.models.baselines import ConstantPrior, TfidfLogReg
    from hateful_memes.scoring import thresholds as th

    train, dev, test = _read(data)
    ids = [m.id for m in dev]
    out: dict = {"system": system}
    if system == "prior":
        t0 = time.perf_counter()
        model = ConstantPrior().fit(train)
        out["train_seconds"] = time.perf_counter() - t0
    else:
        # C by the dev metric our model selects its epoch by (mean micro AUROC of A and B),
        # with the vectoriser fitted once for the whole grid.
        t0 = time.perf_counter()
        first = TfidfLogReg(C_GRID[0]).fit(train)
        grid = {}
        for C in C_GRID:
            report = evaluate(dev, ids, first.with_C(C).predict(dev))
            grid[C] = float(np.mean([report[t]["roc_auc_micro"] for t in ("pc", "attack")]))
        out["grid_seconds"] = time.perf_counter() - t0
        out["C"] = max(grid, key=grid.get)
        out["grid"] = {str(C): v for C, v in grid.items()}
        # Timed alone: a user who knows C fits this, vectoriser included.
        t0 = time.perf_counter()
        model = TfidfLogReg(out["C"]).fit(train)
        out["train_seconds"] = time.perf_counter() - t0
    raw = model.predict(dev)
    out["reports"] = {"off": [evaluate(dev, ids, raw)]}
    if system == "tfidf":
        chosen = {t: th.choose(gold_matrix(dev, t), raw[t]) for t in ("pc", "attack")}
        folded = {**raw, **{t: th.apply(raw[t], chosen[t]) for t in chosen}}
        out["reports"]["in_sample"] = [evaluate(dev, ids, folded)]
        # The peer is deterministic; its spread is that of the fold split, over the same
        # split seeds our runs use.
        out["reports"]["crossfit"] = [evaluate(dev, ids, _crossfit_scores(dev, raw, s))
                                      for s in SEEDS]
    memes = dev + test
    t0 = time.perf_counter()
    scores = model.predict(memes)
    if system == "tfidf":
        scores = {**scores, **{t: th.apply(scores[t], chosen[t]) for t in chosen}}
    out["predict_seconds"] = time.perf_counter() - t0
    out["n_predicted"] = len(memes)
    write_json(result, out)


def worker_predict(run_dir: Path, data: Path, result: Path) -> None:
    """Prediction throughput of a trained run on dev_seen + test with no feature cache, so the
    text encoder's forward pass is timed as well. The one-off model load is timed apart."""
    from hateful_memes.engine.predictor import RunPredictor

    _, dev, test = _read(data)
    memes = dev + test
    t0 = time.perf_counter()
    scorer = RunPredictor.load(run_dir, device="cpu")

    def predict(batch):
        return scorer.scores(batch, data.parent, cache_dir=None)

    predict(memes[:8])  # loads whatever encoder the model reads its input with
    load_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict(memes)
    write_json(result, {"predict_seconds": time.perf_counter() - t0, "n_predicted": len(memes),
                        "load_seconds": load_seconds})


# --- the systems -----------------------------------------------------------------------------

def bench_baseline(system: str, data: Path) -> dict:
    result = WORK / f"{system}.json"
    seconds, peak = run_measured(_worker("baseline", system, str(data), str(result)),
                                 WORK / "logs" / f"{system}.log")
    out = json.loads(result.read_text())
    out.update(peak_mb=[peak], train_seconds=[out["train_seconds"]],
               throughput=[out["n_predicted"] / out["predict_seconds"]], process_seconds=seconds)
    return out


def train_command(config: str, seed: int, data: Path, run_dir: Path, cache: Path,
                  epochs: int | None, init_head: Path | None = None) -> list[str]:
    def rel(path: Path) -> str:  # the command runs from the repo root; keep it readable
        return os.path.relpath(path, ROOT)

    cmd = [sys.executable, "train.py", "--config", config, "--task", "AB", "--seed", str(seed),
           "--train", rel(data / "train.json"), "--dev", rel(data / "dev_seen.json"),
           "--out", rel(run_dir), "--cache-dir", rel(cache), "--quiet"]
    if init_head is not None:
        cmd += ["--init-head", rel(init_head)]
    return cmd + (["--epochs", str(epochs)] if epochs else [])


def bench_ours(system: str, data: Path, seeds: tuple[int, ...], quick: bool) -> dict:
    import yaml

    from hateful_memes.cli import train

    config, _ = OURS[system]
    if not (ROOT / config).is_file():
        sys.exit(f"bench: {config} not found (row {system!r})")
    settings = {**train.DEFAULTS, **(yaml.safe_load((ROOT / config).read_text()) or {})}
    epochs = min(QUICK_EPOCHS, int(settings["epochs"])) if quick else None
    out: dict = {"system": system, "config": config, "reports": {}, "peak_mb": [],
                 "train_seconds": [], "fit_seconds": [], "throughput": [], "load_seconds": [],
                 "best_epoch": [], "commands": []}
    for seed in seeds:
        run_dir, cache = WORK / f"{system}-s{seed}", CACHE / f"{system}-s{seed}"
        for d in (run_dir, cache):
            shutil.rmtree(d, ignore_errors=True)
        init_head = None
        if system in INIT_HEAD_FROM:
            init_head = WORK / f"{INIT_HEAD_FROM[system]}-s{seed}" / "checkpoint.pt"
            if not init_head.is_file():
                sys.exit(f"bench: row {system!r} starts from {init_head}, which is missing: "
                         f"run the {INIT_HEAD_FROM[system]!r} row first (--rows "
                         f"{INIT_HEAD_FROM[system]},{system})")
        cmd = train_command(config, seed, data, run_dir, cache, epochs, init_head)
        seconds, peak = run_measured(cmd, WORK / "logs" / f"{system}-s{seed}-train.log")
        summary = json.loads((run_dir / "summary.json").read_text())
        dev = summary["dev"]
        out["reports"].setdefault("off", []).append(dev["thresholds_off"])
        out["reports"].setdefault("in_sample", []).append(dev["thresholds_on"])
        if "thresholds_crossfit" in dev:
            out["reports"].setdefault("crossfit", []).append(dev["thresholds_crossfit"])
        if summary.get("oof"):  # thresholds chosen out of fold on train: dev is unseen by them
            out["reports"].setdefault("train_oof", []).append(dev["thresholds_on"])
        result = WORK / f"{system}-s{seed}-predict.json"
        _, predict_peak = run_measured(_worker("predict", str(run_dir), str(data), str(result)),
                                       WORK / "logs" / f"{system}-s{seed}-predict.log")
        timing = json.loads(result.read_text())
        out["peak_mb"].append(max(peak, predict_peak))
        out["train_seconds"].append(seconds)
        out["fit_seconds"].append(summary["train_seconds"])
        out["throughput"].append(timing["n_predicted"] / timing["predict_seconds"])
        out["load_seconds"].append(timing["load_seconds"])
        out["best_epoch"].append(summary["best_epoch"])
        out["commands"].append(shlex.join(["python", *cmd[1:]]))
        shutil.rmtree(cache, ignore_errors=True)
        print(f"bench: {system} seed {seed} done in {seconds:.0f}s", file=sys.stderr)
    # Cross-fitted when train.py reports it; in-sample only as a fall-back, and labelled so.
    if "crossfit" in out["reports"] and len(out["reports"]["crossfit"]) != len(seeds):
        del out["reports"]["crossfit"]
    return out


# --- the table -------------------------------------------------------------------------------

def metric(report: dict, column: tuple[str, str]) -> float:
    task, name = column
    return report["hate_auroc_binary"] if task == "hate" else report[task][name]


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """The mean of `values` (None left out) and their sample standard deviation (ddof=1),
    which is what a reader of "mean ± std over 3 seeds" takes it for; None for one value."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def mean_pm(values: list[float], spec: str = ".3f", sign: bool = False) -> str:
    """`mean ± std` (mean_std), each formatted with `spec`, the mean with its sign if `sign`
    (a paired difference); the mean alone for one value. Every experiments script reports a
    spread over seeds with this."""
    mean, std = mean_std(values)
    return f"{mean:{'+' if sign else ''}{spec}}" + (f" ± {std:{spec}}" if std is not None else "")


def _cell(values: list[float], digits: int = 3) -> str:
    return mean_pm(values, f".{digits}f")


def _rate(values: list[float]) -> str:
    return mean_pm(values, ",.0f")


def table_rows(results: dict) -> list[dict]:
    """One dict per table row: label, reports (one per seed), the system's timings."""
    rows = []

    def add(label, system, which, ours):
        res = results[system]
        rows.append({"label": label, "system": system, "which": which, "ours": ours,
                     "reports": res["reports"][which], "train_seconds": res["train_seconds"],
                     "throughput": res["throughput"], "peak_mb": res["peak_mb"]})

    def thresholded(res) -> tuple[str, str]:
        if "train_oof" in res["reports"]:
            return "train_oof", "thresholds chosen out of fold on train (as predict.py writes)"
        if "crossfit" in res["reports"]:
            return "crossfit", "dev thresholds, 2-fold cross-fitted"
        return "in_sample", "dev thresholds (in-sample)"

    if "prior" in results:
        add("constant train prior", "prior", "off", False)
    if "tfidf" in results:
        res = results["tfidf"]
        add(f"TF-IDF + LR (C={res['C']:g}), 0.5 cut", "tfidf", "off", False)
        which, how = thresholded(res)
        add(f"TF-IDF + LR (C={res['C']:g}), {how}", "tfidf", which, False)
    for system, (config, what) in OURS.items():
        if system not in results:
            continue
        which, how = thresholded(results[system])
        if system == "frozen":
            add(f"ours, {what}, 0.5 cut", system, "off", True)
        add(f"ours, {what} ({Path(config).name}), {how}", system, which, True)
    return rows


def _main_table(rows: list[dict]) -> list[str]:
    head = ["system", *("hate AUROC" if t == "hate" else f"{TASK_NAMES[t]} {COLUMN_NAMES[m]}"
                        for t, m in COLUMNS), "train s", "predict memes/s", "peak MB"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for row in rows:
        cells = [_cell([metric(r, c) for r in row["reports"]]) for c in COLUMNS]
        cells += [_cell(row["train_seconds"], 1), _rate(row["throughput"]),
                  f"{max(row['peak_mb']):.0f}"]
        lines.append("| " + " | ".join([row["label"], *cells]) + " |")
    return lines


def _target_table(rows: list[dict]) -> list[str]:
    """Per column of each of our rows: the target met or by how much it misses, and the margin
    over the TF-IDF peer with the same thresholding (0.5 cut against 0.5 cut)."""
    peers = {row["which"] == "off": row for row in rows if row["system"] == "tfidf"}
    head = ["row", "check", *("hate AUROC" if t == "hate" else f"{TASK_NAMES[t]} {COLUMN_NAMES[m]}"
                              for t, m in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---|---" + "|---:" * len(COLUMNS) + "|",
             "| | target | " + " | ".join(f"≥ {TARGETS[c]:.2f}" for c in COLUMNS) + " |"]
    for row in rows:
        if not row["ours"]:
            continue
        means = {c: mean_std([metric(r, c) for r in row["reports"]])[0] for c in COLUMNS}
        cells = [("met" if means[c] >= TARGETS[c] else f"**miss {means[c] - TARGETS[c]:+.3f}**")
                 for c in COLUMNS]
        lines.append(f"| {row['label']} | target | " + " | ".join(cells) + " |")
        peer = peers.get(row["which"] == "off")
        if peer is not None:
            pm = {c: mean_std([metric(r, c) for r in peer["reports"]])[0] for c in COLUMNS}
            cells = [(f"{means[c] - pm[c]:+.3f}" if means[c] > pm[c]
                      else f"**{means[c] - pm[c]:+.3f}**") for c in COLUMNS]
            lines.append(f"| {row['label']} | vs TF-IDF ({peer['label'].split(', ', 1)[1]}) | "
                         + " | ".join(cells) + " |")
    return lines


def _config_lines(results: dict) -> list[str]:
    import yaml

    from hateful_memes.cli import train

    lines = []
    for system, (config, what) in OURS.items():
        if system not in results:
            continue
        settings = yaml.safe_load((ROOT / config).read_text()) or {}
        changed = {k: v for k, v in settings.items()
                   if k not in ("train", "dev") and train.DEFAULTS.get(k) != v}
        tuned = (ROOT / config).read_text().startswith("# tuned")
        lines.append(f"- `{config}` ({what}{', marked tuned' if tuned else ''}): "
                     + ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))
                     + "; everything else as `train.DEFAULTS`.")
    return lines


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.node() or 'this machine'}: {cpu}, {os.cpu_count()} CPUs "
            f"({len(os.sched_getaffinity(0))} usable), torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads (OMP_WAIT_POLICY "
            f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}), Python {platform.python_version()}, "
            "no GPU used")


def machine_brief(sklearn: bool = False) -> str:
    """The short machine description of the unseen-like check's sections: architecture, CPUs,
    torch's version (and scikit-learn's), Python's; `machine` is the long one."""
    import torch

    parts = [platform.machine(), f"{os.cpu_count()} CPUs", f"torch {torch.__version__}"]
    if sklearn:
        import sklearn as sk

        parts.append(f"scikit-learn {sk.__version__}")
    return ", ".join([*parts, f"Python {platform.python_version()}"])


def quality_section(results: dict, args, started: str, load_before: str, seconds: float) -> str:
    rows = table_rows(results)
    ours = [r for r in rows if r["ours"]]
    seeds = args.seeds
    lines = [
        "## Quality on dev_seen: text only (the meme images are not on this machine)",
        "",
        *(["**QUICK SMOKE RUN** (`--quick`: 1 seed, at most "
           f"{QUICK_EPOCHS} epochs): proves the harness works, not the benchmark.", ""]
          if args.quick else []),
        f"Command: `{args.command}`  ",
        f"Date: {started}; took {seconds / 60:.1f} min.  ",
        f"Machine: {machine()}.  ",
        f"Load average (1/5/15 min) at start {load_before}, at end {load_avg()}: "
        "timings on a loaded machine are inflated.",
        "",
        f"Trained on train.json (8,500 memes), scored on dev_seen.json (500). "
        f"Our rows: mean ± sample std over seeds {', '.join(map(str, seeds))}; one `train.py "
        "--task AB` run per seed trains the Task A and Task B heads together. "
        "The 0.5 cut is the official metric as is; the thresholded rows fold per-label "
        "thresholds chosen on dev_seen into the scores "
        "(`hateful_memes.scoring.thresholds`), 2-fold cross-fitted on dev_seen where marked "
        "(thresholds chosen on one half, scored on the other; for TF-IDF the spread is over the "
        "fold splits of the same seeds), in-sample (chosen and scored on the same memes, "
        "flattering) otherwise.",
        "",
        *_main_table(rows),
        "",
        "- train s: wall-clock of the whole training command from raw captions with an empty "
        "feature cache (our rows: the `train.py` process, start-up, MiniLM feature extraction "
        "and dev evaluation included; TF-IDF: vectoriser and the 16 classifiers at the chosen C, "
        "without the C grid).",
        "- predict memes/s: dev_seen + test.jsonl (1,500 memes) from raw captions, no feature "
        "cache (MiniLM forward included), dev thresholds folded; the one-off model load is "
        "excluded (below).",
        "- peak MB: max RSS of the training process or of the prediction process, whichever is "
        "larger (max over seeds).",
    ]
    if "tfidf" in results:
        res = results["tfidf"]
        grid = ", ".join(f"C={float(c):g}: {v:.4f}" for c, v in res["grid"].items())
        lines.append(f"- TF-IDF C chosen on dev_seen by mean micro AUROC of A and B (the "
                     f"criterion our model selects its epoch by): {grid}; the grid took "
                     f"{res['grid_seconds']:.1f} s.")
    for r in ours:
        res = results[r["system"]]
        if r["which"] == "off":
            continue
        source = INIT_HEAD_FROM.get(r["system"])
        start = (f"; each seed started from the head of the {OURS[source][1]} run of that seed "
                 f"(`--init-head`), whose training time is not in this row"
                 if source else "")
        lines.append(f"- {r['label'].split(' (')[0]}: best epoch per seed "
                     f"{res['best_epoch']}; head fit {_cell(res['fit_seconds'], 1)} s of the "
                     f"training time; model load before predicting "
                     f"{_cell(res['load_seconds'], 1)} s{start}.")
    peaks = [max(r["peak_mb"]) for r in rows]
    if peaks:
        lines.append(f"- Peak memory of the text benchmark: {max(peaks):.0f} MB "
                     f"({'under' if max(peaks) < MEMORY_TARGET_MB else '**over**'} the "
                     f"{MEMORY_TARGET_MB} MB target).")
    if ours:
        lines += ["", "### Targets (issue 5), on the means", "",
                  "`met`, or the shortfall to the target; then the margin over the TF-IDF peer "
                  "of this run with the same thresholding (bold: not ahead).", "",
                  *_target_table(rows), "", "### Configurations", "", *_config_lines(results),
                  "", "Commands (per seed):", "",
                  *(f"    {c}" for s in OURS if s in results for c in results[s]["commands"])]
    return "\n".join(lines) + "\n"


# --- RESULTS.md ----------------------------------------------------------------------------

SECTIONS = ("results_unseen.md", "results_unseen-minilm.md", "results_unseen-mpnet.md",
            "results_unseen-minilm_mpnet-concat.md", "results_unseen-minilm_3_6.md",
            "results_unseen-minilm_mpnet_minilm_3.md",
            "results_designs.md",
            "results_cooc.md", "results_ensemble.md",
            "results_quality.md", "results_speed.md", "results_ocr.md",
            "results_feature_store.md", "results_service.md")
# unseen_check.py names the section of another text encoder or join by its runs' folder
# (results_path): results_unseen-SPEC.md, and results_designs-SPEC.md for --designs. Those not
# listed above go after the listed ones of their kind, by name.
VARIANT_FAMILIES = ("results_unseen", "results_designs")


def sections(folder: Path) -> list[Path]:
    """The section files in `folder`, in RESULTS.md's order."""
    names = list(SECTIONS)
    for family in VARIANT_FAMILIES:
        found = sorted(path.name for path in folder.glob(f"{family}-*.md"))
        extra = [name for name in found if name not in names]
        last = max(i for i, name in enumerate(names)
                   if name == f"{family}.md" or name.startswith(f"{family}-"))
        names[last + 1:last + 1] = extra
    return [folder / name for name in names if (folder / name).is_file()]


def assemble(results_md: Path) -> None:
    """RESULTS.md = a header and the section files beside it (each script writes its own)."""
    parts = ["# Benchmark results", "",
             "Generated: the quality section by `experiments/bench.py` (`make bench`), the speed "
             "section by `experiments/bench_speed.py`, the OCR section by "
             "`experiments/bench_ocr.py`, the feature store section by "
             "`experiments/bench_feature_store.py`, the unseen-like check and threshold designs "
             "by `experiments/unseen_check.py`, label co-occurrence by "
             "`experiments/cooc_check.py`, seed bagging, TF-IDF weights and threshold "
             "objectives by `experiments/ensemble_check.py`; the service load test section is "
             "copied from `experiments/load_test.py`'s output. Do not edit by hand.", ""]
    for path in sections(results_md.parent):
        parts += [path.read_text().rstrip("\n"), ""]
    write_text(results_md, "\n".join(parts))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        kind, *rest = argv[1:]
        if kind == "baseline":
            worker_baseline(rest[0], Path(rest[1]), Path(rest[2]))
        else:
            worker_predict(Path(rest[0]), Path(rest[1]), Path(rest[2]))
        return 0
    p = argparse.ArgumentParser(prog="experiments/bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(SYSTEMS),
                   help=f"comma-separated systems to run, of {','.join(SYSTEMS)}")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: seed 0 only, our rows at most {QUICK_EPOCHS} epochs")
    add_seeds(p)
    p.add_argument("--data", default=str(DATA),
                   help="folder with train.json, dev_seen.json, test.jsonl")
    p.add_argument("--out", help=f"RESULTS.md to write, with its sections beside it (default "
                   f"{RESULTS.relative_to(ROOT)}; with --quick {QUICK_RESULTS.relative_to(ROOT)})")
    args = p.parse_args(argv)
    args.command = shlex.join(["python", "experiments/bench.py", *argv])
    systems = [s.strip() for s in args.rows.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        p.error(f"--rows: unknown {unknown}; choose from {','.join(SYSTEMS)}")
    systems = [s for s in SYSTEMS if s in systems]  # a row runs after the row it starts from
    if args.quick:
        args.seeds = args.seeds[:1]
    data = Path(args.data).resolve()
    if (missing := missing_annotations(data)):
        p.error(f"--data: {missing}")
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_before, t0 = load_avg(), time.perf_counter()
    results = {}
    for system in systems:
        print(f"bench: {system} (load {load_avg()})", file=sys.stderr)
        if system in OURS:
            results[system] = bench_ours(system, data, tuple(args.seeds), args.quick)
        else:
            results[system] = bench_baseline(system, data)
    write_json(WORK / "results.json", results)
    out = results_out(args.out, args.quick)
    write_text(out.parent / "results_quality.md",
               quality_section(results, args, started, load_before, time.perf_counter() - t0))
    assemble(out)
    print(wrote("bench", out, args.quick, args.out is not None), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
