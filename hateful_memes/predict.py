"""`predict.py --run RUN_DIR [--run RUN_DIR2] --input FILE [--out FILE]`: a checked submission.

Each run's checkpoint rebuilds its model (predictor.RunPredictor); the runs' tasks are merged
into one file (an A run and a B run give pred_pc and pred_attack; their hateful scores are
averaged into pred_hate). The input needs no labels (`test.jsonl` format).

The file holds the scores chosen for the official metric: each label's threshold (chosen out
of fold on train) folded onto the 0.5 cut, every column on its own, so an empty label may pass
0.5 beside a real one. The label sets shown to people come from decision.decide instead.
`--prior P` first moves the scores to a hateful prevalence P (`em`: estimated on the input);
`--raw` writes the blended scores without prior or thresholds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import checkpoints, rundir
from .data import AnnotationError, Meme, read_annotations
from .inputs import MissingImagesError, check_images, drop_bad_images
from .labels import TASK_LETTERS
from .predictor import RunPredictor
from .submission import SubmissionError, check_submission, write_submission
from .training import resolve_device


def predict_run(run_dir: str | Path, memes: list[Meme], image_root: str | Path,
                cache_dir: str | Path | None, fold: bool = True, progress: bool = True,
                device: str = "auto", prior: float | str | None = None) -> dict[str, np.ndarray]:
    """Scores of one run for `memes`, in LABELS order, per task (hate included)."""
    scorer = RunPredictor.load(run_dir, device)
    return scorer.scores(memes, image_root, cache_dir, prior=prior, fold=fold, progress=progress)


def parse_prior(text: str) -> float | str:
    """`--prior`: a prevalence in (0, 1) or `em`."""
    if text == "em":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1) or 'em', got {text!r}")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a prevalence is strictly between 0 and 1, got {value}")
    return value


def _uses_images(run_dir: str | Path) -> bool:
    path = Path(run_dir) / "checkpoint.pt"
    if not path.is_file():
        return False  # predict_run names the missing checkpoint
    config = checkpoints.load_dict(path, ("config",))["config"]
    return isinstance(config, dict) and config.get("image_encoder", "none") != "none"


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
    p.add_argument("--prior", type=parse_prior, metavar="P|em",
                   help="hateful prevalence of the input, to move the scores to (default: the "
                   "training data's, no change); 'em' estimates it on the input (Saerens et al.)")
    p.add_argument("--raw", action="store_true",
                   help="write the blended scores, without prior or thresholds")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out memes whose image is missing or cannot be decoded (the "
                   "file then lacks their ids, so it is no complete submission)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    input_path = Path(args.input)
    dropped: list[str] = []
    try:
        resolve_device(args.device)
        memes = read_annotations(input_path)
        image_root = args.image_root or input_path.resolve().parent.parent
        out = Path(args.out) if args.out else None
        # Up front, before any features are computed: where the outputs go can be written,
        # and every image the runs need exists and decodes.
        if out is not None:
            rundir.check_writable_file(out, "--out")
        if args.cache_dir:
            rundir.check_writable(args.cache_dir, "--cache-dir")
        if any(_uses_images(r) for r in args.run):
            if args.skip_bad_images:
                all_memes = memes
                memes, dropped = drop_bad_images(all_memes, image_root, str(input_path))
                if not memes:
                    raise ValueError(f"{input_path}: no meme has a readable image under "
                                     f"{image_root}")
            else:
                check_images(memes, image_root, str(input_path), decode=True)
        per_run = [predict_run(r, memes, image_root, args.cache_dir, fold=not args.raw,
                               progress=not args.quiet, device=args.device,
                               prior=None if args.raw else args.prior) for r in args.run]
        scores = merge(per_run)
        if out is None:
            out = _default_out(input_path, scores)
            rundir.check_writable_file(out, "--out")
        write_submission(out, [m.id for m in memes], scores)
        # Memes left out by --skip-bad-images are missing from the file by design.
        summary = check_submission(out, None if dropped else input_path)
    except (AnnotationError, SubmissionError, MissingImagesError, FileNotFoundError,
            ValueError) as e:
        print(f"predict.py: error: {e}", file=sys.stderr)
        return 1
    if dropped:
        print(f"predict.py: left out {len(dropped)} of {len(all_memes)} memes whose image is "
              "missing or cannot be read (--skip-bad-images), so the file is not a complete "
              "submission; first:\n  " + "\n  ".join(dropped[:5]), file=sys.stderr)
    print(f"wrote {out}: {summary['n']} memes, tasks {', '.join(summary['tasks'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
