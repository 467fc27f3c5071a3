import json

import pytest

from hateful_memes.runtime.files import atomic_open, same_path, write_jsonl


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


def _full_disk_on_call(n):
    """An os.fsync that fails like a full disk on its n-th call."""
    import errno
    import os
    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)
    return fsync


def test_write_files_writes_all_or_nothing(tmp_path, monkeypatch):
    import os

    from hateful_memes.runtime.files import write_files
    paths = [tmp_path / "a.json", tmp_path / "sub" / "b.md", tmp_path / "c.png"]
    write_files({p: b"old " + p.name.encode() for p in paths})
    monkeypatch.setattr(os, "fsync", _full_disk_on_call(3))
    with pytest.raises(OSError, match="No space left"):
        write_files({p: b"new" for p in paths})
    assert [p.read_bytes() for p in paths] == [b"old " + p.name.encode() for p in paths]
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p not in paths]
    assert leftovers == []
    monkeypatch.undo()
    write_files({p: b"new" for p in paths})
    assert all(p.read_bytes() == b"new" for p in paths)


def test_same_path_compares_what_paths_name(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.json").write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    assert same_path("data/a.json", "./data/../data/a.json")
    assert same_path("link/a.json", tmp_path / "data" / "a.json")
    assert same_path("gone/b.json", tmp_path / "gone" / "b.json")
    assert not same_path("data/a.json", "data/b.json")
    assert not same_path("data", "data/a.json")
