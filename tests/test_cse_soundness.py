"""CSE merges only what is equal (pypm.graph.cse, pypm.graph.effects).

A corpus of programs whose look-alike computations are not interchangeable (fresh tensors that
are written later, reads around an in-place op, views of written tensors, ``out=``, setitem,
grad mode, autocast, inference mode, random draws, unknown calls), each compiled through
pypm's backend (the pass runs, CSE included; no rule fires) with the eager and aot_eager inner
compilers, static and dynamic shapes, and compared with eager PyTorch: outputs (values, dtypes,
``requires_grad``), inputs and buffers after the call, gradients for training programs, and
random draws (the same seed gives the same draws, and two draws stay two).

Then graph-level tests: what CSE must still merge (pure duplicates, in torch and ATen graphs,
in one grad-mode region), what it must not, the virtual CSE of the term view, and the
incremental CSE of a rewrite pass next to a written tensor.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

import pypm
from pypm import rule
from pypm.graph import CSE, GraphView, cse, is_impure
from pypm.rewrite import RewritePass

# A rule that never fires: with it the backend runs the whole pass (CSE first) and changes the
# graph by CSE alone. (With rules=[] the backend hands the graph on untouched.)
_NEVER = pypm.loads("def Never(x):\n    return aten.hardswish(aten.hardswish(x))\n")


@rule(_NEVER.Never, name="never")
def never(x):
    return None


@dataclass(frozen=True)
class Trap:
    """A program (a function, or a module factory) and its example inputs."""

    name: str
    fn: Callable[..., Any]
    inputs: Callable[[], tuple[Any, ...]]
    train: bool = False  # run a backward pass and compare gradients
    rng: bool = False  # draws random numbers: outputs ``pairs`` must differ from each other
    pairs: tuple[tuple[int, int], ...] = ((0, 1),)
    module: bool = False  # ``fn`` makes an nn.Module


TRAPS: list[Trap] = []


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def n(*shape: int, grad: bool = False) -> Callable[[], tuple[Any, ...]]:
    def make() -> tuple[Any, ...]:
        t = torch.randn(shape, generator=_gen())
        return (t.requires_grad_() if grad else t,)
    return make


def trap(inputs: Callable[[], tuple[Any, ...]], **flags: Any) -> Callable[[Any], Any]:
    def register(fn: Any) -> Any:
        TRAPS.append(Trap(fn.__name__, fn, inputs, **flags))
        return fn
    return register


# -- fresh tensors written later


@trap(n(4, 4))
def clone_then_mul_(x):
    a = x.clone()
    b = x.clone()
    a.mul_(5)
    return a, b


@trap(n(4, 4))
def sum_twice_then_add_(x):
    a = x.sum(0)
    b = x.sum(0)
    a.add_(1)
    return a, b


@trap(n(4))
def zeros_setitem(x):
    a = torch.zeros(4, 4)
    b = torch.zeros(4, 4)
    a[1] = x
    return a, b


@trap(n(4, 4))
def new_zeros_setitem(x):
    a = x.new_zeros(4, 4)
    b = x.new_zeros(4, 4)
    a[0] = x[0]
    return a + 0, b


@trap(n(4, 4))
def zeros_like_iadd(x):
    a = torch.zeros_like(x)
    b = torch.zeros_like(x)
    a += x
    return a, b


@trap(n(4, 4))
def empty_strided_fill_(x):
    a = torch.empty_strided((4, 4), (4, 1))
    b = torch.empty_strided((4, 4), (4, 1))
    a.fill_(1.0)
    b.fill_(2.0)
    return a + x, b + x


@trap(n(3))
def full_index_put_(x):
    a = torch.full((3,), 2.0)
    b = torch.full((3,), 2.0)
    a.index_put_((torch.tensor([0, 2]),), x[:2], accumulate=True)
    return a, b


@trap(n(2))
def arange_setitem(x):
    a = torch.arange(6.0)
    b = torch.arange(6.0)
    a[0] = 100.0
    return a, b + x.sum()


@trap(n(4))
def out_variants(x):
    a = torch.empty(4)
    b = torch.empty(4)
    torch.add(x, 1, out=a)
    torch.add(x, 2, out=b)
    return a, b


@trap(n(4, 4))
def out_into_an_existing_value(x):
    a = x * 2
    p = a.exp()
    torch.mul(x, 3, out=a)
    q = a.exp()
    return p, q


# -- reads around a write


@trap(n(4, 4))
def read_around_input_add_(y):
    p = y + 1
    y.add_(1)
    q = y + 1
    return p, q


@trap(n(4, 4))
def read_around_intermediate_add_(x):
    y = x * 2
    p = y + 1
    y.add_(1)
    q = y + 1
    return p, q


@trap(n(4, 4))
def read_around_iadd(x):
    y = x * 3
    p = y.exp()
    y += 1
    q = y.exp()
    return p, q


@trap(n(4, 4))
def read_around_copy_(x):
    y = x.clone()
    a = y.sum()
    y.copy_(x * 2)
    b = y.sum()
    return a, b


@trap(n(3, 4))
def read_around_setitem_slice(x):
    y = x.clone()
    a = y + 1
    y[:, :2] = 0
    b = y + 1
    return a, b


@trap(n(3, 4))
def read_around_relu_inplace(x):
    y = x * 1
    a = y.sigmoid()
    F.relu(y, inplace=True)
    b = y.sigmoid()
    return a, b


# -- writes through views


@trap(n(4, 4))
def write_through_view(x):
    y = x * 1
    p = y + 0
    y.view(-1).add_(1)
    q = y + 0
    return p, q


@trap(n(4, 4))
def write_through_view_of_input(x):
    p = x + 0
    x.view(-1).add_(1)
    q = x + 0
    return p, q


@trap(n(3, 4))
def write_through_detach(x):
    p = x + 1
    x.detach().mul_(3)
    q = x + 1
    return p, q


@trap(n(3, 4))
def write_through_row(x):
    y = x.clone()
    a = y.sum()
    y[0].sigmoid_()
    b = y.sum()
    return a, b


@trap(n(3, 4))
def write_through_transpose_then_read_view(x):
    y = x.clone()
    a = y.t().sum(0)
    y.t()[0].zero_()
    b = y.t().sum(0)
    return a, b


@trap(n(3, 4))
def write_to_one_of_two_views(x):
    y = x.clone()
    a = y.view(12)
    b = y.view(12)
    a.mul_(2)
    return a.sum(), b.sum(), y


@trap(n(3, 4))
def transpose_in_place(x):
    y = x.clone()
    a = y + 0
    y.t_()
    b = y + 0
    return a, b


@trap(n(3, 4))
def unsqueeze_in_place(x):
    y = x.clone()
    a = y * 2
    y.unsqueeze_(0)
    b = y * 2
    return a, b


@trap(lambda: (torch.randn(4, 4, generator=_gen()), torch.randn(4, 4, generator=_gen())))
def write_to_another_input(x, z):
    a = x.sin()
    z.mul_(2)
    b = x.sin()
    return a, b


class BufferAccumulator(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("acc", torch.arange(4.0))

    def forward(self, x):
        a = self.acc + x
        self.acc.add_(x)
        b = self.acc + x
        return a, b


TRAPS.append(Trap("module_buffer_read_around_add_", BufferAccumulator, n(4), module=True))


# -- grad mode, inference mode, autocast


@trap(n(4, 4, grad=True), train=True)
def no_grad_inside_outside(x):
    a = x * 2
    with torch.no_grad():
        b = x * 2
    return a, b


@trap(n(4, 4, grad=True), train=True)
def no_grad_first(x):
    with torch.no_grad():
        b = x * 2
    a = x * 2
    return a, b


@trap(n(4, 4, grad=True), train=True)
def set_grad_enabled_false(x):
    a = x.exp()
    with torch.set_grad_enabled(False):
        b = x.exp()
    return a, b


@trap(n(4, 4, grad=True), train=True)
def enable_grad_inside_no_grad(x):
    with torch.no_grad():
        a = x * 2
        with torch.enable_grad():
            b = x * 2
    return a, b


@trap(n(4, 4, grad=True), train=True)
def attention_inside_and_outside_no_grad(x):
    q = x.view(1, 1, 4, 4)
    a = torch.softmax(q @ q.transpose(-2, -1) * 0.5, -1) @ q
    with torch.no_grad():
        b = torch.softmax(q @ q.transpose(-2, -1) * 0.5, -1) @ q
    return a, b


@trap(n(4, 4, grad=True))
def inference_mode_inside_outside(x):
    a = x * 2
    with torch.inference_mode():
        b = x * 2
    return a, b


def _xw() -> tuple[Any, ...]:
    g = _gen()
    return torch.randn(4, 8, generator=g), torch.randn(8, 4, generator=g)


@trap(_xw)
def autocast_matmul(x, w):
    a = x @ w
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = x @ w
    return a, b


@trap(_xw)
def autocast_matmul_first(x, w):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = x @ w
    a = x @ w
    return a, b


@trap(_xw)
def autocast_disabled_inside(x, w):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = x @ w
        with torch.autocast("cpu", enabled=False):
            b = x @ w
    return a, b


# -- random draws


@trap(n(4, 16), rng=True)
def dropout_twice(x):
    return F.dropout(x, 0.5, training=True), F.dropout(x, 0.5, training=True)


@trap(n(2, 6, 4), rng=True)
def dropout1d_twice(x):
    return F.dropout1d(x, 0.5, training=True), F.dropout1d(x, 0.5, training=True)


@trap(n(4, 16), rng=True)
def rrelu_training_twice(x):
    return F.rrelu(x, training=True), F.rrelu(x, training=True)


@trap(n(4, 4), rng=True)
def rand_like_twice(x):
    return torch.rand_like(x), torch.rand_like(x)


@trap(n(4, 4), rng=True)
def uniform_in_place_twice(x):
    return torch.empty_like(x).uniform_(), torch.empty_like(x).uniform_()


@trap(n(4, 4), rng=True)
def normal_twice(x):
    return torch.normal(x, 1.0), torch.normal(x, 1.0)


@trap(n(1, 2, 4, 8), rng=True)
def attention_with_dropout_twice(x):
    return (F.scaled_dot_product_attention(x, x, x, dropout_p=0.5),
            F.scaled_dot_product_attention(x, x, x, dropout_p=0.5))


class DropoutTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(x), self.drop(x)


TRAPS.append(Trap("dropout_module_twice", DropoutTwice, n(4, 16), rng=True, module=True))


# -- outputs that must stay two tensors


@trap(n(4))
def equal_outputs_stay_two_tensors(x):
    return x + 1, x + 1


# ---------------------------------------------------------------------------------------------


def _clone(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.detach().clone().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor)
                 else v for v in values)


def _assert_same(got: Any, want: Any, where: str) -> None:
    if isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{where}[{i}]")
        return
    if not isinstance(want, torch.Tensor):
        assert got == want, where
        return
    assert isinstance(got, torch.Tensor), where
    assert (got.dtype, got.shape, got.requires_grad) == (want.dtype, want.shape, want.requires_grad), \
        f"{where}: {got.dtype} {tuple(got.shape)} requires_grad={got.requires_grad}, eager " \
        f"{want.dtype} {tuple(want.shape)} requires_grad={want.requires_grad}"
    torch.testing.assert_close(got.detach(), want.detach(), equal_nan=True, msg=where)


def _run(t: Trap, compile_with: Any) -> tuple[Any, tuple[Any, ...], Any, list[Any]]:
    """Outputs, inputs after the call, module state and gradients of one run."""
    torch.manual_seed(0)
    fn: Any = t.fn() if t.module else t.fn
    inputs = _clone(t.inputs())
    call = compile_with(fn) if compile_with is not None else fn
    torch.manual_seed(1)
    out = call(*inputs)
    grads: list[Any] = []
    if t.train:
        outs = [o for o in out if isinstance(o, torch.Tensor) and o.requires_grad]
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
        grads = [x.grad for x in inputs if isinstance(x, torch.Tensor)]
    state = dict(fn.state_dict()) if t.module else None
    return out, inputs, state, grads


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("inner", ["eager", "aot_eager"])
@pytest.mark.parametrize("t", TRAPS, ids=[t.name for t in TRAPS])
def test_trap_computes_what_eager_computes(t: Trap, inner: str, dynamic: bool) -> None:
    torch._dynamo.reset()
    backend = pypm.backend(rules=[never], inner=inner)
    want = _run(t, None)
    got = _run(t, lambda fn: torch.compile(fn, backend=backend, dynamic=dynamic))
    assert backend.reports, "the pass did not run"
    _assert_same(got[0], want[0], "output")
    _assert_same(got[1], want[1], "inputs after the call")
    if t.module:
        _assert_same(tuple(got[2].values()), tuple(want[2].values()), "module state")
    for i, (g, w) in enumerate(zip(got[3], want[3])):
        assert (g is None) == (w is None), f"grad {i}"
        if w is not None:
            torch.testing.assert_close(g, w, msg=f"grad {i}")
    if t.rng:
        for i, j in t.pairs:
            assert not torch.equal(got[0][i], got[0][j]), f"draws {i} and {j} are one draw"
    if t.name == "equal_outputs_stay_two_tensors":
        assert got[0][0] is not got[0][1]


# ---------------------------------------------------------------------------------------------
# Graph level


def dynamo_graph(fn: Callable[..., Any], *inputs: Any) -> torch.fx.GraphModule:
    """The graph dynamo makes of ``fn`` (one graph, no break)."""
    graphs: list[torch.fx.GraphModule] = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, backend=capture, fullgraph=True)(*_clone(inputs))
    (gm,) = graphs
    return gm


def count(gm: torch.fx.GraphModule, name: str) -> int:
    view = GraphView(gm, cse=False)
    return sum(view.op_name(node) == name for node in gm.graph.nodes)


def test_pure_duplicates_still_merge():
    def f(q, k):
        a = q.sigmoid() + torch.sigmoid(q)
        s1 = q @ k.T
        s2 = q @ k.T
        return a, s1.softmax(-1) + s2.softmax(-1)

    q, k = torch.randn(4, 8), torch.randn(4, 8)
    gm = dynamo_graph(f, q, k)
    assert cse(gm) == 4  # sigmoid, the transpose, the matmul, the softmax
    gm.recompile()
    assert count(gm, "sigmoid") == count(gm, "matmul") == count(gm, "softmax") == 1
    _assert_same(gm(q, k), f(q, k), "merged graph")


def test_pure_factories_and_views_merge_when_nothing_writes_them():
    def f(x):
        m1 = torch.ones(4, 4).tril()
        m2 = torch.ones(4, 4).tril()
        return x.view(16).sum() + x.view(16).sum(), x.masked_fill(m1 == 0, 0) + x.masked_fill(m2 == 0, 0)

    x = torch.randn(4, 4)
    gm = dynamo_graph(f, x)
    assert cse(gm) >= 5  # ones, tril, eq, masked_fill, view, sum
    gm.recompile()
    _assert_same(gm(x), f(x), "merged graph")


def test_duplicates_in_one_grad_mode_region_merge_and_across_regions_do_not():
    def f(x):
        with torch.no_grad():
            a = x * 2
            b = x * 2
        c = x * 2
        return a + b, c

    x = torch.randn(3, requires_grad=True)
    gm = dynamo_graph(f, x)
    assert cse(gm) == 1  # a and b; c runs with grad enabled
    assert count(gm, "mul") == 2


def test_duplicates_before_and_after_an_autocast_region_merge():
    """Leaving autocast restores the state before it: nodes on both sides are one value."""
    def f(x, w):
        a = x @ w
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b = x @ w
        c = x @ w
        return a.sum() + c.sum(), b

    x, w = _xw()
    gm = dynamo_graph(f, x, w)
    assert cse(gm) == 2  # the matmul and its sum
    assert count(gm, "matmul") == 2
    gm.recompile()
    _assert_same(gm(x, w), f(x, w), "merged graph")


@pytest.mark.parametrize("t", [t for t in TRAPS if not t.module and not t.train and not t.rng],
                         ids=lambda t: t.name)
def test_cse_of_the_dynamo_graph_keeps_what_the_program_computes(t: Trap) -> None:
    """The graph-level view of the corpus: CSE of each dynamo graph, run as it is."""
    inputs = t.inputs()
    gm = dynamo_graph(t.fn, *inputs)
    cse(gm)
    gm.recompile()
    mine, theirs = _clone(inputs), _clone(inputs)
    _assert_same(gm(*mine), t.fn(*theirs), "merged graph")
    _assert_same(mine, theirs, "inputs after the call")


def _count_merged(fn: Callable[..., Any], *inputs: Any) -> int:
    return cse(torch.fx.symbolic_trace(fn)) if not inputs else cse(dynamo_graph(fn, *inputs))


def test_refusals_at_graph_level():
    x = torch.randn(4, 4)
    assert _count_merged(clone_then_mul_, x) == 0
    assert _count_merged(read_around_intermediate_add_, x) == 0
    assert _count_merged(write_through_view, x) == 0
    assert _count_merged(lambda x: (x + 1, x + 1)) == 0  # both outputs
    assert _count_merged(lambda x: ((x + 1) * (x + 1),)) == 1


def _log(x):
    return x * 2


torch.fx.wrap("_log")


def test_an_unknown_call_is_never_merged_and_ends_the_region():
    def f(x):
        a = x.sigmoid()
        _log(x)
        b = x.sigmoid()
        return (a * b,)

    gm = torch.fx.symbolic_trace(f)
    assert cse(gm) == 0
    gm = torch.fx.symbolic_trace(lambda x: (_log(x) * _log(x),))
    assert cse(gm) == 0


def test_impurity_comes_from_an_allow_list():
    gm = torch.fx.symbolic_trace(lambda x: (_log(x), x.sigmoid(), x.add_(1), F.relu(x, inplace=True),
                                            F.relu(x), x.item(), torch.empty_like(x), torch.zeros_like(x),
                                            F.dropout(x, 0.5, True), F.dropout(x, 0.5, False)))
    verdict = {node.name: is_impure(node, None, gm) for node in gm.graph.nodes if node.op != "output"}
    assert verdict == {"x": True, "_log": True, "sigmoid": False, "add_": True, "relu": True,
                       "relu_1": False, "item": True, "empty_like": True, "zeros_like": False,
                       "dropout": True, "dropout_1": False}


def test_aten_graphs_use_schemas_and_tags():
    from torch.fx.experimental.proxy_tensor import make_fx

    def f(x):
        a = torch.ops.aten.mul.Tensor(x, 2)
        b = torch.ops.aten.mul.Tensor(x, 2)
        r1 = torch.ops.aten.rand.default([3])
        r2 = torch.ops.aten.rand.default([3])
        e1 = torch.ops.aten.empty.memory_format([3])
        e2 = torch.ops.aten.empty.memory_format([3])
        y = torch.ops.aten.clone.default(x)
        p = torch.ops.aten.exp.default(y)
        torch.ops.aten.add_.Tensor(y, 1)
        q = torch.ops.aten.exp.default(y)
        return a, b, r1 + r2, e1.fill_(1) + e2.fill_(2), p, q

    gm = make_fx(f)(torch.randn(3))
    before = [node.target for node in gm.graph.nodes]
    assert cse(gm) == 0  # a, b both outputs; random; empty; exp around a write
    assert [node.target for node in gm.graph.nodes] == before

    def g(x):
        a = torch.ops.aten.mul.Tensor(x, 2)
        b = torch.ops.aten.mul.Tensor(x, 2)
        return torch.ops.aten.add.Tensor(a, b)

    gm = make_fx(g)(torch.randn(3))
    assert cse(gm) == 1


def test_the_term_view_uses_the_same_equality():
    twice = pypm.loads("def Twice(x):\n    return x + x\n").Twice

    def written(x):
        a = x.sigmoid()
        b = x.sigmoid()
        a.mul_(2)
        return (a + b,)

    def pure(x):
        return (x.sigmoid() + x.sigmoid(),)

    assert pypm.match(twice, torch.fx.symbolic_trace(written)) == []
    (m,) = pypm.match(twice, torch.fx.symbolic_trace(pure))
    assert m["x"].op == "sigmoid"


_TANH = pypm.loads("def Tanh(x):\n    return tanh(x)\n")


@rule(_TANH.Tanh, name="tanh-as-sigmoid")
def tanh_as_sigmoid(x):
    return 2 * torch.sigmoid(x * 2) - 1


def test_a_rewrite_next_to_a_written_tensor():
    """The rule's body computes ``sigmoid(x * 2)``, equal to ``s``, which is then scaled in
    place: the incremental CSE of the pass must not merge the new node into ``s``."""
    def f(x):
        s = torch.sigmoid(x * 2)
        s.mul_(3)
        return s, torch.tanh(x)

    gm = torch.fx.symbolic_trace(f)
    x = torch.randn(5)
    report = RewritePass([tanh_as_sigmoid]).apply(gm, (x,))
    assert report.counts() == {"tanh-as-sigmoid": 1}
    _assert_same(gm(x.clone()), f(x.clone()), "rewritten graph")
    assert count(gm, "sigmoid") == 2


def test_incremental_merge_refuses_a_node_that_became_written():
    """A writer inserted later (a rule body that writes its own temporary) blocks what it
    writes from then on."""
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    a = graph.call_function(torch.neg, (x,))
    out = graph.output((graph.call_function(operator.mul, (a, 2)),))
    gm = torch.fx.GraphModule(nn.Module(), graph)
    c = CSE(graph, gm)
    c.merge()
    with graph.inserting_before(out):
        b = graph.call_function(torch.neg, (x,))
        w = graph.call_method("add_", (b, 1))
        s = graph.call_function(operator.add, (a, w))
    out.args = ((out.args[0][0], s),)
    assert c.merge({b, w, s}, set()) == 0
    gm.recompile()
    x0 = torch.randn(3)
    _assert_same(gm(x0), ((-x0) * 2, -x0 + (-x0 + 1)), "merged graph")
