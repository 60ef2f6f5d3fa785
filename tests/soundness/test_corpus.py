"""Every program of the soundness corpus (``corpus.py``), compiled through pypm, computes what
eager PyTorch computes.

``test_corpus_matches_eager[inner-static|dynamic-case]`` compiles each program with
``torch.compile(fn, backend=pypm.backend(inner=inner), dynamic=...)`` and the standard rules,
runs it (once, or a second time on other inputs where the case gives ``again`` inputs), and
compares with eager runs on separate, equal inputs:

- every output: same Python structure, same dtype, shape and ``requires_grad``, the same NaN
  positions and the same +inf and -inf positions, the finite values within the tolerance of the
  dtype (``TOLERANCES``); non-tensor outputs equal;
- every input and every module parameter and buffer after the call (mutations included);
- for ``train`` cases, after a backward pass of a fixed random projection of the outputs, every
  ``.grad`` of the inputs and parameters (``None`` where eager has ``None``);
- where eager runs, the compiled program runs.

Programs that draw random numbers (``rng``) run with the global generator seeded the same way
in both runs. With the eager and aot_eager inner compilers torch draws from that generator in
the same order, so the values are compared as above; inductor generates its own random streams,
so there only the structure (dtypes, shapes, ``requires_grad``, ``None``-ness of grads) is
compared. In every case, two draws that differ in eager must differ when compiled.

Cases flagged ``inductor_wrong`` differ from eager under plain inductor already. With inductor
as the inner compiler, such a case asserts that plain inductor still differs from eager (the
flag stays true) and compares pypm's result with plain inductor's instead of eager's.

Which cases run with which inner compiler. ``eager`` and ``aot_eager`` run every case, static
and dynamic: a compile costs a fraction of a second. ``inductor`` generates and compiles C++ for
every graph, a few seconds per static compile and about twice that per dynamic one on a
two-core CPU (its backward graphs more), so the whole corpus would take about half an hour,
beyond the suite's budget. It runs stratified subsets instead (``INDUCTOR_STATIC``,
``INDUCTOR_DYNAMIC``): with static shapes two to eight cases of each category, picked so that
each adds a kind of trap the others do not (attention, the rule that fires on the CPU, is most
of them); with dynamic shapes one case per category, the one where symbolic sizes matter most;
and every ``inductor_wrong`` case. ``PYPM_SOUNDNESS_FULL=1`` in the environment runs inductor
on the whole corpus (the ``inductor_wrong`` flags were checked on every case with static shapes
and on the dynamic subset; a failure elsewhere with dynamic shapes may be inductor's own, to be
checked against plain inductor).

``test_inductor_pass_matches_eager`` runs a few attention cases through inductor with pypm's
rules as its post-grad pass (``pypm.inductor_pass()``), where the ATen-level attention rule
rewrites.

``test_no_rules_is_the_inner_compiler`` compiles each program with ``pypm.backend(rules=[],
inner=X)`` and with plain ``X`` (static shapes; X = eager for every case, aot_eager for the
categories in ``NO_RULES_AOT_EAGER``): with no rules pypm must hand the graph on unchanged in
meaning, so the two runs agree bit for bit (values, NaNs, mutations, gradients, random draws),
and one raises exactly where the other does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

import pypm

from .corpus import BY_NAME, CASES, CATEGORIES, CSE, MUTATION, Case

INNERS = ("eager", "aot_eager", "inductor")
SEED = 1234

# (rtol, atol) for finite floating values; integer and boolean tensors compare exactly.
Tolerances = dict[torch.dtype, tuple[float, float]]
TOLERANCES: Tolerances = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1e-4, 1e-4),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (1e-2, 1e-2),
}
EXACT = {dtype: (0.0, 0.0) for dtype in TOLERANCES}

# The inductor subsets, by category: with static shapes a few cases of each category, each
# adding something the others do not; with dynamic shapes one case per category (a dynamic
# inductor compile costs twice a static one). Every ``inductor_wrong`` case runs too.
INDUCTOR_STATIC = {
    # a clone mutated later, a fresh tensor written into, grad mode, a random draw, one attention
    # before and after its input is updated
    "cse": ["cse_clone_then_mul_", "cse_zeros_setitem", "cse_no_grad_inside_outside", "cse_dropout_twice",
            "cse_attention_twice_input_mutated"],
    # an attention input mutated by name and through an aliasing input; its scores and its mask
    # mutated; a norm input mutated midway
    "mutation": ["mut_q_after_scores", "mut_aliased_q_after_scores", "mut_scores_mul_in_place",
                 "mut_causal_mask_setitem", "mut_rms_input_midway"],
    # inductor's backward through a rewritten attention; grads that must stay None (an input that
    # does not require grad, scores under no_grad); a norm
    "gradients": ["grad_t5_bias", "grad_attention_only_q", "grad_scores_under_no_grad",
                  "grad_rms_norm_weight"],
    # the strides of a rewritten output relied upon, directly and through an elementwise op; an
    # expanded (stride 0) input
    "layout": ["layout_output_view_bh", "layout_split_heads_scaled_then_view", "layout_kv_expanded"],
    # a softmax in float32 cast back to half; bfloat16 attention; half overflow in the scores and
    # in a norm
    "casts": ["cast_llama_softmax", "cast_attention_bf16", "cast_half_scores_overflow",
              "cast_rms_half_overflow"],
    # a finite fill below the scores, fully masked rows with -inf and finfo.min, NaN inputs
    # visible and hidden by a mask, scores overflowing, a mask that changes between calls, eps=0
    "masks": ["mask_causal_fill_1e4_low_scores", "mask_fill_neg_inf_fully_masked_rows",
              "mask_finfo_min_fully_masked_rows", "mask_nan_in_q_row", "mask_nan_key_hidden_by_bool_mask",
              "mask_scores_overflow_to_neg_inf_row", "mask_input_causal_then_other",
              "mask_layer_norm_zero_variance_eps0"],
    # softmax over the wrong dim, k not transposed, a norm without eps
    "near_miss": ["near_softmax_dim_minus2", "near_k_not_transposed", "near_rms_without_eps"],
    # a Python scalar bias, a 5-d broadcast, no keys, a scale computed from a size
    "rule_body": ["body_python_scalar_bias", "body_bias_broadcast_to_5d", "body_zero_keys",
                  "body_scale_from_shape"],
    # a dict of outputs, an input mutated and returned
    "plain": ["plain_dict_output", "plain_return_mutated_input"],
}
INDUCTOR_DYNAMIC = {
    "cse": ["cse_clone_then_mul_"],
    "mutation": ["mut_q_after_scores"],
    "gradients": ["grad_t5_bias"],
    "layout": ["layout_split_heads_scaled_then_view"],
    "casts": ["cast_llama_softmax"],
    "masks": ["mask_nan_q_row_on_a_longer_call"],
    "near_miss": ["near_scale_after_softmax"],
    "rule_body": ["body_scale_from_shape"],
    "plain": ["plain_return_mutated_input"],
}


def _names(subset: dict[str, list[str]]) -> set[str]:
    return {name for names in subset.values() for name in names}


INDUCTOR_CASES = {
    False: _names(INDUCTOR_STATIC) | {c.name for c in CASES if c.inductor_wrong_when(False)},
    True: _names(INDUCTOR_DYNAMIC) | {c.name for c in CASES if c.inductor_wrong_when(True)},
}
FULL = os.environ.get("PYPM_SOUNDNESS_FULL", "") not in ("", "0")


# ---------------------------------------------------------------------------------------------
# Running a case
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    """What one run of a case produced: outputs, the inputs and module state afterwards,
    gradients (``train`` cases), or the exception it raised."""

    outputs: Any = None
    inputs_after: tuple[Any, ...] = ()
    state_after: dict[str, Any] = field(default_factory=dict)
    grads: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


def flat(x: Any) -> list[Any]:
    """The leaves of nested tuples, lists and dicts, in order."""
    if isinstance(x, (tuple, list)):
        return [y for e in x for y in flat(e)]
    if isinstance(x, dict):
        return [y for k in x for y in flat(x[k])]
    return [x]


def loss_of(outputs: Any) -> torch.Tensor | None:
    """A fixed random projection of every floating output that requires grad (non-finite
    entries contribute nothing, so one NaN does not turn every gradient into NaN)."""
    g = torch.Generator().manual_seed(1)
    total = None
    for o in flat(outputs):
        if isinstance(o, torch.Tensor) and o.requires_grad and o.is_floating_point():
            w = torch.randn(o.shape, generator=g)
            term = (torch.nan_to_num(o.float(), 0.0, 0.0, 0.0) * w).sum()
            total = term if total is None else total + term
    return total


def widened(program: Callable[..., Any]) -> Callable[..., Any]:
    """``program`` evaluated in float64: floating tensor arguments widened, floating tensor
    outputs rounded back to the dtype of the first floating argument (the inputs of the cases
    that use this share one dtype)."""
    def run64(*args: Any) -> Any:
        dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point())
        out = program(*(a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                        for a in args))
        return torch.utils._pytree.tree_map(
            lambda o: o.to(dtype) if isinstance(o, torch.Tensor) and o.is_floating_point() else o, out)
    return run64


def run(case: Case, compile_fn: Callable[[Any], Any] | None, *, float64: bool = False) -> Run:
    """Run ``case`` on fresh inputs, compiled by ``compile_fn`` (None: eager; ``float64``: eager
    in float64, see :func:`widened`); a case with ``again`` inputs is called a second time with
    them, and its outputs, inputs and gradients are those of both calls."""
    program, module = case.build()
    calls = [case.make_inputs()]
    again = case.make_again()
    if again is not None:
        calls.append(again)
    if float64:
        program = widened(program)
    if compile_fn is not None:
        program = compile_fn(program)
    result = Run()
    try:
        torch.manual_seed(SEED)
        outputs = [program(*args) for args in calls]
        result.outputs = outputs[0] if again is None else tuple(outputs)
        if case.train:
            loss = loss_of(result.outputs)
            if loss is not None:
                loss.backward()
            for j, args in enumerate(calls):
                prefix = "" if again is None else f"call {j} "
                result.grads.update({f"{prefix}input[{i}].grad": getattr(x, "grad", None)
                                     for i, x in enumerate(args) if isinstance(x, torch.Tensor)})
            if module is not None:
                result.grads.update({f"{n}.grad": p.grad for n, p in module.named_parameters()})
    except Exception as e:
        result.error = e
        return result
    result.inputs_after = calls[0] if again is None else tuple(calls)
    if module is not None:
        result.state_after = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    return result


def compiler(backend: Any, dynamic: bool) -> Callable[[Any], Any]:
    return lambda program: torch.compile(program, backend=backend, dynamic=dynamic)


# ---------------------------------------------------------------------------------------------
# Comparing runs
# ---------------------------------------------------------------------------------------------


def describe(e: BaseException) -> str:
    """The exception in one line: its type and first line; for a compiler failure that wraps
    another exception (dynamo's ``BackendCompilerFailed``), the wrapped one as well."""
    inner = getattr(e, "inner_exception", None)
    if isinstance(inner, BaseException):
        return f"{type(e).__name__} ({describe(inner)})"
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0][:200] if lines else ''}"


