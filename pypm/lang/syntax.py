"""The core calculus of LANGUAGE.md §2 as frozen dataclasses, plus the guard expression AST.

The surface syntax (§7) is desugared into these nodes by :mod:`pypm.parse`; the interpreter
(:mod:`pypm.match`), the well-formedness checker (:mod:`pypm.check`), the executable
declarative semantics (``pypm.semantics``) and the Coq development all speak about exactly
these constructors. Every node carries an optional source :class:`~pypm.errors.Span`, excluded
from equality, so two patterns that differ only in where they were written compare equal.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import Span

# ---------------------------------------------------------------------------------------------
# Patterns (LANGUAGE.md §2)


def _span() -> Any:
    return field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Wild:
    """``_``: matches any value (M-Wild)."""

    span: Span | None = _span()


@dataclass(frozen=True)
class Var:
    """``x``: binds any value; a second occurrence must be equal (M-Var)."""

    name: str
    span: Span | None = _span()


@dataclass(frozen=True)
class Lit:
    """``l``: an attribute literal (int, float, bool, str, None, dtype, tuple) (M-Lit)."""

    value: Any
    span: Span | None = _span()


@dataclass(frozen=True)
class Op:
    """``f(p1..pn)``: operator f with at least n arguments, the first n matching (M-Op)."""

    name: str
    args: tuple[Pattern, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class OpVar:
    """``x(p1..pn)``: x binds the operator name as the string "f" (M-OpVar)."""

    var: str
    args: tuple[Pattern, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Alt:
    """``p1 | p2``: every match of p1, then every match of p2 (M-AltL, M-AltR)."""

    left: Pattern
    right: Pattern
    span: Span | None = _span()


@dataclass(frozen=True)
class Exists:
    """``∃x. p``: a local variable, invisible outside p (M-Exists)."""

    var: str
    body: Pattern
    span: Span | None = _span()


@dataclass(frozen=True)
class Call:
    """``P(x1..xn)``: a call of a definition; arguments are variables (M-Call)."""

    name: str
    args: tuple[str, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Guard:
    """``p ? g``: the matches of p for which the guard g holds (M-Guard)."""

    body: Pattern
    cond: GExpr
    span: Span | None = _span()


@dataclass(frozen=True)
class Then:
    """``p ; x ≍ q``: after p, match the value bound to x against q (M-Then)."""

    body: Pattern
    var: str
    pat: Pattern
    span: Span | None = _span()


@dataclass(frozen=True)
class Fail:
    """``⊥``: no match (there is no rule for it)."""

    span: Span | None = _span()


Pattern = Wild | Var | Lit | Op | OpVar | Alt | Exists | Call | Guard | Then | Fail


@dataclass(frozen=True)
class Definition:
    """``P(y1..yn) := body``. ``op_params`` are the parameters annotated ``: Op``."""

    name: str
    params: tuple[str, ...]
    body: Pattern
    op_params: frozenset[str] = frozenset()
    doc: str | None = None
    span: Span | None = _span()


# A program Δ: definitions by name. Kept as a plain dict so that modules can share definitions.
Program = dict[str, Definition]


# ---------------------------------------------------------------------------------------------
# Guard expressions (a small language of their own; never Python eval)


@dataclass(frozen=True)
class GName:
    """A pattern variable, a shape dimension named by ``B, H, S, D = q.shape``, or a constant."""

    name: str
    span: Span | None = _span()


@dataclass(frozen=True)
class GConst:
    """A literal: number, string, bool, None, dtype."""

    value: Any
    span: Span | None = _span()


@dataclass(frozen=True)
class GAttr:
    """``e.attr``: attributes ``shape dtype ndim device op`` (plus ``is_floating_point`` etc.)."""

    obj: GExpr
    attr: str
    span: Span | None = _span()


@dataclass(frozen=True)
class GIndex:
    """``e[i]`` or ``e[a:b]`` (``index`` is a GSlice for slices)."""

    obj: GExpr
    index: GExpr
    span: Span | None = _span()


@dataclass(frozen=True)
class GSlice:
    """``a:b:c`` inside an index; missing parts are None."""

    lower: GExpr | None
    upper: GExpr | None
    step: GExpr | None
    span: Span | None = _span()


@dataclass(frozen=True)
class GCall:
    """``f(args, k=v)`` for a fixed set of functions plus those registered from Python."""

    func: str
    args: tuple[GExpr, ...]
    kwargs: tuple[tuple[str, GExpr], ...] = ()
    span: Span | None = _span()


@dataclass(frozen=True)
class GUnary:
    """``-e``, ``+e``, ``not e``."""

    op: str
    operand: GExpr
    span: Span | None = _span()


@dataclass(frozen=True)
class GBinary:
    """Arithmetic ``+ - * / // % **`` and the short-circuit ``and`` / ``or``."""

    op: str
    left: GExpr
    right: GExpr
    span: Span | None = _span()


