"""The root-operator index finds exactly the matches that trying every node finds."""

from __future__ import annotations

import pypm
from pypm.lang.analysis import candidates, match_everywhere, root_ops
from pypm.lang.syntax import Call
from pypm.lang.terms import parse, subterms

NS = pypm.loads('''
def Soft(x):
    return softmax(x, -1) | log_softmax(x, -1)

def Any(x):
    return x

def Layout(x):
    return x | view(Layout(x), _)

def Viewed(x):
    return view(Layout(x), _) | neg(Viewed(x))

def Pair(f: Op, x):
    return f(x, x)

def Local(x):
    out = Layout(x) | neg(x)
    return out

def Named(x):
    out = softmax(x, -1)
    assert out.ndim != 3
    return out

def Either(x):
    out = view(x, _) | Soft(x)
    return out
''')

TERM = parse("add(softmax(view(view(a, 1), 2), -1), log_softmax(neg(view(b, 3)), -1), f(c, c), "
             "view(neg(a), 4))")


def every_node(pdef, nodes):
    return [m for n in nodes for m in pdef.matches(n)]


def test_root_ops():
    def ops(name):
        d = NS[name]
        return root_ops(d.program, Call(d.name, d.params))

    assert ops("Soft") == {"softmax", "log_softmax"}
    assert ops("Any") is None and ops("Layout") is None and ops("Pair") is None
    assert ops("Viewed") == {"view", "neg"}
    # a local variable that is returned has the root operators of what it is bound to (M-Then)
    assert ops("Local") is None  # Layout(x) may be x itself
    assert ops("Named") == {"softmax"}
    assert ops("Either") == {"view", "softmax", "log_softmax"}


def test_index_finds_the_same_matches_as_every_node():
    nodes = list(subterms(TERM))
    for pdef in NS:
        want = every_node(pdef, nodes)
        got = list(match_everywhere(pdef, nodes, first_only=False))
        assert [(m.root, dict(m.bindings)) for m in got] == [(m.root, dict(m.bindings)) for m in want]
        assert len(candidates(pdef, nodes)) <= len(nodes)


def test_the_rule_index_lists_rules_by_root_operator_in_priority_order():
    """The driver's one candidate selector: rules that may match anywhere are tried at every
    operator, in priority order with the others (declaration order on ties); outputs and
    inputs are never candidate roots."""
    import torch

    from pypm.graph.cse import TargetNames
    from pypm.rewrite import rule, rule_index

    def body(x):
        return None

    soft_low = rule(NS.Soft, name="soft-low", priority=0)(body)
    anywhere = rule(NS.Any, name="anywhere", priority=5)(body)
    soft_high = rule(NS.Soft, name="soft-high", priority=9)(body)
    viewed = rule(NS.Viewed, name="viewed", priority=5)(body)
    index = rule_index([soft_low, anywhere, soft_high, viewed])
    names = [r.name for r in index.for_op("softmax")]
    assert names == ["soft-high", "anywhere", "soft-low"]
    assert [r.name for r in index.for_op("neg")] == ["anywhere", "viewed"]
    assert [r.name for r in index.for_op("tanh")] == ["anywhere"]

    gm = torch.fx.symbolic_trace(lambda x: torch.softmax(torch.tanh(x), -1))
    tn = TargetNames(gm)
    assert [n.name for n in rule_index([soft_low]).candidates(gm.graph.nodes, tn)] == ["softmax"]
    assert [n.name for n in index.candidates(gm.graph.nodes, tn)] == ["tanh", "softmax"]
