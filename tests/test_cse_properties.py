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


# Random programs with writes, views and grad-mode changes: CSE keeps every value, every
# input's final contents and every output's requires_grad. Values are 1-d tensors of 3 floats;
# ``x`` may be written, ``g`` requires grad and is never written (nor anything computed from it,
# so that autograd accepts every program).

_PURE = [("function", torch.neg, 1), ("function", torch.sin, 1), ("method", "exp", 1),
         ("function", operator.add, 2), ("function", operator.mul, 2), ("method", "clone", 1)]
_VIEWS = [("method", "view", (-1,)), ("method", "detach", ()), ("function", operator.getitem,
                                                                   (slice(None),))]
_WRITES = [("add_", 1.0), ("mul_", 2.0), ("copy_", None), ("setitem", 5.0)]


def _program(data) -> tuple[torch.fx.GraphModule, list]:
    graph = torch.fx.Graph()
    x, g = graph.placeholder("x"), graph.placeholder("g")
    values: list = [x, g]
    tainted = {g}  # values computed from g: never written, never written into another value
    grad = True
    made: list = []  # (kind, target, args) of the calls so far, to repeat some of them

    def add(kind, target, args):
        node = (graph.call_function if kind == "function" else graph.call_method)(target, args)
        values.append(node)
        made.append((kind, target, args))
        if any(a in tainted for a in args if isinstance(a, torch.fx.Node)):
            tainted.add(node)
        return node

    for _ in range(data.draw(st.integers(2, 14))):
        step = data.draw(st.sampled_from(["pure", "pure", "repeat", "view", "factory", "write", "grad"]))
        if step == "repeat" and made:
            add(*data.draw(st.sampled_from(made)))
        elif step in ("pure", "repeat"):
            kind, target, arity = data.draw(st.sampled_from(_PURE))
            add(kind, target, tuple(data.draw(st.sampled_from(values)) for _ in range(arity)))
        elif step == "view":
            kind, target, rest = data.draw(st.sampled_from(_VIEWS))
            add(kind, target, (data.draw(st.sampled_from(values)), *rest))
        elif step == "factory":
            add("function", data.draw(st.sampled_from([torch.zeros, torch.ones])), (3,))
        elif step == "write":
            free = [v for v in values if v not in tainted]
            op, arg = data.draw(st.sampled_from(_WRITES))
            target = data.draw(st.sampled_from(free))
            if op == "copy_":
                graph.call_method("copy_", (target, data.draw(st.sampled_from(free))))
            elif op == "setitem":
                graph.call_function(operator.setitem, (target, 0, arg))
            else:
                graph.call_method(op, (target, arg))
        else:
            grad = not grad
            graph.call_function(torch._C._set_grad_enabled, (grad,))
    if not grad:
        graph.call_function(torch._C._set_grad_enabled, (True,))
    shown = data.draw(st.lists(st.sampled_from(values[2:] or values), min_size=1, max_size=4))
    graph.output(tuple(shown))
    return torch.fx.GraphModule(torch.nn.Module(), graph), values


def _run_program(gm: torch.fx.GraphModule) -> tuple[list, torch.Tensor]:
    gm.graph.lint()
    gm.recompile()
    x = torch.linspace(-1.0, 1.0, 3)
    g = torch.linspace(0.5, 1.5, 3).requires_grad_()
    with torch.enable_grad():
        out = [(o.detach().clone(), o.requires_grad) for o in gm(x, g)]
    return out, x


def _same_run(got: tuple[list, torch.Tensor], want: tuple[list, torch.Tensor]) -> None:
    for (a, ra), (b, rb) in zip(got[0], want[0]):
        assert ra == rb
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(got[1], want[1])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_merge_keeps_values_next_to_writes_views_and_grad_mode(data):
    gm, values = _program(data)
    want = _run_program(gm)
    graph = gm.graph
    cse, erased = CSE(graph, gm), set()
    cse.merge(None, erased)
    assert CSE(graph, gm).classes() == {}
    _same_run(_run_program(gm), want)

    # A rewrite's insertions, a write among them now and then, merged incrementally.
    out = next(n for n in graph.nodes if n.op == "output")
    live = [n for n in values if n not in erased and n.name != "g"]
    with graph.inserting_before(out):
        new = []
        for _ in range(data.draw(st.integers(1, 4))):
            kind, target, arity = data.draw(st.sampled_from(_PURE))
            args = tuple(data.draw(st.sampled_from(live + new)) for _ in range(arity))
            new.append((graph.call_function if kind == "function" else graph.call_method)(target, args))
        if data.draw(st.booleans()):
            new.append(graph.call_method("mul_", (data.draw(st.sampled_from(new)), 3.0)))
    out.args = (tuple(out.args[0]) + tuple(new),)
    want = _run_program(gm)
    cse.merge(set(new), erased)
    _same_run(_run_program(gm), want)