@dataclass(frozen=True)
class GCompare:
    """A chained comparison ``a < b <= c`` with ``== != < <= > >= in not-in is is-not``."""

    first: GExpr
    rest: tuple[tuple[str, GExpr], ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class GTuple:
    """``(a, b)`` or ``[a, b]`` in a guard; evaluates to a tuple."""

    items: tuple[GExpr, ...]
    span: Span | None = _span()


GExpr = GName | GConst | GAttr | GIndex | GSlice | GCall | GUnary | GBinary | GCompare | GTuple


# ---------------------------------------------------------------------------------------------
# Free variables


def guard_free_vars(g: GExpr) -> frozenset[str]:
    """The names a guard reads (``fv(g)`` of §5), constants and function names excluded."""
    match g:
        case GName(name):
            return frozenset((name,))
        case GConst():
            return frozenset()
        case GAttr(obj) | GUnary(_, obj):
            return guard_free_vars(obj)
        case GIndex(obj, index):
            return guard_free_vars(obj) | guard_free_vars(index)
        case GSlice(lo, hi, st):
            return frozenset().union(*(guard_free_vars(e) for e in (lo, hi, st) if e is not None))
        case GCall(_, args, kwargs):
            return frozenset().union(*(guard_free_vars(a) for a in args),
                                     *(guard_free_vars(e) for _, e in kwargs))
        case GBinary(_, left, right):
            return guard_free_vars(left) | guard_free_vars(right)
        case GCompare(first, rest):
            return guard_free_vars(first).union(*(guard_free_vars(e) for _, e in rest))
        case GTuple(items):
            return frozenset().union(*(guard_free_vars(e) for e in items))
    raise TypeError(f"not a guard expression: {g!r}")


def rename_guard(g: GExpr, env: Mapping[str, str]) -> GExpr:
    """g with every variable x replaced by env[x] (names not in env are kept): the guard part
    of M-Call's substitution body[ȳ := x̄]."""

    def go(e: GExpr | None) -> Any:
        return None if e is None else rename_guard(e, env)

    match g:
        case GName(name):
            return GName(env.get(name, name), span=g.span)
        case GConst():
            return g
        case GAttr(obj, attr):
            return GAttr(go(obj), attr, span=g.span)
        case GIndex(obj, index):
            return GIndex(go(obj), go(index), span=g.span)
        case GSlice(lo, hi, st):
            return GSlice(go(lo), go(hi), go(st), span=g.span)
        case GCall(func, args, kwargs):
            return GCall(func, tuple(go(a) for a in args), tuple((k, go(e)) for k, e in kwargs),
                         span=g.span)
        case GUnary(op, operand):
            return GUnary(op, go(operand), span=g.span)
        case GBinary(op, left, right):
            return GBinary(op, go(left), go(right), span=g.span)
        case GCompare(first, rest):
            return GCompare(go(first), tuple((op, go(e)) for op, e in rest), span=g.span)
        case GTuple(items):
            return GTuple(tuple(go(e) for e in items), span=g.span)
    raise TypeError(f"not a guard expression: {g!r}")


def guard_subexprs(g: GExpr) -> Iterator[GExpr]:
    """g and every guard expression inside it, parents first."""
    yield g
    match g:
        case GAttr(obj) | GUnary(_, obj):
            yield from guard_subexprs(obj)
        case GIndex(obj, index):
            yield from guard_subexprs(obj)
            yield from guard_subexprs(index)
        case GSlice(lo, hi, st):
            for e in (lo, hi, st):
                if e is not None:
                    yield from guard_subexprs(e)
        case GCall(_, args, kwargs):
            for e in (*args, *(e for _, e in kwargs)):
                yield from guard_subexprs(e)
        case GBinary(_, left, right):
            yield from guard_subexprs(left)
            yield from guard_subexprs(right)
        case GCompare(first, rest):
            yield from guard_subexprs(first)
            for _, e in rest:
                yield from guard_subexprs(e)
        case GTuple(items):
            for e in items:
                yield from guard_subexprs(e)


def pattern_vars(p: Pattern) -> frozenset[str]:
    """Every variable name occurring in p (bound, compared, local, passed to calls, in guards)."""
    match p:
        case Wild() | Lit() | Fail():
            return frozenset()
        case Var(x):
            return frozenset((x,))
        case Op(_, args):
            return frozenset().union(*(pattern_vars(a) for a in args))
        case OpVar(x, args):
            return frozenset((x,)).union(*(pattern_vars(a) for a in args))
        case Alt(left, right):
            return pattern_vars(left) | pattern_vars(right)
        case Exists(x, body):
            return pattern_vars(body) | {x}
        case Call(_, args):
            return frozenset(args)
        case Guard(body, cond):
            return pattern_vars(body) | guard_free_vars(cond)
        case Then(body, x, q):
            return pattern_vars(body) | {x} | pattern_vars(q)
    raise TypeError(f"not a pattern: {p!r}")


def free_vars(p: Pattern) -> frozenset[str]:
    """Variables of p that are not local to it (∃-bound names removed within their scope)."""
    match p:
        case Exists(x, body):
            return free_vars(body) - {x}
        case Op(_, args):
            return frozenset().union(*(free_vars(a) for a in args))
        case OpVar(x, args):
            return frozenset((x,)).union(*(free_vars(a) for a in args))
        case Alt(left, right):
            return free_vars(left) | free_vars(right)
        case Guard(body, cond):
            return free_vars(body) | guard_free_vars(cond)
        case Then(body, x, q):
            return free_vars(body) | {x} | free_vars(q)
    return pattern_vars(p)


def size(p: Pattern) -> int:
    """Number of constructors in p (used by the fuel bound of §6)."""
    match p:
        case Op(_, args) | OpVar(_, args):
            return 1 + sum(size(a) for a in args)
        case Alt(left, right):
            return 1 + size(left) + size(right)
        case Exists(_, body) | Guard(body, _):
            return 1 + size(body)
        case Then(body, _, q):
            return 1 + size(body) + size(q)
    return 1


def show(p: Pattern) -> str:
    """Core-calculus notation of p, for messages and counterexamples (``∃x.``, ``;``, ``≍``, ``?``)."""
    match p:
        case Wild():
            return "_"
        case Var(x):
            return x
        case Lit(v):
            return repr(v)
        case Op(f, args):
            return f"{f}({', '.join(show(a) for a in args)})"
        case OpVar(x, args):
            return f"{x}({', '.join(show(a) for a in args)})"
        case Alt(left, right):
            return f"({show(left)} | {show(right)})"
        case Exists(x, body):
            return f"(∃{x}. {show(body)})"
        case Call(name, args):
            return f"{name}({', '.join(args)})"
        case Guard(body, cond):
            return f"({show(body)} ? {show_guard(cond)})"
        case Then(body, x, q):
            return f"({show(body)} ; {x} ≍ {show(q)})"
        case Fail():
            return "⊥"
    raise TypeError(f"not a pattern: {p!r}")


def show_guard(g: GExpr) -> str:
    """Python-like text of a guard expression."""
    match g:
        case GName(name):
            return name
        case GConst(value):
            return repr(value)
        case GAttr(obj, attr):
            return f"{show_guard(obj)}.{attr}"
        case GIndex(obj, index):
            return f"{show_guard(obj)}[{show_guard(index)}]"
        case GSlice(lo, hi, st):
            parts = ["" if e is None else show_guard(e) for e in (lo, hi)]
            if st is not None:
                parts.append(show_guard(st))
            return ":".join(parts)
        case GCall(func, args, kwargs):
            inner = [show_guard(a) for a in args] + [f"{k}={show_guard(e)}" for k, e in kwargs]
            return f"{func}({', '.join(inner)})"
        case GUnary(op, operand):
            return f"({op} {show_guard(operand)})" if op == "not" else f"{op}{show_guard(operand)}"
        case GBinary(op, left, right):
            return f"({show_guard(left)} {op} {show_guard(right)})"
        case GCompare(first, rest):
            return " ".join([show_guard(first)] + [f"{op} {show_guard(e)}" for op, e in rest])
        case GTuple(items):
            return "(" + ", ".join(show_guard(e) for e in items) + ("," if len(items) == 1 else "") + ")"
    raise TypeError(f"not a guard expression: {g!r}")
