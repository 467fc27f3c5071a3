"""experiments/browser_check.py without a browser: its flags, messages and the pieces that
decide what it reports (the browser run itself needs Chromium and a trained run)."""
import base64
import json

import pytest

from conftest import experiment_script
from hateful_memes.labels import LABELS


@pytest.fixture(scope="module")
def bc():
    with experiment_script("browser_check") as module:
        yield module


@pytest.mark.parametrize("timeout", ["0", "-5", "nan", "soon"])
def test_a_timeout_that_is_not_positive_is_an_argparse_error(bc, tmp_path, timeout, capsys):
    # No Chromium there: were the timeout accepted, main would stop at that, having started
    # nothing.
    with pytest.raises(SystemExit) as e:
        bc.main(["--run", "x", "--chromium", str(tmp_path / "none"), "--timeout", timeout])
    assert e.value.code == 2
    assert "argument --timeout: expected seconds > 0" in capsys.readouterr().err


def test_no_chromium_is_said_on_stderr(bc, tmp_path, capsys):
    assert bc.main(["--run", "x", "--chromium", str(tmp_path / "none")]) == 2
    out, err = capsys.readouterr()
    assert not out and f"no Chromium at '{tmp_path / 'none'}'" in err


@pytest.fixture
def no_browser(tmp_path):
    """An executable where --chromium looks: the server's start comes first, and it is never
    run when the server does not start."""
    path = tmp_path / "chromium"
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("failure", ["no run", "not a run", "port in use"])
def test_a_server_that_does_not_start_is_one_line_naming_what_it_said(
        bc, tmp_path, no_browser, failure, capsys):
    """It ended in a traceback of its own wait for the server ("RuntimeError: [...] exited with
    1"), the server's reason somewhere above it."""
    import socket

    run = tmp_path / "run"
    if failure == "not a run":
        run.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: the server cannot bind it either
        port = taken.getsockname()[1]
        if failure != "port in use":
            taken.close()
        code = bc.main(["--run", str(run), "--chromium", str(no_browser), "--port", str(port),
                        "--timeout", "120", "--screenshot", str(tmp_path / "page.png")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    if failure == "port in use":
        reason = f"serve.py: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    else:
        checkpoint = run / "checkpoint.pt" if run.exists() else run
        reason = (f"serve.py: error: {checkpoint}: no checkpoint (is {run} a finished train.py "
                  "run?)")
    assert [line for line in err.splitlines() if line.startswith("browser_check:")] == [
        f"browser_check: serve.py did not start (exit status 1): {reason}"], err
    assert not (tmp_path / "page.png").exists()


class Page:
    """A DevTools stand-in whose page is always in `state`."""

    def __init__(self, state):
        self.state, self.reads = state, 0

    def js(self, expression):
        self.reads += 1
        return self.state


def test_waiting_reads_the_page_at_least_once(bc):
    assert bc.DevTools.wait_state(Page("done"), ("done", "error"), 0) == "done"
    page = Page("busy")
    with pytest.raises(TimeoutError, match="the page stayed 'busy'"):
        bc.DevTools.wait_state(page, ("done", "error"), 0)
    assert page.reads == 1


def test_the_screenshot_replaces_the_old_one_whole(bc, tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10

    def cdp(method, **params):
        assert (method, params) == ("Page.captureScreenshot", {"format": "png"})
        return {"data": base64.b64encode(png).decode()}

    shot = tmp_path / "shots" / "page.png"
    assert bc.save_screenshot(cdp, str(shot)) == shot and shot.read_bytes() == png
    png = png[::-1]
    bc.save_screenshot(cdp, shot)
    assert shot.read_bytes() == png
    assert [p.name for p in shot.parent.iterdir()] == ["page.png"]  # no temp left beside it

    def broken(method, **params):
        raise RuntimeError("the browser went away")

    with pytest.raises(RuntimeError):
        bc.save_screenshot(broken, shot)
    assert shot.read_bytes() == png


def test_the_summary_counts_failures_in_words(bc):
    assert bc.summary([]) == "browser check: passed"
    assert bc.summary(["a"]) == "browser check: 1 failure"
    assert bc.summary(["a", "b"]) == "browser check: 2 failures"


class TextOnlyPage:
    """A DevTools stand-in for the page served for text-only runs: the caption typed and the
    button clicked, it shows what `answer` (the caption typed -> bars, ticks, status) says."""

    def __init__(self, bc, answer, needs_images="false", disabled=False):
        # The real DevTools' wait_state, over this page.
        self.cdp = type("Fake", (bc.DevTools,), {
            "__call__": lambda _, method, **params: self.call(method, **params),
            "js": lambda _, expression: self.js(expression)})(None)
        self.bc, self.answer = bc, answer
        self.needs_images, self.disabled = needs_images, disabled
        self.methods, self.typed, self.state, self.seen = [], "", "idle", None

    def call(self, method, **params):
        self.methods.append(method)
        if method == "Input.insertText":
            self.typed += params["text"]
        if method == "Page.captureScreenshot":
            return {"data": base64.b64encode(b"\x89PNG").decode()}
        return {}

    def js(self, expression):
        if expression == self.bc.SEEN:
            return self.seen
        return {"document.readyState": "complete",
                "!!document.getElementById('file')": True,
                "document.body.dataset.needsImages": self.needs_images,
                "document.getElementById('rescore').disabled": self.disabled,
                "document.getElementById('caption').focus()": None,
                "document.getElementById('rescore').click()": self.click(expression),
                "document.getElementById('result').dataset.state": self.state}[expression]

    def click(self, expression):
        if expression.endswith(".click()") and not self.disabled:
            self.state, self.seen = "done", self.answer(self.typed)


def scored(typed):
    """The page once the service scored `typed`: every label barred, the first ticked."""
    rows = [*LABELS["hate"], *LABELS["pc"], *LABELS["attack"]]
    return {"status": "scored with the caption given", "caption": typed, "source": "(as given)",
            "rows": rows, "ticked": [LABELS["hate"][1], LABELS["pc"][1], LABELS["attack"][1]]}


HEALTH = {"needs_images": False, "tasks": ["hate", "pc", "attack"]}


def test_text_only_runs_get_a_typed_caption_scored_with_no_image(bc, tmp_path, capsys):
    page = TextOnlyPage(bc, scored)
    shot = tmp_path / "page.png"
    assert bc.check_page(page.cdp, "http://x", tmp_path / "meme.png", str(shot), HEALTH) == []
    assert page.typed == bc.TYPED
    assert "DOM.setFileInputFiles" not in page.methods  # no image went in
    assert shot.exists()
    out = capsys.readouterr().out
    assert "caption alone -> done" in out and f"caption scored: {bc.TYPED!r}" in out


@pytest.mark.parametrize("page, failure", [
    (dict(needs_images="true"), "the page is marked data-needs-images='true' for text-only runs"),
    (dict(disabled=True), "'Score with this caption' is disabled with no image"),
    (dict(answer=lambda typed: {**scored(typed), "rows": scored(typed)["rows"][1:]}),
     "hate: bars missing for ['not_hateful']"),
    (dict(answer=lambda typed: {**scored(typed), "ticked": ["hateful", "race"]}),
     "attack: no decided label ticked"),
    (dict(answer=lambda typed: {**scored(""), "status": "caption read by OCR: edit it"}),
     "the typed caption was not the one scored: status 'caption read by OCR: edit it', "
     "caption ''"),
    (dict(answer=lambda typed: {**scored(typed), "source": "(read by OCR; edit it)"}),
     "the typed caption is labelled '(read by OCR; edit it)'"),
])
def test_what_goes_wrong_on_the_text_only_page_is_said(bc, tmp_path, page, failure):
    page = TextOnlyPage(bc, **{"answer": scored, **page})
    failures = bc.check_page(page.cdp, "http://x", tmp_path / "meme.png",
                             str(tmp_path / "page.png"), HEALTH)
    assert failures == [failure]


def test_a_port_another_server_answers_on_is_not_checked(bc, tmp_path, capsys):
    """Another web server on --port answered /health before the server started here found
    the port taken, and the check went on against its page."""
    import http.server
    import threading

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"runs": ["someone_elses"], "needs_images": True}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    browser = tmp_path / "chromium"  # leaves a mark if the check goes on to open the page
    browser.write_text(f"#!/bin/sh\ntouch {tmp_path / 'opened'}\nexit 1\n")
    browser.chmod(0o755)
    other = http.server.HTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        code = bc.main(["--run", str(tmp_path / "mine"), "--chromium", str(browser),
                        "--port", str(other.server_port), "--timeout", "120"])
    finally:
        other.shutdown()
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert (f"answers for runs ['someone_elses'], not ['mine']: another server holds port "
            f"{other.server_port}") in err
    assert not (tmp_path / "opened").exists()
