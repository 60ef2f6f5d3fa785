"""Counterexamples found by the conformance generators, pinned as tests.

While a bug is open its test is ``xfail(strict=True)``; the marker goes with the fix. Both bugs
below are fixed (check.py counts the depth of a `;` from its variable's binding, wherever that
is, and reports an unbound parameter as unbound).
"""

from __future__ import annotations

import sys

import pytest

from pypm.errors import LeftRecursionError, UnboundError
from pypm.lang.check import check_program
from pypm.lang.match import interpret
from pypm.lang.parse import parse_module
from pypm.lang.terms import parse


def test_recursion_through_then_on_an_earlier_binding_is_rejected():
    # x is bound at the root; the inner `;` sits under g(...) but matches σ(x), the root again,
    # so P(x) recurses on the same value forever. The checker counts one operator and accepts.
    program = parse_module(
        "def P(x):\n"
        "    return then(x, x, g(then(_, x, P(x))))\n").definitions
    errors = check_program(program)
    assert any(isinstance(e, LeftRecursionError) for e in errors), errors


def test_the_rejected_program_above_indeed_does_not_terminate():
    program = parse_module("def P(x):\n    return then(x, x, g(then(_, x, P(x))))\n").definitions
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(2000)
    try:
        with pytest.raises(RecursionError):
            list(interpret(program, program["P"].body, parse("g(a)")))
    finally:
        sys.setrecursionlimit(old)


def test_then_on_an_unbound_parameter_is_an_unbound_error():
    program = parse_module("def Main(x):\n    return f(then(_, x, _), _)\n").definitions
    errors = check_program(program)
    assert [type(e) for e in errors] == [UnboundError], [e.message for e in errors]


def test_recursion_through_then_on_a_local_bound_at_the_root_is_rejected():
    # found by the Coq checker (coq/Totality.v): x is bound at the root, so the inner `;` matches
    # the root again and P() recurses on the same value.
    program = parse_module("def P():\n    return exists(x, then(x, x, f(then(_, x, P()))))\n").definitions
    assert [type(e) for e in check_program(program)] == [LeftRecursionError]


def test_core_definition_with_a_repeated_parameter_is_rejected():
    # completeness (coq/InterpProof.v) needs distinct parameters; the parser already refuses
    # `def P(x, x)`, and the checker refuses core programs built without the parser.
    from pypm.errors import ScopeError
    from pypm.lang.syntax import Definition, Var

    program = {"P": Definition("P", ("x", "x"), Var("x"))}
    assert [type(e) for e in check_program(program)] == [ScopeError]


# Found by `pypm conformance --examples 100000` (property desugaring), shrunk by hand.
ASSERT_AFTER_CALL = '''def Main(x, z):
    assert z != 0
    return f(R(z), (z := x))

def R(y):
    return c()
'''


def test_assert_is_placed_where_its_variables_are_definitely_bound():
    program = parse_module(ASSERT_AFTER_CALL).definitions
    assert check_program(program) == []
    found = [dict(m.bindings) for m in interpret(program, program["Main"].body, parse("f(c, d)"))]
    assert found == [{"z": parse("d"), "x": parse("d")}]


def test_the_same_nan_object_is_not_equal_to_itself():
    """NaN is equal to nothing, the same NaN object included: equality of literals never
    depends on object identity (the equality laws check the identical-object case too)."""
    from pypm.lang.terms import values_equal

    nan = float("nan")
    assert not values_equal(nan, nan)
    assert not values_equal((nan,), (nan,))
