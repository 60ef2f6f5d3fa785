"""``pypm.backend(..., verify=True)`` as a checker, and what the backend hands its inner compiler.

verify runs the original graph once on copies of the inputs and the compiled graph once on the
real inputs (an input mutation happens once, as in eager mode); it compares outputs (nested,
with dtype, shape, requires_grad, NaN/inf positions, values within tolerance) and mutated
inputs; it runs whenever the pass changed the graph, CSE alone included; and it names the
culprit: CSE, the one rule whose rewrite changes the result, or the inner compiler.
"""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

import pypm
from pypm import rule
from pypm.compile.backend import RewriteWarning
from pypm.compile.verify import CULPRIT_CSE, VerifyError, clone_inputs, differences
from pypm.errors import RewriteError
from pypm.rewrite import RewritePass

P = pypm.loads(
    "def Twice(x):\n"
    "    return x * 2.0 * 0.5\n"
    "\n"
    "def Sin(x):\n"
    "    return sin(x)\n"
    "\n"
    "def Log(x):\n"
    "    return log(x)\n"
)


@rule(P.Twice, name="mul-cancel", priority=10)
def mul_cancel(x):
    return x  # exact: x * 2.0 * 0.5 == x in floating point


@rule(P.Sin, name="sin-to-cos")
def sin_to_cos(x):
    return torch.cos(x)


@rule(P.Twice, name="mul-cancel-detached")
def mul_cancel_detached(x):
    return x.detach()


@torch.library.custom_op("pypm_test_verify::sin_writing_its_input", mutates_args=())
def sin_writing_its_input(x: torch.Tensor) -> torch.Tensor:
    """Declared pure, so that no check of a rewrite can see it; writes its input all the same."""
    out = x.sin()
    x.add_(1)
    return out


@sin_writing_its_input.register_fake
def _(x):
    return torch.empty_like(x)


@rule(P.Sin, name="sin-writing-its-input")
def sin_writes(x):
    return torch.ops.pypm_test_verify.sin_writing_its_input(x)


@rule(P.Log, name="log-of-abs")
def log_of_abs(x):
    return torch.log1p(torch.abs(x) - 1)  # log |x|: NaN nowhere


