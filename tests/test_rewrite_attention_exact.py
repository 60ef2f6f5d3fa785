"""The attention rules change nothing a program computes: at the edges where an attention op
differs from softmax written out (finite fills, fully masked rows, NaN and inf, casts that round,
gradients of every input), the rewrite either reproduces the written-out result exactly (NaN and
inf positions, values within tolerance, every gradient and its None-ness) or is declined.

Each program runs written out, rewritten by ``RewritePass`` on its traced graph, and compiled with
``pypm.backend`` (eager and aot_eager, static and dynamic shapes), on inputs that reach the edge.
``fused`` runs put the CPU among the fused devices, so that ``pypm::attention`` (its reference
implementation) is the replacement; otherwise it is torch's SDPA.
"""

from __future__ import annotations

import math

import pypm.rules
import pytest
import torch
import torch.nn.functional as F
from pypm.rules.attention import RULES

import pypm
from pypm.rewrite import RewritePass

NEG_INF = float("-inf")
COMPILES = [("eager", False), ("eager", True), ("aot_eager", False), ("aot_eager", True)]


@pytest.fixture(params=[False, True], ids=["sdpa", "fused"])
def fused(request, monkeypatch):
    if request.param:
        monkeypatch.setattr(pypm.rules, "FUSED_DEVICES", {"cuda", "cpu"})
    return request.param


def same(got, want, tol=1e-4, what="output"):
    """Equal NaN, +inf and -inf positions; finite values within tol."""
    assert got.shape == want.shape and got.dtype == want.dtype, what
    for test in (torch.isnan, torch.isposinf, torch.isneginf):
        assert torch.equal(test(got), test(want)), f"{what}: {test.__name__} positions differ"
    fin = torch.isfinite(want)
    torch.testing.assert_close(got[fin], want[fin], rtol=tol, atol=tol, msg=what)


def fresh(inputs, grad):
    out = []
    for t in inputs:
        t = t.detach().clone()
        out.append(t.requires_grad_() if grad and t.is_floating_point() else t)
    return out


def run_grads(fn, inputs, grad):
    xs = fresh(inputs, grad)
    out = fn(*xs)
    grads = None
    if grad:
        proj = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
        (out * proj).sum().backward()
        grads = [x.grad for x in xs]
    return out.detach(), grads


