import hashlib
import io
import json
import random
import zipfile

import pytest

from hateful_memes.models import weights
from hateful_memes.models.weights import JoinedFiles, WeightsError, unpack_checked

FILES = {"config.json": b'{"hidden_size": 8}', "model.safetensors": bytes(range(256)) * 300}


def split_zip(tmp_path, files: dict, pieces: int = 3, extra: dict | None = None) -> list:
    """A zip of `folder/NAME` entries (plus `extra` names as given), cut into `pieces` files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(f"folder/{name}", data)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    data, paths = buf.getvalue(), []
    step = -(-len(data) // pieces)
    for i in range(pieces):
        path = tmp_path / f"w.zip.{i + 1:03d}"
        path.write_bytes(data[i * step:(i + 1) * step])
        paths.append(path)
    return paths


def sums(files: dict) -> dict:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_joined_files_read_as_their_concatenation(tmp_path):
    rng = random.Random(0)
    chunks = [bytes(rng.randrange(256) for _ in range(n)) for n in (5, 1, 300, 17)]
    paths = []
    for i, chunk in enumerate(chunks):
        paths.append(tmp_path / f"p{i}")
        paths[-1].write_bytes(chunk)
    whole = b"".join(chunks)
    with JoinedFiles(paths) as joined:
        assert joined.read() == whole
        for _ in range(50):
            start, n = rng.randrange(len(whole) + 3), rng.randrange(40)
            joined.seek(start)
            assert joined.read(n) == whole[start:start + n] and joined.tell() == min(
                start + n, max(start, len(whole)))
        joined.seek(-4, io.SEEK_END)
        assert joined.read() == whole[-4:]


def test_unpacks_the_named_files_checked_and_once(tmp_path):
    pieces = split_zip(tmp_path, FILES)
    dest = tmp_path / "cache" / "model"
    assert unpack_checked(pieces, "folder", sums(FILES), dest) == dest
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert json.loads((dest / weights.MARKER).read_text())["sha256"] == sums(FILES)
    # Unpacked and checked: the pieces are not read again.
    for p in pieces:
        p.unlink()
    assert unpack_checked(pieces, "folder", sums(FILES), dest) == dest
    assert [p.name for p in dest.parent.iterdir()] == ["model"]  # no temporary folder left


def test_a_file_changed_since_is_unpacked_again(tmp_path):
    pieces = split_zip(tmp_path, FILES)
    dest = tmp_path / "model"
    unpack_checked(pieces, "folder", sums(FILES), dest)
    (dest / "model.safetensors").write_bytes(b"truncated")
    unpack_checked(pieces, "folder", sums(FILES), dest)
    assert (dest / "model.safetensors").read_bytes() == FILES["model.safetensors"]


def test_a_wrong_sum_or_missing_file_leaves_nothing_behind(tmp_path):
    pieces = split_zip(tmp_path, FILES)
    dest = tmp_path / "cache" / "model"
    wrong = {**sums(FILES), "model.safetensors": "0" * 64}
    with pytest.raises(WeightsError, match="folder/model.safetensors.*expected 0000"):
        unpack_checked(pieces, "folder", wrong, dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    with pytest.raises(WeightsError, match="no folder/vocab.txt"):
        unpack_checked(pieces, "folder", {**sums(FILES), "vocab.txt": "0" * 64}, dest)
    with pytest.raises(WeightsError, match="not the pieces of one zip"):
        unpack_checked(pieces[:2], "folder", sums(FILES), dest)
    assert not dest.exists()


def test_paths_inside_the_zip_are_never_followed(tmp_path):
    """Only `folder/NAME` for the pinned names is written, wherever other entries point."""
    pieces = split_zip(tmp_path / "", FILES, extra={"../evil.txt": b"x", "folder/extra": b"y"})
    dest = tmp_path / "out" / "model"
    unpack_checked(pieces, "folder", sums(FILES), dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted([*FILES, weights.MARKER])
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_a_missing_package_says_what_to_install():
    with pytest.raises(WeightsError, match="no-such-weights-part-001 is not installed: pip "
                       "install --no-deps no-such-weights-part-001==0.0.1"):
        weights.package_pieces(["no-such-weights-part-001"], "0.0.1")


def test_the_installed_mpnet_packages_hold_every_pinned_file():
    """The five pieces are installed (setup installs them) and read as one zip whose
    directory lists every file the encoder reads (reading it does not unpack 438 MB)."""
    pieces = weights.package_pieces(weights.MPNET_PACKAGES, weights.MPNET_VERSION)
    assert [p.name[-3:] for p in pieces] == ["001", "002", "003", "004", "005"]
    with JoinedFiles(pieces) as joined, zipfile.ZipFile(io.BufferedReader(joined)) as z:
        sizes = {i.filename: i.file_size for i in z.infolist()}
    for name in weights.MPNET_SHA256:
        assert f"{weights.MPNET_FOLDER}/{name}" in sizes
    assert sizes[f"{weights.MPNET_FOLDER}/model.safetensors"] == 437971872


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HATEFUL_MEMES_WEIGHTS", str(tmp_path / "w"))
    assert weights.cache_root() == tmp_path / "w"
    monkeypatch.delenv("HATEFUL_MEMES_WEIGHTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_root() == tmp_path / "xdg" / "hateful_memes" / "weights"
