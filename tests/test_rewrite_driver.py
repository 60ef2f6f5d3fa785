"""The rewrite driver: rules with priorities, declining, safety and type checks with reasons,
the fixpoint cap naming cycling rules, errors that name the rule, file and line."""

from __future__ import annotations

import pytest
import torch

import pypm
from pypm.errors import RewriteError
from pypm.rewrite import Decline, RewritePass, SkipKind, StopKind, SweepCapWarning, rule

P = pypm.loads(
    "def Sig(x):\n"
    "    return sigmoid(x)\n"
    "def Silu(x):\n"
    "    return x * sigmoid(x)\n"
    "def Neg2(x):\n"
    "    return neg(neg(x))\n"
)
X = (torch.randn(3, 4),)


def traced(fn):
    gm = torch.fx.symbolic_trace(fn)
    return gm


def check(gm, rules, inputs=X):
    expected = gm(*inputs)
    report = RewritePass(rules).apply(gm, inputs)
    torch.testing.assert_close(gm(*inputs), expected)
    return report


@rule(P.Silu, name="silu", priority=5)
def to_silu(x):
    return torch.nn.functional.silu(x)


@rule(P.Neg2, name="double-negation")
def drop_negations(x):
    return x


def test_a_rule_rewrites_and_the_report_names_rule_root_and_bindings():
    gm = traced(lambda x: x * torch.sigmoid(x) + 1)
    report = check(gm, [to_silu])
    (r,) = report.rewrites
    assert (r.rule, r.bindings) == ("silu", {"x": "%x"}) and r.root == "mul"
    assert "silu" in gm.code and "sigmoid" not in gm.code


def test_returning_an_existing_value_removes_the_region():
    gm = traced(lambda x: torch.neg(torch.neg(x)) + 1)
    check(gm, [drop_negations])
    assert "neg" not in gm.code


def test_higher_priority_rule_wins():
    @rule(P.Silu, name="low", priority=1)
    def low(x):
        return x * torch.sigmoid(x) * 1.0

    gm = traced(lambda x: x * torch.sigmoid(x))
    report = check(gm, [low, to_silu])
    assert [r.rule for r in report.rewrites] == ["silu"]


def test_declining_with_none_and_with_a_reason():
    @rule(P.Silu, name="never")
    def never(x):
        return None

    @rule(P.Silu, name="picky")
    def picky(x):
        raise Decline("x is too small")

    gm = traced(lambda x: x * torch.sigmoid(x))
    report = check(gm, [never, picky])
    assert not report.rewrites
    assert [(s.rule, s.kind, s.reason) for s in report.skipped] == [
        ("never", "declined", "the rule returned None"), ("picky", "declined", "x is too small")]


def test_replacement_of_another_type_is_unsafe():
    @rule(P.Sig, name="wrong-shape")
    def wrong(x):
        return x.sum(0)

    gm = traced(lambda x: torch.sigmoid(x) * 2)
    report = check(gm, [wrong])
    assert not report.rewrites
    (s,) = report.skipped
    assert s.kind == "unsafe" and "float32[4]" in s.reason and "float32[3, 4]" in s.reason
    assert "sum" not in gm.code  # the rejected replacement left nothing behind


def test_intermediate_used_elsewhere_is_unsafe_and_named():
    gm = traced(lambda x: (x * torch.sigmoid(x), torch.sigmoid(x) + 1))
    report = check(gm, [to_silu])
    assert not report.rewrites
    assert "%sigmoid" in report.skipped[0].reason and "outside the match" in report.skipped[0].reason


def test_cycling_rules_hit_the_cap_and_the_report_names_them():
    @rule(P.Sig, name="ping")
    def ping(x):
        return torch.sigmoid(x + 0.0)

    gm = traced(lambda x: torch.sigmoid(x))
    with pytest.warns(SweepCapWarning, match="ping"):
        report = RewritePass([ping], max_sweeps=3).apply(gm, X)
    assert report.stop.kind is StopKind.SWEEP_CAP and report.stop.rules == ("ping",)
    assert report.stop.where[0].startswith(__file__) and "sweep cap" in str(report)
    assert report.sweeps == 3 and len(report.rewrites) == 3
    gm.graph.lint()
    torch.testing.assert_close(gm(*X), torch.sigmoid(X[0]))


def test_a_pass_that_reaches_a_fixpoint_says_so():
    report = check(traced(lambda x: x * torch.sigmoid(x)), [to_silu])
    assert report.stop.kind is StopKind.FIXPOINT and report.stop.rules == ()
    assert "sweep cap" not in str(report)


def test_rule_taking_an_unbound_name_is_rejected_when_defined():
    with pytest.raises(RewriteError, match="takes y, which pattern Silu does not bind") as e:
        @rule(P.Silu, name="bad")
        def bad(x, y):
            return x

    assert e.value.line is not None and "def bad" in str(e.value)


