"""A real browser against the service's page: headless Chromium scores a meme, labels appear.

    python experiments/browser_check.py --run runs/demo/taskA --run runs/demo/taskB

Starts serve.py on 127.0.0.1, starts Debian's `chromium` headless with its DevTools port, and
drives the page through the Chrome DevTools Protocol over a websocket (no Selenium, no
downloaded browser). GET /health's `needs_images` picks the path. Runs that read pictures: it
puts a generated meme into the page's file input (as a person's pick or drop would), waits for
the bars, checks that every label of every task has a bar and that each task has a decided
(ticked) label and that the caption is labelled as read by OCR, then edits the caption, scores
again and checks the page says the given caption was used and labels it so. Text-only runs
(`--image-encoder none`): with no image, it checks the page is marked so and its "Score with
this caption" button enabled, types a caption, clicks the button, and makes the same checks of
the bars and ticks, and that the typed caption is the one scored and labelled as given.
A screenshot goes to experiments/runs/ (not in git). Exits 0 when every check passed, 1 when
one failed, printing what it saw either way; 2 when it could not check (no Chromium, or the
server did not start: one line, with the server's own last line).
"""
from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from hateful_memes.labels import LABELS  # noqa: E402
from hateful_memes.runtime.files import atomic_open  # noqa: E402
from hateful_memes.runtime.progress import plural  # noqa: E402

from bench import positive_seconds  # noqa: E402


class Exited(RuntimeError):
    """The process that was to answer exited first."""


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bytes:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise Exited(f"exit status {proc.returncode}") from None
            if time.time() > deadline:
                raise TimeoutError(f"{url} did not answer in {timeout:.0f}s") from None
            time.sleep(0.5)


class LastLine:
    """A process's stderr passed on as it comes, its last non-blank line kept: why a server
    that did not start stopped (serve.py's error line, a traceback's last line)."""

    def __init__(self, stream):
        self.line = ""
        self.thread = threading.Thread(target=self._relay, args=(stream,), daemon=True)
        self.thread.start()

    def _relay(self, stream) -> None:
        for line in stream:
            sys.stderr.write(line)
            sys.stderr.flush()
            if line.strip():
                self.line = line.strip()

    def after_exit(self) -> str:
        """The last line, once the process has exited: its pipe then ends."""
        self.thread.join(timeout=10)
        return self.line


class DevTools:
    """A minimal Chrome DevTools Protocol client: send a command, wait for its answer."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    def __call__(self, method: str, **params) -> dict:
        id_ = next(self.ids)
        self.ws.send(json.dumps({"id": id_, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == id_:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        out = self("Runtime.evaluate", expression=expression, returnByValue=True,
                   awaitPromise=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def wait_state(self, states: tuple[str, ...], timeout: float) -> str:
        """The page's state once it is one of `states`; it is read at least once."""
        deadline = time.time() + timeout
        while True:
            state = self.js("document.getElementById('result').dataset.state")
            if state in states:
                return state
            if time.time() >= deadline:
                raise TimeoutError(f"the page stayed {state!r} for {timeout:.0f}s")
            time.sleep(0.2)


def make_meme(path: Path) -> None:
    from hateful_memes.data import demo

    with tempfile.TemporaryDirectory() as tmp:
        demo.generate(tmp, n=20, seed=3, image_size=256)
        first = sorted(Path(tmp, "img").glob("*.png"))[0]
        shutil.copyfile(first, path)


# What the page shows once scored: the status line, the caption box and its label's word on
# where the caption came from, the bars and the ticks.
SEEN = """(() => ({
    status: document.getElementById('status').textContent,
    caption: document.getElementById('caption').value,
    source: document.getElementById('source').textContent,
    rows: [...document.querySelectorAll('.row')].map(r => r.dataset.label),
    ticked: [...document.querySelectorAll('.row.on')].map(r => r.dataset.label)}))()"""

