""".gitignore keeps the big local folders out of git whether they are folders or symlinks to a
copy elsewhere (a worktree links the main checkout's runs and caches): `git add -A` in a
checkout holding such links adds none of them."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL = (".venv", "runs", "cache", "data/annotations", "data/img", "data/demo",
         "experiments/runs", "experiments/cache", "experiments/screenshots")


def _untracked(root: Path) -> set[str]:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    out = subprocess.run(["git", "-C", str(root), "add", "-A", "--dry-run"], check=True,
                         env=env, capture_output=True, text=True).stdout
    # "add 'PATH'" per file that would be added
    return {line[len("add '"):-1] for line in out.splitlines()}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize("kind", ["symlink", "folder"])
def test_local_folders_are_ignored_as_folders_and_as_links(tmp_path, kind):
    root, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    (elsewhere / "x").mkdir(parents=True)
    (elsewhere / "x" / "big.bin").write_bytes(b"0")
    root.mkdir()
    shutil.copyfile(REPO / ".gitignore", root / ".gitignore")
    for name in LOCAL:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "symlink":
            path.symlink_to(elsewhere, target_is_directory=True)
        else:
            shutil.copytree(elsewhere, path)
    assert _untracked(root) == {".gitignore"}
