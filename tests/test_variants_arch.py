"""Attention variants recovered from more transformers architectures (tiny configs, random
weights, eager attention, no downloads): every attention site of each model is recovered, its
specification evaluated on the graph's own q, k, v and captured tensors equals the site's output
in float32, and what was recovered (structure, group, score modification, mask, sinks) is
asserted. Near misses of the forms read here for the first time (3-d ``baddbmm`` attention with
batch and heads merged, a mask added as ``where(drop, fill, bias)``) are not recovered as
something else."""

from __future__ import annotations

import test_variants_arch_models as models
import torch
from pypm.rules.variants import recover, recover_sites

from pypm.kernels.spec import KV_IDX, Q_IDX, S, captured
from pypm.kernels.spec_eval import evaluate


def _sites(builder):
    """Every attention site of the model's graph, each recovered and evaluated against the
    graph's own values (float32 model, float64 evaluation, atol 1e-5)."""
    model, kwargs = builder()
    gm, ex = models.capture(model, **kwargs)
    softmaxes = sum(1 for n in gm.graph.nodes if "softmax" in str(n.target))
    sites = recover_sites(gm, ex)
    assert len(sites) == softmaxes, (len(sites), softmaxes)
    vals = models.node_values(gm, ex)
    for s in sites:
        assert s.spec is not None, s.reason
        out = evaluate(s.spec, vals[s.q], vals[s.k], vals[s.v], {n: vals[x] for n, x in s.captured.items()})
        out = out.flatten(0, 1) if s.flat else out
        ref = vals[s.root].double()
        assert out.shape == ref.shape
        assert torch.equal(out.isnan(), ref.isnan())
        assert torch.allclose(out.nan_to_num(), ref.nan_to_num(), atol=1e-5), s.spec
    return sites


PAD = captured("c0", "b", KV_IDX).ne(0)
CAUSAL = KV_IDX <= Q_IDX
MIN = -3.4028234663852886e38


def test_phi3_causal_gqa_with_padding():
    sites = _sites(models.phi3)
    assert [str(s.spec) for s in sites] == ["causal padding fill=add:-3.40282e+38 gqa=2 scale=0.353553"] * 2
    for s in sites:
        assert s.spec.mask == CAUSAL & PAD and s.spec.score_mod == S and s.spec.group == 2
        assert s.k.meta["example_value"].shape[1] == 2  # K before repeat_kv


def test_gemma3_alternating_sliding_window_and_global():
    sliding, full = _sites(models.gemma3)
    assert str(sliding.spec) == "causal window=4 padding fill=add:-3.40282e+38 gqa=2 scale=0.353553"
    assert sliding.spec.structure.params == (("left", 3), ("right", 0))
    assert str(full.spec) == "causal padding fill=add:-3.40282e+38 gqa=2 scale=0.353553"
    assert sliding.spec.score_mod == S and full.spec.score_mod == S and sliding.spec.sinks is None


def test_bert_encoder_with_a_padding_mask():
    sites = _sites(models.bert)
    for s in sites:
        assert str(s.spec) == "padding fill=add:-3.40282e+38 scale=0.353553"
        assert s.spec.structure.kind == "full" and s.spec.structure.data == ("padding",)
        assert s.spec.group == 1 and s.spec.score_mod == S and s.spec.mask_mode == "add"


def test_vit_has_no_mask():
    sites = _sites(models.vit)
    assert len(sites) == 2
    for s in sites:
        assert str(s.spec) == "full scale=0.353553"
        assert s.spec.mask is None and s.spec.score_mod == S and s.spec.group == 1


def test_llama_left_padded_rows():
    sites = _sites(models.llama_left_padded)
    assert len(sites) == 2
    for s in sites:
        assert str(s.spec) == "causal padding fill=add:-3.40282e+38 gqa=2 scale=0.353553"
        assert s.spec.mask == CAUSAL & PAD and s.spec.structure.param("offset") == 0


