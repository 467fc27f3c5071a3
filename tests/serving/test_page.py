"""serving/page.py: the service's one page is self-contained and never renders server text as
HTML (the served page and an upload through it are checked in test_service.py and by
experiments/browser_check.py in Chromium)."""
import re

from hateful_memes.serving.page import PAGE, render_page


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


def test_text_only_runs_get_a_page_that_sends_a_caption_without_an_image():
    # The page read from the body's attribute whether a caption alone may be sent; only that
    # attribute differs between the two pages.
    assert render_page(True) == PAGE and '<body data-needs-images="true">' in PAGE
    text_only = render_page(False)
    assert text_only == PAGE.replace('data-needs-images="true"', 'data-needs-images="false"')
    assert 'document.body.dataset.needsImages !== "false"' in PAGE
    assert 'if (current) form.append("image", current);' in PAGE


def test_the_caption_label_says_where_the_caption_came_from():
    """The label said "read by OCR" whatever the caption's source, a caption typed for
    text-only runs too: only its `#source` part speaks of where, set from each result's
    `ocr`, from the person's typing, and for text-only runs before any meme."""
    label = re.search(r'<label for="caption">(.*?)</label>', PAGE, re.S).group(1)
    fixed = re.sub(r'<span id="source">.*?</span>', "", label, flags=re.S)
    assert fixed != label and "OCR" not in fixed
    said = dict(re.findall(r'(\w+): "([^"]*)"',
                           re.search(r"const SOURCE = \{(.*?)\};", PAGE, re.S).group(1)))
    assert "read by OCR" in said["ocr"]
    for kind in ("given", "typed"):
        assert "OCR" not in said[kind], said[kind]
    assert set(re.findall(r'source\("(\w+)"\)', PAGE)) <= set(said)
    assert 'source(body.ocr ? "ocr" : "given");' in PAGE
    assert '$("caption").addEventListener("input", () => source("typed"));' in PAGE
    text_only = PAGE[PAGE.index("if (!NEEDS_IMAGES) {"):]
    assert 'source("textOnly");' in text_only and said["textOnly"].startswith("type it")