def _at(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0])


def tensor_differences(e: torch.Tensor, a: torch.Tensor, where: str, tolerances: Tolerances,
                       values: bool) -> list[str]:
    """What differs between eager's tensor ``e`` and the compiled ``a`` (empty: nothing)."""
    if a.dtype != e.dtype:
        return [f"{where} has dtype {a.dtype} where eager's is {e.dtype}"]
    if a.shape != e.shape:
        return [f"{where} has shape {list(a.shape)} where eager's is {list(e.shape)}"]
    if a.requires_grad != e.requires_grad:
        return [f"{where}.requires_grad is {a.requires_grad} where eager's is {e.requires_grad}"]
    if not values or e.numel() == 0:
        return []
    e, a = e.detach(), a.detach()
    if not (e.is_floating_point() or e.is_complex()):
        if torch.equal(e, a):
            return []
        bad = e != a
        i = _at(bad)
        return [f"{where}: {int(bad.sum())}/{e.numel()} values differ "
                f"(first at {i}: {a[i].item()} where eager has {e[i].item()})"]
    out = []
    for name, test in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        if e.is_complex() and name != "NaN":
            continue
        me, ma = test(e), test(a)
        if not torch.equal(me, ma):
            extra, missing = ma & ~me, me & ~ma
            parts = []
            if extra.any():
                i = _at(extra)
                parts.append(f"{name} at {int(extra.sum())} positions where eager is not (first {i}: "
                             f"eager {e[i].item():.4g})")
            if missing.any():
                i = _at(missing)
                parts.append(f"no {name} at {int(missing.sum())} positions where eager has one (first {i}: "
                             f"compiled {a[i].item():.4g})")
            out.append(f"{where}: " + "; ".join(parts))
    if out:
        return out
    finite = torch.isfinite(e)
    rtol, atol = tolerances.get(e.dtype, (0.0, 0.0))
    ef, af = e[finite].double(), a[finite].double()
    close = torch.isclose(af, ef, rtol=rtol, atol=atol)
    if bool(close.all()):
        return []
    bad = torch.zeros_like(finite)
    bad[finite] = ~close
    i = _at(bad)
    diff = (af - ef).abs().max().item()
    return [f"{where}: {int(bad.sum())}/{e.numel()} values differ, by up to {diff:.3g} "
            f"(first at {i}: {a[i].item():.6g} where eager has {e[i].item():.6g})"]


