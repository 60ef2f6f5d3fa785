"""The guard evaluator: a small expression language of its own (no ``eval``/``exec``).

Guards read the values bound by a pattern: numbers, strings, tuples, dtypes and the types of
terms (``.shape .dtype .ndim .device .op``). Shapes may hold sympy expressions for symbolic
sizes. Guard logic is three-valued (LANGUAGE.md §7): a comparison that sympy cannot decide is
:data:`UNKNOWN`; ``and``, ``or`` and ``not`` follow Kleene's tables (``false and unknown`` is
false, ``true or unknown`` is true, ``not unknown`` is unknown), and a guard *holds* only when
its value is true. Evaluation runs left to right and stops at the first operand of ``and``
(``or``) that is false (true), as Python does; a failure in an operand that runs (wrong types,
an index out of range, a limit exceeded) makes the whole guard fail, so it does not hold,
whatever surrounds the failure (``not`` does not turn a failure into success).

Functions are a fixed set plus those a user registers with :func:`guard_function`; attributes are
a fixed whitelist, so a guard cannot reach Python internals (``x.__class__`` is rejected when the
pattern is checked). Each evaluation is bounded (:mod:`pypm.lang.limits`): integers, strings,
tuples and symbolic expressions it builds have capped sizes, and its total work is budgeted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .guard_values import (
    UNKNOWN,
    GuardEvalError,
    arith,
    checked,
    cost,
    is_number,
    is_symbolic,
    shown,
    sympy_module,
    to_number,
)
from .limits import (
    MAX_GUARD_STEPS,
    SYMBOLIC_COST,
)
from .syntax import (
    GAttr,
    GBinary,
    GCall,
    GCompare,
    GConst,
    GExpr,
    GIndex,
    GName,
    GSlice,
    GTuple,
    GUnary,
)
from .terms import TermView, values_equal

# Attributes a guard may read. On terms: their type and operator; on dtypes and devices: a few
# plain properties. Anything else is rejected by the checker.
TERM_ATTRS = frozenset({"shape", "dtype", "ndim", "device", "op"})
DTYPE_ATTRS = frozenset({"is_floating_point", "is_complex", "is_signed", "itemsize"})
DEVICE_ATTRS = frozenset({"type", "index"})
ALLOWED_ATTRS = TERM_ATTRS | DTYPE_ATTRS | DEVICE_ATTRS


# ---------------------------------------------------------------------------------------------
# Three-valued comparisons (also used by rules: None stands for "undecided" there)


def eq3(a: Any, b: Any) -> bool | None:
    """Three-valued equality: True, False, or None when sympy cannot decide."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        if len(a) != len(b):
            return False
        result: bool | None = True
        for x, y in zip(a, b):
            r = eq3(x, y)
            if r is False:
                return False
            if r is None:
                result = None
        return result
    if is_symbolic(a) or is_symbolic(b):
        if not (is_number(a) and is_number(b)):
            return False  # a size is never a string, a tuple, a dtype or a term
        try:
            d = sympy_module().simplify(a - b)
        except (TypeError, ValueError):
            return None
        if d == 0:
            return True
        return False if d.is_zero is False else None
    return values_equal(to_number(a), to_number(b))


