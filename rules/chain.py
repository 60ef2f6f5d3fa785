"""The score chain of an attention site read as an expression: from the matmul of q and k^T
(or ``baddbmm``'s bias plus scaled product) through scaling, soft-capping, biases, masks, casts
and head-merging views to the softmax, over the raw score ``s``; side operands (biases, masks)
are lifted by the index algebra of :mod:`.lift`. Then the outermost mask is peeled off as the
mask predicate and a constant factor on the raw score is taken as the scale (what
:mod:`.variants` builds an ``AttentionSpec`` from).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from pypm.graph import meta_value
from pypm.kernels import spec as _spec

from .lift import Lifter, has_dims, subst, to_indices

Call = _spec.Call
Const = _spec.Const
Expr = _spec.Expr
Index = _spec.Index
Score = _spec.Score
call = _spec.call
walk = _spec.walk

_VERY_NEGATIVE = -1e4  # a fill at or below this is a mask (exp underflows to 0 in every dtype)
_CHAIN = ("mul", "imul", "div", "add", "sub", "tanh", "neg", "masked_fill", "where", "to", "type_as",
          "view", "reshape")
_SCORES = ("matmul", "bmm", "baddbmm")


class NotRecovered(Exception):
    """Why a match was not lifted into a specification."""



def _shape(t: Any) -> tuple[int, ...]:
    from .lift import _shape as shape_of

    s = shape_of(t)
    if s is None:
        raise NotRecovered(f"{t!r} has no known shape")
    return s


def _heads(kv: Any, rep: Any, dim: Any, repeated: Any) -> int:
    """The number of times each K/V head is repeated, checked against the repeat's spelling."""
    base = _shape(kv)
    if rep is None:
        return 1
    if isinstance(rep, tuple):  # x[:, :, None].expand(B, Hkv, n, S, D).reshape(B, Hkv * n, S, D)
        expanded = _shape(repeated.args[0])
        out = _shape(repeated)
        if (
            len(base) != 4
            or len(expanded) != 5
            or expanded[:2] != base[:2]
            or expanded[3:] != base[2:]
            or out != (base[0], base[1] * expanded[2], base[2], base[3])
        ):
            raise NotRecovered(f"repeat of K/V heads with shapes {base} -> {expanded} -> {out}")
        return expanded[2]
    if isinstance(rep, int) and not isinstance(rep, bool) and dim in (1, -3) and len(base) == 4:
        return rep
    raise NotRecovered(f"repeat_interleave({rep!r}, dim={dim!r}) is not a repeat of heads")


