"""`predict.py --run RUN_DIR [--run RUN_DIR2] --input FILE [--out FILE]`: a checked submission.

Each run's checkpoint rebuilds its model; the runs' tasks are merged into one file (an A run
and a B run give pred_pc and pred_attack; their hateful scores are averaged into pred_hate).
The input needs no labels (`test.jsonl` format). The dev thresholds stored with a run are
folded into its scores unless the run was trained with --no-fold-thresholds or `--raw` is given.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import thresholds as th
from .data import AnnotationError, Meme, read_annotations
from .inputs import Encoders, MissingImagesError, build_inputs
from .labels import TASK_LETTERS
from .model import load_checkpoint
from .submission import SubmissionError, check_submission, write_submission
from .training import predict_scores, resolve_device


def predict_run(run_dir: str | Path, memes: list[Meme], image_root: str | Path,
                cache_dir: str | Path | None, fold: bool = True, progress: bool = True,
                device: str = "auto") -> dict[str, np.ndarray]:
    """Scores of one run's model for `memes`, in LABELS order, per task (hate included)."""
    path = Path(run_dir) / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint (is {run_dir} a finished train.py run?)")
    model, ckpt = load_checkpoint(path)
    dev = resolve_device(device)
    model.to(dev)
    cfg = model.cfg
    encoders = Encoders(cfg.image_encoder, cfg.text_encoder)
    inputs = build_inputs(memes, cfg, encoders, image_root, cache_dir, model=model,
                          progress=progress, device=str(dev))
    scores = predict_scores(model, inputs, progress=progress)
    if fold and ckpt.get("fold_thresholds", False):
        for task, t in ckpt.get("thresholds", {}).items():
            scores[task] = th.apply(scores[task], np.asarray(t))
    return scores


def merge(per_run: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    merged: dict[str, np.ndarray] = {}
    for scores in per_run:
        for task, s in scores.items():
            if task != "hate" and task in merged:
                raise ValueError(f"two runs both predict {task!r}; give one run per task")
            if task != "hate":
                merged[task] = s
    merged["hate"] = np.mean([scores["hate"] for scores in per_run], axis=0).astype(np.float32)
    return merged


def _default_out(input_path: Path, tasks) -> Path:
    letters = "".join(letter for letter, task in TASK_LETTERS.items() if task in tasks)
    return Path("submission") / f"{input_path.stem}_{letters}.jsonl"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="predict.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True,
                   help="a train.py run directory (repeatable)")
    p.add_argument("--input", required=True, help="annotation file to predict (labels not needed)")
    p.add_argument("--out", help="submission JSONL (default submission/<input>_<tasks>.jsonl)")
    p.add_argument("--image-root", help="folder the `img` paths are relative to "
                   "(default: the input's parent's parent)")
    p.add_argument("--cache-dir", default="cache/features")
    p.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu, cuda, ...")
    p.add_argument("--raw", action="store_true",
                   help="write raw scores, without the dev thresholds")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    input_path = Path(args.input)
    try:
        memes = read_annotations(input_path)
        image_root = args.image_root or input_path.resolve().parent.parent
        per_run = [predict_run(r, memes, image_root, args.cache_dir, fold=not args.raw,
                               progress=not args.quiet, device=args.device) for r in args.run]
        scores = merge(per_run)
        out = Path(args.out) if args.out else _default_out(input_path, scores)
        write_submission(out, [m.id for m in memes], scores)
        summary = check_submission(out, input_path)
    except (AnnotationError, SubmissionError, MissingImagesError, FileNotFoundError,
            ValueError) as e:
        print(f"predict.py: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {summary['n']} memes, tasks {', '.join(summary['tasks'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
