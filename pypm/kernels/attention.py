"""``pypm::attention``: scaled dot-product attention as a torch custom op backed by flash
attention in Triton (``_attention_kernels``), with a reference path for other devices.

Contract (that of ``torch.nn.functional.scaled_dot_product_attention`` with ``enable_gqa``):
q ``(B, Hq, Sq, D)``, k/v ``(B, Hkv, Sk, D)`` with ``Hkv`` dividing ``Hq``; ``scale`` defaults to
``1/sqrt(D)``; ``attn_mask`` broadcastable to ``(B, Hq, Sq, Sk)``, boolean (True = attend) or
additive (floating). Two deliberate differences: ``is_causal`` is aligned bottom-right (query
``i`` sees keys ``j <= i + Sk - Sq``; identical to torch when ``Sq == Sk``, and the decoding
convention otherwise), and a query row that sees no key at all returns zeros rather than NaN.
The mask receives no gradient. Inputs may have any strides (the permuted ``(B, S, H, D)``
layouts graphs produce are read in place); the output is laid out ``(B, Sq, Hq, D)`` in memory
and returned as a ``(B, Hq, Sq, D)`` view, so that the usual ``transpose(1, 2).reshape`` after
attention is free.
"""

from __future__ import annotations

import math

import torch

from pypm.errors import KernelInputError

from ._common import check_floating_same, new_empty, next_pow2, register_op, use_triton, wrap

OP = "pypm::attention"
MAX_HEAD_DIM = 256  # largest head dim whose tiles fit in shared memory and registers
MASK_NONE, MASK_BOOL, MASK_ADD = 0, 1, 2  # the kernels' MASK_KIND codes