def typed(gm, inputs):
    """Example values on every node, ``requires_grad`` included (as dynamo records them), so that
    the rule sees which inputs need gradients."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fakes = []
    for a in inputs:
        f = mode.from_tensor(a)
        fakes.append(f.requires_grad_() if a.requires_grad else f)
    FakeTensorProp(gm, mode).propagate_dont_convert_inputs(*fakes)
    needs = {n for n, a in zip((n for n in gm.graph.nodes if n.op == "placeholder"), inputs)
             if a.requires_grad}
    for n in gm.graph.nodes:  # FakeTensorProp records detached values: mark what needs grad
        val = n.meta.get("val")
        if n in needs or (any(a in needs for a in n.all_input_nodes) and isinstance(val, torch.Tensor)
                          and val.is_floating_point()):
            needs.add(n)
            val.requires_grad_()
    return gm


def check(fn, inputs, *, grad=False, tol=1e-4, compiled=True):
    """Run fn written out, rewritten (traced graph) and compiled; compare everything. Returns the
    rewrite report of the traced graph."""
    want, want_grads = run_grads(fn, inputs, grad)
    gm = typed(torch.fx.symbolic_trace(fn), fresh(inputs, grad))
    report = RewritePass(RULES).apply(gm, fresh(inputs, grad))
    runs = [("traced", gm)]
    if compiled:
        for inner, dynamic in COMPILES:
            torch._dynamo.reset()
            runs.append((f"{inner}-{'dynamic' if dynamic else 'static'}",
                         torch.compile(fn, backend=pypm.backend(inner=inner), dynamic=dynamic)))
    for name, f in runs:
        got, got_grads = run_grads(f, inputs, grad)
        same(got, want, tol, f"{name} output")
        if grad:
            for i, (g, w) in enumerate(zip(got_grads, want_grads)):
                assert (g is None) == (w is None), f"{name}: grad {i} None-ness differs"
                if w is not None:
                    same(g, w, tol, f"{name} grad {i}")
    torch._dynamo.reset()
    return report


def qkv(b=2, h=2, s=8, d=8, scale=1.0, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, s, d, generator=g) * scale + shift for _ in range(3))


def tril(n):
    return torch.ones(n, n, dtype=torch.bool).tril()


# ---------------------------------------------------------------------------------------------
# 1. gradients of every input


def test_a_learned_additive_bias_keeps_its_gradient(fused):
    def fn(q, k, v, bias):
        return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, -1) @ v

    bias = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    report = check(fn, (*qkv(), bias), grad=True)
    if fused:  # pypm::attention differentiates the mask
        assert report.counts() == {"attention": 1}, str(report)


def test_a_scale_tensor_that_requires_grad_keeps_its_gradient(fused):
    def fn(q, k, v, scale):
        return torch.softmax(q @ k.transpose(-2, -1) * scale, -1) @ v

    report = check(fn, (*qkv(), torch.tensor(0.4)), grad=True)
    assert report.counts() == {"attention": 1}, str(report)


# ---------------------------------------------------------------------------------------------
# 2. casts


def test_a_downcast_before_the_softmax_is_not_rewritten(fused):
    def fn(q, k, v):  # scores beyond half's range: inf, then NaN rows, in eager
        return torch.softmax((q @ k.transpose(-2, -1)).half(), -1).float() @ v

    report = check(fn, qkv(scale=150.0))
    assert not report.rewrites
    assert any("rounds" in r for r in report.reasons()), str(report)


def test_probabilities_cast_to_another_dtype_than_q_are_not_rewritten(fused):
    def fn(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1, dtype=torch.float64) @ v.double()

    report = check(fn, qkv(), compiled=False)
    assert not report.rewrites


def test_llama_float32_softmax_and_back_is_rewritten(fused):
    def fn(q, k, v):
        return F.softmax((q @ k.transpose(2, 3) / math.sqrt(8)).float(), dim=-1).type_as(q) @ v

    q, k, v = (t.bfloat16() for t in qkv())
    report = check(fn, (q, k, v), tol=2e-2)
    assert report.counts() == {"attention": 1}, str(report)


# ---------------------------------------------------------------------------------------------
# 3. finite fills


def low_scores():
    """q and k whose scores are about -3e4: below a -1e4 fill."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 2, 8, 8, generator=g) * 0.02 + 50.0
    k = torch.randn(2, 2, 8, 8, generator=g) * 0.02 - 75.0
    return q, k, torch.randn(2, 2, 8, 8, generator=g)


@pytest.mark.parametrize("spelling", ["masked_fill", "where"])
def test_a_finite_causal_fill_stays_finite(fused, spelling):
    def fn(q, k, v):
        s = q @ k.transpose(-2, -1)
        s = s.masked_fill(~tril(8), -1e4) if spelling == "masked_fill" else torch.where(tril(8), s, -1e4)
        return torch.softmax(s, -1) @ v

    report = check(fn, low_scores(), grad=fused)
    if fused:
        assert report.counts() == {"attention": 1}, str(report)
    else:
        assert not report.rewrites and any("not -inf" in r for r in report.reasons()), str(report)


def test_an_additive_finite_causal_bias_is_added_not_made_causal(fused):
    def fn(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) + torch.zeros(8, 8).masked_fill(~tril(8), -1e4), -1) @ v

    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 2, 8, 8, generator=g) * 0.02 + 50.0
    k = torch.randn(2, 2, 8, 8, generator=g) * 0.02 - 75.0 * (1 - torch.arange(8.0) / 7).view(8, 1)
    check(fn, (q, k, torch.randn(2, 2, 8, 8, generator=g)))


def full_rows_mask():
    q, k, v = qkv()
    m = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(5)) < 0.3
    m[:, :, 2, :] = True
    m[1, :, 5, :] = True
    return q, k, v, m


def test_a_finfo_min_fill_averages_fully_masked_rows(fused):
    def fn(q, k, v, m):
        s = q @ k.transpose(-2, -1) * 0.5
        return torch.softmax(s.masked_fill(m, torch.finfo(torch.float32).min), -1) @ v

    report = check(fn, full_rows_mask())
    assert report.counts() == ({"attention": 1} if fused else {}), str(report)


# ---------------------------------------------------------------------------------------------
# 4. fully masked rows, NaN and inf


