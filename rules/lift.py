"""Index algebra: a tensor term of a mask- or bias-building subgraph read as an expression of
its own positions, so that masks built from ``arange``, offsets, comparisons, ``&``/``|``/``~``,
``where``, ``masked_fill``, ``expand``, slices and index lookups become
:class:`pypm.kernels.spec.Expr` trees over ``b, h, q_idx, kv_idx``.

A lifted tensor is an expression over :class:`Dim` variables, one per dim of the tensor
(``arange(n)`` is ``d0``; ``x[None, :, None]`` renames ``d0`` to ``d1``; an elementwise op
right-aligns its operands' dims, as broadcasting does). A term the algebra cannot read (a
``cumsum``, an embedding lookup, a graph input) becomes a captured tensor read at its own
positions, ``name[d0, d1, ...]``: always exact, only less structured. :func:`to_indices` finally
maps the dims of a tensor that broadcasts to the 4-d scores onto ``b, h, q_idx, kv_idx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy
import torch

from pypm.graph import size_value
from pypm.kernels import spec as _spec

INDICES = _spec.INDICES
Call = _spec.Call
Captured = _spec.Captured
Const = _spec.Const
Expr = _spec.Expr
Index = _spec.Index
Score = _spec.Score
call = _spec.call

_ELEMENTWISE = {
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "floor_divide": "floordiv",
    "remainder": "mod",
    "pow": "pow",
    "eq": "eq",
    "ne": "ne",
    "lt": "lt",
    "le": "le",
    "gt": "gt",
    "ge": "ge",
    "logical_and": "and",
    "logical_or": "or",
    "bitwise_and": "and",
    "bitwise_or": "or",
    "and_": "and",
    "or_": "or",
    "__and__": "and",
    "__or__": "or",
    "minimum": "minimum",
    "maximum": "maximum",
}
_UNARY = {
    "neg": "neg",
    "logical_not": "not",
    "bitwise_not": "not",
    "invert": "not",
    "tanh": "tanh",
    "exp": "exp",
    "log": "log",
    "abs": "abs",
    "sqrt": "sqrt",
    "floor": "floor",
}
_IDENTITY = ("contiguous", "clone", "detach", "alias")
_FILLS = {"ones": 1, "zeros": 0, "new_ones": 1, "new_zeros": 0, "ones_like": 1, "zeros_like": 0}


@dataclass(frozen=True, eq=True, repr=False)
class Dim(Expr):
    """Position along dim ``i`` of the tensor being lifted."""

    i: int

    def __repr__(self) -> str:
        return f"d{self.i}"


def subst(e: Expr, m: dict[int, Expr]) -> Expr:
    """``e`` with each ``Dim(i)`` replaced by ``m[i]`` (constants folded again)."""
    if isinstance(e, Dim):
        return m.get(e.i, e)
    if isinstance(e, Captured):
        return Captured(e.name, tuple(subst(i, m) for i in e.index))
    if isinstance(e, Call):
        return call(e.op, *(subst(a, m) for a in e.args))
    return e


def _shape(t: Any) -> tuple[Any, ...] | None:
    """A term's sizes: ints, or sympy expressions where they are symbolic (None: unknown)."""
    shape = getattr(t, "shape", None)
    if shape is None:
        return None
    out = tuple(size_value(s) for s in shape)
    return out if all(isinstance(s, (int, sympy.Expr)) for s in out) else None


