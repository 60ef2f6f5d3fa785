"""The attention rule targets pypm::attention on the fused devices when the kernel's contract
fits the graph, and torch's SDPA otherwise; both compute what the original computed."""

from __future__ import annotations

import math
import subprocess
import sys

import pypm.rules
import pytest
import torch
import torch.nn.functional as F
from pypm.rules.attention import RULES

from pypm.rewrite import RewritePass


@pytest.fixture(autouse=True)
def fused_on_cpu(monkeypatch):
    monkeypatch.setattr(pypm.rules, "FUSED_DEVICES", {"cuda", "cpu"})


def targets(gm):
    return [str(n.target) if str(n.target).startswith("pypm.") else n.target.__name__
            for n in gm.graph.nodes if n.op == "call_function"
            and ("attention" in str(n.target) or "attention" in getattr(n.target, "__name__", ""))]


def run(fn, *inputs, tol=1e-5):
    gm = torch.fx.symbolic_trace(fn)
    expected = gm(*inputs)
    report = RewritePass(RULES).apply(gm, inputs)
    torch.testing.assert_close(gm(*inputs), expected, rtol=tol, atol=tol)
    return gm, report


def qkv(sq=6, sk=6, dtype=torch.float32, d=8):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(2, 3, n, d, generator=g, dtype=dtype) for n in (sq, sk, sk))


def causal_for(sq, sk):
    def causal(q, k, v):
        s = (q @ k.transpose(-2, -1) / 3.0).masked_fill(
            ~torch.tril(torch.ones(sq, sk, dtype=torch.bool)), float("-inf"))
        return F.softmax(s, -1) @ v

    return causal


causal = causal_for(6, 6)


def test_fused_op_for_plain_and_causal_attention():
    for fn in (lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) * 0.3, -1) @ v, causal):
        gm, report = run(fn, *qkv())
        assert targets(gm) == ["pypm.attention.default"], str(report)


def test_boolean_and_additive_masks_go_to_the_fused_op():
    mask = torch.rand(6, 6) > 0.7
    mask[:, 0] = False  # no fully masked row (pypm returns 0 there, the original NaN)
    bias = torch.randn(6, 6)
    masked = lambda q, k, v: torch.softmax((q @ k.transpose(-2, -1)).masked_fill(mask, -math.inf), -1) @ v
    for fn in (masked,
               lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) + bias, -1) @ v):
        gm, report = run(fn, *qkv())
        assert targets(gm) == ["pypm.attention.default"], str(report)


def test_causal_with_different_lengths_falls_back_to_sdpa():
    # torch's tril on a (6, 9) mask is aligned top-left; pypm's causal is bottom-right
    gm, report = run(causal_for(6, 9), *qkv(sq=6, sk=9))
    assert targets(gm) == ["scaled_dot_product_attention"], str(report)


def test_unsupported_dtype_and_rank_fall_back_to_sdpa():
    gm, _ = run(lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1), -1) @ v, *qkv(dtype=torch.float64))
    assert targets(gm) == ["scaled_dot_product_attention"]
    q3, k3, v3 = (t.flatten(0, 1) for t in qkv())
    gm, _ = run(lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1), -1) @ v, q3, k3, v3)
    assert targets(gm) == ["scaled_dot_product_attention"]


def test_off_the_fused_devices_attention_is_sdpa(monkeypatch):
    monkeypatch.setattr(pypm.rules, "FUSED_DEVICES", {"cuda"})
    gm, _ = run(causal, *qkv())
    assert targets(gm) == ["scaled_dot_product_attention"]


def test_standard_patterns_load_in_a_fresh_process():
    # the attention patterns use guard functions that pypm.rules.masks registers: loading them
    # must not depend on having imported it first
    code = "import pypm; ns = pypm.load('attention'); print(len(list(ns)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
