"""The package's shape: layers import one way and no sibling modules import each other in a
cycle (the import-linter contracts in pyproject.toml), no module past a readable size, and the
standard library (rules/, patterns/) uses only the public names of each layer."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600


def test_import_linter_contracts_hold():
    out = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


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
