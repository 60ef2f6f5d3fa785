"""The conformance properties, as plain functions of one case (shared by pytest and the
``pypm conformance`` command). Each raises :class:`PropertyFailure` with a readable message.

* :func:`soundness`: every interpreter result extends σ0, binds nothing but σ0's variables and
  the query's free variables, and is a declarative solution (``σ' ⊨ v : p``);
* :func:`completeness`: every ⊆-minimal declarative solution is found by the interpreter, up to
  ⊆ (so, by soundness, exactly);
* :func:`terminates`: on a guarded program the interpreter finishes, and its recursion depth
  stays under the fuel bound of §6, (size(v) + 1) × (size(Δ) + size(p));
* :func:`accepted` / :func:`rejected`: the well-formedness checker accepts every generated
  program and rejects each ill-formed one with the expected error class.

* :func:`order`: the interpreter's result *list*, and the compiled matcher's (inlining calls and
  by frames), equal the list semantics of §4 (:mod:`.listsem`) result for result, in order, with
  multiplicity, regions included.

``interpret`` (or the :class:`System` under test) is a parameter so that the same properties run
against the mutants.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pypm.lang.match import Interpreter, Match
from pypm.lang.match import interpret as real_interpret
from pypm.lang.syntax import Pattern, Program, free_vars, show, size
from pypm.lang.terms import show_value, term_size

from .declarative import Checker, DeclarativeLoop, match_set, subst_leq
from .equality import equal, substs_equal
from .generators import MAIN, Case

Interpret = Callable[..., Iterator[Match]]


class PropertyFailure(AssertionError):
    """A property does not hold on a case; the message says how."""


@dataclass(frozen=True)
class System:
    """The modules under test: the real ones, or copies carrying a mutant's edit (see
    :mod:`.mutants`). Each property reads the parts it tests."""

    match: types.ModuleType
    fastmatch: types.ModuleType
    terms: types.ModuleType
    guards: types.ModuleType
    check: types.ModuleType
    placement: types.ModuleType

    @property
    def interpret(self) -> Interpret:
        return self.match.interpret


def real_system() -> System:
    """pypm's own modules."""
    from pypm.lang import check, fastmatch, guards, match, placement, terms

    return System(match, fastmatch, terms, guards, check, placement)


def show_subst(s: Mapping[str, Any]) -> str:
    """``{x ↦ f(a), y ↦ 1}``"""
    return "{" + ", ".join(f"{k} ↦ {show_value(v)}" for k, v in sorted(s.items())) + "}"


def results(case: Case, interpret: Interpret = real_interpret) -> list[dict[str, Any]]:
    """The interpreter's results on a case, as plain dicts, in order."""
    return [dict(m.bindings) for m in interpret(case.program, case.pattern, case.value, dict(case.sigma))]


