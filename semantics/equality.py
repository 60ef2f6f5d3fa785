"""Equality of values (LANGUAGE.md §1), written for the semantics apart from the interpreter's
:func:`pypm.lang.terms.values_equal`, so that a bug there shows up as a disagreement.

The rules (§1 and the literal table of the README):

* numbers compare by value, exactly: ``8 == 8.0``, ``2**53 + 1 != 2.0**53``; ``inf == inf``;
  NaN is never equal to anything, itself included;
* booleans are equal only to booleans (``True`` is not ``1``), ``None`` only to ``None``,
  strings only to strings;
* tuples and lists are the same literal (``[0, 1]`` is ``(0, 1)``), compared element by element;
* dtypes compare by name (``torch.float16``), and never equal a string;
* plain terms (:class:`pypm.lang.terms.Term`) compare structurally: the same operator and equal
  arguments; a term is always equal to itself (a graph node is equal to itself, §1); other term
  views (fx nodes) by their own ``==`` (node identity after CSE);
* a term is never equal to a literal.

:func:`value_key` is a hashable key with this equality (equal values, equal keys; NaN gets a key
of its own per object), built from the structure, not from ``Term.__hash__``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from pypm.lang.terms import Term, TermView


def _is_dtype(v: Any) -> bool:
    t = type(v)
    return t.__name__ == "dtype" and t.__module__ == "torch"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numbers_equal(a: int | float, b: int | float) -> bool:
    fa, fb = isinstance(a, float), isinstance(b, float)
    if (fa and math.isnan(a)) or (fb and math.isnan(b)):
        return False
    if (fa and math.isinf(a)) or (fb and math.isinf(b)):
        return fa and fb and a == b
    return Fraction(a) == Fraction(b)


def equal(a: Any, b: Any) -> bool:
    """a = b as values (see the module doc)."""
    return _equal(a, b, {})


def _equal(a: Any, b: Any, memo: dict[tuple[int, int], bool]) -> bool:
    ta, tb = isinstance(a, TermView), isinstance(b, TermView)
    if ta or tb:
        if not (ta and tb):
            return False
        if a is b:
            return True
        if not (isinstance(a, Term) and isinstance(b, Term)):
            return bool(a == b)
        key = (id(a), id(b))
        if key not in memo:  # terms are DAGs: compare each pair of nodes once
            memo[key] = (a.op == b.op and len(a.args) == len(b.args)
                         and all(_equal(x, y, memo) for x, y in zip(a.args, b.args)))
        return memo[key]
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b) and _numbers_equal(a, b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(_equal(x, y, memo) for x, y in zip(a, b)))
    if _is_dtype(a) or _is_dtype(b):
        return _is_dtype(a) and _is_dtype(b) and str(a) == str(b)
    # Not a literal of §1 (a device, a sympy size, ...): the same type and Python equality.
    return type(a) is type(b) and bool(a == b)


def value_key(v: Any, _memo: dict[int, Any] | None = None) -> Any:
    """A hashable key with the equality of :func:`equal`: ``True`` and ``1`` get different keys,
    ``1`` and ``1.0`` the same; each NaN a key of its own."""
    memo = {} if _memo is None else _memo
    if isinstance(v, TermView):
        if not isinstance(v, Term):
            return ("node", v)
        hit = memo.get(id(v))
        if hit is None:
            hit = memo[id(v)] = ("term", v.op, tuple(value_key(a, memo) for a in v.args))
        return hit
    if isinstance(v, bool):
        return ("bool", v)
    if _is_number(v):
        if isinstance(v, float) and math.isnan(v):
            return ("nan", id(v))
        if isinstance(v, float) and math.isinf(v):
            return ("inf", v > 0)
        return ("num", Fraction(v))
    if v is None:
        return ("none",)
    if isinstance(v, str):
        return ("str", v)
    if isinstance(v, (tuple, list)):
        return ("tuple", tuple(value_key(x, memo) for x in v))
    if _is_dtype(v):
        return ("dtype", str(v))
    try:
        hash(v)
    except TypeError:
        return ("repr", type(v).__name__, repr(v))
    return (type(v).__name__, v)


def substs_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two substitutions bind the same names to equal values."""
    return a.keys() == b.keys() and all(equal(a[x], b[x]) for x in a)


__all__ = ["equal", "substs_equal", "value_key"]
