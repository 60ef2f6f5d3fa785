"""The interpreter, rule by rule (LANGUAGE.md §4), on plain terms."""

from __future__ import annotations

import sympy

import pypm
from pypm.lang.match import interpret
from pypm.lang.syntax import (
    Alt,
    Call,
    Definition,
    Exists,
    Fail,
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


def results(p, v, sigma=None, program=None):
    return [dict(m.bindings) for m in interpret(program or {}, p, parse(v) if isinstance(v, str) else v,
                                                  sigma or {})]


def test_m_wild_matches_anything_and_binds_nothing():
    assert results(Wild(), "f(a)") == [{}]
    assert results(Wild(), 3) == [{}]


def test_m_var_binds_then_compares():
    assert results(Var("x"), "f(a)") == [{"x": parse("f(a)")}]
    assert results(Var("x"), "f(a)", {"x": parse("f(a)")}) == [{"x": parse("f(a)")}]
    assert results(Var("x"), "f(a)", {"x": parse("f(b)")}) == []


def test_m_lit_compares_literals_numerically_but_not_bools():
    assert results(Lit(8), 8.0) == [{}]
    assert results(Lit(1), True) == []
    assert results(Lit(True), True) == [{}]
    assert results(Lit((1, 2)), (1, 2)) == [{}]
    assert results(Lit("a"), parse("a")) == []  # a 0-ary term is not the string "a"


def test_m_op_needs_same_operator_and_checks_prefix_arity():
    p = Op("softmax", (Var("x"),))
    assert results(p, "softmax(a, -1)") == [{"x": parse("a")}]  # trailing args free
    assert results(Op("softmax", (Var("x"), Lit(-1), Wild())), "softmax(a, -1)") == []  # n > m
    assert results(p, "log_softmax(a, -1)") == []
    assert results(Op("softmax", (Var("x"), Lit(-1))), "softmax(a, 1)") == []  # literal checked


def test_non_linear_variables_compare_structurally():
    p = Op("add", (Var("x"), Var("x")))
    assert results(p, "add(f(a), f(a))") == [{"x": parse("f(a)")}]
    assert results(p, "add(f(a), f(b))") == []


def test_non_linearity_across_alternatives():
    # the second occurrence sits in each branch of an alternative
    p = Op("g", (Var("x"), Alt(Op("h", (Var("x"),)), Op("k", (Var("x"),)))))
    assert results(p, "g(a, k(a))") == [{"x": parse("a")}]
    assert results(p, "g(a, k(b))") == []


def test_m_opvar_binds_the_operator_name_and_compares_on_second_use():
    p = Op("pair", (OpVar("f", (Var("x"),)), OpVar("f", (Var("y"),))))
    assert results(p, "pair(relu(a), relu(b))") == [{"f": "relu", "x": parse("a"), "y": parse("b")}]
    assert results(p, "pair(relu(a), gelu(b))") == []
    assert results(OpVar("f", ()), "a", {"f": "a"}) == [{"f": "a"}]


def test_m_alt_gives_left_results_then_right_results():
    p = Alt(Op("f", (Var("x"), Wild())), Op("f", (Wild(), Var("x"))))
    assert results(p, "f(a, b)") == [{"x": parse("a")}, {"x": parse("b")}]
    # duplicates are allowed
    assert results(Alt(Wild(), Wild()), "a") == [{}, {}]


def test_m_exists_hides_and_restores_the_local():
    p = Exists("x", Op("f", (Var("x"), Var("y"))))
    assert results(p, "f(a, b)") == [{"y": parse("b")}]
    # shadowing: the outer x is invisible inside and put back afterwards
    assert results(p, "f(a, b)", {"x": parse("z")}) == [{"x": parse("z"), "y": parse("b")}]


def test_m_call_renames_parameters_and_keeps_locals_inside():
    prog = {"P": Definition("P", ("a",), Exists("t", Op("f", (Var("a"), Var("t")))))}
    assert results(Call("P", ("x",)), "f(u, w)", program=prog) == [{"x": parse("u")}]
    # a parameter already bound in the caller is compared
    assert results(Call("P", ("x",)), "f(u, w)", {"x": parse("w")}, program=prog) == []


def test_call_with_the_same_variable_twice_is_non_linear():
    prog = {"P": Definition("P", ("a", "b"), Op("f", (Var("a"), Var("b"))))}
    assert results(Call("P", ("x", "x")), "f(u, u)", program=prog) == [{"x": parse("u")}]
    assert results(Call("P", ("x", "x")), "f(u, w)", program=prog) == []


def test_m_guard_filters_results():
    p = Guard(Op("f", (Var("x"),)), GCompare(GName("x"), (("==", GConst(3)),)))
    assert results(p, "f(3)") == [{"x": 3}]
    assert results(p, "f(4)") == []


def test_m_then_matches_the_bound_value_against_the_second_pattern():
    p = Then(Op("f", (Var("x"), Var("y"))), "x", Op("g", (Var("z"),)))
    assert results(p, "f(g(a), b)") == [{"x": parse("g(a)"), "y": parse("b"), "z": parse("a")}]
    assert results(p, "f(h(a), b)") == []


def test_fail_never_matches():
    assert results(Fail(), "a") == []
    assert results(Alt(Fail(), Var("x")), "a") == [{"x": parse("a")}]


def test_region_lists_the_terms_consumed_by_operator_patterns():
    t = parse("f(g(a), b)")
    (m,) = interpret({}, Op("f", (Op("g", (Wild(),)), Wild())), t)
    assert [x.op for x in m.region] == ["f", "g"]


def test_matching_is_lazy():
    # an infinite supply of alternatives would hang an eager interpreter
    prog = {"Many": Definition("Many", ("x",), Alt(Var("x"), Call("Many", ("x",))))}
    it = interpret(prog, Call("Many", ("y",)), parse("a"))
    assert next(it).bindings == {"y": parse("a")}


LAYOUT = """
def Layout(x):
    return x | view(Layout(x), _) | reshape(Layout(x), _) | contiguous(Layout(x))
"""


def test_recursive_layout_chain_of_any_length():
    ns = pypm.loads(LAYOUT)
    for n in range(0, 12):
        t = Term("q")
        for i in range(n):
            t = Term(["view", "reshape", "contiguous"][i % 3], (t, (2, 3)) if i % 3 < 2 else (t,))
        found = [m.bindings["x"] for m in ns.Layout.match(t)]
        # every suffix of the chain is a match; the innermost one is the bare tensor
        assert len(found) == n + 1
        assert found[-1] == Term("q")


def test_guards_on_symbolic_shapes():
    s = sympy.Symbol("s", positive=True, integer=True)
    ns = pypm.loads("""
def SquareScores(a, b):
    assert a.shape[-1] == b.shape[-2]
    assert a.shape[0] * 2 >= 2
    return matmul(a, b)
""")
    a = Term("a", shape=(s, 64))
    good = Term("matmul", (a, Term("b", shape=(64, s))))
    bad = Term("matmul", (a, Term("b", shape=(s, s))))  # 64 == s cannot be decided: false
    assert len(ns.SquareScores.match(good)) == 1
    assert ns.SquareScores.match(bad) == []


def test_bound_arguments_restrict_matches():
    ns = pypm.loads("def Soft(x, d):\n    return softmax(x, d)\n")
    t = parse("softmax(a, -1)")
    assert len(pypm.match(ns.Soft, t, d=-1)) == 1
    assert pypm.match(ns.Soft, t, d=0) == []
