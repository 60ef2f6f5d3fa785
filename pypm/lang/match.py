"""The interpreter: the algorithmic semantics of LANGUAGE.md §4, as a lazy generator.

``interpret(program, p, v, σ)`` yields every result of ``match(p, v, σ)`` in the order of §4
(left to right, depth first, the left branch of ``|`` first), without computing the ones after
the result the caller stops at. Each result carries its bindings and its *region*: the terms
consumed by operator patterns, which the rewriter needs for its safety check.

Each branch names the rule of the declarative semantics (§3) it implements; soundness and
completeness against those rules are property-tested in ``pypm.semantics`` and proved for the
Coq model of this function in ``coq/InterpProof.v``. Optimisations (root-op indexes, compiled
matchers) live beside this module and are tested against it; keep this one small.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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


@dataclass(frozen=True)
class Match:
    """One result: ``bindings`` (variable name → value) and ``region`` (terms consumed by
    operator patterns, in the order they were matched, root first). ``root`` is the value the
    pattern matched and ``pattern`` the name of the definition, when known."""

    bindings: Mapping[str, Any]
    region: tuple[Any, ...] = ()
    root: Any = None
    pattern: str | None = field(default=None, compare=False)

    def __getitem__(self, name: str) -> Any:
        return self.bindings[name]


class Tracer(Protocol):
    """Receives each failing step (for ``pypm.explain``); the interpreter never needs one."""

    def fail(self, p: Pattern, v: Any, sigma: Subst, reason: str, **info: Any) -> None: ...


class Interpreter:
    """``match(p, v, σ)`` over a program Δ. Stateless apart from the program and a tracer."""

    def __init__(self, program: Program, tracer: Tracer | None = None):
        self.program = program
        self.tracer = tracer

    def _fail(self, p: Pattern, v: Any, sigma: Subst, reason: str, **info: Any) -> None:
        if self.tracer is not None:
            self.tracer.fail(p, v, sigma, reason, **info)

    def run(self, p: Pattern, v: Any, sigma: Subst) -> Iterator[tuple[Subst, tuple[Any, ...]]]:
        """Yield (σ', region) for each result of match(p, v, σ), in §4 order."""
        match p:
            case Wild():  # M-Wild
                yield sigma, ()
            case Var(x):  # M-Var: bind, or compare with the earlier binding (non-linearity)
                if x not in sigma:
                    yield {**sigma, x: v}, ()
                elif values_equal(sigma[x], v):
                    yield sigma, ()
                else:
                    self._fail(p, v, sigma, "nonlinear", var=x, expected=sigma[x])
            case Lit(lit):  # M-Lit
                if not isinstance(v, TermView) and values_equal(v, lit):
                    yield sigma, ()
                else:
                    self._fail(p, v, sigma, "literal", expected=lit)
            case Op(f, args):  # M-Op: same operator, at least as many arguments (prefix arity)
                if not isinstance(v, TermView) or v.op != f:
                    self._fail(p, v, sigma, "operator", expected=f)
                elif len(args) > len(v.args):
                    self._fail(p, v, sigma, "arity", expected=len(args))
                else:
                    yield from self._args(args, v.args, 0, sigma, (v,))
            case OpVar(x, args):  # M-OpVar: x binds the operator name "f"
                if not isinstance(v, TermView) or len(args) > len(v.args):
                    self._fail(p, v, sigma, "operator" if not isinstance(v, TermView) else "arity",
                               expected=len(args))
                elif x not in sigma:
                    yield from self._args(args, v.args, 0, {**sigma, x: v.op}, (v,))
                elif values_equal(sigma[x], v.op):
                    yield from self._args(args, v.args, 0, sigma, (v,))
                else:
                    self._fail(p, v, sigma, "opvar", var=x, expected=sigma[x])
            case Alt(left, right):  # M-AltL, then M-AltR
                yield from self.run(left, v, sigma)
                yield from self.run(right, v, sigma)
            case Exists(x, body):  # M-Exists: match under σ \ x, then restore x as it was
                inner = {k: w for k, w in sigma.items() if k != x}
                for out, region in self.run(body, v, inner):
                    out = {k: w for k, w in out.items() if k != x}
                    if x in sigma:
                        out[x] = sigma[x]
                    yield out, region
            case Call(name, xs):  # M-Call
                yield from self._call(p, name, xs, v, sigma)
            case Guard(body, cond):  # M-Guard
                for out, region in self.run(body, v, sigma):
                    if self._holds(p, cond, v, out):
                        yield out, region
            case Then(body, x, q):  # M-Then: after body, match σ'(x) against q
                for out, region in self.run(body, v, sigma):
                    if x not in out:
                        self._fail(p, v, out, "unbound", var=x)
                        continue
                    for out2, region2 in self.run(q, out[x], out):
                        yield out2, region + region2
            case Fail():  # ⊥: no rule
                self._fail(p, v, sigma, "fail")
            case _:
                raise TypeError(f"not a core pattern: {p!r}")

    def _args(self, ps: tuple[Pattern, ...], vs: tuple[Any, ...], i: int, sigma: Subst,
              region: tuple[Any, ...]) -> Iterator[tuple[Subst, tuple[Any, ...]]]:
        """Thread σ through p_i/v_i ... p_n/v_n (M-Op's premises, left to right)."""
        if i == len(ps):
            yield sigma, region
            return
        for out, r in self.run(ps[i], vs[i], sigma):
            yield from self._args(ps, vs, i + 1, out, region + r)

    def _call(self, p: Call, name: str, xs: tuple[str, ...], v: Any,
              sigma: Subst) -> Iterator[tuple[Subst, tuple[Any, ...]]]:
        """M-Call, by a frame: the body runs under {y_i ↦ σ(x_i)}, and its bindings of the
        parameters flow back to the arguments. Equivalent to matching body[ȳ := x̄] with locals
        renamed apart, since the body's locals are ∃-bound and never escape."""
        d = self.program.get(name)
        if d is None:
            raise KeyError(f"pattern {name} is not defined")
        frame = {y: sigma[x] for y, x in zip(d.params, xs) if x in sigma}
        for out, region in self.run(d.body, v, frame):
            result = sigma
            for y, x in zip(d.params, xs):
                if y not in out:
                    continue
                if x in result:
                    if not values_equal(result[x], out[y]):
                        self._fail(p, v, result, "nonlinear", var=x, expected=result[x])
                        break
                else:
                    result = {**result, x: out[y]}
            else:
                yield result, region

    def _holds(self, p: Guard, cond: Any, v: Any, sigma: Subst) -> bool:
        """⟦g⟧σ; a guard over an unbound variable, an evaluation error or an undecided
        symbolic comparison is false (and reported to the tracer)."""
        missing = guard_free_vars(cond) - sigma.keys()
        if missing:
            self._fail(p, v, sigma, "guard-unbound", vars=sorted(missing))
            return False
        try:
            ok = truth(evaluate(cond, sigma))
        except GuardEvalError as e:
            self._fail(p, v, sigma, "guard-error", error=str(e))
            return False
        if not ok:
            self._fail(p, v, sigma, "guard")
        return ok


def interpret(program: Program, p: Pattern, v: Any, sigma: Mapping[str, Any] | None = None,
              *, tracer: Tracer | None = None) -> Iterator[Match]:
    """Every result of match(p, v, σ) (LANGUAGE.md §4), lazily and in order."""
    for out, region in Interpreter(program, tracer).run(p, v, dict(sigma or {})):
        yield Match(out, region, v)


__all__ = ["Interpreter", "Match", "Tracer", "interpret"]
