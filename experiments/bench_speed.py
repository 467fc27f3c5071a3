"""Speed of the two paths that decide how fast a run is, measured on this machine.

    python experiments/bench_speed.py                # the measurement (~10 min on 2 idle cores)
    python experiments/bench_speed.py --quick        # smoke run: few images (not RESULTS.md)
    python experiments/bench_speed.py --wait-load 1.5   # first wait for the machine to be quiet

1. Image features with EfficientNet-Lite0 on generated ~500x500 meme PNGs (the real images are
   not on this machine): images/s of the whole path the product runs
   (`features.cache.image_features`: file hash, PNG decode, resize and crop, forward) against the
   forward pass alone on preloaded tensors, over gradient mode, memory format, batch size,
   torch threads and DataLoader workers.
2. Training the heads on cached MiniLM features of the 8,500 train.json captions
   (`train.run`, the frozen text config) against an epoch loop that re-encodes every caption,
   extrapolated from one measured encoding pass.

Each part runs in its own process, whose peak memory (max RSS) is reported. Writes the speed
section of experiments/RESULTS.md (experiments/results_speed.md, joined with bench.py's); a
--quick run without --out writes experiments/runs/quick/ instead (git ignores it), so that a
smoke run never overwrites the committed measurement.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (DATA, QUICK_RESULTS, RESULTS, ROOT, load_avg, assemble,  # noqa: E402
                   machine, missing_annotations, results_out, run_measured, wrote)

from hateful_memes.runtime.files import write_json, write_text  # noqa: E402

WORK = ROOT / "experiments" / "runs" / "speed"
CACHE = ROOT / "experiments" / "cache" / "speed"
IMAGE_SIZE = 500
TARGET_RATIO = 0.8
TARGET_HEADS_SECONDS = 10.0
FROZEN_CONFIG = "experiments/text_frozen.yaml"
# This script's section of RESULTS.md (bench.sections gives them all, in their order).
SECTION = "results_speed.md"


# --- images ------------------------------------------------------------------------------------

def meme_pngs(folder: Path, n: int) -> list[Path]:
    """`n` demo memes rendered at IMAGE_SIZE with photo-like sensor noise: the demo's flat
    colours compress to a fraction of a real photo's PNG and would flatter decoding."""
    from PIL import Image

    from hateful_memes.data import demo
    from hateful_memes.runtime.files import atomic_open

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.png" for i in range(n)]
    if all(p.is_file() for p in paths):
        return paths
    rng = np.random.default_rng(0)
    for path, meme in zip(paths, demo.make_memes(max(n, demo.MIN_N), seed=0)):
        pixels = np.asarray(demo.render(meme, IMAGE_SIZE), dtype=np.int16)
        pixels = pixels + rng.normal(0, 6, pixels.shape).round().astype(np.int16)
        with atomic_open(path, "wb") as f:
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(f, format="PNG")
    return paths


def interleaved_best(jobs: list, repeats: int) -> list[float]:
    """Best of `repeats` wall-clock seconds for each job, after one untimed pass of each.

    The passes go round-robin over the jobs, so that a burst of other work on a shared
    machine hits every setting alike rather than whichever happened to run then."""
    for job in jobs:
        job()  # warm-up: oneDNN builds its kernels for each shape and format once
    best = [float("inf")] * len(jobs)
    for _ in range(repeats):
        for i, job in enumerate(jobs):
            t0 = time.perf_counter()
            job()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _grad_context(mode: str):
    import torch

    return {"grad": contextlib.nullcontext, "no_grad": torch.no_grad,
            "inference_mode": torch.inference_mode}[mode]()


