"""experiments/screenshot_report.py with a stand-in for Chromium: it reports the PNG this run
rendered, and fails, saying so, when none appeared, whatever an earlier run left."""
import os
import stat

import pytest

from conftest import experiment_script

PNG = b"\x89PNG\r\n\x1a\nnew"
# Writes PNG to --screenshot=PATH when WRITE is set, and exits with EXIT.
FAKE = """#!/bin/sh
for a in "$@"; do
  case "$a" in
    --screenshot=*) [ -n "$WRITE" ] && printf '\\211PNG\\r\\n\\032\\nnew' > "${a#*=}";;
  esac
done
exit "${EXIT:-0}"
"""


@pytest.fixture
def shot(tmp_path, monkeypatch):
    chromium = tmp_path / "chromium"
    chromium.write_text(FAKE)
    chromium.chmod(chromium.stat().st_mode | stat.S_IXUSR)
    report = tmp_path / "run" / "report.html"
    report.parent.mkdir()
    report.write_text("<html></html>")
    out = tmp_path / "shots" / "report.png"
    out.parent.mkdir()
    out.write_bytes(b"\x89PNG\r\n\x1a\nstale")

    def run(write: bool, code: int = 0) -> int:
        monkeypatch.setenv("WRITE", "1" if write else "")
        monkeypatch.setenv("EXIT", str(code))
        with experiment_script("screenshot_report") as module:
            return module.main([str(report), "--out", str(out), "--chromium", str(chromium)])
    return run, out


def test_a_stale_png_does_not_hide_that_chromium_wrote_none(shot, capsys):
    run, out = shot
    assert run(write=False) == 1
    assert "wrote no PNG" in capsys.readouterr().err
    assert os.listdir(out.parent) == ["report.png"]  # no temp folder left


def test_a_failing_chromium_is_an_error(shot, capsys):
    run, out = shot
    assert run(write=True, code=3) == 1
    assert "chromium exited 3" in capsys.readouterr().err
    assert out.read_bytes().endswith(b"stale")


def test_the_new_png_replaces_the_old(shot, capsys):
    run, out = shot
    assert run(write=True) == 0
    assert out.read_bytes() == PNG
    assert capsys.readouterr().out.strip() == str(out)
    assert os.listdir(out.parent) == ["report.png"]
