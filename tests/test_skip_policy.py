"""The skip policy (tests/skip_policy.py) itself: under CI=true a skip off the allow-list fails
the run, outside CI it does not, and the counts line is printed either way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\ndef test_skips():\n    pytest.skip('no reason')\n\ndef test_passes():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "skip_policy", "-p", "no:cacheprovider", str(tmp_path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_skip_off_the_allow_list_fails_in_ci(tmp_path, ci):
    out = run(tmp_path, ci)
    assert out.returncode == 1, out.stdout
    assert "NOT ALLOWED: test_sample.py::test_skips" in out.stdout
    assert "pypm suite: 1 passed, 1 skipped (0 on the allow-list)" in out.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_a_skip_passes_outside_ci_and_is_counted(tmp_path, ci):
    out = run(tmp_path, ci)
    assert out.returncode == 0, out.stdout
    assert "pypm suite: 1 passed, 1 skipped" in out.stdout