def forward_job(encoder, pixels, batch_size: int, threads: int, grad: str,
                channels_last: bool):
    """The encoder alone over preloaded, already transformed pixels."""
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batches = [pixels[i:i + batch_size].contiguous(memory_format=fmt)
               for i in range(0, len(pixels), batch_size)]

    def run():
        torch.set_num_threads(threads)
        encoder.to(memory_format=fmt)
        with _grad_context(grad):
            for batch in batches:
                encoder(batch)
        encoder.to(memory_format=torch.contiguous_format)
    return run


def whole_job(encoder, paths, batch_size: int, threads: int, workers: int, channels_last: bool):
    """`features.cache.image_features` from the PNG files with no cache: the product's path."""
    import torch

    from hateful_memes.features.cache import image_features

    def run():
        torch.set_num_threads(threads)
        image_features(encoder, paths, batch_size=batch_size, num_workers=workers,
                       channels_last=channels_last, progress=False)
    return run


def worker_images(n: int, repeats: int, result: Path) -> None:
    import inspect

    import torch

    from hateful_memes.features import cache as features
    from hateful_memes.features.cache import image_features, load_rgb
    from hateful_memes.models.encoders import create_image_encoder

    paths = meme_pngs(CACHE / f"png{IMAGE_SIZE}", n)
    encoder = create_image_encoder("effnet-lite0")
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    decoded = [load_rgb(p) for p in paths]
    decode = (time.perf_counter() - t0) / n
    pixels = torch.stack([encoder.transform(image) for image in decoded])
    prepare = (time.perf_counter() - t0) / n
    del decoded
    sig = inspect.signature(image_features).parameters
    # None: the function picks the batch for the device; this runs on the CPU.
    batch_default = sig["batch_size"].default or features.CPU_IMAGE_BATCH
    defaults = {"batch_size": batch_default, "threads": default_threads,
                "workers": sig["num_workers"].default,
                "channels_last": sig["channels_last"].default}
    before = {"batch_size": 32, "threads": default_threads, "workers": 0, "channels_last": False}

    # Forward alone: from the former setting (32, contiguous) one change at a time.
    base = {"batch_size": 32, "threads": default_threads, "grad": "inference_mode",
            "channels_last": False}
    forward = [{**base, "grad": g} for g in ("grad", "no_grad", "inference_mode")]
    forward += [{**base, "channels_last": True, "batch_size": b} for b in (8, 16, 32, 64)]
    forward += [{**base, "batch_size": 8}, {**base, "threads": 1},
                {**base, "threads": 1, "channels_last": True, "batch_size": 16}]
    # The whole path: batch size x workers with channels-last, the former setting, the defaults.
    whole = [before, defaults]
    whole += [{"batch_size": b, "threads": default_threads, "workers": w, "channels_last": True}
              for b in (8, 16, 32) for w in (0, 1, 2)]
    whole += [{"batch_size": 16, "threads": 1, "workers": 1, "channels_last": True}]
    whole = [dict(t) for t in dict.fromkeys(tuple(sorted(w.items())) for w in whole)]
    matching = {"grad": "inference_mode", **{k: defaults[k] for k in
                                             ("batch_size", "threads", "channels_last")}}
    if matching not in forward:
        forward.append(matching)

    seconds = interleaved_best([forward_job(encoder, pixels, **f) for f in forward], repeats)
    for f, s in zip(forward, seconds):
        f["images_per_s"] = n / s
        print(f"forward {f}", file=sys.stderr)
    seconds = interleaved_best([whole_job(encoder, paths, **w) for w in whole], repeats)
    for w, s in zip(whole, seconds):
        w["images_per_s"] = n / s
        print(f"whole {w}", file=sys.stderr)

    def find(rows, settings):
        return next(r for r in rows if all(r[k] == v for k, v in settings.items()))

    sizes = [p.stat().st_size for p in paths]
    write_json(result, {
        "n": n, "repeats": repeats, "mean_png_kb": float(np.mean(sizes)) / 1024,
        "transform": repr(encoder.transform), "prepare_ms": prepare * 1000,
        "decode_ms": decode * 1000,
        "defaults": defaults, "forward": forward, "whole": whole,
        "before": find(whole, before), "after": find(whole, defaults),
        "forward_matching_after": find(forward, matching),
        "forward_matching_before": find(forward, {**base}),
    })