def test_a_failing_rule_body_is_skipped_with_the_error_and_its_line():
    """An error inside a body (a torch call that rejects its arguments, a value the body did
    not expect) skips the match, so that one rule never stops a compilation; the reason names
    the error and the body's line."""
    @rule(P.Sig, name="broken")
    def broken(x):
        raise ValueError("boom")

    gm = traced(lambda x: torch.sigmoid(x))
    report = check(gm, [broken])
    (s,) = report.skipped
    assert (s.rule, s.kind) == ("broken", SkipKind.FAILED)
    assert "ValueError: boom" in s.reason and f"{__file__}:" in s.reason
    assert "sigmoid" in gm.code


def test_without_shapes_the_rewrite_is_unsafe_and_says_how_to_fix_it():
    gm = traced(lambda x: x * torch.sigmoid(x))
    report = RewritePass([to_silu]).apply(gm)
    assert not report.rewrites and "example_inputs" in report.skipped[0].reason


def test_graph_lints_and_recompiles():
    gm = traced(lambda x: x * torch.sigmoid(x) + (torch.neg(torch.neg(x))))
    report = check(gm, [to_silu, drop_negations])
    assert report.counts() == {"silu": 1, "double-negation": 1}
    gm.graph.lint()


def test_misses_explain_candidate_roots_that_survive():
    gm = traced(lambda x: x * torch.tanh(x))
    report = check(gm, [to_silu])
    (m,) = report.misses
    assert "expected operator sigmoid, found %tanh" in m.reason


@pypm.pattern
def SimpleAttention(q, k, v, scale):
    return softmax(q @ transpose(k, -2, -1) * scale, dim=-1) @ v  # noqa: F821 (pattern, not Python)


@rule(SimpleAttention, name="simple-attention", priority=10)
def simple_to_sdpa(q, k, v, scale):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)


def test_front_page_example_pattern_rule_pass_match():
    gm = traced(lambda q, k, v: (q @ k.transpose(-2, -1) * 0.5).softmax(-1) @ v)
    inputs = tuple(torch.randn(1, 2, 3, 4) for _ in range(3))
    assert len(pypm.match(SimpleAttention, gm)) == 1
    report = check(gm, [simple_to_sdpa], inputs)
    assert report.rewrites[0].bindings["scale"] == "0.5"
    assert pypm.match(SimpleAttention, gm) == []


def test_later_sweeps_visit_the_nodes_earlier_rewrites_inserted():
    """A replacement may contain the root operator of another rule that had no candidate in the
    original graph (here: neg). Sweeps after the first look only at surviving candidates and at
    inserted nodes, so the inserted ones must be among them."""
    @rule(P.Silu, name="silu-behind-negations")
    def behind_negations(x):
        return torch.neg(torch.neg(torch.nn.functional.silu(x)))

    gm = traced(lambda x: (x * torch.sigmoid(x)).tanh())
    report = check(gm, [behind_negations, drop_negations])
    assert [r.rule for r in report.rewrites] == ["silu-behind-negations", "double-negation"]
    assert report.sweeps == 3
    assert [n.target for n in gm.graph.nodes if n.op == "call_function"] == [torch.nn.functional.silu]


def test_an_untouched_graph_is_not_linted(monkeypatch):
    gm = traced(lambda x: torch.tanh(x) * 2)
    monkeypatch.setattr(torch.fx.Graph, "lint", lambda self: pytest.fail("linted"))
    assert not RewritePass([to_silu]).apply(gm, X).rewrites


# ---------------------------------------------------------------------------------------------
# What lint checks, per rewrite (RewritePass(lint="new"), the default) or on the whole graph


def test_the_default_lint_checks_new_nodes_only(monkeypatch):
    """By default a pass does not run torch's whole-graph lint (it is O(graph) however little
    changed); lint="full" does, after the per-rewrite checks."""
    monkeypatch.delenv("PYPM_LINT", raising=False)
    calls = []
    real = torch.fx.Graph.lint
    monkeypatch.setattr(torch.fx.Graph, "lint", lambda self: calls.append(self) or real(self))
    gm = traced(lambda x: x * torch.sigmoid(x) + 1)
    assert RewritePass([to_silu]).apply(gm, X).rewrites and calls == []
    gm = traced(lambda x: x * torch.sigmoid(x) + 1)
    assert RewritePass([to_silu], lint="full").apply(gm, X).rewrites and calls == [gm.graph]
    with pytest.raises(RewriteError, match="'new' or 'full'"):
        RewritePass([to_silu], lint="some")


def test_a_body_building_on_a_node_of_an_earlier_rewrite_is_an_error_naming_the_rule():
    """A body that keeps a proxy from one rewrite and uses it in the next builds on a node that
    comes after the new root (sweeps go from outputs to inputs): the per-rewrite lint stops it,
    names the rule, and leaves the graph valid."""
    kept = []

    @rule(P.Sig, name="keeps-proxies")
    def keeps(x):
        kept.append(torch.tanh(x))
        return kept[0] * 1.0

    gm = traced(lambda x: torch.sigmoid(torch.sigmoid(x) + 1))
    with pytest.raises(RewriteError, match="keeps-proxies built %mul_1 on %tanh, which comes after"):
        RewritePass([keeps], lint="new").apply(gm, X)
    gm.graph.lint()
    gm.recompile()
    torch.testing.assert_close(gm(*X), torch.tanh(torch.sigmoid(X[0]) + 1) * 1.0)


