"""The expression language of attention specifications: small typed trees over the score ``s``,
the indices ``b, h, q_idx, kv_idx``, constants and captured tensors indexed by index
expressions, with constant folding, printing and renaming; and :class:`Structure`, the proved
class of a mask (see :mod:`.structure`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

INDICES = ("b", "h", "q_idx", "kv_idx")

#: operator -> (arity, infix symbol or None, precedence); precedence orders infix printing
OPS: dict[str, tuple[int, str | None, int]] = {
    "or": (2, "|", 1), "and": (2, "&", 2), "not": (1, "~", 3),
    "eq": (2, "==", 4), "ne": (2, "!=", 4), "lt": (2, "<", 4), "le": (2, "<=", 4),
    "gt": (2, ">", 4), "ge": (2, ">=", 4),
    "add": (2, "+", 5), "sub": (2, "-", 5),
    "mul": (2, "*", 6), "div": (2, "/", 6), "floordiv": (2, "//", 6), "mod": (2, "%", 6),
    "neg": (1, "-", 7), "pow": (2, "**", 8),
    "tanh": (1, None, 9), "exp": (1, None, 9), "log": (1, None, 9), "abs": (1, None, 9),
    "sqrt": (1, None, 9), "floor": (1, None, 9), "minimum": (2, None, 9), "maximum": (2, None, 9),
    "where": (3, None, 9), "float": (1, None, 9), "long": (1, None, 9),
}
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
LOGICAL = ("and", "or", "not")


class Expr:
    """A node of a score-modification or mask expression. Operators build calls (``==`` stays
    structural equality: use :meth:`eq`)."""

    __slots__ = ()

    def __add__(self, o: Any) -> Expr: return call("add", self, o)
    def __radd__(self, o: Any) -> Expr: return call("add", o, self)
    def __sub__(self, o: Any) -> Expr: return call("sub", self, o)
    def __rsub__(self, o: Any) -> Expr: return call("sub", o, self)
    def __mul__(self, o: Any) -> Expr: return call("mul", self, o)
    def __rmul__(self, o: Any) -> Expr: return call("mul", o, self)
    def __truediv__(self, o: Any) -> Expr: return call("div", self, o)
    def __floordiv__(self, o: Any) -> Expr: return call("floordiv", self, o)
    def __neg__(self) -> Expr: return call("neg", self)
    def __and__(self, o: Any) -> Expr: return call("and", self, o)
    def __or__(self, o: Any) -> Expr: return call("or", self, o)
    def __invert__(self) -> Expr: return call("not", self)
    def __lt__(self, o: Any) -> Expr: return call("lt", self, o)
    def __le__(self, o: Any) -> Expr: return call("le", self, o)
    def __gt__(self, o: Any) -> Expr: return call("gt", self, o)
    def __ge__(self, o: Any) -> Expr: return call("ge", self, o)
    def eq(self, o: Any) -> Expr: return call("eq", self, o)
    def ne(self, o: Any) -> Expr: return call("ne", self, o)

    def __str__(self) -> str:
        return render(self)


@dataclass(frozen=True, eq=True, repr=False)
class Score(Expr):
    """The scaled score ``scale * q·k`` at (b, h, q_idx, kv_idx)."""

    def __repr__(self) -> str:
        return "s"


@dataclass(frozen=True, eq=True, repr=False)
class Index(Expr):
    """One of the four indices ``b``, ``h``, ``q_idx``, ``kv_idx``."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in INDICES:
            raise ValueError(f"unknown index {self.name!r}; the indices are {INDICES}")

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=True, repr=False)
class Const(Expr):
    """A constant: a bool, int or float (``-inf`` included)."""

    value: bool | int | float

    def __eq__(self, other: object) -> bool:  # 1 and True, 0.0 and -0.0, nan: by kind and bits
        return isinstance(other, Const) and _const_key(self.value) == _const_key(other.value)

    def __hash__(self) -> int:
        return hash(_const_key(self.value))

    def __repr__(self) -> str:
        return repr(self.value) if not isinstance(self.value, float) or math.isfinite(self.value) \
            else ("-inf" if self.value < 0 else "inf" if self.value > 0 else "nan")


def _const_key(v: Any) -> tuple[str, Any]:
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int):
        return ("int", v)
    return ("float", float(v).hex())


