"""Rewrite safety beyond escaping intermediates: writes to what a region reads, the root's
layout, gradients of the region's inputs; and the contract of rule bodies (no writes to
existing values, no edits of existing nodes, no change of device), each broken on purpose."""

from __future__ import annotations

import pytest
import torch

import pypm
from pypm.errors import RewriteError
from pypm.graph.cse import TargetNames
from pypm.graph.graph_effects import GraphEffects, Writers
from pypm.graph.types import propagate_types
from pypm.graph.view import GraphView
from pypm.rewrite import (
    Applied,
    Hazard,
    NoMatch,
    RewritePass,
    SkipKind,
    Skipped,
    rule,
)
from pypm.rewrite.attempt import Graph, try_rule

P = pypm.loads(
    "def Sig(x):\n"
    "    return sigmoid(x)\n"
    "def Silu(x):\n"
    "    return x * sigmoid(x)\n"
    "def AddSub(x, y):\n"
    "    return x + y - y\n"
)


@pypm.pattern
def SimpleAttention(q, k, v, scale):
    return softmax(q @ transpose(k, -2, -1) * scale, dim=-1) @ v  # noqa: F821 (pattern, not Python)


@rule(SimpleAttention, name="sdpa")
def to_sdpa(q, k, v, scale):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)


@rule(P.Silu, name="silu")
def to_silu(x):
    return torch.nn.functional.silu(x)


def qkv(shape=(1, 2, 4, 8)):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(shape, generator=g) for _ in range(3))


def run(fn, rules, inputs):
    """Rewrite ``fn``'s traced graph; check it still computes what ``fn`` computes, input
    mutations included (each side on its own copies of the inputs)."""
    gm = torch.fx.symbolic_trace(fn)
    report = RewritePass(rules).apply(gm, [x.clone() for x in inputs])
    mine, theirs = [x.clone() for x in inputs], [x.clone() for x in inputs]
    torch.testing.assert_close(gm(*mine), fn(*theirs))
    torch.testing.assert_close(mine, theirs)
    return gm, report


def captured(fn, inputs):
    """The graph dynamo hands a backend for ``fn`` (in-place ops and ``x[i] = y`` as they are
    written, example values with ``requires_grad``)."""
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, backend=capture, fullgraph=True)(*[x.clone() for x in inputs])
    torch._dynamo.reset()
    (gm,) = graphs
    return gm


def snapshot(gm):
    return gm.code, [(n.name, n.op, n.target, str(n.args), str(n.kwargs)) for n in gm.graph.nodes]


# ---------------------------------------------------------------------------------------------
# Writes between the region and the root


def test_a_write_to_q_between_the_scores_and_the_root_blocks_the_rewrite():
    """The new op at the root would read the doubled q; the scores were computed from the old."""
    def f(q, k, v):
        s = q @ k.transpose(-2, -1) * 0.5
        q.mul_(2)
        return torch.softmax(s, -1) @ v

    _, report = run(f, [to_sdpa], qkv())
    assert not report.rewrites
    (s,) = report.skipped
    assert (s.kind, s.hazard) == (SkipKind.UNSAFE, Hazard.MUTATION)
    assert "%q, which the match reads, may be written by %mul_" in s.reason


def compiled(fn, rules, inputs):
    """``torch.compile(fn)`` through pypm with ``rules``: checks that it computes what ``fn``
    computes, input mutations included, and returns the report."""
    be = pypm.backend(rules=rules, inner="eager")
    torch._dynamo.reset()
    mine, theirs = [x.clone() for x in inputs], [x.clone() for x in inputs]
    torch.testing.assert_close(torch.compile(fn, backend=be, fullgraph=True)(*mine), fn(*theirs))
    torch.testing.assert_close(mine, theirs)
    torch._dynamo.reset()
    (report,) = be.reports
    return report


