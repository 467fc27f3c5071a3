"""The experiments read the organisers' annotation files from one folder (bench.DATA: beside the
repository, or WOAH2021_ANNOTATIONS), and each script that needs them says which file is
missing, in full, before any training or measuring starts."""
import pytest

from conftest import experiment_script


def _no_work(*args, **kwargs):
    raise AssertionError("started working without the annotation files")


def test_the_annotation_folder_follows_woah2021_annotations(tmp_path, monkeypatch):
    monkeypatch.setenv("WOAH2021_ANNOTATIONS", str(tmp_path))
    with experiment_script("bench") as bench:
        assert bench.DATA == tmp_path
    monkeypatch.delenv("WOAH2021_ANNOTATIONS")
    with experiment_script("bench") as bench:
        assert bench.DATA == bench.ROOT.parent / "shared" / "data" / "woah2021" / "annotations"


def test_missing_annotations_names_the_first_missing_file(tmp_path):
    with experiment_script("bench") as bench:
        assert str(tmp_path / "train.json") in bench.missing_annotations(tmp_path)
        (tmp_path / "train.json").write_text("")
        assert str(tmp_path / "dev_seen.json") in bench.missing_annotations(tmp_path)
        (tmp_path / "dev_seen.json").write_text("")
        assert bench.missing_annotations(tmp_path, ("train.json", "dev_seen.json")) is None
        assert str(tmp_path / "test.jsonl") in bench.missing_annotations(tmp_path)


@pytest.mark.parametrize("name", ["unseen_check", "cooc_check", "ensemble_check"])
def test_unseen_like_checks_name_the_missing_file_before_training(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # main() moves to the repository root; come back after
    with experiment_script(name) as module:
        uc = module if name == "unseen_check" else module.uc
        monkeypatch.setattr(uc, "DATA", tmp_path / "annotations")
        monkeypatch.setattr(uc, "WORK", tmp_path / "runs")
        monkeypatch.setattr(uc, "run_seed", _no_work)
        with pytest.raises(SystemExit) as e:
            module.main(["--quiet", "--out", str(tmp_path / "out.md")])
    assert str(tmp_path / "annotations" / "train.json") in str(e.value.code)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bench_speed_checks_the_data_before_measuring_images(tmp_path, monkeypatch, capsys):
    with experiment_script("bench_speed") as bench_speed:
        monkeypatch.setattr(bench_speed, "WORK", tmp_path / "runs")
        monkeypatch.setattr(bench_speed, "run_measured", _no_work)
        with pytest.raises(SystemExit) as e:
            bench_speed.main(["--data", str(tmp_path), "--out", str(tmp_path / "R.md")])
    assert e.value.code == 2
    assert str(tmp_path / "train.json") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_text_only_analysis_names_the_missing_file(tmp_path, capsys):
    with experiment_script("text_only_analysis") as analysis:
        with pytest.raises(SystemExit) as e:
            analysis.main(["--data", str(tmp_path)])
    assert e.value.code == 2
    assert str(tmp_path / "train.json") in capsys.readouterr().err


def test_designs_empty_names_the_missing_file(tmp_path, monkeypatch):
    with experiment_script("designs") as designs:
        monkeypatch.setattr(designs, "REAL", tmp_path)
        with pytest.raises(SystemExit) as e:
            designs.main(["empty", "--runs", str(tmp_path / "runs")])
    assert str(tmp_path / "train.json") in str(e.value.code)
    assert list(tmp_path.iterdir()) == []
