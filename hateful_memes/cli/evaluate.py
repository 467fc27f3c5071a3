"""Check a prediction file, or score it against a labelled annotation file.

    python evaluate.py --check submission/test_A.jsonl --gold data/annotations/test.jsonl
    python evaluate.py --gold data/annotations/dev_seen.json --pred dev_seen.jsonl \
        --out runs/eval/
    python evaluate.py --gold dev.json --pred new.jsonl --out runs/eval/ --image-root data/ \
        --compare old.jsonl
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.annotations import AnnotationError, is_labelled, read_annotations
from ..data.submission import (SubmissionError, check_set_names, check_submission,
                               read_predictions, unknown_ids)
from ..evaluation.html_report import Predictions, ReportError, check_image_paths, render
from ..evaluation.metrics import evaluate
from ..evaluation.report import format_report, write_report
from ..runtime.commands import ends_quietly
from ..runtime.progress import plural
from ..runtime.rundir import RunDirError, check_writable

# Bad input is reported as one line, not a traceback: these are the user's files, not bugs.
INPUT_ERRORS = (AnnotationError, SubmissionError, ReportError, OSError)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Validate a prediction file (--check) or score it against gold (--pred).")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", metavar="PRED", help="validate PRED; with --gold, also its ids")
    mode.add_argument("--pred", metavar="PRED", help="score PRED against --gold")
    parser.add_argument("--gold", metavar="GOLD", help="annotation file (labelled for --pred)")
    parser.add_argument("--out", metavar="DIR", help="write report.json, report.md, "
                                                     "per_label_f1.png and report.html here "
                                                     "(with --pred)")
    # --image-root, as train.py and predict.py name this folder (there --images are pictures to
    # read); --images, its first name here, still works.
    parser.add_argument("--image-root", "--images", dest="image_root", metavar="ROOT",
                        help="folder the gold file's img paths are relative to: thumbnails in "
                             "report.html (--images is the same)")
    parser.add_argument("--compare", metavar="PRED2", help="a second prediction file of the same "
                                                           "gold, set against PRED in report.html")
    args = parser.parse_args(argv)
    if args.pred and not args.gold:
        parser.error("--pred needs --gold")
    if args.out and not args.pred:
        parser.error("--out goes with --pred")
    for option in ("image_root", "compare"):
        if getattr(args, option) and not args.out:
            parser.error(f"--{option.replace('_', '-')} goes with --out (it shapes report.html)")
    return args


def _fail(message: object) -> int:
    # Named as train.py, predict.py and pretrain.py name theirs: `make demo` runs them in turn.
    print(f"evaluate.py: error: {message}", file=sys.stderr)
    return 1


def run_check(pred: str, gold: str | None) -> int:
    try:
        summary = check_submission(pred, gold)
    except INPUT_ERRORS as e:
        return _fail(e)
    tasks = ", ".join(f"pred_{task}" for task in summary["tasks"])
    line = f"{pred}: valid, {summary['n']} rows with {tasks}"
    print(line + (f"; ids match {gold}" if gold else ""))
    return 0


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, innermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def run_evaluate(gold: str, pred: str, out: str | None, images: str | None = None,
                 compare: str | None = None) -> int:
    # check_writable makes --out (and its parents) up front; a run that then fails, or is
    # stopped, removes again those it made while they are empty, rather than leave an empty
    # report folder behind. A folder that was there before is left alone.
    made = _missing_folders(Path(out)) if out else []
    code = None
    try:
        code = _run_evaluate(gold, pred, out, images, compare)
        return code
    finally:
        if code != 0:
            for folder in made:
                try:
                    folder.rmdir()
                except FileNotFoundError:
                    continue
                except OSError:  # not empty: kept, and so are its parents
                    break


def _run_evaluate(gold: str, pred: str, out: str | None, images: str | None,
                  compare: str | None) -> int:
    try:
        if out:  # before any reading or scoring, so that a bad --out fails at once
            check_writable(out, "--out")
        memes = read_annotations(gold)
        preds = read_predictions(pred)
        check_set_names(preds, memes, gold)
        other = None
        if compare is not None:
            compared = read_predictions(compare)
            other = Predictions(Path(compare), compared.ids, compared.scores)
        if images is not None:
            if not Path(images).is_dir():
                raise ReportError(f"--image-root {images}: not a folder")
            check_image_paths(memes, images, gold)
    except (*INPUT_ERRORS, RunDirError) as e:
        return _fail(e)
    if not is_labelled(memes):
        return _fail(f"{gold} carries no gold labels, so it cannot score; "
                     f"use --check {pred} --gold {gold} to check the ids only")
    ids, scores = preds.ids, preds.scores
    unknown = unknown_ids(preds, memes)
    if unknown:
        are = "is" if len(unknown) == 1 else "are"
        print(f"evaluate.py: warning: {len(unknown)} of {len(ids)} prediction "
              f"{plural('id', len(ids))} {are} not in {gold} and {are} ignored; the first is id "
              f"{unknown[0]} on line {preds.lines[unknown[0]]} of {pred}", file=sys.stderr)
    try:
        report = evaluate(memes, ids, scores)
    except ValueError as e:  # e.g. no predicted id in the gold file
        return _fail(f"{pred} against {gold}: {e}")
    print(format_report(report), end="")
    if out:
        # The page first: a --compare file that cannot be scored leaves no output behind.
        try:
            page = render(report, memes, gold, Predictions(Path(pred), ids, scores), images, other)
        except ValueError as e:  # e.g. the compared file shares no id with the gold
            return _fail(f"{compare or pred} against {gold}: {e}")
        try:
            paths = write_report(report, out, extra={"report.html": page.encode("utf-8")})
        except OSError as e:  # the files go in as a set: an earlier report there is intact
            return _fail(f"--out {out}: cannot write the report ({e.strerror or e}); "
                         "a report already there is left as it was")
        print("wrote " + ", ".join(str(path) for path in paths.values()))
    return 0


@ends_quietly  # `| head`, Ctrl-C: one line or none, not a traceback (runtime/commands.py)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check:
        return run_check(args.check, args.gold)
    return run_evaluate(args.gold, args.pred, args.out, args.image_root, args.compare)


if __name__ == "__main__":
    raise SystemExit(main())
