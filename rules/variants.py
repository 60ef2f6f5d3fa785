"""Attention variants recovered from unmodified eager graphs as an ``AttentionSpec``.

``patterns/attention_variants.pypm`` finds softmax attention in its written-out forms (with the
scores' chain of scaling, soft-capping, biases and masks; with sinks; with K/V repeated for
grouped queries). Here the bound pieces are read:

- K and V are taken before ``repeat_kv``/``repeat_interleave`` (:func:`repeats_heads` is the
  guard that checks repeat_kv's index); the group size comes from the shapes.
- The chain from the scores to the softmax becomes an expression over the raw score; side
  operands (biases, masks) are lifted by the index algebra of :mod:`.lift`.
- The outermost mask (``where``/``masked_fill`` with a very negative fill, or an added
  ``where(keep, 0, fill)``) is peeled off as the mask predicate; a positive scale applied after
  a -inf mask is moved inside it first. What remains is the score modification; a constant
  factor on the raw score is the scale.

:func:`recover` returns, per attention site, the spec or the reason none was recovered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

import pypm
from pypm import guard_function, load
from pypm.kernels import spec as _spec

from .lift import Lifter, has_dims, to_indices

AttentionSpec = _spec.AttentionSpec
Call = _spec.Call
Captured = _spec.Captured
Const = _spec.Const
Expr = _spec.Expr
Score = _spec.Score
call = _spec.call
walk = _spec.walk


_VERY_NEGATIVE = -1e4  # a fill at or below this is a mask (exp underflows to 0 in every dtype)
_CHAIN = ("mul", "div", "add", "sub", "tanh", "neg", "masked_fill", "where", "to", "type_as")


def repeats_heads(rep: Any) -> bool:
    """Guard function: ``rep`` is repeat_kv's index ``[:, :, None]`` (a new dim after the heads)."""
    full = slice(None, None, None)
    return isinstance(rep, tuple) and len(rep) >= 3 and rep[0] == full and rep[1] == full \
        and rep[2] is None and all(r == full for r in rep[3:])


GUARDS = (("repeats_heads", repeats_heads),)


def register() -> None:
    """Register the guard functions the variant patterns call (idempotent)."""
    for name, fn in GUARDS:
        guard_function(fn, name=name)


class NotRecovered(Exception):
    """Why a match was not lifted into a specification."""


@dataclass
class Site:
    """One attention site: its root node, the spec (or the reason there is none), and the graph
    nodes the spec reads (q, k, v before repeats; captured tensors by their spec names)."""

    root: Any
    spec: AttentionSpec | None = None
    reason: str | None = None
    q: Any = None
    k: Any = None
    v: Any = None
    captured: dict[str, Any] = field(default_factory=dict)


def _patterns() -> Any:
    register()
    return load("attention_variants")


def _shape(t: Any) -> tuple[int, ...]:
    from .lift import _shape as shape_of

    s = shape_of(t)
    if s is None:
        raise NotRecovered(f"{t!r} has no static shape")
    return s


def _heads(kv: Any, rep: Any, dim: Any, repeated: Any) -> int:
    """The number of times each K/V head is repeated, checked against the repeat's spelling."""
    base = _shape(kv)
    if rep is None:
        return 1
    if isinstance(rep, tuple):  # x[:, :, None].expand(B, Hkv, n, S, D).reshape(B, Hkv * n, S, D)
        expanded = _shape(repeated.args[0])
        out = _shape(repeated)
        if len(base) != 4 or len(expanded) != 5 or expanded[:2] != base[:2] or expanded[3:] != base[2:] \
                or out != (base[0], base[1] * expanded[2], base[2], base[3]):
            raise NotRecovered(f"repeat of K/V heads with shapes {base} -> {expanded} -> {out}")
        return expanded[2]
    if isinstance(rep, int) and not isinstance(rep, bool) and dim in (1, -3) and len(base) == 4:
        return rep
    raise NotRecovered(f"repeat_interleave({rep!r}, dim={dim!r}) is not a repeat of heads")


class _Chain:
    """The expression of a logits term over the raw score (``Score``)."""

    def __init__(self, lifter: Lifter, scores_ndim: int = 4):
        self.lifter = lifter
        self.ndim = scores_ndim
        self.scores: Any = None
        self.casts: list[Any] = []

    def reaches(self, t: Any) -> bool:
        if not hasattr(t, "op"):
            return False
        if t.op in ("matmul", "bmm"):
            return True
        return t.op in _CHAIN and any(self.reaches(a) for a in t.args[:3])

    def side(self, t: Any) -> Expr:
        e, shape = self.lifter.lift(t)
        if len(shape) > self.ndim:
            raise NotRecovered(f"{t!r} of shape {shape} does not broadcast to the scores")
        out = to_indices(e, shape, self.ndim)
        if has_dims(out):
            raise NotRecovered(f"{t!r} is not read at score positions")
        return out

    def expr(self, t: Any) -> Expr:
        if t.op in ("matmul", "bmm"):
            self.scores = t
            return Score()
        op, args = t.op, t.args
        on = [i for i, a in enumerate(args[:3]) if self.reaches(a)]
        if len(on) != 1:
            raise NotRecovered(f"{t!r}: the scores reach it {len(on)} times")
        i = on[0]
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
        if op == "mul":
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
            if _fill(b) is not None:
                rest = x if a in (Const(0.0), Const(0)) else \
                    call("add", x, call("where", keep, a, Const(0.0)))
                return rest, keep, _fill(b), "add"
    return e, None, -math.inf, "fill"