# --------------------------------------------------------------------------------------------
# Input checks (before any launch; they run on fake tensors too, so tracing reports them)
# --------------------------------------------------------------------------------------------


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 attn_mask: torch.Tensor | None, enable_gqa: bool = True) -> None:
    """Raise :class:`KernelInputError` naming the op and the offending shapes or dtypes."""
    check_floating_same(OP, {"q": q, "k": k, "v": v})
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise KernelInputError(f"{OP}: {name} must be 4-D (B, H, S, D), got shape {tuple(t.shape)}")
    (b, hq, _sq, d), (bk, hkv, sk, dk), (bv, hv, sv, dv) = q.shape, k.shape, v.shape
    if not (d == dk == dv):
        raise KernelInputError(
            f"{OP}: head dims differ: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not (b == bk == bv):
        raise KernelInputError(
            f"{OP}: batch sizes differ: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if (hkv, sk) != (hv, sv):
        raise KernelInputError(f"{OP}: k {tuple(k.shape)} and v {tuple(v.shape)} must have the same "
                               "heads and length")
    if hkv == 0 or hq % hkv != 0:
        raise KernelInputError(
            f"{OP}: key/value heads ({hkv}) must divide query heads ({hq}); q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}")
    if hq != hkv and not enable_gqa:
        raise KernelInputError(f"{OP}: q has {hq} heads and k/v {hkv}; pass enable_gqa=True")
    if d > MAX_HEAD_DIM:
        raise KernelInputError(f"{OP}: head dim {d} is larger than the supported {MAX_HEAD_DIM}")
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool and not attn_mask.dtype.is_floating_point:
            raise KernelInputError(
                f"{OP}: attn_mask must be bool or floating, got {attn_mask.dtype}")
        if attn_mask.device != q.device:
            raise KernelInputError(f"{OP}: attn_mask is on {attn_mask.device}, q on {q.device}")
        full = (b, hq, q.shape[2], sk)
        if attn_mask.dim() > 4 or any(
                m not in (1, f) for m, f in zip(attn_mask.shape[::-1], full[::-1])):
            raise KernelInputError(
                f"{OP}: attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to "
                f"(B, Hq, Sq, Sk) = {full}")


def _out_like(q: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A (B, H, S, D) buffer laid out as (B, S, H, D) in memory."""
    b, h, s, d = q.shape
    return new_empty((b, s, h, d), dtype or q.dtype, q.device).transpose(1, 2)


def _mask_view(attn_mask: torch.Tensor | None, q: torch.Tensor, sk: int) -> tuple[torch.Tensor, int, tuple]:
    """The mask as the kernels read it: a pointer, its kind and four strides (0 = broadcast)."""
    if attn_mask is None:
        return q, MASK_NONE, (0, 0, 0, 0)
    b, h, sq, _ = q.shape
    m = attn_mask
    while m.dim() < 4:
        m = m.unsqueeze(0)
    m = m.expand(b, h, sq, sk)
    strides = tuple(st if size > 1 else 0 for st, size in zip(m.stride(), m.shape))
    if m.dtype == torch.bool:
        return m.view(torch.uint8), MASK_BOOL, strides
    return m, MASK_ADD, strides


def _seq_bucket(sq: int, sk: int) -> int:
    """Autotuning key: lengths within a power of two share a tuned config."""
    return next_pow2(max(sq, sk, 1))


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------


def _launch_forward(q, k, v, attn_mask, scale: float, is_causal: bool):
    from . import _attention_kernels as K

    b, hq, sq, d = q.shape
    hkv, sk = k.shape[1], k.shape[2]
    out = _out_like(q)
    lse = new_empty((b, hq, sq), torch.float32, q.device)
    m, kind, ms = _mask_view(attn_mask, q, sk)

    def grid(meta):
        return (triton_cdiv(sq, meta["BLOCK_M"]), b * hq)

    wrap(K.attn_fwd_kernel)[grid](
        q, k, v, m, out, lse,
        *q.stride(), *k.stride(), *v.stride(), *ms, *out.stride(),
        hq, sq, sk, sk - sq, scale * math.log2(math.e), _seq_bucket(sq, sk),
        HEAD_DIM=d, BLOCK_D=max(16, next_pow2(d)), GROUP=hq // hkv,
        IS_CAUSAL=is_causal, MASK_KIND=kind,
    )
    return out, lse


def _launch_backward(grad, q, k, v, out, lse, attn_mask, scale: float, is_causal: bool):
    from . import _attention_kernels as K

    b, hq, sq, d = q.shape
    hkv, sk = k.shape[1], k.shape[2]
    block_d = max(16, next_pow2(d))
    delta = new_empty((b, hq, sq), torch.float32, q.device)
    delta_block = 64  # rows per program of the (memory-bound) delta kernel
    wrap(K.attn_bwd_delta_kernel)[(triton_cdiv(sq, delta_block), b * hq)](
        out, grad, delta, *out.stride(), *grad.stride(), hq, sq,
        HEAD_DIM=d, BLOCK_D=block_d, BLOCK_M=delta_block,
    )
    dq, dk, dv = _out_like(q), _out_like(k), _out_like(v)
    m, kind, ms = _mask_view(attn_mask, q, sk)
    qk_scale = scale * math.log2(math.e)
    bucket = _seq_bucket(sq, sk)
    common = dict(HEAD_DIM=d, BLOCK_D=block_d, GROUP=hq // hkv, IS_CAUSAL=is_causal, MASK_KIND=kind)

    def grid_kv(meta):
        return (triton_cdiv(sk, meta["BLOCK_N"]), b * hkv)

    wrap(K.attn_bwd_dkdv_kernel)[grid_kv](
        q, k, v, m, grad, lse, delta, dk, dv,
        *q.stride(), *k.stride(), *v.stride(), *ms, *grad.stride(), *dk.stride(), *dv.stride(),
        hkv, sq, sk, sk - sq, qk_scale, scale, bucket, **common,
    )

    def grid_q(meta):
        return (triton_cdiv(sq, meta["BLOCK_M"]), b * hq)

    wrap(K.attn_bwd_dq_kernel)[grid_q](
        q, k, v, m, grad, lse, delta, dq,
        *q.stride(), *k.stride(), *v.stride(), *ms, *grad.stride(), *dq.stride(),
        hq, sq, sk, sk - sq, qk_scale, scale, bucket, **common,
    )
    return dq, dk, dv


def triton_cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


# --------------------------------------------------------------------------------------------
# Reference (CPU and every device without Triton): fp32 math, same layouts and conventions
# --------------------------------------------------------------------------------------------


def _reference_scores(q, k, attn_mask, scale, is_causal):
    """fp32 scores with masks applied, k/v heads repeated for grouped-query attention."""
    group = q.shape[1] // k.shape[1]
    kf = k.float().repeat_interleave(group, dim=1)
    s = (q.float() @ kf.transpose(-1, -2)) * scale
    sq, sk = q.shape[2], k.shape[2]
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            s = s.masked_fill(~attn_mask, float("-inf"))
        else:
            s = s + attn_mask.float()
    if is_causal:
        i = torch.arange(sq, device=q.device)[:, None]
        j = torch.arange(sk, device=q.device)[None, :]
        s = s.masked_fill(j > i + (sk - sq), float("-inf"))
    return s


def _reference_probs(s, lse):
    """softmax from scores and LSE; rows that see no key (LSE = -inf) get zeros, not NaN."""
    lse_safe = torch.where(lse == float("-inf"), float("inf"), lse)
    return torch.exp(s - lse_safe.unsqueeze(-1))


def _reference_forward(q, k, v, attn_mask, scale, is_causal):
    s = _reference_scores(q, k, attn_mask, scale, is_causal)
    lse = torch.logsumexp(s, dim=-1)
    group = q.shape[1] // k.shape[1]
    o = _reference_probs(s, lse) @ v.float().repeat_interleave(group, dim=1)
    out = _out_like(q)
    out.copy_(o)
    return out, lse.contiguous()


def _reference_backward(grad, q, k, v, out, lse, attn_mask, scale, is_causal):
    b, hq, _, d = q.shape
    hkv, sk = k.shape[1], k.shape[2]
    group = hq // hkv
    p = _reference_probs(_reference_scores(q, k, attn_mask, scale, is_causal), lse)
    g = grad.float()
    kf = k.float().repeat_interleave(group, dim=1)
    vf = v.float().repeat_interleave(group, dim=1)
    delta = (g * out.float()).sum(-1, keepdim=True)
    ds = p * (g @ vf.transpose(-1, -2) - delta)
    dq_f = (ds @ kf) * scale
    dk_f = ((ds.transpose(-1, -2) @ q.float()) * scale).view(b, hkv, group, sk, d).sum(2)
    dv_f = (p.transpose(-1, -2) @ g).view(b, hkv, group, sk, d).sum(2)
    dq, dk, dv = _out_like(q), _out_like(k), _out_like(v)
    dq.copy_(dq_f)
    dk.copy_(dk_f)
    dv.copy_(dv_f)
    return dq, dk, dv


# --------------------------------------------------------------------------------------------
# The ops
# --------------------------------------------------------------------------------------------


def _attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None,
                  scale: float | None, is_causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward: (out, lse) where lse (B, Hq, Sq, fp32, natural log) feeds the backward."""
    check_inputs(q, k, v, attn_mask)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if use_triton(q) and q.numel() and k.numel():  # empty problems: nothing to launch
        return _launch_forward(q, k, v, attn_mask, scale, is_causal)
    return _reference_forward(q, k, v, attn_mask, scale, is_causal)


def _attention_backward_op(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           out: torch.Tensor, lse: torch.Tensor, attn_mask: torch.Tensor | None,
                           scale: float | None, is_causal: bool
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward: (dq, dk, dv), recomputing the probabilities tile by tile from lse."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if use_triton(q) and q.numel() and k.numel():
        return _launch_backward(grad, q, k, v, out, lse, attn_mask, scale, is_causal)
    return _reference_backward(grad, q, k, v, out, lse, attn_mask, scale, is_causal)


attention_op = register_op("attention", _attention_op)
attention_backward_op = register_op("attention_backward", _attention_backward_op)


def _setup_context(ctx, inputs, output):
    q, k, v, attn_mask, scale, is_causal = inputs
    out, lse = output
    ctx.set_materialize_grads(False)  # lse never receives a gradient: skip filling zeros for it
    ctx.save_for_backward(q, k, v, out, lse, attn_mask)
    ctx.scale, ctx.is_causal = scale, is_causal


def _backward(ctx, grad_out, _grad_lse):
    q, k, v, out, lse, attn_mask = ctx.saved_tensors
    if grad_out is None:
        return None, None, None, None, None, None
    dq, dk, dv = torch.ops.pypm.attention_backward(grad_out, q, k, v, out, lse, attn_mask,
                                                   ctx.scale, ctx.is_causal)
    return dq, dk, dv, None, None, None


attention_op.register_autograd(_backward, setup_context=_setup_context)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
              is_causal: bool = False, attn_mask: torch.Tensor | None = None,
              enable_gqa: bool = True) -> torch.Tensor:
    """Scaled dot-product attention through ``torch.ops.pypm.attention`` (see the module doc).

    The op checks its inputs before any launch (on fake tensors too, when traced); this wrapper
    adds only the ``enable_gqa=False`` check. Works on fx proxies (rules call it at rewrite time).
    """
    if not enable_gqa and all(isinstance(t, torch.Tensor) for t in (q, k, v)):
        check_inputs(q, k, v, attn_mask if isinstance(attn_mask, torch.Tensor) else None, enable_gqa)
    return torch.ops.pypm.attention.default(q, k, v, attn_mask, scale, is_causal)[0]
