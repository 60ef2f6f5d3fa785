"""pypm::attention: the Triton kernels (interpreted on the CPU) and the reference path against
float64, forward and backward, for every feature the op promises; bad inputs; tracing."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from kernels_conftest import assert_close, needs_triton, triton_on_cpu  # noqa: F401  (fixture)

from pypm.errors import KernelInputError, PypmError
from pypm.kernels import attention

attention_module = sys.modules["pypm.kernels.attention"]  # the name pypm.kernels.attention is the function


@dataclass(frozen=True)
class Case:
    """One attention problem. Lengths are ragged on purpose: the interpreter's tiles are 16."""

    dtype: torch.dtype
    b: int = 1
    hq: int = 2
    hkv: int = 2
    sq: int = 37
    sk: int = 50
    d: int = 32
    causal: bool = False
    mask: str | None = None  # None, "bool" (Sq, Sk) with an all-False row, "add_heads", "add_full"
    layout: str = "bshd"  # "bshd": stored (B, S, H, D) and permuted, as graphs produce
    scale: float | None = None


CASES = {
    "fp16-d32": Case(torch.float16),
    "bf16-d64-causal": Case(torch.bfloat16, sq=45, sk=45, d=64, causal=True, layout="bhsd"),
    "fp32-d96-padded-scale": Case(torch.float32, d=96, scale=0.3),
    "fp32-d40-padded": Case(torch.float32, sq=20, sk=21, d=40, layout="bhsd"),
    "bf16-d128-causal-decode": Case(torch.bfloat16, sq=20, sk=47, d=128, causal=True),
    "fp16-d256-causal": Case(torch.float16, sq=19, sk=19, d=256, causal=True),
    "fp16-gqa-causal": Case(torch.float16, b=2, hq=4, hkv=2, sq=33, sk=33, causal=True),
    "bf16-mqa-causal-sq>sk": Case(torch.bfloat16, hq=4, hkv=1, sq=50, sk=30, causal=True),
    "fp32-bool-mask": Case(torch.float32, mask="bool"),
    "bf16-additive-mask-heads": Case(torch.bfloat16, hq=4, hkv=2, mask="add_heads", causal=True),
    "fp16-additive-mask-full": Case(torch.float16, b=2, mask="add_full"),
    "fp16-single-query": Case(torch.float16, sq=1, sk=33, d=64, causal=True),
}


def make_inputs(c: Case, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def tensor(h: int, s: int) -> torch.Tensor:
        if c.layout == "bshd":
            t = torch.randn(c.b, s, h, c.d, generator=g).to(c.dtype).transpose(1, 2)
        else:
            t = torch.randn(c.b, h, s, c.d, generator=g).to(c.dtype)
        return t.requires_grad_(True)

    q, k, v = tensor(c.hq, c.sq), tensor(c.hkv, c.sk), tensor(c.hkv, c.sk)
    mask = None
    if c.mask == "bool":
        mask = torch.rand(c.sq, c.sk, generator=g) > 0.3
        mask[3] = False  # a query that sees nothing: output 0, no gradient
    elif c.mask == "add_heads":
        mask = torch.randn(1, c.hq, 1, c.sk, generator=g).to(c.dtype)
    elif c.mask == "add_full":
        mask = torch.randn(c.b, c.hq, c.sq, c.sk, generator=g).to(c.dtype)
        mask[..., :, 5] = float("-inf")
    return q, k, v, mask


def reference(q, k, v, mask, scale, causal):
    """float64 attention spelled out: repeated k/v heads, bottom-right causal, empty rows -> 0."""
    q, k, v = q.double(), k.double(), v.double()
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    s = q @ k.transpose(-1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.double()
    if causal:
        sq, sk = s.shape[-2:]
        s = s.masked_fill(torch.ones(sq, sk, dtype=torch.bool).tril(sk - sq).logical_not(), float("-inf"))
    return torch.softmax(s, -1).nan_to_num(0.0) @ v


def check_case(c: Case, seed: int) -> None:
    q, k, v, mask = make_inputs(c, seed)
    out = attention(q, k, v, scale=c.scale, is_causal=c.causal, attn_mask=mask)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1)).to(c.dtype)
    out.backward(grad)
    ref_in = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    ref = reference(*ref_in, mask, c.scale, c.causal)
    ref.backward(grad.double())
    assert_close("out", out, ref, c.dtype)
    for name, t, r in zip(("dq", "dk", "dv"), (q, k, v), ref_in):
        assert t.grad.shape == t.shape
        assert_close(name, t.grad, r.grad, c.dtype)


@needs_triton
@pytest.mark.parametrize("name", list(CASES))
def test_triton_kernels_match_float64_forward_and_backward(name, triton_on_cpu):  # noqa: F811
    check_case(CASES[name], seed=hash(name) % 1000)


@pytest.mark.parametrize("name", ["fp32-bool-mask", "bf16-mqa-causal-sq>sk", "fp32-d96-padded-scale"])
def test_reference_path_matches_float64(name):
    check_case(CASES[name], seed=7)


@needs_triton
def test_output_is_laid_out_bshd_and_stats_are_per_row(triton_on_cpu):  # noqa: F811
    q, k, v, _ = make_inputs(Case(torch.float16, layout="bhsd"))
    out, stats = torch.ops.pypm.attention(q, k, v, None, None, False, [])
    b, h, s, d = q.shape
    assert out.shape == (b, h, s, d) and out.transpose(1, 2).is_contiguous()
    assert stats.shape == (2, b, h, s) and stats.dtype == torch.float32  # O(B·H·S) extra memory