# --- text: encoding vs the heads on cached features ---------------------------------------------

def worker_encode(cache: Path, data: Path, result: Path) -> None:
    """One MiniLM pass over train and dev captions: the cost of each epoch of a loop that does
    not cache features. It also fills the cache the heads are then trained from."""
    from hateful_memes.data.annotations import read_annotations
    from hateful_memes.features.cache import text_features
    from hateful_memes.models.encoders import create_text_encoder

    shutil.rmtree(cache, ignore_errors=True)
    encoder = create_text_encoder("minilm")
    import torch

    out: dict = {"threads": torch.get_num_threads()}
    for split in ("train", "dev_seen"):
        texts = [m.text for m in read_annotations(data / f"{split}.json")]
        t0 = time.perf_counter()
        text_features(encoder, texts, cache_dir=cache, progress=False)
        out[split] = {"n": len(texts), "seconds": time.perf_counter() - t0}
    write_json(result, out)


def worker_heads(cache: Path, data: Path, runs: int, epochs: int | None, result: Path) -> None:
    """`train.run` of the frozen text config with every feature already cached."""
    import yaml

    from hateful_memes.cli import train

    import torch

    settings = yaml.safe_load((ROOT / FROZEN_CONFIG).read_text()) or {}
    out = []
    # The head's matrices are small (batch 64 x 512): a second intra-op thread has little to
    # share, and on a busy machine each op waits for both threads to be scheduled.
    for threads, seed in [(t, s) for t in dict.fromkeys((torch.get_num_threads(), 1))
                          for s in range(runs)]:
        torch.set_num_threads(threads)
        cfg = {**train.DEFAULTS, **settings, "task": "AB", "seed": seed,
               "train": str(data / "train.json"), "dev": str(data / "dev_seen.json"),
               "image_root": str(data.parent), "cache_dir": str(cache),
               "out": str(WORK / f"heads-s{seed}")}
        if epochs:
            cfg["epochs"] = epochs
        shutil.rmtree(cfg["out"], ignore_errors=True)
        t0 = time.perf_counter()
        summary = train.run(cfg, progress=False)
        out.append({"seed": seed, "threads": threads, "seconds": time.perf_counter() - t0,
                    "epochs": cfg["epochs"], "fit_seconds": summary["train_seconds"]})
    write_json(result, out)


# --- the section ---------------------------------------------------------------------------

def _setting(r: dict) -> str:
    parts = [f"batch {r['batch_size']}", f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}"]
    if "workers" in r:
        parts.append(f"{r['workers']} worker{'s' if r['workers'] != 1 else ''}")
    if "grad" in r:
        parts.append(r["grad"])
    if r.get("channels_last") is not None:
        parts.append("channels-last" if r["channels_last"] else "contiguous")
    return ", ".join(parts)


