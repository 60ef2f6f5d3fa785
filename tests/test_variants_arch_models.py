"""Tiny transformers models for the attention-variant corpus (random weights, eager attention,
no downloads): each builder returns ``(model, kwargs)``, the model in eval mode and the keyword
inputs of one forward call (batch 2, length 8, with a padding mask where the model takes one)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

COMMON = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_attention_heads=4,
              max_position_embeddings=64)


def capture(fn, *args, **kwargs):
    """The one graph dynamo makes of ``fn`` (no grad), with its example inputs."""
    import warnings

    graphs = []

    def backend(gm, example_inputs):
        graphs.append((gm, example_inputs))
        return gm

    torch._dynamo.reset()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.compile(fn, backend=backend, fullgraph=True)(*args, **kwargs)
    assert len(graphs) == 1
    return graphs[0]


def node_values(gm, example_inputs):
    """The value of every node of ``gm`` on ``example_inputs``."""
    vals = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            vals[n] = out = super().run_node(n)
            return out

    with torch.no_grad():
        Recorder(gm).run(*example_inputs)
    return vals


def build(config_cls, model_cls, **cfg):
    config = config_cls(**cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return model_cls(config).eval()


def ids_and_mask(batch=2, length=8, pad=2, left=True):
    ids = torch.randint(0, 64, (batch, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(batch, length, dtype=torch.long)
    if pad:
        if left:
            mask[0, :pad] = 0
        else:
            mask[0, -pad:] = 0
    return ids, mask


def phi3():
    m = build(transformers.Phi3Config, transformers.Phi3ForCausalLM, num_hidden_layers=2,
              num_key_value_heads=2, pad_token_id=0, **COMMON)
    ids, mask = ids_and_mask()
    return m, dict(input_ids=ids, attention_mask=mask)


def gemma3():
    m = build(transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM, num_hidden_layers=2,
              num_key_value_heads=2, head_dim=8, sliding_window=4, query_pre_attn_scalar=8,
              layer_types=["sliding_attention", "full_attention"], **COMMON)
    ids, mask = ids_and_mask()
    return m, dict(input_ids=ids, attention_mask=mask)


def bert():
    m = build(transformers.BertConfig, transformers.BertModel, vocab_size=64, hidden_size=32,
              num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    ids, mask = ids_and_mask(left=False)  # an encoder's padding is on the right
    return m, dict(input_ids=ids, attention_mask=mask)


def vit():
    m = build(transformers.ViTConfig, transformers.ViTModel, hidden_size=32, num_hidden_layers=2,
              num_attention_heads=4, intermediate_size=64, image_size=16, patch_size=8, num_channels=3)
    return m, dict(pixel_values=torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))


def llama_left_padded():
    m = build(transformers.LlamaConfig, transformers.LlamaForCausalLM, num_hidden_layers=2,
              num_key_value_heads=2, **COMMON)
    ids, mask = ids_and_mask(pad=3)
    mask[1, :1] = 0  # both rows left-padded, by different amounts
    return m, dict(input_ids=ids, attention_mask=mask)


def bloom():
    m = build(transformers.BloomConfig, transformers.BloomForCausalLM, vocab_size=64, hidden_size=32,
              n_layer=2, n_head=4)
    ids, mask = ids_and_mask()
    return m, dict(input_ids=ids, attention_mask=mask)


def falcon():
    m = build(transformers.FalconConfig, transformers.FalconForCausalLM, vocab_size=64, hidden_size=32,
              num_hidden_layers=2, num_attention_heads=4, alibi=True, new_decoder_architecture=False,
              multi_query=False)
    ids, mask = ids_and_mask()
    return m, dict(input_ids=ids, attention_mask=mask)


def mpt():
    m = build(transformers.MptConfig, transformers.MptForCausalLM, vocab_size=64, d_model=32, n_layers=2,
              n_heads=4, max_seq_len=64)
    ids, mask = ids_and_mask()
    return m, dict(input_ids=ids, attention_mask=mask)


def t5():
    m = build(transformers.T5Config, transformers.T5Model, vocab_size=64, d_model=32, d_kv=8, d_ff=64,
              num_layers=2, num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8,
              relative_attention_max_distance=16, decoder_start_token_id=0)
    ids, mask = ids_and_mask(left=False)
    dec = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(1))
    return m, dict(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)


def whisper():
    m = build(transformers.WhisperConfig, transformers.WhisperModel, vocab_size=64, d_model=32,
              encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
              encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=8, max_source_positions=8,
              max_target_positions=16, pad_token_id=0, decoder_start_token_id=1, bos_token_id=1,
              eos_token_id=2)
    feats = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(0))
    dec = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(1))
    return m, dict(input_features=feats, decoder_input_ids=dec)


def output(out):
    """The tensor a model's output is compared by."""
    return out.logits if hasattr(out, "logits") else out.last_hidden_state
