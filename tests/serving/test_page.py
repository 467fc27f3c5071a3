"""serving/page.py: the service's one page is self-contained and never renders server text as
HTML (the served page and an upload through it are checked in test_service.py and by
experiments/browser_check.py in Chromium)."""
import re

from hateful_memes.serving.page import PAGE


def test_the_page_fetches_nothing_from_elsewhere():
    assert PAGE.lstrip().lower().startswith("<!doctype html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", PAGE, re.I)
    assert "@import" not in PAGE and "url(http" not in PAGE
    # It calls the service relative to where it is served (behind a proxy's prefix too).
    assert re.findall(r"""fetch\(\s*["']([^"']+)""", PAGE) == ["predict"]


def test_server_text_goes_in_as_text_only():
    assert "innerHTML" not in PAGE and "outerHTML" not in PAGE
    assert "insertAdjacentHTML" not in PAGE and "document.write" not in PAGE
    assert "textContent" in PAGE


def test_the_result_says_its_state_for_the_browser_check():
    assert '<div id="result" data-state="idle">' in PAGE
    states = set(re.findall(r"""\$\("result"\)\.dataset\.state = "(\w+)";""", PAGE))
    assert states == {"busy", "done", "error"}
