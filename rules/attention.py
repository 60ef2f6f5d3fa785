"""Decomposed scaled-dot-product attention → one ``F.scaled_dot_product_attention`` call.

The pattern (``patterns/attention.pypm``) binds q, k, v, the scale (``mul_by`` or ``div_by``,
read from the graph, never assumed to be 1/sqrt(d)) and the mask: ``causal`` when the guard
``causal_mask`` proved it is the strict upper triangle, ``mask`` for any other boolean mask,
``bias`` for an additive one. The body picks the matching call, or declines with a reason.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

import pypm.fx  # noqa: F401  (registers the causal_mask guard function used by the patterns)
from pypm.dsl import load
from pypm.rewrite import Decline, rule

PATTERNS = load("attention")
Attention = PATTERNS.Attention


def _constant(v: Any, what: str) -> float:
    if isinstance(v, torch.fx.Proxy):
        raise Decline(f"the {what} is a tensor computed in the graph, not a constant")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Decline(f"the {what} {v!r} is not a number")
    return float(v)


def scale_of(mul_by: Any, div_by: Any) -> float:
    """The softmax scale the graph applies: ``mul_by``, ``1 / div_by``, or 1 when unscaled."""
    if mul_by is not None:
        return _constant(mul_by, "scale")
    if div_by is not None:
        d = _constant(div_by, "scale divisor")
        if d == 0:
            raise Decline("the scores are divided by zero")
        return 1.0 / d
    return 1.0


@rule(Attention, name="attention-to-sdpa", priority=10)
def attention_to_sdpa(q, k, v, mul_by, div_by, causal, mask, fill, bias):
    """One ``scaled_dot_product_attention`` call for the whole computation."""
    scale = scale_of(mul_by, div_by)
    if causal is not None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    if mask is not None:
        if not (isinstance(fill, float) and math.isinf(fill) and fill < 0):
            raise Decline(f"the mask fills {fill!r}, not -inf: a fully masked row would differ "
                          "from scaled_dot_product_attention")
        return F.scaled_dot_product_attention(q, k, v, attn_mask=torch.logical_not(mask), scale=scale)
    if bias is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


RULES = [attention_to_sdpa]

__all__ = ["RULES", "Attention", "attention_to_sdpa", "scale_of"]
