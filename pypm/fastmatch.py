"""A compiled matcher: LANGUAGE.md §4 as closures in continuation-passing style.

The interpreter (:mod:`pypm.match`) is the reference: a generator per step, easy to read and
proved correct in Coq. On big graphs the rewriter calls the matcher at thousands of roots, so
this module compiles each pattern once into nested closures ``m(v, σ, k)`` that call the
continuation ``k(σ', region)`` for each result, in the interpreter's order (left to right,
depth first, the left branch of ``|`` first). A continuation returns True to stop the search
(the rewriter accepted a match), so "the first accepted match" costs no more than it must.

Each case names the rule of §3 it implements, as in :mod:`pypm.match`; the property test
``tests/test_rewrite_fastmatch.py`` checks that both produce the same results in the same order
on random programs, terms and substitutions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .guards import GuardEvalError, evaluate, truth
from .syntax import (
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
    guard_free_vars,
)
from .terms import TermView, values_equal

Subst = dict[str, Any]
Cont = Callable[[Subst, tuple[Any, ...]], bool]
Matcher = Callable[[Any, Subst, Cont], bool]


class Compiler:
    """Compiles patterns over one program Δ; definitions are compiled once, on first call."""

    def __init__(self, program: Program):
        self.program = program
        self._defs: dict[str, Matcher] = {}

    def compile(self, p: Pattern) -> Matcher:
        """The matcher of pattern p: ``m(v, σ, k)`` calls k on each result, stops when k does."""
        match p:
            case Wild():  # M-Wild
                def wild(v: Any, s: Subst, k: Cont) -> bool:
                    return k(s, ())
                return wild
            case Var(x):  # M-Var
                def var(v: Any, s: Subst, k: Cont) -> bool:
                    if x not in s:
                        return k({**s, x: v}, ())
                    return k(s, ()) if values_equal(s[x], v) else False
                return var
            case Lit(lit):  # M-Lit
                def lit_(v: Any, s: Subst, k: Cont) -> bool:
                    if not isinstance(v, TermView) and values_equal(v, lit):
                        return k(s, ())
                    return False
                return lit_
            case Op(f, args):  # M-Op
                chain = self._chain(args)
                n = len(args)

                def op(v: Any, s: Subst, k: Cont) -> bool:
                    if not isinstance(v, TermView) or v.op != f:
                        return False
                    vargs = v.args
                    if n > len(vargs):
                        return False
                    return chain(vargs, 0, s, (v,), k)
                return op
            case OpVar(x, args):  # M-OpVar
                chain = self._chain(args)
                n = len(args)

                def opvar(v: Any, s: Subst, k: Cont) -> bool:
                    if not isinstance(v, TermView) or n > len(v.args):
                        return False
                    if x not in s:
                        return chain(v.args, 0, {**s, x: v.op}, (v,), k)
                    if values_equal(s[x], v.op):
                        return chain(v.args, 0, s, (v,), k)
                    return False
                return opvar
            case Alt(left, right):  # M-AltL, then M-AltR
                ml, mr = self.compile(left), self.compile(right)

                def alt(v: Any, s: Subst, k: Cont) -> bool:
                    return ml(v, s, k) or mr(v, s, k)
                return alt
            case Exists(x, body):  # M-Exists
                mb = self.compile(body)

                def exists(v: Any, s: Subst, k: Cont) -> bool:
                    inner = {y: w for y, w in s.items() if y != x} if x in s else s

                    def restore(out: Subst, region: tuple[Any, ...]) -> bool:
                        if x in out:
                            out = {y: w for y, w in out.items() if y != x}
                        if x in s:
                            out = {**out, x: s[x]}
                        return k(out, region)
                    return mb(v, inner, restore)
                return exists
            case Call(name, xs):  # M-Call, by a frame (as in match.Interpreter._call)
                return self._call(name, xs)
            case Guard(body, cond):  # M-Guard
                mb = self.compile(body)
                fv = guard_free_vars(cond)

                def guard(v: Any, s: Subst, k: Cont) -> bool:
                    def check(out: Subst, region: tuple[Any, ...]) -> bool:
                        if not fv <= out.keys():
                            return False
                        try:
                            ok = truth(evaluate(cond, out))
                        except GuardEvalError:
                            return False
                        return k(out, region) if ok else False
                    return mb(v, s, check)
                return guard
            case Then(body, x, q):  # M-Then
                mb, mq = self.compile(body), self.compile(q)

                def then(v: Any, s: Subst, k: Cont) -> bool:
                    def after(out: Subst, region: tuple[Any, ...]) -> bool:
                        if x not in out:
                            return False
                        return mq(out[x], out, lambda out2, region2: k(out2, region + region2))
                    return mb(v, s, after)
                return then
            case Fail():  # ⊥: no rule
                return lambda v, s, k: False
        raise TypeError(f"not a core pattern: {p!r}")

    def _chain(self, args: tuple[Pattern, ...]) -> Callable[..., bool]:
        """Thread σ through p_i/v_i ... p_n/v_n (M-Op's premises, left to right)."""
        ms = [self.compile(a) for a in args]
        n = len(ms)
        # Arities 0 to 2 (most operators) unrolled: one closure less per argument.
        if n == 0:
            return lambda vargs, i, s, region, k: k(s, region)
        if n == 1:
            m0 = ms[0]
            return lambda vargs, i, s, region, k: m0(vargs[0], s, lambda o, r: k(o, region + r))
        if n == 2:
            m0, m1 = ms

            def chain2(vargs: tuple[Any, ...], i: int, s: Subst, region: tuple[Any, ...], k: Cont) -> bool:
                v1 = vargs[1]
                return m0(vargs[0], s, lambda o, r: m1(v1, o, lambda o2, r2: k(o2, region + r + r2)))
            return chain2

        def chain(vargs: tuple[Any, ...], i: int, s: Subst, region: tuple[Any, ...], k: Cont) -> bool:
            if i == n:
                return k(s, region)
            return ms[i](vargs[i], s, lambda out, r: chain(vargs, i + 1, out, region + r, k))
        return chain

    def _call(self, name: str, xs: tuple[str, ...]) -> Matcher:
        d = self.program.get(name)
        if d is None:
            raise KeyError(f"pattern {name} is not defined")
        params = d.params
        pairs = tuple(zip(params, xs))

        def call(v: Any, s: Subst, k: Cont) -> bool:
            body = self._defs.get(name)
            if body is None:  # compiled on first use, so recursive definitions compile lazily
                self._defs[name] = body = self.compile(d.body)
            frame = {y: s[x] for y, x in pairs if x in s}

            def back(out: Subst, region: tuple[Any, ...]) -> bool:
                result = s
                for y, x in pairs:
                    if y not in out:
                        continue
                    if x in result:
                        if not values_equal(result[x], out[y]):
                            return False
                    else:
                        result = {**result, x: out[y]}
                return k(result, region)
            return body(v, frame, back)
        return call


def first(matcher: Matcher, v: Any, sigma: Subst, accept: Callable[[Subst, tuple[Any, ...]], bool]) -> bool:
    """Run a matcher until ``accept`` returns True for a result; True if one was accepted."""
    return matcher(v, sigma, accept)


def all_results(matcher: Matcher, v: Any, sigma: Subst) -> list[tuple[Subst, tuple[Any, ...]]]:
    """Every result, in order (for tests and ``pypm.match``)."""
    out: list[tuple[Subst, tuple[Any, ...]]] = []

    def collect(s: Subst, region: tuple[Any, ...]) -> bool:
        out.append((s, region))
        return False

    matcher(v, sigma, collect)
    return out


__all__ = ["Compiler", "Matcher", "all_results", "first"]
