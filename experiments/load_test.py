"""Load test of the HTTP service on 127.0.0.1: requests/s, latency percentiles, failures.

    python experiments/load_test.py --run runs/demo/taskA --run runs/demo/taskB
    python experiments/load_test.py --url http://127.0.0.1:8000 --requests 500

Bounded: sends exactly --requests POST /predict requests from --concurrency threads (each
with its own keep-alive connection), every one with a generated 256x256 demo meme, and stops
sending when --max-seconds have passed. `--mode text` sends each meme's caption (the model
alone); `--mode ocr` sends none, so each request also pays for OCR. With --run it starts
serve.py itself (waiting up to --start-timeout for it) and stops it at the end; a --url that
does not answer /health within --connect-timeout is an error. Prints one table row (markdown).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench import positive_seconds  # noqa: E402


def memes(n: int) -> list[tuple[bytes, str]]:
    from hateful_memes.data import demo
    from hateful_memes.data.annotations import read_annotations

    with tempfile.TemporaryDirectory() as tmp:
        paths = demo.generate(tmp, n=max(n, 20), seed=7, image_size=256)
        rows = read_annotations(paths["train"])[:n]
        return [((Path(tmp) / m.img).read_bytes(), m.text) for m in rows]


def wait_health(url: str, proc: subprocess.Popen | None, timeout: float) -> dict:
    import httpx

    deadline = time.time() + timeout
    while True:
        try:
            return httpx.get(url + "/health",
                             timeout=min(5.0, max(0.1, deadline - time.time()))).json()
        except httpx.HTTPError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"serve.py exited with {proc.returncode}") from None
            if time.time() > deadline:
                raise TimeoutError(f"{url} did not answer in {timeout:.0f}s") from None
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    import httpx

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", action="append", help="start serve.py with these runs")
    where.add_argument("--url", help="a server already running")
    p.add_argument("--port", type=int, default=8767)
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--mode", choices=["text", "ocr"], default="text")
    p.add_argument("--max-seconds", type=float, default=900,
                   help="stop sending after this long (requests not sent count as not sent)")
    p.add_argument("--images", type=int, default=20, help="distinct memes to cycle through")
    p.add_argument("--connect-timeout", type=positive_seconds, default=30,
                   help="seconds for --url to answer /health before giving up (default 30)")
    p.add_argument("--start-timeout", type=positive_seconds, default=600,
                   help="seconds for the serve.py that --run starts to answer (default 600)")
    args = p.parse_args(argv)
    if args.url:
        try:
            wait_health(args.url, None, args.connect_timeout)
        except TimeoutError:
            print(f"load_test: {args.url} did not answer GET /health within "
                  f"{args.connect_timeout:g} s (--connect-timeout): is the service running "
                  "there?", file=sys.stderr)
            return 2
    samples = memes(args.images)
    server = None
    url = args.url
    if args.run:
        url = f"http://127.0.0.1:{args.port}"
        server = subprocess.Popen([sys.executable, str(ROOT / "serve.py"),
                                   *[a for r in args.run for a in ("--run", r)],
                                   "--port", str(args.port)], cwd=ROOT)
    try:
        before = wait_health(url, server, args.start_timeout if server else args.connect_timeout)
        local = threading.local()
        start = time.perf_counter()

        def one(i: int):
            if time.perf_counter() - start > args.max_seconds:
                return None
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(base_url=url, timeout=300)
            image, text = samples[i % len(samples)]
            data = {"text": text} if args.mode == "text" else {}
            t0 = time.perf_counter()
            try:
                r = client.post("/predict", files={"image": (f"{i}.png", image, "image/png")},
                                data=data)
                ok = r.status_code == 200 and "labels" in r.json()
                error = None if ok else f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as e:
                error = f"{type(e).__name__}: {e}"
            return time.perf_counter() - t0, error

        with ThreadPoolExecutor(args.concurrency) as pool:
            outcomes = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - start
        after = wait_health(url, server, 30)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    sent = [o for o in outcomes if o is not None]
    failures = [e for _, e in sent if e]
    latency = np.array([t for t, e in sent if not e]) * 1000
    batches = after["batches"] - before["batches"]
    memes_scored = after["memes_scored"] - before["memes_scored"]
    print(f"device {after['device']}, runs {'+'.join(after['runs'])}, OCR {after['ocr']}")
    print("| mode | requests sent | concurrency | failures | wall s | requests/s | p50 ms | "
          "p95 ms | memes per forward pass |")
    print("|---|---|---|---|---|---|---|---|---|")
    p50, p95 = (np.percentile(latency, [50, 95]) if len(latency) else (float("nan"),) * 2)
    print(f"| {args.mode} | {len(sent)} of {args.requests} | {args.concurrency} | "
          f"{len(failures)} | {wall:.1f} | {len(latency) / wall:.2f} | {p50:.0f} | {p95:.0f} | "
          f"{memes_scored / max(batches, 1):.2f} |")
    for error in failures[:5]:
        print("failure:", error)
    return 0 if not failures and len(sent) == args.requests else 1


if __name__ == "__main__":
    raise SystemExit(main())
