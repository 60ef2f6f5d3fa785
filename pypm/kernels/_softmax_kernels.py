"""Row softmax in Triton, forward and backward. One program per row; statistics in fp32.

A row that fits in one tile (``NUM_CHUNKS == 1``) is read once and kept in registers; a longer
row is streamed twice (online max/sum, then normalise), the second pass mostly from L2.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)  # log2(e): exp(x) == exp2(x * LOG2E)


@triton.jit
def _exp_shifted(x, m):
    """exp(x - m) through the native exp2."""
    return tl.exp2((x - m) * LOG2E)


@triton.jit
def _load_f32(row_ptr, idx, N, other):
    """Elements ``idx`` of a row as fp32, ``other`` past its end."""
    return tl.load(row_ptr + idx, mask=idx < N, other=other).to(tl.float32)


@triton.jit
def softmax_fwd_kernel(X, Y, N, stride_x, stride_y,
                       BLOCK_N: tl.constexpr, NUM_CHUNKS: tl.constexpr):
    """y = exp(x - max x) / Σ exp(x - max x) over one row of length N."""
    tl.static_assert(BLOCK_N % 16 == 0)
    row = tl.program_id(0).to(tl.int64)
    x_row = X + row * stride_x
    y_row = Y + row * stride_y
    cols = tl.arange(0, BLOCK_N)
    if NUM_CHUNKS == 1:
        x = _load_f32(x_row, cols, N, float("-inf"))
        e = _exp_shifted(x, tl.max(x, 0))
        tl.store(y_row + cols, (e / tl.sum(e, 0)).to(Y.dtype.element_ty), mask=cols < N)
    else:
        m = tl.max(tl.full([BLOCK_N], float("-inf"), tl.float32), 0)
        l = tl.sum(tl.zeros([BLOCK_N], tl.float32), 0)  # noqa: E741
        for c in range(NUM_CHUNKS):
            idx = c * BLOCK_N + cols
            x = _load_f32(x_row, idx, N, float("-inf"))
            m_new = tl.maximum(m, tl.max(x, 0))
            # shift by 0 while every element so far is -inf, so that -inf - -inf never occurs
            m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
            l = l * _exp_shifted(m, m_ref) + tl.sum(_exp_shifted(x, m_ref), 0)  # noqa: E741
            m = m_new
        for c in range(NUM_CHUNKS):
            idx = c * BLOCK_N + cols
            x = _load_f32(x_row, idx, N, float("-inf"))
            tl.store(y_row + idx, (_exp_shifted(x, m) / l).to(Y.dtype.element_ty), mask=idx < N)


@triton.jit
def softmax_bwd_kernel(Y, DY, DX, N, stride_y, stride_dy, stride_dx,
                       BLOCK_N: tl.constexpr, NUM_CHUNKS: tl.constexpr):
    """dx = y · (dy − Σ y·dy) over one row."""
    tl.static_assert(BLOCK_N % 16 == 0)
    row = tl.program_id(0).to(tl.int64)
    y_row = Y + row * stride_y
    dy_row = DY + row * stride_dy
    dx_row = DX + row * stride_dx
    cols = tl.arange(0, BLOCK_N)
    if NUM_CHUNKS == 1:
        y = _load_f32(y_row, cols, N, 0.0)
        dy = _load_f32(dy_row, cols, N, 0.0)
        dx = y * (dy - tl.sum(y * dy, 0))
        tl.store(dx_row + cols, dx.to(DX.dtype.element_ty), mask=cols < N)
    else:
        dot = tl.sum(tl.zeros([BLOCK_N], tl.float32), 0)
        for c in range(NUM_CHUNKS):
            idx = c * BLOCK_N + cols
            dot += tl.sum(_load_f32(y_row, idx, N, 0.0) * _load_f32(dy_row, idx, N, 0.0), 0)
        for c in range(NUM_CHUNKS):
            idx = c * BLOCK_N + cols
            y = _load_f32(y_row, idx, N, 0.0)
            dx = y * (_load_f32(dy_row, idx, N, 0.0) - dot)
            tl.store(dx_row + idx, dx.to(DX.dtype.element_ty), mask=idx < N)
