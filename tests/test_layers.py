"""The package's shape: layers import one way (the import-linter contracts in pyproject.toml),
no import cycle between pypm's modules, no module past a readable size, and the standard
library (rules/, patterns/) uses only the public names of each layer."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600


def test_import_linter_contracts_hold():
    out = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start) & modules)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    imported = graph.find_modules_directly_imported_by(child) & modules
                    work.append((child, iter(sorted(imported))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycle_between_modules():
    graph = grimp.build_graph("pypm")
    # the package root serves public names lazily from every layer: it is the top, not a layer
    modules = {m for m in graph.modules if m.startswith("pypm.") and m.count(".") >= 1
               and not m.startswith(("pypm.patterns", "pypm.rules", "pypm.semantics"))}
    packages = {m for m in modules if (ROOT / m.replace(".", "/") / "__init__.py").exists()}
    assert _cycles(graph, modules - packages) == []


def test_no_module_is_longer_than_a_few_screens():
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / "pypm").rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


PUBLIC = {"pypm", "pypm.graph", "pypm.lang", "pypm.rewrite", "pypm.kernels", "pypm.rules", "pypm.patterns"}


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "rules").glob("*.py")))
def test_the_standard_rules_use_only_public_names(path):
    tree = ast.parse((ROOT / path).read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("pypm"):
            used.add(node.module)
        elif isinstance(node, ast.Import):
            used.update(a.name for a in node.names if a.name.startswith("pypm"))
    assert used <= PUBLIC, f"{path} imports internal modules: {sorted(used - PUBLIC)}"