def image_lines(images: dict, peak_mb: float) -> list[str]:
    fwd, whole = images["forward"], images["whole"]
    before, after = images["before"], images["after"]
    fwd_before, fwd_after = images["forward_matching_before"], images["forward_matching_after"]
    best_fwd = max(fwd, key=lambda r: r["images_per_s"])
    ratio = after["images_per_s"] / fwd_after["images_per_s"]
    # On a machine whose every core does both jobs, decoding and the forward pass share the
    # CPU time: per image, the whole path costs the sum of their core-milliseconds.
    fwd_core_ms = 1000 * fwd_after["threads"] / fwd_after["images_per_s"]
    ceiling = fwd_core_ms / (fwd_core_ms + images["prepare_ms"])
    decode_part = decode_bound = ""
    if "decode_ms" in images:  # not in runs before 2026-11-28 08:30
        d = images["decode_ms"]
        decode_part = f", of which {d:.1f} ms the PNG decode alone (PIL)"
        decode_bound = (f" Decoding alone bounds it at {fwd_core_ms:.0f} / ({fwd_core_ms:.0f} + "
                        f"{d:.0f}) = {fwd_core_ms / (fwd_core_ms + d):.2f}, were resizing free.")

    def same_forward(w):
        match = [f for f in fwd if f["grad"] == "inference_mode"
                 and all(f[k] == w[k] for k in ("batch_size", "threads", "channels_last"))]
        return f"{w['images_per_s'] / match[0]['images_per_s']:.2f}" if match else "–"

    return [
        f"### Image features: EfficientNet-Lite0, {images['n']} generated {IMAGE_SIZE}x"
        f"{IMAGE_SIZE} meme PNGs (mean {images['mean_png_kb']:.0f} KB)", "",
        f"Images/s, best of {images['repeats']} timed passes after one warm-up pass, the passes "
        "of all settings interleaved. Preprocessing is timm's for the weights (PIL bicubic "
        f"resize to 256, centre crop 224, normalise); PNG decode and preprocessing take "
        f"{images['prepare_ms']:.1f} ms an image on one core{decode_part}. Peak memory of this "
        f"part: {peak_mb:.0f} MB (the grad-enabled forward pass keeps its activations).", "",
        "| | path | settings | images/s | whole / forward |", "|---|---|---|---:|---:|",
        f"| before | whole | {_setting(before)} | {before['images_per_s']:.1f} | "
        f"{before['images_per_s'] / fwd_before['images_per_s']:.2f} |",
        f"| before | forward alone | {_setting(fwd_before)} | {fwd_before['images_per_s']:.1f} | |",
        f"| after | whole | {_setting(after)} | {after['images_per_s']:.1f} | {ratio:.2f} |",
        f"| after | forward alone | {_setting(fwd_after)} | {fwd_after['images_per_s']:.1f} | |",
        "",
        f"Whole path / forward alone with the new defaults: **{ratio:.2f}** (target ≥ "
        f"{TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else '**missed**'}); the whole path "
        f"is {after['images_per_s'] / before['images_per_s']:.2f}× what it was. A rough bound on "
        f"{fwd_after['threads']} cores that do both jobs: the forward pass costs "
        f"{fwd_core_ms:.0f} core-ms an image ({fwd_after['threads']} threads), decoding and "
        f"preprocessing {images['prepare_ms']:.0f}, and the whole path pays both out of the same "
        f"cores, so its ratio stays near {fwd_core_ms:.0f} / ({fwd_core_ms:.0f} + "
        f"{images['prepare_ms']:.0f}) = {ceiling:.2f}.{decode_bound} Loader workers pay off only "
        "where they get cores of their own.", "",
        f"Forward alone on preloaded tensors (best: {_setting(best_fwd)}, "
        f"{best_fwd['images_per_s']:.1f}/s):", "",
        "| settings | images/s |", "|---|---:|",
        *(f"| {_setting(r)} | {r['images_per_s']:.1f} |" for r in fwd), "",
        "Whole path (`features.cache.image_features`, no cache), and its ratio to the forward pass "
        "alone at the same batch size, threads and memory format:", "",
        "| settings | images/s | whole / forward |", "|---|---:|---:|",
        *(f"| {_setting(r)} | {r['images_per_s']:.1f} | {same_forward(r)} |" for r in whole), ""]


