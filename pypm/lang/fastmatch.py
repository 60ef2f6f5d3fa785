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

Calls of non-recursive definitions are inlined (M-Call as substitution: the body with its
parameters replaced by the argument variables and every other name renamed apart), which
saves a frame and the copying of bindings in and out at each call. The renamed names contain
``%``, which no pattern variable can, and are dropped from each result at the top (a frame
drops them too, as it drops every local).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .check import call_edges
from .guards import GuardEvalError, evaluate, truth
from .match import Interpreter
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
    rename_guard,
    size,
)
from .terms import TermView, values_equal

Subst = dict[str, Any]
Cont = Callable[[Subst, tuple[Any, ...]], bool]
Matcher = Callable[[Any, Subst, Cont], bool]


FRESH = "%"  # in every name the inliner makes up, and in no pattern variable
INLINE_BUDGET = 4000  # constructors inlined per compiled pattern; calls beyond use frames


class Compiler:
    """Compiles patterns over one program Δ; definitions are compiled once, on first call.
    ``inline=False`` compiles every call as a frame (as the interpreter runs it)."""

    def __init__(self, program: Program, *, inline: bool = True):
        self.program = program
        self._defs: dict[str, Matcher] = {}
        self._recursive = _recursive(program) if inline else None
        self._fresh = 0
        self._budget = INLINE_BUDGET

    def compile(self, p: Pattern) -> Matcher:
        """The matcher of pattern p: ``m(v, σ, k)`` calls k on each result, stops when k does."""
        start = self._fresh
        m = self._compile(p)
        if self._fresh == start:
            return m

        def top(v: Any, s: Subst, k: Cont) -> bool:  # drop the names inlining made up
            return m(v, s, lambda out, region: k({x: w for x, w in out.items() if FRESH not in x},
                                                 region))
        return top

    def _compile(self, p: Pattern) -> Matcher:
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
                ml, mr = self._compile(left), self._compile(right)

                def alt(v: Any, s: Subst, k: Cont) -> bool:
                    return ml(v, s, k) or mr(v, s, k)
                return alt
            case Exists(x, body):  # M-Exists
                mb = self._compile(body)

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
            case Call(name, xs):  # M-Call: inlined when it can be, else by a frame
                inlined = self._inline(name, xs)
                if inlined is not None:
                    return self._compile(inlined)
                return self._call(name, xs)
            case Guard(body, cond):  # M-Guard
                mb = self._compile(body)
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
                mb, mq = self._compile(body), self._compile(q)

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
        ms = [self._compile(a) for a in args]
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
                self._defs[name] = body = self._compile(d.body)
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


    def _inline(self, name: str, xs: tuple[str, ...]) -> Pattern | None:
        """The body of a non-recursive definition with its parameters replaced by ``xs`` and its
        other names renamed apart, or None where a frame is needed: recursive or unknown
        definitions, wrong arity, an argument passed twice (the frame binds the two parameters
        apart, then compares), or the inlining budget spent."""
        if self._recursive is None:
            return None
        d = self.program.get(name)
        if d is None or name in self._recursive or len(xs) != len(d.params) \
                or len(set(xs)) != len(xs):
            return None
        cost = size(d.body)
        if cost > self._budget:
            return None
        self._budget -= cost
        self._fresh += 1
        tag = f"{FRESH}{self._fresh}"
        return _rename(d.body, dict(zip(d.params, xs)), tag, [0])


def _recursive(program: Program) -> frozenset[str]:
    """The definitions that can reach a call of themselves."""
    calls = {name: {c.name for c, _ in call_edges(d.body)} for name, d in program.items()}
    out = set()
    for name in program:
        seen: set[str] = set()
        todo = list(calls[name])
        while todo:
            c = todo.pop()
            if c == name:
                out.add(name)
                break
            if c in seen or c not in calls:
                continue
            seen.add(c)
            todo.extend(calls[c])
    return frozenset(out)


def _rename(p: Pattern, env: dict[str, str], tag: str, count: list[int]) -> Pattern:
    """p with each name looked up in ``env``; a name not there (one the body uses without
    binding) gets ``name + tag``, each ∃ a name of its own (``count`` numbers them). The ∃
    itself is dropped: its name is new and occurs once, so nothing outside its scope sees it,
    and the top drops it from the result."""
    def name(x: str) -> str:
        return env.get(x) or env.setdefault(x, f"{x}{tag}")

    match p:
        case Var(x):
            return Var(name(x), span=p.span)
        case Op(f, args):
            return Op(f, tuple(_rename(a, env, tag, count) for a in args), span=p.span)
        case OpVar(x, args):
            return OpVar(name(x), tuple(_rename(a, env, tag, count) for a in args), span=p.span)
        case Alt(left, right):
            return Alt(_rename(left, env, tag, count), _rename(right, env, tag, count), span=p.span)
        case Exists(x, body):
            count[0] += 1
            return _rename(body, {**env, x: f"{x}{tag}.{count[0]}"}, tag, count)
        case Call(f, xs):
            return Call(f, tuple(name(x) for x in xs), span=p.span)
        case Guard(body, cond):
            renamed = {x: name(x) for x in guard_free_vars(cond)}
            return Guard(_rename(body, env, tag, count), rename_guard(cond, renamed), span=p.span)
        case Then(body, x, q):
            return Then(_rename(body, env, tag, count), name(x), _rename(q, env, tag, count), span=p.span)
    return p  # Wild, Lit, Fail


def _collector() -> tuple[list[tuple[Subst, tuple[Any, ...]]], Cont]:
    """A list and a continuation that appends every result to it (and never stops)."""
    out: list[tuple[Subst, tuple[Any, ...]]] = []

    def collect(s: Subst, region: tuple[Any, ...]) -> bool:
        out.append((s, region))
        return False

    return out, collect


def all_results(matcher: Matcher, v: Any, sigma: Subst) -> list[tuple[Subst, tuple[Any, ...]]]:
    """Every result of the compiled matcher alone, in order (no fallback for deep terms: what
    the tests hold against the interpreter; see :func:`every_result`)."""
    out, collect = _collector()
    matcher(v, sigma, collect)
    return out


def feed(matcher: Matcher, program: Program, call: Pattern, v: Any, sigma: Subst,
         accept: Callable[[Subst, tuple[Any, ...]], bool], restart: Callable[[], None]) -> None:
    """Give ``accept`` each result of ``call`` on ``v`` in order, until it returns True. The
    compiled ``matcher`` recurses in Python; on a term too deep for the interpreter's stack, the
    match starts over in the generator interpreter (:class:`~pypm.lang.match.Interpreter`,
    which has no such limit, and gives the same results in the same order), after ``restart``
    has let the caller forget the results it was given."""
    try:
        matcher(v, dict(sigma), accept)
        return
    except RecursionError:
        pass
    restart()
    for s, region in Interpreter(program).run(call, v, dict(sigma)):
        if accept(s, region):
            return


def every_result(matcher: Matcher, program: Program, call: Pattern, v: Any,
                 sigma: Subst) -> list[tuple[Subst, tuple[Any, ...]]]:
    """Every result of ``call`` on ``v``, in order (:func:`feed`: deep terms included)."""
    out, collect = _collector()
    feed(matcher, program, call, v, sigma, collect, out.clear)
    return out


__all__ = ["Compiler", "Matcher", "all_results", "every_result", "feed"]
