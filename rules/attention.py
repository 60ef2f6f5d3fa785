"""Decomposed scaled-dot-product attention → one ``F.scaled_dot_product_attention`` call.

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

from pypm.dsl import load
from pypm.fx import meta_value, size_value
from pypm.rewrite import Decline, rule

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


@rule(Attention, name="attention-to-sdpa", priority=10)
def attention_to_sdpa(q, k, v, mul_by, div_by, mul_after, div_after, causal, mask, keep, fill, bias):
    """One ``scaled_dot_product_attention`` call for the whole computation."""
    after = mul_after if mul_after is not None else div_after
    if after is not None and not _positive(after):
        raise Decline(f"the scale applied after the mask ({after!r}) is not provably positive, "
                      "so the mask's -inf could change sign")
    q, scale = scale_of(q, mul_by if after is None else mul_after, div_by if after is None else div_after)
    if causal is not None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    if mask is not None or keep is not None:
        if not (isinstance(fill, float) and math.isinf(fill) and fill < 0):
            raise Decline(f"the mask fills {fill!r}, not -inf: a fully masked row would differ "
                          "from scaled_dot_product_attention")
        attend = torch.logical_not(mask) if mask is not None else keep
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attend, scale=scale)
    if bias is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


RULES = [attention_to_sdpa]

__all__ = ["RULES", "Attention", "attention_to_sdpa", "scale_of"]