def _take_scale(e: Expr) -> tuple[Expr, float]:
    """A constant factor applied to the raw score first is the scale."""
    def go(x: Expr) -> tuple[Expr, float | None]:
        if isinstance(x, Call):
            if x.op in ("mul", "div") and x.args[0] == Score() and isinstance(x.args[1], Const) \
                    and not isinstance(x.args[1].value, bool) and x.args[1].value != 0:
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


def lift_match(m: Any, pats: Any) -> Site:
    """A match of ``AttentionVariant`` read into a :class:`Site` (raises NotRecovered)."""
    b = m.bindings
    lifter = Lifter()
    sinks = None
    if b.get("logits") is not None:
        logits = b["logits"]
        probs = b["probs"]
    else:
        parts, sl = b.get("parts"), b.get("slice_")
        if not (isinstance(parts, tuple) and len(parts) == 2):
            raise NotRecovered(f"sinks: cat of {parts!r}")
        if sl != (Ellipsis, slice(None, -1, None)):
            raise NotRecovered(f"sinks: the probabilities are sliced {sl!r}, not [..., :-1]")
        logits, sink_t = parts
        probs = b["probs"].args[0]
        ls, ss = _shape(logits), _shape(sink_t)
        if len(ss) != len(ls) or ss[-1] != 1 or ss[:-1] != ls[:-1]:
            raise NotRecovered(f"sinks of shape {ss} beside logits of shape {ls}")
        e, shape = lifter.lift(sink_t)
        sinks = to_indices(e, shape)
    chain = _Chain(lifter)
    raw = chain.expr(logits)
    found = pypm.match(pats.VScores, chain.scores)
    if not found:
        raise NotRecovered(f"{chain.scores!r} is not q @ k^T")
    scores_m = found[0].bindings
    q, k = scores_m["q"], scores_m["k"]
    qs, ks = _shape(q), _shape(k)
    if len(qs) != 4:
        raise NotRecovered(f"q has shape {qs}, not (B, H, S, D)")
    repeated_k = chain.scores.args[1].args[0]
    group = _heads(k, scores_m.get("rep_k"), scores_m.get("dim_k"), repeated_k)
    v = b["v"]
    vgroup = _heads(v, b.get("rep_v"), b.get("dim_v"), m.root.args[1])
    vs = _shape(v)
    if group != vgroup or ks[1] != vs[1] or qs[1] != group * ks[1]:
        raise NotRecovered(f"heads: q {qs}, k {ks} (x{group}), v {vs} (x{vgroup})")
    mod, mask, fill, mode = _peel_mask(_push_scale(raw))
    mod, scale = _take_scale(mod)
    spec = AttentionSpec(group=group, scale=scale, score_mod=mod, mask=mask, fill=fill, mask_mode=mode,
                         sinks=sinks, softmax_dtype=_softmax_dtype(probs, chain.casts))
    names = spec.captured
    canon = spec.canonical()
    nodes = {f"c{i}": lifter.captured[n] for i, n in enumerate(names)}
    return Site(m.root.node, canon, None, q.node, k.node, v.node, nodes)


def _preference(m: Any) -> int:
    """Matches that took K/V before their repeat first."""
    b = m.bindings
    return -(b.get("rep_k") is not None or b.get("dim_k") is not None) \
        - (b.get("rep_v") is not None or b.get("dim_v") is not None)


def recover_sites(graph_module: torch.fx.GraphModule, example_inputs: Any = None) -> list[Site]:
    """Every attention site of a graph, with its specification or the reason it has none."""
    pats = _patterns()
    by_root: dict[Any, list[Any]] = {}
    for m in pypm.match(pats.AttentionVariant, graph_module, example_inputs):
        by_root.setdefault(m.root.node, []).append(m)
    out = []
    for root, ms in by_root.items():
        site = None
        reasons = []
        for m in sorted(ms, key=_preference):
            try:
                site = lift_match(m, pats)
                break
            except NotRecovered as e:
                reasons.append(str(e))
        out.append(site if site is not None else Site(root, None, "; ".join(dict.fromkeys(reasons))))
    return out


def recover(graph_module: torch.fx.GraphModule, example_inputs: Any = None) -> list[tuple[Any, Any]]:
    """``[(root node, AttentionSpec or the reason none was recovered)]`` for each attention site."""
    return [(s.root, s.spec if s.spec is not None else s.reason)
            for s in recover_sites(graph_module, example_inputs)]


__all__ = ["GUARDS", "NotRecovered", "Site", "lift_match", "recover", "recover_sites", "register",
           "repeats_heads"]
