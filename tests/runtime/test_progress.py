import io

from hateful_memes.runtime import progress
from hateful_memes.runtime.progress import LogProgress


def test_off_a_terminal_progress_is_plain_periodic_lines(monkeypatch):
    out = io.StringIO()
    clock = iter(range(0, 1000, 10))  # every call to the clock moves it 10 s on
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = LogProgress(range(7), desc="epoch 1/3", unit="step", every=25, file=out)
    assert list(bar) == list(range(7))
    lines = out.getvalue().splitlines()
    assert lines and all("\r" not in line for line in lines)
    assert lines[-1].startswith("epoch 1/3: done 7/7 steps in ")
    assert 1 <= len(lines) - 1 < 7  # periodic, not one line per step


def test_bar_is_tqdm_on_a_terminal_and_log_lines_elsewhere(monkeypatch):
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False, raising=False)
    assert isinstance(progress.bar(range(3), leave=False), LogProgress)
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True, raising=False)
    on_tty = progress.bar(range(3), leave=False, disable=True)
    assert isinstance(on_tty, progress.tqdm) and not isinstance(on_tty, LogProgress)


def test_disabled_prints_nothing():
    out = io.StringIO()
    with LogProgress(total=3, desc="x", disable=True, file=out) as bar:
        bar.update(3)
        bar.set_postfix(loss="0.1")
    assert out.getvalue() == ""


def test_log_lines_count_in_the_plural_and_tqdm_keeps_its_unit(monkeypatch):
    out = io.StringIO()
    with LogProgress(total=90, desc="predict", unit="meme", file=out) as bar:
        bar.update(90)
    assert "predict: done 90/90 memes in " in out.getvalue()
    assert " memes/s)" in out.getvalue()
    for n, total, expected in ((1, 90, "done 1/90 memes"), (1, None, "done 1 meme "),
                               (2, None, "done 2 memes"), (3, 3, "done 3/3 it ")):
        out = io.StringIO()
        with LogProgress(total=total, unit="it" if total == 3 else "meme", file=out) as bar:
            bar.update(n)
        assert expected in out.getvalue(), out.getvalue()
    # tqdm shows its unit as a rate ("meme/s"): it is given the unit as the caller wrote it.
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True, raising=False)
    shown = io.StringIO()
    with progress.bar(total=3, unit="meme", file=shown) as on_tty:
        on_tty.update(3)
    assert isinstance(on_tty, progress.tqdm) and "meme/s" in shown.getvalue()


def test_units_ending_in_a_hiss_take_es():
    """The scoring bar counts batches: "done 1/1 batchs" was what the logs said."""
    assert progress.plural("batch") == "batches"
    # train.py's "best epochs [14, 11, ...]" read "best epoches" with the hiss rule alone
    assert progress.plural("epoch", 5) == "epochs"
    assert progress.plural("batch", 1) == "batch"
    assert progress.plural("box") == "boxes"
    assert progress.plural("image") == "images"
    out = io.StringIO()
    with LogProgress(total=2, desc="scoring", unit="batch", file=out) as bar:
        bar.update(2)
    assert "scoring: done 2/2 batches in " in out.getvalue()
    assert " batches/s)" in out.getvalue()


def test_off_a_terminal_a_bar_tqdm_would_erase_leaves_no_line_unless_it_ran_long(monkeypatch):
    """`make demo` logged a line for every epoch of every fold (300, each 'in 0s'), and one
    for every 1-batch scoring pass: bars that a terminal erases when done."""
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False, raising=False)
    out = io.StringIO()
    assert list(progress.bar(range(6), desc="epoch 1/30", leave=False, file=out)) == list(
        range(6))
    with progress.bar(total=1, desc="scoring", unit="batch", leave=False, file=out) as b:
        b.update(1)
    assert out.getvalue() == ""
    # One that ran long enough to report on its way reports its end too.
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    assert list(progress.bar(range(7), desc="epoch 2/30", leave=False, every=25, file=out))
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and lines[-1].startswith("epoch 2/30: done 7/7 it in ")
    # Bars that stay on a terminal (the default, and tqdm's leave=None) always end with a line.
    for leave in (True, None):
        out = io.StringIO()
        with progress.bar(total=3, desc="predict", unit="meme", leave=leave, file=out) as b:
            b.update(3)
        assert out.getvalue().startswith("predict: done 3/3 memes in ")


def test_a_failure_inside_the_block_is_no_done_line():
    out = io.StringIO()
    try:
        with LogProgress(total=5, desc="predict", unit="meme", file=out) as bar:
            bar.update(2)
            raise RuntimeError("the OCR engine failed")
    except RuntimeError:
        pass
    assert "done" not in out.getvalue()
    assert out.getvalue().startswith("predict: stopped at 2/5 memes in ")