def speed_section(run: dict) -> str:
    """The section for one run's measurements (what `main` saves in WORK/speed.json)."""
    images, encode, heads, peaks = run["images"], run["encode"], run["heads"], run["peaks"]
    load = run["load"]
    lines = ["## Speed", "",
             *(["**QUICK SMOKE RUN** (`--quick`): proves the script works; not the measurement.",
                ""] if run["quick"] else []),
             f"Command: `{run['command']}`  ", f"Date: {run['started']}.  ",
             f"Machine: {run['machine']}.  ",
             f"Load average (1/5/15 min) at start {load['start']}, at end {load['end']}"
             + (f" (waited {load['waited']:.0f} s for the 1-minute load to fall below "
                f"{load['limit']}{'' if load['reached'] else ', it did not'})"
                if load.get("limit") else "") + ".", "",
             "This is a VM on a shared host: absolute rates moved by up to 2x between runs of "
             "this script on the same day, with the same code. Compare rows of one run.", ""]
    if images:
        lines += image_lines(images, peaks["images"])
    if encode and heads:
        epochs = heads[0]["epochs"]
        encode_s = encode["train"]["seconds"] + encode["dev_seen"]["seconds"]
        by_threads: dict[int, list[dict]] = {}
        for h in heads:
            by_threads.setdefault(h["threads"], []).append(h)
        default = heads[0]["threads"]
        lines += [
            f"### Training the heads on cached MiniLM features of {encode['train']['n']:,} memes",
            "",
            f"`train.run` with `{FROZEN_CONFIG}` (`--task AB`, {epochs} epochs, image none), every "
            f"train and dev_seen caption feature already in the cache. Seconds per run: the whole "
            f"in-process `train.run` (loading MiniLM to key the cache, reading it, {epochs} epochs "
            f"with dev evaluation and checkpoints, thresholds, reports), and of it the epoch loop "
            f"(`fit`); one run per seed, {len(by_threads[default])} seeds, by torch intra-op "
            f"threads ({default} is torch's default here).", "",
            "| torch threads | seconds per run | of which `fit` | target < 10 s | "
            "re-encoding loop / cached run |", "|---:|---:|---:|---|---:|"]
        for threads, runs in by_threads.items():
            run_s, fit_s = [h["seconds"] for h in runs], [h["fit_seconds"] for h in runs]
            mean_run, mean_fit = float(np.mean(run_s)), float(np.mean(fit_s))
            loop_s = epochs * encode_s + mean_fit
            lines.append(f"| {threads} | {', '.join(f'{s:.1f}' for s in run_s)} (mean "
                         f"{mean_run:.1f}) | {', '.join(f'{s:.1f}' for s in fit_s)} | "
                         f"{'met' if mean_run < TARGET_HEADS_SECONDS else '**missed**'} | "
                         f"{loop_s:.0f} s / {mean_run:.1f} s = **{loop_s / mean_run:.0f}×** |")
        lines += [
            "",
            f"- The re-encoding loop is extrapolated, not run: one MiniLM pass (inference mode, "
            f"batch 64, length-sorted, {torch_threads_note(encode)}) over the "
            f"{encode['train']['n']:,} train captions took {encode['train']['seconds']:.1f} s "
            f"and over the {encode['dev_seen']['n']} dev_seen captions "
            f"{encode['dev_seen']['seconds']:.1f} s; a loop without the cache pays that every "
            f"epoch: {epochs} × {encode_s:.1f} s, plus the same head training. A lower bound: "
            "it counts the forward passes alone, without autograd.",
            f"- Peak memory: encoding pass {peaks['encode']:.0f} MB, cached training "
            f"{peaks['heads']:.0f} MB.", ""]
    return "\n".join(lines) + "\n"


def torch_threads_note(encode: dict) -> str:
    threads = encode.get("threads")
    return f"{threads} torch threads" if threads else "torch's default threads"


def saved_run(quick: bool) -> Path:
    """Where a run keeps its measurements for --render: a smoke run's apart, so that a later
    --render still rewrites the section from the last real measurement."""
    return WORK / ("speed-quick.json" if quick else "speed.json")


