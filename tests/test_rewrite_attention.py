"""The attention rule: every spelling is rewritten to one scaled_dot_product_attention call that
computes the same thing; the scale is read from the graph; a mask becomes is_causal=True only
when it is proved to be the lower triangle; near misses are left alone with their reason."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from pypm.rules.attention import RULES

import pypm
from pypm.rewrite import RewritePass

B, H, T, D = 2, 3, 6, 8


def qkv(dtype=torch.float32, t=T):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(B, H, t, D, generator=g, dtype=dtype) for _ in range(3))


def sdpa_nodes(gm):
    return [n for n in gm.graph.nodes if n.op == "call_function"
            and getattr(n.target, "__name__", "") == "scaled_dot_product_attention"]


def rewrite(fn, inputs, rules=RULES):
    """Trace fn, rewrite it, and check the rewritten graph against the original on the inputs."""
    gm = fn if isinstance(fn, torch.fx.GraphModule) else torch.fx.symbolic_trace(fn)
    expected = gm(*inputs)
    report = RewritePass(rules).apply(gm, inputs)
    got = gm(*inputs)
    tol = {torch.float32: 1e-5, torch.float64: 1e-10, torch.bfloat16: 2e-2}[expected.dtype]
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    return gm, report


class CausalWithBuffer(nn.Module):
    """nanoGPT's spelling: a registered tril buffer, sliced and compared with 0."""

    def __init__(self, n=16, tri=None):
        super().__init__()
        # a frozen parameter, so that symbolic_trace records get_attr and the slice
        tri = tri if tri is not None else torch.tril(torch.ones(n, n)).view(1, 1, n, n)
        self.bias = nn.Parameter(tri, requires_grad=False)

    def forward(self, q, k, v):
        t = q.size(-2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
        att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
        return F.softmax(att, dim=-1) @ v


SPELLINGS = {
    "div-sqrt": lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), dim=-1) @ v,
    "mul-inv-sqrt": lambda q, k, v: (q @ k.transpose(-2, -1) * (1.0 / math.sqrt(D))).softmax(-1) @ v,
    "pow-half": lambda q, k, v: F.softmax(torch.matmul(q, k.transpose(-1, -2)) / D ** 0.5, -1) @ v,
    "scale-left": lambda q, k, v: torch.matmul(F.softmax(0.3 * q.matmul(k.transpose(2, 3)), dim=3), v),
    "permute": lambda q, k, v: (q @ k.permute(0, 1, 3, 2) * 0.25).softmax(dim=-1) @ v,
    "unscaled": lambda q, k, v: (q @ k.transpose(-2, -1)).softmax(-1) @ v,
    "causal-tril": lambda q, k, v: F.softmax(
        (q @ k.transpose(-2, -1) / 3.0).masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)),
                                                    float("-inf")), -1) @ v,
    "causal-triu": lambda q, k, v: F.softmax(
        (q @ k.transpose(-2, -1)).masked_fill(torch.triu(torch.ones(T, T), diagonal=1).bool(),
                                              float("-inf")) * 0.5, -1) @ v,
    "causal-where": lambda q, k, v: F.softmax(torch.where(
        torch.tril(torch.ones(T, T)) == 1, q @ k.transpose(-2, -1) * 0.4, float("-inf")), -1) @ v,
    "causal-bias": lambda q, k, v: F.softmax(
        (q @ k.transpose(2, 3) / math.sqrt(D) + torch.full((T, T), float("-inf")).triu(1)).float(),
        dim=-1).type_as(q) @ v,
    "dropout-off": lambda q, k, v: F.dropout(F.softmax(q @ k.transpose(-2, -1) * 0.2, -1), 0.1,
                                             training=False) @ v,
    "dropout-zero-training": lambda q, k, v: F.dropout(F.softmax(q @ k.transpose(-2, -1) * 0.2, -1), 0.0,
                                                       training=True) @ v,
    "llama-upcast": lambda q, k, v: torch.matmul(
        F.softmax((torch.matmul(q, k.transpose(2, 3)) / math.sqrt(D) + torch.zeros(T, T, dtype=q.dtype))
                  .float(), dim=-1)
        .type_as(q), v),
    "additive-mask": lambda q, k, v: F.softmax(q @ k.transpose(-2, -1) * 0.2 + torch.ones(T, T) * 0.5,
                                               -1) @ v,
}