@dataclass(frozen=True, eq=True, repr=False)
class Captured(Expr):
    """A captured tensor read at index expressions: ``name[i0, i1, ...]`` (one per dim)."""

    name: str
    index: tuple[Expr, ...]

    def __repr__(self) -> str:
        return f"{self.name}[{', '.join(render(i) for i in self.index)}]"


@dataclass(frozen=True, eq=True, repr=False)
class Call(Expr):
    """An operator of :data:`OPS` applied to its arguments."""

    op: str
    args: tuple[Expr, ...]

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown operator {self.op!r}")
        if len(self.args) != OPS[self.op][0]:
            raise ValueError(f"{self.op} takes {OPS[self.op][0]} arguments, got {len(self.args)}")

    def __repr__(self) -> str:
        return render(self)


S = Score()
B, H, Q_IDX, KV_IDX = (Index(n) for n in INDICES)


def lit(x: Any) -> Expr:
    """An expression from a Python value (bools, ints, floats become :class:`Const`; the names
    of the indices their :class:`Index`)."""
    if isinstance(x, Expr):
        return x
    if isinstance(x, str) and x in INDICES:
        return Index(x)
    if isinstance(x, (bool, int, float)):
        return Const(x)
    raise TypeError(f"not an attention expression: {x!r}")


def captured(name: str, *index: Any) -> Captured:
    return Captured(name, tuple(lit(i) for i in index))


def call(op: str, *args: Any) -> Expr:
    """``op(args)``, with constants folded and the boolean identities applied (``x & True`` is
    x, ``~~x`` is x, ``where(c, True, False)`` is c, ``where(c, a, b) < k`` with constant a, b is
    ``where(c, a < k, b < k)``, ``x + 0`` is x ...), so that equal masks tend to print alike."""
    xs = tuple(lit(a) for a in args)
    out = _fold(op, xs)
    return out if out is not None else Call(op, xs)


def _c(x: Expr) -> Any:
    return x.value if isinstance(x, Const) else None


def _is(x: Expr, v: Any) -> bool:
    return isinstance(x, Const) and type(x.value) is type(v) and x.value == v


def _fold(op: str, xs: tuple[Expr, ...]) -> Expr | None:
    if all(isinstance(x, Const) for x in xs) and op not in ("float", "long"):
        try:
            return Const(_py(op, *[x.value for x in xs]))
        except (ArithmeticError, ValueError, TypeError):
            return None
    if op == "and":
        a, b = xs
        if _is(a, True):
            return b
        if _is(b, True) or a == b:
            return a
        if _is(a, False) or _is(b, False):
            return Const(False)
    if op == "or":
        a, b = xs
        if _is(a, False):
            return b
        if _is(b, False) or a == b:
            return a
        if _is(a, True) or _is(b, True):
            return Const(True)
    if op == "not" and isinstance(xs[0], Call):
        inner = xs[0]
        if inner.op == "not":
            return inner.args[0]
        negated = {"lt": "ge", "le": "gt", "gt": "le", "ge": "lt", "eq": "ne", "ne": "eq"}
        if inner.op in negated and _integral(inner.args[0]) and _integral(inner.args[1]):
            return Call(negated[inner.op], inner.args)
    if op == "where":
        c, a, b = xs
        if _is(a, True) and _is(b, False):
            return c
        if _is(a, False) and _is(b, True):
            return call("not", c)
        if isinstance(c, Const):
            return a if c.value else b
        if a == b:
            return a
    if op in COMPARISONS and isinstance(xs[0], Call) and xs[0].op == "where" \
            and isinstance(xs[1], Const):
        c, a, b = xs[0].args
        if isinstance(a, Const) and isinstance(b, Const):
            return call("where", c, call(op, a, xs[1]), call(op, b, xs[1]))
    if op in ("eq", "ne") and _boolean(xs[0]) and isinstance(xs[1], Const) \
            and xs[1].value in (0, 1, True, False):
        keep = (op == "eq") == bool(xs[1].value)
        return xs[0] if keep else call("not", xs[0])
    if op == "add":
        if _is_zero(xs[1]):
            return xs[0]
        if _is_zero(xs[0]):
            return xs[1]
    if op == "sub" and _is_zero(xs[1]):
        return xs[0]
    if op in ("mul", "div") and _is_one(xs[1]):
        return xs[0]
    if op == "mul" and _is_one(xs[0]):
        return xs[1]
    return None


