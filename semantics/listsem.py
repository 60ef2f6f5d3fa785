"""The algorithmic semantics of LANGUAGE.md §4 as an executable *list* semantics.

``results(Δ, p, v, σ)`` is the list ``match(p, v, σ)`` of §4, in order and with multiplicity,
each result with its region (the terms consumed by operator patterns, root first, in the order
they were matched; ``p ; x ≍ q`` appends q's region to p's). It is written as the equations of
§4 read literally, on Python lists, sharing nothing with the interpreter (:mod:`pypm.lang.match`)
or the compiled matcher (:mod:`pypm.lang.fastmatch`):

* equality of values is :func:`.equality.equal`, guards are :mod:`.guardsem`;
* M-Call is by *substitution*, as §4 states it ("the body with parameters renamed to x̄ and locals
  fresh"), not by a frame as the interpreter runs it: the declarative semantics' instance of the
  body is matched under the caller's σ.

Set-based properties cannot see order or multiplicity; the ``order`` property compares this list
with the interpreter's and the compiled matcher's, result for result, regions included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pypm.lang.syntax import (
    Alt,
    Call,
    Exists,
    Fail,
    Guard,
    Lit,
    Op,
    OpVar,
    Pattern,
    Program,
    Then,
    Var,
    Wild,
)
from pypm.lang.terms import TermView

from .equality import equal
from .guardsem import holds

Subst = dict[str, Any]
Result = tuple[Subst, tuple[Any, ...]]


class ListSemantics:
    """``match(p, v, σ)`` of §4 over a program Δ, as lists."""

    def __init__(self, program: Program):
        from .declarative import Checker  # its M-Call instances: body[ȳ := x̄], locals renamed apart

        self.program = program
        self._instances = Checker(program, [])

    def match(self, p: Pattern, v: Any, s: Subst) -> list[Result]:
        match p:
            case Wild():                                # _ → [σ]
                return [(s, ())]
            case Var(x):                                # x → [σ] / [] / [σ[x ↦ v]]
                if x not in s:
                    return [({**s, x: v}, ())]
                return [(s, ())] if equal(s[x], v) else []
            case Lit(lit):                              # l → [σ] if v = l
                return [(s, ())] if not isinstance(v, TermView) and equal(v, lit) else []
            case Op(f, args):                           # f(p̄): thread σ through the arguments
                if not isinstance(v, TermView) or v.op != f or len(args) > len(v.args):
                    return []
                return self.thread(args, v.args, [(s, (v,))])
            case OpVar(x, args):                        # x(p̄): bind or compare x with "f" first
                if not isinstance(v, TermView) or len(args) > len(v.args):
                    return []
                if x not in s:
                    return self.thread(args, v.args, [({**s, x: v.op}, (v,))])
                return self.thread(args, v.args, [(s, (v,))]) if equal(s[x], v.op) else []
            case Alt(left, right):                      # match(p1) ++ match(p2)
                return self.match(left, v, s) + self.match(right, v, s)
            case Exists(x, body):                       # under σ \ x, then x put back as it was
                inner = {y: w for y, w in s.items() if y != x}
                out = []
                for s2, region in self.match(body, v, inner):
                    s2 = {y: w for y, w in s2.items() if y != x}
                    if x in s:
                        s2[x] = s[x]
                    out.append((s2, region))
                return out
            case Call(name, xs):                        # the body, parameters renamed to x̄
                inst = self._instances.instance(name, xs)
                if inst is None:
                    raise KeyError(f"pattern {name} is not defined with {len(xs)} parameters")
                return self.match(inst, v, s)
            case Guard(body, cond):                     # the results of p whose ⟦g⟧ is true
                return [(s2, r) for s2, r in self.match(body, v, s) if holds(cond, s2)]
            case Then(body, x, q):                      # for each σ' of p: match(q, σ'(x), σ')
                out = []
                for s2, r in self.match(body, v, s):
                    if x in s2:
                        out.extend((s3, r + r3) for s3, r3 in self.match(q, s2[x], s2))
                return out
            case Fail():                                # ⊥ → []
                return []
        raise TypeError(f"not a core pattern: {p!r}")

    def thread(self, ps: tuple[Pattern, ...], vs: tuple[Any, ...], acc: list[Result]) -> list[Result]:
        """Each step flat-maps: every result so far, matched against the next argument."""
        for p, v in zip(ps, vs):
            acc = [(s2, r + r2) for s, r in acc for s2, r2 in self.match(p, v, s)]
        return acc


def results(program: Program, p: Pattern, v: Any, sigma: Mapping[str, Any] | None = None) -> list[Result]:
    """match(p, v, σ) of §4: (σ', region) for each result, in order, with multiplicity."""
    return ListSemantics(program).match(p, v, dict(sigma or {}))


__all__ = ["ListSemantics", "results"]