@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_every_spelling_becomes_one_sdpa_call_that_computes_the_same(name):
    gm, report = rewrite(SPELLINGS[name], qkv())
    assert report.counts() == {"attention": 1}, str(report)
    assert len(sdpa_nodes(gm)) == 1
    assert not any(n.target in (torch.softmax, F.softmax) for n in gm.graph.nodes)


def test_3d_bmm_spelling():
    q, k, v = (x.reshape(B * H, T, D) for x in qkv())
    fn = lambda q, k, v: torch.bmm(torch.softmax(torch.bmm(q, k.permute(0, 2, 1)) * 0.3, -1), v)
    _gm, report = rewrite(fn, (q, k, v))
    assert len(report.rewrites) == 1


@pytest.mark.parametrize("name,dtype", [("div-sqrt", torch.float64), ("div-sqrt", torch.bfloat16),
                                        ("llama-upcast", torch.bfloat16)])
def test_other_dtypes_within_tolerance(name, dtype):
    _gm, report = rewrite(SPELLINGS[name], qkv(dtype))
    assert len(report.rewrites) == 1


@pytest.mark.parametrize("name,scale", [("div-sqrt", 1 / math.sqrt(D)), ("scale-left", 0.3),
                                        ("permute", 0.25), ("unscaled", 1.0), ("causal-tril", 1 / 3.0)])
def test_scale_is_read_from_the_graph(name, scale):
    gm, _ = rewrite(SPELLINGS[name], qkv())
    (n,) = sdpa_nodes(gm)
    assert n.kwargs["scale"] == pytest.approx(scale)


def test_causal_buffer_mask_becomes_is_causal():
    gm, report = rewrite(CausalWithBuffer(), qkv())
    (n,) = sdpa_nodes(gm)
    assert n.kwargs.get("is_causal") is True and n.kwargs.get("attn_mask") is None
    assert "causal" in report.rewrites[0].bindings


@pytest.mark.parametrize("name", ["causal-tril", "causal-triu", "causal-where", "causal-bias"])
def test_causal_mask_built_in_forward_becomes_is_causal(name):
    gm, _ = rewrite(SPELLINGS[name], qkv())
    (n,) = sdpa_nodes(gm)
    assert n.kwargs.get("is_causal") is True and n.kwargs.get("attn_mask") is None


def test_additive_mask_that_is_not_causal_stays_attn_mask():
    fn = lambda q, k, v: F.softmax(
        q @ k.transpose(-2, -1) + torch.full((T, T), float("-inf")).triu(2), -1) @ v
    gm, _ = rewrite(fn, qkv())
    (n,) = sdpa_nodes(gm)
    assert not n.kwargs.get("is_causal") and n.kwargs["attn_mask"] is not None


NOT_LOWER = {
    "half-valued": torch.tril(torch.full((16, 16), 0.5)).view(1, 1, 16, 16),
    "shifted-diagonal": torch.tril(torch.ones(16, 16), diagonal=1).view(1, 1, 16, 16),
    "upper": torch.triu(torch.ones(16, 16)).view(1, 1, 16, 16),
    "random": (torch.rand(16, 16, generator=torch.Generator().manual_seed(1)) > 0.3).float()
    .fill_diagonal_(1).view(1, 1, 16, 16),
}


@pytest.mark.parametrize("name", sorted(NOT_LOWER))
def test_mask_that_is_not_the_lower_triangle_is_never_is_causal(name):
    gm, _report = rewrite(CausalWithBuffer(tri=NOT_LOWER[name]), qkv())
    for n in sdpa_nodes(gm):
        assert not n.kwargs.get("is_causal")
        assert n.kwargs.get("attn_mask") is not None


def test_a_cast_that_changes_the_mask_is_not_causal():
    fn = lambda q, k, v: F.softmax((q @ k.transpose(-2, -1)).masked_fill(
        torch.full((T, T), 0.5).tril().long() == 0, float("-inf")), -1) @ v  # all masked: NaN
    gm = torch.fx.symbolic_trace(fn)
    RewritePass(RULES).apply(gm, qkv())
    assert all(not n.kwargs.get("is_causal") for n in sdpa_nodes(gm))