@pytest.mark.parametrize("spelling", ["masked_fill", "where", "fill_then_scale", "additive"])
def test_fully_masked_rows_are_nan_as_written_out(fused, spelling):
    def fn(q, k, v, m):
        s = q @ k.transpose(-2, -1)
        if spelling == "masked_fill":
            s = (s * 0.5).masked_fill(m, NEG_INF)
        elif spelling == "where":
            s = torch.where(~m, s * 0.5, NEG_INF)
        elif spelling == "fill_then_scale":
            s = s.masked_fill(m, NEG_INF) / math.sqrt(8)
        else:
            s = s * 0.5 + torch.zeros(m.shape).masked_fill(m, NEG_INF)
        return torch.softmax(s, -1) @ v

    report = check(fn, full_rows_mask())
    if fused or spelling == "additive":
        assert report.counts() == {"attention": 1}, str(report)
    else:  # SDPA adds -inf for a boolean mask, which does not hide a NaN score
        assert not report.rewrites and any("replaces the scores it hides" in r for r in report.reasons())


def test_fully_masked_rows_in_training(fused):
    def fn(q, k, v, m):
        return torch.softmax((q @ k.transpose(-2, -1) * 0.5).masked_fill(m, NEG_INF), -1) @ v

    report = check(fn, full_rows_mask(), grad=True)
    if fused:  # NaN gradients, as written out
        assert report.counts() == {"attention": 1}, str(report)
    else:  # a boolean mask is not given to SDPA
        assert not report.rewrites and any("replaces the scores it hides" in r for r in report.reasons()), \
            str(report)


def test_a_nan_query_row_stays_nan(fused):
    q, k, v = qkv()
    q[0, 1, 3] = float("nan")
    report = check(lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v, (q, k, v))
    assert report.counts() == {"attention": 1}, str(report)


@pytest.mark.parametrize("scale", [float("inf"), float("nan")])
def test_a_scale_that_is_not_finite_is_declined(fused, scale):
    report = check(lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) * scale, -1) @ v, qkv())
    assert not report.rewrites and any("not finite" in r or "inf or NaN" in r for r in report.reasons())


# ---------------------------------------------------------------------------------------------
# 5. shapes and operands the body must decline cleanly


@pytest.mark.parametrize("shift", [3.0, 2])
def test_a_number_added_to_the_scores_is_declined(fused, shift):
    report = check(lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) * 0.5 + shift, -1) @ v, qkv())
    if fused:  # an exact specification (score_mod s + shift): the variant's call, outputs compared
        assert report.counts() == {"attention": 1}, str(report)
        return
    assert not report.rewrites and any("not a mask tensor" in r for r in report.reasons()), str(report)


def test_a_bias_that_broadcasts_the_scores_to_5d_is_declined(fused):
    def fn(q, k, v, bias):
        return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, -1) @ v

    bias = torch.randn(3, 1, 1, 8, 8)
    report = check(fn, (*qkv(), bias))
    assert not report.rewrites and any("5-d" in r for r in report.reasons()), str(report)


# ---------------------------------------------------------------------------------------------
# 6. huge logits


def test_an_additive_minus_1e9_mask_with_fully_masked_rows(fused):
    def fn(q, k, v, keep):
        return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + (1.0 - keep.float()) * -1e9, -1) @ v

    keep = torch.rand(2, 1, 1, 8, generator=torch.Generator().manual_seed(2)) < 0.7
    keep[1] = False  # a sequence with no key at all: every row uniform in eager
    check(fn, (*qkv(), keep), grad=True)


# ---------------------------------------------------------------------------------------------
# casts in the norms: statistics in half precision overflow where the fused kernels' do not


def test_norm_statistics_in_half_precision_are_not_rewritten(monkeypatch):
    from pypm.rules.norms import RULES as NORM_RULES

    monkeypatch.setattr(pypm.rules, "FUSED_DEVICES", {"cuda", "cpu"})

    def rms(x, w):
        xh = x.half()
        return (xh * torch.rsqrt(xh.pow(2).mean(-1, keepdim=True) + 1e-6)).float() * w

    def layer(x):
        xh = x.half()
        c = xh - xh.mean(-1, keepdim=True)
        return (c / torch.sqrt((c * c).mean(-1, keepdim=True) + 1e-5)).float()

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, 8, generator=g) * 5e4 + 1e3
    for fn, args in ((rms, (x, torch.randn(8, generator=g))), (layer, (x * 0.2,))):
        want = fn(*args)
        gm = torch.fx.symbolic_trace(fn)
        report = RewritePass(NORM_RULES).apply(gm, args)
        assert not report.rewrites, str(report)
        same(gm(*args), want)
