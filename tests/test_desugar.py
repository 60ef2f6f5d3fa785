"""The desugarings of LANGUAGE.md §7: each surface form gives the same core, or at least the same
results as the hand-written core on a family of terms."""

from __future__ import annotations

import pytest
import torch

import pypm
from pypm.lang.match import interpret
from pypm.lang.parse import parse_module
from pypm.lang.syntax import (
    Alt,
    Call,
    Definition,
    Exists,
    Fail,
    Guard,
    Lit,
    Op,
    OpVar,
    Then,
    Var,
    Wild,
    show,
)
from pypm.lang.terms import parse

TERMS = [
    "matmul(a, b)", "div(a, b, None)", "mul(a, b)", "add(a, b, 1)", "sub(a, b, 1)", "neg(a)",
    "add(a, b, 2)", "div(a, b, 'floor')",
    "matmul(softmax(div(matmul(q, transpose(k, -2, -1)), 8, None), -1), v)",
    "matmul(softmax(mul(matmul(q, transpose(k, -1, -2)), 0.125), -1), v)",
    "matmul(softmax(mul(0.125, matmul(q, transpose(k, -1, -2))), -1), v)",
    "softmax(a, -1)", "softmax(a, 1)", "softmax(a, -1, None)", "f(g(a), g(a))", "f(g(a), g(b))",
    "transpose(reshape(x, (2, 3)), -2, -1)", "transpose(x, -2, -1)", "view(view(x, 1), 2)",
    "relu(a)", "gelu(a)", "to(a, torch.float16)", "to(a, torch.float32)", "f(a, b)",
]


def body(text: str, name: str = "P"):
    return parse_module(text).definitions[name].body


def same_results(surface: str, core, program=None, name: str = "P"):
    mod = parse_module(surface)
    d = mod.definitions[name]
    prog = {**mod.definitions, **(program or {})}
    hand = {**prog, name: Definition(name, d.params, core)}
    for text in TERMS:
        v = parse(text)
        got = [dict(m.bindings) for m in interpret(prog, Call(name, d.params), v)]
        want = [dict(m.bindings) for m in interpret(hand, Call(name, d.params), v)]
        assert got == want, (text, show(d.body), show(core))


@pytest.mark.parametrize("op,name,rest", [("@", "matmul", ()), ("/", "div", (None,)), ("*", "mul", ()),
                                          ("+", "add", (1,)), ("-", "sub", (1,)), ("**", "pow", ()),
                                          ("%", "remainder", ())])
def test_binary_operators_are_operator_patterns_with_the_schema_defaults(op, name, rest):
    # `a + b` is Python's +, i.e. alpha=1: it must not match torch.add(x, y, alpha=2)
    assert body(f"def P(a, b):\n    return a {op} b\n") == \
        Op(name, (Var("a"), Var("b"), *(Lit(r) for r in rest)))


def test_infix_add_does_not_match_a_scaled_add_but_the_call_form_does():
    ns = pypm.loads("def Infix(a, b):\n    return a + b\ndef Call(a, b):\n    return add(a, b)\n")
    scaled = parse("add(x, y, 2)")
    assert ns.Infix.match(scaled) == [] and len(ns.Call.match(scaled)) == 1
    assert len(ns.Infix.match(parse("add(x, y, 1)"))) == 1


def test_unary_minus_is_neg_but_negative_numbers_are_literals():
    assert body("def P(a):\n    return -a\n") == Op("neg", (Var("a"),))
    assert body("def P(a):\n    return softmax(a, -1)\n") == Op("softmax", (Var("a"), Lit(-1)))


def test_alternation_wildcard_fail_literals():
    assert body("def P(a):\n    return a | _ | fail | None | True | 'x' | 2.5\n") == \
        Alt(Alt(Alt(Alt(Alt(Alt(Var("a"), Wild()), Fail()), Lit(None)), Lit(True)), Lit("x")), Lit(2.5))


