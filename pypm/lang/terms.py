"""The Term protocol the interpreter sees, and a plain implementation for tests and conformance.

A value (LANGUAGE.md §1) is a term ``f(v1..vn)`` or an attribute literal. The interpreter only
needs three things of a term: its operator name, its argument values, and equality. Guards also
read its type (``shape``, ``dtype``, ``ndim``, ``device``). :class:`TermView` is that protocol;
:class:`Term` implements it with structural equality (hash-consed for speed on DAGs) and
``pypm.fx`` implements it over torch.fx nodes, where equality is node identity after CSE.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import PatternSyntaxError, Source, Span
from .schema import dtype_named


class TermView:
    """What the interpreter sees of a term. Subclasses set ``op`` and ``args``.

    ``op`` is the operator name (a string); ``args`` the argument values, terms or literals.
    ``shape`` is a tuple of ints or sympy expressions, or None when unknown; ``dtype`` a
    ``torch.dtype`` (or its name) or None; ``device`` a string or None.
    """

    __slots__ = ()
    op: str
    args: tuple[Any, ...]

    @property
    def shape(self) -> tuple[Any, ...] | None:
        return None

    @property
    def dtype(self) -> Any:
        return None

    @property
    def device(self) -> Any:
        return None

    @property
    def ndim(self) -> int | None:
        s = self.shape
        return None if s is None else len(s)

    @property
    def node(self) -> Any:
        """The graph node behind the term, if any (fx terms); the term itself otherwise."""
        return self


def values_equal(a: Any, b: Any) -> bool:
    """Equality of values (§1): terms by their own ``==``; literals structurally.

    Numbers compare by value (``8 == 8.0``: graphs spell constants either way) but booleans are
    only equal to booleans, strings to strings, and tuples element by element. NaN is equal to
    nothing, itself included (the same NaN object too: equality never depends on identity for
    literals; a term is equal to itself).
    """
    ta, tb = isinstance(a, TermView), isinstance(b, TermView)
    if ta or tb:
        return ta and tb and (a is b or a == b)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if type(a) is not type(b):
        return False
    return bool(a == b)


class Term(TermView):
    """A plain term ``op(args)`` with an optional type; equality is structural.

    >>> Term("matmul", (Term("q", ()), Term("k", ()))) == parse("matmul(q, k)")
    True
    """

    __slots__ = ("_device", "_dtype", "_hash", "_shape", "args", "op")

    def __init__(self, op: str, args: Sequence[Any] = (), *, shape: Sequence[Any] | None = None,
                 dtype: Any = None, device: Any = None):
        self.op = op
        self.args = tuple(tuple(a) if isinstance(a, list) else a for a in args)
        self._shape = None if shape is None else tuple(shape)
        self._dtype = (dtype_named(dtype) or dtype) if isinstance(dtype, str) else dtype
        self._device = device
        self._hash = hash((op, len(self.args), tuple(_hash_value(a) for a in self.args)))

    @property
    def shape(self) -> tuple[Any, ...] | None:
        return self._shape

    @property
    def dtype(self) -> Any:
        return self._dtype

    @property
    def device(self) -> Any:
        return self._device

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Term) or self._hash != other._hash or self.op != other.op:
            return False
        return len(self.args) == len(other.args) and all(
            values_equal(x, y) for x, y in zip(self.args, other.args))

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __repr__(self) -> str:
        return show_value(self)


def _hash_value(v: Any) -> int:
    if isinstance(v, float) and v.is_integer():
        return hash(int(v))
    if isinstance(v, (tuple, list)):
        return hash(tuple(_hash_value(x) for x in v))
    try:
        return hash(v)
    except TypeError:
        return hash(repr(v))


def show_value(v: Any) -> str:
    """Text of a value in the syntax :func:`parse` reads (terms as ``f(a, b)``)."""
    if isinstance(v, Term):
        if not v.args:
            return v.op
        return f"{v.op}({', '.join(show_value(a) for a in v.args)})"
    if isinstance(v, TermView):
        return f"<{v.op}>"
    if isinstance(v, tuple):
        return "(" + ", ".join(show_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
        return f"float({str(v)!r})"
    return repr(v)


def subterms(v: Any) -> Iterator[Any]:
    """Every distinct value reachable from v (v included), each once, parents before children."""
    seen: set[int] = set()
    stack = [v]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        yield t
        if isinstance(t, TermView):
            stack.extend(reversed(t.args))
        elif isinstance(t, tuple):
            stack.extend(reversed(t))


def term_size(v: Any) -> int:
    """Number of term constructors in v counted as a tree (shared subterms counted each time)."""
    memo: dict[int, int] = {}

    def go(t: Any) -> int:
        if not isinstance(t, TermView):
            return 1
        k = id(t)
        if k not in memo:
            memo[k] = 1 + sum(go(a) for a in t.args)
        return memo[k]

    return go(v)


# ---------------------------------------------------------------------------------------------
# A tiny reader for terms: ``matmul(softmax(x, -1), v)``.

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+))
  | (?P<str>'[^'\\]*(?:\\.[^'\\]*)*'|"[^"\\]*(?:\\.[^"\\]*)*")
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)*)
  | (?P<punct>[(),\[\]])
""", re.VERBOSE)


