"""CSE's merge (which leaves out nodes that are the only user of an input, and puts them back
when that input gains a user) leaves no two equal nodes, by the plain reference algorithm
(:meth:`CSE.classes`, which keys every node), and changes no value: on random straight-line
graphs with many duplicates, merged all at once and then incrementally after insertions."""

from __future__ import annotations

import operator

import torch
import torch.fx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypm.graph import CSE

OPS = [(torch.neg, 1), (torch.sin, 1), (operator.add, 2), (operator.mul, 2)]
INPUTS = (torch.randn(3), torch.randn(3))


def _add_nodes(data, graph: torch.fx.Graph, values: list, count: int, before=None) -> list:
    """``count`` random pure calls on earlier values (appended, or inserted before a node)."""
    out = []
    for _ in range(count):
        op, arity = data.draw(st.sampled_from(OPS))
        pool = values if before is None else [v for v in values if v < before]
        args = tuple(data.draw(st.sampled_from(pool)) for _ in range(arity))
        if before is None:
            node = graph.call_function(op, args)
        else:
            with graph.inserting_before(before):
                node = graph.call_function(op, args)
        values.append(node)
        out.append(node)
    return out


def _outputs(gm: torch.fx.GraphModule) -> list:
    gm.graph.lint()
    gm.recompile()
    return list(gm(*INPUTS))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_merge_leaves_no_equal_nodes_and_keeps_every_value(data):
    graph = torch.fx.Graph()
    values: list = [graph.placeholder("x"), graph.placeholder("y")]
    _add_nodes(data, graph, values, data.draw(st.integers(1, 16)))
    shown = data.draw(st.lists(st.sampled_from(values[2:]), min_size=1, max_size=4))
    out = graph.output(tuple(shown))
    gm = torch.fx.GraphModule(torch.nn.Module(), graph)
    want = _outputs(gm)

    cse, erased = CSE(graph, gm), set()
    cse.merge(None, erased)
    assert CSE(graph, gm).classes() == {}
    for got, w in zip(_outputs(gm), want):
        torch.testing.assert_close(got, w)

    # A rewrite's insertions: new nodes anywhere before the output (often equal to old ones,
    # or to nodes left out as the only user of their input), shown so that they stay live.
    live = [n for n in graph.nodes if n.op != "output"]
    anchor = data.draw(st.sampled_from([n for n in live if n.op != "placeholder"] + [out]))
    new = _add_nodes(data, graph, live, data.draw(st.integers(1, 6)), before=anchor)
    out.args = (tuple(out.args[0]) + tuple(new),)
    want = _outputs(gm)
    cse.merge(set(new), erased)
    assert CSE(graph, gm).classes() == {}
    assert not any(n in erased for n in graph.nodes)
    for got, w in zip(_outputs(gm), want):
        torch.testing.assert_close(got, w)


def test_a_node_left_out_comes_back_when_its_input_gains_a_user():
    """``b1`` is ``a1``'s only user when the pass reaches it, so it is left out of the table;
    merging ``a2`` into ``a1`` then gives ``a1`` a second user, ``b2``, equal to ``b1``."""
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    a1 = graph.call_function(torch.sin, (x,))
    b1 = graph.call_function(torch.neg, (a1,))
    a2 = graph.call_function(torch.sin, (x,))
    b2 = graph.call_function(torch.neg, (a2,))
    graph.output(graph.call_function(operator.add, (b1, b2)))
    cse = CSE(graph)
    assert cse.merge() == 2
    assert [n.target for n in graph.nodes if n.op == "call_function"] == [torch.sin, torch.neg,
                                                                           operator.add]
    (add,) = [n for n in graph.nodes if n.target is operator.add]
    assert add.args == (b1, b1)
