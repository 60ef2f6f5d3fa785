"""AttentionSpec as data: printing and canonical hashing, the reference evaluator against the
written-out torch code of each variant (fully masked rows and finite fills included), the
FlexAttention form, and the structure classes proved with sympy (with a near-miss corpus that
must not get a wrong class)."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest
import torch

from pypm.kernels.spec import KV_IDX, Q_IDX, AttentionSpec, B, H, S, Structure, call, captured
from pypm.kernels.spec_eval import evaluate, to_flex
from pypm.kernels.structure import classify

NEG = torch.finfo(torch.float32).min
INF = float("-inf")


def _qkv(b=2, hq=4, hkv=4, sq=11, sk=11, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, hq, sq, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, hkv, sk, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, hkv, sk, d, generator=g, dtype=torch.float64)
    return q, k, v


def _scores(q, k, scale):
    group = q.shape[1] // k.shape[1]
    return (q @ k.repeat_interleave(group, 1).transpose(-1, -2)) * scale


def _out(p, v, q):
    return p @ v.repeat_interleave(q.shape[1] // v.shape[1], 1)


def _ij(sq, sk):
    return torch.arange(sq)[:, None], torch.arange(sk)[None, :]


def _check(spec, q, k, v, ref, captured=None, block=4):
    out = evaluate(spec, q, k, v, captured, block=block)
    assert out.shape == ref.shape
    assert torch.equal(out.isnan(), ref.isnan())
    assert torch.allclose(out.nan_to_num(), ref.nan_to_num(), atol=1e-12, rtol=1e-10)
    return out


# ---- printing and hashing ---------------------------------------------------------------------

def test_str_reads_like_the_variant():
    spec = AttentionSpec(group=4, score_mod=call("tanh", S / 50.0) * 50.0,
                         mask=(KV_IDX > Q_IDX - 4096) & (KV_IDX <= Q_IDX), sinks=captured("sinks", H))
    assert str(spec) == "causal window=4096 softcap=50.0 gqa=4 sinks"
    assert str(AttentionSpec()) == "full"


def test_specs_are_hashable_and_equal_by_value():
    a = AttentionSpec(group=2, scale=0.125, mask=KV_IDX <= Q_IDX)
    b = AttentionSpec(group=2, scale=0.125, mask=KV_IDX <= Q_IDX)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != a.with_(mask=KV_IDX < Q_IDX)


def test_digest_is_canonical_across_captured_names_and_processes():
    a = AttentionSpec(score_mod=S + captured("layer0.slopes", H) * (KV_IDX - Q_IDX))
    b = AttentionSpec(score_mod=S + captured("layer7.slopes", H) * (KV_IDX - Q_IDX))
    assert a != b and a.digest() == b.digest()
    code = ("from pypm.kernels.spec import *; "
            "print(AttentionSpec(score_mod=S + captured('x', H) * (KV_IDX - Q_IDX)).digest())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert other.stdout.strip() == a.digest()


def test_expressions_fold_boolean_identities():
    assert call("and", True, KV_IDX <= Q_IDX) == (KV_IDX <= Q_IDX)
    assert call("where", KV_IDX <= Q_IDX, True, False) == (KV_IDX <= Q_IDX)
    # Falcon's ``where(keep, 0, min) < -1`` is the negated keep (exact: integer indices)
    assert call("lt", call("where", KV_IDX <= Q_IDX, 0.0, NEG), -1) == (KV_IDX > Q_IDX)


def test_dropout_is_always_off():
    with pytest.raises(ValueError):
        AttentionSpec(dropout=0.1)


# ---- the evaluator against the written-out code -------------------------------------------------

def test_softcap():
    q, k, v = _qkv()
    s = _scores(q, k, 0.3)
    ref = _out(torch.softmax(torch.tanh(s / 5.0) * 5.0, -1), v, q)
    _check(AttentionSpec(scale=0.3, score_mod=call("tanh", S / 5.0) * 5.0), q, k, v, ref)


def test_alibi():
    q, k, v = _qkv(hq=4, hkv=4)
    slopes = torch.tensor([2.0 ** (-8 * (i + 1) / 4) for i in range(4)], dtype=torch.float64)
    i, j = _ij(11, 11)
    bias = slopes.view(1, -1, 1, 1) * (j - i)
    s = _scores(q, k, 0.3) + bias
    ref = _out(torch.softmax(s.masked_fill(j > i, INF), -1), v, q)
    spec = AttentionSpec(scale=0.3, score_mod=S + captured("slopes", H) * (KV_IDX - Q_IDX),
                         mask=KV_IDX <= Q_IDX)
    _check(spec, q, k, v, ref, {"slopes": slopes})
    assert str(spec) == "causal alibi scale=0.3"


def test_sliding_window_gqa_8_to_1():
    q, k, v = _qkv(hq=8, hkv=1)
    i, j = _ij(11, 11)
    keep = (j <= i) & (j > i - 3)
    ref = _out(torch.softmax(_scores(q, k, 0.25).masked_fill(~keep, INF), -1), v, q)
    spec = AttentionSpec(group=8, scale=0.25, mask=(KV_IDX <= Q_IDX) & (KV_IDX > Q_IDX - 3))
    _check(spec, q, k, v, ref)
    assert str(spec) == "causal window=3 gqa=8 scale=0.25"


def test_document_mask():
    q, k, v = _qkv()
    docs = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2], [0] * 5 + [1] * 6])
    i, j = _ij(11, 11)
    keep = (docs[:, None, :, None] == docs[:, None, None, :]) & (j <= i)
    ref = _out(torch.softmax(_scores(q, k, 0.3).masked_fill(~keep, INF), -1), v, q)
    spec = AttentionSpec(scale=0.3, mask=captured("docs", B, Q_IDX).eq(captured("docs", B, KV_IDX))
                         & (KV_IDX <= Q_IDX))
    _check(spec, q, k, v, ref, {"docs": docs})
    assert spec.structure == Structure("causal", (("offset", 0),), ("documents",))


@pytest.mark.parametrize("fill", [INF, NEG])
def test_causal_with_left_padding_fully_masked_rows(fill):
    """Left padding masks every key of the first rows: NaN with -inf (as softmax computes it),
    uniform with a finite fill."""
    q, k, v = _qkv()
    pad = torch.ones(2, 11, dtype=torch.bool)
    pad[0, :3] = False
    i, j = _ij(11, 11)
    keep = (j <= i)[None, None] & pad[:, None, None, :]
    ref = _out(torch.softmax(_scores(q, k, 0.3) + torch.where(keep, 0.0, fill), -1), v, q)
    spec = AttentionSpec(scale=0.3, mask=(KV_IDX <= Q_IDX) & captured("pad", B, KV_IDX), fill=fill,
                         mask_mode="add")
    out = _check(spec, q, k, v, ref, {"pad": pad})
    assert out[0, :, :3].isnan().all() == math.isinf(fill)
    assert not out[1].isnan().any()
    filled = spec.with_(mask_mode="fill")
    ref2 = _out(torch.softmax(_scores(q, k, 0.3).masked_fill(~keep, fill), -1), v, q)
    _check(filled, q, k, v, ref2, {"pad": pad})


def test_t5_relative_position_bias_table():
    """bias = table[bucket[q_idx - kv_idx + Sk - 1], h]: a lookup of a lookup."""
    q, k, v = _qkv(sq=7, sk=9)
    table = torch.randn(6, 4, dtype=torch.float64)
    rel = torch.arange(-8, 7)                      # q - kv over the domain
    bucket = (rel.abs().clamp(max=5)).long()       # any bucketing function, tabulated
    i, j = _ij(7, 9)
    bias = table[bucket[i - j + 8]].permute(2, 0, 1)  # (H, Sq, Sk)
    ref = _out(torch.softmax(_scores(q, k, 1.0) + bias, -1), v, q)
    bias_expr = captured("table", captured("bucket", Q_IDX - KV_IDX + 8), H)
    spec = AttentionSpec(scale=1.0, score_mod=S + bias_expr)
    _check(spec, q, k, v, ref, {"table": table, "bucket": bucket})


def test_sinks():
    q, k, v = _qkv(hq=4, hkv=2)
    sinks = torch.randn(4, dtype=torch.float64)
    i, j = _ij(11, 11)
    lg = _scores(q, k, 0.3).masked_fill(j > i, INF)
    comb = torch.cat([lg, sinks.view(1, -1, 1, 1).expand(2, -1, 11, -1)], -1)
    ref = _out(torch.softmax(comb - comb.amax(-1, keepdim=True), -1)[..., :-1], v, q)
    spec = AttentionSpec(group=2, scale=0.3, mask=KV_IDX <= Q_IDX, sinks=captured("sinks", H))
    _check(spec, q, k, v, ref, {"sinks": sinks})


def test_nan_and_inf_logits_make_nan_rows_as_softmax_does():
    q, k, v = _qkv(b=1, hq=1, hkv=1, sq=3, sk=5)
    bias = torch.zeros(3, 5, dtype=torch.float64)
    bias[0, 4] = float("nan")
    bias[1, 1] = float("inf")
    ref = _out(torch.softmax(_scores(q, k, 0.5) + bias, -1), v, q)
    _check(AttentionSpec(scale=0.5, score_mod=S + captured("bias", Q_IDX, KV_IDX)), q, k, v, ref,
           {"bias": bias}, block=2)


def test_memory_is_blocked_over_keys():
    """The evaluator never forms an Sq x Sk score matrix larger than one block of keys."""
    q, k, v = _qkv(b=1, hq=1, hkv=1, sq=4, sk=37)
    ref = _out(torch.softmax(_scores(q, k, 0.2), -1), v, q)
    for block in (1, 5, 64):
        _check(AttentionSpec(scale=0.2), q, k, v, ref, block=block)


# ---- FlexAttention --------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["softcap-window", "alibi", "padding-finite", "sinks"])
def test_flex_attention_form_matches_the_evaluator(variant):
    warnings.simplefilter("ignore")
    q, k, v = _qkv(hq=4, hkv=2)
    pad = torch.ones(2, 11, dtype=torch.bool)
    pad[0, :3] = False
    slopes = torch.linspace(0.1, 0.5, 4, dtype=torch.float64)
    sinks = torch.randn(4, dtype=torch.float64)
    cap = {"pad": pad, "slopes": slopes, "sinks": sinks}
    spec = {
        "softcap-window": AttentionSpec(group=2, scale=0.3, score_mod=call("tanh", S / 5.0) * 5.0,
                                        mask=(KV_IDX <= Q_IDX) & (KV_IDX > Q_IDX - 4)),
        "alibi": AttentionSpec(group=2, scale=0.3, score_mod=S + captured("slopes", H) * (KV_IDX - Q_IDX),
                               mask=KV_IDX <= Q_IDX),
        "padding-finite": AttentionSpec(group=2, scale=0.3, fill=NEG, mask_mode="add",
                                        mask=(KV_IDX <= Q_IDX) & captured("pad", B, KV_IDX)),
        "sinks": AttentionSpec(group=2, scale=0.3, mask=KV_IDX <= Q_IDX, sinks=captured("sinks", H)),
    }[variant]
    ref = evaluate(spec, q, k, v, cap)
    flex = to_flex(spec, {n: t.float() if t.is_floating_point() else t for n, t in cap.items()})
    out = flex.attend(q.float(), k.float(), v.float()).double()
    assert torch.allclose(out, ref, atol=2e-5)


# ---- structure classes, proved --------------------------------------------------------------------

@pytest.mark.parametrize("mask, kind, params", [
    (None, "full", {}),
    (KV_IDX <= Q_IDX, "causal", {"offset": 0}),
    (Q_IDX >= KV_IDX, "causal", {"offset": 0}),
    (~(KV_IDX > Q_IDX), "causal", {"offset": 0}),
    (KV_IDX < Q_IDX + 1, "causal", {"offset": 0}),
    (KV_IDX - Q_IDX <= 3, "causal", {"offset": 3}),
    (2 * KV_IDX <= 2 * Q_IDX, "causal", {"offset": 0}),
    ((KV_IDX <= Q_IDX) & (Q_IDX - KV_IDX < 128), "sliding_window", {"left": 127, "right": 0}),
    ((KV_IDX > Q_IDX - 4096) & (KV_IDX <= Q_IDX), "sliding_window", {"left": 4095, "right": 0}),
    (((Q_IDX - KV_IDX) <= 2) & ((KV_IDX - Q_IDX) <= 2), "sliding_window", {"left": 2, "right": 2}),
    ((Q_IDX // 4).eq(KV_IDX // 4), "chunked", {"size": 4, "causal": None}),
    ((Q_IDX // 4).eq(KV_IDX // 4) & (KV_IDX <= Q_IDX), "chunked", {"size": 4, "causal": 0}),
    ((KV_IDX < 5) | (KV_IDX <= Q_IDX), "prefix", {"prefix": 5, "offset": 0}),
    (call("or", KV_IDX <= Q_IDX, KV_IDX <= Q_IDX - 2), "causal", {"offset": 0}),
    (call("and", KV_IDX <= Q_IDX, KV_IDX <= Q_IDX + 5), "causal", {"offset": 0}),
])
def test_structure_is_proved(mask, kind, params):
    st = classify(mask)
    assert (st.kind, dict(st.params)) == (kind, params)


@pytest.mark.parametrize("mask, must_not", [
    # window off by one: 4 keys is not a window of 3
    ((KV_IDX <= Q_IDX) & (KV_IDX >= Q_IDX - 3), {"left": 2, "right": 0}),
    # < instead of <=: the diagonal is masked
    (KV_IDX < Q_IDX, {"offset": 0}),
    # the mask over the wrong axis: the upper triangle
    (Q_IDX <= KV_IDX, {"offset": 0}),
    # a chunk on one axis only
    ((Q_IDX // 4).eq(KV_IDX), {"size": 4}),
])
def test_near_misses_do_not_get_the_class_they_resemble(mask, must_not):
    st = classify(mask)
    params = dict(st.params)
    assert not all(params.get(k, object()) == v for k, v in must_not.items()), (st, must_not)


def test_near_miss_classes_are_the_right_ones():
    assert classify(KV_IDX < Q_IDX).params == (("offset", -1),)
    assert classify(Q_IDX <= KV_IDX).kind == "sliding_window"   # kv - q >= 0: the upper band
    assert classify((Q_IDX // 4).eq(KV_IDX)).kind == "arbitrary"
    assert classify(Q_IDX * KV_IDX <= 3).kind == "arbitrary"


def test_data_dependent_parts_are_named_by_form():
    assert classify(captured("pad", B, KV_IDX) & (KV_IDX <= Q_IDX)).data == ("padding",)
    assert classify(captured("pad", B, Q_IDX) & (KV_IDX <= Q_IDX)).data == ("data",)   # wrong axis
    docs = captured("d", B, Q_IDX).eq(captured("d", B, KV_IDX))
    assert classify(docs).data == ("documents",)


def test_score_mod_names_need_the_exact_form():
    alibi = AttentionSpec(score_mod=S + captured("m", H) * (KV_IDX - Q_IDX))
    wrong_sign = AttentionSpec(score_mod=S + captured("m", H) * (Q_IDX - KV_IDX))
    wrong_axis = AttentionSpec(score_mod=S + captured("m", Q_IDX) * (KV_IDX - Q_IDX))
    assert alibi.score_mod_words() == ["alibi"]
    assert wrong_sign.score_mod_words() == ["bias"]
    assert wrong_axis.score_mod_words() == ["bias"]
    assert AttentionSpec(score_mod=call("tanh", S / 30.0) * 20.0).score_mod_words() == ["score_mod"]
