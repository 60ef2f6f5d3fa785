"""pypm in torch's logging: the ``pypm`` component (``TORCH_LOGS=pypm``, ``set_logs``), a log
line per rewrite and per skip, and the report as the structured-trace artifact
``pypm_rewrite_report`` (``TORCH_TRACE``, what tlparse reads)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import torch

import pypm
from pypm.logs import ARTIFACT_NAME, log_report, register_torch_log, report_to_json

ROOT = Path(__file__).resolve().parents[1]


def _attention(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) * 0.125, dim=-1) @ v


def _logged_backend():
    """backend=pypm.backend(inner="eager") whose reports go through log_report (a report is
    logged once, so this holds whether or not the backend logs its reports itself)."""
    be = pypm.backend(inner="eager")

    def compile_(gm, example_inputs):
        out = be(gm, example_inputs)
        log_report(be.reports[-1])
        return out

    return be, compile_


def test_import_pypm_and_its_tooling_modules_does_not_import_torch():
    code = "import sys, pypm, pypm.logs, pypm.progress, pypm.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_set_logs_turns_on_the_pypm_component(caplog):
    from torch._logging._internal import log_registry

    assert register_torch_log()
    assert log_registry.is_log("pypm")
    logger = logging.getLogger("pypm")
    torch._logging.set_logs(modules={"pypm": logging.DEBUG})
    logger.addHandler(caplog.handler)  # torch's components do not propagate to the root logger
    try:
        be, backend = _logged_backend()
        torch._dynamo.reset()
        x = torch.randn(2, 4, 8, 16)
        torch.compile(_attention, backend=backend)(x, x, x)
    finally:
        logger.removeHandler(caplog.handler)
        torch._logging.set_logs()
        torch._dynamo.reset()
    assert be.reports[-1].counts() == {"attention": 1}
    messages = [(r.levelno, r.name, r.getMessage()) for r in caplog.records if r.name.startswith("pypm")]
    infos = [m for lvl, _, m in messages if lvl == logging.INFO]
    debugs = [m for lvl, _, m in messages if lvl == logging.DEBUG]
    assert any(m.startswith("graph 0/0: 1 rewrite(s) (attention: 1)") for m in infos), messages
    assert any(m.startswith("rewrote attention: ") for m in infos), messages
    assert any(m.startswith("no match ") for m in debugs), messages  # near misses at DEBUG


def test_info_level_leaves_out_the_skips(caplog):
    report = SimpleNamespace(
        rewrites=[], skipped=[SimpleNamespace(rule="r", root="n", kind="declined", reason="because",
                                              bindings={})],
        misses=[], sweeps=1, nodes_before=3, nodes_after=3, seconds=0.001)
    logger = logging.getLogger("pypm.test_logs")
    logger.setLevel(logging.INFO)
    logger.addHandler(caplog.handler)
    propagate, logger.propagate = logger.propagate, False  # caplog's root handler must not see it twice
    try:
        log_report(report, "g", logger=logger)
        log_report(report, "g", logger=logger)  # a report is logged once
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = propagate
    msgs = [r.getMessage() for r in caplog.records if r.name == "pypm.test_logs"]
    assert msgs == ["graph g: 0 rewrite(s), 1 skipped, 3 -> 3 nodes, 1.0 ms"]


def test_report_to_json_is_json_and_reads_by_attribute():
    be = pypm.backend(inner="eager")
    torch._dynamo.reset()
    x = torch.randn(2, 4, 8, 16)
    torch.compile(_attention, backend=be)(x, x, x)
    torch._dynamo.reset()
    data = json.loads(json.dumps(report_to_json(be.reports[-1], "0/0")))
    assert data["graph"] == "0/0" and data["counts"] == {"attention": 1}
    (rw,) = data["rewrites"]
    assert rw["rule"] == "attention" and rw["bindings"]["mul_by"] == "0.125"
    assert set(rw) == {"rule", "root", "root_source", "bindings", "replacement"}
    assert all(set(m) >= {"rule", "root", "kind", "reason", "bindings"} for m in data["misses"])
    assert data["nodes_before"] >= data["nodes_after"] > 0 and data["sweeps"] >= 1
    # an older report without a stop reason
    old = SimpleNamespace(rewrites=[], skipped=[], misses=[], sweeps=1, nodes_before=1, nodes_after=1,
                          seconds=0.0)
    assert report_to_json(old)["stop"] is None


SCRIPT = textwrap.dedent("""
    import torch, pypm
    from pypm.logs import log_report
    be = pypm.backend(inner="eager")
    def backend(gm, example_inputs):
        out = be(gm, example_inputs)
        log_report(be.reports[-1])
        return out
    def f(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) * 0.125, dim=-1) @ v
    x = torch.randn(2, 4, 8, 16)
    torch.compile(f, backend=backend)(x, x, x)
""")


def _artifacts(trace_dir: Path, name: str) -> list[dict]:
    """The JSON payloads of the structured-trace artifacts called ``name``."""
    out = []
    for path in trace_dir.glob("*.log"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if f'"name": "{name}"' in line:
                payload = []
                for nxt in lines[i + 1:]:
                    if not nxt.startswith("\t"):
                        break
                    payload.append(nxt[1:])
                out.append(json.loads("\n".join(payload)))
    return out


def test_torch_logs_and_torch_trace_in_a_fresh_process(tmp_path):
    env = dict(os.environ, TORCH_LOGS="+pypm", TORCH_TRACE=str(tmp_path / "trace"))
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "graph 0/0: 1 rewrite(s) (attention: 1)" in out.stderr
    assert "rewrote attention: " in out.stderr
    (report,) = _artifacts(tmp_path / "trace", ARTIFACT_NAME)
    assert report["graph"] == "0/0" and report["counts"] == {"attention": 1}
    assert report["rewrites"][0]["rule"] == "attention"