def test_a_new_node_on_an_erased_node_is_an_error():
    from pypm.rewrite.checks import lint_new

    gm = traced(lambda x: torch.neg(x) + 1)
    g = gm.graph
    x, _, add = (n for n in g.nodes if n.op != "output")
    gone = g.call_function(torch.tanh, (x,))
    with g.inserting_before(add):
        new = g.call_function(torch.exp, (gone,))
    gone.replace_all_uses_with(x)
    g.erase_node(gone)
    new.args = (gone,)  # what a body holding a stale proxy would build
    with pytest.raises(RewriteError, match="rule double-negation built %exp on %tanh, which is not a live"):
        lint_new(drop_negations, [new], new, add, gm)


def test_a_replacement_defined_after_the_root_is_an_error():
    """A body returning a node that comes after the root (a proxy smuggled in from outside
    the match) would make the root's users use a value before it is defined."""
    later = {}

    @rule(P.Neg2, name="returns-a-later-node")
    def returns_later(x):
        return later["node"]

    gm = traced(lambda x: torch.neg(torch.neg(x)) + torch.tanh(x))
    later["node"] = next(n for n in gm.graph.nodes if n.target is torch.tanh)
    with pytest.raises(RewriteError, match=r"returns-a-later-node.*comes after"):
        RewritePass([returns_later], lint="new").apply(gm, X)
    gm.graph.lint()


def test_body_proxies_record_what_torch_proxies_record():
    """BodyProxy's short path for torch calls builds the same nodes as torch.fx.Proxy: functions
    with positional and keyword arguments, Tensor methods, ATen overloads, and calls it leaves
    to torch (nested arguments)."""
    from pypm.rewrite.body import BodyProxy, _BodyTracer

    def build(proxy_type, tracer_type):
        g = torch.fx.Graph()
        x, y = g.placeholder("x"), g.placeholder("y")
        tracer = tracer_type(g)
        px, py = proxy_type(x, tracer), proxy_type(y, tracer)
        a = torch.nn.functional.scaled_dot_product_attention(px, py, px, is_causal=True, scale=0.5)
        b = a.transpose(-2, -1).to(torch.float16)
        c = torch.ops.aten.unsqueeze.default(b, 0)
        d = torch.cat([c, c], dim=0)  # a list argument: torch's own path
        e = torch.where(px > 0, d, py)
        g.output((e.node,))
        types = [type(p) for p in (a, b, c, d, e)]
        return [(n.op, n.target, n.args, n.kwargs, n.name) for n in g.nodes], types

    ours, our_types = build(BodyProxy, _BodyTracer)
    theirs, _ = build(torch.fx.Proxy, torch.fx.proxy.GraphAppendingTracer)
    strip = [tuple(str(a) for a in row) for row in ours]
    assert strip == [tuple(str(a) for a in row) for row in theirs]
    assert all(t is BodyProxy for t in our_types)


def test_a_new_node_equal_to_a_later_one_stays_and_the_later_one_merges_into_it():
    """A replacement may build a node equal to one further down the graph (here neg(y)). The
    next sweep's CSE must keep the earlier, new node: merging it into the later one would make
    the replacement use a value before it is defined."""
    S = pypm.loads("def Sub(x, y):\n    return sub(x, y)\n")

    @rule(S.Sub, name="sub-to-add-neg")
    def add_neg(x, y):
        return x + torch.neg(y)

    def f(x, y):
        return (x - y) * 2 + torch.neg(y)

    inputs = (torch.randn(3), torch.randn(3))
    for lint in ("new", "full"):
        gm = traced(f)
        report = RewritePass([add_neg], lint=lint).apply(gm, inputs)
        assert report.counts() == {"sub-to-add-neg": 1}
        gm.graph.lint()
        assert [n.target for n in gm.graph.nodes].count(torch.neg) == 1
        torch.testing.assert_close(gm(*inputs), f(*inputs))


@rule(P.Silu, name="noted-silu")
def noted_silu(x):
    out = torch.nn.functional.silu(x)
    out.node.meta[pypm.rewrite.NOTE] = "silu, recovered from x * sigmoid(x)"
    return out


def test_a_rule_note_is_in_the_report():
    """What a body says it recovered (``meta[NOTE]`` on its replacement) is printed with the
    rewrite, so a report shows what each site became."""
    gm = traced(lambda x: x * torch.sigmoid(x))
    report = RewritePass([noted_silu]).apply(gm, X)
    (done,) = report.rewrites
    assert done.note == "silu, recovered from x * sigmoid(x)"
    assert "silu, recovered from x * sigmoid(x)" in str(report)
