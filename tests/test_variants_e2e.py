"""Attention variants end to end: transformers architectures from tiny configs (random weights,
``attn_implementation="eager"``, no downloads) compiled with ``backend=pypm.backend(inner=
"aot_eager")``, with "cpu" added to ``pypm.rules.FUSED_DEVICES`` so that the rules take the fused
path here (the CPU runs ``pypm::attention``'s reference evaluation of the specification). For each
model: every attention site is rewritten into one ``pypm::attention`` call (counted in the
reports), the recovered specification is the architecture's, the output equals eager's, and for
models with learned attention parameters one training step's gradients equal eager's."""

from __future__ import annotations

import warnings

import pytest
import torch
from pypm.rules import variants

import pypm
import pypm.rewrite
from pypm import rules as std_rules

transformers = pytest.importorskip("transformers")

COMMON = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_attention_heads=4,
              max_position_embeddings=64)
TOL = 1e-5


@pytest.fixture(autouse=True)
def fused_cpu(monkeypatch):
    monkeypatch.setattr(std_rules, "FUSED_DEVICES", {"cuda", "cpu"})
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _model(config_cls, model_cls, **cfg):
    config = config_cls(**cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return model_cls(config).eval()


def _inputs(batch=2, length=8, pad=2):
    ids = torch.randint(0, 64, (batch, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(batch, length, dtype=torch.long)
    if pad:
        mask[0, :pad] = 0  # left padding
    return ids, mask


def _compile(model, dynamic=False):
    """``(backend, compiled model)``; ``backend.notes`` collects what each attention-variant
    rewrite recovered (the note the rule leaves on its ``pypm::attention`` node)."""
    from torch._dynamo.backends.registry import lookup_backend

    notes: list[str] = []

    def inner(gm, example_inputs):
        notes.extend(variants.notes(gm))
        return lookup_backend("aot_eager")(gm, example_inputs)

    from pypm.rules import opt_in_rules

    be = pypm.backend(rules=pypm.standard_rules() + opt_in_rules(), inner=inner)
    be.notes = notes
    return be, torch.compile(model, backend=be, dynamic=dynamic)


def _rewrites(be):
    counts: dict[str, int] = {}
    for r in be.reports:
        for k, n in r.counts().items():
            counts[k] = counts.get(k, 0) + n
    return counts


def _same(got, want, what):
    assert got.shape == want.shape, what
    assert torch.equal(got.isnan(), want.isnan()), what
    err = (got - want).nan_to_num().abs().max().item()
    assert err <= TOL * max(1.0, want.nan_to_num().abs().max().item()), f"{what}: {err}"


def _specs(model, ids, mask):
    """The specifications of the eager graph's sites, in graph order (what the rule lifts)."""
    graphs = []

    def grab(gm, example_inputs):
        graphs.append((gm, example_inputs))
        return gm

    torch._dynamo.reset()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.compile(model, backend=grab)(input_ids=ids, attention_mask=mask)
    torch._dynamo.reset()
    return [s for gm, ex in graphs for s in variants.recover_sites(gm, ex)]


def check(model, layers, *, mask=True, dynamic=False, pad=2):
    """Compile, run, compare with eager; returns (backend, specs of the sites)."""
    ids, am = _inputs(pad=pad)
    kwargs = dict(input_ids=ids, attention_mask=am) if mask else dict(input_ids=ids)
    with torch.no_grad():
        want = model(**kwargs).logits
        be, compiled = _compile(model, dynamic)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = compiled(**kwargs).logits
    _same(got, want, "logits")
    for r in be.reports:  # every graph dynamo made (a recompile under dynamic=True, say)
        c = r.counts()
        assert c.get("attention-variant", 0) + c.get("attention", 0) == layers, str(r)
    return be, _rewrites(be)


def _sites(be):
    return [n.removeprefix("attention-variant: ") for n in be.notes]


def test_llama_gqa_with_left_padding():
    m = _model(transformers.LlamaConfig, transformers.LlamaForCausalLM, num_hidden_layers=2,
               num_key_value_heads=2, **COMMON)
    be, _ = check(m, 2)
    notes = _sites(be)  # the attention rule matches LLaMA too and emits the variant's call
    assert notes == ["causal padding fill=add:-3.40282e+38 gqa=2 scale=0.353553"] * 2, notes
    (spec, *_), = [[s.spec for s in _specs(m, *_inputs())]]
    assert spec.group == 2 and spec.structure.kind == "causal" and spec.structure.data == ("padding",)


def test_llama_dynamic_shapes():
    m = _model(transformers.LlamaConfig, transformers.LlamaForCausalLM, num_hidden_layers=1,
               num_key_value_heads=2, **COMMON)
    be, _ = check(m, 1, dynamic=True)
    assert len(_sites(be)) == len(be.reports)
    # under dynamic=True dynamo makes the scale a symbolic float: it is read as a captured scalar
    assert all(n.startswith("causal padding") and "gqa=2" in n for n in _sites(be)), _sites(be)


def test_qwen2():
    m = _model(transformers.Qwen2Config, transformers.Qwen2ForCausalLM, num_hidden_layers=2,
               num_key_value_heads=2, **COMMON)
    be, _ = check(m, 2)
    assert len(_sites(be)) == 2
    assert all(n.startswith("causal padding") and "gqa=2" in n for n in _sites(be))


def test_mistral_sliding_window():
    m = _model(transformers.MistralConfig, transformers.MistralForCausalLM, num_hidden_layers=2,
               num_key_value_heads=1, sliding_window=4, **COMMON)
    be, _ = check(m, 2)
    assert len(_sites(be)) == 2
    assert all(n.startswith("causal window=4 padding") and "gqa=4" in n for n in _sites(be)), _sites(be)


def test_gemma2_soft_cap_and_alternating_window():
    cfg = dict(COMMON, num_hidden_layers=2, num_key_value_heads=2, head_dim=8, sliding_window=4,
               attn_logit_softcapping=50.0, final_logit_softcapping=30.0, query_pre_attn_scalar=8)
    m = _model(transformers.Gemma2Config, transformers.Gemma2ForCausalLM, **cfg)
    be, _ = check(m, 2)
    assert len(_sites(be)) == 2
    notes = sorted(_sites(be))
    assert notes[0].startswith("causal padding softcap=50.0"), notes
    assert notes[1].startswith("causal window=4 padding softcap=50.0"), notes


def test_gpt2_left_padded_and_dynamic():
    m = _model(transformers.GPT2Config, transformers.GPT2LMHeadModel, vocab_size=64, n_embd=32,
               n_layer=2, n_head=4, n_positions=64)
    be, _ = check(m, 2)
    assert len(_sites(be)) == 2
    assert all(n.startswith("causal padding") for n in _sites(be)), _sites(be)
    torch._dynamo.reset()
    be, _ = check(m, 2, dynamic=True)
    assert len(_sites(be)) == 2 * len(be.reports)


def test_plain_attention_is_left_to_the_attention_rule():
    """Plain causal attention (-inf fill, no padding, no groups, no score modification) is the
    attention rule's (tried first); the variant rule would decline it, with that reason."""
    def f(q, k, v):
        n = q.shape[2]
        s = (q @ k.transpose(-2, -1) * 0.25).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(),
                                                         float("-inf"))
        return torch.softmax(s, dim=-1) @ v

    qkv = [torch.randn(1, 2, 8, 16) for _ in range(3)]
    be, compiled = _compile(f)
    _same(compiled(*qkv), f(*qkv), "output")
    assert _rewrites(be) == {"attention": 1}, "\n".join(str(r) for r in be.reports)
    graphs = []
    torch._dynamo.reset()
    torch.compile(f, backend=lambda gm, ex: graphs.append(gm) or gm)(*qkv)
    out = next(n for n in graphs[0].graph.nodes if n.op == "output").args[0]
    root = out[0] if isinstance(out, (tuple, list)) else out
    with pytest.raises(pypm.rewrite.Decline, match=r"^plain attention \(.*\): left to the attention rule$"):
        variants.exact_site(root)


def _gpt_oss():
    cfg = dict(COMMON, num_hidden_layers=2, num_key_value_heads=2, head_dim=8, num_local_experts=2,
               num_experts_per_tok=1, sliding_window=4, intermediate_size=32,
               layer_types=["sliding_attention", "full_attention"])
    return _model(transformers.GptOssConfig, transformers.GptOssForCausalLM, **cfg)


def _train_step_grads(model, fn, **kwargs):
    params = dict(model.named_parameters())
    model.zero_grad(set_to_none=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fn(**kwargs)
    loss = out.loss if hasattr(out, "loss") else out.float().square().mean()
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in params.items() if p.grad is not None}


def _same_grads(got, want):
    (gl, g), (wl, w) = got, want
    _same(gl, wl, "loss")
    assert set(g) == set(w)
    for k in w:
        _same(g[k], w[k], f"grad of {k}")


@pytest.mark.skipif(not hasattr(transformers, "GptOssConfig"), reason="no gpt-oss in this transformers")
def test_gpt_oss_sinks_forward_and_one_training_step():
    m = _gpt_oss()
    be, _ = check(m, 2)
    assert len(_sites(be)) == 2
    notes = sorted(_sites(be))
    assert "sinks" in notes[0] and "sinks" in notes[1] and any("window=4" in n for n in notes), notes

    # One training step: gradients equal eager's, the sink logits' included. Where the driver
    # checks that the replacement reads every input of the region that needs grad, the sink
    # sites are left alone in training graphs (a known limit, with its reason in the report):
    # the pattern binds the logits inside cat([logits, sinks]) as a value (patterns cannot take
    # tuples apart), so they are an input of the region that the replacement does not read.
    torch._dynamo.reset()
    ids, am = _inputs()
    m.train()
    want = _train_step_grads(m, m, input_ids=ids, attention_mask=am, labels=ids)
    be, compiled = _compile(m)
    got = _train_step_grads(m, compiled, input_ids=ids, attention_mask=am, labels=ids)
    _same_grads(got, want)
    assert any(k.endswith("sinks") for k in want[1])
    if len(_sites(be)) != 2:
        reasons = [x.reason for r in be.reports for x in r.skipped if x.rule == "attention-variant"]
        assert reasons and all("requires grad, but the replacement does not read it" in x
                               for x in reasons), reasons


class BiasedGQA(torch.nn.Module):
    """Grouped-query attention with a learned relative-position bias (one per head and distance),
    a sliding window and left padding, written out as eager code writes it."""

    def __init__(self, heads=4, kv_heads=2, dim=8, length=8, window=3):
        super().__init__()
        self.heads, self.kv_heads, self.dim, self.window = heads, kv_heads, dim, window
        self.qkv = torch.nn.Linear(16, (heads + 2 * kv_heads) * dim)
        self.rel = torch.nn.Parameter(torch.randn(heads, 2 * length - 1) * 0.1)
        self.length = length

    def forward(self, x, pad):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).split([self.heads * self.dim, self.kv_heads * self.dim,
                                     self.kv_heads * self.dim], -1)
        q = q.view(b, n, self.heads, self.dim).transpose(1, 2)
        k = k.view(b, n, self.kv_heads, self.dim).transpose(1, 2)
        v = v.view(b, n, self.kv_heads, self.dim).transpose(1, 2)
        g = self.heads // self.kv_heads
        k = k[:, :, None].expand(b, self.kv_heads, g, n, self.dim).reshape(b, self.heads, n, self.dim)
        v = v[:, :, None].expand(b, self.kv_heads, g, n, self.dim).reshape(b, self.heads, n, self.dim)
        i = torch.arange(n)[:, None]
        j = torch.arange(n)[None, :]
        bias = self.rel[:, (j - i + self.length - 1)]          # (H, n, n)
        s = q @ k.transpose(-2, -1) * self.dim ** -0.5 + bias
        keep = (j <= i) & (j > i - self.window) & pad[:, None, None, :].bool()
        s = s.masked_fill(~keep, float("-inf"))
        return torch.softmax(s, dim=-1) @ v


def test_learned_relative_bias_training_step():
    torch.manual_seed(0)
    m = BiasedGQA()
    x = torch.randn(2, 8, 16)
    pad = torch.ones(2, 8, dtype=torch.long)
    pad[0, :2] = 0
    want = _train_step_grads(m, m, x=x, pad=pad)
    be, compiled = _compile(m)
    got = _train_step_grads(m, compiled, x=x, pad=pad)
    assert sum(_rewrites(be).get(r, 0) for r in ("attention", "attention-variant")) == 1
    (note,) = _sites(be)
    assert note.startswith("causal window=3 padding bias gqa=2"), note
    assert m.rel.grad is not None
    _same_grads(got, want)
