"""Values of guard evaluation: the third truth value :data:`UNKNOWN`, the failure of an
evaluation (:class:`GuardEvalError`), numbers and sympy expressions as guards see them, and
arithmetic whose every result's size is checked before it is computed (the caps of
:mod:`pypm.lang.limits`), so that no guard can run long or eat memory.
"""

from __future__ import annotations

import reprlib
from typing import Any

from .limits import (
    MAX_INT_BITS,
    MAX_SEQ_LEN,
    MAX_SYMBOLIC_EXPONENT,
    MAX_SYMBOLIC_SIZE,
    SYMBOLIC_COST,
)
from .terms import TermView


class GuardEvalError(Exception):
    """A guard could not be evaluated on these values (wrong types, index out of range, a size
    limit, ...).

    Internal: the interpreter treats it as "guard does not hold" and ``explain`` reports the reason.
    """


class Unknown:
    """The third truth value: a condition that could not be decided (a symbolic comparison
    sympy cannot settle). It has no Python truth value, so code that would silently read it as
    true or false (a registered guard function doing ``if x:``) fails instead."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        raise TypeError("an undecided guard condition has no truth value")

    def __repr__(self) -> str:
        return "unknown"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()


def sympy_module() -> Any:
    import sympy

    return sympy


def is_symbolic(x: Any) -> bool:
    """A sympy expression that is not a plain number (a symbolic size such as ``s0 * 2``)."""
    if isinstance(x, (int, float, str, bool, tuple, list, type(None), TermView)):
        return False
    sp = sympy_module()
    return isinstance(x, sp.Expr) and not x.is_number


def is_number(x: Any) -> bool:
    """An int, a float or a sympy expression (symbolic or not); booleans are not numbers."""
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, float)):
        return True
    if isinstance(x, (str, tuple, list, type(None), TermView)):
        return False
    return isinstance(x, sympy_module().Expr)


def to_number(x: Any) -> Any:
    """sympy numbers become Python ints/floats so that results print and compare plainly."""
    if isinstance(x, (int, float, bool, str, tuple, list)) or x is None:
        return x
    sp = sympy_module()
    if isinstance(x, sp.Basic) and x.is_number:
        if x.is_Integer:
            return int(x)
        if x.is_real:
            return float(x)
    return x


# ---------------------------------------------------------------------------------------------
# Arithmetic, with every result's size checked before it is computed


def bits(x: Any) -> int:
    return abs(x).bit_length() if isinstance(x, int) and not isinstance(x, bool) else 0


def checked(x: Any) -> Any:
    """x, if it is within the size limits of guard values; else the guard fails."""
    if isinstance(x, int) and not isinstance(x, bool) and x.bit_length() > MAX_INT_BITS:
        raise GuardEvalError(f"a guard computed an integer of {x.bit_length()} bits "
                             f"(the limit is {MAX_INT_BITS})")
    if isinstance(x, (str, tuple, list)) and len(x) > MAX_SEQ_LEN:
        raise GuardEvalError(f"a guard computed a {type(x).__name__} of length {len(x)} "
                             f"(the limit is {MAX_SEQ_LEN})")
    if is_symbolic(x):
        n = 0
        for _ in sympy_module().preorder_traversal(x):
            n += 1
            if n > MAX_SYMBOLIC_SIZE:
                raise GuardEvalError(f"a guard computed a symbolic expression of more than "
                                     f"{MAX_SYMBOLIC_SIZE} nodes")
    return x


def plain_int(x: Any) -> Any:
    """A sympy integer as a Python int (so that the integer limits apply to it)."""
    if isinstance(x, (int, float)):
        return x
    return int(x) if getattr(x, "is_Integer", False) else x


def cost(x: Any) -> int:
    """Steps charged for walking a value: one per element, more for symbolic sizes (sympy is
    slow to decide a comparison)."""
    if isinstance(x, str):
        return len(x)
    if isinstance(x, (tuple, list)):
        return len(x) + sum(cost(e) for e in x if not isinstance(e, (int, float, str, bool)))
    return SYMBOLIC_COST if is_symbolic(x) else 0


def too_big(a: Any, op: str, b: Any, why: str) -> GuardEvalError:
    return GuardEvalError(f"cannot compute {shown(a)} {op} {shown(b)}: {why}")


def arith(op: str, a: Any, b: Any) -> Any:
    """``a op b`` for numbers (ints, floats, sympy expressions), and ``+``/``*`` for strings and
    tuples; refuses results beyond the limits before computing them."""
    seq = (str, tuple, list)
    if isinstance(a, seq) or isinstance(b, seq):
        if op == "+" and isinstance(a, seq) and type(a) is type(b):
            if len(a) + len(b) > MAX_SEQ_LEN:
                raise too_big(a, op, b, f"longer than {MAX_SEQ_LEN}")
            return a + b
        if op == "*":
            s, n = (a, b) if isinstance(a, seq) else (b, a)
            if isinstance(n, int) and not isinstance(n, bool):
                if len(s) * max(n, 0) > MAX_SEQ_LEN:
                    raise too_big(a, op, b, f"longer than {MAX_SEQ_LEN}")
                return s * n
        if op == "%" and isinstance(a, str):
            raise too_big(a, op, b, "string formatting is not part of guards")
        raise too_big(a, op, b, "unsupported operand types")
    if not (is_number(a) and is_number(b)):
        raise too_big(a, op, b, "unsupported operand types")
    a, b = plain_int(a), plain_int(b)
    if op == "*" and bits(a) + bits(b) > MAX_INT_BITS:
        raise too_big(a, op, b, f"the result has more than {MAX_INT_BITS} bits")
    if op == "**":
        e = to_number(b)
        if is_symbolic(a) or is_symbolic(b):
            if not isinstance(e, int) or abs(e) > MAX_SYMBOLIC_EXPONENT:
                raise too_big(a, op, b, f"a symbolic power needs an integer exponent of at most "
                                         f"{MAX_SYMBOLIC_EXPONENT}")
        elif isinstance(e, int) and isinstance(a, int) and e > 0 and abs(a) > 1 \
                and (abs(a).bit_length() - 1) * e > MAX_INT_BITS:
            raise too_big(a, op, b, f"the result has more than {MAX_INT_BITS} bits")
        elif isinstance(e, int) and isinstance(a, float) and abs(e) > MAX_INT_BITS:
            raise too_big(a, op, b, "the exponent is too large")
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
                raise too_big(a, op, b, "the result is complex")
            return r
    except (TypeError, ZeroDivisionError, OverflowError, ValueError) as e:
        raise too_big(a, op, b, str(e)) from e
    raise too_big(a, op, b, "unknown operator")


def shown(x: Any) -> str:
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