class Lifter:
    """Lifts terms of one graph; ``captured`` collects the graph nodes read as captured tensors
    (name -> node)."""

    def __init__(self) -> None:
        self.captured: dict[str, Any] = {}
        self._memo: dict[int, tuple[Expr, tuple[int, ...]]] = {}

    # ---- results: (expr over Dim(i), shape) ------------------------------------------------
    def lift(self, t: Any) -> tuple[Expr, tuple[int, ...]]:
        if isinstance(t, bool):
            return Const(t), ()
        if isinstance(t, (int, float)):
            return Const(t), ()
        key = id(t)
        if key not in self._memo:
            shape = _shape(t)
            out = None
            if shape is not None:
                try:
                    out = self._lift(t, shape)
                except (TypeError, ValueError, IndexError, KeyError):
                    out = None
            if out is None:
                out = (self.opaque(t), shape if shape is not None else ())
            e, s = out
            self._memo[key] = (_squeeze_ones(e, s), s)
        return self._memo[key]

    def opaque(self, t: Any) -> Expr:
        """A term read as a captured tensor at its own positions."""
        node = t.node
        name = getattr(node, "name", None) or repr(t)
        self.captured[name] = node
        shape = _shape(t) or ()
        return Captured(name, tuple(Dim(i) for i in range(len(shape))))

    def _lift(self, t: Any, shape: tuple[int, ...]) -> tuple[Expr, tuple[int, ...]] | None:
        op = t.op.removeprefix("aten.")
        args = t.args
        if op == "arange":
            return self._arange(t, shape)
        if op in _FILLS:
            return Const(_fill_value(_FILLS[op], t.dtype)), shape
        if op in ("full", "new_full") and len(args) > 1 and isinstance(args[1], (int, float, bool)):
            return Const(_fill_value(args[1], t.dtype)), shape
        if op in _ELEMENTWISE and len(args) >= 2:
            if op in ("add", "sub") and len(args) > 2 and args[2] != 1:
                return None
            return self._broadcast(_ELEMENTWISE[op], args[:2], shape)
        if op in _UNARY and args:
            if op == "bitwise_not" and getattr(args[0], "dtype", None) != torch.bool:
                return None
            return self._broadcast(_UNARY[op], args[:1], shape)
        if op == "where" and len(args) >= 3:
            return self._broadcast("where", args[:3], shape)
        if op == "masked_fill" and len(args) >= 3:
            return self._broadcast("where", (args[1], args[2], args[0]), shape)
        if op in _IDENTITY and args:
            return self.lift(args[0])
        if op in ("to", "type", "float", "bool", "long", "int", "type_as", "_to_copy"):
            return self._cast(t, shape)
        if op == "unsqueeze" and len(args) > 1:
            e, s = self.lift(args[0])
            d = args[1] % (len(s) + 1)
            return subst(e, {i: Dim(i + (i >= d)) for i in range(len(s))}), shape
        if op == "expand" and args:
            e, s = self.lift(args[0])
            return subst(e, {i: Dim(i + len(shape) - len(s)) for i in range(len(s))}), shape
        if op in ("view", "reshape", "_unsafe_view") and args:
            return self._reshape(args[0], shape)
        if op in ("transpose", "permute") and args:
            return self._permute(op, args, shape)
        if op == "getitem" and len(args) > 1:
            return self._getitem(args[0], args[1], shape)
        return None

    def _arange(self, t: Any, shape: tuple[int, ...]) -> Any:
        """``arange(end)``, ``arange(start, end[, step])``, read from the node itself (keyword
        arguments such as ``device`` leave the term's positions unspecified)."""
        node = t.node
        args = [a for a in getattr(node, "args", ())]
        kw = dict(getattr(node, "kwargs", {}))
        if len(args) == 1 and "end" not in kw:
            start, step = kw.get("start", 0), kw.get("step", 1)
        else:
            start = args[0] if args else kw.get("start", 0)
            step = args[2] if len(args) > 2 else kw.get("step", 1)
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, step)):
            return None
        return call("add", call("mul", Dim(0), step), start), shape

    def _broadcast(self, op: str, operands: tuple[Any, ...], shape: tuple[int, ...]) -> Any:
        xs = []
        for a in operands:
            e, s = self.lift(a)
            xs.append(subst(e, {i: Dim(i + len(shape) - len(s)) for i in range(len(s))}))
        return call(op, *xs), shape

    def _cast(self, t: Any, shape: tuple[int, ...]) -> Any:
        src = t.args[0]
        e, _ = self.lift(src)
        to, frm = t.dtype, getattr(src, "dtype", None)
        if to is None or frm is None or to == frm:
            return e, shape
        if to == torch.bool:
            return (e if frm == torch.bool else call("ne", e, 0)), shape
        if to.is_floating_point:
            return (call("float", e) if not frm.is_floating_point else e), shape
        if frm == torch.bool or not frm.is_floating_point:
            return e, shape  # integer to a wider integer: index arithmetic at mask sizes
        return None  # float to integer truncates

    def _reshape(self, src: Any, shape: tuple[int, ...]) -> Any:
        """A reshape that only adds or removes dims of size 1."""
        e, s = self.lift(src)
        big_src = [i for i, n in enumerate(s) if n != 1]
        big_out = [i for i, n in enumerate(shape) if n != 1]
        if [s[i] for i in big_src] != [shape[i] for i in big_out]:
            return None
        return subst(e, dict(zip(big_src, (Dim(i) for i in big_out)))), shape

    def _permute(self, op: str, args: tuple[Any, ...], shape: tuple[int, ...]) -> Any:
        e, s = self.lift(args[0])
        n = len(s)
        if op == "transpose":
            a, b = args[1] % n, args[2] % n
            perm = list(range(n))
            perm[a], perm[b] = perm[b], perm[a]
        else:
            perm = [p % n for p in args[1]]
        return subst(e, {src: Dim(dst) for dst, src in enumerate(perm)}), shape

    def _getitem(self, base: Any, idx: Any, shape: tuple[int, ...]) -> Any:
        e, s = self.lift(base)
        idx = idx if isinstance(idx, tuple) else (idx,)
        tensors = [hasattr(i, "op") for i in idx]
        if any(tensors):
            if not all(tensors[: len(idx)]) or len(idx) > len(s):
                return None  # mixed basic and advanced indexing
            m: dict[int, Expr] = {}
            for j, i in enumerate(idx):
                ie, isz = self.lift(i)
                m[j] = subst(
                    ie, {k: Dim(k + len(shape) - (len(s) - len(idx)) - len(isz)) for k in range(len(isz))}
                )
            for j in range(len(idx), len(s)):
                m[j] = Dim(len(shape) - (len(s) - j))
            return subst(e, m), shape
        if any(i is Ellipsis for i in idx):
            k = idx.index(Ellipsis)
            used = sum(1 for i in idx if i is not None and i is not Ellipsis)
            idx = idx[:k] + (slice(None),) * (len(s) - used) + idx[k + 1 :]
        m = {}
        src = out = 0
        for i in idx:
            if i is None:
                out += 1
                continue
            if isinstance(i, int):
                if not isinstance(s[src], int) and i < 0:
                    return None
                m[src] = Const(i % s[src] if isinstance(s[src], int) else i)
                src += 1
                continue
            if not isinstance(i, slice):
                return None
            if isinstance(s[src], int):
                start, _, step = i.indices(s[src])
            else:  # a symbolic size: a slice from a known start, forwards
                start, step = i.start or 0, i.step or 1
                if not (isinstance(start, int) and isinstance(step, int) and start >= 0 and step > 0):
                    return None
            m[src] = call("add", call("mul", Dim(out), step), start)
            src += 1
            out += 1
        for j in range(src, len(s)):
            m[j] = Dim(out)
            out += 1
        return subst(e, m), shape


def _fill_value(v: Any, dtype: Any) -> Any:
    if dtype == torch.bool:
        return bool(v)
    if dtype is not None and dtype.is_floating_point:
        return float(v)
    return int(v)


def _squeeze_ones(e: Expr, shape: tuple[int, ...]) -> Expr:
    """Positions along a dim of size 1 are 0."""
    return subst(e, {i: Const(0) for i, n in enumerate(shape) if n == 1})


def to_indices(e: Expr, shape: tuple[int, ...], scores_ndim: int = 4) -> Expr:
    """A lifted tensor that broadcasts to the scores, over ``b, h, q_idx, kv_idx``."""
    names = INDICES[4 - scores_ndim :]
    m: dict[int, Expr] = {}
    for i, n in enumerate(shape):
        j = i + scores_ndim - len(shape)
        m[i] = Const(0) if n == 1 or j < 0 else Index(names[j])
    return subst(e, m)


def has_dims(e: Expr) -> bool:
    return any(isinstance(n, Dim) for n in _spec.walk(e))


__all__ = ["Dim", "Lifter", "Score", "has_dims", "subst", "to_indices"]
