"""The ATen attention rule ("attention-aten"): hand-written attention as it reaches inductor's
post-grad passes (matmul as expand/reshape/bmm, softmax as amax/sub/exp/sum/div, masked_fill as
where) becomes one ATen attention call through ``pypm.inductor_pass()``, computing what eager
computes; the scale is read from the graph; a mask becomes is_causal=True only when the guards
prove it is the lower triangle; training graphs, which save the intermediates, are left alone.

Most tests switch inductor's own pattern matcher off: its attention fusion takes the unmasked
spellings first, and its softmax rewrites change what the post-grad graph looks like, so that
this rule would not see them. One test runs with it on (inductor's default) to show the masked
spellings inductor leaves alone are taken by the rule.
"""

from __future__ import annotations

import math

import pypm.rules
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from pypm.rules.attention import RULES, attention_aten
from pypm.rules.masks import causal_bias, triangle_kind
from torch._inductor import config
from torch.fx.experimental.proxy_tensor import make_fx

import pypm
from pypm.compile.inductor import InductorPass
from pypm.graph import GraphView
from pypm.rewrite import RewritePass

B, H, T, D = 2, 3, 6, 8
FLASH_CPU = "aten._scaled_dot_product_flash_attention_for_cpu.default"
FUSED = "pypm.attention.default"
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


