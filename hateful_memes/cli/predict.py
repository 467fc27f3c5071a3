"""`predict.py --run RUN_DIR [--run RUN_DIR2] --input FILE [--out FILE]`: a checked submission.

Each run's checkpoint rebuilds its model (predictor.RunPredictor); the runs' tasks are merged
into one file (an A run and a B run give pred_pc and pred_attack; their hateful scores are
averaged into pred_hate). The input needs no labels (`test.jsonl` format).

The file holds the scores chosen for the official metric: each label's threshold (chosen out
of fold on train) folded onto the 0.5 cut, every column on its own, so an empty label may pass
0.5 beside a real one. The label sets shown to people come from decision.decide instead.
`--prior P` first moves the scores to a hateful prevalence P (`em`: estimated on the input);
`--raw` writes the blended scores without prior or thresholds.

`predict.py --run A --run B --images PATH [PATH ...] --out OUT.jsonl` predicts image files
instead (folders recursively; png, jpg, webp, gif's first frame), with captions read by OCR
unless `--captions FILE.csv` knows them (OCR's captions are cached in --cache-dir beside the
features, so the same images are read once). Ids are the numeric file stems, else a stable hash
of the path; OUT.ids.csv maps each id to its image, caption and whether OCR read it. A re-run
skips the ids OUT already holds, and a killed run leaves OUT as it was (see images.py).
Annotation files and images are scored by the same code (api.MemeClassifier.scores).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from ..data.annotations import AnnotationError, read_annotations
from ..data.submission import PRED_FIELDS, SubmissionError, check_submission, write_submission
from ..engine.training import resolve_device
from ..features.cache import ImageReadError
from ..features.inputs import MissingImagesError, check_images, drop_bad_images
from ..labels import TASK_LETTERS
from ..runtime import distributed, rundir
from ..runtime.files import same_path
from ..runtime.commands import ArgumentParser, ends_quietly, error_exit
from ..runtime.progress import bar as progress_bar, plural
from ..serving.api import (MemeClassifier, merge,  # noqa: F401 (predict.merge stays importable)
                           open_image, open_keyed)
from ..serving.ocr import ENGINES, OCRNotInstalled, WeightsChecksumError


OCR_CHOICES = ("auto", *ENGINES, "none")


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


def _default_out(input_path: Path, tasks) -> Path:
    letters = "".join(letter for letter, task in TASK_LETTERS.items() if task in tasks)
    return Path("submission") / f"{input_path.stem}_{letters}.jsonl"


def predict_images(clf: MemeClassifier, paths: list[str], out: Path,
                   captions_file: str | None = None, prior: float | None = None,
                   chunk: int = 64, quiet: bool = False, cache_dir: str | None = None) -> int:
    """predict.py --images: every image under `paths` to a line of `out` (see images.py for
    the ids, the sidecar and resuming). Unreadable files are counted and reported, not fatal.
    The images' features and the captions OCR reads are kept in `cache_dir` (with the caption
    features), keyed by each file's bytes as --input and train.py key it: a second run over
    the same images computes and reads none of them again. Each file is read from disk once,
    a chunk at a time, its cache key and its pixels taken from the same bytes."""

    from ..data.images import ResumableOutput, assign_ids, caption_of, list_images, read_captions

    items = assign_ids(list_images(paths))
    captions = read_captions(captions_file) if captions_file else {}
    output = ResumableOutput(out, clf.tasks)
    done = output.start()
    todo = [item for item in items if item.id not in done]
    uncaptioned = [item for item in todo if caption_of(item, captions) is None]
    unreadable: dict[Path, str] = {}
    if uncaptioned and clf.ocr_spec == "none":
        unreadable = _refuse_uncaptioned(uncaptioned, len(todo), captions_file)
    bad: list[str] = []
    parts = (_open_chunk(todo[start:start + chunk], unreadable, bad)
             for start in range(0, len(todo), chunk))
    part = next(parts, None)
    # The engine now, not inside the first chunk's scoring: one that cannot load fails before
    # any progress line is printed (and its own lines cannot tear the bar). Only when the
    # first chunk has something to read: an image that cannot be decoded needs no caption,
    # and one whose caption the cache holds has it. Looking further ahead would read every
    # file twice (or hold them all): a later chunk that needs it loads it then.
    if part is not None and _needs_ocr(clf, part, captions, cache_dir):
        clf.load_ocr()
    with progress_bar(total=len(todo), unit="meme", desc="predict",
                      disable=True if quiet else None) as bar:
        while part is not None:
            if part.items:
                results = clf.predict(images=part.images, texts=[caption_of(item, captions)
                                                                 for item in part.items],
                                      prior=prior, cache_dir=cache_dir, image_keys=part.keys)
                rows = [{"id": item.id, **{PRED_FIELDS[t]: getattr(r, PRED_FIELDS[t])
                                           for t in clf.tasks}}
                        for item, r in zip(part.items, results)]
                side = [{"id": item.id, "image": str(item.path), "text": r.text,
                         "ocr": int(r.ocr)} for item, r in zip(part.items, results)]
                output.append(rows, side)
            bar.update(part.size)
            del part  # its pictures go before the next chunk's are decoded: one chunk at a time
            part = next(parts, None)
    n = output.finish()
    skipped = len(items) - len(todo)
    if bad:
        first = "\n  ".join(bad[:5])
        print(f"predict.py: {len(bad)} of {len(items)} {plural('image', len(items))} unreadable, "
              f"left out:\n  {first}", file=sys.stderr)
    if n:
        print(f"wrote {out}: {n} {plural('meme', n)} ({len(todo) - len(bad)} new, {skipped} "
              f"already there), tasks {', '.join(clf.tasks)}; ids -> images in {output.sidecar}")
    else:
        print(f"predict.py: no meme could be predicted; {out} not written", file=sys.stderr)
    return 0


class _Chunk(NamedTuple):
    """A chunk of --images: how many files it has, and its readable ones with their pictures
    and cache keys."""
    size: int
    items: list
    images: list
    keys: list[str]


def _open_chunk(items: list, unreadable: dict[Path, str], bad: list[str]) -> _Chunk:
    """`items` decoded, each file read once (`open_keyed`: its key and its pixels from the
    same bytes, as --input keys a file); one that cannot be, or that `unreadable` already
    says is not, goes to `bad` (counted, not fatal)."""
    good, images, keys = [], [], []
    for item in items:
        if item.path in unreadable:
            bad.append(unreadable[item.path])
            continue
        try:
            image, key = open_keyed(item.path)
        except ImageReadError as e:
            bad.append(str(e))
            continue
        good.append(item)
        images.append(image)
        keys.append(key)
    return _Chunk(len(items), good, images, keys)


def _needs_ocr(clf: MemeClassifier, part: _Chunk, captions: dict[str, str],
               cache_dir: str | None) -> bool:
    """Whether the OCR engine has a picture of `part` to read: one without a caption whose
    caption the cache does not hold."""
    from ..data.images import caption_of

    keys = [key for item, key in zip(part.items, part.keys) if caption_of(item, captions) is None]
    if not keys:
        return False
    known = clf.cached_captions(keys, cache_dir) if cache_dir else {}
    return any(key not in known for key in keys)


def _readable(items: list, limit: int, unreadable: dict[Path, str]) -> list[str]:
    """The paths of the first `limit` items whose image decodes (each one tried is decoded);
    the ones that do not go into `unreadable` ({path: why}), so that none is read again."""
    found: list[str] = []
    for item in items:
        if len(found) == limit:
            break
        try:
            open_image(item.path)
        except ImageReadError as e:
            unreadable[item.path] = str(e)
            continue
        found.append(str(item.path))
    return found


def _refuse_uncaptioned(uncaptioned: list, n: int, captions_file: str | None
                        ) -> dict[Path, str]:
    """--ocr none: ValueError naming the readable images without a caption, up front, and how
    to give them one. An unreadable image needs none: it is counted as unreadable later.
    Returns the unreadable ones tried ({path: why}), so that they are not read again."""
    unreadable: dict[Path, str] = {}
    readable = _readable(uncaptioned, 5, unreadable)
    if not readable:
        return unreadable
    where = f"in --captions {captions_file}" if captions_file else "(no --captions file given)"
    raise ValueError(f"--ocr none reads no caption off an image, but {len(uncaptioned)} of {n} "
                     f"images have none {where}, first: {'; '.join(readable)}; give each its "
                     "caption with --captions FILE.csv (columns image,text; image: the path as "
                     "listed, relative to its folder, or the file name), or let an OCR engine "
                     "read them (--ocr auto)")


def _refuse_overwriting_an_input(out: Path, *inputs: str | None) -> None:
    """ValueError when --out names a file this command reads: the submission would replace
    the memes (or captions) it was made from, which no rerun brings back."""
    for given in inputs:
        if given and Path(given).exists() and same_path(out, given):
            raise ValueError(f"--out {out}: is the input file {given}; writing the predictions "
                             "there would destroy it: choose another --out")


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="predict.py", description=__doc__.split("\n\n")[0])
    # --model too: torchrun's own parser takes --run as an abbreviation of its --run-path.
    p.add_argument("--run", "--model", dest="run", action="append", required=True,
                   help="a train.py run directory (repeatable; --model is the same)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="annotation file to predict (labels not needed)")
    source.add_argument("--images", nargs="+", metavar="PATH",
                        help="image files or folders (png, jpg, webp, gif): captions by OCR")
    p.add_argument("--captions", metavar="FILE.csv",
                   help="with --images: known captions, columns image,text (image: the path "
                   "as listed, relative to its folder, or the file name)")
    p.add_argument("--out", help="submission JSONL (default submission/<input>_<tasks>.jsonl; "
                   "required with --images)")
    p.add_argument("--image-root", help="folder the `img` paths are relative to "
                   "(default: the input's parent's parent)")
    p.add_argument("--cache-dir", default="cache/features",
                   help="the feature cache, shared with train.py (default %(default)s; \"\": "
                   "no cache, nothing written); with --images it keeps the captions OCR reads "
                   "too")
    p.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu, cuda, ...")
    # choices: a misspelt engine fails here, not after the runs have loaded (or never, with
    # --input or a caption for every image).
    p.add_argument("--ocr", default="auto", choices=OCR_CHOICES,
                   help="with --images: the OCR engine for images without a caption (auto: "
                   "easyocr; none: every image needs its caption in --captions)")
    p.add_argument("--chunk", type=int, default=64,
                   help="with --images: memes decoded, scored and written at a time "
                   "(default: %(default)s)")
    p.add_argument("--prior", type=parse_prior, metavar="P|em",
                   help="hateful prevalence of the input, to move the scores to (default: the "
                   "training data's, no change); 'em' estimates it on the input (Saerens et al.)")
    p.add_argument("--raw", action="store_true",
                   help="write the blended scores, without prior or thresholds")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out memes whose image is missing or cannot be decoded (the "
                   "file then lacks their ids, so it is no complete submission)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@ends_quietly  # `| head`, Ctrl-C: one line or none, not a traceback (runtime/commands.py)
def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    # Under torchrun every rank runs this; the encoders' work is split between them
    # (features/cache.py), every rank then holds all the scores, and rank 0 alone writes the file.
    rank, world, _ = distributed.init_from_env(args.device)
    try:
        if world > 1 and args.images:
            p.error("--images runs in one process (it is resumable chunk by chunk); use "
                    "--input under torchrun")
        return _main(p, args, rank)
    finally:
        # With the barrier: ranks that destroyed their gloo group without one aborted at exit
        # now and then in CI (SIGABRT, "terminate called without an active exception", after
        # returning their status). The ranks meet here: _main's checks and scoring fail
        # through distributed.gather, which every rank leaves together, and only rank 0
        # writes after it; a group a rank has already left is not waited for.
        distributed.finish()


def _main(p: argparse.ArgumentParser, args: argparse.Namespace, rank: int) -> int:
    if args.images:
        if not args.out:
            p.error("--images needs --out")
        if args.raw or args.prior == "em":
            p.error("--images writes a chunk at a time (resumable): --raw and --prior em, which "
                    "need the whole input at once, are for --input")
        if args.chunk < 1:
            p.error("--chunk must be at least 1")
        if args.skip_bad_images:
            p.error("--skip-bad-images goes with --input (--images counts unreadable files and "
                    "goes on anyway)")
    elif args.captions:
        p.error("--captions goes with --images")
    try:
        # Every rank checks alike; an error that all of them find is said once, and one that a
        # rank finds alone is raised on the others instead of leaving them waiting for it.
        out, clf, memes, dropped = distributed.on_all(lambda: _checked(args),
                                                      "checking the input and loading the runs")
        if args.images:
            return predict_images(clf, args.images, out, args.captions, args.prior,
                                  args.chunk, args.quiet, args.cache_dir or None)
        scores = clf.scores(memes, _image_root(args), cache_dir=args.cache_dir,
                            fold=not args.raw, prior=None if args.raw else args.prior,
                            progress=not args.quiet and rank == 0)
        if rank != 0:
            return 0
        write_submission(out, [m.id for m in memes], scores)
        # Memes left out by --skip-bad-images are missing from the file by design.
        summary = check_submission(out, None if dropped else Path(args.input))
    except (AnnotationError, SubmissionError, MissingImagesError, ImageReadError,
            FileNotFoundError, ValueError, OCRNotInstalled, WeightsChecksumError,
            distributed.RankFailed) as e:
        return error_exit("predict.py", e)
    if dropped:
        print(f"predict.py: left out {len(dropped)} of {len(memes) + len(dropped)} memes whose "
              "image is missing or cannot be read (--skip-bad-images), so the file is not a "
              "complete submission; first:\n  " + "\n  ".join(dropped[:5]), file=sys.stderr)
    print(f"wrote {out}: {summary['n']} {plural('meme', summary['n'])}, "
          f"tasks {', '.join(summary['tasks'])}")
    return 0


def _image_root(args: argparse.Namespace) -> Path:
    return Path(args.image_root or Path(args.input).resolve().parent.parent)


def _checked(args: argparse.Namespace) -> tuple[Path, MemeClassifier, list, list[str]]:
    """Up front, before any encoder is built or any feature computed: the outputs can be
    written, the input reads, the runs load and (with --input) every image the runs need
    exists and decodes, or with --skip-bad-images the memes whose image does not are left
    out. Returns (--out or its default, the classifier, the memes to predict (none with
    --images), a line for each meme left out)."""
    resolve_device(args.device)
    out = Path(args.out) if args.out else None
    if out is not None:
        rundir.check_writable_file(out, "--out")
        _refuse_overwriting_an_input(out, args.input, args.captions)
    if args.cache_dir:
        rundir.check_writable(args.cache_dir, "--cache-dir")
    input_path = None if args.images else Path(args.input)
    memes = [] if args.images else read_annotations(input_path)
    clf = MemeClassifier.load(*args.run, device=args.device, ocr=args.ocr)
    if out is None:
        out = _default_out(input_path, clf.tasks)
        rundir.check_writable_file(out, "--out")
    dropped: list[str] = []
    if not args.images and clf.needs_images:
        if args.skip_bad_images:
            memes, dropped = drop_bad_images(memes, _image_root(args), str(input_path))
            if not memes:
                raise ValueError(f"{input_path}: no meme has a readable image under "
                                 f"{_image_root(args)}")
        else:
            check_images(memes, _image_root(args), str(input_path), decode=True)
    return out, clf, memes, dropped


if __name__ == "__main__":
    raise SystemExit(main())