# The caption the checks type (caption-only path) or put in place of the OCR'd one.
TYPED = "a caption typed in the browser"


def check_bars(seen: dict, tasks: list[str]) -> list[str]:
    """Every label of every task has a bar, and each task a ticked (decided) label."""
    failures = []
    for task in tasks:
        names = LABELS[task]
        if not set(names) <= set(seen["rows"]):
            failures.append(f"{task}: bars missing for {sorted(set(names) - set(seen['rows']))}")
        if not set(names) & set(seen["ticked"]):
            failures.append(f"{task}: no decided label ticked")
    return failures


def check_page(cdp: DevTools, base: str, meme: Path, screenshot: str,
               health: dict) -> list[str]:
    """Drive the page; returns what failed. `health` is GET /health's answer: runs that read
    pictures get a meme uploaded, text-only ones (needs_images false) a caption alone."""
    cdp("Page.enable")
    cdp("Page.navigate", url=base + "/")
    deadline = time.time() + 30
    while cdp.js("document.readyState") != "complete" or not cdp.js(
            "!!document.getElementById('file')"):
        if time.time() > deadline:
            raise TimeoutError("the page did not load")
        time.sleep(0.2)
    if health["needs_images"]:
        failures = check_upload(cdp, meme, health["tasks"])
    else:
        failures = check_caption_only(cdp, health["tasks"])
    print(f"screenshot: {save_screenshot(cdp, screenshot)}")
    return failures


def scored(cdp: DevTools, what: str, started: float, timeout: float, caption_is: str,
           tasks: list[str]) -> tuple[dict, list[str]]:
    """Wait for the page to finish scoring (started at `started`), print what it shows and
    return it with the failures of its bars."""
    state = cdp.wait_state(("done", "error"), timeout)
    took = time.time() - started
    seen = cdp.js(SEEN)
    print(f"{what} -> {state} in {took:.1f}s; status: {seen['status']!r}")
    print(f"{caption_is}: {seen['caption']!r}; labelled {seen['source']!r}")
    print(f"bars: {len(seen['rows'])}; ticked: {seen['ticked']}")
    failures = [] if state == "done" else [f"the page ended in state {state!r}"]
    return seen, failures + check_bars(seen, tasks)


