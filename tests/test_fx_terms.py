"""The term view of fx graphs: canonical names, schema-normalised arguments, types, CSE."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import pypm
from pypm.graph import GraphView, cse, match_graph, propagate_types
from pypm.lang.syntax import Definition, Lit, Op, Var

X = torch.randn(2, 3, 4, 4)


def terms(fn, *inputs):
    gm = torch.fx.symbolic_trace(fn)
    if inputs:
        propagate_types(gm, inputs)
    view = GraphView(gm)
    return gm, [view.term(n) for n in gm.graph.nodes if n.op not in ("placeholder", "output")]


@pytest.mark.parametrize("fn", [lambda x, y: x @ y, lambda x, y: torch.matmul(x, y),
                                lambda x, y: x.matmul(y)])
def test_matmul_spellings_are_one_operator(fn):
    _, (t,) = terms(fn, X, X)
    assert t.op == "matmul" and [a.node.name for a in t.args] == ["x", "y"]


@pytest.mark.parametrize("fn", [lambda x: x.softmax(-1), lambda x: torch.softmax(x, dim=-1),
                                lambda x: F.softmax(x, -1), lambda x: F.softmax(x, dim=3)])
def test_softmax_spellings_are_one_operator_with_dim_minus_one(fn):
    _, ts = terms(fn, X)
    (t,) = [t for t in ts if t.op == "softmax"]
    assert t.args[1:] == (-1, None)


def test_softmax_module_call_is_softmax():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.sm = nn.Softmax(dim=-1)

        def forward(self, x):
            return self.sm(x)

    _, (t,) = terms(M(), X)
    assert t.op == "softmax" and t.args[1] == -1


def test_linear_module_is_linear_with_parameter_terms():
    m = nn.Sequential(nn.Linear(4, 5))
    _, (t,) = terms(m, torch.randn(2, 4))
    assert t.op == "linear" and t.args[1].op == "get_attr" and t.args[1].shape == (5, 4)


def test_python_operators_and_methods():
    _, ts = terms(lambda x: (x / 2.0, x * 3, 0.5 * x, -x, x - 1, x.transpose(2, 3), x.permute(0, 1, -1, -2),
                             x.view(2, 3, 16), x.reshape((6, 16))), X)
    ops = [(t.op, t.args[1:]) for t in ts]
    assert ("div", (2.0, None)) in ops and ("mul", (3,)) in ops and ("neg", ()) in ops
    assert ("sub", (1, 1)) in ops and ("transpose", (-2, -1)) in ops
    assert ("permute", ((0, 1, 3, 2),)) in ops and ("view", ((2, 3, 16),)) in ops
    assert ("reshape", ((6, 16),)) in ops
    assert any(t.op == "mul" and t.args[0] == 0.5 for t in ts)


def test_dtype_methods_are_to():
    gm, ts = terms(lambda x: (x.bool(), x.half(), x.to(torch.float16)), X)
    assert cse(gm) == 0  # same canonical name, different dtypes
    assert [(t.op, t.args[1]) for t in ts] == [("to", torch.bool), ("to", torch.float16),
                                               ("to", torch.float16)]


def test_types_come_from_meta():
    _, (t,) = terms(lambda x: x.to(torch.float16), X)
    assert t.shape == (2, 3, 4, 4) and t.dtype == torch.float16 and t.ndim == 4


def test_aten_graph_terms_use_schema_names():
    from torch.fx.experimental.proxy_tensor import make_fx

    gm = make_fx(lambda a, b: torch.softmax(torch.bmm(a, b), -1))(torch.randn(2, 3, 3), torch.randn(2, 3, 3))
    view = GraphView(gm)
    ops = {view.term(n).op: view.term(n) for n in gm.graph.nodes if n.op == "call_function"}
    assert "aten.bmm" in ops and "aten._softmax" in ops
    assert ops["aten._softmax"].args[1:] == (-1, False)
    assert ops["aten._softmax"].shape == (2, 3, 3)


def test_aten_pattern_names_reach_aten_ops():
    from torch.fx.experimental.proxy_tensor import make_fx

    gm = make_fx(lambda a, b: torch.bmm(a, b).softmax(-1))(torch.randn(2, 3, 3), torch.randn(2, 3, 3))
    mod = pypm.loads("def P(a, b):\n    return torch.ops.aten._softmax(aten.bmm(a, b), -1, False)\n")
    (m,) = pypm.match(mod.P, gm)
    assert m["a"].node.name == "a_1"


def test_dynamo_symbolic_sizes_are_sympy():
    import sympy

    graphs = []

    def capture(gm, inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(lambda x: x.softmax(-1), backend=capture, dynamic=True)(torch.randn(3, 5))
    view = GraphView(graphs[0])
    (t,) = [view.term(n) for n in graphs[0].graph.nodes if view.op_name(n) == "softmax"]
    assert all(isinstance(s, sympy.Expr) and not s.is_number for s in t.shape)
    assert t.args[1] == -1


def test_cse_merges_pure_duplicates_so_equal_terms_are_identical():
    gm, ts = terms(lambda x: x.transpose(-2, -1) + x.transpose(-2, -1), X)
    add = ts[-1]
    assert add.op == "add" and add.args[0] is add.args[1]
    assert cse(gm) == 1
    assert sum(n.op == "call_method" for n in gm.graph.nodes) == 1


def test_random_ops_are_never_merged():
    gm, ts = terms(lambda x: F.dropout(x, 0.5, True) + F.dropout(x, 0.5, True), X)
    add = ts[-1]
    assert add.args[0] is not add.args[1]
    assert cse(gm) == 0


def _log(x):
    return x * 2


torch.fx.wrap("_log")


def test_calls_of_unknown_functions_are_never_merged():
    gm = torch.fx.symbolic_trace(lambda x: _log(x) + _log(x))
    assert cse(gm) == 0


def test_nonlinear_pattern_uses_identity_after_cse():
    d = Definition("Twice", ("x",), Op("add", (Var("x"), Var("x"))))
    gm = torch.fx.symbolic_trace(lambda x: torch.sigmoid(x) + x.sigmoid())
    (m,) = match_graph(d, gm)
    assert m["x"].op == "sigmoid"


def test_literal_arguments_are_checked():
    d = Definition("S", ("x",), Op("softmax", (Var("x"), Lit(-1))))
    gm = torch.fx.symbolic_trace(lambda x: x.softmax(-2) + x.softmax(-1))
    propagate_types(gm, (X,))
    (m,) = match_graph(d, gm)
    assert m.root.args[1] == -1


def test_operator_targets_map_to_canonical_names():
    from pypm.graph import function_name

    assert function_name(operator.matmul) == "matmul"
    assert function_name(operator.truediv) == "div"
    assert function_name(torch.ops.aten.mul.Tensor) == "aten.mul"
    assert function_name(F.scaled_dot_product_attention) == "scaled_dot_product_attention"


def test_aten_keyword_arguments_in_patterns_use_the_widest_overload():
    from torch.fx.experimental.proxy_tensor import make_fx

    mod = pypm.loads("def RowSum(x):\n    return aten.sum(x, dim=[-1], keepdim=True)\n")
    gm = make_fx(lambda x: x.sum(-1, keepdim=True) + x.sum(-1))(torch.randn(3, 4))
    (m,) = pypm.match(mod.RowSum, gm)
    assert m.root.args[1:3] == ((-1,), True)


def test_inserted_values_use_the_graph_fake_mode():
    """A node without tensor inputs (``aten.full``) gets an example value of the graph's own fake
    mode, and remembered values never cross modes: inductor refuses graphs that mix them."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from pypm.graph import infer_value

    modes = []
    for _ in range(2):
        g = make_fx(lambda x: x * 2, tracing_mode="fake")(torch.randn(3))
        ph = next(n for n in g.graph.nodes if n.op == "placeholder")
        mode = ph.meta["val"].fake_mode
        full = g.graph.call_function(torch.ops.aten.full.default, ([], 1.0),
                                     {"dtype": torch.float32, "device": "cpu"})
        full.meta["val"] = infer_value(full, g)
        mul = g.graph.call_function(torch.ops.aten.mul.Tensor, (ph, full))
        assert full.meta["val"].fake_mode is mode
        assert infer_value(mul, g).fake_mode is mode  # the second graph: same key, other mode
        modes.append(mode)
    assert modes[0] is not modes[1]