def differences(e: Any, a: Any, where: str, tolerances: Tolerances, values: bool = True) -> list[str]:
    """What differs between eager's value ``e`` and the compiled ``a``, recursively."""
    if isinstance(e, torch.Tensor):
        if not isinstance(a, torch.Tensor):
            return [f"{where} is {type(a).__name__} where eager's is a tensor"]
        return tensor_differences(e, a, where, tolerances, values)
    if isinstance(e, (tuple, list)):
        if type(a) is not type(e) or len(a) != len(e):
            return [f"{where} is {type(a).__name__} of {len(a) if hasattr(a, '__len__') else '?'} "
                    f"where eager's is {type(e).__name__} of {len(e)}"]
        return [d for i, (x, y) in enumerate(zip(e, a))
                for d in differences(x, y, f"{where}[{i}]", tolerances, values)]
    if isinstance(e, dict):
        if not isinstance(a, dict) or list(a) != list(e):
            return [f"{where} has keys {list(a) if isinstance(a, dict) else type(a).__name__} "
                    f"where eager's are {list(e)}"]
        return [d for k in e for d in differences(e[k], a[k], f"{where}[{k!r}]", tolerances, values)]
    if e is None or a is None:
        return [] if e is a else [f"{where} is {'None' if a is None else 'set'} where eager's is "
                                  f"{'None' if e is None else 'set'}"]
    same = e == a or (isinstance(e, float) and isinstance(a, float) and math.isnan(e) and math.isnan(a))
    return [] if same else [f"{where} is {a!r} where eager's is {e!r}"]