@torch.library.custom_op("pypm_test_verify::fails_at_run_time", mutates_args=())
def fails_at_run_time(x: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("this kernel always fails")


@fails_at_run_time.register_fake
def _(x):
    return torch.empty_like(x)


@rule(P.Sin, name="sin-fails")
def sin_fails(x):
    return torch.ops.pypm_test_verify.fails_at_run_time(x)


@rule(P.Sin, name="sin-raises-at-rewrite")
def sin_raises(x):
    raise ValueError("a bug in the rule body")


def compile_(f, rules, inner="aot_eager", verify=True):
    torch._dynamo.reset()
    be = pypm.backend(rules=rules, inner=inner, verify=verify)
    return torch.compile(f, backend=be), be


def verify_error(f, rules, *args, inner="aot_eager") -> VerifyError:
    c, _ = compile_(f, rules, inner)
    with pytest.raises(VerifyError) as info:
        c(*args)
    assert isinstance(info.value, RewriteError)
    return info.value


# ---------------------------------------------------------------------------------------------
# Input mutation: exactly once


@pytest.mark.parametrize("inner", ["eager", "aot_eager"])
def test_mutating_program_gives_eager_result_and_mutates_once(inner):
    def f(x):
        x.add_(1)
        return x * 2.0 * 0.5 + x.sin()

    x = torch.randn(6)
    x_eager = x.clone()
    expected = f(x_eager)
    c, be = compile_(f, [mul_cancel], inner)
    out = c(x)  # the first call: verified
    assert be.reports[0].counts() == {"mul-cancel": 1}
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(x, x_eager, rtol=0, atol=0)  # mutated once, as in eager
    c(x)  # later calls run the compiled graph only
    torch.testing.assert_close(x, x_eager + 1, rtol=0, atol=0)


def test_failed_verification_still_mutates_the_input_once():
    def f(x):
        x.add_(1)
        return x * 2.0 * 0.5 + x.sin()

    x = torch.randn(6)
    x0 = x.clone()
    verify_error(f, [mul_cancel, sin_to_cos], x)
    torch.testing.assert_close(x, x0 + 1, rtol=0, atol=0)


def test_a_rule_that_mutates_an_input_is_caught():
    err = verify_error(lambda x: x.sin() + 1, [sin_writes], torch.randn(5))
    assert err.culprit == "sin-writing-its-input" and "output[0]" not in str(err)
    assert any(d.startswith("input 0") and "after the call" in d for d in err.differences), err.differences


def test_gradients_flow_through_a_verified_graph():
    def f(x, w):
        return ((x @ w) * 2.0 * 0.5).sin().sum()

    x, w = torch.randn(3, 4), torch.randn(4, 5, requires_grad=True)
    c, be = compile_(f, [mul_cancel])
    c(x, w).backward()
    assert be.reports[0].counts() == {"mul-cancel": 1}
    grad, w.grad = w.grad, None
    f(x, w).backward()
    torch.testing.assert_close(grad, w.grad)


# ---------------------------------------------------------------------------------------------
# What is compared


def test_wrong_rule_is_named():
    err = verify_error(lambda x: x.sin() + 1, [sin_to_cos], torch.randn(5))
    assert err.culprit == "sin-to-cos" and err.pattern == "sin-to-cos"
    assert "output[0]: max abs diff" in str(err) and "rule sin-to-cos" in str(err)


def test_dropped_requires_grad_is_caught():
    """Caught by verify, unless the pass itself refuses the rewrite."""
    x = torch.randn(5, requires_grad=True)
    c, be = compile_(lambda x: x * 2.0 * 0.5 + 1, [mul_cancel_detached])
    try:
        c(x)
    except VerifyError as err:
        assert err.culprit == "mul-cancel-detached"
        assert "output[0]: requires_grad mismatch: False instead of True" in str(err)
    else:
        assert be.reports[0].counts() == {} or be.errors, "a rewrite that drops requires_grad went through"
    assert x.grad is None and x.is_leaf


def test_requires_grad_dropped_by_the_inner_compiler_is_caught():
    def detaching(gm, example_inputs):
        return lambda *args: tuple(o.detach() for o in gm(*args))

    x = torch.randn(5, requires_grad=True)
    err = verify_error(lambda x: x * 2.0 * 0.5 + 1, [mul_cancel], x, inner=detaching)
    assert err.culprit == "inner compiler"
    assert err.differences == ["output[0]: requires_grad mismatch: False instead of True"]


def test_nan_position_change_is_caught():
    x = torch.tensor([1.0, 2.0, -3.0, 4.0, -5.0])
    err = verify_error(lambda x: x.log() * 3, [log_of_abs], x)
    assert err.culprit == "log-of-abs"
    assert "NaN mismatch at index [2]" in str(err) and "(2 position(s))" in str(err)
    assert "max abs diff" not in str(err)  # the finite values agree


def test_inf_positions_are_compared_exactly():
    e = torch.tensor([1.0, float("inf"), float("-inf"), float("nan")])
    assert differences(e, e.clone()) == []
    (d,) = differences(e, torch.tensor([1.0, float("-inf"), float("-inf"), float("nan")]))
    assert "+inf mismatch at index [1]" in d and "-inf mismatch at index [1]" in d


def test_nested_outputs_are_compared_by_path():
    t = torch.ones(3)
    expected = {"a": t, "b": (t, [t, 2]), "c": "s"}
    assert differences(expected, {"a": t.clone(), "b": (t.clone(), [t.clone(), 2]), "c": "s"}) == []
    found = differences(expected, {"a": t.double(), "b": (t, [t * 2, 3]), "c": "s"})
    assert found[0] == "output['a']: dtype torch.float64 instead of torch.float32"
    assert found[1].startswith("output['b'][1][0]: max abs diff 1 at index [0]")
    assert found[2] == "output['b'][1][1]: 3 instead of 2"
    assert differences({"a": t}, {"b": t}) == ["output: keys [\"'b'\"] instead of [\"'a'\"]"]
    assert differences((t, t), [t]) == ["output: 1 elements instead of 2"]


def test_dict_and_tuple_outputs_end_to_end():
    def f(x):
        return {"a": x * 2.0 * 0.5, "b": (x + 1, x.sin())}

    x = torch.randn(4)
    c, _ = compile_(f, [mul_cancel])
    out = c(x)
    torch.testing.assert_close(out["b"][1], x.sin())
    err = verify_error(f, [mul_cancel, sin_to_cos], x)
    assert err.culprit == "sin-to-cos"
    assert [d.split(":")[0] for d in err.differences] == ["output[2]"]  # dynamo's flat outputs


@pytest.mark.parametrize("expected, actual, found", [
    (torch.tensor(1.0), torch.tensor(2.0), "max abs diff 1 at index []"),
    (torch.tensor([1 + 1j, 2j]), torch.tensor([1 + 1j, 3j]), "max abs diff 1 at index [1, 1]"),
    (torch.ones(3).to(torch.float8_e4m3fn), torch.full((3,), 2.0).to(torch.float8_e4m3fn), "rtol=0.25"),
    (torch.ones(2, 3).to_sparse(), (2 * torch.ones(2, 3)).to_sparse(), "6 element(s) beyond"),
    (torch.ones(3, dtype=torch.bfloat16), torch.full((3,), 1.01, dtype=torch.bfloat16), None),
    (torch.tensor([float("nan"), 1.0]), torch.tensor([float("nan"), 1.0]), None),
])
def test_values_of_every_kind_of_tensor(expected, actual, found):
    got = differences(expected, actual)
    assert (got == []) if found is None else (len(got) == 1 and found in got[0]), got


def test_integer_outputs_compare_exactly():
    (d,) = differences(torch.tensor([1, 2, 3]), torch.tensor([1, 5, 3]))
    assert d == "output: 1 element(s) differ, first at index [1]: 5 instead of 2"


# ---------------------------------------------------------------------------------------------
# Culprits


def test_multiple_rules_name_the_wrong_one():
    def f(x):
        return x * 2.0 * 0.5 + x.sin() + x.log()

    x = torch.rand(5) + 0.5
    c, be = compile_(f, [mul_cancel, log_of_abs], "aot_eager")
    torch.testing.assert_close(c(x), f(x))  # both correct on positive inputs
    assert be.reports[0].counts() == {"mul-cancel": 1, "log-of-abs": 1}
    # mul-cancel comes first in priority and in the report; sin-to-cos is the wrong one.
    err = verify_error(f, [mul_cancel, log_of_abs, sin_to_cos], x)
    assert err.culprit == "sin-to-cos"
    assert "rules applied:" in str(err) and "mul-cancel (1)" in str(err)


def test_rewritten_graph_that_raises_is_a_verify_error():
    x = torch.randn(5)
    err = verify_error(lambda x: x.sin() + 1, [mul_cancel, sin_fails], x)
    assert err.culprit == "sin-fails"
    assert "raised RuntimeError: this kernel always fails" in str(err)
    assert isinstance(err.__cause__, RuntimeError)


def _wrong_merge(graph: torch.fx.Graph) -> int:
    """A deliberately wrong CSE merge: every ``cos(x)`` becomes the ``sin(x)`` of the same x."""
    sins = {n.args[0]: n for n in graph.nodes if "sin" in str(n.target) and n.args}
    removed = 0
    for n in list(graph.nodes):
        if "cos" in str(n.target) and n.args and n.args[0] in sins and sins[n.args[0]] < n:
            n.replace_all_uses_with(sins[n.args[0]])
            graph.erase_node(n)
            removed += 1
    return removed


@pytest.fixture
def wrong_cse(monkeypatch):
    """pypm's CSE (the pass's and ``pypm.graph.cse``) with one wrong merge added."""
    cse_module = importlib.import_module("pypm.graph.cse")
    merge = cse_module.CSE.merge

    def wrong(self, *args, **kwargs):
        return merge(self, *args, **kwargs) + _wrong_merge(self.graph)

    monkeypatch.setattr(cse_module.CSE, "merge", wrong)


def test_cse_difference_is_blamed_on_cse_not_on_the_rule(wrong_cse):
    def f(x):
        return x * 2.0 * 0.5 + x.sin() * x.cos()

    err = verify_error(f, [mul_cancel], torch.randn(5))
    assert err.culprit == CULPRIT_CSE and err.pattern is None
    assert "culprit: common-subexpression elimination" in str(err)
    assert "rules applied: mul-cancel (1)" in str(err)


def test_cse_only_change_is_verified(wrong_cse):
    def f(x):
        return x.sin() * x.cos()

    err = verify_error(f, [mul_cancel], torch.randn(5))  # the rule does not fire; CSE changes the graph
    assert err.culprit == CULPRIT_CSE and "rules applied: none" in str(err)


def test_inner_compiler_is_blamed_when_the_rewritten_graph_agrees():
    def broken_inner(gm, example_inputs):
        return lambda *args: tuple(o + 1 for o in gm(*args))

    err = verify_error(lambda x: x * 2.0 * 0.5 + 1, [mul_cancel], torch.randn(3), inner=broken_inner)
    assert err.culprit == "inner compiler"


# ---------------------------------------------------------------------------------------------
# What the inner compiler receives


def recording(graphs, base="eager"):
    from pypm.compile.backend import _inner_compiler

    inner = _inner_compiler(base)

    def compiler(gm, example_inputs):
        gm.graph.lint()  # every graph an inner compiler gets is well formed
        graphs.append([(n.op, str(n.target)) for n in gm.graph.nodes] + [gm.code.count(".sin()")])
        return inner(gm, example_inputs)

    return compiler


@pytest.mark.parametrize("base", ["eager", "aot_eager"])
def test_no_rules_is_the_inner_compiler_alone(base):
    def f(x, y):
        a = (x @ y).sin()
        b = (x @ y).sin()  # a common subexpression that pypm's CSE would merge
        return a * b + x.exp().sum(), b.cos()

    x, y = torch.randn(8, 8), torch.randn(8, 8)
    alone, with_pypm = [], []
    torch._dynamo.reset()
    out_alone = torch.compile(f, backend=recording(alone, base))(x, y)
    torch._dynamo.reset()
    be = pypm.backend(rules=[], inner=recording(with_pypm, base), verify=True)
    out_pypm = torch.compile(f, backend=be)(x, y)
    assert with_pypm == alone and alone[0][-1] == 2  # the same graph and code: no CSE
    for a, b in zip(out_alone, out_pypm):
        assert torch.equal(a, b)
    assert be.reports[0].counts() == {} and be.reports[0].nodes_before == be.reports[0].nodes_after


def test_cse_only_change_reaches_the_inner_compiler_as_code():
    """A pass that only merged common subexpressions changed the graph: the module's code is
    regenerated, so that the inner compiler runs what the graph says (dynamo's modules generate
    their code lazily anyway; a traced module has its code already)."""
    gm = torch.fx.symbolic_trace(lambda x: x.sin() + x.sin())
    assert gm.code.count(".sin()") == 2
    codes = []
    be = pypm.backend(rules=[mul_cancel], inner=recording(codes))
    x = torch.randn(4)
    compiled = be(gm, [x])
    torch.testing.assert_close(compiled(x), 2 * x.sin())
    assert be.reports[0].counts() == {} and codes[0][-1] == 1 and len(gm.graph.nodes) == 4


def test_rule_body_raising_does_not_fail_torch_compile():
    def f(x):
        return x * 2.0 * 0.5 + x.sin()

    original, received = [], []
    torch._dynamo.reset()
    torch.compile(f, backend=recording(original))(torch.randn(4))
    torch._dynamo.reset()
    be = pypm.backend(rules=[mul_cancel, sin_raises], inner=recording(received), verify=True)
    x = torch.randn(4)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = torch.compile(f, backend=be)(x)
    torch.testing.assert_close(out, f(x))
    if be.errors:  # the pass raised: the graph as dynamo made it, and a warning
        assert received == original and any(issubclass(m.category, RewriteWarning) for m in w)
        assert "a bug in the rule body" in str(be.errors[0])
    else:  # the pass recorded the failure and went on
        assert be.reports[0].counts() == {"mul-cancel": 1}


def test_failed_pass_hands_over_the_graph_as_dynamo_made_it(monkeypatch):
    """Whatever state a failing pass leaves the graph in, the inner compiler gets dynamo's."""
    apply = RewritePass.apply

    def apply_then_fail(self, gm, example_inputs=None):
        apply(self, gm, example_inputs)  # mul-cancel rewrites the graph
        out = next(n for n in gm.graph.nodes if n.op == "output")
        with gm.graph.inserting_before(out):
            gm.graph.call_function(torch.neg, (out.args[0][0],))  # a half-built node
        raise RuntimeError("the pass broke down")

    monkeypatch.setattr(RewritePass, "apply", apply_then_fail)

    def f(x):
        return x * 2.0 * 0.5 + x.sin()

    original, received = [], []
    torch._dynamo.reset()
    torch.compile(f, backend=recording(original, "aot_eager"))(torch.randn(4))
    be = pypm.backend(rules=[mul_cancel], inner=recording(received, "aot_eager"), verify=True)
    torch._dynamo.reset()
    x = torch.randn(4)
    with pytest.warns(RewriteWarning, match="the pass broke down"):
        out = torch.compile(f, backend=be)(x)
    torch.testing.assert_close(out, f(x))
    assert received == original and [str(e) for e in be.errors] == ["the pass broke down"]
    assert be.reports[0].counts() == {}


def test_inductor_pass_with_a_raising_rule_does_not_fail_the_compilation():
    from torch._inductor import config

    mod = pypm.loads("def Sin(x):\n    return aten.sin(x)\n")

    @rule(mod.Sin, name="aten-sin-raises")
    def raises(x):
        raise ValueError("a bug in the rule body")

    p = pypm.inductor_pass([raises])
    torch._dynamo.reset()
    x = torch.randn(8)
    with config.patch(post_grad_custom_pre_pass=p, force_disable_caches=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", RewriteWarning)
        y = torch.compile(lambda x: torch.sin(x) * 2)(x)
    torch.testing.assert_close(y, torch.sin(x) * 2)
    assert len(p.reports) == 1


def test_inductor_pass_that_fails_keeps_the_compilation_going(monkeypatch):
    from torch._inductor import config

    def fail(self, graph, example_inputs=None):
        raise RuntimeError("the pass broke down")

    monkeypatch.setattr(RewritePass, "apply", fail)
    p = pypm.inductor_pass([mul_cancel])
    torch._dynamo.reset()
    x = torch.randn(8)
    with config.patch(post_grad_custom_pre_pass=p, force_disable_caches=True):
        with pytest.warns(RewriteWarning, match="the pass broke down"):
            y = torch.compile(lambda x: torch.sin(x) * 2)(x)
    torch.testing.assert_close(y, torch.sin(x) * 2)
    assert [str(e) for e in p.errors] == ["the pass broke down"] and len(p.reports) == 1


# ---------------------------------------------------------------------------------------------
# Copies of inputs


def test_clone_inputs_is_deep_and_keeps_aliasing_strides_and_requires_grad():
    base = torch.arange(12.0).reshape(3, 4)
    view = base[:, 1]  # a strided view of the same storage
    w = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3).t()  # non-contiguous strides
    args = [base, view, (w, {"t": t}), 3, None]
    cb, cv, (cw, d), three, none = clone_inputs(args)
    assert cb.data_ptr() != base.data_ptr()
    assert cv.untyped_storage().data_ptr() == cb.untyped_storage().data_ptr()
    cb.add_(100)  # mutating the copy of the base shows through the copy of the view only
    assert torch.equal(cv, view + 100) and torch.equal(base, torch.arange(12.0).reshape(3, 4))
    assert cw.requires_grad and cw.is_leaf and cw is not w and torch.equal(cw, w)
    assert d["t"].stride() == t.stride() and torch.equal(d["t"], t)
    assert three == 3 and none is None
