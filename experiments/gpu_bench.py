"""GPU throughput of the three paths that a GPU is bought for, in one prepared run.

    python experiments/gpu_bench.py --out experiments/gpu_bench.json    # on a GPU, a few minutes
    python experiments/gpu_bench.py --smoke --out /tmp/gpu_smoke.json   # CPU, tiny: the harness

1. Image features: images/s of EfficientNet-Lite0 (the project's `effnet-lite0` encoder) and a
   ResNet-50 from timm with random weights (nothing is downloaded), bf16 autocast, channels
   last. "forward" times the encoder alone on a batch already on the device; "whole path" times
   `features.cache.image_features` (file hash, PNG decode, preprocessing, forward; no cache) on
   generated meme PNGs, once for each number of DataLoader workers, so that the table shows
   how many keep the GPU fed. Each whole-path call starts its own workers, as the product does.
2. Fine-tuning: memes/s of a train step of `train.py --finetune --finetune-image` with MiniLM
   and EfficientNet-Lite0 (hateful_memes.models.model and training's optimizer) on generated demo
   memes: as training.fit runs it (fp32, each batch decoded and tokenised in the step), and
   with the batches prepared beforehand on the device, in fp32 and in bf16 autocast.
3. Barlow Twins: images/s (each image gives two views) of a pretraining step at batch 256 with
   ResNet-50 and the paper's 8192-8192-8192 projector, LARS, bf16 autocast: the model alone on
   random views on the device, and the whole path from PNGs through pretrain's augmentations
   with DataLoader workers.

Every rate is the best of `Sizes.repeats` (3) timed runs of `Sizes.steps` (10) steps after
`Sizes.warmup` (3) untimed steps, CUDA synchronised; these are fields of `Sizes` in this file, not
flags. Prints a table and writes all numbers to `--out` as JSON.
`--smoke` shrinks everything (4 tiny images, timm's test_resnet, a 32-wide projector, batches
of 2, Barlow Twins' of 4) so that a test can run it end to end on the CPU in seconds; its
numbers mean nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench import load_avg  # noqa: E402

from hateful_memes.data import demo  # noqa: E402
from hateful_memes.runtime.files import atomic_open, write_json, write_jsonl  # noqa: E402


@dataclasses.dataclass
class Sizes:
    images: int = 4096            # generated PNGs (distinct: the feature path dedups by content)
    png_size: int = 500           # side of each PNG, as bench_speed.py (about 480 KB each)
    image_batch: int = 256
    workers: tuple[int, ...] = ()  # whole-path settings; () = a quarter, half and all the CPUs
    resnet: str = "resnet50"
    finetune_memes: int = 1024
    finetune_batch: int = 64      # train.py's default
    bt_backbone: str = "resnet50"
    bt_projector: str = "8192-8192-8192"
    bt_batch: int = 256
    bt_image_size: int | None = None  # None: the backbone's own (224)
    steps: int = 10
    warmup: int = 3
    repeats: int = 3


# Batches of 2, over 4 images (the whole path still runs more than one batch): on a CPU without
# bf16 support the autocast convolutions are emulated, about ten times slower than fp32, and
# batches of 4 over 8 images made the smoke run take most of a minute.
SMOKE = Sizes(images=4, png_size=96, image_batch=2, workers=(0, 1), resnet="test_resnet",
              finetune_memes=4, finetune_batch=2, bt_backbone="test_resnet",
              bt_projector="32-32-32", bt_batch=4, bt_image_size=64, steps=1, warmup=1, repeats=1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(step: Callable[[], None], device: torch.device, sizes: Sizes,
                 steps: int | None = None, warmup: int | None = None) -> float:
    """Best wall-clock seconds of `steps` calls of `step`, after `sizes.warmup` untimed ones."""
    steps = sizes.steps if steps is None else steps
    for _ in range(sizes.warmup if warmup is None else warmup):
        step()
    best = float("inf")
    for _ in range(sizes.repeats):
        sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def autocast(device: torch.device, enabled: bool = True):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


# --- data ------------------------------------------------------------------------------------

def _render(job: tuple) -> None:
    meme, size, path = job
    from PIL import Image

    # Photo-like sensor noise: the demo's flat colours compress to a fraction of a real
    # photo's PNG and would flatter decoding (as in bench_speed.py).
    rng = np.random.default_rng(meme.id)
    pixels = np.asarray(demo.render(meme, size), dtype=np.int16)
    pixels = pixels + rng.normal(0, 6, pixels.shape).round().astype(np.int16)
    with atomic_open(path, "wb") as f:
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(f, format="PNG")


def make_memes(root: Path, n: int, size: int) -> tuple[Path, list[Path]]:
    """`n` labelled demo memes as one annotation file (all of them train rows) and their PNGs,
    rendered on all the CPUs."""
    memes = [dataclasses.replace(m, split="train")
             for m in demo.make_memes(max(n, demo.MIN_N), seed=0)[:n]]
    jobs = [(m, size, root / m.img) for m in memes]
    if len(jobs) < 64:
        for job in jobs:
            _render(job)
    else:  # forked before this process has run any torch op or touched CUDA
        with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
            pool.map(_render, jobs, chunksize=8)
    annotations = root / "train.json"
    write_jsonl(annotations, (m.row() for m in memes))
    return annotations, [root / m.img for m in memes]


# --- 1. image features -----------------------------------------------------------------------

def image_encoders(sizes: Sizes):
    import timm

    from hateful_memes.models.encoders import TimmImageEncoder, create_image_encoder

    yield "EfficientNet-Lite0", lambda: create_image_encoder("effnet-lite0")
    yield (f"{sizes.resnet} (timm, random weights)",
           lambda: TimmImageEncoder(f"timm:{sizes.resnet}",
                                    timm.create_model(sizes.resnet, pretrained=False,
                                                      num_classes=0)))


def bench_image_features(paths: list[Path], device: torch.device, sizes: Sizes,
                         workers: tuple[int, ...]) -> list[dict]:
    from hateful_memes.features.cache import image_features, load_rgb

    rows = []
    for name, make in image_encoders(sizes):
        encoder = make().to(device).eval()
        batch = [encoder.transform(load_rgb(p)) for p in paths[:sizes.image_batch]]
        pixels = torch.stack(batch).to(device, memory_format=torch.channels_last)
        encoder.to(memory_format=torch.channels_last)

        def forward():
            with torch.inference_mode(), autocast(device):
                encoder(pixels)

        seconds = best_seconds(forward, device, sizes)
        forward_rate = sizes.steps * len(pixels) / seconds
        rows.append({"model": name, "path": "forward", "batch": len(pixels), "workers": None,
                     "images_per_s": forward_rate})
        encoder.to(memory_format=torch.contiguous_format)
        for w in workers:
            def whole():
                with autocast(device):
                    image_features(encoder, paths, batch_size=sizes.image_batch, num_workers=w,
                                   device=str(device), progress=False, channels_last=True)

            # One call is thousands of images: one untimed call builds the kernels.
            seconds = best_seconds(whole, device, sizes, steps=1, warmup=1)
            rate = len(paths) / seconds
            rows.append({"model": name, "path": "whole path", "batch": sizes.image_batch,
                         "workers": w, "images_per_s": rate, "of_forward": rate / forward_rate})
    return rows


# --- 2. fine-tuning --------------------------------------------------------------------------

def bench_finetune(annotations: Path, device: torch.device, sizes: Sizes) -> list[dict]:
    """Train steps on the first `sizes.finetune_memes` memes of `annotations`."""
    from hateful_memes.data.annotations import gold_matrix, read_annotations
    from hateful_memes.features.inputs import Encoders, build_inputs
    from hateful_memes.models.model import MemeModel, ModelConfig
    from hateful_memes.engine.training import FitConfig, _optimizer, _to

    memes = read_annotations(annotations)[:sizes.finetune_memes]
    tasks = ("pc", "attack")
    encoders = Encoders("effnet-lite0", "minilm")
    cfg = ModelConfig(tasks=tasks, image_encoder="effnet-lite0", text_encoder="minilm",
                      image_dim=encoders.image.dim, text_dim=encoders.text.dim,
                      finetune_text=True, finetune_image=True)
    model = MemeModel(cfg, encoders.image, encoders.text).to(device)
    inputs = build_inputs(memes, cfg, encoders, annotations.parent, cache_dir=None, model=model,
                          progress=False, device=str(device))
    targets = {t: torch.from_numpy(gold_matrix(memes, t)).to(device) for t in ("hate", *tasks)}
    optimizer = _optimizer(model, FitConfig())
    model.train()
    b = sizes.finetune_batch
    order = [list(range(s, s + b)) for s in range(0, len(memes) - b + 1, b)]
    prepared = [tuple(_to(x, device) for x in inputs.batch(idx)) for idx in order]
    cursor = [0]

    def step(amp: bool, decode: bool):
        k = cursor[0] % len(order)
        cursor[0] += 1
        idx = order[k]
        image, text = (_to(x, device) for x in inputs.batch(idx)) if decode else prepared[k]
        with autocast(device, enabled=amp):
            loss = model.loss(model(image, text), {t: v[idx] for t, v in targets.items()})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    rows = []
    for label, amp, decode in (("as training.fit runs it: fp32, batch decoded in the step",
                                False, True),
                               ("fp32, batches prepared on the device", False, False),
                               ("bf16 autocast, batches prepared on the device", True, False)):
        seconds = best_seconds(lambda: step(amp, decode), device, sizes)
        rows.append({"setting": label, "batch": b, "memes_per_s": sizes.steps * b / seconds})
    return rows


# --- 3. Barlow Twins -------------------------------------------------------------------------

def bench_barlow_twins(paths: list[Path], device: torch.device, sizes: Sizes,
                       workers: int) -> list[dict]:
    from torch.utils.data import DataLoader

    from hateful_memes.cli.pretrain import ImageDataset, collate_views
    from hateful_memes.pretraining.augment import Transform, backbone_data_config
    from hateful_memes.pretraining.barlow_twins import BarlowTwins
    from hateful_memes.pretraining.lars import adjust_learning_rate, make_optimizer

    torch.manual_seed(0)
    model = BarlowTwins(sizes.bt_backbone, sizes.bt_projector).to(device)
    model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, "lars")
    adjust_learning_rate(optimizer, 1000, 100, 100, 10, sizes.bt_batch)  # past the warm-up
    data = backbone_data_config(sizes.bt_backbone, sizes.bt_image_size)
    size, b = data["image_size"], sizes.bt_batch

    def step(y1, y2):
        y1 = y1.to(device, non_blocking=True, memory_format=torch.channels_last)
        y2 = y2.to(device, non_blocking=True, memory_format=torch.channels_last)
        with autocast(device):
            loss = model(y1, y2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    views = [torch.randn(b, 3, size, size, device=device) for _ in range(2)]
    seconds = best_seconds(lambda: step(*views), device, sizes)
    rows = [{"setting": "model alone, random views on the device", "batch": b,
             "image_size": size, "workers": None, "images_per_s": sizes.steps * b / seconds}]
    dataset = ImageDataset(paths, Transform(size, data["mean"], data["std"]))
    loader = DataLoader(dataset, batch_size=b, shuffle=True, num_workers=workers,
                        pin_memory=device.type == "cuda", drop_last=True,
                        collate_fn=collate_views, persistent_workers=workers > 0)
    batches = iter(())

    def loaded_step():
        nonlocal batches
        try:
            y1, y2, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            y1, y2, _ = next(batches)
        step(y1, y2)

    rows.append({"setting": "whole path: PNG, augmentations, DataLoader", "batch": b,
                 "image_size": size, "workers": workers,
                 "images_per_s": sizes.steps * b / best_seconds(loaded_step, device, sizes)})
    return rows


# --- report ----------------------------------------------------------------------------------

def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    return f"CPU ({os.cpu_count()} CPUs)"


def table(result: dict) -> str:
    lines = [f"device: {result['device']}; torch {result['torch']}; "
             f"{'SMOKE RUN (numbers mean nothing)' if result['smoke'] else 'full sizes'}; "
             f"load average {result['load_before']} -> {result['load_after']}", "",
             "| image features | path | batch | workers | images/s | of forward |",
             "|---|---|---:|---:|---:|---:|"]
    for r in result["image_features"]:
        ratio = f"{r['of_forward']:.2f}" if "of_forward" in r else ""
        workers = "" if r["workers"] is None else r["workers"]
        lines.append(f"| {r['model']} | {r['path']} | {r['batch']} | {workers} "
                     f"| {r['images_per_s']:,.0f} | {ratio} |")
    lines += ["", "| fine-tuning MiniLM + EfficientNet-Lite0 | batch | memes/s |",
              "|---|---:|---:|"]
    for r in result["finetune"]:
        lines.append(f"| {r['setting']} | {r['batch']} | {r['memes_per_s']:,.1f} |")
    lines += ["", f"| Barlow Twins {result['sizes']['bt_backbone']}, projector "
              f"{result['sizes']['bt_projector']} | batch | size | workers | images/s |",
              "|---|---:|---:|---:|---:|"]
    for r in result["barlow_twins"]:
        workers = "" if r["workers"] is None else r["workers"]
        lines.append(f"| {r['setting']} | {r['batch']} | {r['image_size']} | {workers} "
                     f"| {r['images_per_s']:,.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="JSON file for the numbers")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, a few seconds on the CPU: checks the harness, not the GPU")
    p.add_argument("--device", default=None,
                   help="default: cuda, or cpu with --smoke; a full run on the CPU needs "
                        "--device cpu")
    p.add_argument("--dir", type=Path, default=None, help="where the PNGs are generated "
                   "(default: a temporary folder, removed afterwards)")
    args = p.parse_args(argv)
    sizes = SMOKE if args.smoke else Sizes()
    if args.device is None:
        if args.smoke:
            args.device = "cpu"
        elif torch.cuda.is_available():
            args.device = "cuda"
        else:
            p.error("no CUDA GPU here: use --smoke to check the harness, or --device cpu to "
                    "measure the full sizes on the CPU")
    device = torch.device(args.device)
    cpus = len(os.sched_getaffinity(0))
    workers = sizes.workers or tuple(sorted({max(1, cpus // 4), max(1, cpus // 2), cpus}))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    load_before = load_avg()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="gpu_bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        annotations, paths = make_memes(root, max(sizes.images, sizes.finetune_memes),
                                        sizes.png_size)
        print(f"generated {len(paths)} PNGs in {time.perf_counter() - t:.1f} s",
              file=sys.stderr, flush=True)
        image_rows = bench_image_features(paths[:sizes.images], device, sizes, workers)
        print("image features done", file=sys.stderr, flush=True)
        finetune_rows = bench_finetune(annotations, device, sizes)
        print("fine-tuning done", file=sys.stderr, flush=True)
        bt_rows = bench_barlow_twins(paths[:sizes.images], device, sizes, max(workers))
    result = {"date": started, "device": describe_device(device), "torch": torch.__version__,
              "python": platform.python_version(), "cpus": cpus, "smoke": args.smoke,
              "sizes": dataclasses.asdict(sizes), "load_before": load_before,
              "load_after": load_avg(),
              "image_features": image_rows, "finetune": finetune_rows, "barlow_twins": bt_rows}
    write_json(args.out, result)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
