import json

import pytest

from hateful_memes.files import atomic_open, write_jsonl


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"id": 1}])

    def rows():
        yield {"id": 2}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"id": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_atomic_open_creates_parent_dirs(tmp_path):
    with atomic_open(tmp_path / "a" / "b.txt") as f:
        f.write("x")
    assert (tmp_path / "a" / "b.txt").read_text() == "x"


def test_written_files_get_the_usual_permissions(tmp_path):
    import os
    umask = os.umask(0o022)
    try:
        write_jsonl(tmp_path / "p.jsonl", [{"id": 1}])
    finally:
        os.umask(umask)
    assert (tmp_path / "p.jsonl").stat().st_mode & 0o777 == 0o644