def test_tuples_lists_and_dtypes_are_literals():
    assert body("def P(a):\n    return permute(a, [0, 2, 1, 3])\n") == \
        Op("permute", (Var("a"), Lit((0, 2, 1, 3))))
    assert body("def P(a):\n    return to(a, float16) | to(a, torch.bfloat16)\n") == \
        Alt(Op("to", (Var("a"), Lit(torch.float16))), Op("to", (Var("a"), Lit(torch.bfloat16))))


def test_keyword_arguments_go_to_schema_positions_and_skipped_positions_are_wild():
    assert body("def P(a):\n    return softmax(a, dim=-1)\n") == Op("softmax", (Var("a"), Lit(-1)))
    assert body("def P(q, k, v):\n    return scaled_dot_product_attention(q, k, v, is_causal=True)\n") == \
        Op("scaled_dot_product_attention", (Var("q"), Var("k"), Var("v"), Wild(), Wild(), Lit(True)))


def test_method_calls_and_module_prefixes_name_the_canonical_operator():
    assert body("def P(k):\n    return k.transpose(-2, -1)\n") == \
        Op("transpose", (Var("k"), Lit(-2), Lit(-1)))
    assert body("def P(a):\n    return torch.softmax(a, -1) | F.softmax(a, -1)\n") == \
        Alt(Op("softmax", (Var("a"), Lit(-1))), Op("softmax", (Var("a"), Lit(-1))))
    assert body("def P(a, b):\n    return aten.bmm(a, b)\n") == Op("aten.bmm", (Var("a"), Var("b")))


def test_local_binding_is_exists_then():
    got = body("def P(a, b):\n    s = a @ b\n    return softmax(s, -1)\n")
    assert got == Exists("s", Then(Op("softmax", (Var("s"), Lit(-1))), "s",
                                   Op("matmul", (Var("a"), Var("b")))))
    same_results("def P(a, b):\n    s = a @ b\n    return softmax(s, -1)\n", got)


def test_conjunction_and_walrus():
    got = body("def P(x):\n    return f(x & g(_), _)\n")
    assert got == Op("f", (Then(Var("x"), "x", Op("g", (Wild(),))), Wild()))
    general = body("def P(x):\n    return f(g(x) & g(_), _)\n")
    assert isinstance(general.args[0], Exists)  # ∃z. (z ; z ≍ p) ; z ≍ q
    z = general.args[0].var
    assert general.args[0].body == Then(Then(Var(z), z, Op("g", (Var("x"),))), z, Op("g", (Wild(),)))
    walrus = body("def P(x):\n    return f((x := g(_)))\n")
    assert walrus == Op("f", (Then(Var("x"), "x", Op("g", (Wild(),))),))
    same_results("def P(x):\n    return f(x & g(_), _)\n",
                 Op("f", (Exists("z", Then(Then(Var("z"), "z", Var("x")), "z", Op("g", (Wild(),)))), Wild())))


def test_walrus_on_a_new_name_makes_a_local():
    got = body("def P(a):\n    return f((s := g(a)), s)\n")
    assert got == Exists("s", Op("f", (Then(Var("s"), "s", Op("g", (Var("a"),))), Var("s"))))


def test_call_with_non_variable_argument_is_exists_then():
    text = """
def P(x):
    return Transposed(reshape(x, _))
def Transposed(k):
    return transpose(k, -2, -1) | transpose(k, -1, -2)
"""
    got = body(text)
    assert isinstance(got, Exists)
    y = got.var
    assert got.body == Then(Call("Transposed", (y,)), y, Op("reshape", (Var("x"), Wild())))
    same_results(text, Exists("y", Then(Call("Transposed", ("y",)), "y", Op("reshape", (Var("x"), Wild())))))


