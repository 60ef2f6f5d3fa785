"""``pypm::softmax``: softmax over one dimension as a torch custom op, Triton on CUDA
(``_softmax_kernels``), a reference elsewhere; forward and backward, statistics in fp32.

Same contract as ``torch.softmax(x, dim)`` for float16, bfloat16 and float32 (the output keeps
the input dtype). The softmax dimension is moved last and the rest flattened into rows; a copy is
made only when that view is impossible.
"""

from __future__ import annotations

import torch

from pypm.errors import KernelInputError

from ._common import check_dtype, new_empty, register_op, row_plan, use_triton, wrap

OP = "pypm::softmax"


def check_inputs(x: torch.Tensor, dim: int) -> None:
    check_dtype(OP, "x", x)
    if x.dim() == 0 or not -x.dim() <= dim < x.dim():
        raise KernelInputError(f"{OP}: dim {dim} is out of range for x of shape {tuple(x.shape)}")


def as_rows(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` with ``dim`` last, as (rows, n) with unit column stride."""
    xm = x.movedim(dim, -1)
    x2 = xm.reshape(-1, xm.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def from_rows(y2: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`as_rows` for an output laid out as rows."""
    return y2.view(x.movedim(dim, -1).shape).movedim(-1, dim)


def _launch(kernel_name: str, out2: torch.Tensor, *rows: torch.Tensor) -> None:
    from . import _softmax_kernels as K

    n_rows, n = out2.shape
    if out2.numel() == 0:
        return
    # one row-long array forward (x), two backward (y, dy): 32k and 16k elements stay in registers
    plan = row_plan(n, 32768, 32) if kernel_name == "softmax_fwd_kernel" else row_plan(n, 16384, 16)
    strides = [t.stride(0) for t in (*rows, out2)]
    wrap(getattr(K, kernel_name))[(n_rows,)](*rows, out2, n, *strides, **plan)


def _softmax_op(x: torch.Tensor, dim: int) -> torch.Tensor:
    check_inputs(x, dim)
    x2 = as_rows(x, dim)
    y2 = new_empty(x2.shape, x.dtype, x.device)
    if use_triton(x):
        _launch("softmax_fwd_kernel", y2, x2)
    else:
        y2.copy_(torch.softmax(x2.float(), dim=-1))
    return from_rows(y2, x, dim)


def _softmax_backward_op(y: torch.Tensor, grad: torch.Tensor, dim: int) -> torch.Tensor:
    y2, g2 = as_rows(y, dim), as_rows(grad, dim)
    dx2 = new_empty(y2.shape, y.dtype, y.device)
    if use_triton(y):
        _launch("softmax_bwd_kernel", dx2, y2, g2)
    else:
        yf = y2.float()
        gf = g2.float()
        dx2.copy_(yf * (gf - (yf * gf).sum(-1, keepdim=True)))
    return from_rows(dx2, y, dim)


softmax_op = register_op("softmax", _softmax_op)
softmax_backward_op = register_op("softmax_backward", _softmax_backward_op)


def _setup_context(ctx, inputs, output):
    ctx.dim = inputs[1]
    ctx.save_for_backward(output)


def _backward(ctx, grad):
    (y,) = ctx.saved_tensors
    return torch.ops.pypm.softmax_backward(y, grad, ctx.dim), None


softmax_op.register_autograd(_backward, setup_context=_setup_context)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``torch.softmax(x, dim)`` through ``torch.ops.pypm.softmax`` (fx proxies welcome)."""
    if isinstance(x, torch.Tensor):
        check_inputs(x, dim)
    return torch.ops.pypm.softmax.default(x, dim)
