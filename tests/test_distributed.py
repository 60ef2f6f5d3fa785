"""``backend="pypm"`` in data-parallel training on the CPU (gloo, 2 processes on 127.0.0.1):
DDP and FSDP2 (``fully_shard``) over a small GPT with hand-written causal attention. The rewrites
fire in the graphs dynamo hands the backend (DDP's bucketed graphs, FSDP2's per-block graphs
between its hooks), on both ranks, and a 10-step training run's losses match eager training's.
Runs ``benchmarks/distributed.py`` (what the GPU benchmark runs), with pypm's inner compiler
aot_eager (no C++ compile)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "distributed.py"
STEPS = 10


def _run(mode: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{mode}.json"
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--backend", "gloo", "--modes", mode,
           "--compilers", "eager", "pypm", "--inner", "aot_eager", "--steps", str(STEPS), "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads(out.read_text())
    assert re.search(rf"^{mode}\s+pypm\s+attention: ", proc.stdout, re.M), proc.stdout  # the table
    return data


def _check(data: dict, attentions_per_rank: int) -> None:
    (eager, pypm_run) = data["runs"]
    assert [r["compiler"] for r in eager] == ["eager", "eager"]
    for rank in pypm_run:
        assert rank["compiler"] == "pypm" and rank["errors"] == []
        assert rank["graphs"] >= 1
        assert rank["rewrites"].get("attention", 0) == attentions_per_rank, rank["rewrites"]
    a, b = eager[0]["losses"], pypm_run[0]["losses"]
    assert len(a) == len(b) == STEPS
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)
    assert len(set(b)) > 1  # the weights change from step to step


pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def test_ddp_rewrites_and_matches_eager(tmp_path):
    # one graph for the whole model (the tiny model fits one DDP bucket): both attentions
    _check(_run("ddp", tmp_path), attentions_per_rank=2)


def test_fsdp2_rewrites_and_matches_eager(tmp_path):
    # FSDP2's hooks split the model into per-block frames; the two blocks share one graph
    _check(_run("fsdp2", tmp_path), attentions_per_rank=1)
