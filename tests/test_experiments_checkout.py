"""Every experiments script, run as `python experiments/NAME.py`, imports the hateful_memes of
its own checkout, never another copy that the environment has installed (a venv shared by
several checkouts or worktrees, an older wheel)."""
import os
import subprocess
import sys
from pathlib import Path

from conftest import EXPERIMENTS

# Each script's module-level code, with sys.path as `python SCRIPT` sets it (the script's
# folder first), and the scripts' modules and the package forgotten between them.
PROBE = """
import runpy, sys
from pathlib import Path
scripts = sorted(Path(sys.argv[1]).glob("*.py"))
names = {p.stem for p in scripts} | {"hateful_memes"}
rest = list(sys.path[1:])
for script in scripts:
    sys.path[:] = [str(script.parent), *rest]
    for name in [m for m in sys.modules if m.split(".")[0] in names]:
        del sys.modules[name]
    sys.argv[0] = str(script)
    try:
        runpy.run_path(str(script), run_name="imported")
    except ImportError as e:
        print(f"{script.name}: {e}")
        continue
    package = sys.modules.get("hateful_memes")
    print(f"{script.name}: {package.__file__ if package else 'not imported'}")
"""


def test_scripts_import_their_own_checkout(tmp_path):
    shadow = tmp_path / "hateful_memes"
    shadow.mkdir()
    (shadow / "__init__.py").write_text('raise ImportError("an installed hateful_memes")\n')
    done = subprocess.run([sys.executable, "-c", PROBE, str(EXPERIMENTS)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert set(lines) == {p.name for p in EXPERIMENTS.glob("*.py")}
    package = str(Path(EXPERIMENTS.parent, "hateful_memes", "__init__.py"))
    wrong = {name: where for name, where in lines.items() if where not in (package,
                                                                           "not imported")}
    assert not wrong