def _is_zero(x: Expr) -> bool:
    return isinstance(x, Const) and not isinstance(x.value, bool) and x.value == 0 \
        and isinstance(x.value, int)


def _is_one(x: Expr) -> bool:
    return isinstance(x, Const) and not isinstance(x.value, bool) and x.value == 1


def _boolean(x: Expr) -> bool:
    return isinstance(x, Call) and x.op in COMPARISONS + LOGICAL


def _integral(x: Expr) -> bool:
    """An index expression (no float anywhere), whose comparisons negate exactly (no NaN)."""
    if isinstance(x, Index):
        return True
    if isinstance(x, Const):
        return isinstance(x.value, int) and not isinstance(x.value, bool)
    if isinstance(x, Call):
        return x.op in ("add", "sub", "mul", "floordiv", "mod", "neg") and all(map(_integral, x.args))
    return False


def _py(op: str, *v: Any) -> Any:
    """Constant folding, with torch's meaning of each operator on Python scalars."""
    ops = {
        "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b, "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b,
        "pow": lambda a, b: a ** b, "neg": lambda a: -a, "abs": abs,
        "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
        "and": lambda a, b: bool(a) and bool(b), "or": lambda a, b: bool(a) or bool(b),
        "not": lambda a: not a, "minimum": min, "maximum": max,
        "where": lambda c, a, b: a if c else b,
    }
    if op not in ops:
        raise ValueError(op)
    return ops[op](*v)


def render(e: Expr, parent: int = 0) -> str:
    """Infix text of an expression, parenthesised only where precedence needs it."""
    if not isinstance(e, Call):
        return repr(e)
    arity, sym, prec = OPS[e.op]
    if sym is None:
        return f"{e.op}({', '.join(render(a) for a in e.args)})"
    if arity == 1:
        text = f"{sym}{render(e.args[0], prec)}"
    else:
        text = f"{render(e.args[0], prec)} {sym} {render(e.args[1], prec + 1)}"
    return f"({text})" if prec < parent or (prec == 4 and 0 < parent <= 4) else text


def walk(e: Expr):
    """Every node of an expression, parents first."""
    yield e
    if isinstance(e, Call):
        for a in e.args:
            yield from walk(a)
    elif isinstance(e, Captured):
        for a in e.index:
            yield from walk(a)


def captured_names(*exprs: Expr | None) -> tuple[str, ...]:
    """Names of the captured tensors, in order of first appearance."""
    out: list[str] = []
    for e in exprs:
        if e is None:
            continue
        for n in walk(e):
            if isinstance(n, Captured) and n.name not in out:
                out.append(n.name)
    return tuple(out)


def rename(e: Expr | None, names: dict[str, str]) -> Expr | None:
    """The expression with captured tensors renamed."""
    if e is None or isinstance(e, (Score, Index, Const)):
        return e
    if isinstance(e, Captured):
        return Captured(names.get(e.name, e.name), tuple(rename(i, names) for i in e.index))
    return Call(e.op, tuple(rename(a, names) for a in e.args))


@dataclass(frozen=True)
class Structure:
    """The proved class of a mask: ``kind`` in full, causal, sliding_window, chunked, prefix,
    arbitrary; ``params`` sorted (name, value) pairs; ``data`` the data-dependent parts
    (``padding``, ``documents``, ``data``) that are conjoined with the index structure."""

    kind: str = "full"
    params: tuple[tuple[str, Any], ...] = ()
    data: tuple[str, ...] = ()

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def __str__(self) -> str:
        p = dict(self.params)
        words: list[str] = []
        if self.kind == "causal":
            words.append("causal" + (f" offset={p['offset']}" if p.get("offset") else ""))
        elif self.kind == "sliding_window":
            left, right = p.get("left"), p.get("right")
            if right == 0 and left is not None:
                words.append(f"causal window={left + 1}")
            else:
                words.append(f"window=({left},{right})")
        elif self.kind == "chunked":
            words.append(("causal " if p.get("causal") is not None else "") + f"chunk={p['size']}")
        elif self.kind == "prefix":
            offset = f" offset={p['offset']}" if p.get("offset") else ""
            words.append(f"prefix={p['prefix']} causal{offset}")
        elif self.kind != "full":
            words.append(self.kind)
        words.extend(self.data)
        return " ".join(words)
