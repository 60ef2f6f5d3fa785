"""RMSNorm, LayerNorm and softmax → one fused ``pypm::`` op each.

The patterns (``patterns/norms.pypm``) match torch's calls and the written-out forms models
use; each rule reads eps and the normalised shape from the match and emits
``pypm.ops.rms_norm`` / ``layer_norm`` / ``softmax``. The rules fire where the fused kernels
pay off: on the devices in :data:`pypm.rules.FUSED_DEVICES` (CUDA by default, where the ops run
Triton; on the CPU torch's own kernels are the better pick, and the rule declines saying so).
"""

from __future__ import annotations

from typing import Any

import torch

from pypm import kernels as ops
from pypm import load
from pypm.rewrite import Decline, rule

from . import require_fused_device

PATTERNS = load("norms")


def _eps(eps: Any, default: float | None) -> float | None:
    """eps as a Python number: a literal from the graph, or the op's default when unbound."""
    if eps is None:
        return default
    if isinstance(eps, torch.fx.Proxy):
        from pypm.graph import meta_value

        # a float that dynamo lifted to a graph input (dynamic=True): a scalar, passed through
        if isinstance(meta_value(eps.node), (float, torch.SymFloat)):
            return eps
        raise Decline("eps is computed in the graph and is not a scalar")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise Decline(f"eps {eps!r} is not a number")
    return float(eps)


def _last_dim(x: torch.fx.Proxy) -> list[Any]:
    """``[x.shape[-1]]``: a static size as an int, a symbolic one through the graph."""
    from pypm.graph import meta_value

    val = meta_value(x.node)
    shape = getattr(val, "shape", None)
    if shape is None:
        raise Decline("the shape of the normalised input is unknown")
    last = shape[-1]
    return [last if isinstance(last, int) else x.size(-1)]


def _shape(shape: Any, x: torch.fx.Proxy) -> list[Any]:
    if shape is None:
        return _last_dim(x)
    if isinstance(shape, torch.fx.Proxy):
        raise Decline("the normalised shape is computed in the graph")
    return list(shape) if isinstance(shape, (tuple, list)) else [shape]


def _same_dtype(x: torch.fx.Proxy, *params: Any) -> None:
    """Decline unless the weight and bias have x's dtype: the fused kernels take one dtype, and a
    weight of another dtype promotes (or rounds) the written-out product, which they do not."""
    from pypm.graph import meta_value

    dx = getattr(meta_value(x.node), "dtype", None)
    for p in params:
        if p is None:
            continue
        dp = getattr(meta_value(p.node), "dtype", None) if isinstance(p, torch.fx.Proxy) else None
        if dx is None or dp != dx:
            raise Decline(f"the weight or bias is {dp}, the normalised input {dx}")


@rule(PATTERNS.RMSNorm, name="rms-norm-to-pypm", priority=5)
def rms_norm_to_pypm(x, w, eps, shape):
    """One ``pypm::rms_norm`` (statistics in float32) for the call or the written-out form."""
    require_fused_device(x, "pypm::rms_norm")
    _same_dtype(x, w)
    return ops.rms_norm(x, _shape(shape, x), w, _eps(eps, None))


@rule(PATTERNS.LayerNorm, name="layer-norm-to-pypm", priority=5)
def layer_norm_to_pypm(x, w, b, eps, shape):
    """One ``pypm::layer_norm`` (statistics in float32) for the call or the written-out form."""
    require_fused_device(x, "pypm::layer_norm")
    _same_dtype(x, w, b)
    return ops.layer_norm(x, _shape(shape, x), w, b, _eps(eps, 1e-5))


@rule(PATTERNS.Softmax, name="softmax-to-pypm", priority=1)
def softmax_to_pypm(x, dim):
    """One ``pypm::softmax`` for ``torch.softmax`` or the stable form written out."""
    require_fused_device(x, "pypm::softmax")
    if isinstance(dim, torch.fx.Proxy) or isinstance(dim, bool) or not isinstance(dim, int):
        raise Decline(f"the softmax dim {dim!r} is not a constant int")
    return ops.softmax(x, dim)


RULES = [rms_norm_to_pypm, layer_norm_to_pypm, softmax_to_pypm]

__all__ = ["PATTERNS", "RULES", "layer_norm_to_pypm", "rms_norm_to_pypm", "softmax_to_pypm"]