@pytest.mark.parametrize("write", ["view_zero", "copy", "setitem", "out", "transposed_view"])
def test_each_kind_of_write_through_any_view_blocks_the_rewrite(write):
    def f(q, k, v):
        s = q @ k.transpose(-2, -1) * 0.5
        if write == "view_zero":
            q.view(-1).zero_()
        elif write == "copy":
            q.copy_(k)
        elif write == "setitem":
            q[..., 0] = 1.0
        elif write == "out":
            torch.mul(k, 3, out=q)
        else:
            k.transpose(-2, -1).mul_(2)
        return torch.softmax(s, -1) @ v

    report = compiled(f, [to_sdpa], qkv())
    assert not report.rewrites and report.skipped[0].hazard is Hazard.MUTATION


def test_a_write_whose_result_the_region_reads_does_not_block():
    """``v += 1`` (v a fresh tensor) before the second matmul: the region reads the updated v, as
    the replacement does. (Were v an input, the write could reach q or k through aliasing.)"""
    def f(q, k, v):
        v = v.clone()
        s = q @ k.transpose(-2, -1) * 0.5
        v += 1
        return torch.softmax(s, -1) @ v

    assert compiled(f, [to_sdpa], qkv()).counts() == {"sdpa": 1}


def test_a_call_of_unknown_effect_on_a_read_value_blocks_the_rewrite():
    def f(q, k, v):
        s = q @ k.transpose(-2, -1) * 0.5
        scale_in_place(k)
        return torch.softmax(s, -1) @ v

    gm = torch.fx.symbolic_trace(f)
    report = RewritePass([to_sdpa]).apply(gm, qkv())
    assert not report.rewrites and "scale_in_place" in report.skipped[0].reason


@torch.fx.wrap
def scale_in_place(t):
    t.mul_(2)
    return None


def test_writes_before_the_region_or_after_the_root_do_not_block():
    def before(q, k, v):
        q.mul_(2)
        return torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v

    def after(q, k, v):
        o = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v
        v.mul_(3)
        return o

    for f in (before, after):
        _, report = run(f, [to_sdpa], qkv())
        assert report.counts() == {"sdpa": 1}


def test_a_computed_value_written_in_place_is_not_looked_into():
    """x's term says ``a + 1``, but x was doubled in place after: a match reading x may rely on
    a definition that is out of date (a mask proof would), so the rewrite is declined."""
    def f(a):
        x = a + 1
        x.mul_(2)
        return x * torch.sigmoid(x)

    _, report = run(f, [to_silu], (torch.randn(3, 4),))
    assert not report.rewrites and report.skipped[0].hazard is Hazard.MUTATION
    assert "out of date" in report.skipped[0].reason


def test_an_input_written_in_place_before_the_region_is_rewritten():
    """An input has no definition to go stale: the region and the replacement read it alike."""
    def f(x):
        x.mul_(2)
        return x * torch.sigmoid(x)

    _, report = run(f, [to_silu], (torch.randn(3, 4),))
    assert report.counts() == {"silu": 1}


# ---------------------------------------------------------------------------------------------
# Layout and gradients


def test_a_contiguous_root_stays_contiguous_for_a_later_view():
    """q, k, v are transposed views, so the fused output is not contiguous; the matmul it
    replaces was, and ``.view`` relies on that: ``.contiguous()`` is appended."""
    def f(x):
        parts = x.split(16, dim=2)
        q, k, v = (parts[i].view(1, 4, 2, 8).transpose(1, 2) for i in range(3))
        o = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v
        return o.view(2, 4, 8)

    gm, report = run(f, [to_sdpa], (torch.randn(1, 4, 48),))
    assert report.counts() == {"sdpa": 1}
    assert "contiguous" in gm.code


def test_a_replacement_without_the_strides_of_a_non_contiguous_root_is_skipped():
    @rule(P.Sig, name="contiguous-sigmoid")
    def contiguous_sigmoid(x):
        return torch.sigmoid(x.contiguous())

    # the strides of a graph's output are visible to its caller
    _, report = run(lambda x: torch.sigmoid(x.transpose(0, 1)), [contiguous_sigmoid],
                    (torch.randn(3, 4),))
    assert not report.rewrites
    (s,) = report.skipped
    assert s.hazard is Hazard.LAYOUT and "strides [3, 1] but the root has [1, 4]" in s.reason