def test_bloom_baddbmm_alibi_with_batch_and_heads_merged():
    """Bloom computes ``baddbmm(alibi, q, k^T, alpha=1/sqrt(d))`` on (B * H, S, D) tensors: q, k, v
    are taken before the merge, the result is the op's flattened, and the ALiBi tensor (built from
    the padding mask's cumulative sum, not from ``kv_idx - q_idx``) is a captured bias read at
    ``[b * H + h, 0, kv_idx]``."""
    sites = _sites(models.bloom)
    assert len(sites) == 2
    for s in sites:
        assert str(s.spec) == "causal padding bias fill=add:-3.40282e+38 scale=0.353553", s.spec.describe()
        assert s.flat and s.q.meta["example_value"].dim() == 4
        assert repr(s.spec.score_mod) == "s + c0[b * 4 + h, 0, kv_idx]"
        assert s.spec.mask == CAUSAL & captured("c1", "b", KV_IDX).ne(0)


def test_falcon_alibi_scaled_after_the_bias():
    """Falcon (``alibi=True``) adds the ALiBi tensor, then scales, then adds a mask that is
    ``where(drop, finfo.min, alibi / sqrt(d))``: the drop predicate is peeled off as the mask (the
    kept branch stays in the score modification), and since the scale follows the bias it stays
    inside the score modification too (scale=1)."""
    sites = _sites(models.falcon)
    assert len(sites) == 2
    for s in sites:
        spec = s.spec
        assert str(spec) == "causal padding score_mod fill=add:-3.40282e+38 scale=1", spec.describe()
        assert spec.mask == CAUSAL & captured("c1", "b", KV_IDX).ne(0)
        assert repr(spec.score_mod).startswith("(s + c0[b, h, 0, kv_idx]) * 0.3535533905")


def test_mpt_alibi_is_a_bias_on_the_key_position():
    """MPT's bias is ``slope[h] * (kv_idx - (Sk - 1))`` from a buffer sliced to the key length
    (ALiBi up to a constant per row): recovered exactly as a captured bias over ``h, kv_idx``."""
    sites = _sites(models.mpt)
    assert len(sites) == 2
    for s in sites:
        assert str(s.spec) == "causal padding bias fill=fill:-3.40282e+38 scale=0.353553"
        assert repr(s.spec.score_mod) == "s + c0[h, 0, kv_idx + 56]"
        assert s.spec.mask == CAUSAL & captured("c1", "b", KV_IDX).ne(0)


def test_t5_relative_bias_self_and_cross_attention():
    """T5: encoder self-attention (relative position bias, padding), decoder self-attention
    (relative bias, causal) and cross-attention (no bias: ``s + 0.0``, padding), unscaled. The
    bias is the embedding lookup's output, captured at ``[q_idx, kv_idx, h]``."""
    e0, e1, d0s, d0x, d1s, d1x = _sites(models.t5)
    for s in (e0, e1):
        assert str(s.spec) == "padding bias fill=add:-3.40282e+38 scale=1"
        assert repr(s.spec.score_mod) == "s + c0[q_idx, kv_idx, h]"
        assert s.spec.mask == (Q_IDX >= 0) & captured("c1", "b", KV_IDX).ne(0)
    for s in (d0s, d1s):
        assert str(s.spec) == "causal bias fill=add:-3.40282e+38 scale=1"
        assert s.spec.mask == CAUSAL and repr(s.spec.score_mod) == "s + c0[q_idx, kv_idx, h]"
    for s in (d0x, d1x):
        assert str(s.spec) == "padding bias fill=add:-3.40282e+38 scale=1"
        assert s.spec.mask == (Q_IDX >= 0) & PAD
        assert s.q.meta["example_value"].shape[2] == 6 and s.k.meta["example_value"].shape[2] == 8


def test_whisper_encoder_decoder_and_cross_attention():
    e0, e1, d0s, d0x, d1s, d1x = _sites(models.whisper)
    for s in (e0, e1, d0x, d1x):  # the queries are pre-scaled: the scale on the scores is 1
        assert str(s.spec) == "full scale=1" and s.spec.mask is None and s.spec.score_mod == S
    for s in (d0s, d1s):
        assert str(s.spec) == "causal fill=add:-3.40282e+38 scale=1" and s.spec.mask == CAUSAL
    assert d0x.q.meta["example_value"].shape[2] == 6 and d0x.k.meta["example_value"].shape[2] == 8


