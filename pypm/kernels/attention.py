"""``pypm::attention``: scaled dot-product attention as a torch custom op backed by flash
attention in Triton (``_attention_kernels``), with a reference path for other devices.

Contract (that of ``torch.nn.functional.scaled_dot_product_attention`` with ``enable_gqa``):
q ``(B, Hq, Sq, D)``, k/v ``(B, Hkv, Sk, D)`` with ``Hkv`` dividing ``Hq``; ``scale`` defaults to
``1/sqrt(D)``; ``attn_mask`` broadcastable to ``(B, Hq, Sq, Sk)``, boolean (True = attend) or
additive (floating). ``is_causal`` is aligned bottom-right (query ``i`` sees keys
``j <= i + Sk - Sq``; identical to torch when ``Sq == Sk``, and the decoding convention
otherwise). Two options make the op compute exactly what attention written out computes, so that
rewrites can use it where SDPA would differ:

* ``mask_fill``: the value a boolean mask puts in place of a masked score (``masked_fill``'s
  value, applied after the scale; default -inf). A finite fill (``-1e4``, ``finfo.min``) keeps
  masked scores finite: they still carry probability where the kept scores are lower, and a
  fully masked row averages v uniformly, as the written-out form does.
* ``empty_rows_nan``: a query row that sees no key at all (every score -inf) gives NaN, as
  softmax over a row of -inf does, and its NaN reaches the gradients as it does when written
  out. By default such a row gives zeros and no gradient (torch's SDPA does the same).

With ``spec_key`` (:func:`attention_spec`), the op computes an attention specification instead
(``pypm.kernels.spec.AttentionSpec``: score modification, mask, sinks, grouped K/V heads), with
the tensors it reads passed as ``captured``; see :mod:`.spec_attention` for its paths.

NaN and inf propagate as in the written-out softmax (a NaN or +inf score makes its row NaN). An
additive mask that requires grad receives its gradient. Inputs may have any strides (the
permuted ``(B, S, H, D)`` layouts graphs produce are read in place); the output is laid out
``(B, Sq, Hq, D)`` in memory and returned as a ``(B, Hq, Sq, D)`` view, so that the usual
``transpose(1, 2).reshape`` after attention is free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from pypm.errors import KernelInputError

from ._common import check_floating_same, new_empty, next_pow2, register_op, use_triton, wrap
from .spec import AttentionSpec
from .spec_attention import _LAUNCH, register_spec, spec_forward

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


_LOWEST32 = float(torch.finfo(torch.float32).min)


def _fill2(mask_fill: float) -> float:
    """A boolean mask's fill in the kernels' log2 units; a finite fill stays finite (clamped to
    the float32 range rather than overflowing to -inf: ``finfo.min · log2(e)`` would)."""
    if math.isinf(mask_fill) or math.isnan(mask_fill):
        return mask_fill
    return max(mask_fill * math.log2(math.e), _LOWEST32)


def _new_stats(q: torch.Tensor) -> torch.Tensor:
    """Row statistics (2, B, Hq, Sq) float32: [0] the row max, [1] the inverse row sum."""
    b, hq, sq, _ = q.shape
    return new_empty((2, b, hq, sq), torch.float32, q.device)


def _launch_forward(q, k, v, attn_mask, scale: float, is_causal: bool, mask_fill: float,
                    empty_rows_nan: bool, traced: bool = True):
    """The flash forward. ``traced``: launched through ``wrap_triton``, so that tracing and
    inductor see it (the ``pypm::attention`` triton_op); False: launched directly, for callers
    that are opaque ops never traced into (the specification op), where going through the
    tracing wrapper costs on every call."""
    from . import _attention_kernels as K

    b, hq, sq, d = q.shape
    hkv, sk = k.shape[1], k.shape[2]
    out = _out_like(q)
    stats = _new_stats(q)
    m, kind, ms = _mask_view(attn_mask, q, sk)

    def grid(meta):
        return (triton_cdiv(sq, meta["BLOCK_M"]), b * hq)

    (wrap(K.attn_fwd_kernel) if traced else K.attn_fwd_kernel)[grid](
        q, k, v, m, out, stats,
        *q.stride(), *k.stride(), *v.stride(), *ms, *out.stride(),
        hq, sq, sk, sk - sq, scale * math.log2(math.e), _fill2(mask_fill),
        float("nan") if empty_rows_nan else 0.0, b * hq * sq, _seq_bucket(sq, sk),
        HEAD_DIM=d, BLOCK_D=max(16, next_pow2(d)), GROUP=hq // hkv,
        IS_CAUSAL=is_causal, MASK_KIND=kind,
    )
    return out, stats


def _launch_backward(grad, q, k, v, out, stats, attn_mask, scale: float, is_causal: bool,
                     mask_fill: float):
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
    fill2 = _fill2(mask_fill)
    common = dict(HEAD_DIM=d, BLOCK_D=block_d, GROUP=hq // hkv, IS_CAUSAL=is_causal, MASK_KIND=kind,
                  ZERO_MASKED=kind == MASK_BOOL)
    half = b * hq * sq

    def grid_kv(meta):
        return (triton_cdiv(sk, meta["BLOCK_N"]), b * hkv)

    wrap(K.attn_bwd_dkdv_kernel)[grid_kv](
        q, k, v, m, grad, stats, delta, dk, dv,
        *q.stride(), *k.stride(), *v.stride(), *ms, *grad.stride(), *dk.stride(), *dv.stride(),
        hkv, sq, sk, sk - sq, qk_scale, scale, fill2, half, bucket, **common,
    )

    def grid_q(meta):
        return (triton_cdiv(sq, meta["BLOCK_M"]), b * hq)

    wrap(K.attn_bwd_dq_kernel)[grid_q](
        q, k, v, m, grad, stats, delta, dq,
        *q.stride(), *k.stride(), *v.stride(), *ms, *grad.stride(), *dq.stride(),
        hq, sq, sk, sk - sq, qk_scale, scale, fill2, half, bucket, **common,
    )
    return dq, dk, dv


def triton_cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


_LAUNCH.append(_launch_forward)  # plain specifications on CUDA take the flash kernel


# --------------------------------------------------------------------------------------------
# Reference (CPU and every device without Triton): fp32 math, same layouts and conventions
# --------------------------------------------------------------------------------------------


def _reference_scores(q, k, attn_mask, scale, is_causal, mask_fill):
    """fp32 scores with masks applied as the written-out form applies them (a boolean mask
    replaces masked scores by ``mask_fill``, an additive one is added), k/v heads repeated for
    grouped-query attention. Also returns the boolean mask (True = kept), or None."""
    group = q.shape[1] // k.shape[1]
    kf = k.float().repeat_interleave(group, dim=1)
    s = (q.float() @ kf.transpose(-1, -2)) * scale
    sq, sk = q.shape[2], k.shape[2]
    keep = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            keep = attn_mask
            s = s.masked_fill(~attn_mask, mask_fill)
        else:
            s = s + attn_mask.float()
    if is_causal:
        i = torch.arange(sq, device=q.device)[:, None]
        j = torch.arange(sk, device=q.device)[None, :]
        s = s.masked_fill(j > i + (sk - sq), float("-inf"))
    return s, keep


def _reference_stats(s, empty_rows_nan):
    """(row max, inverse row sum) of scores s: the max is subtracted before exp, so no row
    overflows, and p = exp(s - max) / sum is normalised however large the logits (a row of -1e9
    included). A row of -inf only has sum 0: its inverse is NaN or 0 (``empty_rows_nan``)."""
    m = s.amax(dim=-1) if s.shape[-1] else s.new_full(s.shape[:-1], float("-inf"))
    empty_max = torch.isneginf(m)
    m = torch.where(empty_max, 0.0, m)
    total = torch.exp(s - m.unsqueeze(-1)).sum(dim=-1)
    empty = total == 0
    inv = torch.where(empty, float("nan") if empty_rows_nan else 0.0,
                      1.0 / torch.where(empty, 1.0, total))
    return m, inv


def _reference_probs(s, m, inv):
    return torch.exp(s - m.unsqueeze(-1)) * inv.unsqueeze(-1)


def _reference_forward(q, k, v, attn_mask, scale, is_causal, mask_fill, empty_rows_nan):
    s, _ = _reference_scores(q, k, attn_mask, scale, is_causal, mask_fill)
    m, inv = _reference_stats(s, empty_rows_nan)
    group = q.shape[1] // k.shape[1]
    o = _reference_probs(s, m, inv) @ v.float().repeat_interleave(group, dim=1)
    out = _out_like(q)
    out.copy_(o)
    stats = _new_stats(q)
    stats[0].copy_(m)
    stats[1].copy_(inv)
    return out, stats


def _reference_ds(grad, q, k, v, out, stats, attn_mask, scale, is_causal, mask_fill):
    """(p, ds): probabilities and the gradient of the scores (after the mask; zero where a
    boolean mask overwrote a score, whose value does not depend on q and k), fp32, with
    (B, Hq, Sq, Sk) shape."""
    group = q.shape[1] // k.shape[1]
    s, keep = _reference_scores(q, k, attn_mask, scale, is_causal, mask_fill)
    p = _reference_probs(s, stats[0], stats[1])
    g = grad.float()
    vf = v.float().repeat_interleave(group, dim=1)
    delta = (g * out.float()).sum(-1, keepdim=True)
    ds = p * (g @ vf.transpose(-1, -2) - delta)
    if keep is not None:
        ds = ds.masked_fill(~keep, 0.0)
    return p, ds


def _reference_backward(grad, q, k, v, out, stats, attn_mask, scale, is_causal, mask_fill):
    b, hq, _, d = q.shape
    hkv, sk = k.shape[1], k.shape[2]
    group = hq // hkv
    p, ds = _reference_ds(grad, q, k, v, out, stats, attn_mask, scale, is_causal, mask_fill)
    kf = k.float().repeat_interleave(group, dim=1)
    dq_f = (ds @ kf) * scale
    dk_f = ((ds.transpose(-1, -2) @ q.float()) * scale).view(b, hkv, group, sk, d).sum(2)
    dv_f = (p.transpose(-1, -2) @ grad.float()).view(b, hkv, group, sk, d).sum(2)
    dq, dk, dv = _out_like(q), _out_like(k), _out_like(v)
    dq.copy_(dq_f)
    dk.copy_(dk_f)
    dv.copy_(dv_f)
    return dq, dk, dv


def _mask_grad(grad, q, k, v, out, stats, attn_mask, scale, is_causal, empty_rows_nan):
    """The gradient of an additive mask: the scores' gradient, summed over the dims the mask
    broadcasts along. Materialises (B, Hq, Sq, Sk) scores, as the written-out form does; only
    computed when the mask requires grad."""
    if use_triton(q):  # the kernels' statistics are in log2 units: recompute them here
        s, _ = _reference_scores(q, k, attn_mask, scale, is_causal, float("-inf"))
        m, inv = _reference_stats(s, empty_rows_nan)
        stats = torch.stack([m, inv])
    _, ds = _reference_ds(grad, q, k, v, out, stats, attn_mask, scale, is_causal, float("-inf"))
    lead = ds.dim() - attn_mask.dim()
    dims = [i for i in range(ds.dim())
            if i < lead or (attn_mask.shape[i - lead] == 1 and ds.shape[i] != 1)]
    dm = ds.sum(dim=dims, keepdim=True) if dims else ds
    return dm.reshape(attn_mask.shape).to(attn_mask.dtype)


# --------------------------------------------------------------------------------------------
# The ops
# --------------------------------------------------------------------------------------------


def _fill(mask_fill: float | None) -> float:
    return float("-inf") if mask_fill is None else float(mask_fill)


def _attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None,
                  scale: float | None, is_causal: bool, captured: Sequence[torch.Tensor],
                  spec_key: str | None = None, mask_fill: float | None = None,
                  empty_rows_nan: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward: (out, stats) where stats (2, B, Hq, Sq, fp32: row max, inverse row sum) feed
    the backward. ``mask_fill`` None is -inf. With ``spec_key``, the attention is the registered
    specification (:mod:`.spec_attention`) at q, k, v (K/V before any repeat) and ``captured``;
    ``attn_mask``, ``scale``, ``is_causal``, ``mask_fill`` and ``empty_rows_nan`` must then be
    left at None, None, False, None, False (the specification says all of it)."""
    if spec_key is not None:
        if attn_mask is not None or scale is not None or is_causal or mask_fill is not None \
                or empty_rows_nan:
            raise KernelInputError(f"{OP}: with a specification, the mask, scale, causal flag, fill "
                                   "and empty-row option come from it, not from arguments")
        return spec_forward(q, k, v, captured, spec_key)
    if captured:
        raise KernelInputError(f"{OP}: captured tensors are only read through a specification")
    check_inputs(q, k, v, attn_mask)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if use_triton(q) and q.numel() and k.numel():  # empty problems: nothing to launch
        return _launch_forward(q, k, v, attn_mask, scale, is_causal, _fill(mask_fill), empty_rows_nan)
    return _reference_forward(q, k, v, attn_mask, scale, is_causal, _fill(mask_fill), empty_rows_nan)


