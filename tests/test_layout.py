"""The package's shape, read from the source with ast (nothing is imported): the import graph
between its modules has no cycle, nothing imports up into the commands, the subpackages sit in
layers, and none of them grows past a size a reader can take in.

Every import counts, also those inside functions and under TYPE_CHECKING: a lazy import is
still a dependency, it is only paid for later.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hateful_memes"
NAME = "hateful_memes"

# Bottom to top: a module may import from its own subpackage and from those below it.
LAYERS = ["labels", "runtime", "data", "scoring", "evaluation", "pretraining", "models",
          "features", "engine", "serving", "cli", "__init__"]

MAX_MODULES = 8


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = (NAME,) + path.relative_to(PACKAGE).with_suffix("").parts
        is_init = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_init else parts)] = (path, is_init)
    return out


MODULES = _modules()


def _imports(module: str) -> set[str]:
    """The package's modules (or packages) that `module` imports."""
    path, is_init = MODULES[module]
    package = module if is_init else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == NAME)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                assert node.level <= len(parts), f"{path}:{node.lineno}: import beyond the package"
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            if target.split(".")[0] != NAME:
                continue
            for a in node.names:
                # `from pkg import mod` imports the module; `from mod import name` the module
                found.add(f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target)
    for target in found:
        assert target in MODULES, f"{path}: imports {target}, which is no module of the package"
    return found - {module}


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> str:
    """labels, cli, ... ("__init__" for the package's own __init__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cross(source_layer: str | None = None) -> list[tuple[str, str]]:
    return [(m, t) for m, targets in sorted(GRAPH.items()) for t in sorted(targets)
            if source_layer in (None, _layer(m)) and _layer(t) != _layer(m)]


def test_the_parser_sees_the_package():
    # The checks below pass vacuously on an empty graph: make sure it is the real one.
    assert len(MODULES) > 30
    assert "hateful_memes.features.store" in GRAPH["hateful_memes.features.cache"]
    assert "hateful_memes.runtime.checkpoints" in GRAPH["hateful_memes.models.model"]
    assert {_layer(m) for m in MODULES} == set(LAYERS)


def test_the_module_import_graph_has_no_cycle():
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_nothing_outside_cli_imports_from_cli():
    up = [(m, t) for m, t in _cross() if _layer(t) == "cli"]
    assert up == [], f"imports up into a command module: {up}"


@pytest.mark.parametrize("layer, allowed", [
    ("labels", set()),
    ("runtime", {"labels"}),
    ("data", {"runtime", "labels"}),
    # Pure functions of scores and labels: thresholds, prevalence, the decided label sets.
    ("scoring", {"labels"}),
    ("pretraining", {"runtime", "labels"}),
])
def test_the_base_layers_import_only_what_is_below_them(layer, allowed):
    bad = [(m, t) for m, t in _cross(layer) if _layer(t) not in allowed]
    assert bad == [], f"{layer}/ may import only {sorted(allowed) or 'nothing'}: {bad}"


def test_the_public_api_alone_reaches_into_serving():
    assert GRAPH[NAME] == {"hateful_memes.serving.api"}
    users = {_layer(m) for m, t in _cross() if _layer(t) == "serving"}
    assert users <= {"cli", "__init__"}, users


def test_every_cross_package_import_goes_down_the_layers():
    up = sorted((m, t) for m, t in _cross() if LAYERS.index(_layer(t)) > LAYERS.index(_layer(m)))
    assert up == [], "imports running up the layers " + " < ".join(LAYERS) + f": {up}"


def test_subpackage_inits_import_nothing():
    # `import hateful_memes` stays cheap, and a subpackage is no registry of its modules.
    for module, (path, is_init) in MODULES.items():
        if is_init and module != NAME:
            assert GRAPH[module] == set(), f"{path} imports {GRAPH[module]}"
            tree = ast.parse(path.read_text())
            assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                        and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")], path
            assert ast.get_docstring(tree), f"{path}: say what lives here, in what order to read"


def test_no_subpackage_holds_more_than_a_reader_takes_in():
    sizes: dict[str, int] = {}
    for module, (_, is_init) in MODULES.items():
        if not is_init and module.count(".") == 2:
            sizes[_layer(module)] = sizes.get(_layer(module), 0) + 1
    assert sizes and max(sizes.values()) <= MAX_MODULES, sizes
    top = [m for m, (_, is_init) in MODULES.items() if not is_init and m.count(".") == 1]
    assert top == ["hateful_memes.labels"], f"modules belong in a subpackage: {top}"


def test_every_module_has_its_test_file_in_the_same_place():
    tests = Path(__file__).resolve().parent
    missing = []
    for module, (path, is_init) in MODULES.items():
        if not is_init:
            rel = path.relative_to(PACKAGE)
            if not (tests / rel.parent / f"test_{rel.name}").is_file():
                missing.append(str(rel))
    assert missing == [], f"no tests/<subpackage>/test_<module>.py for {missing}"
