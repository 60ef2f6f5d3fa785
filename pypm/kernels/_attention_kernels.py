"""Flash attention in Triton: forward, and the three backward kernels (delta, dk/dv, dq).

Never materialises the S×S scores: each program streams key/value (or query) tiles through an
online softmax, so the extra memory is the row statistics only (max, inverse sum and delta,
O(B·H·S)).

Conventions shared by every kernel here:

* Scores are kept in log2 units (``s = q·kᵀ · scale · log2(e)``) so that ``exp2``, the native
  instruction, replaces ``exp``.
* Causal masking is aligned bottom-right: query ``i`` sees key ``j`` iff ``j <= i + Sk - Sq``
  (``CAUSAL_SHIFT``), which is the usual top-left rule when ``Sq == Sk`` and the decoding rule
  otherwise.
* Row statistics: the forward stores, per query row, the running maximum ``m`` (log2 units) and
  the inverse ``1/l`` of the row's sum of ``exp2(s - m)``, in ``STATS`` (``[0]`` and ``[1]``,
  each ``B·H·Sq`` long). The backward recomputes ``p = exp2(s - m) · (1/l)``. Keeping ``m`` apart
  from ``log2(l)`` (instead of one log-sum-exp) keeps rows of huge logits (an additive -1e9
  mask) normalised: ``m + log2(l)`` would round ``log2(l)`` away. A row that sees no key has
  ``l = 0``; its ``1/l`` is ``EMPTY_VALUE``: 0 (output 0, no gradient) or NaN (what softmax over
  a row of -inf computes; the NaN then reaches the gradients too, as it does when written out).
* NaN and inf propagate as in the written-out softmax: a NaN score makes its row NaN, a +inf
  score makes it NaN (inf - inf).
* Loops are split into *interior* tiles (every element in bounds and allowed: no masking at
  all) and *edge* tiles (ragged ends and the causal diagonal); the same inner function serves
  both, specialised by the ``EDGE`` constexpr.
* ``MASK_KIND``: 0 no mask, 1 boolean mask (non-zero = attend, read as uint8; a masked score is
  *replaced* by ``MASK_FILL``, -inf or a finite value, in log2 units, as ``masked_fill`` does),
  2 additive mask. The mask is addressed through four strides, 0 on broadcast dimensions. No
  gradient flows to a score a boolean mask replaced (``masked_fill``'s backward), even where it
  carries probability (a finite fill) or its row is NaN (every key masked): the backward zeroes
  ``ds`` there (``ZERO_MASKED``).
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

from ._common import interpreting

LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)  # log2(e): exp(x) == exp2(x * LOG2E)
# The lowest finite float32. A finite mask value below it in log2 units (finfo.min · log2(e))
# is clamped here rather than overflowing to -inf: it must stay a finite score.
LOWEST: tl.constexpr = tl.constexpr(-3.4028234663852886e38)
# Running max before any key is seen. Finite, so that a tile in which a row is fully masked
# gives p = exp2(-inf - LOWEST) = 0 instead of exp2(-inf + inf) = NaN; no finite score (a
# clamped finfo.min fill included) is below it.
EMPTY_ROW_MAX: tl.constexpr = LOWEST
# Triton's CPU interpreter (3.9) miscomputes bf16 tl.dot; under it, dots take fp32 copies of
# their (already rounded) operands. Compiled kernels are unaffected.
UPCAST_DOTS: tl.constexpr = tl.constexpr(interpreting())


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _ptrs(base, b, stride_b, h, stride_h, rows, stride_r, cols, stride_c):
    """Addresses of a tile of head (b, h); ``rows``/``cols`` are index vectors already shaped
    ``[:, None]`` and ``[None, :]`` (or the transpose)."""
    return base + b * stride_b + h * stride_h + rows * stride_r + cols * stride_c


@triton.jit
def _load(ptrs, in_bounds, d_ok, CHECK: tl.constexpr, PAD_D: tl.constexpr):
    """Load a tile, predicating on sequence bounds only on edge tiles (``CHECK``) and on the
    head dimension only when it was padded up to a power of two (``PAD_D``)."""
    if CHECK and PAD_D:
        x = tl.load(ptrs, mask=in_bounds & d_ok, other=0.0)
    elif CHECK:
        x = tl.load(ptrs, mask=in_bounds, other=0.0)
    elif PAD_D:
        x = tl.load(ptrs, mask=d_ok, other=0.0)
    else:
        x = tl.load(ptrs)
    return x


@triton.jit
def _dot(a, b, acc):
    """``acc + a @ b`` with fp32 accumulation (tf32 for fp32 operands)."""
    if UPCAST_DOTS:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc)


@triton.jit
def _mm(a, b):
    """``a @ b`` in fp32 (a fresh score tile)."""
    return _dot(a, b, tl.zeros((a.shape[0], b.shape[1]), dtype=tl.float32))


@triton.jit
def _mask_scores(s, qi, kj, mask_ptrs, Sq, Sk, CAUSAL_SHIFT, mask_fill,
                 EDGE: tl.constexpr, IS_CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr):
    """Apply the user mask (every tile) and the bounds/causal masks (edge tiles) to log2 scores.

    ``qi``/``kj`` are the query/key indices broadcast to the tile's shape, so the same helper
    serves ``q·kᵀ`` tiles (forward, dq) and ``k·qᵀ`` tiles (dk/dv). A boolean mask replaces a
    masked score by ``mask_fill`` (log2 units); an additive mask is added, its finite values
    clamped to the float32 range once in log2 units (-inf stays -inf).
    """
    if MASK_KIND == 1:
        keep = tl.load(mask_ptrs, mask=(qi < Sq) & (kj < Sk), other=0)
        s = tl.where(keep != 0, s, mask_fill)
    elif MASK_KIND == 2:
        bias = tl.load(mask_ptrs, mask=(qi < Sq) & (kj < Sk), other=0.0).to(tl.float32)
        bias2 = tl.where(bias == float("-inf"), bias, tl.maximum(bias * LOG2E, LOWEST))
        s = s + bias2
    if EDGE:
        ok = kj < Sk
        if IS_CAUSAL:
            ok = ok & (kj <= qi + CAUSAL_SHIFT)
        s = tl.where(ok, s, float("-inf"))
    return s


@triton.jit
def _zero_masked(ds, qi, kj, mask_ptrs, Sq, Sk, ZERO_MASKED: tl.constexpr):
    """``ds`` with the entries a boolean mask replaced set to 0: ``masked_fill`` passes no
    gradient to the scores it overwrites (where ``p`` is 0 there this changes nothing; it matters
    for a finite fill and for a row that is NaN because every key is masked)."""
    if ZERO_MASKED:
        keep = tl.load(mask_ptrs, mask=(qi < Sq) & (kj < Sk), other=0)
        ds = tl.where(keep != 0, ds, 0.0)
    return ds


@triton.jit
def _block_start(BLOCK_M: tl.constexpr, IS_CAUSAL: tl.constexpr):
    """First query row of this program. Causal blocks further down see more keys, so they are
    launched first, and the short ones fill the tail of the grid."""
    pid = tl.program_id(0)
    if IS_CAUSAL:
        pid = tl.num_programs(0) - 1 - pid
    return pid * BLOCK_M


@triton.jit
def _key_regions(start_m, Sk, CAUSAL_SHIFT, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 IS_CAUSAL: tl.constexpr):
    """For the query block at ``start_m``: ``[0, n_full)`` are interior key tiles (all keys in
    bounds and visible to every row), ``[n_full, n_end)`` the edge tiles."""
    if IS_CAUSAL:
        n_end = tl.minimum(Sk, start_m + BLOCK_M + CAUSAL_SHIFT)
        n_full = tl.minimum(Sk, start_m + CAUSAL_SHIFT + 1)
    else:
        n_end = Sk
        n_full = Sk
    n_full = tl.maximum(n_full, 0) // BLOCK_N * BLOCK_N
    return n_full, n_end


# --------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------


@triton.jit
def _fwd_tiles(acc, m_i, l_i, q, k_ptrs, v_ptrs, mask_ptrs, offs_m, offs_n0, d_ok, lo, hi,
               stride_kn, stride_vn, stride_mn, Sq, Sk, CAUSAL_SHIFT, qk_scale, mask_fill,
               BLOCK_N: tl.constexpr, EDGE: tl.constexpr, IS_CAUSAL: tl.constexpr,
               MASK_KIND: tl.constexpr, PAD_D: tl.constexpr):
    """Online-softmax accumulation of key/value tiles ``[lo, hi)`` into ``acc``."""
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        kT = _load(k_ptrs + start_n * stride_kn, offs_n[None, :] < Sk, d_ok[:, None], EDGE, PAD_D)
        s = _mm(q, kT) * qk_scale
        s = _mask_scores(s, offs_m[:, None], offs_n[None, :], mask_ptrs + start_n * stride_mn,
                         Sq, Sk, CAUSAL_SHIFT, mask_fill, EDGE, IS_CAUSAL, MASK_KIND)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = _load(v_ptrs + start_n * stride_vn, offs_n[:, None] < Sk, d_ok[None, :], EDGE, PAD_D)
        acc = _dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new
    return acc, m_i, l_i


_BIG_HEAD_CONFIGS: set[int] = set()  # ids of the candidates meant for rows over 256 bytes


def _configs(small, big):
    """Autotuning candidates ``(BLOCK_M, BLOCK_N, num_warps, num_stages)`` for rows of up to 256
    bytes (``small``: head dim 128 in 16-bit) and longer (``big``: smaller tiles and fewer
    stages, to fit shared memory).
    Under the interpreter one tiny tile (so that small test shapes span several tiles and ragged
    edges); with ``PYPM_AUTOTUNE=0`` the first candidate of each list (quick GPU checks)."""
    if interpreting():
        small, big = [(16, 16, 4, 1)], []
    elif os.environ.get("PYPM_AUTOTUNE", "1") == "0":
        small, big = small[:1], big[:1]
    out = []
    for tiles, is_big in ((small, False), (big, True)):
        for bm, bn, w, s in tiles:
            c = triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            if is_big:
                _BIG_HEAD_CONFIGS.add(id(c))
            out.append(c)
    return out


def _prune_by_head_dim(configs, named_args, **kwargs):
    """Keep the candidates of this head's class (see ``_configs``): rows of more than 256 bytes
    (head dim above 128 in 16-bit, above 64 in fp32) take the small tiles."""
    args = {**kwargs, **named_args}  # constexprs arrive in either dict, by Triton version
    big = args["BLOCK_D"] * args["Q"].element_size() > 256
    keep = [c for c in configs if (id(c) in _BIG_HEAD_CONFIGS) == big]
    return keep or configs


FWD_CONFIGS = _configs([(128, 64, 8, 3), (128, 64, 4, 3), (128, 128, 8, 3), (128, 128, 8, 2),
                        (128, 64, 8, 4), (64, 64, 4, 3)],
                       [(64, 32, 4, 2), (64, 64, 8, 2), (32, 64, 4, 2)])
DKDV_CONFIGS = _configs([(32, 128, 4, 3), (64, 128, 8, 3), (64, 128, 8, 2), (64, 64, 4, 3)],
                        [(32, 64, 4, 1), (16, 64, 4, 2), (32, 32, 4, 2)])
DQ_CONFIGS = _configs([(128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 4, 3), (128, 64, 8, 2)],
                      [(64, 32, 4, 2), (32, 64, 4, 1), (32, 32, 4, 2)])


@triton.autotune(configs=FWD_CONFIGS, key=["HEAD_DIM", "IS_CAUSAL", "MASK_KIND", "seq_bucket"],
                 prune_configs_by={"early_config_prune": _prune_by_head_dim})
@triton.jit
def attn_fwd_kernel(
    Q, K, V, M, Out, STATS,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_mb, stride_mh, stride_mm, stride_mn,
    stride_ob, stride_oh, stride_om, stride_od,
    H, Sq, Sk, CAUSAL_SHIFT, qk_scale, mask_fill, empty_value, stats_half, seq_bucket,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, GROUP: tl.constexpr,
    IS_CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_M query rows of one (batch, query head); writes O and the row
    statistics (max, inverse sum)."""
    tl.static_assert(BLOCK_D >= HEAD_DIM)
    tl.static_assert(BLOCK_D >= 16)  # tl.dot needs every dimension >= 16
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0)
    PAD_D: tl.constexpr = BLOCK_D != HEAD_DIM
    qk_scale = tl.cast(qk_scale, tl.float32)  # float arguments arrive as fp64 from inductor
    mask_fill = tl.cast(mask_fill, tl.float32)
    empty_value = tl.cast(empty_value, tl.float32)
    start_m = _block_start(BLOCK_M, IS_CAUSAL)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    hk = h // GROUP

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    dcol, drow = offs_d[None, :], offs_d[:, None]

    q_ptrs = _ptrs(Q, b, stride_qb, h, stride_qh, offs_m[:, None], stride_qm, dcol, stride_qd)
    q = _load(q_ptrs, offs_m[:, None] < Sq, d_ok[None, :], True, PAD_D)
    k_ptrs = _ptrs(K, b, stride_kb, hk, stride_kh, offs_n0[None, :], stride_kn, drow, stride_kd)
    v_ptrs = _ptrs(V, b, stride_vb, hk, stride_vh, offs_n0[:, None], stride_vn, dcol, stride_vd)
    mask_ptrs = _ptrs(M, b, stride_mb, h, stride_mh, offs_m[:, None], stride_mm, offs_n0[None, :], stride_mn)

    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) + EMPTY_ROW_MAX
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    n_full, n_end = _key_regions(start_m, Sk, CAUSAL_SHIFT, BLOCK_M, BLOCK_N, IS_CAUSAL)
    acc, m_i, l_i = _fwd_tiles(acc, m_i, l_i, q, k_ptrs, v_ptrs, mask_ptrs, offs_m, offs_n0, d_ok,
                               0, n_full, stride_kn, stride_vn, stride_mn, Sq, Sk, CAUSAL_SHIFT,
                               qk_scale, mask_fill, BLOCK_N, False, IS_CAUSAL, MASK_KIND, PAD_D)
    acc, m_i, l_i = _fwd_tiles(acc, m_i, l_i, q, k_ptrs, v_ptrs, mask_ptrs, offs_m, offs_n0, d_ok,
                               n_full, n_end, stride_kn, stride_vn, stride_mn, Sq, Sk, CAUSAL_SHIFT,
                               qk_scale, mask_fill, BLOCK_N, True, IS_CAUSAL, MASK_KIND, PAD_D)

    empty = l_i == 0.0
    inv_l = tl.where(empty, empty_value, 1.0 / tl.where(empty, 1.0, l_i))
    out = acc * inv_l[:, None]
    row_ok = offs_m < Sq
    o_ptrs = _ptrs(Out, b, stride_ob, h, stride_oh, offs_m[:, None], stride_om, dcol, stride_od)
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
    stats = STATS + bh.to(tl.int64) * Sq + offs_m
    tl.store(stats, m_i, mask=row_ok)
    tl.store(stats + stats_half, inv_l, mask=row_ok)


