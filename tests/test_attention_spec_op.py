"""``pypm::attention`` given an attention specification (``pypm.ops.attention_spec``): the
reference path against the written-out semantics in float64 (outputs, NaN rows, gradients of q,
k, v and of every captured tensor), the fake implementation, input errors, and the op under
``torch.compile``."""

from __future__ import annotations

import pytest
import torch

from pypm.errors import KernelInputError
from pypm.kernels import attention_spec
from pypm.kernels.spec import KV_IDX, Q_IDX, AttentionSpec, B, H, S, call, captured
from pypm.kernels.spec_attention import lookup, register_spec
from pypm.kernels.spec_eval import evaluate


def _inputs(b=2, hq=4, hkv=2, sq=6, sk=6, d=8, dv=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, hq, sq, d, generator=g)
    k = torch.randn(b, hkv, sk, d, generator=g)
    v = torch.randn(b, hkv, sk, dv, generator=g)
    return q, k, v


SOFTCAP = call("mul", call("tanh", call("div", S, 5.0)), 5.0)
WINDOW = (KV_IDX <= Q_IDX) & (KV_IDX > Q_IDX - 3)
SPECS = {
    "window-bias-sinks-gqa": (
        AttentionSpec(group=2, scale=0.3, score_mod=S + captured("bias", H, Q_IDX, KV_IDX),
                      mask=WINDOW & captured("pad", B, KV_IDX).ne(0), sinks=captured("sink", H)),
        lambda: {"bias": torch.randn(4, 6, 6) * 0.5, "pad": torch.tensor([[0, 1, 1, 1, 1, 1]] * 2),
                 "sink": torch.randn(4)}),
    "softcap-finite-fill-add": (
        AttentionSpec(group=2, scale=0.5, score_mod=SOFTCAP, mask=KV_IDX <= Q_IDX, fill=-1e4,
                      mask_mode="add"),
        dict),
    "empty-rows-nan": (  # every key of the first rows masked with -inf: NaN, as softmax makes it
        AttentionSpec(group=2, mask=(KV_IDX <= Q_IDX) & captured("pad", B, KV_IDX).ne(0)),
        lambda: {"pad": torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])}),
}


def _same(got, want, what, tol=1e-5):
    assert got.shape == want.shape, what
    assert torch.equal(got.isnan(), want.isnan()), what
    assert torch.allclose(got.double().nan_to_num(), want.double().nan_to_num(), atol=tol, rtol=tol), what


@pytest.mark.parametrize("name", list(SPECS))
def test_forward_and_gradients_match_the_written_out_semantics(name):
    spec, make = SPECS[name]
    q, k, v = _inputs()
    cap = make()
    for t in (q, k, v, *(c for c in cap.values() if c.is_floating_point())):
        t.requires_grad_()
    out = attention_spec(q, k, v, spec, cap)
    want = evaluate(spec, q.double(), k.double(), v.double(),
                    {n: c.double() if c.is_floating_point() else c for n, c in cap.items()})
    _same(out, want, "output")
    if name == "empty-rows-nan":
        assert out[0, :, :2].isnan().all() and not out[1].isnan().any()
        return
    leaves = [t for t in (q, k, v, *cap.values()) if t.requires_grad]
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, leaves, g)
    ref = torch.autograd.grad(want, leaves, g.double())
    for i, (a, b) in enumerate(zip(got, ref)):
        _same(a, b, f"grad {i}", tol=1e-4)


def test_under_compile_static_and_dynamic():
    spec, make = SPECS["window-bias-sinks-gqa"]
    q, k, v = _inputs()
    cap = make()
    want = attention_spec(q, k, v, spec, cap)
    key = register_spec(spec)  # as a rewrite emits it: the key is a constant of the graph
    tensors = [cap[n] for n in spec.captured]

    def f(q, k, v, c):
        return torch.ops.pypm.attention(q, k, v, None, None, False, c, key)[0]

    for dynamic in (False, True):
        torch._dynamo.reset()
        g = torch.compile(f, backend="aot_eager", dynamic=dynamic, fullgraph=True)
        _same(g(q, k, v, tensors), want, f"dynamic={dynamic}")
    torch._dynamo.reset()


