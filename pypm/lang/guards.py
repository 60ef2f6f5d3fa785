"""The guard evaluator: a small expression language of its own (no ``eval``/``exec``).

Guards read the values bound by a pattern: numbers, strings, tuples, dtypes and the types of
terms (``.shape .dtype .ndim .device .op``). Shapes may hold sympy expressions for symbolic
sizes; a comparison that sympy cannot decide is *false* (LANGUAGE.md §7), so a guard never
accepts a match on a size it could not prove. Functions are a fixed set plus those a user
registers with :func:`guard_function`; attributes are a fixed whitelist, so a guard cannot reach
Python internals (``x.__class__`` is rejected when the pattern is checked).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

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


class GuardEvalError(Exception):
    """A guard could not be evaluated on these values (wrong types, index out of range, ...).

    Internal: the interpreter treats it as "guard false" and ``explain`` reports the reason.
    """


# Attributes a guard may read. On terms: their type and operator; on dtypes and devices: a few
# plain properties. Anything else is rejected by the checker.
TERM_ATTRS = frozenset({"shape", "dtype", "ndim", "device", "op"})
DTYPE_ATTRS = frozenset({"is_floating_point", "is_complex", "is_signed", "itemsize"})
DEVICE_ATTRS = frozenset({"type", "index"})
ALLOWED_ATTRS = TERM_ATTRS | DTYPE_ATTRS | DEVICE_ATTRS

_MAX_POW_EXPONENT = 4096  # guards are cheap by design: refuse 2 ** 10 ** 10


def _sympy():
    import sympy

    return sympy


def _is_symbolic(x: Any) -> bool:
    if isinstance(x, (int, float, str, bool, type(None))):
        return False
    sp = _sympy()
    return isinstance(x, sp.Basic) and not x.is_number


def _to_number(x: Any) -> Any:
    """sympy numbers become Python ints/floats so that results print and compare plainly."""
    if isinstance(x, (int, float, bool)) or x is None:
        return x
    sp = _sympy()
    if isinstance(x, sp.Basic) and x.is_number:
        if x.is_Integer:
            return int(x)
        if x.is_real:
            return float(x)
    return x


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
    if _is_symbolic(a) or _is_symbolic(b):
        plain = (str, bool, type(None), TermView)
        if isinstance(a, plain) or isinstance(b, plain):
            return False
        try:
            d = _sympy().simplify(a - b)
        except (TypeError, ValueError):
            return None
        if d == 0:
            return True
        return False if d.is_zero is False else None
    return values_equal(_to_number(a), _to_number(b))


def _order3(op: str, a: Any, b: Any) -> bool | None:
    if _is_symbolic(a) or _is_symbolic(b):
        sp = _sympy()
        rel = {"<": sp.Lt, "<=": sp.Le, ">": sp.Gt, ">=": sp.Ge}[op]
        try:
            r = rel(a, b)
        except TypeError as e:
            raise GuardEvalError(f"cannot compare {a} {op} {b}") from e
        if r is sp.true or r is True:
            return True
        if r is sp.false or r is False:
            return False
        try:
            r = rel(sp.simplify(a - b), 0)
        except TypeError:
            return None
        return True if r is sp.true else False if r is sp.false else None
    try:
        return {"<": lambda: a < b, "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b}[op]()
    except TypeError as e:
        raise GuardEvalError(f"cannot compare {_show(a)} {op} {_show(b)}") from e


def compare3(op: str, a: Any, b: Any) -> bool | None:
    """One comparison of a chain, three-valued."""
    if op == "==":
        return eq3(a, b)
    if op == "!=":
        r = eq3(a, b)
        return None if r is None else not r
    if op in ("in", "not in"):
        if not isinstance(b, (tuple, list, str)):
            raise GuardEvalError(f"`in` needs a tuple or string on the right, not {_show(b)}")
        if isinstance(b, str):
            if not isinstance(a, str):
                raise GuardEvalError(f"`in` a string needs a string on the left, not {_show(a)}")
            r = a in b
        else:
            rs = [eq3(a, x) for x in b]
            r = True if True in rs else (None if None in rs else False)
        if r is None:
            return None
        return r if op == "in" else not r
    if op in ("is", "is not"):
        r = (a is None and b is None) or (a is not None and b is not None and eq3(a, b) is True)
        return r if op == "is" else not r
    return _order3(op, a, b)


def truth(x: Any) -> bool:
    """The truth of a guard's value; an undecided symbolic condition is false."""
    if x is None:
        return False
    if isinstance(x, (bool, int, float, str, tuple, list)):
        return bool(x)
    sp = _sympy()
    if x is sp.true:
        return True
    if x is sp.false:
        return False
    if isinstance(x, sp.Basic):
        if x.is_number:
            return bool(x != 0)
        return False
    return True


def _show(x: Any) -> str:
    if isinstance(x, TermView):
        return f"term {x.op}"
    return repr(x)


def _isclose(a: Any, b: Any, rel_tol: float = 1e-6, abs_tol: float = 0.0) -> bool:
    a, b = _to_number(a), _to_number(b)
    if _is_symbolic(a) or _is_symbolic(b):
        sp = _sympy()
        d = sp.simplify(a - b)
        if d == 0:
            return True
        if not d.is_number:
            return False  # undecided: false
        a, b = float(sp.N(a)), float(sp.N(b))
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or isinstance(a, bool) \
            or isinstance(b, bool):
        raise GuardEvalError(f"isclose needs numbers, not {_show(a)} and {_show(b)}")
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


