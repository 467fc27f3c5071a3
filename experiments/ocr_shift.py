"""How much a model trained on given captions loses when fed OCR'd captions, on the demo data.

    python experiments/ocr_shift.py                  # 600 demo memes, 30 epochs, EasyOCR

Generates the demo data set (`hateful_memes.data.demo`, seed 0), trains Task A and Task B with
train.py as `make demo` does (EfficientNet-Lite0 + MiniLM, 30 epochs) on the given captions,
then predicts the demo dev split twice with the same runs: with the given captions, and with
each caption replaced by what the OCR engine reads off the meme's image (a copy of dev.json,
dev_ocr.json, beside it). evaluate.py scores both; the table shows macro F1, micro F1 and micro
AUROC per task for both and the difference (OCR minus given), twice: with the per-label
thresholds predict.py folds in (chosen on this same dev split with the given captions, so the
given column is in-sample and the OCR column pays for the shift in both scores and
thresholds, as a deployed model would), and with the scores cut at 0.5 (predict.py --raw).

Everything goes under --work (default experiments/runs/ocr_shift, not in git); the data and
runs and the OCR'd copy are reused when present (--fresh starts over).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hateful_memes.cli import evaluate, predict, train  # noqa: E402
from hateful_memes.data import demo  # noqa: E402
from hateful_memes.data.images import upright_rgb  # noqa: E402
from hateful_memes.runtime.files import write_json, write_jsonl  # noqa: E402
from hateful_memes.serving import ocr  # noqa: E402

TASKS = ("hate", "pc", "attack")
METRICS = (("f1_macro", "macro F1"), ("f1_micro", "micro F1"), ("roc_auc_micro", "micro AUROC"))


def ocr_copy(dev: Path, out: Path, engine: str, device: str) -> tuple[float, float]:
    """Write `out`: `dev` with each caption read off its image; returns (CER, seconds)."""
    rows = [json.loads(line) for line in dev.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    image_root = dev.resolve().parent.parent
    images = []
    for row in rows:
        with Image.open(image_root / row["img"]) as image:
            images.append(upright_rgb(image))
    reader = ocr.create_ocr(engine, device=device)
    t0 = time.perf_counter()
    captions = reader.read(images)
    seconds = time.perf_counter() - t0
    cer = ocr.character_error_rate(captions, [row["text"] for row in rows])
    write_jsonl(out, ({**row, "text": caption} for row, caption in zip(rows, captions)))
    return cer, seconds


def scores(report_dir: Path) -> dict:
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    return {task: {key: report[task][key] for key, _ in METRICS} for task in TASKS}


def table(given: dict, read: dict) -> str:
    lines = ["| task | metric | given captions | OCR captions | OCR - given |",
             "|---|---|---|---|---|"]
    for task in TASKS:
        for key, name in METRICS:
            a, b = given[task][key], read[task][key]
            lines.append(f"| {task} | {name} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "experiments" / "runs" / "ocr_shift")
    p.add_argument("--n", type=int, default=600, help="demo memes to generate")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--engine", default="auto", help="OCR engine (hateful_memes.serving.ocr)")
    p.add_argument("--device", default="auto")
    p.add_argument("--fresh", action="store_true", help="delete --work first")
    args = p.parse_args(argv)
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    data, runs, cache = args.work / "data", args.work / "runs", args.work / "cache"
    ann = data / "annotations"
    if not (ann / "dev.json").exists():
        print(f"[1/5] generating {args.n} demo memes in {data}", file=sys.stderr)
        demo.generate(data, n=args.n)
    for task in ("A", "B"):
        if (runs / f"task{task}" / "checkpoint.pt").exists():
            continue
        print(f"[2/5] training Task {task}", file=sys.stderr)
        if code := train.main(["--task", task, "--train", str(ann / "train.json"),
                               "--dev", str(ann / "dev.json"), "--image-encoder", "effnet-lite0",
                               "--text-encoder", "minilm", "--epochs", str(args.epochs),
                               "--cache-dir", str(cache), "--device", args.device,
                               "--out", str(runs / f"task{task}"), "--quiet"]):
            return code
    meta_path = args.work / "ocr_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("engine") != args.engine or not (ann / "dev_ocr.json").exists():
        print(f"[3/5] OCR ({args.engine}) of the dev images", file=sys.stderr)
        cer, seconds = ocr_copy(ann / "dev.json", ann / "dev_ocr.json", args.engine, args.device)
        meta = {"engine": args.engine, "cer": cer, "seconds": seconds}
        write_json(meta_path, meta)
    results = {}
    for cut, raw in (("dev thresholds", []), ("0.5", ["--raw"])):
        for name, gold_input in (("given", ann / "dev.json"), ("ocr", ann / "dev_ocr.json")):
            print(f"[4/5] predicting dev with the {name} captions, cut {cut}", file=sys.stderr)
            tag = f"{name}{'_raw' if raw else ''}"
            pred = args.work / f"dev_pred_{tag}.jsonl"
            if code := predict.main(["--run", str(runs / "taskA"), "--run", str(runs / "taskB"),
                                     "--input", str(gold_input), "--out", str(pred),
                                     "--cache-dir", str(cache), "--device", args.device,
                                     "--quiet", *raw]):
                return code
            print(f"[5/5] evaluating the {name} captions", file=sys.stderr)
            report_dir = args.work / f"report_{tag}"
            # Scored against the given file: the gold labels are the same in both copies.
            if code := evaluate.main(["--gold", str(ann / "dev.json"), "--pred", str(pred),
                                      "--out", str(report_dir)]):
                return code
            results[cut, name] = scores(report_dir)
    n_dev = len((ann / "dev.json").read_text(encoding="utf-8").splitlines())
    print(f"\nOCR engine {meta['engine']}: CER {meta['cer']:.3f} on the {n_dev} dev memes "
          f"({meta['seconds']:.0f} s)")
    for cut in ("dev thresholds", "0.5"):
        print(f"\nScores cut at {'the dev thresholds' if cut == 'dev thresholds' else cut}:\n")
        print(table(results[cut, "given"], results[cut, "ocr"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
