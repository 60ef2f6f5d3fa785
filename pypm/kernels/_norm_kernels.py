"""RMSNorm and LayerNorm in Triton, forward and backward, one kernel pair for both.

LayerNorm is RMSNorm of the centred row: ``CENTER`` switches the mean on. Statistics (mean,
rstd) are fp32 and saved per row for the backward. A row that fits in one tile
(``NUM_CHUNKS == 1``) is read once and kept in registers; a longer row is streamed several
times (statistics, then the output), the second pass mostly from L2.

The backward runs a fixed number of programs, each striding over rows and summing its rows'
weight/bias gradients in fp32; the host then adds the per-program partial sums, which keeps the
result deterministic (no atomics).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _load_f32(row_ptr, idx, N):
    """Elements ``idx`` of a row as fp32, 0 past its end."""
    return tl.load(row_ptr + idx, mask=idx < N, other=0.0).to(tl.float32)


@triton.jit
def _affine(xhat, W, B, idx, N, HAS_W: tl.constexpr, HAS_B: tl.constexpr):
    """xhat · w + b, each factor only when present."""
    y = xhat
    if HAS_W:
        y = y * _load_f32(W, idx, N)
    if HAS_B:
        y = y + _load_f32(B, idx, N)
    return y


@triton.jit
def _row_stats(x_row, N, eps, cols, BLOCK_N: tl.constexpr, NUM_CHUNKS: tl.constexpr,
               CENTER: tl.constexpr):
    """(mean, rstd) of a streamed row in one pass: each chunk's count, mean and centred sum of
    squares, merged as in Chan et al. (no E[x²] − E[x]² cancellation for rows far from 0)."""
    count = tl.sum(tl.zeros([BLOCK_N], tl.float32), 0)
    mean = tl.sum(tl.zeros([BLOCK_N], tl.float32), 0)
    m2 = tl.sum(tl.zeros([BLOCK_N], tl.float32), 0)
    for c in range(NUM_CHUNKS):
        idx = c * BLOCK_N + cols
        x = _load_f32(x_row, idx, N)
        n_c = tl.minimum(N - c * BLOCK_N, BLOCK_N).to(tl.float32)
        if CENTER:
            mean_c = tl.sum(x, 0) / n_c
            xc = tl.where(idx < N, x - mean_c, 0.0)
            delta = mean_c - mean
            total = count + n_c
            m2 += tl.sum(xc * xc, 0) + delta * delta * count * n_c / total
            mean += delta * n_c / total
            count = total
        else:
            m2 += tl.sum(x * x, 0)
    return mean, 1.0 / tl.sqrt(m2 / N + eps)


@triton.jit
def norm_fwd_kernel(X, W, B, Y, MEAN, RSTD, N, stride_x, stride_y, eps,
                    BLOCK_N: tl.constexpr, NUM_CHUNKS: tl.constexpr, CENTER: tl.constexpr,
                    HAS_W: tl.constexpr, HAS_B: tl.constexpr):
    """y = (x − mean) · rstd · w + b over one row (mean = 0 without ``CENTER``)."""
    tl.static_assert(BLOCK_N % 16 == 0)
    eps = tl.cast(eps, tl.float32)  # float arguments arrive as fp64 from inductor
    row = tl.program_id(0).to(tl.int64)
    x_row = X + row * stride_x
    y_row = Y + row * stride_y
    cols = tl.arange(0, BLOCK_N)
    if NUM_CHUNKS == 1:
        x = _load_f32(x_row, cols, N)
        mean = tl.sum(x, 0) / N if CENTER else 0.0
        xc = tl.where(cols < N, x - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, 0) / N + eps)
        y = _affine(xc * rstd, W, B, cols, N, HAS_W, HAS_B)
        tl.store(y_row + cols, y.to(Y.dtype.element_ty), mask=cols < N)
    else:
        mean, rstd = _row_stats(x_row, N, eps, cols, BLOCK_N, NUM_CHUNKS, CENTER)
        for c in range(NUM_CHUNKS):
            idx = c * BLOCK_N + cols
            y = _affine((_load_f32(x_row, idx, N) - mean) * rstd, W, B, idx, N, HAS_W, HAS_B)
            tl.store(y_row + idx, y.to(Y.dtype.element_ty), mask=idx < N)
    tl.store(MEAN + row, mean)
    tl.store(RSTD + row, rstd)


@triton.jit
def _grad_terms(x_ptrs, dy_ptrs, w, ok, mean, rstd, HAS_W: tl.constexpr):
    """xhat, dy and w·dy of a tile (0 outside ``ok``); ``w``/``mean``/``rstd`` broadcast."""
    x = tl.load(x_ptrs, mask=ok, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptrs, mask=ok, other=0.0).to(tl.float32)
    xhat = tl.where(ok, (x - mean) * rstd, 0.0)
    wdy = dy * w if HAS_W else dy
    return xhat, dy, wdy


@triton.jit
def _add_partial(ptrs, value, ok):
    """Long rows: this program owns its partial row, so read-modify-write needs no atomics."""
    tl.store(ptrs, tl.load(ptrs, mask=ok, other=0.0) + value, mask=ok)


@triton.jit
def norm_bwd_kernel(X, W, DY, DX, MEAN, RSTD, DW_PART, DB_PART, n_rows, N,
                    stride_x, stride_dy, stride_dx,
                    BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, NUM_CHUNKS: tl.constexpr,
                    CENTER: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr):
    """dx = rstd · (w·dy − xhat·mean(w·dy·xhat) − mean(w·dy)) (the last term only with
    ``CENTER``); partial Σ dy·xhat and Σ dy of this program's rows into DW_PART/DB_PART.

    Each step takes a tile of BLOCK_R rows (several short rows at once keep enough loads in
    flight); rows longer than one tile (``NUM_CHUNKS > 1``, BLOCK_R = 1) are streamed twice.
    """
    tl.static_assert(BLOCK_N % 16 == 0)
    tl.static_assert(NUM_CHUNKS == 1 or BLOCK_R == 1)
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    cols = tl.arange(0, BLOCK_N)[None, :]
    part = pid.to(tl.int64) * N
    w = tl.load(W + cols, mask=cols < N, other=0.0).to(tl.float32) if HAS_W and NUM_CHUNKS == 1 else 1.0
    dw_acc = tl.zeros([BLOCK_N], tl.float32)
    db_acc = tl.zeros([BLOCK_N], tl.float32)
    for i in range(0, tl.cdiv(tl.cdiv(n_rows, BLOCK_R) - pid, programs)):
        # row tiles pid, pid + programs, ...
        rows = (pid + i * programs).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]
        row_ok = rows < n_rows
        mean = tl.load(MEAN + rows, mask=row_ok, other=0.0)
        rstd = tl.load(RSTD + rows, mask=row_ok, other=0.0)
        x_ptrs = X + rows * stride_x
        dy_ptrs = DY + rows * stride_dy
        dx_ptrs = DX + rows * stride_dx
        if NUM_CHUNKS == 1:
            ok = row_ok & (cols < N)
            xhat, dy, wdy = _grad_terms(x_ptrs + cols, dy_ptrs + cols, w, ok, mean, rstd, HAS_W)
            c1 = tl.sum(xhat * wdy, 1)[:, None] / N
            c2 = tl.sum(wdy, 1)[:, None] / N if CENTER else 0.0
            tl.store(dx_ptrs + cols, ((wdy - xhat * c1 - c2) * rstd).to(DX.dtype.element_ty), mask=ok)
            dw_acc += tl.sum(dy * xhat, 0)
            db_acc += tl.sum(dy, 0)
        else:
            c1 = tl.zeros([BLOCK_R, 1], tl.float32)
            c2 = tl.zeros([BLOCK_R, 1], tl.float32)
            for c in range(NUM_CHUNKS):
                idx = c * BLOCK_N + cols
                ok = row_ok & (idx < N)
                wc = tl.load(W + idx, mask=idx < N, other=0.0).to(tl.float32) if HAS_W else 1.0
                xhat, dy, wdy = _grad_terms(x_ptrs + idx, dy_ptrs + idx, wc, ok, mean, rstd, HAS_W)
                c1 += tl.sum(xhat * wdy, 1)[:, None]
                c2 += tl.sum(wdy, 1)[:, None]
            c1 = c1 / N
            c2 = c2 / N if CENTER else 0.0
            for c in range(NUM_CHUNKS):
                idx = c * BLOCK_N + cols
                ok = row_ok & (idx < N)
                wc = tl.load(W + idx, mask=idx < N, other=0.0).to(tl.float32) if HAS_W else 1.0
                xhat, dy, wdy = _grad_terms(x_ptrs + idx, dy_ptrs + idx, wc, ok, mean, rstd, HAS_W)
                tl.store(dx_ptrs + idx, ((wdy - xhat * c1 - c2) * rstd).to(DX.dtype.element_ty), mask=ok)
                if HAS_W:
                    _add_partial(DW_PART + part + idx, dy * xhat, idx < N)
                if HAS_B:
                    _add_partial(DB_PART + part + idx, dy, idx < N)
    if NUM_CHUNKS == 1:
        if HAS_W:
            tl.store(DW_PART + part + tl.arange(0, BLOCK_N), dw_acc, mask=tl.arange(0, BLOCK_N) < N)
        if HAS_B:
            tl.store(DB_PART + part + tl.arange(0, BLOCK_N), db_acc, mask=tl.arange(0, BLOCK_N) < N)