@needs_triton
def test_empty_lengths_give_empty_or_zero_outputs(triton_on_cpu):  # noqa: F811
    q = torch.randn(1, 2, 0, 16)
    k = torch.randn(1, 2, 5, 16)
    assert attention(q, k, k).shape == (1, 2, 0, 16)
    out = attention(k, q, q)  # no keys at all: every row sees nothing
    assert out.shape == (1, 2, 5, 16) and (out == 0).all()


def test_causal_equals_torch_when_lengths_match():
    q, k, v, _ = make_inputs(Case(torch.float32, sq=24, sk=24, layout="bhsd"))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(attention(q, k, v, is_causal=True), expected, atol=1e-5, rtol=1e-5)


def test_gqa_matches_torch_enable_gqa():
    q, k, v, _ = make_inputs(Case(torch.float32, hq=6, hkv=2, layout="bhsd"))
    expected = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    torch.testing.assert_close(attention(q, k, v), expected, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Bad inputs: a clear PypmError before any launch
# --------------------------------------------------------------------------------------------


def _t(*shape, dtype=torch.float16):
    return torch.randn(*shape).to(dtype)


BAD = {
    "head dims differ": ((_t(1, 2, 8, 32), _t(1, 2, 8, 64), _t(1, 2, 8, 64)), {}, "head dims differ"),
    "heads not divisible": ((_t(1, 3, 8, 32), _t(1, 2, 8, 32), _t(1, 2, 8, 32)), {}, "must divide"),
    "float64": ((_t(1, 2, 8, 32, dtype=torch.float64),) * 3, {}, "float64"),
    "int": ((torch.ones(1, 2, 8, 32, dtype=torch.int32),) * 3, {}, "int32"),
    "dtypes differ": ((_t(1, 2, 8, 32), _t(1, 2, 8, 32, dtype=torch.bfloat16), _t(1, 2, 8, 32)), {},
                      "share one dtype"),
    "3-D": ((_t(2, 8, 32),) * 3, {}, "must be 4-D"),
    "mask shape": ((_t(1, 2, 8, 32),) * 3, {"attn_mask": torch.ones(8, 7, dtype=torch.bool)},
                   "does not broadcast"),
    "mask dtype": ((_t(1, 2, 8, 32),) * 3, {"attn_mask": torch.ones(8, 8, dtype=torch.int64)},
                   "bool or floating"),
    "head dim too big": ((_t(1, 1, 4, 320),) * 3, {}, "larger than"),
    "gqa not enabled": ((_t(1, 4, 8, 32), _t(1, 2, 8, 32), _t(1, 2, 8, 32)), {"enable_gqa": False},
                        "enable_gqa"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_inputs_raise_pypm_error_before_launch(name, monkeypatch):
    args, kwargs, fragment = BAD[name]

    def no_launch(*a, **k):
        raise AssertionError("kernel launched on bad input")
    monkeypatch.setattr(attention_module, "_launch_forward", no_launch)
    monkeypatch.setattr(attention_module, "_reference_forward", no_launch)
    with pytest.raises(KernelInputError) as info:
        attention(*args, **kwargs)
    assert isinstance(info.value, PypmError)
    assert "pypm::attention" in str(info.value) and fragment in str(info.value)


# --------------------------------------------------------------------------------------------
# Tracing: the op (with its fake implementation) is what fx and dynamo see
# --------------------------------------------------------------------------------------------


class _Block(torch.nn.Module):
    def forward(self, q, k, v):
        return attention(q, k, v, is_causal=True).transpose(1, 2).flatten(2)


def test_symbolic_trace_records_the_custom_op():
    gm = torch.fx.symbolic_trace(_Block())
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.pypm.attention.default in targets
    q, k, v, _ = make_inputs(Case(torch.float32, layout="bhsd"))
    torch.testing.assert_close(gm(q, k, v), _Block()(q, k, v))


def test_fake_tensors_give_the_real_shapes_and_strides():
    from torch._subclasses.fake_tensor import FakeTensorMode

    q, k, v, _ = make_inputs(Case(torch.float16, hq=4, hkv=2))
    real_out, real_stats = torch.ops.pypm.attention(q, k, v, None, None, True, [])
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fq, fk, fv = (mode.from_tensor(t.detach()) for t in (q, k, v))
        out, stats = torch.ops.pypm.attention(fq, fk, fv, None, None, True, [])
    assert out.shape == real_out.shape and out.stride() == real_out.stride()
    assert stats.shape == real_stats.shape


def test_torch_compile_fullgraph_forward_and_backward():
    q, k, v, _ = make_inputs(Case(torch.float32, sq=16, sk=16, layout="bhsd"))
    compiled = torch.compile(_Block(), backend="aot_eager", fullgraph=True)
    out = compiled(q, k, v)
    out.sum().backward()
    ref_in = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    expected = _Block()(*ref_in)
    expected.sum().backward()
    torch.testing.assert_close(out, expected)
    for t, r in zip((q, k, v), ref_in):
        torch.testing.assert_close(t.grad, r.grad)
