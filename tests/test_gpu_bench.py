"""experiments/gpu_bench.py runs end to end (on the CPU, --smoke sizes) and reports every part."""
import json
import math
import re

import pytest
import torch

from conftest import experiment_script


@pytest.fixture(scope="module")
def gpu_bench():
    with experiment_script("gpu_bench") as module:
        yield module


def test_smoke_run_measures_every_part_and_writes_json(gpu_bench, tmp_path, capsys):
    out = tmp_path / "numbers.json"
    assert gpu_bench.main(["--smoke", "--out", str(out), "--dir", str(tmp_path)]) == 0
    result = json.loads(out.read_text())
    assert result["smoke"] is True and result["device"].startswith("CPU")
    assert all(re.fullmatch(r"\d+\.\d\d / \d+\.\d\d / \d+\.\d\d", result[k])
               for k in ("load_before", "load_after"))  # as bench.load_avg writes it
    smoke = gpu_bench.SMOKE
    images = result["image_features"]
    assert {(r["model"], r["path"], r["workers"]) for r in images} == {
        (model, path, w) for model in {r["model"] for r in images}
        for path, w in [("forward", None), *(("whole path", w) for w in smoke.workers)]}
    assert len({r["model"] for r in images}) == 2
    assert len(result["finetune"]) == 3 and len(result["barlow_twins"]) == 2
    rates = ([r["images_per_s"] for r in images + result["barlow_twins"]]
             + [r["memes_per_s"] for r in result["finetune"]])
    assert all(math.isfinite(x) and x > 0 for x in rates)
    assert all(r["batch"] == smoke.bt_batch for r in result["barlow_twins"])
    printed = capsys.readouterr().out
    assert "SMOKE RUN" in printed and printed.count("\n| ") >= len(rates)
    assert list(tmp_path.iterdir()) == [out]  # the generated PNGs are gone


def test_without_a_gpu_a_full_run_is_refused_not_reported_as_gpu_numbers(gpu_bench, tmp_path,
                                                                         monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        gpu_bench.main(["--out", str(tmp_path / "x.json")])
    assert e.value.code == 2 and "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