@rule(P.AddSub, name="cancel")
def cancel(x, y):
    return x


def test_an_input_requiring_grad_that_the_replacement_drops_is_skipped():
    gm = captured(lambda x, y: x + y - y, (torch.randn(3), torch.randn(3, requires_grad=True)))
    report = RewritePass([cancel]).apply(gm)
    assert not report.rewrites
    (s,) = report.skipped
    assert s.hazard is Hazard.GRADIENT and "requires grad" in s.reason


def test_requires_grad_of_example_inputs_reaches_the_gradient_check():
    """With shapes propagated from example inputs (``symbolic_trace``), an input that requires
    grad is still known to: dropping it is skipped."""
    gm = torch.fx.symbolic_trace(lambda x, y: x + y - y)
    report = RewritePass([cancel]).apply(gm, (torch.randn(3), torch.randn(3, requires_grad=True)))
    assert not report.rewrites and report.skipped[0].hazard is Hazard.GRADIENT


# ---------------------------------------------------------------------------------------------
# In-place ops inside the region

PI = pypm.loads(
    "def Scaled(q, k, v, c):\n"
    "    return softmax(imul(q @ transpose(k, -2, -1), c), -1) @ v\n"
    "def ScaledLeaf(x, v, c):\n"
    "    return softmax(imul(x, c), -1) @ v\n"
)


@rule(PI.Scaled, name="scaled")
def scaled(q, k, v, c):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=c)


@rule(PI.ScaledLeaf, name="scaled-leaf")
def scaled_leaf(x, v, c):
    return torch.softmax(x * c, -1) @ v


def test_an_in_place_op_on_a_tensor_the_region_made_is_replaced():
    """``s = q @ kᵀ; s *= c`` (Falcon's scaling): the written tensor exists only inside the
    region, so the replacement computes everything the region did."""
    def f(q, k, v):
        s = q @ k.transpose(-2, -1)
        s *= 0.5
        return torch.softmax(s, -1) @ v

    inputs = qkv()
    gm = captured(f, inputs)
    (want,) = gm(*[x.clone() for x in inputs])  # dynamo orders the graph's inputs its own way
    assert RewritePass([scaled]).apply(gm).counts() == {"scaled": 1}
    (got,) = gm(*[x.clone() for x in inputs])
    torch.testing.assert_close(got, want)


def test_an_in_place_op_on_a_tensor_from_outside_the_region_is_impure():
    """``x *= c`` on an input: the write is seen by the caller, and the replacement would not
    make it."""
    def f(x, v):
        x *= 0.5
        return torch.softmax(x, -1) @ v

    gm = captured(f, (torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 8)))
    report = RewritePass([scaled_leaf]).apply(gm)
    assert not report.rewrites and report.skipped[0].hazard is Hazard.IMPURE


# ---------------------------------------------------------------------------------------------
# Global state: grad mode, autocast


def test_a_region_across_a_grad_mode_change_is_skipped():
    """Scores computed under ``no_grad``, the rest outside: fused at the root, the scores would
    gain a gradient (eager's q and k get none)."""
    def f(q, k, v):
        with torch.no_grad():
            s = q @ k.transpose(-2, -1) * 0.5
        return torch.softmax(s, -1) @ v

    inputs = tuple(t.requires_grad_() for t in qkv())
    report = RewritePass([to_sdpa]).apply(captured(f, inputs))
    assert not report.rewrites
    assert report.skipped[0].hazard is Hazard.STATE and "grad mode" in report.skipped[0].reason


def test_a_region_inside_one_grad_mode_region_is_rewritten():
    def f(q, k, v):
        with torch.no_grad():
            return torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v

    assert RewritePass([to_sdpa]).apply(captured(f, qkv())).counts() == {"sdpa": 1}