def test_fake_implementation_has_q_shape_with_v_head_dim():
    from torch._subclasses.fake_tensor import FakeTensorMode

    spec = AttentionSpec(group=2, mask=KV_IDX <= Q_IDX)
    q, k, v = _inputs(dv=5)
    with FakeTensorMode(allow_non_fake_inputs=True):
        out = attention_spec(q, k, v, spec)
    assert out.shape == (2, 4, 6, 5) and out.dtype == q.dtype
    real = attention_spec(q, k, v, spec)
    assert real.shape == (2, 4, 6, 5)


def test_specs_are_registered_by_their_canonical_digest_and_inputs_are_checked():
    spec = AttentionSpec(sinks=captured("mine", H))
    key = register_spec(spec)
    assert key == spec.digest() and lookup(key) == spec.canonical()
    q, k, v = _inputs(hkv=4)
    with pytest.raises(KernelInputError, match="captured tensors"):
        attention_spec(q, k, v, spec, [])
    with pytest.raises(KernelInputError, match="not groups of"):
        attention_spec(*_inputs(hkv=2), spec, [torch.zeros(4)])
    with pytest.raises(KernelInputError, match="no attention specification is registered"):
        torch.ops.pypm.attention(q, k, v, None, None, False, [], "0" * 64)


def _sdpa_launch(q, k, v, attn_mask, scale, is_causal, mask_fill, empty_rows_nan, traced=True):
    """A stand-in for the flash kernel's launcher (the same contract: K/V heads grouped, a float
    mask added to the scaled scores), so that the CUDA routing is checked on the CPU."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    s = (q.double() @ k.double().transpose(-2, -1)) * scale
    if attn_mask is not None:
        s = s + attn_mask.double()
    return torch.softmax(s, -1).to(q.dtype) @ v, None


@pytest.mark.parametrize("mask", [None, "causal-finfo-min"])
def test_additive_score_mods_take_the_flash_kernel_with_one_dense_bias(mask):
    """A score modification that only adds (a materialised mask tensor, a relative bias, ALiBi),
    alone or with an additive mask, goes to the flash kernel as one float32 bias: the same
    result as the specification's reference evaluation."""
    from pypm.kernels import spec_attention as sa

    q, k, v = _inputs(sq=6, sk=6)
    g = torch.Generator().manual_seed(3)
    bias = torch.randn(2, 1, 6, 6, generator=g)
    slopes = torch.rand(4, generator=g)
    score = S + captured("bias", B, 0, Q_IDX, KV_IDX) + captured("slopes", H) * (KV_IDX - Q_IDX)
    extra = {} if mask is None else dict(mask=KV_IDX <= Q_IDX, mask_mode="add",
                                         fill=torch.finfo(torch.float32).min)
    spec = AttentionSpec(group=2, scale=0.4, score_mod=score, **extra)
    cap = {"bias": bias, "slopes": slopes}
    calls = []

    def launch(*args, **kwargs):
        calls.append(args)
        assert kwargs == {"traced": False}  # the opaque op launches the kernel directly
        return _sdpa_launch(*args)

    got = sa._cuda_forward(spec, q, k, v, cap, launch)
    want = evaluate(spec, q, k, v, cap, dtype=torch.float64)
    torch.testing.assert_close(got.double(), want.double(), rtol=1e-5, atol=1e-5)
    (args,) = calls
    assert args[3].dtype == torch.float32 and args[5] is False  # one dense bias, no causal flag


def test_a_bias_read_at_its_own_indices_is_not_materialised():
    """A materialised mask expanded over the heads (stride 0), read as ``m[b, h, q_idx, kv_idx]``,
    goes to the kernel at its own size, (B, 1, Sq, Sk), not (B, H, Sq, Sk)."""
    from pypm.kernels import spec_attention as sa

    q, k, v = _inputs(sq=6, sk=6)
    m = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(4)).expand(2, 4, 6, 6)
    spec = AttentionSpec(group=2, scale=0.4, score_mod=S + captured("m", B, H, Q_IDX, KV_IDX))
    calls = []

    def launch(*args, **kwargs):
        calls.append(args)
        assert kwargs == {"traced": False}  # the opaque op launches the kernel directly
        return _sdpa_launch(*args)

    got = sa._cuda_forward(spec, q, k, v, {"m": m}, launch)
    torch.testing.assert_close(got.double(), evaluate(spec, q, k, v, {"m": m}, dtype=torch.float64).double(),
                               rtol=1e-5, atol=1e-5)
    assert calls[0][3].shape == (2, 1, 6, 6)
