"""`pypm conformance --oracle`: the interpreter extracted from Coq (coq/extract/pypm_interp, with
regions) against match.py and fastmatch, result list for result list, regions included.

Needs the extracted driver: built here by ``make -C coq`` when coqc is installed; without coqc
the test skips, unless CI is set (then it fails)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from pypm.semantics import conformance
from pypm.semantics.mutants import by_name, system
from pypm.semantics.oracle import DRIVER, agrees
from pypm.semantics.properties import PropertyFailure

from pypm.lang.syntax import Definition, Op, Then, Var
from pypm.lang.terms import parse

COQ = Path(__file__).resolve().parent.parent / "coq"


@pytest.fixture(scope="module")
def built() -> Path:
    if shutil.which("coqc") is None:
        if os.environ.get("CI"):
            pytest.fail("coqc is missing: CI must install Debian's coq package")
        pytest.skip("coqc is not installed (apt-get install -y coq)")
    with open(Path(tempfile.gettempdir()) / "pypm-coq-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(["make", "-C", str(COQ)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"make -C coq failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    assert DRIVER.exists()
    return DRIVER


def test_oracle_command_agrees_on_generated_cases(built: Path, capsys) -> None:
    assert conformance.main(["--oracle", "--examples", "150", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "oracle " in out and "oracle-guarded" in out and "FAIL" not in out


def test_oracle_compares_regions(built: Path) -> None:
    """A mutant that drops the region of q in p ; x ≍ q has the same bindings: only the regions
    tell it from the extracted interpreter."""
    program = {"Main": Definition("Main", ("x", "y"), Then(Op("f", (Var("x"),)), "x", Op("g", (Var("y"),))))}
    p, v = program["Main"].body, parse("f(g(c))")
    assert agrees(program, p, v, {}) == 1
    with pytest.raises(PropertyFailure, match="region"):
        agrees(program, p, v, {}, system(by_name("then-drops-region")))
    with pytest.raises(PropertyFailure, match="fastmatch"):
        agrees(program, p, v, {}, system(by_name("fast-then-drops-region")))
