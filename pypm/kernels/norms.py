"""``pypm::rms_norm`` and ``pypm::layer_norm`` as torch custom ops, Triton on CUDA
(``_norm_kernels``), a reference elsewhere; forward and backward, statistics in fp32.

Same contracts as ``torch.nn.functional.rms_norm`` and ``layer_norm``: normalise over the
trailing ``normalized_shape`` dimensions, optional elementwise weight (and bias, LayerNorm), the
output in the input's dtype. ``rms_norm``'s ``eps=None`` means ``torch.finfo(x.dtype).eps``, as
in torch. Both ops return ``(y, mean, rstd)`` (``mean`` is 0 for RMSNorm) so that the backward,
``pypm::norm_backward``, need not recompute the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pypm.errors import KernelInputError

from ._common import check_floating_same, new_empty, register_op, row_plan, sms_for, use_triton, wrap


def check_inputs(op: str, x: torch.Tensor, normalized_shape: Sequence[int],
                 weight: torch.Tensor | None, bias: torch.Tensor | None = None) -> None:
    check_floating_same(op, {"x": x, "weight": weight, "bias": bias})
    shape = tuple(normalized_shape)
    if len(shape) == 0 or tuple(x.shape[x.dim() - len(shape):]) != shape or len(shape) > x.dim():
        raise KernelInputError(
            f"{op}: normalized_shape {list(shape)} does not match the trailing dims of x {tuple(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise KernelInputError(
                f"{op}: {name} has shape {tuple(t.shape)}, expected normalized_shape {list(shape)}")


def _rows(x: torch.Tensor, n: int) -> torch.Tensor:
    x2 = x.reshape(-1, n)
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _forward(x, normalized_shape, weight, bias, eps: float, center: bool):
    n = math.prod(normalized_shape)
    x2 = _rows(x, n)
    rows = x2.shape[0]
    y2 = new_empty((rows, n), x.dtype, x.device)
    mean = new_empty((rows,), torch.float32, x.device)
    rstd = new_empty((rows,), torch.float32, x.device)
    if use_triton(x):
        from . import _norm_kernels as K
        if rows > 0:
            w = weight.reshape(-1) if weight is not None else x2
            b = bias.reshape(-1) if bias is not None else x2
            wrap(K.norm_fwd_kernel)[(rows,)](
                x2, w, b, y2, mean, rstd, n, x2.stride(0), y2.stride(0), eps,
                CENTER=center, HAS_W=weight is not None, HAS_B=bias is not None,
                **row_plan(n, 16384, 32))  # x in registers, w and b streamed through
    else:
        xf = x2.float()
        m = xf.mean(-1, keepdim=True) if center else torch.zeros_like(xf[:, :1])
        r = torch.rsqrt(((xf - m) ** 2).mean(-1, keepdim=True) + eps)
        y = (xf - m) * r
        if weight is not None:
            y = y * weight.reshape(-1).float()
        if bias is not None:
            y = y + bias.reshape(-1).float()
        y2.copy_(y)
        mean.copy_(m.squeeze(-1))
        rstd.copy_(r.squeeze(-1))
    lead = x.shape[: x.dim() - len(normalized_shape)]
    return y2.view(x.shape), mean.view(lead), rstd.view(lead)


def _rms_norm_op(x: torch.Tensor, normalized_shape: list[int], weight: torch.Tensor | None,
                 eps: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    check_inputs("pypm::rms_norm", x, normalized_shape, weight)
    eps = torch.finfo(x.dtype).eps if eps is None else float(eps)
    return _forward(x, normalized_shape, weight, None, eps, center=False)


def _layer_norm_op(x: torch.Tensor, normalized_shape: list[int], weight: torch.Tensor | None,
                   bias: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    check_inputs("pypm::layer_norm", x, normalized_shape, weight, bias)
    return _forward(x, normalized_shape, weight, bias, float(eps), center=True)


PARTIAL_ELEMENTS = 1 << 22  # cap on programs × n of the fp32 partial sums (16 MB: stays in L2)


class BackwardTuning:
    """Knobs of the norm backward (``benchmarks/norms.py --sweep`` measures them on the GPU):
    elements per row tile (rows shorter than that are processed several at a time),
    software-pipelining stages, and programs per SM (``None``: 16k elements' worth of rows per
    SM, at least 2 programs). Measured on an H200 (benchmarks/RESULTS.md): one row per step and
    16 programs per SM at 1k, 2 programs per SM at 4k; the stage count made no difference."""

    tile_elements = 1024
    num_stages = 1
    programs_per_sm: int | None = None


def _backward_plan(n: int) -> dict[str, int]:
    # x, dy, w and the two gradient sums per thread: rows up to 8k stay in registers
    plan = row_plan(n, 8192, 16)
    block_r = max(1, BackwardTuning.tile_elements // plan["BLOCK_N"]) if plan["NUM_CHUNKS"] == 1 else 1
    plan["num_warps"] = min(32, max(4, block_r * plan["BLOCK_N"] // 512))
    return {**plan, "BLOCK_R": block_r, "num_stages": BackwardTuning.num_stages}


def _backward_programs(tiles: int, n: int, sms: int) -> int:
    """Programs of the backward: enough to fill every SM, few enough that the per-program
    weight/bias partial sums stay small next to the tensors themselves."""
    per_sm = BackwardTuning.programs_per_sm or max(2, 16384 // n)
    return max(1, min(tiles, sms * per_sm, max(sms, PARTIAL_ELEMENTS // n)))


def _norm_backward_op(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, mean: torch.Tensor,
                      rstd: torch.Tensor, normalized_shape: list[int], center: bool, has_bias: bool
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dweight, dbias); dweight/dbias are empty when there is no weight/bias."""
    n = math.prod(normalized_shape)
    x2, g2 = _rows(x, n), _rows(grad, n)
    rows = x2.shape[0]
    dx2 = new_empty((rows, n), x.dtype, x.device)
    m, r = mean.reshape(-1), rstd.reshape(-1)
    has_w = weight is not None
    if use_triton(x):
        from . import _norm_kernels as K
        plan = _backward_plan(n)
        programs = _backward_programs(-(-rows // plan["BLOCK_R"]), n, sms_for(x))
        # one-tile rows: each program writes its whole partial row; longer rows accumulate into it
        alloc = torch.empty if plan["NUM_CHUNKS"] == 1 and rows > 0 else torch.zeros
        dw_part = alloc((programs, n), dtype=torch.float32, device=x.device) if has_w else x2
        db_part = alloc((programs, n), dtype=torch.float32, device=x.device) if has_bias else x2
        if rows > 0:
            wrap(K.norm_bwd_kernel)[(programs,)](
                x2, weight.reshape(-1) if has_w else x2, g2, dx2, m, r, dw_part, db_part, rows, n,
                x2.stride(0), g2.stride(0), dx2.stride(0),
                CENTER=center, HAS_W=has_w, HAS_B=has_bias, **plan)
        dw = dw_part.sum(0) if has_w else None
        db = db_part.sum(0) if has_bias else None
    else:
        xhat = (x2.float() - m[:, None]) * r[:, None]
        gf = g2.float()
        wdy = gf * weight.reshape(-1).float() if has_w else gf
        c1 = (xhat * wdy).mean(-1, keepdim=True)
        c2 = wdy.mean(-1, keepdim=True) if center else 0.0
        dx2.copy_((wdy - xhat * c1 - c2) * r[:, None])
        dw = (gf * xhat).sum(0) if has_w else None
        db = gf.sum(0) if has_bias else None
    dweight = new_empty(normalized_shape if has_w else (0,), x.dtype, x.device)
    dbias = new_empty(normalized_shape if has_bias else (0,), x.dtype, x.device)
    if dw is not None:
        dweight.copy_(dw.view(normalized_shape))
    if db is not None:
        dbias.copy_(db.view(normalized_shape))
    return dx2.view(x.shape), dweight, dbias


rms_norm_op = register_op("rms_norm", _rms_norm_op)
layer_norm_op = register_op("layer_norm", _layer_norm_op)
norm_backward_op = register_op("norm_backward", _norm_backward_op)


def _setup_rms(ctx, inputs, output):
    x, shape, weight, _eps = inputs
    _, mean, rstd = output
    ctx.set_materialize_grads(False)  # mean and rstd never receive gradients
    ctx.shape, ctx.has_bias = list(shape), False
    ctx.save_for_backward(x, weight, mean, rstd)


def _setup_layer(ctx, inputs, output):
    x, shape, weight, bias, _eps = inputs
    _, mean, rstd = output
    ctx.set_materialize_grads(False)
    ctx.shape, ctx.has_bias = list(shape), bias is not None
    ctx.save_for_backward(x, weight, mean, rstd)


def _grads(ctx, grad):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = torch.ops.pypm.norm_backward(grad, x, weight, mean, rstd, ctx.shape,
                                              ctx.center, ctx.has_bias)
    return dx, (dw if weight is not None else None), (db if ctx.has_bias else None)


def _rms_backward(ctx, grad, _gm, _gr):
    if grad is None:
        return None, None, None, None
    ctx.center = False
    dx, dw, _ = _grads(ctx, grad)
    return dx, None, dw, None


def _layer_backward(ctx, grad, _gm, _gr):
    if grad is None:
        return None, None, None, None, None
    ctx.center = True
    dx, dw, db = _grads(ctx, grad)
    return dx, None, dw, db, None


rms_norm_op.register_autograd(_rms_backward, setup_context=_setup_rms)
layer_norm_op.register_autograd(_layer_backward, setup_context=_setup_layer)


def rms_norm(x: torch.Tensor, normalized_shape: Sequence[int], weight: torch.Tensor | None = None,
             eps: float | None = None) -> torch.Tensor:
    """``torch.nn.functional.rms_norm`` through ``torch.ops.pypm.rms_norm`` (fx proxies welcome)."""
    shape = [int(s) for s in normalized_shape] if isinstance(x, torch.Tensor) else list(normalized_shape)
    if isinstance(x, torch.Tensor):
        check_inputs("pypm::rms_norm", x, shape, weight if isinstance(weight, torch.Tensor) else None)
    return torch.ops.pypm.rms_norm.default(x, shape, weight, eps)[0]


def layer_norm(x: torch.Tensor, normalized_shape: Sequence[int], weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """``torch.nn.functional.layer_norm`` through ``torch.ops.pypm.layer_norm`` (fx proxies welcome)."""
    shape = [int(s) for s in normalized_shape] if isinstance(x, torch.Tensor) else list(normalized_shape)
    if isinstance(x, torch.Tensor):
        check_inputs("pypm::layer_norm", x, shape,
                     weight if isinstance(weight, torch.Tensor) else None,
                     bias if isinstance(bias, torch.Tensor) else None)
    return torch.ops.pypm.layer_norm.default(x, shape, weight, bias, eps)[0]
