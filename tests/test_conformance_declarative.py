"""The declarative checker (pypm.semantics.declarative) on hand-picked judgements, one per rule."""

from __future__ import annotations

import pytest
from pypm.semantics.declarative import DeclarativeLoop, derive, holds, match_set

from pypm.lang.syntax import (
    Alt,
    Call,
    Definition,
    Exists,
    Fail,
    GBinary,
    GCompare,
    GConst,
    GName,
    Guard,
    Lit,
    Op,
    OpVar,
    Then,
    Var,
    Wild,
)
from pypm.lang.terms import Term, parse

CHAIN = {"Chain": Definition("Chain", ("x",), Alt(Var("x"), Op("neg", (Call("Chain", ("x",)),))))}


def eq(a: str, const: object) -> GCompare:
    return GCompare(GName(a), (("==", GConst(const)),))


def test_wild_matches_anything_m_wild():
    d = derive({}, {}, parse("f(a)"), Wild())
    assert d is not None and d.rule == "M-Wild"


def test_var_needs_its_binding_in_sigma_m_var():
    v = parse("a")
    assert holds({}, {"x": v}, v, Var("x"))
    assert not holds({}, {"x": parse("b")}, v, Var("x"))
    assert not holds({}, {}, v, Var("x"))  # σ(x) undefined: no rule applies


def test_literal_equality_keeps_booleans_apart_m_lit():
    assert holds({}, {}, 1, Lit(1))
    assert not holds({}, {}, True, Lit(1))
    assert not holds({}, {}, 1, Lit(True))
    assert not holds({}, {}, parse("c"), Lit("c"))


def test_operator_prefix_arity_m_op():
    p = Op("f", (Var("x"),))
    assert holds({}, {"x": 1}, parse("f(1, 2)"), p)
    assert not holds({}, {"x": 1}, parse("f"), p)
    assert not holds({}, {"x": 1}, parse("g(1)"), p)
    assert holds({}, {}, parse("f(1)"), Op("f", ()))


def test_operator_variable_compares_the_name_m_opvar():
    p = OpVar("o", (Wild(),))
    assert holds({}, {"o": "f"}, parse("f(1)"), p)
    assert not holds({}, {"o": "g"}, parse("f(1)"), p)
    assert [m["o"] for m in match_set({}, Op("h", (p, p)), parse("h(f(1), g(2))"))] == []
    assert match_set({}, Op("h", (p, p)), parse("h(f(1), f(2))")) == [{"o": "f"}]


def test_alternation_either_branch_m_alt():
    p = Alt(Lit(1), Lit(2))
    assert derive({}, {}, 1, p).rule == "M-AltL"
    assert derive({}, {}, 2, p).rule == "M-AltR"
    assert not holds({}, {}, 3, p)


def test_exists_finds_a_witness_and_overrides_sigma_m_exists():
    p = Exists("t", Op("f", (Var("t"), Var("t"))))
    d = derive({}, {"t": parse("zzz")}, parse("f(a, a)"), p)
    assert d is not None and d.rule == "M-Exists" and "t ↦ a" in d.note
    assert not holds({}, {}, parse("f(a, b)"), p)


def test_call_substitutes_arguments_and_renames_locals_apart_m_call():
    # P(y) := ∃x. f(x, y): calling P(x) must not capture the caller's x.
    prog = {"P": Definition("P", ("y",), Exists("x", Op("f", (Var("x"), Var("y")))))}
    assert holds(prog, {"x": parse("b")}, parse("f(a, b)"), Call("P", ("x",)))
    assert not holds(prog, {"x": parse("a")}, parse("f(a, b)"), Call("P", ("x",)))


def test_recursive_definitions_mean_their_finite_unfoldings():
    v = parse("neg(neg(a))")
    assert match_set(CHAIN, Call("Chain", ("y",)), v) == [{"y": v}, {"y": v.args[0]}, {"y": parse("a")}]
    d = derive(CHAIN, {"y": parse("a")}, v, Call("Chain", ("y",)))
    assert d.rules().count("M-Call") == 3


def test_guard_reads_sigma_m_guard():
    p = Guard(Var("x"), GBinary("or", eq("x", 1), eq("x", "a")))
    assert holds({}, {"x": 1}, 1, p)
    assert not holds({}, {"x": 2}, 2, p)
    assert holds({}, {"x": "a"}, "a", p)


def test_then_matches_the_value_of_its_variable_m_then():
    p = Then(Op("f", (Var("x"),)), "x", Op("g", (Var("y"),)))
    assert match_set({}, p, parse("f(g(1))")) == [{"x": parse("g(1)"), "y": 1}]
    assert not holds({}, {"x": parse("g(1)"), "y": 2}, parse("f(g(1))"), p)


def test_fail_has_no_rule():
    assert not holds({}, {}, 1, Fail())


def test_match_set_keeps_only_minimal_solutions():
    p = Alt(Var("x"), Wild())
    assert match_set({}, p, Term("c")) == [{}]
    assert match_set({}, p, Term("c"), {"x": Term("d")}) == [{"x": Term("d")}]


def test_unguarded_recursion_is_refused():
    loop = {"L": Definition("L", ("x",), Alt(Call("L", ("x",)), Var("x")))}
    with pytest.raises(DeclarativeLoop):
        holds(loop, {"x": 1}, 1, Call("L", ("x",)))


def test_derivation_prints_rule_names():
    text = derive(CHAIN, {"y": parse("a")}, parse("neg(a)"), Call("Chain", ("y",))).show()
    assert "M-Call" in text and "M-AltR" in text and "M-Var" in text
