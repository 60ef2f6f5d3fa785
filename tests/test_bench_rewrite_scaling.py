"""The tools compared by ``benchmarks/rewrite_scaling.py`` do what the table says they do: each
rewrites every attention of the benchmark graph into one SDPA node, and the rewritten graph
computes what the original did. A floor that skipped work, or a competitor that found nothing,
would make the table's ratios meaningless."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "rewrite_scaling.py"


@pytest.fixture(scope="module")
def rs():
    spec = importlib.util.spec_from_file_location("rewrite_scaling", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("tool", ["pypm", "replace_pattern", "inductor", "by_hand", "by_hand_cse"])
def test_each_tool_rewrites_every_attention_and_keeps_the_values(rs, tool):
    torch.manual_seed(0)
    layers = 3
    gm = rs.make_graph(layers)
    x = torch.randn(rs.B, rs.T, rs.C)
    want = gm(x)
    rs.all_tools()[tool](gm)
    gm.graph.lint()
    gm.recompile()
    assert rs.count_sdpa(gm) == layers
    assert not any(n.op == "call_method" and n.target == "softmax" for n in gm.graph.nodes)
    torch.testing.assert_close(gm(x), want)


def test_cse_floor_merges_duplicates(rs):
    """run_by_hand_after_cse really runs CSE: a duplicated layer norm is merged before the
    hand-written pass, which still finds the attention."""
    gm = rs.make_graph(1)
    graph = gm.graph
    ln = next(n for n in graph.nodes if n.op == "call_module" and n.target.endswith("ln1"))
    with graph.inserting_after(ln):
        dup = graph.call_module(ln.target, ln.args)
    with graph.inserting_after(dup):
        graph.call_function(torch.add, (ln, dup))  # a user, so the copy is not dead code
    before = len(graph.nodes)
    assert rs.run_by_hand_after_cse(gm) == 1
    assert dup not in set(graph.nodes)
    assert len(graph.nodes) == before - 1 - 4  # the copy merged; five attention nodes became one


def test_the_table_prints_every_column(rs):
    out = subprocess.run([sys.executable, str(BENCH), "--sizes", "60", "--repeat", "2"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    lines = out.strip().splitlines()
    assert "median of 2 runs" in lines[0]
    assert "rp/h+cse" in lines[1]
    row = lines[2].split("|")
    assert len(row) == 6 and all(c.strip() for c in row)
    assert "skipped" not in lines[2] and " - " not in lines[2]
