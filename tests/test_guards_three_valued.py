"""Guards are three-valued (LANGUAGE.md §7): Kleene's tables for `and`, `or`, `not`; a comparison
sympy cannot decide is unknown; a guard holds only when true; a failure anywhere it runs makes
it not hold. And the property that makes this sound: a guard that holds on symbolic sizes holds
for every integer those sizes can take."""

from __future__ import annotations

import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from pypm.lang.guards import UNKNOWN, compare3, eq3, evaluate, holds, truth3
from pypm.lang.syntax import GBinary, GCall, GCompare, GConst, GExpr, GIndex, GName, GTuple, GUnary

N = sympy.Symbol("n", positive=True, integer=True)
M = sympy.Symbol("m", positive=True, integer=True)
ENV = {"n": N, "m": M}

T = GConst(True)
F = GConst(False)
U = GCompare(GName("n"), (("==", GConst(8)),))    # undecidable for a symbolic n
ERR = GIndex(GTuple(()), GConst(3))               # fails when it runs


def value(g: GExpr):
    return truth3(evaluate(g, ENV))


def test_undecided_comparison_is_unknown_and_does_not_hold():
    assert evaluate(U, ENV) is UNKNOWN and not holds(U, ENV)


def test_negation_of_unknown_is_unknown():
    assert value(GUnary("not", U)) is None
    assert not holds(GUnary("not", U), ENV)
    assert not holds(GUnary("not", GCompare(GName("n"), (("!=", GConst(8)),))), ENV)


def test_and_is_kleene():
    table = {(T, T): True, (T, F): False, (F, T): False, (F, F): False, (T, U): None,
             (U, T): None, (F, U): False, (U, F): False, (U, U): None}
    for (a, b), want in table.items():
        assert value(GBinary("and", a, b)) is want, (a, b)


def test_or_is_kleene():
    table = {(T, T): True, (T, F): True, (F, T): True, (F, F): False, (T, U): True,
             (U, T): True, (F, U): None, (U, F): None, (U, U): None}
    for (a, b), want in table.items():
        assert value(GBinary("or", a, b)) is want, (a, b)


def test_a_failure_that_runs_makes_the_guard_fail_whatever_surrounds_it():
    for g in (GUnary("not", ERR), GBinary("or", U, ERR), GBinary("and", T, ERR),
              GUnary("not", GBinary("and", U, ERR)), GBinary("or", F, GUnary("not", ERR))):
        assert not holds(g, ENV), g
        assert not holds(GUnary("not", g), ENV), g


def test_evaluation_stops_at_the_operand_that_decides():
    # `is_term(fill) or fill <= -10000` in the standard library relies on this
    assert holds(GBinary("or", T, ERR), ENV)
    assert value(GBinary("and", F, ERR)) is False


def test_chained_comparison_is_the_kleene_conjunction():
    g = GCompare(GConst(0), (("<", GName("n")), ("<", GConst(8))))
    assert value(g) is None
    assert value(GCompare(GConst(0), (("<", GName("n")), (">", GName("n"))))) is False


def test_in_is_three_valued():
    assert value(GCompare(GName("n"), (("in", GTuple((GConst(1), GConst(2)))),))) is None
    assert value(GCompare(GName("n"), (("in", GTuple((GConst(1), GName("n")))),))) is True
    assert value(GCompare(GConst(-1), (("in", GTuple((GName("n"),))),))) is False
    assert value(GCompare(GName("n"), (("not in", GTuple((GConst(1),))),))) is None


def test_all_and_any_are_three_valued():
    assert value(GCall("all", (GTuple((T, U)),))) is None
    assert value(GCall("all", (GTuple((F, U)),))) is False
    assert value(GCall("any", (GTuple((T, U)),))) is True
    assert value(GCall("any", (GTuple((F, U)),))) is None


def test_eq3_and_compare3_agree_with_the_evaluator():
    assert eq3(N, 8) is None and eq3(N, N) is True and eq3(N, -1) is False
    assert eq3(N, "8") is False and eq3((N, 1), (N, 2)) is False
    assert compare3("!=", N, 8) is None and compare3("<", N, 0) is False
    assert compare3("is", N, None) is False and compare3("is not", N, 8) is None


# --- property: holds symbolically ⟹ holds for every instance --------------------------------

@st.composite
def arith(draw, depth=0):
    if depth >= 3 or draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from([GName("n"), GName("m"), *(GConst(i) for i in (0, 1, 2, 3, 8, 64))]))
    op = draw(st.sampled_from(["+", "-", "*", "//", "%"]))
    right = draw(arith(depth + 1)) if op not in ("//", "%") else GConst(draw(st.sampled_from([2, 3, 8])))
    return GBinary(op, draw(arith(depth + 1)), right)


@st.composite
def guards(draw, depth=0):
    kind = draw(st.integers(0, 5 if depth < 3 else 1))
    if kind <= 1:
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return GCompare(draw(arith()), ((op, draw(arith())),))
    if kind == 2:
        return GUnary("not", draw(guards(depth + 1)))
    if kind == 3:
        items = GTuple(tuple(draw(st.lists(arith(), min_size=1, max_size=3))))
        return GCompare(draw(arith()), ((draw(st.sampled_from(["in", "not in"])), items),))
    return GBinary(draw(st.sampled_from(["and", "or"])), draw(guards(depth + 1)), draw(guards(depth + 1)))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(guards(), st.lists(st.tuples(st.integers(1, 200), st.integers(1, 200)), min_size=1, max_size=5))
def test_a_guard_that_holds_on_symbolic_sizes_holds_for_every_instance(g, instances):
    if not holds(g, ENV):
        return
    for n, m in instances:
        assert holds(g, {"n": n, "m": m}), (g, n, m)
