"""The shape of the code (docs/architecture.md): imports only point down the floors, no import circles, no
private names used across modules, the docstring examples run, and the linter is clean."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("faceswap_pl", "data_pipelines")

#: the floors of docs/architecture.md: a module may import from its own package and from lower floors only
FLOORS = {
    "faceswap_pl.errors": 0, "faceswap_pl.version": 0, "faceswap_pl.runtime": 0,
    **{f"faceswap_pl.{name}": 1 for name in ("alignment", "argtypes", "configs", "console", "files", "imageio", "registry",
                                              "stats", "visual")},
    "faceswap_pl.zoo": 2,
    "faceswap_pl.models": 3,
    "faceswap_pl.data": 4, "faceswap_pl.losses": 4, "faceswap_pl.metrics": 4, "faceswap_pl.runs": 4,
    "faceswap_pl.training": 5, "faceswap_pl.ghost_reference": 5, "data_pipelines": 5,
    "faceswap_pl.callbacks": 6, "faceswap_pl.inference": 6,
    "faceswap_pl.export": 7, "faceswap_pl.sweep": 7,
    "faceswap_pl.cli": 8, "faceswap_pl.api": 8,
    "faceswap_pl": 9,  # the package's front door: the API, imported lazily
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports() -> dict[str, set[tuple[str, tuple[str, ...]]]]:
    """module -> {(imported module, names taken from it)}, for every import statement anywhere in the file."""
    edges: dict[str, set[tuple[str, tuple[str, ...]]]] = defaultdict(set)
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    taken = () if target in MODULES else (alias.name,)
                    edges[name].add((target if target in MODULES else node.module, taken))
            elif isinstance(node, ast.Import):
                edges[name].update((alias.name, ()) for alias in node.names)
    return edges


def _ours(module: str) -> str | None:
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "data_pipelines" else ".".join(parts[:2])


def _graph() -> dict[str, set[str]]:
    graph = defaultdict(set)
    for source, targets in _imports().items():
        for target, _ in targets:
            ours = _ours(target)
            if ours and ours != source:
                graph[source].add(ours)
    return graph


def test_every_module_has_a_floor():
    assert sorted({_unit(m) for m in MODULES} - set(FLOORS)) == []


def test_imports_only_point_down():
    upward = [f"{a} (floor {FLOORS[_unit(a)]}) imports {b} (floor {FLOORS[_unit(b)]})"
              for a, targets in _graph().items() for b in targets
              if _unit(a) != _unit(b) and FLOORS[_unit(b)] >= FLOORS[_unit(a)]]
    assert upward == []


def test_imports_form_no_circle():
    graph, index, low, stack, on_stack, circles = _graph(), {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert circles == []


def test_no_private_name_is_imported_from_another_module():
    private = [f"{source} takes {name} from {target}" for source, targets in _imports().items()
               for target, names in targets if _ours(target) for name in names
               if name.startswith("_") and not name.startswith("__")]
    assert private == []


def _documented_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")
                  if not info.name.endswith("__main__")]
    finder = doctest.DocTestFinder()
    return [name for name in names if any(not example.options.get(doctest.SKIP)
                                          for test in finder.find(importlib.import_module(name))
                                          for example in test.examples)]


@pytest.mark.parametrize("module", _documented_modules())
def test_docstring_examples_run(module):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(importlib.import_module(module)):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_linter_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is missing from this environment; install the dev extras: pip install -e '.[dev]'"
    result = subprocess.run([ruff, "check", "--no-cache", *PACKAGES, "tests", "benchmarks"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
