"""Guard placement (pypm/placement.py) never changes results: on generated programs and terms,
the placed program gives the same result list, in the same order, as the program as written."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from pypm.semantics.generators import cases

from pypm.lang.match import interpret
from pypm.lang.placement import place_guards
from pypm.lang.syntax import Guard, Op, Var


@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(cases())
def test_placed_program_has_the_same_results_in_the_same_order(case):
    placed = place_guards(case.program)
    want = [dict(m.bindings) for m in interpret(case.program, case.pattern, case.value, case.sigma)]
    got = [dict(m.bindings) for m in interpret(placed, case.pattern, case.value, case.sigma)]
    assert got == want


def test_placement_moves_a_guard_to_where_its_variable_is_bound():
    from pypm.lang.syntax import Definition, GCompare, GConst, GName

    cond = GCompare(GName("a"), (("==", GConst(1)),))
    program = {"P": Definition("P", ("a", "b"), Guard(Op("f", (Var("a"), Op("g", (Var("b"),)))), cond))}
    assert place_guards(program)["P"].body == Op("f", (Guard(Var("a"), cond), Op("g", (Var("b"),))))