# ---- near misses of the forms read here ----------------------------------------------------------

def _flat_attention(heads_major_v=False, bias_dim=None):
    """3-d attention as Bloom writes it; ``heads_major_v`` builds v3 from a (H, B, S, D) layout
    (a different merge than q and k); ``bias_dim`` adds a per-row bias read along that axis."""
    def f(q, k, v, alibi):
        b, h, n, d = q.shape
        q3, k3 = q.reshape(b * h, n, d), k.reshape(b * h, n, d).transpose(-1, -2)
        v3 = v.transpose(0, 1).reshape(b * h, n, d) if heads_major_v else v.reshape(b * h, n, d)
        s = alibi.baddbmm(q3, k3, beta=1.0, alpha=0.5).view(b, h, n, n)
        p = torch.softmax(s, dim=-1, dtype=torch.float32).view(b * h, n, n)
        return torch.bmm(p, v3)

    return f


def test_flat_attention_is_recovered_with_the_merged_bias():
    q, k, v = (torch.randn(2, 4, 6, 8) for _ in range(3))
    alibi = torch.randn(8, 1, 6)
    (site,) = _sites(lambda: (_flat_attention(), dict(q=q, k=k, v=v, alibi=alibi)))
    assert repr(site.spec.score_mod) == "s + c0[b * 4 + h, 0, kv_idx]" and site.spec.scale == 0.5


def test_flat_attention_with_v_merged_the_other_way_is_not_recovered():
    q, k, v = (torch.randn(2, 4, 6, 8) for _ in range(3))
    gm, ex = models.capture(_flat_attention(heads_major_v=True), q, k, v, torch.randn(8, 1, 6))
    ((_, why),) = recover(gm, ex)
    assert isinstance(why, str) and "not of (B, H, S, D) merging B and H" in why, why


def test_where_with_a_fill_that_is_not_very_negative_is_not_a_mask():
    def f(q, k, v):
        i = torch.arange(q.shape[2])[:, None]
        j = torch.arange(k.shape[2])[None, :]
        drop = j > i
        s = q @ k.transpose(-2, -1) * 0.25 + torch.where(drop, -5.0, torch.zeros(()))
        return torch.softmax(s, dim=-1) @ v

    q, k, v = (torch.randn(1, 2, 5, 8) for _ in range(3))
    (site,) = _sites(lambda: (f, dict(q=q, k=k, v=v)))
    assert site.spec.mask is None and "bias" in str(site.spec)


def test_where_drop_fill_bias_peels_the_negated_predicate():
    def f(q, k, v, bias):
        i = torch.arange(q.shape[2])[:, None]
        j = torch.arange(k.shape[2])[None, :]
        s = q @ k.transpose(-2, -1) * 0.25 + torch.where(j > i, -1e30, bias)
        return torch.softmax(s, dim=-1) @ v

    q, k, v = (torch.randn(1, 2, 5, 8) for _ in range(3))
    (site,) = _sites(lambda: (f, dict(q=q, k=k, v=v, bias=torch.randn(2, 5, 5))))
    assert site.spec.structure.kind == "causal" and site.spec.mask == CAUSAL
    assert site.spec.mask_mode == "add" and site.spec.fill == -1e30


def test_slopes_along_the_query_axis_are_not_alibi():
    slopes = torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.03, 0.01])

    def f(q, k, v):
        i = torch.arange(q.shape[2])[:, None]
        j = torch.arange(k.shape[2])[None, :]
        s = q @ k.transpose(-2, -1) / 8.0 + slopes.view(1, 1, -1, 1) * (j - i)
        return torch.softmax(s.masked_fill(j > i, float("-inf")), dim=-1) @ v

    q, k, v = (torch.randn(1, 4, 6, 8) for _ in range(3))
    (site,) = _sites(lambda: (f, dict(q=q, k=k, v=v)))
    assert "alibi" not in str(site.spec) and "bias" in str(site.spec)