def test_mask_given_as_input_is_passed_as_attn_mask():
    def fn(q, k, v, m):
        return F.softmax((q @ k.transpose(-2, -1)).masked_fill(m, float("-inf")), -1) @ v

    mask = ~torch.tril(torch.ones(T, T, dtype=torch.bool))
    gm, report = rewrite(fn, (*qkv(), mask))
    # SDPA adds -inf for a boolean mask, which does not hide a NaN or inf score: off the fused
    # path (this CPU), the written-out form stays
    assert not sdpa_nodes(gm) and any("replaces the scores it hides" in s.reason for s in report.skipped)


def test_additive_mask_given_as_input_is_passed_as_attn_mask():
    def fn(q, k, v, m):
        return F.softmax(q @ k.transpose(-2, -1) + m, -1) @ v

    bias = torch.zeros(T, T).masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
    gm, _report = rewrite(fn, (*qkv(), bias))
    (n,) = sdpa_nodes(gm)
    assert not n.kwargs.get("is_causal") and n.kwargs["attn_mask"].name == "m"


def test_keep_mask_given_to_where_is_passed_as_attn_mask():
    def fn(q, k, v, keep):
        return F.softmax(torch.where(keep, q @ k.transpose(-2, -1), float("-inf")), -1) @ v

    keep = torch.rand(T, T, generator=torch.Generator().manual_seed(2)) > 0.3
    keep.fill_diagonal_(True)
    gm, report = rewrite(fn, (*qkv(), keep))
    assert not sdpa_nodes(gm) and any("replaces the scores it hides" in s.reason for s in report.skipped)


@pytest.mark.parametrize("fn", [
    lambda q, k, v: F.softmax((q @ k.transpose(-2, -1) + torch.ones(T, T)) * 0.5, -1) @ v,
    lambda q, k, v: F.softmax((q @ k.transpose(-2, -1)).masked_fill(
        ~torch.ones(T, T, dtype=torch.bool).tril(), -1e4) * 1e-3, -1) @ v,
    lambda q, k, v: F.softmax(torch.div(q @ k.transpose(-2, -1), 2.0, rounding_mode="floor"), -1) @ v,
    lambda q, k, v: F.softmax(torch.add(q @ k.transpose(-2, -1), torch.ones(T, T), alpha=2.0), -1) @ v,
], ids=["bias-then-scale", "finite-fill-then-scale", "floor-division", "add-with-alpha"])
def test_spellings_that_compute_something_else_are_not_rewritten(fn):
    _gm, report = rewrite(fn, qkv())
    assert not report.rewrites


