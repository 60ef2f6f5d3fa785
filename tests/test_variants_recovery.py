"""Attention variants recovered from unmodified eager graphs: transformers architectures built
from tiny configs with random weights (no downloads), captured by dynamo, read by
``pypm.rules.variants.recover`` into an AttentionSpec per attention site; each recovered spec is
evaluated on the graph's own q, k, v and captured tensors and must give the site's output."""

from __future__ import annotations

import pytest
import torch
from pypm.rules.variants import recover, recover_sites
from test_variants_arch_models import capture, node_values

from pypm.kernels.spec import KV_IDX, Q_IDX, AttentionSpec, H, S, captured
from pypm.kernels.spec_eval import evaluate

transformers = pytest.importorskip("transformers")

COMMON = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_attention_heads=4,
              max_position_embeddings=64)


def _sites_checked(gm, example_inputs):
    """Recovered sites, each evaluated against the graph's own values."""
    sites = recover_sites(gm, example_inputs)
    vals = node_values(gm, example_inputs)
    for s in sites:
        assert s.spec is not None, s.reason
        out = evaluate(s.spec, vals[s.q], vals[s.k], vals[s.v],
                       {n: vals[x] for n, x in s.captured.items()})
        ref = vals[s.root].double()
        assert torch.equal(out.isnan(), ref.isnan())
        assert torch.allclose(out.nan_to_num(), ref.nan_to_num(), atol=1e-5), s.spec
    return sites


