"""What an :class:`~pypm.kernels.spec.AttentionSpec` computes: the reference evaluator, and the
same attention as torch FlexAttention callables (the CUDA fallback for specifications the
generated kernels do not cover).

:func:`evaluate` is the written-out semantics, computed over blocks of keys with a running
maximum, so memory is O(Sq · block) per (batch, head) instead of O(Sq · Sk): a row whose every
logit is -inf (every key masked with -inf, no sink) is NaN, as ``softmax`` makes it; a row with a
NaN or +inf logit is NaN; finite fills stay finite (a fully masked row is uniform). Sinks are one
more logit per row whose column is dropped after the softmax.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .spec import AttentionSpec, Call, Captured, Const, Expr, Index, Score, walk

_UNARY: dict[str, Callable[[Any], Any]] = {
    "neg": torch.neg, "not": torch.logical_not, "tanh": torch.tanh, "exp": torch.exp,
    "log": torch.log, "abs": torch.abs, "sqrt": torch.sqrt, "floor": torch.floor,
}
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.true_divide,
    "floordiv": lambda a, b: torch.div(a, b, rounding_mode="floor"), "mod": torch.remainder,
    "pow": torch.pow, "minimum": torch.minimum, "maximum": torch.maximum,
    "and": torch.logical_and, "or": torch.logical_or,
    "eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge,
}


def _tensor(x: Any, like: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, device=getattr(like, "device", None))


def eval_expr(e: Expr, s: Any, idx: Mapping[str, Any], captured: Mapping[str, torch.Tensor],
              dtype: torch.dtype | None = torch.float64) -> Any:
    """An expression at the given score and index tensors (broadcasting). Float constants and
    floating captured tensors take ``dtype`` (None: Python floats, tensors as given: for
    FlexAttention's traced callables)."""
    if isinstance(e, Score):
        return s
    if isinstance(e, Index):
        return idx[e.name]
    if isinstance(e, Const):
        v = e.value
        if isinstance(v, float) and dtype is not None:
            return torch.tensor(v, dtype=dtype, device=getattr(s, "device", None))
        return v
    if isinstance(e, Captured):
        t = captured[e.name]
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        ix = tuple(_index(eval_expr(i, s, idx, captured, dtype), t) for i in e.index)
        if len(ix) != t.dim():
            raise ValueError(f"{e.name} has {t.dim()} dims, read with {len(ix)} indices in {e!r}")
        return t[ix]
    assert isinstance(e, Call)
    xs = [eval_expr(a, s, idx, captured, dtype) for a in e.args]
    if e.op in _UNARY:
        x = xs[0]
        if e.op == "neg" and not isinstance(x, torch.Tensor):
            return -x
        return _UNARY[e.op](_tensor(x, s))
    if e.op == "where":
        c, a, b = xs
        return torch.where(_tensor(c, s), a, b)
    if e.op == "float":
        x = _tensor(xs[0], s)
        return x.to(dtype or torch.float32)
    if e.op == "long":
        return _tensor(xs[0], s).long()
    a, b = xs
    if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
        a = _tensor(a, s)
    return _BINARY[e.op](a, b)


def _index(i: Any, t: torch.Tensor) -> Any:
    if isinstance(i, torch.Tensor) and i.dtype == torch.bool:
        raise ValueError("a captured tensor is indexed with a boolean")
    return i


def _needs(e: Expr | None, name: str) -> bool:
    return e is not None and any(isinstance(n, Index) and n.name == name for n in walk(e))


def logits(spec: AttentionSpec, s: torch.Tensor, idx: Mapping[str, Any],
           captured: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The logits of a block of scaled scores: the score modification, then the mask as written."""
    x = eval_expr(spec.score_mod, s, idx, captured, dtype)
    x = torch.broadcast_to(_tensor(x, s).to(dtype), s.shape)
    if spec.mask is None:
        return x
    keep = torch.broadcast_to(_tensor(eval_expr(spec.mask, s, idx, captured, dtype), s), s.shape)
    fill = torch.tensor(spec.fill, dtype=dtype, device=s.device)
    if spec.mask_mode == "fill":
        return torch.where(keep, x, fill)
    return x + torch.where(keep, torch.zeros((), dtype=dtype, device=s.device), fill)


def evaluate(spec: AttentionSpec, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             captured: Mapping[str, torch.Tensor] | None = None, dtype: torch.dtype = torch.float64,
             block: int = 128) -> torch.Tensor:
    """The attention a specification means, at q ``(B, Hq, Sq, D)`` and k, v ``(B, Hkv, Sk, D)``
    (``Hq = group · Hkv``, before any repeat), computed in ``dtype`` over blocks of ``block``
    keys with a running maximum. Returns ``(B, Hq, Sq, Dv)`` in ``dtype``."""
    captured = dict(captured or {})
    missing = [n for n in spec.captured if n not in captured]
    if missing:
        raise KeyError(f"captured tensors missing: {missing}")
    bsz, hq, sq, d = q.shape
    hkv, sk = k.shape[1], k.shape[2]
    if hq != spec.group * hkv:
        raise ValueError(f"q has {hq} heads, k {hkv}: not a group of {spec.group}")
    scale = spec.scale if spec.scale is not None else 1.0 / math.sqrt(d)
    dev = q.device
    qf = q.to(dtype)
    kf = k.to(dtype).repeat_interleave(spec.group, dim=1)
    vf = v.to(dtype).repeat_interleave(spec.group, dim=1)
    idx = {"b": torch.arange(bsz, device=dev).view(-1, 1, 1, 1),
           "h": torch.arange(hq, device=dev).view(1, -1, 1, 1),
           "q_idx": torch.arange(sq, device=dev).view(1, 1, -1, 1)}
    shape = (bsz, hq, sq, 1)
    m = torch.full(shape, float("-inf"), dtype=dtype, device=dev)   # running max (finite part)
    den = torch.zeros(shape, dtype=dtype, device=dev)
    acc = torch.zeros((bsz, hq, sq, vf.shape[-1]), dtype=dtype, device=dev)
    bad = torch.zeros(shape, dtype=torch.bool, device=dev)          # a NaN or +inf logit seen

    def absorb(lg: torch.Tensor, values: torch.Tensor | None) -> None:
        nonlocal m, den, acc, bad
        bad = bad | (torch.isnan(lg) | (lg == float("inf"))).any(-1, keepdim=True)
        lg = torch.where(torch.isnan(lg) | (lg == float("inf")), float("-inf"), lg)
        m_new = torch.maximum(m, lg.amax(-1, keepdim=True))
        safe = torch.where(m_new == float("-inf"), 0.0, m_new)
        alpha = torch.exp(m - safe)
        p = torch.exp(lg - safe)
        den = den * alpha + p.sum(-1, keepdim=True)
        acc = acc * alpha
        if values is not None:
            acc = acc + p @ values
        m = m_new

    if spec.sinks is not None:
        sink = eval_expr(spec.sinks, torch.zeros((), dtype=dtype, device=dev), idx, captured, dtype)
        absorb(torch.broadcast_to(_tensor(sink, q).to(dtype), shape), None)
    for start in range(0, sk, block):
        stop = min(sk, start + block)
        s = (qf @ kf[:, :, start:stop].transpose(-1, -2)) * scale
        idx["kv_idx"] = torch.arange(start, stop, device=dev).view(1, 1, 1, -1)
        absorb(logits(spec, s, idx, captured, dtype), vf[:, :, start:stop])
    out = acc / den
    nan_rows = bad | (m == float("-inf"))
    return torch.where(nan_rows, float("nan"), out)


@dataclass(frozen=True)
class FlexForm:
    """A specification as FlexAttention arguments. ``score_mod`` and ``mask_mod`` have flex's
    signatures; ``mask_mod`` is None when the mask is folded into ``score_mod`` (a finite fill, or
    an additive mask); ``mask_uses`` says which of b, h the mask reads (else its block mask
    broadcasts over them). :meth:`attend` runs it, sinks included (as a rescaling by the
    log-sum-exp). Fully masked rows are 0 here where the written-out form is NaN."""

    spec: AttentionSpec
    captured: Mapping[str, torch.Tensor]
    score_mod: Callable[..., Any] | None
    mask_mod: Callable[..., Any] | None
    mask_uses: tuple[str, ...]

    def block_mask_args(self, b: int, h: int, sq: int, sk: int) -> tuple[Any, ...]:
        """``(mask_mod, B, H, Q_LEN, KV_LEN)`` for ``create_block_mask`` (None where the mask does
        not depend on the batch or head)."""
        return (self.mask_mod, b if "b" in self.mask_uses else None,
                h if "h" in self.mask_uses else None, sq, sk)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               flex: Callable[..., Any] | None = None) -> torch.Tensor:
        """The attention at q, k, v (K/V before any repeat); ``flex`` replaces
        ``flex_attention`` (a compiled one, on CUDA)."""
        from torch.nn.attention.flex_attention import AuxRequest, create_block_mask, flex_attention

        flex_attention = flex or flex_attention

        bsz, hq, sq, _ = q.shape
        block_mask = None
        if self.mask_mod is not None:
            mm, b, h, lq, lk = self.block_mask_args(bsz, hq, sq, k.shape[2])
            block_mask = create_block_mask(mm, b, h, lq, lk, device=str(q.device))
        elif flex is not None:  # a compiled flex_attention fails to build its own empty mask
            block_mask = create_block_mask(_keep_all, None, None, sq, k.shape[2], device=str(q.device))
        out, aux = flex_attention(q, k, v, score_mod=self.score_mod, block_mask=block_mask,
                                  scale=self.spec.scale, enable_gqa=self.spec.group > 1,
                                  return_aux=AuxRequest(lse=True))
        lse = aux.lse
        if self.spec.sinks is None:
            return out
        idx = {"b": torch.arange(bsz, device=q.device).view(-1, 1, 1),
               "h": torch.arange(hq, device=q.device).view(1, -1, 1),
               "q_idx": torch.arange(sq, device=q.device).view(1, 1, -1)}
        sink = eval_expr(self.spec.sinks, None, idx, self.captured, lse.dtype)
        sink = torch.broadcast_to(_tensor(sink, q).to(lse.dtype), lse.shape)
        return out * torch.sigmoid(lse - sink).unsqueeze(-1).to(out.dtype)


def _keep_all(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
    return q_idx >= 0


def to_flex(spec: AttentionSpec, captured: Mapping[str, torch.Tensor] | None = None) -> FlexForm:
    """FlexAttention callables equivalent to ``spec`` (see :class:`FlexForm`)."""
    cap = dict(captured or {})
    folded = spec.mask is not None and not (spec.mask_mode == "fill" and math.isinf(spec.fill)
                                            and spec.fill < 0)

    def score_mod(score: Any, b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        idx = {"b": b, "h": h, "q_idx": q_idx, "kv_idx": kv_idx}
        x = eval_expr(spec.score_mod, score, idx, cap, None)
        x = _tensor(x, score).to(score.dtype) if isinstance(x, torch.Tensor) else x + score * 0
        if folded:
            keep = eval_expr(spec.mask, score, idx, cap, None)
            fill = torch.full_like(score, spec.fill)
            x = torch.where(keep, x, fill) if spec.mask_mode == "fill" else \
                x + torch.where(keep, torch.zeros_like(score), fill)
        return x

    def mask_mod(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        idx = {"b": b, "h": h, "q_idx": q_idx, "kv_idx": kv_idx}
        keep = eval_expr(spec.mask, None, idx, cap, None)
        return keep if isinstance(keep, torch.Tensor) else torch.tensor(bool(keep))

    identity = spec.score_mod == Score() and not folded
    uses = tuple(n for n in ("b", "h") if _needs(spec.mask, n))
    return FlexForm(spec, cap, None if identity else score_mod,
                    mask_mod if spec.mask is not None and not folded else None, uses)


__all__ = ["FlexForm", "eval_expr", "evaluate", "logits", "to_flex"]