def wait_for_quiet(limit: float, max_seconds: float) -> dict:
    t0 = time.time()
    while os.getloadavg()[0] >= limit and time.time() - t0 < max_seconds:
        time.sleep(20)
    return {"limit": limit, "waited": time.time() - t0, "reached": os.getloadavg()[0] < limit}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        kind, *rest = argv[1:]
        if kind == "images":
            worker_images(int(rest[0]), int(rest[1]), Path(rest[2]))
        elif kind == "encode":
            worker_encode(Path(rest[0]), Path(rest[1]), Path(rest[2]))
        else:
            worker_heads(Path(rest[0]), Path(rest[1]), int(rest[2]), int(rest[3]) or None,
                         Path(rest[4]))
        return 0
    p = argparse.ArgumentParser(prog="experiments/bench_speed.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="images,heads", help="comma-separated: images, heads")
    p.add_argument("--images", type=int, default=128, help="generated memes to encode")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per setting (best kept)")
    p.add_argument("--runs", type=int, default=3, help="cached heads trainings to time")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 24 images, 1 repeat, 1 run, 2 epochs")
    p.add_argument("--wait-load", type=float, metavar="L",
                   help="first wait until the 1-minute load average is below L")
    p.add_argument("--wait-max", type=float, default=1200, help="longest wait for --wait-load, s")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--out", help=f"RESULTS.md to write, with its sections beside it (default "
                   f"{RESULTS.relative_to(ROOT)}; with --quick {QUICK_RESULTS.relative_to(ROOT)})")
    p.add_argument("--render", action="store_true",
                   help=f"measure nothing: rewrite the section from the last run's {WORK.name}/"
                        "speed.json (with --quick: the last smoke run's speed-quick.json)")
    args = p.parse_args(argv)
    out = results_out(args.out, args.quick)
    if args.render:
        saved = saved_run(args.quick)
        if not saved.is_file():
            p.error(f"--render: {saved} not found; it is written by a run that measures "
                    "(without --render)")
        write_text(out.parent / SECTION, speed_section(json.loads(saved.read_text())))
        assemble(out)
        print(wrote("bench_speed", out, args.quick, args.out is not None), file=sys.stderr)
        return 0
    command = shlex.join(["python", "experiments/bench_speed.py", *argv])
    parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    if not parts or parts - {"images", "heads"}:
        p.error(f"--parts: choose from images, heads (got {args.parts!r})")
    if args.quick:
        args.images, args.repeats, args.runs = 24, 1, 1
    data = Path(args.data).resolve()
    if "heads" in parts and (missing := missing_annotations(data, ("train.json",
                                                                   "dev_seen.json"))):
        p.error(f"--data: {missing}")
    load = {"start": load_avg()}
    if args.wait_load:
        load.update(wait_for_quiet(args.wait_load, args.wait_max))
        load["start"] = load_avg()
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    me = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    images = encode = heads = None
    peaks = {}
    if "images" in parts:
        res = WORK / "images.json"
        _, peaks["images"] = run_measured(
            [*me, "images", str(args.images), str(args.repeats), str(res)], WORK / "images.log")
        images = json.loads(res.read_text())
    if "heads" in parts:
        cache = CACHE / "features"
        res = WORK / "encode.json"
        _, peaks["encode"] = run_measured([*me, "encode", str(cache), str(data), str(res)],
                                          WORK / "encode.log")
        encode = json.loads(res.read_text())
        res = WORK / "heads.json"
        _, peaks["heads"] = run_measured(
            [*me, "heads", str(cache), str(data), str(args.runs), "2" if args.quick else "0",
             str(res)], WORK / "heads.log")
        heads = json.loads(res.read_text())
    run = {"command": command, "started": started, "machine": machine(), "quick": args.quick,
           "load": {**load, "end": load_avg()}, "peaks": peaks, "images": images,
           "encode": encode, "heads": heads}
    write_json(saved_run(args.quick), run)
    write_text(out.parent / SECTION, speed_section(run))
    assemble(out)
    print(wrote("bench_speed", out, args.quick, args.out is not None), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