def test_incremental_cse_follows_merges_in_graph_order():
    """A later sweep's CSE looks only at the nodes it is told changed, in graph order, and at
    the users of what it merges: merging two equal nodes makes their users equal, and so on
    down the chain, which one pass over the changed nodes must finish."""
    from pypm.graph import CSE

    def f(x):
        a1, a2 = torch.neg(x), torch.neg(x)
        b1, b2 = torch.tanh(a1), torch.tanh(a2)
        return torch.sigmoid(b1) + torch.sigmoid(b2)

    gm = torch.fx.symbolic_trace(f)
    nodes = {n.name: n for n in gm.graph.nodes}
    cse = CSE(gm.graph, gm)
    erased: set = set()
    assert cse.merge({nodes["neg_1"]}, erased) == 0  # neg is not yet in the table
    cse.merge(None, erased)  # the full pass fills the table (and merges everything)
    gm2 = torch.fx.symbolic_trace(f)
    nodes = {n.name: n for n in gm2.graph.nodes}
    cse2 = CSE(gm2.graph, gm2)
    cse2.seen = {cse2.key(nodes["neg"], {}): nodes["neg"]}
    erased2: set = set()
    assert cse2.merge({nodes["neg_1"]}, erased2) == 1  # neg_1 only; its users are not yet known
    cse2.seen.update({cse2.key(n, {}): n for n in (nodes["tanh"], nodes["sigmoid"])})
    dirty = set(nodes["neg"].users)
    assert cse2.merge(dirty, erased2) == 2  # tanh_1, then its user sigmoid_1
    ops = [n.target for n in gm2.graph.nodes if n.op == "call_function"]
    assert ops.count(torch.neg) == ops.count(torch.tanh) == ops.count(torch.sigmoid) == 1
    gm2.graph.lint()
    gm2.recompile()
    x = torch.randn(3)
    torch.testing.assert_close(gm2(x), f(x))


def test_rewrites_work_on_graphs_annotated_by_shape_prop():
    """ShapeProp records ``TensorMetadata`` (a named tuple) where other tools record example
    values: the example value of a rule's new node is computed from it, never by rebuilding it
    as a tuple of its fields."""
    from torch.fx.passes.shape_prop import ShapeProp

    from pypm import rule
    from pypm.rewrite import RewritePass

    tanh = pypm.loads("def Tanh(x):\n    return tanh(x)\n").Tanh

    @rule(tanh, name="tanh-as-sigmoid")
    def tanh_as_sigmoid(x):
        return 2 * torch.sigmoid(x * 2) - 1

    def f(x):
        return torch.tanh(x + 1) * 3

    gm = torch.fx.symbolic_trace(f)
    x = torch.randn(4, 5)
    ShapeProp(gm).propagate(x)
    report = RewritePass([tanh_as_sigmoid]).apply(gm)
    assert report.counts() == {"tanh-as-sigmoid": 1}, report
    torch.testing.assert_close(gm(x), f(x))
