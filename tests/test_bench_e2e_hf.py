"""``benchmarks/e2e_hf.py`` measures what its table says: on a tiny CPU run, every architecture
asked for gets a row per mode with every column, eager, inductor and pypm run (times, not
errors), pypm computes what float32 eager computes, and pypm's backend really rewrote LLaMA's
attention (otherwise the pypm column would time inductor alone)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "e2e_hf.py"
ARCHS = ["llama", "gpt2"]
# flex+compile is left out: its CPU compile alone would take about a third of the test's time
RUN = ["eager", "inductor", "sdpa+inductor", "pypm"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("e2e_hf", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows(bench):
    threads = torch.get_num_threads()
    try:
        return bench.main(["--size", "tiny", "--device", "cpu", "--dtype", "float32", "--archs", *ARCHS,
                           "--modes", "inference", "--repeats", "1", "--threads", "1", "--variants", *RUN])
    finally:
        torch.set_num_threads(threads)


def test_a_row_per_arch_with_every_column(bench, rows):
    assert [(r["arch"], r["mode"]) for r in rows] == [(a, "inference") for a in ARCHS]
    for r in rows:
        assert r["skipped"] is None, r["skipped"]
        assert set(r["variants"]) == set(bench.VARIANTS)
        for v, cell in r["variants"].items():
            assert {"ms", "err", "compile_s", "error"} <= set(cell)
            # a number, or the reason there is none
            assert (cell["ms"] is not None) != (cell["error"] is not None), cell
            if v not in RUN:
                assert cell["error"].startswith("not run")
        assert set(r["ratios"]) == {"inductor/pypm", "sdpa+inductor/pypm", "best/pypm"}
        assert {"rewrites", "attention_skips", "best", "max_err", "batch", "seq"} <= set(r)


def test_eager_inductor_and_pypm_run_and_pypm_matches_float32_eager(rows):
    for r in rows:
        for v in ("eager", "inductor", "pypm"):
            cell = r["variants"][v]
            assert cell["error"] is None, (r["arch"], v, cell["error"])
            assert cell["ms"] > 0 and cell["compile_s"] >= 0
            assert cell["err"] < 1e-4, (r["arch"], v, cell["err"])
        assert r["ratios"]["inductor/pypm"] > 0
        assert r["max_err"] is not None


def test_pypm_rewrites_every_llama_attention(bench, rows):
    llama = next(r for r in rows if r["arch"] == "llama")
    assert llama["rewrites"].get("attention", 0) == bench.SIZES["tiny"].layers, llama["attention_skips"]


def test_an_arch_transformers_lacks_is_a_row_saying_why(bench, monkeypatch, capsys):
    monkeypatch.setitem(bench.ARCHS, "nope", ("NoSuchConfig", "NoSuchForCausalLM", lambda s: {}, False))
    size = bench.SIZES["tiny"]
    rows = bench.run_arch("nope", "nope", size, size.batch, size.seq, ["inference"], ["eager"], "cpu",
                          torch.float32, 1, [])
    assert len(rows) == 1 and "has no NoSuchForCausalLM" in rows[0]["skipped"]
    bench.print_table(rows, "inference")
    assert "| nope | 2 x 32 | skipped: " in capsys.readouterr().out