def _model(config_cls, model_cls, **cfg):
    config = config_cls(**cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return model_cls(config).eval()


def _run(model):
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[0, :2] = 0  # left padding
    return capture(model, input_ids=ids, attention_mask=mask)


def test_llama_is_causal_with_padding_and_kv_before_repeat():
    m = _model(transformers.LlamaConfig, transformers.LlamaForCausalLM, num_hidden_layers=1,
               num_key_value_heads=2, **COMMON)
    gm, ex = _run(m)
    (site,) = _sites_checked(gm, ex)
    spec = site.spec
    assert str(spec) == "causal padding fill=add:-3.40282e+38 gqa=2 scale=0.353553"
    assert spec.structure.kind == "causal" and spec.structure.param("offset") == 0
    assert spec.mask == (KV_IDX <= Q_IDX) & captured("c0", "b", KV_IDX).ne(0)
    assert site.k.meta["example_value"].shape[1] == 2   # K before repeat_kv
    assert spec.softmax_dtype == "float32"


def test_gemma2_soft_cap_alternating_sliding_window():
    cfg = dict(COMMON, num_hidden_layers=2, num_key_value_heads=2, head_dim=8, sliding_window=4,
               attn_logit_softcapping=50.0, final_logit_softcapping=30.0, query_pre_attn_scalar=8)
    m = _model(transformers.Gemma2Config, transformers.Gemma2ForCausalLM, **cfg)
    gm, ex = _run(m)
    sliding, full = _sites_checked(gm, ex)
    assert str(sliding.spec).startswith("causal window=4 padding softcap=50.0")
    assert str(full.spec).startswith("causal padding softcap=50.0")
    assert sliding.spec.structure.params == (("left", 3), ("right", 0))


def test_qwen2():
    m = _model(transformers.Qwen2Config, transformers.Qwen2ForCausalLM, num_hidden_layers=1,
               num_key_value_heads=2, **COMMON)
    (site,) = _sites_checked(*_run(m))
    assert site.spec.structure.kind == "causal" and site.spec.group == 2


def test_mistral_sliding_window_mqa():
    m = _model(transformers.MistralConfig, transformers.MistralForCausalLM, num_hidden_layers=1,
               num_key_value_heads=1, sliding_window=4, **COMMON)
    (site,) = _sites_checked(*_run(m))
    assert str(site.spec).startswith("causal window=4 padding")
    assert site.spec.group == 4


def test_gpt2():
    m = _model(transformers.GPT2Config, transformers.GPT2LMHeadModel, vocab_size=64, n_embd=32,
               n_layer=1, n_head=4, n_positions=64)
    (site,) = _sites_checked(*_run(m))
    assert site.spec.structure.kind == "causal" and site.spec.group == 1


@pytest.mark.skipif(not hasattr(transformers, "GptOssConfig"), reason="no gpt-oss in this transformers")
def test_gpt_oss_sinks_per_head():
    cfg = dict(COMMON, num_hidden_layers=2, num_key_value_heads=2, head_dim=8, num_local_experts=2,
               num_experts_per_tok=1, sliding_window=4, intermediate_size=32,
               layer_types=["sliding_attention", "full_attention"])
    m = _model(transformers.GptOssConfig, transformers.GptOssForCausalLM, **cfg)
    sliding, full = _sites_checked(*_run(m))
    assert "sinks" in str(sliding.spec) and "window=4" in str(sliding.spec)
    assert sliding.spec.sinks == captured("c1", H)
    assert full.spec.structure.kind == "causal"


# ---- hand-written variants and near misses --------------------------------------------------------

def _alibi_model(sign: float):
    slopes = torch.tensor([0.5, 0.25, 0.125, 0.0625])

    def f(q, k, v):
        i = torch.arange(q.shape[2])[:, None]
        j = torch.arange(k.shape[2])[None, :]
        bias = slopes.view(1, -1, 1, 1) * (sign * (j - i))
        s = q @ k.transpose(-2, -1) / 8.0 + bias
        s = s.masked_fill(j > i, float("-inf"))
        return torch.softmax(s, dim=-1) @ v

    return f


def test_alibi_written_out_is_recovered_and_the_wrong_sign_is_not_alibi():
    qkv = [torch.randn(1, 4, 6, 8) for _ in range(3)]
    (site,) = _sites_checked(*capture(_alibi_model(1.0), *qkv))
    assert "alibi" in str(site.spec) and site.spec.structure.kind == "causal"
    (wrong,) = _sites_checked(*capture(_alibi_model(-1.0), *qkv))
    assert "alibi" not in str(wrong.spec) and "bias" in str(wrong.spec)


def test_sink_on_the_wrong_axis_is_not_a_per_head_sink():
    sinks = torch.randn(6)

    def f(q, k, v):
        s = q @ k.transpose(-2, -1) * 0.3
        col = sinks.view(1, 1, -1, 1).expand(q.shape[0], q.shape[1], -1, -1)  # per query row
        comb = torch.cat([s, col], dim=-1)
        comb = comb - comb.max(dim=-1, keepdim=True).values
        return torch.softmax(comb, dim=-1)[..., :-1] @ v

    qkv = [torch.randn(1, 4, 6, 8) for _ in range(3)]
    (site,) = _sites_checked(*capture(f, *qkv))
    assert site.spec.sinks is not None and site.spec.sinks != captured("c0", H)


def test_mask_after_scale_with_finite_fill_stays_in_the_score_mod():
    """A finite fill scaled afterwards is not a mask of the spec (its value changes): the
    recovered spec keeps it inside the score modification, and still evaluates exactly."""
    def f(q, k, v):
        i = torch.arange(q.shape[2])[:, None]
        j = torch.arange(k.shape[2])[None, :]
        s = (q @ k.transpose(-2, -1)).masked_fill(j > i, -1e4) * 0.5
        return torch.softmax(s, dim=-1) @ v

    qkv = [torch.randn(1, 2, 5, 8) for _ in range(3)]
    (site,) = _sites_checked(*capture(f, *qkv))
    assert site.spec.mask is None and site.spec.structure.kind == "full"


def test_recover_returns_root_and_spec_or_reason():
    def f(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) * 0.125, dim=-1) @ v

    gm, ex = capture(f, *[torch.randn(1, 2, 4, 8) for _ in range(3)])
    ((root, spec),) = recover(gm, ex)
    assert isinstance(spec, AttentionSpec) and spec.score_mod == S and spec.scale == 0.125
    assert root.op == "call_function"


def test_explain_sites_prints_each_spec_or_the_reason():
    from pypm.rules.variants import explain_sites

    qkv = [torch.randn(1, 4, 6, 8) for _ in range(3)]
    text = explain_sites(*capture(_alibi_model(1.0), *qkv))
    assert text.startswith("%") and "attention-variant: causal alibi" in text

    def rounded(q, k, v):  # the scores divided with rounding: not a score operation of a spec
        s = torch.div(q @ k.transpose(-2, -1), 3.0, rounding_mode="floor")
        return torch.softmax(s, dim=-1) @ v

    text = explain_sites(*capture(rounded, *qkv))
    assert "not recovered" in text or text == "", text
