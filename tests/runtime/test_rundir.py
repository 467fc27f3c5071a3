import errno
import tempfile

import pytest

from hateful_memes.runtime import rundir
from hateful_memes.runtime.rundir import RunDirError, RunLayout

LAYOUT = RunLayout("prog.py", frozenset({"config.yaml", "last.pt", "summary.json", "tb"}),
                   resume_needs=("config.yaml", "last.pt"), finished="summary.json")


def _run(folder, finished=True):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "last.pt") + (("summary.json",) if finished else ()):
        (folder / name).write_text(name)
    (folder / "tb").mkdir(exist_ok=True)
    (folder / "tb" / "events").write_text("e")


def test_a_new_or_empty_folder_is_fine_and_resume_needs_a_run(tmp_path):
    rundir.check(tmp_path / "new", LAYOUT)
    rundir.check(tmp_path, LAYOUT)
    for folder in (tmp_path / "new", tmp_path):
        with pytest.raises(RunDirError, match="nothing to continue.*without --resume"):
            rundir.check(folder, LAYOUT, resume=True)


@pytest.mark.parametrize("finished", [True, False])
def test_a_run_is_refused_without_resume_or_overwrite(tmp_path, finished):
    _run(tmp_path, finished)
    state = "a finished run" if finished else "an unfinished run"
    with pytest.raises(RunDirError, match=f"already holds {state}.*--resume.*--overwrite") as e:
        rundir.check(tmp_path, LAYOUT)
    # A finished run has nothing to continue: --resume only redoes its last step.
    assert ("continue" in str(e.value)) is not finished
    rundir.check(tmp_path, LAYOUT, resume=True)
    rundir.check(tmp_path, LAYOUT, overwrite=True)
    with pytest.raises(RunDirError, match="exclude each other"):
        rundir.check(tmp_path, LAYOUT, resume=True, overwrite=True)


def test_resume_of_an_incomplete_run_names_what_is_missing(tmp_path):
    (tmp_path / "config.yaml").write_text("x")
    with pytest.raises(RunDirError, match=r"incomplete run \(no last.pt\).*--overwrite"):
        rundir.check(tmp_path, LAYOUT, resume=True)


def test_foreign_files_are_never_mixed_with_a_run_nor_deleted(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"not empty \(notes.txt\) and holds no run"):
        rundir.check(tmp_path, LAYOUT)
    _run(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(RunDirError, match=r"does not write \(notes.txt\)"):
            rundir.check(tmp_path, LAYOUT, overwrite=overwrite)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_clear_removes_the_runs_own_files_and_stale_temps_only(tmp_path):
    _run(tmp_path)
    (tmp_path / ".last.pt.abc123.tmp").write_text("half")
    (tmp_path / ".other.tmp").write_text("not ours")
    assert sorted(rundir.clear(tmp_path, LAYOUT)) == [".last.pt.abc123.tmp", "config.yaml",
                                                      "last.pt", "summary.json", "tb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp"]


def test_remove_stale_temps(tmp_path):
    _run(tmp_path)
    (tmp_path / ".last.pt.tmp").write_text("left by a killed writer")
    rundir.remove_stale_temps(tmp_path, LAYOUT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "last.pt",
                                                          "summary.json", "tb"]


def test_check_writable_makes_the_folder_or_says_why_not(tmp_path, monkeypatch):
    rundir.check_writable(tmp_path / "a" / "b", "--out")
    assert (tmp_path / "a" / "b").is_dir() and not any((tmp_path / "a" / "b").iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="--out .*file/run: cannot write there"):
        rundir.check_writable(tmp_path / "file" / "run", "--out")
    with pytest.raises(RunDirError, match="is a file, not a folder"):
        rundir.check_writable(tmp_path / "file", "--cache-dir")
    with pytest.raises(RunDirError, match="is a folder, expected a file"):
        rundir.check_writable_file(tmp_path / "a", "--out")

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    # Root passes permission bits, so a refused write is simulated.
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(RunDirError, match="--cache-dir .*: cannot write there "
                                          r"\(Permission denied\)"):
        rundir.check_writable(tmp_path / "a", "--cache-dir")
