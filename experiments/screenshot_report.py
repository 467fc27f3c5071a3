"""Render a report.html to a PNG with headless Chromium, to look at it as a reader would.

    python experiments/screenshot_report.py runs/demo/dev_report/report.html
    python experiments/screenshot_report.py REPORT.html --out shot.png --height 9000

Needs Debian's `chromium` (apt-get install -y chromium); the screenshots go to
experiments/screenshots/ by default, which git ignores. The page loads nothing from the
network, so a sandbox-free headless run with networking irrelevant is enough.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PNG = b"\x89PNG\r\n\x1a\n"  # the signature every PNG file starts with


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", type=Path, help="the report.html to render")
    p.add_argument("--out", type=Path, help="PNG to write (default experiments/screenshots/"
                                            "<parent folder>_<name>.png)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=4000)
    p.add_argument("--chromium", default="chromium", help="browser binary")
    args = p.parse_args(argv)
    browser = shutil.which(args.chromium)
    if browser is None:
        print(f"error: {args.chromium} not found; apt-get install -y chromium", file=sys.stderr)
        return 1
    report = args.report.resolve()
    if not report.is_file():
        print(f"error: {args.report}: no such file", file=sys.stderr)
        return 1
    out = args.out or HERE / "screenshots" / f"{report.parent.name}_{report.stem}.png"
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Chromium writes into a fresh folder beside `out`, renamed onto it only when a PNG is
    # there: a PNG left by an earlier run can never pass for this one's.
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        shot = Path(tmp) / out.name
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--screenshot={shot}", f"--window-size={args.width},{args.height}",
               report.as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if done.returncode:
            print(f"error: chromium exited {done.returncode}; {out} not written:\n"
                  f"{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        if not shot.is_file() or not shot.read_bytes().startswith(PNG):
            print(f"error: chromium exited 0 but wrote no PNG; {out} not written:\n"
                  f"{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        os.replace(shot, out)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