class Recorder(InductorPass):
    """The standard inductor pass, keeping the (target, args) of the call nodes it leaves."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple, dict]] = []

    def __call__(self, graph: torch.fx.Graph) -> None:
        super().__call__(graph)
        self.calls += [(str(n.target), n.args, dict(n.kwargs)) for n in graph.nodes
                       if n.op == "call_function"]

    def targets(self) -> set[str]:
        return {t for t, _, _ in self.calls}

    def attention_args(self, target: str = FLASH_CPU) -> tuple:
        (args,) = [a for t, a, _ in self.calls if t == target]
        return args

    def attention_kwargs(self, target: str = FLASH_CPU) -> dict:
        (kwargs,) = [kw for t, _, kw in self.calls if t == target]
        return kwargs


def qkv(dtype=torch.float32, t=T, requires_grad=False):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(B, H, t, D, generator=g, dtype=dtype).requires_grad_(requires_grad)
                 for _ in range(3))


def compiled(fn, *inputs, dynamic=False, inductor_patterns=False, freezing=False):
    """Compile fn with the recording pass under no_grad; (output, pass)."""
    p = Recorder()
    torch._dynamo.reset()
    with config.patch(post_grad_custom_pre_pass=p, force_disable_caches=True,
                      pattern_matcher=inductor_patterns, freezing=freezing), torch.no_grad():
        out = torch.compile(fn, dynamic=dynamic, fullgraph=True)(*inputs)
    return out, p


def check_close(got, fn, *inputs):
    with torch.no_grad():
        want = fn(*inputs)
    tol = TOL[want.dtype]
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def scores(q, k):
    return q @ k.transpose(-2, -1)


def tril(t):
    return torch.ones(t, t, dtype=torch.bool).tril()


def causal_masked_fill(q, k, v):
    s = (scores(q, k) * 0.3).masked_fill(~tril(q.shape[-2]), float("-inf"))
    return torch.softmax(s, -1) @ v


def causal_where(q, k, v):
    return torch.softmax(torch.where(tril(q.shape[-2]), scores(q, k) * 0.3, float("-inf")), -1) @ v


def causal_eq0(q, k, v):
    t = q.shape[-2]
    m = torch.ones(t, t).tril().view(1, 1, t, t)
    s = (scores(q, k) / math.sqrt(D)).masked_fill(m[:, :, :t, :t] == 0, float("-inf"))
    return F.softmax(s, dim=-1) @ v


def causal_bias_fp32(q, k, v):
    """LLaMA: an additive -inf triangle, softmax in float32, cast back."""
    t = q.shape[-2]
    s = scores(q, k) / math.sqrt(D) + torch.full((t, t), float("-inf")).triu(1)
    return F.softmax(s.float(), dim=-1).type_as(q) @ v


def causal_then_scale(q, k, v):
    """The -inf mask applied before the scale."""
    return torch.softmax(scores(q, k).masked_fill(~tril(q.shape[-2]), float("-inf")) * 0.3, -1) @ v


# name -> (function, extra inputs, whether the mask is the causal triangle)
KEEP = torch.rand(T, T, generator=torch.Generator().manual_seed(1)) > 0.4
KEEP[:, 0] = True  # no fully masked row (the written-out form gives NaN there)
SPELLINGS = {
    "mul": (lambda q, k, v: torch.softmax(scores(q, k) * 0.3, -1) @ v, (), False),
    "div-sqrt": (lambda q, k, v: torch.softmax(scores(q, k) / math.sqrt(q.shape[-1]), -1) @ v, (), False),
    "unscaled": (lambda q, k, v: F.softmax(scores(q, k), dim=-1) @ v, (), False),
    "causal-masked-fill": (causal_masked_fill, (), True),
    "causal-where": (causal_where, (), True),
    "causal-eq0": (causal_eq0, (), True),
    "causal-bias-fp32": (causal_bias_fp32, (), True),
    "causal-then-scale": (causal_then_scale, (), True),
    "bool-mask": (lambda q, k, v, m: torch.softmax(
        (scores(q, k) * 0.3).masked_fill(m, float("-inf")), -1) @ v, (~KEEP,), False),
    "keep-mask": (lambda q, k, v, m: torch.softmax(
        torch.where(m, scores(q, k) * 0.3, float("-inf")), -1) @ v, (KEEP,), False),
    "additive-mask": (lambda q, k, v, m: torch.softmax(scores(q, k) * 0.3 + m, -1) @ v,
                      (torch.randn(T, T, generator=torch.Generator().manual_seed(2)),), False),
    "3-d": (lambda q, k, v: torch.softmax(q[0] @ k[0].transpose(-2, -1) * 0.3, -1) @ v[0], (), False),
}


# Boolean masks other than the causal triangle: the CPU op adds -inf for them, which does not
# hide a NaN or inf score as masked_fill and where do, so they are declined on the CPU.
BOOLEAN = ("bool-mask", "keep-mask")
HIDES = "replaces the scores it hides"


@pytest.mark.parametrize("name", BOOLEAN)
def test_a_boolean_mask_is_not_given_to_the_cpu_attention_op(name):
    fn, extra, _ = SPELLINGS[name]
    inputs = (*qkv(), *extra)
    out, p = compiled(fn, *inputs)
    assert p.reports[0].counts() == {}
    assert any(HIDES in s.reason for s in p.reports[0].skipped), str(p.reports[0])
    check_close(out, fn, *inputs)


@pytest.mark.parametrize("name", [n for n in SPELLINGS if n not in BOOLEAN])
def test_each_spelling_becomes_one_cpu_attention_call(name):
    fn, extra, causal = SPELLINGS[name]
    inputs = (*qkv(), *extra)
    out, p = compiled(fn, *inputs)
    assert p.reports[0].counts() == {"attention-aten": 1}, str(p.reports[0])
    assert "aten.bmm.default" not in p.targets() and "aten.exp.default" not in p.targets()
    dropout, is_causal = p.attention_args()[3:5]
    assert (dropout, is_causal) == (0.0, causal)
    assert ("causal" in p.reports[0].rewrites[0].bindings) == causal
    check_close(out, fn, *inputs)


def test_the_scale_is_read_from_the_graph():
    divided = lambda q, k, v: torch.softmax(scores(q, k) / 5.0, -1) @ v
    for fn, scale in ((SPELLINGS["mul"][0], 0.3), (divided, 0.2), (SPELLINGS["unscaled"][0], 1.0)):
        out, p = compiled(fn, *qkv())
        assert p.attention_kwargs()["scale"] == pytest.approx(scale)
        check_close(out, fn, *qkv())


def test_bfloat16_with_a_float32_softmax():
    fn = lambda q, k, v: F.softmax((scores(q, k) * 0.3).float(), dim=-1).to(q.dtype) @ v
    inputs = qkv(torch.bfloat16)
    out, p = compiled(fn, *inputs)
    assert p.reports[0].counts() == {"attention-aten": 1}, str(p.reports[0])
    assert out.dtype == torch.bfloat16
    check_close(out, fn, *inputs)


@pytest.mark.parametrize("name", ["div-sqrt", "causal-masked-fill", "causal-bias-fp32", "additive-mask"])
def test_dynamic_shapes(name):
    fn, extra, causal = SPELLINGS[name]
    p = Recorder()
    torch._dynamo.reset()
    with config.patch(post_grad_custom_pre_pass=p, force_disable_caches=True, pattern_matcher=False), \
            torch.no_grad():
        f = torch.compile(fn, dynamic=True, fullgraph=True)
        for t in (T, T - 1):  # one symbolic graph for both lengths
            inputs = (*qkv(t=t), *(m[:t, :t].contiguous() for m in extra))
            check_close(f(*inputs), fn, *inputs)
    # (dynamo may compile a second graph for the mask input; each is symbolic and rewritten)
    assert p.reports and all(r.counts() == {"attention-aten": 1} for r in p.reports), \
        [str(r) for r in p.reports]
    assert {a[4] for t, a, _ in p.calls if t == FLASH_CPU} == {causal}


def test_a_scale_computed_in_the_graph_goes_to_q_with_a_mask():
    # dynamic=True makes the head dim symbolic: / sqrt(d) is a 0-d tensor computed in the graph
    fn = lambda q, k, v, m: torch.softmax(scores(q, k) / math.sqrt(q.shape[-1]) + m, -1) @ v
    inputs = (*qkv(), torch.zeros(T, T).masked_fill(~KEEP, float("-inf")))
    out, p = compiled(fn, *inputs, dynamic=True)
    assert p.reports[0].counts() == {"attention-aten": 1}, str(p.reports[0])
    assert p.reports[0].rewrites[0].bindings["div_by"].startswith("%")
    assert p.attention_kwargs()["scale"] == 1.0
    check_close(out, fn, *inputs)


def test_inductor_default_passes_leave_masked_attention_to_the_rule():
    for name in ("causal-masked-fill", "additive-mask"):
        fn, extra, _ = SPELLINGS[name]
        inputs = (*qkv(), *extra)
        out, p = compiled(fn, *inputs, inductor_patterns=True)
        assert p.reports[0].counts() == {"attention-aten": 1}, str(p.reports[0])
        check_close(out, fn, *inputs)


def test_training_graph_is_left_alone_and_gradients_are_right():
    q, k, v = qkv(requires_grad=True)
    p = Recorder()
    torch._dynamo.reset()
    with config.patch(post_grad_custom_pre_pass=p, force_disable_caches=True, pattern_matcher=False):
        torch.compile(causal_masked_fill, fullgraph=True)(q, k, v).sum().backward()
    got = [t.grad for t in (q, k, v)]
    q2, k2, v2 = qkv(requires_grad=True)
    causal_masked_fill(q2, k2, v2).sum().backward()
    for a, b in zip(got, (q2.grad, k2.grad, v2.grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert all(r.counts() == {} for r in p.reports)
    skips = [s for r in p.reports for s in r.skipped if s.rule == "attention-aten"]
    assert skips and all(s.kind == "unsafe" and "outside the match" in s.reason for s in skips)


class BufferMasked(nn.Module):
    """nanoGPT: a registered tril buffer, sliced and compared with 0."""

    def __init__(self, n=8):
        super().__init__()
        self.register_buffer("bias", torch.ones(n, n).tril().view(1, 1, n, n))

    def forward(self, q, k, v):
        t = q.shape[-2]
        s = (scores(q, k) / math.sqrt(D)).masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
        return F.softmax(s, dim=-1) @ v


@pytest.mark.parametrize("freezing", [False, True])
def test_mask_buffer_is_causal_only_when_frozen_into_a_constant(freezing):
    m = BufferMasked().eval()
    out, p = compiled(m, *qkv(), freezing=freezing)
    if freezing:
        assert p.reports[0].counts() == {"attention-aten": 1}, str(p.reports[0])
        assert p.attention_args()[4] is True
    else:  # the buffer is a graph input: nothing proves it is the triangle, and a boolean mask
        # other than the triangle is not given to the CPU op
        assert p.reports[0].counts() == {}
        assert any(HIDES in s.reason for s in p.reports[0].skipped), str(p.reports[0])
    check_close(out, m, *qkv())


# ---------------------------------------------------------------------------------------------
# Negatives


def test_softmax_over_the_wrong_dim_is_not_attention():
    fn = lambda q, k, v: torch.softmax(scores(q, k) * 0.3, -2) @ v
    out, p = compiled(fn, *qkv())
    assert p.reports[0].counts() == {}
    check_close(out, fn, *qkv())


@pytest.mark.parametrize("mask", [
    lambda t: ~torch.ones(t, t, dtype=torch.bool).tril(1),      # the diagonal above it too
    lambda t: ~torch.ones(t, t, dtype=torch.bool).triu(),       # the upper triangle (anti-causal)
    lambda t: torch.arange(t)[None, :] > torch.arange(t)[:, None] + 1,
])
def test_non_triangular_masks_never_become_is_causal(mask):
    fn = lambda q, k, v: torch.softmax((scores(q, k) * 0.3).masked_fill(mask(q.shape[-2]), float("-inf")),
                                       -1) @ v
    out, p = compiled(fn, *qkv())
    # matched as a boolean mask (never as is_causal), which the CPU op does not take
    assert p.reports[0].counts() == {}
    assert any(HIDES in s.reason for s in p.reports[0].skipped), str(p.reports[0])
    assert FLASH_CPU not in p.targets()
    check_close(out, fn, *qkv())


def test_a_rounding_division_is_not_a_scale():
    fn = lambda q, k, v: torch.softmax(torch.div(scores(q, k), 0.5, rounding_mode="floor"), -1) @ v
    out, p = compiled(fn, *qkv())
    assert p.reports[0].counts() == {}
    assert any("rounds" in s.reason for s in p.reports[0].skipped), str(p.reports[0])
    check_close(out, fn, *qkv())


def test_a_finite_fill_of_a_non_causal_mask_is_declined():
    fn = lambda q, k, v, m: torch.softmax((scores(q, k) * 0.3).masked_fill(m, -1e9), -1) @ v
    out, p = compiled(fn, *qkv(), ~KEEP)
    assert p.reports[0].counts() == {}
    assert any("not -inf" in s.reason for s in p.reports[0].skipped), str(p.reports[0])
    check_close(out, fn, *qkv(), ~KEEP)


def test_a_boolean_additive_mask_is_declined():
    fn = lambda q, k, v, m: torch.softmax(scores(q, k) * 0.3 + m, -1) @ v
    out, p = compiled(fn, *qkv(), KEEP)
    assert p.reports[0].counts() == {}
    assert any("additive mask has dtype torch.bool" in s.reason for s in p.reports[0].skipped)
    check_close(out, fn, *qkv(), KEEP)


# ---------------------------------------------------------------------------------------------
# Without inductor: ATen graphs from make_fx (view, _unsafe_view, transpose, _softmax, tril,
# masked_fill.Scalar, scalar_tensor fills)


def aten_graph(fn, *inputs, decompose=False):
    table = None
    if decompose:
        from torch._inductor.decomposition import select_decomp_table

        table = select_decomp_table()
    return make_fx(fn, decomposition_table=table)(*inputs)


@pytest.mark.parametrize("name", ["mul", "causal-masked-fill", "causal-where", "causal-bias-fp32",
                                  "additive-mask"])
def test_undecomposed_aten_graphs(name):
    fn, extra, causal = SPELLINGS[name]
    inputs = (*qkv(), *extra)
    gm = aten_graph(fn, *inputs)
    assert "aten._softmax.default" in {str(n.target) for n in gm.graph.nodes}
    report = RewritePass(RULES).apply(gm)
    assert report.counts() == {"attention-aten": 1}, str(report)
    (flash,) = [n for n in gm.graph.nodes if str(n.target) == FLASH_CPU]
    assert flash.args[4] is causal
    check_close(gm(*inputs), fn, *inputs)


def test_a_reshape_that_is_not_the_batch_flattening_is_not_matched():
    def fn(q, k, v):  # (2, 3, 4, 12) read as (6, 6, 8): the same numbers, not the same matrices
        s = torch.bmm(q.reshape(6, 6, 8), k.reshape(6, 6, 8).transpose(1, 2)).reshape(2, 3, 6, 6)
        return torch.softmax(s, -1).reshape(6, 6, 6).bmm(v.reshape(6, 6, 8)).reshape(2, 3, 6, 8)

    g = torch.Generator().manual_seed(0)
    inputs = tuple(torch.randn(2, 3, 4, 12, generator=g) for _ in range(3))
    gm = aten_graph(fn, *inputs)
    assert pypm.match(attention_aten.pattern, gm) == []
    assert RewritePass([attention_aten]).apply(gm).counts() == {}


def test_the_rule_is_standard():
    assert "attention-aten" in {r.name for r in pypm.standard_rules()}


def test_fused_op_on_fused_devices(monkeypatch):
    monkeypatch.setattr(pypm.rules, "FUSED_DEVICES", {"cuda", "cpu"})
    for name in ("causal-masked-fill", "bool-mask"):
        fn, extra, causal = SPELLINGS[name]
        inputs = (*qkv(), *extra)
        out, p = compiled(fn, *inputs)
        assert p.reports[0].counts() == {"attention-aten": 1}, str(p.reports[0])
        assert FUSED in p.targets() and FLASH_CPU not in p.targets()
        assert p.attention_args(FUSED)[5] is causal  # pypm::attention(q, k, v, mask, scale, is_causal)
        check_close(out, fn, *inputs)


def test_demo_gpt_every_layer_is_rewritten_causal():
    from pypm.demo import GPT, GPTConfig

    cfg = GPTConfig(layers=2, width=64, heads=2, vocab=64, block=16)
    model = GPT(cfg).eval()
    idx = torch.randint(0, cfg.vocab, (2, 16), generator=torch.Generator().manual_seed(0))
    out, p = compiled(model, idx, inductor_patterns=True)
    assert p.reports[0].counts() == {"attention-aten": 2}, str(p.reports[0])
    assert all("causal" in r.bindings for r in p.reports[0].rewrites)
    with torch.no_grad():
        torch.testing.assert_close(out, model(idx), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# The causal guards on decomposed masks (iota arithmetic): whatever they prove is true


def _masks(t):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return {
        "tril": lambda: torch.ones(t, t, dtype=torch.bool).tril(),
        "triu1": lambda: torch.ones(t, t, dtype=torch.bool).triu(1),
        "float-tril": lambda: torch.ones(t, t).tril(),
        "float-triu1-eq0": lambda: torch.ones(t, t).triu(1) == 0,
        "ge": lambda: i >= j,
        "lt-swapped": lambda: j < i + 1,
        "gt": lambda: j > i,
        "tril1": lambda: torch.ones(t, t, dtype=torch.bool).tril(1),
        "tril-1": lambda: torch.ones(t, t, dtype=torch.bool).tril(-1),
        "triu": lambda: torch.ones(t, t, dtype=torch.bool).triu(),
        "row": lambda: (i >= torch.arange(1)[None, :]).expand(t, t),
        "shifted": lambda: j <= i + 1,
        "uint8-wraps": lambda: (torch.arange(t, dtype=torch.uint8)[None, :]
                                - torch.arange(t, dtype=torch.uint8)[:, None]) <= 0,  # the diagonal
    }


@pytest.mark.parametrize("name", list(_masks(5)))
def test_triangle_kind_of_decomposed_masks_is_sound(name):
    t = 5
    gm = aten_graph(lambda x: (_masks(x.shape[0])[name](),), torch.zeros(t), decompose=True)
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0][0]
    kind = triangle_kind(GraphView(gm).term(out))
    value = gm(torch.zeros(t))[0] != 0
    lower = torch.ones(t, t, dtype=torch.bool).tril()
    truth = "lower" if torch.equal(value, lower) else "strict-upper" if torch.equal(value, ~lower) else None
    assert kind in (None, truth)
    proved = {"tril": "lower", "triu1": "strict-upper", "float-tril": "lower", "float-triu1-eq0": "lower",
              "ge": "lower", "lt-swapped": "lower", "gt": "strict-upper"}
    assert kind == proved.get(name)


def test_causal_bias_of_the_decomposed_llama_mask():
    def biases(x):
        t = x.shape[0]
        return (torch.full((t, t), float("-inf")).triu(1), torch.full((t, t), float("-inf")).triu(),
                torch.full((t, t), -1.0).triu(1))

    gm = aten_graph(biases, torch.zeros(5), decompose=True)
    view = GraphView(gm)
    outs = [view.term(n) for n in next(n for n in gm.graph.nodes if n.op == "output").args[0]]
    scores_term = outs[0]  # any term with the mask's last two sizes
    assert [causal_bias(b, scores_term) for b in outs] == [True, False, False]
