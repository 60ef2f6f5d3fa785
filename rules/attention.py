"""Decomposed scaled-dot-product attention → one fused attention call.

On the fused devices (:data:`pypm.rules.FUSED_DEVICES`, CUDA by default) the call is
``pypm::attention`` (the Triton flash-attention kernel) whenever its contract fits the graph's
types (:func:`fused_unsuitable` says why not); otherwise, and on other devices, it is torch's
``scaled_dot_product_attention``.

The pattern (``patterns/attention.pypm``) binds q, k, v, the scale (``mul_by`` or ``div_by``,
read from the graph, never assumed to be 1/sqrt(d)) and the mask: ``causal`` when the guard
``causal_mask``/``causal_keep`` proved it is the causal triangle, ``mask`` for any other boolean
mask given to ``masked_fill`` (True masks out), ``keep`` for one given to ``where`` (True keeps),
``bias`` for an additive one. The body picks the matching call, or declines with a reason.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from pypm import kernels as ops
from pypm.dsl import load
from pypm.fx import meta_value, size_value
from pypm.guards import eq3
from pypm.rewrite import Decline, rule

from . import on_fused_device

PATTERNS = load("attention")
Attention = PATTERNS.Attention


def _graph_scalar(v: torch.fx.Proxy, what: str) -> None:
    """A scale computed in the graph (a symbolic size, a 0-d or row-wise tensor) may be applied
    to q instead of the scores only if it is constant along the keys (its last dim is 1)."""
    val = meta_value(v.node)
    if isinstance(val, (torch.SymInt, torch.SymFloat, int, float)):
        return
    shape = getattr(val, "shape", None)
    if shape is None:
        raise Decline(f"the {what} is computed in the graph and its type is unknown")
    if len(shape) > 0 and size_value(shape[-1]) != 1:
        raise Decline(f"the {what} is a tensor of shape {list(shape)} that varies along the keys")


def scale_of(q: Any, mul_by: Any, div_by: Any) -> tuple[Any, float]:
    """(q, scale) such that softmax(scale * q' @ k^T) is the graph's softmax: a constant scale
    (``mul_by``, ``1 / div_by``, 1 when unscaled) is passed on as is; one computed in the graph
    (a symbolic size under dynamic shapes, a tensor) is applied to q."""
    for v, what in ((mul_by, "scale"), (div_by, "scale divisor")):
        if v is None:
            continue
        if isinstance(v, torch.fx.Proxy):
            _graph_scalar(v, what)
            return (q * v if v is mul_by else q / v), 1.0
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Decline(f"the {what} {v!r} is not a number")
        if v is div_by:
            if v == 0:
                raise Decline("the scores are divided by zero")
            return q, 1.0 / float(v)
        return q, float(v)
    return q, 1.0


def _positive(v: Any) -> bool:
    """Whether a scale applied after a -inf mask is provably positive (so -inf stays -inf)."""
    if isinstance(v, torch.fx.Proxy):
        val = meta_value(v.node)
        if isinstance(val, (torch.SymInt, torch.SymFloat)):
            return bool(getattr(val.node.expr, "is_positive", False))
        return isinstance(val, (int, float)) and not isinstance(val, bool) and val > 0
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _same(a: Any, b: Any) -> bool:
    """Two sizes known to be equal (ints, or sympy expressions that simplify to the same)."""
    return eq3(size_value(a), size_value(b)) is True


def fused_unsuitable(q: Any, k: Any, v: Any, mask: Any, causal: bool) -> str | None:
    """Why ``pypm::attention`` cannot take these inputs (None when it can), decided from the
    graph's types alone, so that the rewrite never launches a kernel that would refuse them:
    a fused device, 4-d (B, H, S, D) inputs of one float dtype, head dim ≤ 256, key/value heads
    dividing query heads, a mask that broadcasts, and equal query and key lengths for a causal
    mask (pypm aligns causal masks bottom-right, torch's tril top-left)."""
    if not on_fused_device(q):
        return "not on a fused device"
    vals = [meta_value(t.node) if isinstance(t, torch.fx.Proxy) else None for t in (q, k, v)]
    if any(getattr(t, "shape", None) is None or getattr(t, "dtype", None) is None for t in vals):
        return "input types unknown"
    qv, kv, vv = vals
    if any(t.dim() != 4 for t in vals):
        return "inputs are not 4-d"
    if qv.dtype not in _FUSED_DTYPES or not (qv.dtype == kv.dtype == vv.dtype):
        return f"dtype {qv.dtype}"
    (b, hq, sq, d), (bk, hk, sk, dk), (bv, hv, sv, dv) = qv.shape, kv.shape, vv.shape
    d, hq, hk = size_value(d), size_value(hq), size_value(hk)
    if not (isinstance(d, int) and d <= 256 and _same(d, dk) and _same(d, dv)):
        return "head dims"
    if not (_same(b, bk) and _same(b, bv) and _same(hk, hv) and _same(sk, sv)):
        return "batch, heads or lengths differ"
    if not (isinstance(hq, int) and isinstance(hk, int) and hk > 0 and hq % hk == 0):
        return "heads"
    if causal and not _same(sq, sk):
        return "causal with different query and key lengths"
    if mask is not None:
        mv = meta_value(mask.node) if isinstance(mask, torch.fx.Proxy) else None
        if mv is None or getattr(mv, "shape", None) is None:
            return "mask type unknown"
        if mv.dtype != torch.bool and not mv.dtype.is_floating_point:
            return "mask dtype"
        full = (b, hq, sq, sk)
        if mv.dim() > 4 or not all(size_value(m) == 1 or _same(m, f)
                                   for m, f in zip(mv.shape[::-1], full[::-1])):
            return "mask does not broadcast"
    return None


def _attend(q: Any, k: Any, v: Any, *, scale: float, is_causal: bool = False,
            attn_mask: Any = None, fused: bool) -> Any:
    if fused:
        return ops.attention(q, k, v, scale=scale, is_causal=is_causal, attn_mask=attn_mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)


@rule(Attention, name="attention", priority=10)
def attention(q, k, v, mul_by, div_by, mul_after, div_after, causal, mask, keep, fill, bias):
    """One fused attention call for the whole computation: ``pypm::attention`` (Triton) on the
    fused devices when its contract fits, torch's ``scaled_dot_product_attention`` otherwise."""
    after = mul_after if mul_after is not None else div_after
    if after is not None and not _positive(after):
        raise Decline(f"the scale applied after the mask ({after!r}) is not provably positive, "
                      "so the mask's -inf could change sign")
    if (mask is not None or keep is not None) and not (
            isinstance(fill, float) and math.isinf(fill) and fill < 0):
        raise Decline(f"the mask fills {fill!r}, not -inf: a fully masked row would differ "
                      "from scaled_dot_product_attention")
    attend = torch.logical_not(mask) if mask is not None else keep if keep is not None else bias
    fused = fused_unsuitable(q, k, v, mask if mask is not None else attend,
                             causal is not None) is None
    q, scale = scale_of(q, mul_by if after is None else mul_after, div_by if after is None else div_after)
    if causal is not None:
        return _attend(q, k, v, is_causal=True, scale=scale, fused=fused)
    return _attend(q, k, v, attn_mask=attend, scale=scale, fused=fused)


RULES = [attention]

__all__ = ["RULES", "Attention", "attention", "fused_unsuitable", "scale_of"]