def _sqrt(x: Any) -> Any:
    if _is_symbolic(x):
        return _sympy().sqrt(x)
    x = _to_number(x)
    if not isinstance(x, (int, float)) or isinstance(x, bool) or x < 0:
        raise GuardEvalError(f"sqrt needs a non-negative number, not {_show(x)}")
    return math.sqrt(x)


def _numeric(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        try:
            return f(*args)
        except TypeError as e:
            raise GuardEvalError(f"{name}({', '.join(map(_show, args))}): {e}") from e

    return wrapped


def _prod(xs: Any) -> Any:
    out: Any = 1
    for x in xs:
        out = out * x
    return out


BUILTINS: dict[str, Callable[..., Any]] = {
    "len": _numeric("len", len),
    "abs": _numeric("abs", abs),
    "min": _numeric("min", min),
    "max": _numeric("max", max),
    "sqrt": _sqrt,
    "isclose": _isclose,
    "all": lambda xs: all(truth(x) for x in xs),
    "any": lambda xs: any(truth(x) for x in xs),
    "int": _numeric("int", lambda x: int(_to_number(x))),
    "float": _numeric("float", lambda x: float(_to_number(x))),
    "prod": _numeric("prod", _prod),
    "is_term": lambda x: isinstance(x, TermView),
}

_registered: dict[str, Callable[..., Any]] = {}


def guard_function(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Register a Python function that guards may call by name.

    >>> @guard_function
    ... def divisible(a, b): return a % b == 0

    The function receives evaluated values (ints, sympy expressions, terms, dtypes) and returns
    a value; an exception it raises makes the guard false. Register before the patterns that
    use it are checked.
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
    raise GuardEvalError(f"{_show(obj)} has no attribute {attr!r} a guard may read")


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
    "**": lambda a, b: a ** b,
}


def evaluate(g: GExpr, env: Mapping[str, Any]) -> Any:
    """The value of guard expression g under the bindings env; raises GuardEvalError."""
    match g:
        case GConst(value):
            return value
        case GName(name):
            if name not in env:
                raise GuardEvalError(f"{name} is not bound")
            return env[name]
        case GAttr(obj, attr):
            return _attr(evaluate(obj, env), attr)
        case GIndex(obj, GSlice(lo, hi, st)):
            seq = evaluate(obj, env)
            parts = [None if e is None else _to_number(evaluate(e, env)) for e in (lo, hi, st)]
            try:
                return tuple(seq[slice(*parts)])
            except (TypeError, ValueError) as e:
                raise GuardEvalError(f"cannot slice {_show(seq)}: {e}") from e
        case GIndex(obj, index):
            seq, i = evaluate(obj, env), _to_number(evaluate(index, env))
            if not isinstance(seq, (tuple, list, str)) or not isinstance(i, int) or isinstance(i, bool):
                raise GuardEvalError(f"cannot index {_show(seq)} with {_show(i)}")
            if not -len(seq) <= i < len(seq):
                raise GuardEvalError(f"index {i} out of range for {_show(seq)}")
            return seq[i]
        case GTuple(items):
            return tuple(evaluate(e, env) for e in items)
        case GUnary("not", operand):
            return not truth(evaluate(operand, env))
        case GUnary(op, operand):
            x = evaluate(operand, env)
            if isinstance(x, (str, bool, tuple, TermView)) or x is None:
                raise GuardEvalError(f"cannot apply unary {op} to {_show(x)}")
            return -x if op == "-" else x
        case GBinary("and", left, right):
            return truth(evaluate(left, env)) and truth(evaluate(right, env))
        case GBinary("or", left, right):
            return truth(evaluate(left, env)) or truth(evaluate(right, env))
        case GBinary(op, left, right):
            a, b = evaluate(left, env), evaluate(right, env)
            if op == "**" and isinstance(b, int) and abs(b) > _MAX_POW_EXPONENT:
                raise GuardEvalError(f"exponent {b} is too large for a guard")
            if isinstance(a, TermView) or isinstance(b, TermView):
                raise GuardEvalError(f"cannot compute {_show(a)} {op} {_show(b)}")
            try:
                return _ARITH[op](a, b)
            except (TypeError, ZeroDivisionError, OverflowError, ValueError) as e:
                raise GuardEvalError(f"cannot compute {_show(a)} {op} {_show(b)}: {e}") from e
        case GCompare(first, rest):
            left = evaluate(first, env)
            for op, e in rest:
                right = evaluate(e, env)
                if compare3(op, left, right) is not True:
                    return False
                left = right
            return True
        case GCall(func, args, kwargs):
            f = _lookup(func)
            vals = [evaluate(a, env) for a in args]
            kw = {k: evaluate(e, env) for k, e in kwargs}
            try:
                return f(*vals, **kw)
            except GuardEvalError:
                raise
            except Exception as e:  # a user's guard function failed: the guard is false
                raise GuardEvalError(f"{func}(...) raised {type(e).__name__}: {e}") from e
    raise GuardEvalError(f"not a guard expression: {g!r}")


def holds(g: GExpr, env: Mapping[str, Any]) -> bool:
    """⟦g⟧σ = true. Evaluation errors and undecided symbolic comparisons give False."""
    try:
        return truth(evaluate(g, env))
    except GuardEvalError:
        return False