def draw_differences(case: Case, expected: Run, actual: Run) -> list[str]:
    """Two draws that differ in eager must differ in the compiled run."""
    e_out, a_out = flat(expected.outputs), flat(actual.outputs)
    out = []
    for i, j in case.rng_pairs:
        if not torch.equal(e_out[i], e_out[j]) and torch.equal(a_out[i], a_out[j]):
            out.append(f"output draws {i} and {j} are equal where eager's differ (one random draw "
                       f"was reused)")
    return out


def run_differences(case: Case, expected: Run, actual: Run, *, tolerances: Tolerances | None = None,
                    values: bool = True) -> list[str]:
    """Every difference between two runs of ``case``: outputs, inputs and module state
    afterwards, gradients, exceptions. ``tolerances`` defaults to the dtype's, or the case's
    own where it is looser."""
    if tolerances is None:
        tolerances = dict(TOLERANCES)
        if case.tolerance is not None:
            tolerances = {dt: (max(r, case.tolerance[0]), max(a, case.tolerance[1]))
                          for dt, (r, a) in tolerances.items()}
    assert expected.error is None, f"{case.name} fails in eager: {describe(expected.error)}"
    if actual.error is not None:
        return [f"raises {describe(actual.error)}"]
    out = differences(expected.outputs, actual.outputs, "output", tolerances, values)
    out += differences(expected.inputs_after, actual.inputs_after, "input after the call", tolerances, values)
    out += differences(expected.state_after, actual.state_after, "module state after the call", tolerances,
                       values)
    out += differences(expected.grads, actual.grads, "grads", tolerances, values)
    if case.rng and not out:
        out += draw_differences(case, expected, actual)
    return out