def test_call_keyword_arguments_and_wildcard_arguments():
    text = """
def P(x):
    return Scaled(c=x, s=_)
def Scaled(s, c):
    return s / c | s * c
"""
    got = body(text)
    assert isinstance(got, Exists)
    assert got.body == Call("Scaled", (got.var, "x"))


def test_assert_is_a_guard_placed_where_its_variables_are_bound():
    text = "def P(a, b):\n    assert a == 3\n    return f(a, g(b))\n"
    written = body(text)  # as desugared: the guard around the whole body (§7)
    assert written == Guard(Op("f", (Var("a"), Op("g", (Var("b"),)))), written.cond)
    # as matched: on the first argument, right after `a` is bound, not after the whole term
    placed = pypm.loads(text).P.program["P"].body
    assert placed == Op("f", (Guard(Var("a"), written.cond), Op("g", (Var("b"),))))
    same_results(text, Guard(Op("f", (Var("a"), Op("g", (Var("b"),)))), written.cond))


def test_assert_waits_for_a_call_that_does_not_bind_its_argument():
    # R does not bind y, so `z != 0` must wait for `(z := x)`: placing it right after R(z)
    # would test an unbound z (conformance counterexample, tests/test_conformance_bugs.py)
    text = "def P(x, z):\n    assert z != 0\n    return f(R(z), (z := x))\ndef R(y):\n    return c()\n"
    placed = pypm.loads(text).P.program["P"].body
    assert placed.args[0] == Call("R", ("z",))
    cond = pypm.loads(text).P.source_program["P"].body.cond
    assert placed.args[1] == Then(Guard(Var("z"), cond), "z", Var("x"))


def test_conditional_expression_is_a_guard():
    got = body("def P(a):\n    return f(a) if a == 1 else fail\n")
    assert isinstance(got, Guard) and got.body == Op("f", (Var("a"),))


def test_shape_unpacking_names_dimensions_and_requires_the_rank():
    text = """
def P(q):
    B, H, S, D = q.shape
    assert D == 64
    return f(q)
"""
    ns = pypm.loads(text)
    from pypm.lang.terms import Term

    ok = Term("f", (Term("q", shape=(1, 2, 3, 64)),))
    wrong_d = Term("f", (Term("q", shape=(1, 2, 3, 32)),))
    wrong_rank = Term("f", (Term("q", shape=(2, 3, 64)),))
    assert len(ns.P.match(ok)) == 1
    assert ns.P.match(wrong_d) == []
    assert ns.P.match(wrong_rank) == []


def test_operator_variable_parameter():
    got = body("def P(f: Op, x):\n    return f(x) | g(f(x))\n")
    assert got == Alt(OpVar("f", (Var("x"),)), Op("g", (OpVar("f", (Var("x"),)),)))
    assert parse_module("def P(f: Op, x):\n    return f(x)\n").definitions["P"].op_params == {"f"}


def test_core_escapes_exists_and_then():
    got = body("def P(a):\n    return exists(t, then(f(a, t), t, g(_)))\n")
    assert got == Exists("t", Then(Op("f", (Var("a"), Var("t"))), "t", Op("g", (Wild(),))))


def test_attention_from_language_md_matches_all_scale_spellings():
    ns = pypm.loads('''
def Attention(q, k, v, scale):
    """Softmax attention, scaled by multiplying or dividing."""
    scores = q @ Transposed(k)
    return softmax(Scaled(scores, scale), dim=-1) @ v

def Transposed(k):
    return transpose(k, -2, -1) | transpose(k, -1, -2)

def Scaled(s, c):
    return s / c | s * c | mul(c, s)
''')
    for text, scale in [(TERMS[8], 8), (TERMS[9], 0.125), (TERMS[10], 0.125)]:
        (m,) = ns.Attention.match(parse(text))
        assert m.bindings["scale"] == scale
        assert m.bindings["q"] == parse("q")
    assert ns.Attention.__doc__ == "Softmax attention, scaled by multiplying or dividing."