def soundness(case: Case, interpret: Interpret = real_interpret,
              found: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """σ' ∈ match(p, v, σ) ⟹ σ ⊆ σ' ∧ σ' ⊨ v : p (and σ' binds no local). Returns the results."""
    found = results(case, interpret) if found is None else found
    visible = free_vars(case.pattern) | case.sigma.keys()
    checker = Checker(case.program, [case.value, *case.sigma.values()])
    for s in found:
        if not subst_leq(case.sigma, s):
            raise PropertyFailure(f"result {show_subst(s)} does not extend σ0 = {show_subst(case.sigma)}")
        extra = s.keys() - visible
        if extra:
            raise PropertyFailure(f"result {show_subst(s)} binds {sorted(extra)}, which are not free "
                                  "in the pattern (a local escaped)")
        if checker.derive(case.pattern, case.value, s) is None:
            raise PropertyFailure(f"result {show_subst(s)} is not a declarative solution: no "
                                  "derivation of σ' ⊨ v : p")
    return found


def completeness(case: Case, interpret: Interpret = real_interpret,
                 found: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """σ0 ⊆ τ ∧ τ ⊨ v : p ⟹ ∃ σ' ∈ match(p, v, σ0), σ' ⊆ τ, for every minimal τ. Returns the
    minimal declarative solutions."""
    found = results(case, interpret) if found is None else found
    minimal = match_set(case.program, case.pattern, case.value, case.sigma)
    for tau in minimal:
        if not any(subst_leq(s, tau) for s in found):
            raise PropertyFailure(f"the declarative solution {show_subst(tau)} is missed: the "
                                  f"interpreter found {[show_subst(s) for s in found]}")
    return minimal


class _DepthInterpreter(Interpreter):
    """The interpreter, counting how deep its active recursion goes (suspended generators
    excluded), which is the fuel the Coq interpreter would need."""

    def __init__(self, program: Program, limit: int):
        super().__init__(program)
        self.depth = 0
        self.deepest = 0
        self.limit = limit

    def run(self, p: Pattern, v: Any,
            sigma: dict[str, Any]) -> Iterator[tuple[dict[str, Any], tuple[Any, ...]]]:
        gen = super().run(p, v, sigma)
        while True:
            self.depth += 1
            self.deepest = max(self.deepest, self.depth)
            if self.depth > self.limit:
                raise PropertyFailure(f"recursion depth exceeds the fuel bound {self.limit} of §6 "
                                      "(the interpreter would not terminate or needs more fuel)")
            try:
                item = next(gen)
            except StopIteration:
                return
            finally:
                self.depth -= 1
            yield item


def fuel_bound(case: Case) -> int:
    """(size(v) + 1) × (size(Δ) + size(p)), the fuel that §6 says suffices."""
    program_size = sum(size(d.body) for d in case.program.values())
    return (term_size(case.value) + 1) * (program_size + size(case.pattern))


def terminates(case: Case, interpret: Interpret | None = None) -> int:
    """The interpreter finishes on a guarded program within the fuel bound; returns its depth.
    With a replacement ``interpret`` only finishing (without RecursionError) is checked."""
    try:
        if interpret is not None:
            results(case, interpret)
            return 0
        interp = _DepthInterpreter(case.program, fuel_bound(case))
        for _ in interp.run(case.pattern, case.value, dict(case.sigma)):
            pass
    except RecursionError as e:
        raise PropertyFailure("the interpreter does not terminate (RecursionError) on a guarded "
                              "program") from e
    return interp.deepest


def accepted_terminates(case: Case, system: System | None = None) -> bool:
    """If the checker accepts the program, the interpreter terminates on it within the fuel
    bound (for programs drawn with ``loose=True``). Returns whether the checker accepted it."""
    check_program = (system or real_system()).check.check_program

    if check_program(case.program):
        return False
    terminates(case)
    return True


def accepted(program: Program, system: System | None = None) -> None:
    """The checker accepts a generated (well-formed) program."""
    check_program = (system or real_system()).check.check_program

    errors = check_program(program)
    if errors:
        raise PropertyFailure("the checker rejects a well-formed program:\n" +
                              "\n".join(f"  {type(e).__name__}: {e.message}" for e in errors))


def rejected(program: Program, kind: str, system: System | None = None) -> None:
    """The checker rejects an ill-formed program with an error of class ``kind``."""
    check_program = (system or real_system()).check.check_program

    errors = check_program(program)
    names = [type(e).__name__ for e in errors]
    if kind not in names:
        raise PropertyFailure(f"expected a {kind}, the checker reported {names or 'nothing'}" +
                              "".join(f"\n  {type(e).__name__}: {e.message}" for e in errors))


def placement_well_formed(program: Program, system: System | None = None) -> Program:
    """The placed program is still well-formed (§5: a guard reads only variables definitely bound
    where it now stands). Returns it."""
    from pypm.lang.check import check_program

    placed = (system or real_system()).placement.place_guards(program)
    errors = check_program(placed)
    if errors:
        raise PropertyFailure("guard placement makes the program ill-formed: " +
                              "; ".join(f"{type(e).__name__}: {e.message}" for e in errors) +
                              f"; placed Main is {show(placed[MAIN].body)}")
    return placed


def placement_preserves(case: Case, system: System | None = None) -> int | None:
    """Moving guards to where their variables are bound (:mod:`pypm.lang.placement`) changes no
    result, nor their order, on a checked program, and the placed program is still well-formed
    (§5: every guard reads only variables definitely bound where it now stands). Returns the
    number of results."""
    placed = placement_well_formed(case.program, system)
    before = results(case)
    after = [dict(m.bindings)
             for m in real_interpret(placed, placed[MAIN].body, case.value, dict(case.sigma))]
    same = len(before) == len(after) and all(subst_leq(a, b) and subst_leq(b, a)
                                             for a, b in zip(before, after))
    if not same:
        raise PropertyFailure(f"guard placement changes the results: {[show_subst(s) for s in before]} "
                              f"before, {[show_subst(s) for s in after]} after; placed Main is "
                              f"{show(placed[MAIN].body)}")
    return len(after)


def declarative_terminates(case: Case) -> None:
    """The declarative checker meets no self-dependent goal on a generated program."""
    try:
        Checker(case.program, [case.value]).derive(case.pattern, case.value, dict(case.sigma))
    except DeclarativeLoop as e:
        raise PropertyFailure(str(e)) from e


def _show_result(r: tuple[dict[str, Any], tuple[Any, ...]]) -> str:
    return f"{show_subst(r[0])} region [{', '.join(show_value(t) for t in r[1])}]"


def same_list(who: str, want: list[tuple[dict[str, Any], tuple[Any, ...]]],
              got: list[tuple[dict[str, Any], tuple[Any, ...]]]) -> None:
    """got equals want: the same results in the same order, each with an equal region."""
    for i, (w, g) in enumerate(zip(want, got)):
        if not substs_equal(w[0], g[0]) or len(w[1]) != len(g[1]) \
                or not all(equal(a, b) for a, b in zip(w[1], g[1])):
            raise PropertyFailure(f"{who}: result {i} is {_show_result(g)}; §4 says {_show_result(w)}")
    if len(want) != len(got):
        more, which = (got, "more") if len(got) > len(want) else (want, "fewer")
        raise PropertyFailure(f"{who} gives {len(got)} results, §4 gives {len(want)} ({which}: "
                              f"{_show_result(more[min(len(want), len(got))])} first)")


def order(case: Case, system: System | None = None) -> int:
    """The result lists of the interpreter and of the compiled matcher (calls inlined, and by
    frames) equal the list semantics of §4, in order, with multiplicity, regions included.
    Returns the number of results."""
    from .listsem import results as list_results

    system = system or real_system()
    want = list_results(case.program, case.pattern, case.value, case.sigma)
    got = [(dict(m.bindings), tuple(m.region))
           for m in system.interpret(case.program, case.pattern, case.value, dict(case.sigma))]
    same_list("the interpreter", want, got)
    for inline in (True, False):
        fm = system.fastmatch
        matcher = fm.Compiler(case.program, inline=inline).compile(case.pattern)
        fast = [(dict(s), tuple(r)) for s, r in fm.all_results(matcher, case.value, dict(case.sigma))]
        same_list(f"fastmatch ({'inlined' if inline else 'frames'})", want, fast)
    return len(want)


__all__ = ["PropertyFailure", "System", "order", "real_system", "same_list",
           "accepted", "accepted_terminates", "completeness", "declarative_terminates",
           "fuel_bound", "placement_preserves", "placement_well_formed", "rejected", "results",
           "show_subst", "soundness", "terminates"]