def failure(case: Case, problems: list[str]) -> str:
    """The assertion message: the first problem on the first line (what a report quotes), then
    the others and the program's own description."""
    rest = "".join(f"\n  also: {p}" for p in problems[1:6])
    return f"{problems[0]}{rest}\n  ({case.category}) {case.name}: {case.doc}"


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Every case compiles from scratch: no graph, guard or recompilation budget carries over."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def matches_eager_params() -> list[Any]:
    params = []
    for inner in INNERS:
        for dynamic in (False, True):
            for c in CASES:
                if inner == "inductor" and not FULL and c.name not in INDUCTOR_CASES[dynamic]:
                    continue
                kind = "dynamic" if dynamic else "static"
                known = f"{inner}-{kind}" in c.known_wrong_on
                marks = [pytest.mark.xfail(strict=True, reason=c.known_wrong)] if known else []
                params.append(pytest.param(inner, dynamic, c, id=f"{inner}-{kind}-{c.name}", marks=marks))
    return params


@pytest.mark.parametrize(("inner", "dynamic", "case"), matches_eager_params())
def test_corpus_matches_eager(inner: str, dynamic: bool, case: Case):
    """The program compiled through pypm's backend (standard rules) computes what eager does."""
    check_against_eager(case, compiler(pypm.backend(inner=inner), dynamic), inductor=inner == "inductor",
                        dynamic=dynamic)


def check_against_eager(case: Case, compile_fn: Callable[[Any], Any], *, inductor: bool, dynamic: bool):
    """Run ``case`` eagerly and compiled by ``compile_fn`` and assert that they agree (with
    ``inductor``: random values are not compared, and a case plain inductor gets wrong is
    compared with plain inductor)."""
    expected = run(case, None)
    assert expected.error is None, f"the program itself fails in eager: {describe(expected.error)}"
    actual = run(case, compile_fn)
    values = not (case.rng and inductor)
    if case.wider:
        reference = run(case, None, float64=True)
        assert run_differences(case, expected, reference, values=values), (
            f"{case.name} is flagged wider, but eager agrees with its float64 evaluation: drop the flag")
        problems = run_differences(case, expected, actual, values=values)
        if problems and run_differences(case, reference, actual, values=values):
            pytest.fail(failure(case, [*problems, "and it differs from the float64 evaluation too"]))
        return
    if inductor and case.inductor_wrong_when(dynamic):
        plain = run(case, compiler("inductor", dynamic))
        assert run_differences(case, expected, plain, values=values), (
            f"{case.name} is flagged inductor_wrong, but plain inductor now agrees with eager: "
            "drop the flag")
        if plain.error is not None:
            # plain inductor cannot compile it: pypm may fail the same way, or agree with eager
            if actual.error is not None and type(actual.error) is type(plain.error):
                return
        else:
            expected = plain
    problems = run_differences(case, expected, actual, values=values)
    assert not problems, failure(case, problems)