def _order3(op: str, a: Any, b: Any) -> bool | None:
    if is_symbolic(a) or is_symbolic(b):
        if not (is_number(a) and is_number(b)):
            raise GuardEvalError(f"cannot compare {shown(a)} {op} {shown(b)}")
        sp = sympy_module()
        rel = {"<": sp.Lt, "<=": sp.Le, ">": sp.Gt, ">=": sp.Ge}[op]
        try:
            r = rel(a, b)
        except TypeError as e:
            raise GuardEvalError(f"cannot compare {shown(a)} {op} {shown(b)}") from e
        if r is sp.true or r is True:
            return True
        if r is sp.false or r is False:
            return False
        try:
            r = rel(sp.simplify(a - b), 0)
        except TypeError:
            return None
        return True if r is sp.true else False if r is sp.false else None
    a, b = to_number(a), to_number(b)
    if isinstance(a, (TermView, type(None))) or isinstance(b, (TermView, type(None))):
        raise GuardEvalError(f"cannot compare {shown(a)} {op} {shown(b)}")
    try:
        return {"<": lambda: a < b, "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b}[op]()
    except TypeError as e:
        raise GuardEvalError(f"cannot compare {shown(a)} {op} {shown(b)}") from e


def compare3(op: str, a: Any, b: Any) -> bool | None:
    """One comparison of a chain, three-valued (None: undecided)."""
    if op == "==":
        return eq3(a, b)
    if op == "!=":
        r = eq3(a, b)
        return None if r is None else not r
    if op in ("in", "not in"):
        if not isinstance(b, (tuple, list, str)):
            raise GuardEvalError(f"`in` needs a tuple or string on the right, not {shown(b)}")
        if isinstance(b, str):
            if not isinstance(a, str):
                raise GuardEvalError(f"`in` a string needs a string on the left, not {shown(a)}")
            r: bool | None = a in b
        else:
            rs = [eq3(a, x) for x in b]
            r = True if True in rs else (None if None in rs else False)
        if r is None:
            return None
        return r if op == "in" else not r
    if op in ("is", "is not"):
        if a is None or b is None:
            r = a is None and b is None
        else:
            r = eq3(a, b)
            if r is None:
                return None
        return r if op == "is" else not r
    return _order3(op, a, b)


# ---------------------------------------------------------------------------------------------
# Truth values


def truth3(x: Any) -> bool | None:
    """The three-valued truth of a guard value: True, False, or None when undecided."""
    if x is UNKNOWN:
        return None
    if x is None:
        return False
    if isinstance(x, (bool, int, float, str, tuple, list)):
        return bool(x)
    if isinstance(x, TermView):
        return True
    sp = sympy_module()
    if x is sp.true:
        return True
    if x is sp.false:
        return False
    if isinstance(x, sp.Basic):
        zero = eq3(x, 0)
        return None if zero is None else not zero
    return True


def truth(x: Any) -> bool:
    """Whether a guard with value x holds: only a true value does (an undecided one does not)."""
    return truth3(x) is True


def _value3(b: bool | None) -> Any:
    return UNKNOWN if b is None else b


# ---------------------------------------------------------------------------------------------
# Built-in functions


def _isclose(a: Any, b: Any, rel_tol: float = 1e-6, abs_tol: float = 0.0) -> Any:
    a, b = to_number(a), to_number(b)
    if is_symbolic(a) or is_symbolic(b):
        if not (is_number(a) and is_number(b)):
            raise GuardEvalError(f"isclose needs numbers, not {shown(a)} and {shown(b)}")
        sp = sympy_module()
        d = sp.simplify(a - b)
        if d == 0:
            return True
        if not d.is_number:
            return UNKNOWN
        a, b = float(sp.N(a)), float(sp.N(b))
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or isinstance(a, bool) \
            or isinstance(b, bool):
        raise GuardEvalError(f"isclose needs numbers, not {shown(a)} and {shown(b)}")
    try:
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
    except (TypeError, OverflowError) as e:
        raise GuardEvalError(f"isclose({shown(a)}, {shown(b)}): {e}") from e


def _sqrt(x: Any) -> Any:
    if is_symbolic(x):
        return sympy_module().sqrt(x)
    x = to_number(x)
    if not isinstance(x, (int, float)) or isinstance(x, bool) or x < 0:
        raise GuardEvalError(f"sqrt needs a non-negative number, not {shown(x)}")
    try:
        return math.sqrt(x)
    except OverflowError as e:
        raise GuardEvalError(f"sqrt({shown(x)}): {e}") from e


def _numeric(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        try:
            return f(*args)
        except (TypeError, ValueError, OverflowError) as e:
            raise GuardEvalError(f"{name}({', '.join(map(shown, args))}): {e}") from e

    return wrapped


def _prod(xs: Any) -> Any:
    out: Any = 1
    for x in xs:
        out = arith("*", out, x)
    return out


def _all3(xs: Any) -> Any:
    result: bool | None = True
    for x in xs:
        t = truth3(x)
        if t is False:
            return False
        if t is None:
            result = None
    return _value3(result)


def _any3(xs: Any) -> Any:
    result: bool | None = False
    for x in xs:
        t = truth3(x)
        if t is True:
            return True
        if t is None:
            result = None
    return _value3(result)


def _int(x: Any) -> int:
    x = to_number(x)
    if isinstance(x, str) and len(x) > 1000:
        raise GuardEvalError(f"int() of {shown(x)}: too long")
    return int(x)


BUILTINS: dict[str, Callable[..., Any]] = {
    "len": _numeric("len", len),
    "abs": _numeric("abs", abs),
    "min": _numeric("min", min),
    "max": _numeric("max", max),
    "sqrt": _sqrt,
    "isclose": _isclose,
    "all": _all3,
    "any": _any3,
    "int": _numeric("int", _int),
    "float": _numeric("float", lambda x: float(to_number(x))),
    "prod": _numeric("prod", _prod),
    "is_term": lambda x: isinstance(x, TermView),
}

_registered: dict[str, Callable[..., Any]] = {}


def guard_function(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Register a Python function that guards may call by name.

    >>> @guard_function
    ... def divisible(a, b): return a % b == 0

    The function receives evaluated values (ints, sympy expressions, terms, dtypes) and returns
    a value; an exception it raises makes the guard fail (so it does not hold). Register before
    the patterns that use it are checked.
    """

    def register(f: Callable[..., Any]) -> Callable[..., Any]:
        key = name or f.__name__
        if key in BUILTINS:
            from ..errors import GuardError

            raise GuardError(f"cannot register guard function {key!r}: a built-in has that name")
        _registered[key] = f
        return f

    return register(fn) if fn is not None else register


def known_functions() -> frozenset[str]:
    """Names a guard may call now: the built-ins and the registered functions."""
    return frozenset(BUILTINS) | frozenset(_registered)


def _lookup(name: str) -> Callable[..., Any]:
    f = _registered.get(name) or BUILTINS.get(name)
    if f is None:
        raise GuardEvalError(f"unknown guard function {name!r}")
    return f


def _attr(obj: Any, attr: str) -> Any:
    if isinstance(obj, TermView):
        if attr not in TERM_ATTRS:
            raise GuardEvalError(f"terms have no attribute {attr!r}")
        val = getattr(obj, attr)
        if val is None and attr != "op":
            raise GuardEvalError(f"the {attr} of term {obj.op} is unknown")
        return val
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(obj, torch.dtype) and attr in DTYPE_ATTRS:
        return getattr(obj, attr)
    if torch is not None and isinstance(obj, torch.device) and attr in DEVICE_ATTRS:
        return getattr(obj, attr)
    if isinstance(obj, str) and attr == "type":  # devices given as strings: "cuda:0".type
        return obj.split(":")[0]
    raise GuardEvalError(f"{shown(obj)} has no attribute {attr!r} a guard may read")


# ---------------------------------------------------------------------------------------------
# Evaluation


class _Evaluation:
    """One evaluation of a guard: the bindings and the remaining work budget."""

    def __init__(self, env: Mapping[str, Any], steps: int):
        self.env = env
        self.steps = steps

    def charge(self, n: int = 1) -> None:
        self.steps -= n
        if self.steps < 0:
            raise GuardEvalError("the guard needs more work than a guard may do "
                                 f"({MAX_GUARD_STEPS} steps)")

    def bool3(self, g: GExpr) -> bool | None:
        v = self.value(g)
        if is_symbolic(v):
            self.charge(SYMBOLIC_COST)
        return truth3(v)

    def value(self, g: GExpr) -> Any:
        self.charge()
        match g:
            case GConst(value):
                return value
            case GName(name):
                if name not in self.env:
                    raise GuardEvalError(f"{name} is not bound")
                return self.env[name]
            case GAttr(obj, attr):
                return _attr(self.value(obj), attr)
            case GIndex(obj, GSlice(lo, hi, st)):
                seq = self.value(obj)
                parts = [None if e is None else to_number(self.value(e)) for e in (lo, hi, st)]
                if not isinstance(seq, (tuple, list, str)) or not all(
                        p is None or (isinstance(p, int) and not isinstance(p, bool)) for p in parts):
                    raise GuardEvalError(f"cannot slice {shown(seq)} with {parts}")
                self.charge(len(seq))
                try:
                    out = seq[slice(*parts)]
                except (TypeError, ValueError) as e:
                    raise GuardEvalError(f"cannot slice {shown(seq)}: {e}") from e
                return out if isinstance(out, str) else tuple(out)
            case GIndex(obj, index):
                seq, i = self.value(obj), to_number(self.value(index))
                if not isinstance(seq, (tuple, list, str)) or not isinstance(i, int) or isinstance(i, bool):
                    raise GuardEvalError(f"cannot index {shown(seq)} with {shown(i)}")
                if not -len(seq) <= i < len(seq):
                    raise GuardEvalError(f"index {shown(i)} out of range for {shown(seq)}")
                return seq[i]
            case GTuple(items):
                return tuple(self.value(e) for e in items)
            case GUnary("not", operand):
                t = self.bool3(operand)
                return UNKNOWN if t is None else not t
            case GUnary(op, operand):
                return self.unary(op, self.value(operand))
            case GBinary("and", left, right):  # Kleene: false wins, then unknown
                t = self.bool3(left)
                if t is False:
                    return False
                u = self.bool3(right)
                return False if u is False else (True if t and u else UNKNOWN)
            case GBinary("or", left, right):  # Kleene: true wins, then unknown
                t = self.bool3(left)
                if t is True:
                    return True
                u = self.bool3(right)
                return True if u is True else (False if t is False and u is False else UNKNOWN)
            case GBinary(op, left, right):
                a, b = self.value(left), self.value(right)
                self.charge(cost(a) + cost(b))
                return checked(arith(op, a, b))
            case GCompare(first, rest):  # a < b < c is (a < b) and (b < c), Kleene
                left = self.value(first)
                result: bool | None = True
                for op, e in rest:
                    right = self.value(e)
                    self.charge(cost(left) + cost(right))
                    r = compare3(op, left, right)
                    if r is False:
                        return False
                    if r is None:
                        result = None
                    left = right
                return _value3(result)
            case GCall(func, args, kwargs):
                f = _lookup(func)
                vals = [self.value(a) for a in args]
                kw = {k: self.value(e) for k, e in kwargs}
                self.charge(sum(cost(v) for v in (*vals, *kw.values())))
                try:
                    return checked(f(*vals, **kw))
                except GuardEvalError:
                    raise
                except Exception as e:  # a user's guard function failed: the guard fails
                    raise GuardEvalError(f"{func}(...) raised {type(e).__name__}: {e}") from e
        raise GuardEvalError(f"not a guard expression: {g!r}")

    @staticmethod
    def unary(op: str, x: Any) -> Any:
        if not is_number(x):
            raise GuardEvalError(f"cannot apply unary {op} to {shown(x)}")
        if op == "-":
            return -x
        if op == "+":
            return x
        if op == "~" and isinstance(x, int):
            return ~x
        raise GuardEvalError(f"cannot apply unary {op} to {shown(x)}")


def evaluate(g: GExpr, env: Mapping[str, Any]) -> Any:
    """The value of guard expression g under the bindings env: a value, or :data:`UNKNOWN` for
    an undecided condition. Raises GuardEvalError when evaluation fails (the guard then does
    not hold)."""
    return _Evaluation(env, MAX_GUARD_STEPS).value(g)


def holds(g: GExpr, env: Mapping[str, Any]) -> bool:
    """⟦g⟧σ = true. Undecided conditions and evaluation failures do not hold."""
    try:
        return truth(evaluate(g, env))
    except GuardEvalError:
        return False


__all__ = ["ALLOWED_ATTRS", "BUILTINS", "UNKNOWN", "GuardEvalError", "compare3", "eq3", "evaluate",
           "guard_function", "holds", "known_functions", "truth", "truth3"]
