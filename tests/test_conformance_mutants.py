"""The mutation check: every deliberate bug in a copy of the interpreter is killed by the
conformance properties (soundness, completeness, termination) on generated cases."""

from __future__ import annotations

import os

import pytest
from pypm.semantics.conformance import kill
from pypm.semantics.mutants import MUTANTS, load

EXAMPLES = int(os.environ.get("PYPM_CONFORMANCE_EXAMPLES", "2000"))


def test_there_are_at_least_ten_mutants_and_each_applies():
    assert len(MUTANTS) >= 10
    for m in MUTANTS:
        load(m)  # raises when match.py no longer contains the mutated text


@pytest.mark.parametrize("mutant", [m.name for m in MUTANTS])
def test_mutant_is_killed(mutant: str):
    stats = kill(mutant, examples=EXAMPLES, seed=0)
    assert stats.failure is not None, f"mutant {mutant} survived {stats.cases} cases"
