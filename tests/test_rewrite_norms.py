"""The norm and softmax rules: every spelling becomes one fused pypm op computing the same thing
(original and rewritten graphs compared on random inputs); near misses are left alone."""

from __future__ import annotations

import pypm.rules
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from pypm.rules import norms
from pypm.rules.norms import RULES

import pypm
from pypm.rewrite import RewritePass

D = 16


@pytest.fixture(autouse=True)
def fused_on_cpu(monkeypatch):
    """The rules fire on CUDA by default; on this CPU machine, let them fire here too."""
    monkeypatch.setattr(pypm.rules, "FUSED_DEVICES", {"cuda", "cpu"})


def pypm_ops(gm):
    return sorted(str(n.target) for n in gm.graph.nodes
                  if n.op == "call_function" and str(n.target).startswith("pypm."))


def check(module, *inputs, rules=RULES, tol=1e-5):
    gm = torch.fx.symbolic_trace(module)
    expected = gm(*inputs)
    report = RewritePass(rules).apply(gm, inputs)
    got = gm(*inputs)
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    return gm, report


def x_w_b(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 5, D, generator=g, dtype=dtype), torch.randn(D, generator=g, dtype=dtype),
            torch.randn(D, generator=g, dtype=dtype))


class LlamaRMSNorm(nn.Module):
    """LLaMA's spelling: statistics in float32, cast back, weight on the left."""

    def __init__(self, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(D))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        h = x.to(torch.float32)
        var = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(var + self.eps)
        return self.weight * h.to(dtype)


RMS_SPELLINGS = {
    "t5": lambda x, w, b: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w,
    "square-by-mul": lambda x, w, b: w * (x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-5)),
    "div-sqrt": lambda x, w, b: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w,
    "unweighted": lambda x, w, b: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6),
    "torch-call": lambda x, w, b: F.rms_norm(x, (D,), w, 1e-6),
}

LN_SPELLINGS = {
    "gpt2": lambda x, w, b: (x - x.mean(-1, keepdim=True)) / torch.sqrt(
        ((x - x.mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True) + 1e-5) * w + b,
    "var-call": lambda x, w, b: b + w * ((x - x.mean(-1, keepdim=True))
                                        * torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5)),
    "weight-only": lambda x, w, b: (x - x.mean(-1, keepdim=True)) / torch.sqrt(
        x.var(-1, unbiased=False, keepdim=True) + 1e-5) * w,
    "torch-call": lambda x, w, b: F.layer_norm(x, (D,), w, b, 1e-5),
}


@pytest.mark.parametrize("name", sorted(RMS_SPELLINGS))
def test_rms_norm_spellings_become_one_op(name):
    gm, report = check(RMS_SPELLINGS[name], *x_w_b())
    assert pypm_ops(gm) == ["pypm.rms_norm.default"], str(report)
    assert [r.rule for r in report.rewrites] == ["rms-norm-to-pypm"]


def test_llama_rms_norm_module_in_bf16():
    m = LlamaRMSNorm().to(torch.bfloat16)
    x = x_w_b(torch.bfloat16)[0]
    gm, report = check(m, x, tol=2e-2)
    assert pypm_ops(gm) == ["pypm.rms_norm.default"], str(report)


@pytest.mark.parametrize("name", sorted(LN_SPELLINGS))
def test_layer_norm_spellings_become_one_op(name):
    gm, report = check(LN_SPELLINGS[name], *x_w_b())
    assert pypm_ops(gm) == ["pypm.layer_norm.default"], str(report)


@pytest.mark.parametrize("spelling", [
    lambda x, w, b: torch.softmax(x, -1),
    lambda x, w, b: x.softmax(dim=1),
    lambda x, w, b: torch.exp(x - x.amax(-1, keepdim=True)) / torch.exp(x - x.amax(-1, keepdim=True)).sum(
        -1, keepdim=True),
])
def test_softmax_spellings_become_one_op(spelling):
    gm, report = check(spelling, *x_w_b())
    assert pypm_ops(gm) == ["pypm.softmax.default"], str(report)


def test_gated_product_is_not_a_weight():
    # y * gate with a full tensor gate: the norm is rewritten, the gating multiply stays
    def gated(x, w, b):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * torch.sigmoid(x)

    gm, _ = check(gated, *x_w_b())
    assert pypm_ops(gm) == ["pypm.rms_norm.default"]
    assert any(n.target is torch.sigmoid for n in gm.graph.nodes)


def test_near_misses_are_left_alone():
    misses = {
        "mean over dim 0": lambda x, w, b: x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + 1e-6),
        "unbiased variance": lambda x, w, b: (x - x.mean(-1, keepdim=True)) / torch.sqrt(
            x.var(-1, keepdim=True) + 1e-5),
        "fourth power, not square": lambda x, w, b: x * torch.rsqrt(x.pow(4).mean(-1, keepdim=True) + 1e-6),
        "softmax in float64": lambda x, w, b: torch.softmax(x, -1, dtype=torch.float64),
    }
    for name, fn in misses.items():
        gm, report = check(fn, *x_w_b())
        assert pypm_ops(gm) == [], (name, str(report))


def test_intermediate_used_outside_is_unsafe():
    def leaky(x, w, b):
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + 1e-6) * w, var

    gm, report = check(leaky, *x_w_b())
    assert pypm_ops(gm) == []
    assert any("outside the match" in s.reason for s in report.skipped), str(report)


def test_rules_decline_off_the_fused_devices(monkeypatch):
    monkeypatch.setattr(pypm.rules, "FUSED_DEVICES", {"cuda"})
    gm, report = check(RMS_SPELLINGS["t5"], *x_w_b())
    assert pypm_ops(gm) == []
    assert any("cuda only" in s.reason for s in report.skipped), str(report)


@pytest.mark.parametrize("dynamic", [False, True])
def test_through_torch_compile(dynamic):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = LlamaRMSNorm()
            self.proj = nn.Linear(D, D)
            self.ln = nn.LayerNorm(D)

        def forward(self, x):
            return torch.softmax(self.ln(self.proj(self.norm(x))), -1)

    torch.manual_seed(0)
    m = Block()
    x = torch.randn(2, 5, D)
    expected = m(x)
    be = pypm.backend(rules=RULES, inner="aot_eager")
    torch._dynamo.reset()
    got = torch.compile(m, backend=be, dynamic=dynamic)(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert be.reports  # one report per compiled graph (dynamic=True may compile twice)
    for report in be.reports:
        assert report.counts() == {"layer-norm-to-pypm": 1, "rms-norm-to-pypm": 1, "softmax-to-pypm": 1}


def test_patterns_file_is_well_formed():
    assert {"RMSNorm", "LayerNorm", "Softmax"} <= {p.name for p in norms.PATTERNS}


def test_unknown_keyword_never_matches_a_filled_default():
    # torch.var(x, correction=0) is biased; the schema table knows var(input, dim, unbiased,
    # keepdim) only, so `unbiased` must not be read as its default True (which would let an
    # unbiased-variance pattern match a biased computation)
    ns = pypm.loads("def Unbiased(x):\n    return var(x, -1, True, True)\n"
                    "def Any(x):\n    return var(x, -1, _, True)\n")
    gm = torch.fx.symbolic_trace(lambda x: torch.var(x, -1, correction=0, keepdim=True))
    assert pypm.match(ns.Unbiased, gm) == []
    assert len(pypm.match(ns.Any, gm)) == 1