def test_a_region_across_an_autocast_boundary_is_skipped():
    def f(q, k, v):
        s = q @ k.transpose(-2, -1) * 0.5
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch.softmax(s, -1) @ v

    report = RewritePass([to_sdpa]).apply(captured(f, qkv()))
    assert not report.rewrites and report.skipped[0].hazard is Hazard.STATE


def test_a_write_to_one_input_blocks_a_region_reading_another():
    """Two inputs may be views of one tensor: writing q between the scores and the root may
    change k."""
    def f(q, k, v):
        s = q @ k.transpose(-2, -1) * 0.5
        q.mul_(2)
        return torch.softmax(s, -1) @ v

    base = torch.randn(1, 2, 4, 8)
    report = RewritePass([to_sdpa]).apply(captured(f, (base, base[:, :], torch.randn(1, 2, 4, 8))))
    assert not report.rewrites and report.skipped[0].hazard is Hazard.MUTATION


def test_layout_is_kept_through_an_elementwise_op_before_a_view():
    """``(attn @ v) * 2`` keeps the layout of ``attn @ v``, which a later ``view`` relies on:
    the replacement is made contiguous like the root (or skipped), never left with other
    strides."""
    def f(x):
        q, k, v = x.view(2, 4, 3, 8).permute(2, 0, 1, 3).unbind(0)
        o = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v
        return (o * 2).view(-1)

    @rule(SimpleAttention, name="strided")
    def strided(q, k, v, scale):
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)
        return out.transpose(1, 2).contiguous().transpose(1, 2)

    x = torch.randn(2, 4, 24)
    gm = captured(f, (x,))
    report = RewritePass([strided]).apply(gm)
    assert report.counts() == {"strided": 1}
    (out,) = gm(x.clone())
    torch.testing.assert_close(out, f(x.clone()))


def test_an_input_without_grad_may_be_dropped():
    gm = captured(lambda x, y: x + y - y, (torch.randn(3), torch.randn(3)))
    assert RewritePass([cancel]).apply(gm).counts() == {"cancel": 1}


# ---------------------------------------------------------------------------------------------
# The contract of rule bodies


def rejected(body_rule, fn, inputs, match):
    """``body_rule`` breaks the contract on ``fn``: a RewriteError naming it and its line, and
    the graph exactly as it was."""
    gm = torch.fx.symbolic_trace(fn)
    propagate_types(gm, inputs)
    before = snapshot(gm)
    with pytest.raises(RewriteError, match=match) as e:
        RewritePass([body_rule]).apply(gm, inputs)
    assert e.value.file and e.value.file.endswith("test_rewrite_safety.py") and e.value.line
    assert body_rule.name in str(e.value)
    gm.graph.lint()
    assert snapshot(gm) == before


X = (torch.randn(3, 4),)


def test_a_body_moving_the_value_to_another_device_is_an_error():
    @rule(P.Sig, name="to-meta")
    def to_meta(x):
        return torch.sigmoid(x).to("meta")

    rejected(to_meta, lambda x: torch.sigmoid(x) * 2, X, "on meta for %sigmoid, which is on cpu")


@pytest.mark.parametrize("how", ["method", "out", "copy", "through_a_view", "aten"])
def test_a_body_writing_a_bound_value_is_an_error(how):
    @rule(P.Sig, name="writes-x")
    def writes_x(x):
        if how == "method":
            x.mul_(2)
        elif how == "out":
            torch.neg(x + 1, out=x)
        elif how == "copy":
            x.copy_(torch.zeros_like(x))
        elif how == "through_a_view":
            x.view(-1).zero_()
        else:
            torch.ops.aten.add_.Tensor(x, 1)
        return torch.sigmoid(x + 0)

    rejected(writes_x, lambda x: torch.sigmoid(x) * 2, X, "writes-x writes %x in place")


def test_a_body_may_write_its_own_temporaries():
    @rule(P.Sig, name="scratch")
    def scratch(x):
        y = x * 1.0
        y.mul_(1.0)
        return torch.sigmoid(y)

    _, report = run(lambda x: torch.sigmoid(x) * 2, [scratch], X)
    assert report.counts() == {"scratch": 1}


