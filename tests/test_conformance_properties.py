"""Conformance of the interpreter to the declarative semantics, on generated cases.

Each property runs on ``PYPM_CONFORMANCE_EXAMPLES`` cases (default 2,000: the CI share),
derandomized so that CI is reproducible; ``pypm conformance --examples 100000`` is the long run.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from pypm.semantics import properties as props
from pypm.semantics.desugar import agree, desugar_cases
from pypm.semantics.generators import Case, cases, ill_formed_programs, programs
from pypm.semantics.laws import equality_laws, guard_cases, guard_laws, value_triples

from pypm.lang import guards
from pypm.lang.terms import values_equal

EXAMPLES = int(os.environ.get("PYPM_CONFORMANCE_EXAMPLES", "2000"))

ci = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True)
def _deep_recursion():
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20000))
    yield
    sys.setrecursionlimit(old)


@ci
@given(cases())
def test_every_interpreter_result_is_a_declarative_solution_extending_sigma(case: Case):
    props.soundness(case)


@ci
@given(cases())
def test_every_minimal_declarative_solution_is_found_by_the_interpreter(case: Case):
    props.completeness(case)


@ci
@given(cases())
def test_guarded_programs_terminate_within_the_fuel_bound(case: Case):
    props.terminates(case)
    props.declarative_terminates(case)


@ci
@given(cases(loose=True))
def test_every_program_the_checker_accepts_terminates(case: Case):
    props.accepted_terminates(case)


@ci
@given(cases())
def test_guard_placement_changes_no_result(case: Case):
    props.placement_preserves(case)


@ci
@given(cases())
def test_result_lists_of_interpreter_and_fastmatch_are_the_list_semantics_of_section_4(case: Case):
    props.order(case)


@ci
@given(value_triples())
def test_values_equal_is_the_equality_of_section_1_and_an_equivalence(triple):
    equality_laws(triple, values_equal)


@ci
@given(guard_cases())
def test_guards_are_three_valued_local_and_monotone_as_section_7_says(gc):
    guard_laws(gc, guards)


@ci
@given(programs())
def test_checker_accepts_every_generated_program(program):
    props.accepted(program)


@ci
@given(ill_formed_programs())
def test_checker_rejects_each_ill_formed_program_with_the_right_error(drawn):
    program, kind = drawn
    props.rejected(program, kind)


@ci
@given(desugar_cases())
def test_surface_desugarings_agree_with_hand_written_core(case):
    agree(case)


def test_two_hundred_random_cases_include_non_trivial_matches():
    """A generator that only ever finds zero matches (or only the empty σ) must not pass."""
    counts: Counter = Counter()
    binding: list[int] = []

    @settings(max_examples=200, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def collect(case: Case) -> None:
        found = props.results(case)
        counts[min(len(found), 3)] += 1
        binding.append(sum(1 for s in found if len(s) > len(case.sigma)))

    collect()
    assert sum(counts.values()) == 200
    assert counts[0] >= 20, counts                    # negatives exist
    assert counts[1] + counts[2] + counts[3] >= 100, counts   # most cases match
    assert counts[2] + counts[3] >= 10, counts         # some match several ways
    assert sum(1 for b in binding if b) >= 25         # and matches bind variables


def test_guard_cases_reach_every_outcome():
    """The guard generator must produce unknown values (symbolic sizes sympy cannot compare),
    failures, and both truth values, or the three-valued laws test little."""
    seen: Counter = Counter()

    @settings(max_examples=200, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(guard_cases())
    def collect(gc) -> None:
        seen[guard_laws(gc, guards)] += 1

    collect()
    assert all(seen[k] >= 10 for k in ("true", "false", "unknown", "fails")), seen
