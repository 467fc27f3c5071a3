"""The unseen-like check's sections (unseen_check, cooc_check, ensemble_check) describe the
machine and its load through bench's helpers, in the words they always had."""
import os
import platform

import pytest
import sklearn
import torch

from conftest import experiment_script

ROW = {"pc": (0.9, 0.6, 0.5), "attack": (0.9, 0.6, 0.5), "hate": 0.7}
START, END = (0.5, 1.25, 2.0), (1.5, 0.25, 3.0)
LOAD = "Load average at start 0.50 / 1.25 / 2.00, at end 1.50 / 0.25 / 3.00."


def _machine(sklearn_too: bool) -> str:
    return (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            + (f"scikit-learn {sklearn.__version__}, " if sklearn_too else "")
            + f"Python {platform.python_version()}")


def _render(script: str) -> list[str]:
    with experiment_script(script) as m:
        if script == "unseen_check":
            return m._render({"x": [(ROW, ROW, ROW)]}, [0], [60.0], START, 120.0)
        if script == "cooc_check":
            return m.render({"default, written (thresholds folded)": [(ROW, ROW)]}, [0], START,
                            120.0)
        w = {"pc": {"pc": [1.0] * 6, "hate": [1.0]},
             "attack": {"attack": [1.0] * 8, "hate": [1.0]}}
        return m.render({m.BASE: [((ROW, ROW), (ROW, ROW))]}, [0],
                        {0: {how: w for how in ("auroc", "logloss", "task")}}, [30.0], START,
                        120.0)


@pytest.mark.parametrize("script, line", [
    ("unseen_check", f"{_machine(False)}, no GPU used. {LOAD}"),
    ("cooc_check", f"{_machine(True)}, no GPU. {LOAD}"),
    ("ensemble_check", f"{_machine(True)}, no GPU. {LOAD}"),
])
def test_machine_and_load_line(script, line, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: END)
    assert line in _render(script)


def test_load_avg_now_or_as_read_earlier(monkeypatch):
    with experiment_script("bench") as bench:
        monkeypatch.setattr(os, "getloadavg", lambda: END)
        assert bench.load_avg() == "1.50 / 0.25 / 3.00"
        assert bench.load_avg(START) == "0.50 / 1.25 / 2.00"