def parse(text: str, *, source: str = "<term>") -> Any:
    """Read a value: bare names are 0-ary terms, ``f(...)`` terms; numbers, strings, ``None``,
    ``True``/``False``, tuples ``(a, b)`` and lists ``[a, b]`` are literals; ``torch.float16`` is
    a dtype literal. Identical subterms are shared (one object), as in a CSE'd graph.
    """
    src = Source(source, text)
    toks: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PatternSyntaxError(f"unexpected character {text[pos]!r} in term",
                                     Span(src, 1, pos + 1, 1, pos + 2))
        if m.lastgroup != "ws":
            toks.append((m.lastgroup or "", m.group(), pos))
        pos = m.end()
    toks.append(("eof", "", len(text)))
    interned: dict[Term, Term] = {}
    i = 0

    def err(msg: str, at: int) -> PatternSyntaxError:
        return PatternSyntaxError(msg, Span(src, 1, at + 1, 1, at + 2))

    def expect(s: str) -> None:
        nonlocal i
        if toks[i][1] != s:
            raise err(f"expected {s!r}, found {toks[i][1] or 'end of input'!r}", toks[i][2])
        i += 1

    def seq(close: str) -> list[Any]:
        nonlocal i
        items: list[Any] = []
        while toks[i][1] != close:
            items.append(value())
            if toks[i][1] == ",":
                i += 1
            elif toks[i][1] != close:
                raise err(f"expected ',' or {close!r}", toks[i][2])
        i += 1
        return items

    def value() -> Any:
        nonlocal i
        kind, text_, at = toks[i]
        i += 1
        if kind == "num":
            return float(text_) if any(c in text_ for c in ".eE") else int(text_)
        if kind == "str":
            return bytes(text_[1:-1], "utf-8").decode("unicode_escape")
        if kind == "punct" and text_ == "(":
            items = seq(")")
            return tuple(items)
        if kind == "punct" and text_ == "[":
            return tuple(seq("]"))
        if kind == "name":
            if text_ in ("None", "True", "False"):
                return {"None": None, "True": True, "False": False}[text_]
            if text_ == "float" and toks[i][1] == "(":  # float('inf'), float('nan')
                i += 1
                arg = value()
                expect(")")
                return float(arg)
            dt = dtype_named(text_, bare=False)
            if dt is not None:
                return dt
            args: list[Any] = []
            if toks[i][1] == "(":
                i += 1
                args = seq(")")
            t = Term(text_, args)
            return interned.setdefault(t, t)
        raise err(f"unexpected {text_ or 'end of input'!r}", at)

    v = value()
    if toks[i][0] != "eof":
        raise err(f"unexpected {toks[i][1]!r} after the term", toks[i][2])
    return v


__all__ = ["Term", "TermView", "parse", "show_value", "subterms", "term_size",
           "values_equal"]
