"""The experiments' scripts, their READMEs and the sections they write name the package's code
by where it is now: each `features.X...` or `hateful_memes.X...` in backticks resolves."""
import importlib
import re
from pathlib import Path

import pytest

from conftest import EXPERIMENTS

NAME = re.compile(r"`((?:hateful_memes|features)(?:\.[A-Za-z_]\w*)+)`")
FILES = sorted([*EXPERIMENTS.glob("*.py"), *EXPERIMENTS.glob("*.md"),
                EXPERIMENTS.parent / "README.md"])


def resolves(name: str) -> bool:
    parts = ("hateful_memes." + name if not name.startswith("hateful_memes.") else name).split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(EXPERIMENTS.parent)))
def test_named_code_exists(path: Path):
    names = set(NAME.findall(path.read_text()))
    assert not [n for n in sorted(names) if not resolves(n)]
