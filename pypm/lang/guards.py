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
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

from .limits import (
    MAX_GUARD_STEPS,
    MAX_INT_BITS,
    MAX_SEQ_LEN,
    MAX_SYMBOLIC_EXPONENT,
    MAX_SYMBOLIC_SIZE,
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


class GuardEvalError(Exception):
    """A guard could not be evaluated on these values (wrong types, index out of range, a size
    limit, ...).

    Internal: the interpreter treats it as "guard does not hold" and ``explain`` reports the reason.
    """


class _Unknown:
    """The third truth value: a condition that could not be decided (a symbolic comparison
    sympy cannot settle). It has no Python truth value, so code that would silently read it as
    true or false (a registered guard function doing ``if x:``) fails instead."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        raise TypeError("an undecided guard condition has no truth value")

    def __repr__(self) -> str:
        return "unknown"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


# Attributes a guard may read. On terms: their type and operator; on dtypes and devices: a few
# plain properties. Anything else is rejected by the checker.
TERM_ATTRS = frozenset({"shape", "dtype", "ndim", "device", "op"})
DTYPE_ATTRS = frozenset({"is_floating_point", "is_complex", "is_signed", "itemsize"})
DEVICE_ATTRS = frozenset({"type", "index"})
ALLOWED_ATTRS = TERM_ATTRS | DTYPE_ATTRS | DEVICE_ATTRS


def _sympy() -> Any:
    import sympy

    return sympy


def _is_symbolic(x: Any) -> bool:
    """A sympy expression that is not a plain number (a symbolic size such as ``s0 * 2``)."""
    if isinstance(x, (int, float, str, bool, tuple, list, type(None), TermView)):
        return False
    sp = _sympy()
    return isinstance(x, sp.Expr) and not x.is_number


def _is_number(x: Any) -> bool:
    """An int, a float or a sympy expression (symbolic or not); booleans are not numbers."""
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, float)):
        return True
    if isinstance(x, (str, tuple, list, type(None), TermView)):
        return False
    return isinstance(x, _sympy().Expr)


def _to_number(x: Any) -> Any:
    """sympy numbers become Python ints/floats so that results print and compare plainly."""
    if isinstance(x, (int, float, bool, str, tuple, list)) or x is None:
        return x
    sp = _sympy()
    if isinstance(x, sp.Basic) and x.is_number:
        if x.is_Integer:
            return int(x)
        if x.is_real:
            return float(x)
    return x


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
    if _is_symbolic(a) or _is_symbolic(b):
        if not (_is_number(a) and _is_number(b)):
            return False  # a size is never a string, a tuple, a dtype or a term
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
        if not (_is_number(a) and _is_number(b)):
            raise GuardEvalError(f"cannot compare {_show(a)} {op} {_show(b)}")
        sp = _sympy()
        rel = {"<": sp.Lt, "<=": sp.Le, ">": sp.Gt, ">=": sp.Ge}[op]
        try:
            r = rel(a, b)
        except TypeError as e:
            raise GuardEvalError(f"cannot compare {_show(a)} {op} {_show(b)}") from e
        if r is sp.true or r is True:
            return True
        if r is sp.false or r is False:
            return False
        try:
            r = rel(sp.simplify(a - b), 0)
        except TypeError:
            return None
        return True if r is sp.true else False if r is sp.false else None
    a, b = _to_number(a), _to_number(b)
    if isinstance(a, (TermView, type(None))) or isinstance(b, (TermView, type(None))):
        raise GuardEvalError(f"cannot compare {_show(a)} {op} {_show(b)}")
    try:
        return {"<": lambda: a < b, "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b}[op]()
    except TypeError as e:
        raise GuardEvalError(f"cannot compare {_show(a)} {op} {_show(b)}") from e


def compare3(op: str, a: Any, b: Any) -> bool | None:
    """One comparison of a chain, three-valued (None: undecided)."""
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
    sp = _sympy()
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


def _show(x: Any) -> str:
    """A short description of a value for messages (never a huge string, never an int too long
    for Python to print)."""
    if isinstance(x, TermView):
        return f"term {x.op}"
    if isinstance(x, int) and not isinstance(x, bool) and x.bit_length() > 256:
        return f"an integer of {x.bit_length()} bits"
    if isinstance(x, (tuple, list, str)) and len(x) > 64:
        return f"a {type(x).__name__} of length {len(x)}"
    try:
        return reprlib.repr(x)
    except Exception:  # a value whose repr fails: say what it is
        return f"a {type(x).__name__}"


# ---------------------------------------------------------------------------------------------
# Built-in functions


def _isclose(a: Any, b: Any, rel_tol: float = 1e-6, abs_tol: float = 0.0) -> Any:
    a, b = _to_number(a), _to_number(b)
    if _is_symbolic(a) or _is_symbolic(b):
        if not (_is_number(a) and _is_number(b)):
            raise GuardEvalError(f"isclose needs numbers, not {_show(a)} and {_show(b)}")
        sp = _sympy()
        d = sp.simplify(a - b)
        if d == 0:
            return True
        if not d.is_number:
            return UNKNOWN
        a, b = float(sp.N(a)), float(sp.N(b))
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or isinstance(a, bool) \
            or isinstance(b, bool):
        raise GuardEvalError(f"isclose needs numbers, not {_show(a)} and {_show(b)}")
    try:
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
    except (TypeError, OverflowError) as e:
        raise GuardEvalError(f"isclose({_show(a)}, {_show(b)}): {e}") from e


def _sqrt(x: Any) -> Any:
    if _is_symbolic(x):
        return _sympy().sqrt(x)
    x = _to_number(x)
    if not isinstance(x, (int, float)) or isinstance(x, bool) or x < 0:
        raise GuardEvalError(f"sqrt needs a non-negative number, not {_show(x)}")
    try:
        return math.sqrt(x)
    except OverflowError as e:
        raise GuardEvalError(f"sqrt({_show(x)}): {e}") from e


def _numeric(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        try:
            return f(*args)
        except (TypeError, ValueError, OverflowError) as e:
            raise GuardEvalError(f"{name}({', '.join(map(_show, args))}): {e}") from e

    return wrapped


def _prod(xs: Any) -> Any:
    out: Any = 1
    for x in xs:
        out = _arith("*", out, x)
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
    x = _to_number(x)
    if isinstance(x, str) and len(x) > 1000:
        raise GuardEvalError(f"int() of {_show(x)}: too long")
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
    raise GuardEvalError(f"{_show(obj)} has no attribute {attr!r} a guard may read")


# ---------------------------------------------------------------------------------------------
# Arithmetic, with every result's size checked before it is computed


def _bits(x: Any) -> int:
    return abs(x).bit_length() if isinstance(x, int) and not isinstance(x, bool) else 0


def _checked(x: Any) -> Any:
    """x, if it is within the size limits of guard values; else the guard fails."""
    if isinstance(x, int) and not isinstance(x, bool) and x.bit_length() > MAX_INT_BITS:
        raise GuardEvalError(f"a guard computed an integer of {x.bit_length()} bits "
                             f"(the limit is {MAX_INT_BITS})")
    if isinstance(x, (str, tuple, list)) and len(x) > MAX_SEQ_LEN:
        raise GuardEvalError(f"a guard computed a {type(x).__name__} of length {len(x)} "
                             f"(the limit is {MAX_SEQ_LEN})")
    if _is_symbolic(x):
        n = 0
        for _ in _sympy().preorder_traversal(x):
            n += 1
            if n > MAX_SYMBOLIC_SIZE:
                raise GuardEvalError(f"a guard computed a symbolic expression of more than "
                                     f"{MAX_SYMBOLIC_SIZE} nodes")
    return x


def _plain_int(x: Any) -> Any:
    """A sympy integer as a Python int (so that the integer limits apply to it)."""
    if isinstance(x, (int, float)):
        return x
    return int(x) if getattr(x, "is_Integer", False) else x


def _cost(x: Any) -> int:
    """Steps charged for walking a value: one per element, more for symbolic sizes (sympy is
    slow to decide a comparison)."""
    if isinstance(x, str):
        return len(x)
    if isinstance(x, (tuple, list)):
        return len(x) + sum(_cost(e) for e in x if not isinstance(e, (int, float, str, bool)))
    return SYMBOLIC_COST if _is_symbolic(x) else 0


def _too_big(a: Any, op: str, b: Any, why: str) -> GuardEvalError:
    return GuardEvalError(f"cannot compute {_show(a)} {op} {_show(b)}: {why}")


def _arith(op: str, a: Any, b: Any) -> Any:
    """``a op b`` for numbers (ints, floats, sympy expressions), and ``+``/``*`` for strings and
    tuples; refuses results beyond the limits before computing them."""
    seq = (str, tuple, list)
    if isinstance(a, seq) or isinstance(b, seq):
        if op == "+" and isinstance(a, seq) and type(a) is type(b):
            if len(a) + len(b) > MAX_SEQ_LEN:
                raise _too_big(a, op, b, f"longer than {MAX_SEQ_LEN}")
            return a + b
        if op == "*":
            s, n = (a, b) if isinstance(a, seq) else (b, a)
            if isinstance(n, int) and not isinstance(n, bool):
                if len(s) * max(n, 0) > MAX_SEQ_LEN:
                    raise _too_big(a, op, b, f"longer than {MAX_SEQ_LEN}")
                return s * n
        if op == "%" and isinstance(a, str):
            raise _too_big(a, op, b, "string formatting is not part of guards")
        raise _too_big(a, op, b, "unsupported operand types")
    if not (_is_number(a) and _is_number(b)):
        raise _too_big(a, op, b, "unsupported operand types")
    a, b = _plain_int(a), _plain_int(b)
    if op == "*" and _bits(a) + _bits(b) > MAX_INT_BITS:
        raise _too_big(a, op, b, f"the result has more than {MAX_INT_BITS} bits")
    if op == "**":
        e = _to_number(b)
        if _is_symbolic(a) or _is_symbolic(b):
            if not isinstance(e, int) or abs(e) > MAX_SYMBOLIC_EXPONENT:
                raise _too_big(a, op, b, f"a symbolic power needs an integer exponent of at most "
                                         f"{MAX_SYMBOLIC_EXPONENT}")
        elif isinstance(e, int) and isinstance(a, int) and e > 0 and abs(a) > 1 \
                and (abs(a).bit_length() - 1) * e > MAX_INT_BITS:
            raise _too_big(a, op, b, f"the result has more than {MAX_INT_BITS} bits")
        elif isinstance(e, int) and isinstance(a, float) and abs(e) > MAX_INT_BITS:
            raise _too_big(a, op, b, "the exponent is too large")
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "//":
            return a // b
        if op == "%":
            return a % b
        if op == "**":
            r = a ** b
            if isinstance(r, complex):
                raise _too_big(a, op, b, "the result is complex")
            return r
    except (TypeError, ZeroDivisionError, OverflowError, ValueError) as e:
        raise _too_big(a, op, b, str(e)) from e
    raise _too_big(a, op, b, "unknown operator")


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
        if _is_symbolic(v):
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
                parts = [None if e is None else _to_number(self.value(e)) for e in (lo, hi, st)]
                if not isinstance(seq, (tuple, list, str)) or not all(
                        p is None or (isinstance(p, int) and not isinstance(p, bool)) for p in parts):
                    raise GuardEvalError(f"cannot slice {_show(seq)} with {parts}")
                self.charge(len(seq))
                try:
                    out = seq[slice(*parts)]
                except (TypeError, ValueError) as e:
                    raise GuardEvalError(f"cannot slice {_show(seq)}: {e}") from e
                return out if isinstance(out, str) else tuple(out)
            case GIndex(obj, index):
                seq, i = self.value(obj), _to_number(self.value(index))
                if not isinstance(seq, (tuple, list, str)) or not isinstance(i, int) or isinstance(i, bool):
                    raise GuardEvalError(f"cannot index {_show(seq)} with {_show(i)}")
                if not -len(seq) <= i < len(seq):
                    raise GuardEvalError(f"index {_show(i)} out of range for {_show(seq)}")
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
                self.charge(_cost(a) + _cost(b))
                return _checked(_arith(op, a, b))
            case GCompare(first, rest):  # a < b < c is (a < b) and (b < c), Kleene
                left = self.value(first)
                result: bool | None = True
                for op, e in rest:
                    right = self.value(e)
                    self.charge(_cost(left) + _cost(right))
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
                self.charge(sum(_cost(v) for v in (*vals, *kw.values())))
                try:
                    return _checked(f(*vals, **kw))
                except GuardEvalError:
                    raise
                except Exception as e:  # a user's guard function failed: the guard fails
                    raise GuardEvalError(f"{func}(...) raised {type(e).__name__}: {e}") from e
        raise GuardEvalError(f"not a guard expression: {g!r}")

    @staticmethod
    def unary(op: str, x: Any) -> Any:
        if not _is_number(x):
            raise GuardEvalError(f"cannot apply unary {op} to {_show(x)}")
        if op == "-":
            return -x
        if op == "+":
            return x
        if op == "~" and isinstance(x, int):
            return ~x
        raise GuardEvalError(f"cannot apply unary {op} to {_show(x)}")


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