# --------------------------------------------------------------------------------------------
# Backward: delta = rowsum(dO ∘ O)
# --------------------------------------------------------------------------------------------


@triton.jit
def attn_bwd_delta_kernel(
    Out, DO, DELTA,
    stride_ob, stride_oh, stride_om, stride_od,
    stride_gb, stride_gh, stride_gm, stride_gd,
    H, Sq,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """delta[b, h, i] = Σ_d dO[i, d] · O[i, d] in fp32 (the softmax-gradient row term)."""
    tl.static_assert(BLOCK_D >= HEAD_DIM)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    dcol = offs_d[None, :]
    ok = (offs_m[:, None] < Sq) & (offs_d[None, :] < HEAD_DIM)
    o = tl.load(_ptrs(Out, b, stride_ob, h, stride_oh, offs_m[:, None], stride_om, dcol, stride_od),
                mask=ok, other=0.0)
    g = tl.load(_ptrs(DO, b, stride_gb, h, stride_gh, offs_m[:, None], stride_gm, dcol, stride_gd),
                mask=ok, other=0.0)
    delta = tl.sum(o.to(tl.float32) * g.to(tl.float32), 1)
    tl.store(DELTA + bh.to(tl.int64) * Sq + offs_m, delta, mask=offs_m < Sq)


# --------------------------------------------------------------------------------------------
# Backward: dK, dV (one program per key block and key/value head; loops over its query heads)
# --------------------------------------------------------------------------------------------


@triton.jit
def _load_row_stats(stat_ptrs, stats_half, delta_ptrs, row_ok, EDGE: tl.constexpr):
    """Row max (log2), inverse row sum and delta of a row block; padded rows get an inverse sum
    of 0, so that p = 0 there."""
    if EDGE:
        m2 = tl.load(stat_ptrs, mask=row_ok, other=0.0)
        inv_l = tl.load(stat_ptrs + stats_half, mask=row_ok, other=0.0)
        delta = tl.load(delta_ptrs, mask=row_ok, other=0.0)
    else:
        m2 = tl.load(stat_ptrs)
        inv_l = tl.load(stat_ptrs + stats_half)
        delta = tl.load(delta_ptrs)
    return m2, inv_l, delta


@triton.jit
def _dkdv_tiles(dk, dv, k, v, q_ptrs, do_ptrs, stat_ptrs, stats_half, delta_ptrs, mask_ptrs, offs_n,
                offs_m0, d_ok, lo, hi, stride_qm, stride_gm, stride_mm, Sq, Sk, CAUSAL_SHIFT, qk_scale,
                mask_fill, BLOCK_M: tl.constexpr, EDGE: tl.constexpr, IS_CAUSAL: tl.constexpr,
                MASK_KIND: tl.constexpr, ZERO_MASKED: tl.constexpr, PAD_D: tl.constexpr):
    """Accumulate dK (unscaled) and dV of one key block over query tiles ``[lo, hi)``."""
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + offs_m0
        row_ok = offs_m < Sq
        q = _load(q_ptrs + start_m * stride_qm, row_ok[:, None], d_ok[None, :], EDGE, PAD_D)
        do = _load(do_ptrs + start_m * stride_gm, row_ok[:, None], d_ok[None, :], EDGE, PAD_D)
        m2, inv_l, delta = _load_row_stats(stat_ptrs + start_m, stats_half, delta_ptrs + start_m,
                                           row_ok, EDGE)
        sT = _mm(k, tl.trans(q)) * qk_scale
        sT = _mask_scores(sT, offs_m[None, :], offs_n[:, None], mask_ptrs + start_m * stride_mm,
                          Sq, Sk, CAUSAL_SHIFT, mask_fill, EDGE, IS_CAUSAL, MASK_KIND)
        pT = tl.exp2(sT - m2[None, :]) * inv_l[None, :]
        dv = _dot(pT.to(do.dtype), do, dv)
        dpT = _mm(v, tl.trans(do))
        dsT = pT * (dpT - delta[None, :])
        dsT = _zero_masked(dsT, offs_m[None, :], offs_n[:, None], mask_ptrs + start_m * stride_mm,
                           Sq, Sk, ZERO_MASKED)
        dk = _dot(dsT.to(q.dtype), q, dk)
    return dk, dv


@triton.autotune(configs=DKDV_CONFIGS, key=["HEAD_DIM", "IS_CAUSAL", "MASK_KIND", "seq_bucket"],
                 prune_configs_by={"early_config_prune": _prune_by_head_dim})
@triton.jit
def attn_bwd_dkdv_kernel(
    Q, K, V, M, DO, STATS, DELTA, DK, DV,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_mb, stride_mh, stride_mm, stride_mn,
    stride_gb, stride_gh, stride_gm, stride_gd,
    stride_dkb, stride_dkh, stride_dkn, stride_dkd,
    stride_dvb, stride_dvh, stride_dvn, stride_dvd,
    Hkv, Sq, Sk, CAUSAL_SHIFT, qk_scale, scale, mask_fill, stats_half, seq_bucket,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, GROUP: tl.constexpr,
    IS_CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr, ZERO_MASKED: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_N keys of one (batch, key/value head). Sums over the GROUP query heads
    that share this key/value head, so grouped-query attention needs no atomics."""
    tl.static_assert(BLOCK_D >= HEAD_DIM)
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0)
    PAD_D: tl.constexpr = BLOCK_D != HEAD_DIM
    qk_scale, scale = tl.cast(qk_scale, tl.float32), tl.cast(scale, tl.float32)  # fp64 from inductor
    mask_fill = tl.cast(mask_fill, tl.float32)
    start_n = tl.program_id(0) * BLOCK_N
    bhk = tl.program_id(1)
    b = (bhk // Hkv).to(tl.int64)
    hk = (bhk % Hkv).to(tl.int64)
    H = Hkv * GROUP

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    dcol = offs_d[None, :]
    key_ok = offs_n[:, None] < Sk
    k = _load(_ptrs(K, b, stride_kb, hk, stride_kh, offs_n[:, None], stride_kn, dcol, stride_kd),
              key_ok, d_ok[None, :], True, PAD_D)
    v = _load(_ptrs(V, b, stride_vb, hk, stride_vh, offs_n[:, None], stride_vn, dcol, stride_vd),
              key_ok, d_ok[None, :], True, PAD_D)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    # Query tiles: [m_start, m_mid) edge (causal diagonal), [m_mid, m_tail) interior,
    # [max(m_mid, m_tail), Sq) edge (ragged end).
    if IS_CAUSAL:
        m_start = tl.maximum(start_n - CAUSAL_SHIFT, 0) // BLOCK_M * BLOCK_M
        m_full = tl.cdiv(tl.maximum(start_n + BLOCK_N - 1 - CAUSAL_SHIFT, 0), BLOCK_M) * BLOCK_M
    else:
        m_start = 0
        m_full = 0
    m_tail = Sq // BLOCK_M * BLOCK_M
    m_mid = tl.maximum(m_start, tl.minimum(m_full, m_tail))

    for g in range(GROUP):
        h = hk * GROUP + g
        bh = b * H + h
        q_ptrs = _ptrs(Q, b, stride_qb, h, stride_qh, offs_m0[:, None], stride_qm, dcol, stride_qd)
        do_ptrs = _ptrs(DO, b, stride_gb, h, stride_gh, offs_m0[:, None], stride_gm, dcol, stride_gd)
        stat_ptrs = STATS + bh * Sq + offs_m0
        delta_ptrs = DELTA + bh * Sq + offs_m0
        mask_ptrs = _ptrs(M, b, stride_mb, h, stride_mh, offs_m0[None, :], stride_mm,
                          offs_n[:, None], stride_mn)
        dk, dv = _dkdv_tiles(dk, dv, k, v, q_ptrs, do_ptrs, stat_ptrs, stats_half, delta_ptrs, mask_ptrs,
                             offs_n, offs_m0, d_ok, m_start, m_mid, stride_qm, stride_gm, stride_mm, Sq,
                             Sk, CAUSAL_SHIFT, qk_scale, mask_fill, BLOCK_M, True, IS_CAUSAL,
                             MASK_KIND, ZERO_MASKED, PAD_D)
        dk, dv = _dkdv_tiles(dk, dv, k, v, q_ptrs, do_ptrs, stat_ptrs, stats_half, delta_ptrs, mask_ptrs,
                             offs_n, offs_m0, d_ok, m_mid, m_tail, stride_qm, stride_gm, stride_mm, Sq,
                             Sk, CAUSAL_SHIFT, qk_scale, mask_fill, BLOCK_M, False, IS_CAUSAL,
                             MASK_KIND, ZERO_MASKED, PAD_D)
        dk, dv = _dkdv_tiles(dk, dv, k, v, q_ptrs, do_ptrs, stat_ptrs, stats_half, delta_ptrs, mask_ptrs,
                             offs_n, offs_m0, d_ok, tl.maximum(m_mid, m_tail), Sq, stride_qm, stride_gm,
                             stride_mm, Sq, Sk, CAUSAL_SHIFT, qk_scale, mask_fill, BLOCK_M, True, IS_CAUSAL,
                             MASK_KIND, ZERO_MASKED, PAD_D)
    out_ok = key_ok & d_ok[None, :]
    dk_ptrs = _ptrs(DK, b, stride_dkb, hk, stride_dkh, offs_n[:, None], stride_dkn, dcol, stride_dkd)
    dv_ptrs = _ptrs(DV, b, stride_dvb, hk, stride_dvh, offs_n[:, None], stride_dvn, dcol, stride_dvd)
    tl.store(dk_ptrs, (dk * scale).to(DK.dtype.element_ty), mask=out_ok)
    tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=out_ok)


# --------------------------------------------------------------------------------------------
# Backward: dQ (one program per query block and query head)
# --------------------------------------------------------------------------------------------


@triton.jit
def _dq_tiles(dq, q, do, m2, inv_l, delta, k_ptrs, v_ptrs, mask_ptrs, offs_m, offs_n0, d_ok, lo, hi,
              stride_kn, stride_vn, stride_mn, Sq, Sk, CAUSAL_SHIFT, qk_scale, mask_fill,
              BLOCK_N: tl.constexpr, EDGE: tl.constexpr, IS_CAUSAL: tl.constexpr,
              MASK_KIND: tl.constexpr, ZERO_MASKED: tl.constexpr, PAD_D: tl.constexpr):
    """Accumulate dQ (unscaled) of one query block over key tiles ``[lo, hi)``."""
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        kT = _load(k_ptrs + start_n * stride_kn, offs_n[None, :] < Sk, d_ok[:, None], EDGE, PAD_D)
        vT = _load(v_ptrs + start_n * stride_vn, offs_n[None, :] < Sk, d_ok[:, None], EDGE, PAD_D)
        s = _mm(q, kT) * qk_scale
        s = _mask_scores(s, offs_m[:, None], offs_n[None, :], mask_ptrs + start_n * stride_mn,
                         Sq, Sk, CAUSAL_SHIFT, mask_fill, EDGE, IS_CAUSAL, MASK_KIND)
        p = tl.exp2(s - m2[:, None]) * inv_l[:, None]
        dp = _mm(do, vT)
        ds = p * (dp - delta[:, None])
        ds = _zero_masked(ds, offs_m[:, None], offs_n[None, :], mask_ptrs + start_n * stride_mn,
                          Sq, Sk, ZERO_MASKED)
        dq = _dot(ds.to(kT.dtype), tl.trans(kT), dq)
    return dq


@triton.autotune(configs=DQ_CONFIGS, key=["HEAD_DIM", "IS_CAUSAL", "MASK_KIND", "seq_bucket"],
                 prune_configs_by={"early_config_prune": _prune_by_head_dim})
@triton.jit
def attn_bwd_dq_kernel(
    Q, K, V, M, DO, STATS, DELTA, DQ,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_mb, stride_mh, stride_mm, stride_mn,
    stride_gb, stride_gh, stride_gm, stride_gd,
    stride_dqb, stride_dqh, stride_dqm, stride_dqd,
    H, Sq, Sk, CAUSAL_SHIFT, qk_scale, scale, mask_fill, stats_half, seq_bucket,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, GROUP: tl.constexpr,
    IS_CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr, ZERO_MASKED: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_M query rows of one (batch, query head); writes their dQ."""
    tl.static_assert(BLOCK_D >= HEAD_DIM)
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0)
    PAD_D: tl.constexpr = BLOCK_D != HEAD_DIM
    qk_scale, scale = tl.cast(qk_scale, tl.float32), tl.cast(scale, tl.float32)  # fp64 from inductor
    mask_fill = tl.cast(mask_fill, tl.float32)
    start_m = _block_start(BLOCK_M, IS_CAUSAL)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    hk = h // GROUP

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    dcol, drow = offs_d[None, :], offs_d[:, None]
    row_ok = offs_m < Sq
    q = _load(_ptrs(Q, b, stride_qb, h, stride_qh, offs_m[:, None], stride_qm, dcol, stride_qd),
              row_ok[:, None], d_ok[None, :], True, PAD_D)
    do = _load(_ptrs(DO, b, stride_gb, h, stride_gh, offs_m[:, None], stride_gm, dcol, stride_gd),
               row_ok[:, None], d_ok[None, :], True, PAD_D)
    stats = bh.to(tl.int64) * Sq + offs_m
    m2, inv_l, delta = _load_row_stats(STATS + stats, stats_half, DELTA + stats, row_ok, True)
    k_ptrs = _ptrs(K, b, stride_kb, hk, stride_kh, offs_n0[None, :], stride_kn, drow, stride_kd)
    v_ptrs = _ptrs(V, b, stride_vb, hk, stride_vh, offs_n0[None, :], stride_vn, drow, stride_vd)
    mask_ptrs = _ptrs(M, b, stride_mb, h, stride_mh, offs_m[:, None], stride_mm, offs_n0[None, :], stride_mn)

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    n_full, n_end = _key_regions(start_m, Sk, CAUSAL_SHIFT, BLOCK_M, BLOCK_N, IS_CAUSAL)
    dq = _dq_tiles(dq, q, do, m2, inv_l, delta, k_ptrs, v_ptrs, mask_ptrs, offs_m, offs_n0, d_ok, 0,
                   n_full, stride_kn, stride_vn, stride_mn, Sq, Sk, CAUSAL_SHIFT, qk_scale, mask_fill,
                   BLOCK_N, False, IS_CAUSAL, MASK_KIND, ZERO_MASKED, PAD_D)
    dq = _dq_tiles(dq, q, do, m2, inv_l, delta, k_ptrs, v_ptrs, mask_ptrs, offs_m, offs_n0, d_ok, n_full,
                   n_end, stride_kn, stride_vn, stride_mn, Sq, Sk, CAUSAL_SHIFT, qk_scale, mask_fill,
                   BLOCK_N, True, IS_CAUSAL, MASK_KIND, ZERO_MASKED, PAD_D)
    dq_ptrs = _ptrs(DQ, b, stride_dqb, h, stride_dqh, offs_m[:, None], stride_dqm, dcol, stride_dqd)
    tl.store(dq_ptrs, (dq * scale).to(DQ.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
