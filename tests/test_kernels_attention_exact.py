"""pypm::attention computes what softmax attention written out computes at its edges, on the
Triton kernels (interpreted on the CPU) and on the reference path: finite fills, fully masked
rows (NaN with ``empty_rows_nan``, in the gradients too), rows of huge logits, NaN inputs, and the
gradient of an additive mask."""

from __future__ import annotations

import pytest
import torch
from kernels_conftest import needs_triton, triton_on_cpu  # noqa: F401

from pypm.kernels import attention, settings

PATHS = ["reference", pytest.param("triton", marks=needs_triton)]


@pytest.fixture(params=PATHS)
def path(request):
    saved = (settings.triton_on_cpu, settings.poison_outputs)
    settings.triton_on_cpu = settings.poison_outputs = request.param == "triton"
    yield request.param
    settings.triton_on_cpu, settings.poison_outputs = saved


def written_out(q, k, v, scale, mask=None, fill=float("-inf"), bias=None):
    s = q @ k.transpose(-2, -1) * scale
    if mask is not None:
        s = s.masked_fill(~mask, fill)
    if bias is not None:
        s = s + bias
    return torch.softmax(s, -1) @ v


def inputs(seed=0, s=20, d=16, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 2, s, d, generator=g) + shift for _ in range(3)]


def compare(fn_ours, fn_ref, tensors, tol=1e-4):
    """Outputs and every gradient: same NaN/inf positions, finite values within tol."""
    a = [t.clone().requires_grad_() for t in tensors]
    b = [t.clone().requires_grad_() for t in tensors]
    out_a, out_b = fn_ours(*a), fn_ref(*b)
    proj = torch.randn(out_b.shape, generator=torch.Generator().manual_seed(9))
    (out_a * proj).sum().backward()
    (out_b * proj).sum().backward()
    pairs = [("out", out_a, out_b)] + [(f"grad{i}", x.grad, y.grad) for i, (x, y) in enumerate(zip(a, b))]
    for name, x, y in pairs:
        assert torch.equal(torch.isnan(x), torch.isnan(y)), f"{name}: NaN positions differ"
        fin = torch.isfinite(y)
        torch.testing.assert_close(x[fin], y[fin], rtol=tol, atol=tol, msg=name)


def test_fully_masked_rows_are_nan_with_empty_rows_nan(path):
    keep = torch.rand(20, 20, generator=torch.Generator().manual_seed(1)) > 0.3
    keep[3] = False
    compare(lambda q, k, v: attention(q, k, v, scale=0.3, attn_mask=keep, empty_rows_nan=True),
            lambda q, k, v: written_out(q, k, v, 0.3, keep), inputs())


def test_a_finite_fill_is_a_score_not_a_mask(path):
    keep = torch.ones(20, 20, dtype=torch.bool).tril()
    keep[5] = False  # a fully masked row: uniform over the keys, as written out
    q, k, v = inputs(shift=0.0)
    q = q * 0.02 + 50.0
    k = k * 0.02 - 75.0  # scores near -3e4, below the fill
    compare(lambda q, k, v: attention(q, k, v, scale=1.0, attn_mask=keep, mask_fill=-1e4),
            lambda q, k, v: written_out(q, k, v, 1.0, keep, -1e4), [q, k, v], tol=2e-3)


def test_finfo_min_fill_averages_a_fully_masked_row(path):
    keep = torch.rand(20, 20, generator=torch.Generator().manual_seed(2)) > 0.5
    keep[7] = False
    fill = torch.finfo(torch.float32).min
    compare(lambda q, k, v: attention(q, k, v, scale=0.3, attn_mask=keep, mask_fill=fill),
            lambda q, k, v: written_out(q, k, v, 0.3, keep, fill), inputs())


def test_rows_of_huge_logits_are_normalised(path):
    bias = torch.zeros(1, 1, 20, 20)
    bias[..., 4, :] = -1e9  # every key of row 4 at -1e9: uniform in eager
    bias[..., :, 7] = -1e9
    compare(lambda q, k, v: attention(q, k, v, scale=0.3, attn_mask=bias),
            lambda q, k, v: written_out(q, k, v, 0.3, bias=bias), inputs())


def test_a_nan_query_row_gives_a_nan_output_row(path):
    q, k, v = inputs()
    q[0, 1, 4] = float("nan")
    out = attention(q, k, v, scale=0.3)
    assert torch.equal(torch.isnan(out), torch.isnan(written_out(q, k, v, 0.3)))


def test_an_additive_mask_that_requires_grad_gets_its_gradient(path):
    q, k, v = inputs()
    bias = torch.randn(1, 2, 1, 20, generator=torch.Generator().manual_seed(4))
    compare(lambda q, k, v, b: attention(q, k, v, scale=0.3, attn_mask=b),
            lambda q, k, v, b: written_out(q, k, v, 0.3, bias=b), [q, k, v, bias])
