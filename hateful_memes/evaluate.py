"""Check a prediction file, or score it against a labelled annotation file.

    python evaluate.py --check submission/test_A.jsonl --gold data/annotations/test.jsonl
    python evaluate.py --gold data/annotations/dev_seen.json --pred dev_seen.jsonl --out eval/
"""
from __future__ import annotations

import argparse
import sys

from hateful_memes.data import AnnotationError, is_labelled, read_annotations
from hateful_memes.metrics import evaluate
from hateful_memes.report import format_report, write_report
from hateful_memes.rundir import RunDirError, check_writable
from hateful_memes.submission import SubmissionError, check_submission, read_submission

# Bad input is reported as one line, not a traceback: these are the user's files, not bugs.
INPUT_ERRORS = (AnnotationError, SubmissionError, OSError)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Validate a prediction file (--check) or score it against gold (--pred).")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", metavar="PRED", help="validate PRED; with --gold, also its ids")
    mode.add_argument("--pred", metavar="PRED", help="score PRED against --gold")
    parser.add_argument("--gold", metavar="GOLD", help="annotation file (labelled for --pred)")
    parser.add_argument("--out", metavar="DIR", help="write report.json, report.md and "
                                                     "per_label_f1.png here (with --pred)")
    args = parser.parse_args(argv)
    if args.pred and not args.gold:
        parser.error("--pred needs --gold")
    if args.out and not args.pred:
        parser.error("--out goes with --pred")
    return args


def _fail(message: object) -> int:
    print(f"error: {message}", file=sys.stderr)
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


def run_evaluate(gold: str, pred: str, out: str | None) -> int:
    try:
        if out:  # before any reading or scoring, so that a bad --out fails at once
            check_writable(out, "--out")
        memes = read_annotations(gold)
        ids, scores = read_submission(pred)
    except (*INPUT_ERRORS, RunDirError) as e:
        return _fail(e)
    if not is_labelled(memes):
        return _fail(f"{gold} carries no gold labels, so it cannot score; "
                     f"use --check {pred} --gold {gold} to check the ids only")
    known = {meme.id for meme in memes}
    unknown = [id_ for id_ in ids if id_ not in known]
    if unknown:
        print(f"warning: {len(unknown)} predicted id(s) are not in {gold} and are ignored, "
              f"first: {unknown[:5]}", file=sys.stderr)
    try:
        report = evaluate(memes, ids, scores)
    except ValueError as e:  # e.g. no predicted id in the gold file
        return _fail(f"{pred} against {gold}: {e}")
    print(format_report(report), end="")
    if out:
        try:
            paths = write_report(report, out)
        except OSError as e:  # the files go in as a set: an earlier report there is intact
            return _fail(f"--out {out}: cannot write the report ({e.strerror or e}); "
                         "a report already there is left as it was")
        print("wrote " + ", ".join(str(path) for path in paths.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check:
        return run_check(args.check, args.gold)
    return run_evaluate(args.gold, args.pred, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