def check_upload(cdp: DevTools, meme: Path, tasks: list[str]) -> list[str]:
    """Runs that read pictures: upload the meme, then score it again with an edited caption."""
    root = cdp("DOM.getDocument")["root"]["nodeId"]
    node = cdp("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
    t0 = time.time()
    cdp("DOM.setFileInputFiles", files=[str(meme)], nodeId=node)
    seen, failures = scored(cdp, "upload", t0, 180, "caption (OCR)", tasks)
    if "read by OCR" not in seen["source"]:
        failures.append(f"the OCR'd caption is labelled {seen['source']!r}")
    cdp.js(f"document.getElementById('caption').value = {json.dumps(TYPED)}")
    cdp.js("document.getElementById('rescore').click()")
    state = cdp.wait_state(("done", "error"), 120)
    seen = cdp.js(SEEN)
    print(f"re-scored with an edited caption -> {state}; status: {seen['status']!r}; "
          f"labelled {seen['source']!r}")
    if state != "done" or "caption given" not in seen["status"]:
        failures.append(f"re-scoring with a caption: {state}, {seen['status']!r}")
    if "as given" not in seen["source"]:
        failures.append(f"the caption given is labelled {seen['source']!r}")
    return failures


def check_caption_only(cdp: DevTools, tasks: list[str]) -> list[str]:
    """Text-only runs: type a caption with no image and score it with the page's button."""
    marked = cdp.js("document.body.dataset.needsImages")
    disabled = cdp.js("document.getElementById('rescore').disabled")
    print(f"text-only runs: page data-needs-images={marked!r}, "
          f"'Score with this caption' {'disabled' if disabled else 'enabled'} with no image")
    if marked != "false":
        failures = [f"the page is marked data-needs-images={marked!r} for text-only runs"]
    else:
        failures = []
    if disabled:
        # Clicking a disabled button does nothing: waiting for bars would only time out.
        return failures + ["'Score with this caption' is disabled with no image"]
    cdp.js("document.getElementById('caption').focus()")
    # Typed as keystrokes would be (input events), not set behind the page's back.
    cdp("Input.insertText", text=TYPED)
    t0 = time.time()
    cdp.js("document.getElementById('rescore').click()")
    seen, found = scored(cdp, "caption alone", t0, 120, "caption scored", tasks)
    failures += found
    if "caption given" not in seen["status"] or seen["caption"] != TYPED:
        failures.append(f"the typed caption was not the one scored: status {seen['status']!r}, "
                        f"caption {seen['caption']!r}")
    if "as given" not in seen["source"]:
        # The label said "read by OCR" for a caption the person typed.
        failures.append(f"the typed caption is labelled {seen['source']!r}")
    return failures


def save_screenshot(cdp, path: str | Path) -> Path:
    """The page as a PNG at `path`, written whole or not at all (a temp file renamed)."""
    png = base64.b64decode(cdp("Page.captureScreenshot", format="png")["data"])
    with atomic_open(path, "wb") as f:
        f.write(png)
    return Path(path)


def summary(failures: list[str]) -> str:
    if not failures:
        return "browser check: passed"
    return f"browser check: {len(failures)} {plural('failure', len(failures))}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, help="a train.py run (repeatable)")
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    p.add_argument("--screenshot", default=str(ROOT / "experiments" / "runs" /
                                               "browser_check.png"))
    p.add_argument("--timeout", type=positive_seconds, default=300,
                   help="seconds for the server to start (> 0)")
    args = p.parse_args(argv)
    if not shutil.which(args.chromium):
        print(f"browser_check: no Chromium at {args.chromium!r} (apt-get install -y chromium)",
              file=sys.stderr)
        return 2
    from websockets.sync.client import connect

    tmp = Path(tempfile.mkdtemp(prefix="browser_check."))
    meme = tmp / "meme.png"
    make_meme(meme)
    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, str(ROOT / "serve.py"),
                               *[a for r in args.run for a in ("--run", r)],
                               "--port", str(args.port)], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True, errors="replace")
    said = LastLine(server.stderr)
    browser = None
    failures: list[str] = []
    try:
        try:
            health = json.loads(wait_http(base + "/health", args.timeout, server))
        except Exited as e:
            last = said.after_exit()
            print(f"browser_check: serve.py did not start ({e})" + (f": {last}" if last else ""),
                  file=sys.stderr)
            return 2
        except TimeoutError as e:
            print(f"browser_check: serve.py did not start: {e}", file=sys.stderr)
            return 2
        # Another process that holds the port answers before the server started here has
        # found it taken: its page is not the one to check.
        expected = [Path(r).name for r in args.run]  # as RunPredictor names a run
        if health.get("runs") != expected:
            print(f"browser_check: {base} answers for runs {health.get('runs')}, not "
                  f"{expected}: another server holds port {args.port}", file=sys.stderr)
            return 2
        print(f"runs read pictures: {health['needs_images']}")
        profile = tmp / "profile"
        browser = subprocess.Popen([args.chromium, "--headless=new", "--no-sandbox",
                                    "--disable-gpu", "--no-first-run",
                                    "--remote-debugging-port=0", f"--user-data-dir={profile}",
                                    "--window-size=1000,1400", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.time() > deadline or browser.poll() is not None:
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.2)
        devtools_port = port_file.read_text().split()[0]
        targets = json.loads(wait_http(f"http://127.0.0.1:{devtools_port}/json/list", 30))
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=2 ** 26) as ws:
            failures += check_page(DevTools(ws), base, meme, args.screenshot, health)
    finally:
        for proc in (browser, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    for failure in failures:
        print(f"FAIL: {failure}")
    print(summary(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