def _attention_backward_op(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           out: torch.Tensor, stats: torch.Tensor, attn_mask: torch.Tensor | None,
                           scale: float | None, is_causal: bool, mask_fill: float | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward: (dq, dk, dv), recomputing the probabilities tile by tile from the row stats."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if use_triton(q) and q.numel() and k.numel():
        return _launch_backward(grad, q, k, v, out, stats, attn_mask, scale, is_causal, _fill(mask_fill))
    return _reference_backward(grad, q, k, v, out, stats, attn_mask, scale, is_causal, _fill(mask_fill))


attention_op = register_op("attention", _attention_op)
attention_backward_op = register_op("attention_backward", _attention_backward_op)


_ARGS = ("q", "k", "v", "attn_mask", "scale", "is_causal", "captured", "spec_key", "mask_fill",
         "empty_rows_nan")
_DEFAULTS = (None, None, False)  # spec_key, mask_fill, empty_rows_nan


def _setup_context(ctx, inputs, output):
    q, k, v, attn_mask, scale, is_causal, captured, spec_key, mask_fill, empty_rows_nan = inputs
    # the backward returns one gradient per argument the dispatcher passed, and it leaves out
    # trailing arguments equal to their defaults
    tail = list(inputs[len(_ARGS) - len(_DEFAULTS):])
    while tail and tail[-1] == _DEFAULTS[len(tail) - 1]:
        tail.pop()
    ctx.n_inputs = len(_ARGS) - len(_DEFAULTS) + len(tail)
    out, stats = output
    ctx.set_materialize_grads(False)  # stats never receive a gradient: skip filling zeros for them
    ctx.spec_key = spec_key
    ctx.n_captured = len(captured)  # the gradient of the list is a list of this length
    if spec_key is not None:  # the backward recomputes from the inputs
        ctx.needs_captured = [bool(c.requires_grad and c.is_floating_point()) for c in captured]
        ctx.save_for_backward(q, k, v, *captured)
        return
    ctx.save_for_backward(q, k, v, out, stats, attn_mask)
    ctx.scale, ctx.is_causal, ctx.mask_fill = scale, is_causal, mask_fill
    ctx.empty_rows_nan = empty_rows_nan


def _spec_backward(ctx, grad_out):
    q, k, v, *captured = ctx.saved_tensors
    needs = ctx.needs_captured
    grads = torch.ops.pypm.attention_spec_backward(grad_out, q, k, v, captured, ctx.spec_key, needs)
    dq, dk, dv, *dcap = grads
    it = iter(dcap)
    dcaptured = [next(it) if n else None for n in needs]
    return dq, dk, dv, None, None, None, dcaptured, None, None, None


def _backward(ctx, grad_out, _grad_stats):
    return _grads(ctx, grad_out)[:ctx.n_inputs]


def _grads(ctx, grad_out):
    if grad_out is None:
        return (None,) * 6 + ([None] * ctx.n_captured,) + (None,) * 3
    if ctx.spec_key is not None:
        return _spec_backward(ctx, grad_out)
    q, k, v, out, stats, attn_mask = ctx.saved_tensors
    dq, dk, dv = torch.ops.pypm.attention_backward(grad_out, q, k, v, out, stats, attn_mask,
                                                   ctx.scale, ctx.is_causal, ctx.mask_fill)
    dmask = None
    if ctx.needs_input_grad[3] and attn_mask is not None and attn_mask.dtype.is_floating_point:
        scale = 1.0 / math.sqrt(q.shape[-1]) if ctx.scale is None else float(ctx.scale)
        dmask = _mask_grad(grad_out, q, k, v, out, stats, attn_mask, scale, ctx.is_causal,
                           ctx.empty_rows_nan)
    return dq, dk, dv, dmask, None, None, [None] * ctx.n_captured, None, None, None


attention_op.register_autograd(_backward, setup_context=_setup_context)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
              is_causal: bool = False, attn_mask: torch.Tensor | None = None,
              enable_gqa: bool = True, mask_fill: float | None = None,
              empty_rows_nan: bool = False) -> torch.Tensor:
    """Scaled dot-product attention through ``torch.ops.pypm.attention`` (see the module doc).

    ``mask_fill`` (default -inf) replaces the scores a boolean ``attn_mask`` masks out;
    ``empty_rows_nan`` makes a row that sees no key NaN instead of 0. The op checks its inputs
    before any launch (on fake tensors too, when traced); this wrapper adds only the
    ``enable_gqa=False`` check. Works on fx proxies (rules call it at rewrite time).
    """
    if not enable_gqa and all(isinstance(t, torch.Tensor) for t in (q, k, v)):
        check_inputs(q, k, v, attn_mask if isinstance(attn_mask, torch.Tensor) else None, enable_gqa)
    if mask_fill is not None and math.isinf(mask_fill) and mask_fill < 0:
        mask_fill = None
    return torch.ops.pypm.attention.default(q, k, v, attn_mask, scale, is_causal, [], None, mask_fill,
                                            empty_rows_nan)[0]


def attention_spec(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: AttentionSpec,
                   captured: Sequence[torch.Tensor] | Mapping[str, torch.Tensor] = ()) -> torch.Tensor:
    """The attention ``spec`` describes, through ``torch.ops.pypm.attention``: q ``(B, Hq, Sq, D)``,
    k and v ``(B, Hq / spec.group, Sk, D)`` (before any repeat of their heads), ``captured`` the
    tensors ``spec.captured`` names (a mapping by name, or a sequence in that order). The
    specification is registered under its digest, which the call carries as a string (see
    :mod:`.spec_attention`). Works on fx proxies."""
    if isinstance(captured, Mapping):
        captured = [captured[n] for n in spec.captured]
    key = register_spec(spec)   # canonical: captured tensors in order of first appearance
    return torch.ops.pypm.attention.default(q, k, v, None, None, False, list(captured), key)[0]