def test_mask_then_minus_inf_then_scale_is_causal():
    fn = lambda q, k, v: F.softmax((q @ k.transpose(-2, -1)).masked_fill(
        ~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")) / 4.0, -1) @ v
    gm, _ = rewrite(fn, qkv())
    (n,) = sdpa_nodes(gm)
    assert n.kwargs["is_causal"] is True and n.kwargs["scale"] == 0.25


def test_finite_fill_with_unproved_mask_is_declined_with_reason():
    def fn(q, k, v, m):
        return F.softmax((q @ k.transpose(-2, -1)).masked_fill(m, -1e9), -1) @ v

    _gm, report = rewrite(fn, (*qkv(), torch.rand(T, T) > 0.5))
    assert not report.rewrites
    assert any("not -inf" in r for r in report.reasons())


# ---------------------------------------------------------------------------------------------
# Near misses: none rewritten, each with its reason in the report

NEGATIVE = {
    "softmax-wrong-dim": (lambda q, k, v: F.softmax(q @ k.transpose(-2, -1) * 0.3, dim=-2) @ v,
                          "literal mismatch: the pattern says -1, the graph has -2"),
    "scale-on-wrong-operand": (lambda q, k, v: (F.softmax(q @ k.transpose(-2, -1), -1) * 0.3) @ v,
                               "expected operator softmax, found %mul"),
    "k-transposed-wrong-dims": (lambda q, k, v: F.softmax(q @ k.transpose(-3, -1) * 0.3, -1) @ v,
                                "literal mismatch: the pattern says -2, the graph has -3"),
}


def _qkv_for(name):
    q, k, v = qkv()
    if name == "k-transposed-wrong-dims":  # k.transpose(-3, -1) type-checks when H == T == D
        q, k, v = (torch.randn(B, 4, 4, 4) for _ in range(3))
    return q, k, v


@pytest.mark.parametrize("name", sorted(NEGATIVE))
def test_near_misses_are_not_rewritten_and_say_why(name):
    fn, reason = NEGATIVE[name]
    _gm, report = rewrite(fn, _qkv_for(name))
    assert not report.rewrites
    assert any(reason in r for r in report.reasons()), str(report)


def test_intermediate_used_outside_the_match_is_unsafe():
    def fn(q, k, v):
        p = F.softmax(q @ k.transpose(-2, -1) * 0.3, -1)
        return p @ v, p  # the attention weights escape

    gm = torch.fx.symbolic_trace(fn)
    inputs = qkv()
    report = RewritePass(RULES).apply(gm, inputs)
    assert not report.rewrites
    (skip,) = report.skipped
    assert skip.kind == "unsafe" and "is also used by %output" in skip.reason


def test_report_lists_rule_root_and_bindings():
    _gm, report = rewrite(SPELLINGS["div-sqrt"], qkv())
    (r,) = report.rewrites
    assert r.rule == "attention" and r.root.startswith("matmul")
    assert r.bindings["q"] == "%q" and r.bindings["div_by"] == repr(math.sqrt(D))


def test_attention_inside_a_bigger_graph_keeps_the_rest():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(D, 3 * D)
            self.out = nn.Linear(D, D)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            a = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), -1) @ v
            return self.out(a) + x

    _gm, report = rewrite(Block().eval(), (torch.randn(B, T, D),))
    assert len(report.rewrites) == 1


def test_match_lists_each_match_once():
    gm = torch.fx.symbolic_trace(SPELLINGS["div-sqrt"])
    ms = pypm.match(pypm.load("attention").Attention, gm)
    assert len(ms) == 1 and ms[0]["div_by"] == pytest.approx(math.sqrt(D))


class WithModules(nn.Module):
    """Softmax and dropout as modules (call_module nodes in a symbolic trace)."""

    def __init__(self):
        super().__init__()
        self.softmax = nn.Softmax(dim=-1)
        self.drop = nn.Dropout(0.1)

    def forward(self, q, k, v):
        return self.drop(self.softmax(q @ k.transpose(-2, -1) * 0.3)) @ v


def test_softmax_and_dropout_modules_in_eval_mode():
    _gm, report = rewrite(torch.fx.symbolic_trace(WithModules().eval()), qkv())
    assert report.counts() == {"attention": 1}


def test_dropout_in_training_mode_is_never_rewritten():
    gm = torch.fx.symbolic_trace(WithModules().train())
    report = RewritePass(RULES).apply(gm, qkv())
    assert not report.rewrites
    assert any("the pattern says False, the graph has True" in r for r in report.reasons())


def test_negative_scale_after_a_mask_is_declined_with_reason():
    fn = lambda q, k, v: F.softmax((q @ k.transpose(-2, -1)).masked_fill(
        ~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")) * -0.5, -1) @ v
    report = RewritePass(RULES).apply(torch.fx.symbolic_trace(fn), qkv())  # +inf: NaN rows
    assert not report.rewrites
    assert any("not provably positive" in r for r in report.reasons())


def test_a_boolean_additive_mask_is_not_taken_for_a_keep_mask():
    # s + m with m boolean adds 1 where m is True; SDPA's boolean attn_mask would keep-or-drop
    mask = torch.rand(T, T, generator=torch.Generator().manual_seed(3)) > 0.5
    fn = lambda q, k, v: F.softmax(q @ k.transpose(-2, -1) + mask, -1) @ v
    gm, report = rewrite(fn, qkv())
    assert not report.rewrites and not sdpa_nodes(gm)
    assert any("additive mask has dtype torch.bool" in r for r in report.reasons())