class _Chain:
    """The expression of a logits term over the raw score (``Score``). Below a view that splits
    the batch-and-heads dim of 3-d scores ``(B * H, Sq, Sk)`` into ``(B, H, Sq, Sk)`` (Bloom's
    ``baddbmm`` form), side operands are 3-d and their first dim is read at ``b * H + h``
    (``merged`` holds H there)."""

    def __init__(self, lifter: Lifter, scores_ndim: int = 4):
        self.lifter = lifter
        self.ndim = scores_ndim
        self.scores: Any = None
        self.casts: list[Any] = []
        self.merged: Any = None
        self._below_view = False

    def reaches(self, t: Any) -> bool:
        if not hasattr(t, "op"):
            return False
        if t.op in _SCORES:
            return True
        return t.op in _CHAIN and any(self.reaches(a) for a in t.args[:3])

    def side(self, t: Any) -> Expr:
        e, shape = self.lifter.lift(t)
        if self._below_view:
            return self._merged_side(t, e, shape)
        if len(shape) > self.ndim:
            raise NotRecovered(f"{t!r} of shape {shape} does not broadcast to the scores")
        out = to_indices(e, shape, self.ndim)
        if has_dims(out):
            raise NotRecovered(f"{t!r} is not read at score positions")
        return out

    def _merged_side(self, t: Any, e: Expr, shape: tuple[Any, ...]) -> Expr:
        """A side operand of 3-d scores: its dims right-aligned to ``(B * H, Sq, Sk)``, the first
        read at ``b * H + h``."""
        if len(shape) > 3:
            raise NotRecovered(f"{t!r} of shape {shape} does not broadcast to the 3-d scores")
        names: list[Expr] = [call("add", call("mul", Index("b"), self.merged), Index("h")),
                             Index("q_idx"), Index("kv_idx")]
        m = {}
        for i, n in enumerate(shape):
            j = i + 3 - len(shape)
            m[i] = Const(0) if n == 1 else names[j]
        out = subst(e, m)
        if has_dims(out):
            raise NotRecovered(f"{t!r} is not read at score positions")
        return out

    def _view(self, t: Any) -> None:
        """A view or reshape on the chain: the identity on the scores' shape, or the split of 3-d
        scores' first dim into (B, H) (then the 3-d operands below it are read as such)."""
        src, out = _shape_of(t.args[0]), _shape_of(t)
        if src == out and self.merged is None:
            return
        if self.merged is None and len(src) == 3 and len(out) == 4 and src[1:] == out[2:] \
                and _same(src[0], out[0] * out[1]):
            self.merged = out[1]
            return
        raise NotRecovered(f"{t!r}: a view of the scores from {src} to {out}")

    def _factor(self, t: Any, c: Any) -> Expr:
        """``baddbmm``'s beta or alpha: a number, or a scalar the graph computes (symbolic under
        dynamic shapes), read as a captured value."""
        if isinstance(c, (int, float)) and not isinstance(c, bool):
            return Const(float(c)) if c not in (0, 1) else Const(int(c))
        if hasattr(c, "op") and isinstance(meta_value(c.node), (torch.SymFloat, torch.SymInt, float, int)):
            return self.lifter.opaque(c)
        raise NotRecovered(f"{t!r}: a factor {c!r}")

    def expr(self, t: Any) -> Expr:
        if t.op in ("matmul", "bmm"):
            self.scores = t
            return Score()
        if t.op == "baddbmm":  # beta * input + alpha * (batch1 @ batch2)
            self.scores = t
            beta, alpha = (self._factor(t, t.args[j] if len(t.args) > j else 1) for j in (3, 4))
            s = Score() if alpha == Const(1) else call("mul", Score(), alpha)
            if beta == Const(0):
                return s
            bias = self.side(t.args[0])
            return call("add", s, bias if beta == Const(1) else call("mul", bias, beta))
        op, args = t.op, t.args
        on = [i for i, a in enumerate(args[:3]) if self.reaches(a)]
        if len(on) != 1:
            raise NotRecovered(f"{t!r}: the scores reach it {len(on)} times")
        i = on[0]
        if op in ("view", "reshape"):
            if i != 0:
                raise NotRecovered(f"{t!r}: not a view of the scores")
            self._view(t)
            below, self._below_view = self._below_view, self.merged is not None
            try:
                return self.expr(args[0])
            finally:
                self._below_view = below
        x = self.expr(args[i])
        if op in ("to", "type_as"):
            self.casts.append(t.dtype)
            return x
        if op in ("tanh", "neg"):
            return call(op, x)
        if op in ("add", "sub"):
            if len(args) > 2 and args[2] != 1:
                raise NotRecovered(f"{t!r}: alpha={args[2]!r}")
            y = self.side(args[1 - i])
            return call(op, x, y) if i == 0 else call(op, y, x)
        if op in ("mul", "imul"):
            return call("mul", x, self.side(args[1 - i]))
        if op == "div":
            if i != 0 or (len(args) > 2 and args[2] is not None):
                raise NotRecovered(f"{t!r}: not a true division of the scores")
            return call("div", x, self.side(args[1]))
        if op == "masked_fill" and i == 0:
            return call("where", self.side(args[1]), self.side(args[2]), x)
        if op == "where" and i in (1, 2):
            ys = [self.side(a) if j != i else x for j, a in enumerate(args[:3])]
            return call("where", *ys)
        raise NotRecovered(f"{t!r}: not a score operation")


def _shape_of(t: Any) -> tuple[Any, ...]:
    return _shape(t)