def test_a_body_rewiring_existing_nodes_is_an_error():
    @rule(P.Silu, name="rewires")
    def rewires(x):
        new = torch.tanh(x)
        x.node.replace_all_uses_with(new.node, delete_user_cb=lambda u: u is not new.node)
        return new

    rejected(rewires, lambda x: x * torch.sigmoid(x) + x, X, "rewires changed the arguments of %")


def test_a_body_editing_the_output_is_an_error():
    @rule(P.Sig, name="edits-output")
    def edits_output(x):
        out = next(iter(reversed(x.node.graph.nodes)))
        out.args = ((x.node,),)
        return torch.sigmoid(x)

    rejected(edits_output, lambda x: torch.sigmoid(x) * 2, X, "changed the arguments of the graph's output")


def test_a_body_erasing_a_node_is_an_error():
    @rule(P.Silu, name="erases")
    def erases(x):
        g = x.node.graph
        extra = next(n for n in g.nodes if n.target is torch.tanh)
        extra.replace_all_uses_with(x.node)
        g.erase_node(extra)
        return torch.nn.functional.silu(x)

    gm = torch.fx.symbolic_trace(lambda x: x * torch.sigmoid(x) + torch.tanh(x))
    with pytest.raises(RewriteError, match="erases"):
        RewritePass([erases]).apply(gm, X)


# ---------------------------------------------------------------------------------------------
# Scalars and errors in bodies never stop a compilation


def test_a_body_returning_a_python_scalar_is_skipped():
    @rule(P.Sig, name="scalar")
    def scalar(x):
        return 0.5

    _, report = run(lambda x: torch.sigmoid(x) * 2, [scalar], X)
    (s,) = report.skipped
    assert (s.kind, s.hazard) == (SkipKind.UNSAFE, Hazard.TYPE) and "Python float 0.5" in s.reason


def test_a_torch_error_in_a_body_under_torch_compile_is_a_skip_in_the_report():
    """The scores + 3.0 bias case: the body passes a Python float where torch wants a tensor."""
    B = pypm.loads("def Biased(x, b):\n    return softmax(x + b, dim=-1)\n")

    @rule(B.Biased, name="bias-as-mask")
    def bias_as_mask(x, b):
        return torch.nn.functional.scaled_dot_product_attention(x, x, x, attn_mask=b)

    be = pypm.backend(rules=[bias_as_mask], inner="eager")
    x = torch.randn(2, 3, 3)
    fn = torch.compile(lambda x: torch.softmax(x + 3.0, dim=-1), backend=be)
    torch._dynamo.reset()
    torch.testing.assert_close(fn(x), torch.softmax(x + 3.0, dim=-1))
    (s,) = [s for r in be.reports for s in r.skipped]
    assert s.kind is SkipKind.FAILED and "TypeError" in s.reason and "attn_mask" in s.reason


# ---------------------------------------------------------------------------------------------
# try_rule's outcomes


def test_try_rule_says_applied_skipped_or_no_match():
    gm = torch.fx.symbolic_trace(lambda x: (x * torch.sigmoid(x), torch.tanh(x)))
    propagate_types(gm, X)
    names = TargetNames(gm)
    graph = Graph(GraphView(gm, cse=False, names=names), names, Writers(gm.graph, names.effect, names.kinds),
                  GraphEffects(gm.graph, names.effect, names.kinds).region)
    mul = next(n for n in gm.graph.nodes if n.name == "mul")
    tanh = next(n for n in gm.graph.nodes if n.name == "tanh")

    @rule(P.Silu, name="no")
    def no(x):
        return None

    assert isinstance(try_rule(to_silu, tanh, graph), NoMatch)
    skipped = try_rule(no, mul, graph)
    assert isinstance(skipped, Skipped) and skipped.kind is SkipKind.DECLINED
    applied = try_rule(to_silu, mul, graph)
    assert isinstance(applied, Applied) and applied.rewrite.rule == "silu"
    assert [n.target for n in applied.new] == [torch.nn.functional.silu]
