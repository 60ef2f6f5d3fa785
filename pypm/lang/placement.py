"""Guard placement: run each guard as soon as its variables are definitely bound.

``assert g`` in a pattern body means the guard ``(body) ? g`` around the whole body (LANGUAGE.md
§7), which is always correct but tests g only after everything else matched. This pass moves
each guard down to the earliest point where every variable it reads is *definitely* bound
(§5's threading, with the always-bound parameters of calls from :func:`pypm.check.always_binds`),
so that a failing guard prunes the search early. It runs on checked programs and never changes
the results: guards are local (§6) and a bound variable keeps its value, so testing g earlier
sees the same values. It only descends into operator arguments and ``;``; never into ``∃``
(which could shadow a variable g reads) or into a call's body.
"""

from __future__ import annotations

from dataclasses import replace

from .check import Binds, always_binds, bound_after
from .syntax import Alt, Exists, GExpr, Guard, Op, OpVar, Pattern, Program, Then, guard_free_vars


def place_guards(program: Program) -> Program:
    """The program with every guard moved to the earliest point where it can run."""
    binds = Binds(program, always_binds(program))
    return {name: replace(d, body=_walk(d.body, frozenset(), binds)) for name, d in program.items()}


def _walk(p: Pattern, before: frozenset[str], binds: Binds) -> Pattern:
    """p with the guards inside it placed; ``before`` is what is definitely bound before p."""
    match p:
        case Guard(body, cond):
            return _attach(_walk(body, before, binds), cond, p, before, binds)
        case Op(_, args) | OpVar(_, args):
            bound = before | ({p.var} if isinstance(p, OpVar) else frozenset())
            new = []
            for a in args:
                new.append(_walk(a, bound, binds))
                bound = bound_after(a, bound, binds)
            return replace(p, args=tuple(new))
        case Alt(left, right):
            return replace(p, left=_walk(left, before, binds), right=_walk(right, before, binds))
        case Exists(x, body):
            return replace(p, body=_walk(body, before - {x}, binds))
        case Then(body, x, q):
            after = bound_after(body, before, binds)
            return replace(p, body=_walk(body, before, binds), pat=_walk(q, after, binds))
    return p


def _attach(p: Pattern, cond: GExpr, guard: Guard, before: frozenset[str], binds: Binds) -> Pattern:
    """``p ? cond``, with the guard pushed into p as far as its variables allow."""
    need = guard_free_vars(cond)
    if need <= before:
        return replace(guard, body=p)  # nothing to wait for: test it first
    if isinstance(p, (Op, OpVar)):
        bound = before | ({p.var} if isinstance(p, OpVar) else frozenset())
        if need <= bound:
            return replace(guard, body=p)
        for i, a in enumerate(p.args):
            after = bound_after(a, bound, binds)
            if need <= after:
                args = list(p.args)
                args[i] = _attach(a, cond, guard, bound, binds)
                return replace(p, args=tuple(args))
            bound = after
    elif isinstance(p, Then):
        after_body = bound_after(p.body, before, binds)
        if need <= after_body:
            return replace(p, body=_attach(p.body, cond, guard, before, binds))
        if need <= bound_after(p.pat, after_body, binds):
            return replace(p, pat=_attach(p.pat, cond, guard, after_body, binds))
    return replace(guard, body=p)


__all__ = ["place_guards"]