def _same(a: Any, b: Any) -> bool:
    """Two sizes are equal (ints, or sympy expressions that simplify to the same)."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    import sympy

    return sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0


def _has_score(e: Expr) -> bool:
    return any(isinstance(n, Score) for n in walk(e))


def _fill(e: Expr) -> float | None:
    if isinstance(e, Const) and not isinstance(e.value, bool) and e.value <= _VERY_NEGATIVE:
        return float(e.value)
    return None


def _push_scale(e: Expr) -> Expr:
    """``where(keep, x, -inf) * c`` with c > 0 is ``where(keep, x * c, -inf)`` (also for /)."""
    if isinstance(e, Call) and e.op in ("mul", "div") and isinstance(e.args[1], Const):
        inner, c = _push_scale(e.args[0]), e.args[1].value
        if isinstance(inner, Call) and inner.op == "where" and not isinstance(c, bool) and c > 0:
            keep, a, b = inner.args
            if _fill(b) == -math.inf and _has_score(a):
                return call("where", keep, call(e.op, a, e.args[1]), b)
            if _fill(a) == -math.inf and _has_score(b):
                return call("where", keep, a, call(e.op, b, e.args[1]))
        return call(e.op, inner, e.args[1])
    return e


def _peel_mask(e: Expr) -> tuple[Expr, Expr | None, float, str]:
    """(score_mod, mask, fill, mode): the outermost mask taken off the logits, as written."""
    if isinstance(e, Call) and e.op == "where":
        keep, a, b = e.args
        if not _has_score(keep):
            if _fill(b) is not None and _has_score(a):
                return a, keep, _fill(b), "fill"
            if _fill(a) is not None and _has_score(b):
                return b, call("not", keep), _fill(a), "fill"
    if isinstance(e, Call) and e.op == "add":
        x, y = e.args
        if _has_score(y) and not _has_score(x):
            x, y = y, x
        if isinstance(y, Call) and y.op == "where" and not _has_score(y):
            keep, a, b = y.args
            if _fill(b) is None and _fill(a) is not None:  # where(drop, fill, a): keep is ~drop
                keep, a, b = _negate(keep), b, a
            if _fill(b) is not None:
                rest = (
                    x if a in (Const(0.0), Const(0)) else call("add", x, call("where", keep, a, Const(0.0)))
                )
                return rest, keep, _fill(b), "add"
    return e, None, -math.inf, "fill"


def _negate(e: Expr) -> Expr:
    return e.args[0] if isinstance(e, Call) and e.op == "not" else call("not", e)


def _take_scale(e: Expr) -> tuple[Expr, float]:
    """A constant factor applied to the raw score first is the scale."""

    def go(x: Expr) -> tuple[Expr, float | None]:
        if isinstance(x, Call):
            if (
                x.op in ("mul", "div")
                and x.args[0] == Score()
                and isinstance(x.args[1], Const)
                and not isinstance(x.args[1].value, bool)
                and x.args[1].value != 0
            ):
                c = float(x.args[1].value)
                return Score(), (c if x.op == "mul" else 1.0 / c)
            if x.op == "mul" and x.args[1] == Score() and isinstance(x.args[0], Const):
                return Score(), float(x.args[0].value)
            for j, a in enumerate(x.args):
                if _has_score(a):
                    inner, c = go(a)
                    args = list(x.args)
                    args[j] = inner
                    return Call(x.op, tuple(args)), c
        return x, None

    out, c = go(e)
    return (out, c) if c is not None else (e, 1.0)


def _softmax_dtype(probs: Any, casts: list[Any]) -> str | None:
    dt = None
    sm = probs if probs.op == "softmax" else None
    if sm is not None and len(sm.args) > 2 and sm.args[2] is not None:
        dt = sm.args[2]
    elif casts:
        dt = casts[-1]
    return None if dt is None else str(dt).removeprefix("torch.")



def unmerge(t: Any, heads: Any) -> Any:
    """The 4-d ``(B, H, S, D)`` tensor whose view or reshape to ``(B * H, S, D)`` is ``t`` (q, k or
    v of attention written with 3-d matmuls), H given."""
    if getattr(t, "op", None) not in ("view", "reshape"):
        raise NotRecovered(f"{t!r} is 3-d, not a view of (B, H, S, D)")
    src, out = _shape(t.args[0]), _shape(t)
    if len(src) != 4 or len(out) != 3 or not _same(src[1], heads) or src[2:] != out[1:] \
            or not _same(out[0], src[0] * src[1]):
        raise NotRecovered(f"{t!r}: a view from {src} to {out}, not of (B, H, S, D) merging B and H")
    return t.args[0]


def flat_probs(root: Any, probs: Any) -> bool:
    """Whether the probabilities reach the matmul with v through a view that merges their batch
    and heads dims, ``(B, H, Sq, Sk)`` to ``(B * H, Sq, Sk)`` (else only through casts, a dropout
    that is off, and views that keep the shape)."""
    x, flat = root.args[0], False
    while x is not probs and hasattr(x, "op"):
        if x.op in ("view", "reshape"):
            src, out = _shape(x.args[0]), _shape(x)
            if len(src) == 4 and len(out) == 3 and src[2:] == out[1:] and _same(out[0], src[0] * src[1]) \
                    and not flat:
                flat = True
            elif src != out:
                raise NotRecovered(f"{x!r}: the probabilities viewed from {src} to {out}")
        x = x.args[0]
    return flat