# pypm's rules as inductor's post-grad pass (``pypm.inductor_pass()``), where the ATen attention
# rule runs: fully masked rows, a finite fill, a NaN behind a mask, 3-d (bmm) attention, a
# float32 softmax of half scores, and a training graph whose q alone requires grad.
INDUCTOR_PASS_CASES = ["mask_fill_neg_inf_fully_masked_rows", "mask_causal_fill_1e4_low_scores",
                       "mask_nan_key_hidden_by_bool_mask", "body_attention_3d", "cast_llama_softmax",
                       "grad_attention_only_q"]


@pytest.mark.parametrize("case", [BY_NAME[n] for n in INDUCTOR_PASS_CASES], ids=lambda c: c.name)
def test_inductor_pass_matches_eager(case: Case):
    """The program compiled by inductor with pypm's post-grad pass computes what eager does."""
    assert not case.inductor_wrong_when(False), "pick cases that plain inductor gets right"
    with torch._inductor.config.patch(post_grad_custom_pre_pass=pypm.inductor_pass()):
        check_against_eager(case, compiler("inductor", False), inductor=True, dynamic=False)


# With no rules pypm hands dynamo's graph to the inner compiler as it is. Every case checks that
# with the eager inner compiler (what pypm passes on is run as it is); with aot_eager, the
# categories whose programs lean most on aot's functionalization (mutation, aliasing, grad
# modes, random draws).
NO_RULES_AOT_EAGER = (CSE, MUTATION)


def no_rules_params() -> list[Any]:
    return [pytest.param(inner, c, id=f"{inner}-{c.name}") for inner in ("eager", "aot_eager")
            for c in CASES if inner == "eager" or c.category in NO_RULES_AOT_EAGER]


@pytest.mark.parametrize(("inner", "case"), no_rules_params())
def test_no_rules_is_the_inner_compiler(inner: str, case: Case):
    """``pypm.backend(rules=[], inner=X)`` is X: the same results bit for bit."""
    expected = run(case, compiler(inner, False))
    torch._dynamo.reset()
    actual = run(case, compiler(pypm.backend(rules=[], inner=inner), False))
    if expected.error is not None:
        assert actual.error is not None and type(actual.error) is type(expected.error), (
            f"plain {inner} raises {describe(expected.error)}; pypm with no rules "
            f"{'raises ' + describe(actual.error) if actual.error else 'does not'}")
        return
    problems = run_differences(case, expected, actual, tolerances=EXACT)
    assert not problems, failure(case, problems)


def test_corpus_size_and_categories():
    """The corpus is large enough, covers every category, and each case says what it tests."""
    assert len(CASES) >= 150
    counts = {cat: sum(c.category == cat for c in CASES) for cat in CATEGORIES}
    assert all(n > 0 for n in counts.values()), counts
    assert {c.category for c in CASES} <= set(CATEGORIES)
    assert all(c.doc for c in CASES), [c.name for c in CASES if not c.doc]
    assert all((c.fn is None) != (c.module is None) for c in CASES)


@pytest.mark.parametrize("subset", [INDUCTOR_STATIC, INDUCTOR_DYNAMIC], ids=["static", "dynamic"])
def test_inductor_subset_is_stratified(subset: dict[str, list[str]]):
    """An inductor subset names real cases, filed under their own category, and picks from every
    category."""
    for category, names in subset.items():
        for name in names:
            assert name in BY_NAME, name
            assert BY_NAME[name].category == category, name
    assert set(subset) == set(CATEGORIES)
