"""Guards (LANGUAGE.md §7), evaluated for the semantics apart from :mod:`pypm.lang.guards`.

A small evaluator of the part of the guard language that the conformance generators draw, with
Kleene's three-valued logic: a guard's value is :data:`TRUE`, :data:`FALSE` or :data:`UNKNOWN`,
or its evaluation *fails* (:class:`GuardFailure`: an unbound variable, an index out of range,
wrong types). A guard holds only when it is true.

* atoms: constants, variables, ``t.shape``, ``t.ndim``, ``t.dtype`` of terms, ``e[i]`` with a
  constant index, ``a + b`` and ``a * b`` of numbers (sizes may be symbolic: sympy symbols);
* comparisons, chained left to right as ``(a < b) and (b < c)``: ``==``/``!=`` on any values
  (equality of :mod:`.equality`; a symbolic size equals a number when their difference is 0,
  differs when it is a non-zero number, and is unknown otherwise; a size never equals a
  non-number; tuples element by element, three-valued), ``<``, ``<=``, ``>``, ``>=`` on numbers
  only (symbolic: decided by the sign of a numeric difference, else unknown);
* ``not``, ``and``, ``or`` on truth values, Kleene: ``not unknown`` is unknown, ``false and
  unknown`` false, ``true or unknown`` true, otherwise unknown propagates. Operands run left to
  right and stop at the first false operand of ``and`` (true of ``or``), so a failure in an
  operand that does not run does not count; a failure in one that runs fails the whole guard,
  under ``not`` too.

Symbols carry no assumptions (``sympy.Symbol("s0")``): "sympy cannot decide" then means "the
difference is not a number", which this module decides by expanding the difference.
Anything else (truthiness of non-boolean values, functions, strings in orderings) is outside
this evaluator: :class:`Unsupported`, and the generators never draw it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pypm.lang.syntax import GAttr, GBinary, GCompare, GConst, GExpr, GIndex, GName, GUnary, guard_free_vars
from pypm.lang.terms import TermView

from .equality import equal

TRUE, FALSE = True, False


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


class GuardFailure(Exception):
    """Evaluation failed (the guard does not hold, whatever surrounds the failure)."""


class Unsupported(Exception):
    """A guard outside the part of the language this evaluator knows."""


def _sympy() -> Any:
    import sympy

    return sympy


def _symbolic(x: Any) -> bool:
    if isinstance(x, (bool, int, float, str, tuple, list, TermView)) or x is None:
        return False
    sp = _sympy()
    return isinstance(x, sp.Expr) and not x.is_number


def _number(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) or _symbolic(x)


def _difference(a: Any, b: Any) -> Any:
    """a - b expanded, as a Python number when it is one, else a sympy expression."""
    d = _sympy().expand(a - b)
    if d.is_number:
        return float(d) if not d.is_Integer else int(d)
    return d


def _eq(a: Any, b: Any) -> Any:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        if len(a) != len(b):
            return FALSE
        out: Any = TRUE
        for x, y in zip(a, b):
            r = _eq(x, y)
            if r is FALSE:
                return FALSE
            if r is UNKNOWN:
                out = UNKNOWN
        return out
    if _symbolic(a) or _symbolic(b):
        if not (_number(a) and _number(b)):
            return FALSE
        d = _difference(a, b)
        if isinstance(d, (int, float)):
            return TRUE if d == 0 else FALSE
        return UNKNOWN
    return TRUE if equal(a, b) else FALSE


def _order(op: str, a: Any, b: Any) -> Any:
    if not (_number(a) and _number(b)):
        raise GuardFailure(f"{a!r} {op} {b!r}: orderings compare numbers")
    if _symbolic(a) or _symbolic(b):
        d = _difference(a, b)
        if not isinstance(d, (int, float)):
            return UNKNOWN
        a, b = d, 0
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _compare(op: str, a: Any, b: Any) -> Any:
    if op == "==":
        return _eq(a, b)
    if op == "!=":
        return _not(_eq(a, b))
    if op in ("<", "<=", ">", ">="):
        return _order(op, a, b)
    raise Unsupported(f"comparison {op}")


def _not(t: Any) -> Any:
    return UNKNOWN if t is UNKNOWN else (not t)


def _truth(v: Any) -> Any:
    if v is UNKNOWN or isinstance(v, bool):
        return v
    raise Unsupported(f"the truth of {v!r}")


def value(g: GExpr, env: Mapping[str, Any]) -> Any:
    """The value of a guard expression: a value, a truth value or UNKNOWN; raises GuardFailure."""
    match g:
        case GConst(c):
            return c
        case GName(x):
            if x not in env:
                raise GuardFailure(f"{x} is not bound")
            return env[x]
        case GAttr(obj, attr) if attr in ("shape", "ndim", "dtype"):
            t = value(obj, env)
            if not isinstance(t, TermView):
                raise GuardFailure(f".{attr} of a non-term")
            out = t.shape if attr != "dtype" else t.dtype
            if out is None:
                raise GuardFailure(f"the {attr} of {t.op} is unknown")
            return len(out) if attr == "ndim" else out
        case GIndex(obj, GConst(i)) if isinstance(i, int) and not isinstance(i, bool):
            seq = value(obj, env)
            if not isinstance(seq, (tuple, list)):
                raise GuardFailure("indexing a non-tuple")
            if not -len(seq) <= i < len(seq):
                raise GuardFailure(f"index {i} out of range")
            return seq[i]
        case GUnary("not", operand):
            return _not(_truth(value(operand, env)))
        case GBinary("and", left, right):
            t = _truth(value(left, env))
            if t is FALSE:
                return FALSE
            u = _truth(value(right, env))
            if u is FALSE:
                return FALSE
            return TRUE if t is TRUE and u is TRUE else UNKNOWN
        case GBinary("or", left, right):
            t = _truth(value(left, env))
            if t is TRUE:
                return TRUE
            u = _truth(value(right, env))
            if u is TRUE:
                return TRUE
            return FALSE if t is FALSE and u is FALSE else UNKNOWN
        case GBinary(op, left, right) if op in ("+", "*"):
            a, b = value(left, env), value(right, env)
            if not (_number(a) and _number(b)):
                raise GuardFailure(f"{op} needs numbers")
            out = a + b if op == "+" else a * b
            return _difference(out, 0) if _symbolic(out) or not isinstance(out, (int, float)) else out
        case GCompare(first, rest):
            left = value(first, env)
            out: Any = TRUE
            for op, e in rest:
                right = value(e, env)
                r = _compare(op, left, right)
                if r is FALSE:
                    return FALSE
                if r is UNKNOWN:
                    out = UNKNOWN
                left = right
            return out
    raise Unsupported(f"guard expression {g!r}")


def truth(g: GExpr, env: Mapping[str, Any]) -> Any:
    """TRUE, FALSE or UNKNOWN; raises GuardFailure when evaluation fails."""
    return _truth(value(g, env))


def holds(g: GExpr, env: Mapping[str, Any]) -> bool:
    """⟦g⟧σ = true, as M-Guard reads it: a guard over a variable σ does not bind never holds
    (even where ``True or x == x`` would not read x), nor does a failure or an unknown value."""
    if not guard_free_vars(g) <= env.keys():
        return False
    try:
        return truth(g, env) is TRUE
    except GuardFailure:
        return False


def outcome(g: GExpr, env: Mapping[str, Any]) -> str:
    """``"true"``, ``"false"``, ``"unknown"`` or ``"fails"``."""
    try:
        t = truth(g, env)
    except GuardFailure:
        return "fails"
    return "unknown" if t is UNKNOWN else ("true" if t else "false")


__all__ = ["FALSE", "TRUE", "UNKNOWN", "GuardFailure", "Unsupported", "holds", "outcome", "truth",
           "value"]
