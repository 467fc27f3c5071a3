"""experiments/browser_check.py without a browser: its flags, messages and the pieces that
decide what it reports (the browser run itself needs Chromium and a trained run)."""
import base64

import pytest

from conftest import experiment_script


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
