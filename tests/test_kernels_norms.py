"""pypm::softmax, pypm::rms_norm and pypm::layer_norm: the Triton kernels (interpreted on the
CPU) and the reference path against float64, forward and every gradient; bad inputs; tracing."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from kernels_conftest import assert_close, needs_triton, triton_on_cpu  # noqa: F401  (fixture)

from pypm.errors import KernelInputError, PypmError
from pypm.kernels import layer_norm, rms_norm, softmax

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (leading shape, row length): ragged lengths; 15 rows share the interpreter's 8 backward programs
SHAPES = [((3, 5), 70), ((2,), 1000)]


def _inputs(lead, n, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*lead, n, generator=g) * 2 + 0.5).to(dtype).requires_grad_(True)
    w = torch.randn(n, generator=g).to(dtype).requires_grad_(True)
    b = torch.randn(n, generator=g).to(dtype).requires_grad_(True)
    grad = torch.randn(*lead, n, generator=g).to(dtype)
    return x, w, b, grad


OPS = {
    # name: (pypm call, float64 torch call, which of (w, b) it takes)
    "softmax": (lambda x, w, b: softmax(x, -1), lambda x, w, b: torch.softmax(x, -1), ()),
    "softmax-dim0": (lambda x, w, b: softmax(x, 0), lambda x, w, b: torch.softmax(x, 0), ()),  # short rows
    "rms_norm": (lambda x, w, b: rms_norm(x, [x.shape[-1]], w, 1e-6),
                 lambda x, w, b: F.rms_norm(x, [x.shape[-1]], w, 1e-6), ("w",)),
    "rms_norm-plain": (lambda x, w, b: rms_norm(x, [x.shape[-1]]),
                       lambda x, w, b: F.rms_norm(x, [x.shape[-1]], eps=torch.finfo(w.dtype).eps), ()),
    "layer_norm": (lambda x, w, b: layer_norm(x, [x.shape[-1]], w, b),
                   lambda x, w, b: F.layer_norm(x, [x.shape[-1]], w, b), ("w", "b")),
    "layer_norm-weight-only": (lambda x, w, b: layer_norm(x, [x.shape[-1]], w),
                               lambda x, w, b: F.layer_norm(x, [x.shape[-1]], w), ("w",)),
}


def check(name: str, lead, n: int, dtype: torch.dtype, seed: int) -> None:
    ours, theirs, params = OPS[name]
    x, w, b, grad = _inputs(lead, n, dtype, seed)
    y = ours(x, w, b)
    y.backward(grad)
    xd, wd, bd = (t.detach().double().requires_grad_(True) for t in (x, w, b))
    ref = theirs(xd, wd, bd)
    ref.backward(grad.double())
    assert y.dtype == dtype
    assert_close("y", y, ref, dtype)
    assert_close("dx", x.grad, xd.grad, dtype)
    for pname, t, r in (("w", w, wd), ("b", b, bd)):
        if pname in params:
            assert_close(f"d{pname}", t.grad, r.grad, dtype)
        else:
            assert t.grad is None


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("chunked", [False, True], ids=["one-tile", "chunked"])
def test_triton_kernels_match_float64(name, dtype, chunked, triton_on_cpu):  # noqa: F811
    if chunked:
        triton_on_cpu.max_row_block = 32  # rows of 70 and 1000 stream through 3 and 32 chunks
    for i, (lead, n) in enumerate(SHAPES[:1] if name == "softmax-dim0" else SHAPES):
        check(name, lead, n, dtype, seed=i + 10 * DTYPES.index(dtype))


@pytest.mark.parametrize("name", list(OPS))
def test_reference_path_matches_float64(name):
    check(name, (3, 5), 70, torch.float32, seed=3)


@needs_triton
def test_multi_dim_normalized_shape_and_strided_input(triton_on_cpu):  # noqa: F811
    x = torch.randn(6, 4, 9, 5).permute(0, 2, 1, 3)  # (6, 9, 4, 5), not contiguous
    w = torch.randn(4, 5)
    torch.testing.assert_close(layer_norm(x, [4, 5], w), F.layer_norm(x, [4, 5], w), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(softmax(x, 1), torch.softmax(x, 1), atol=1e-6, rtol=1e-5)


def test_without_triton_every_op_runs_its_reference(monkeypatch):
    common = sys.modules["pypm.kernels._common"]
    monkeypatch.setattr(common, "triton_available", lambda: False)
    x = torch.randn(4, 33)
    torch.testing.assert_close(rms_norm(x, [33]), F.rms_norm(x, [33]))
    torch.testing.assert_close(softmax(x), torch.softmax(x, -1))


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------

BAD = {
    "shape mismatch": (lambda: layer_norm(torch.randn(2, 8), [7]), "pypm::layer_norm", "normalized_shape"),
    "weight shape": (lambda: rms_norm(torch.randn(2, 8), [8], torch.randn(7)), "pypm::rms_norm", "weight"),
    "float64": (lambda: rms_norm(torch.randn(2, 8, dtype=torch.float64), [8]), "pypm::rms_norm", "float64"),
    "dtypes differ": (lambda: layer_norm(torch.randn(2, 8).half(), [8], torch.randn(8)), "pypm::layer_norm",
                      "share one dtype"),
    "softmax dim": (lambda: softmax(torch.randn(2, 8), 2), "pypm::softmax", "out of range"),
    "softmax int": (lambda: softmax(torch.ones(2, 8, dtype=torch.int64)), "pypm::softmax", "int64"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_inputs_raise_pypm_error(name):
    call, op, fragment = BAD[name]
    with pytest.raises(KernelInputError) as info:
        call()
    assert isinstance(info.value, PypmError)
    assert op in str(info.value) and fragment in str(info.value)


# --------------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------------


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(16))
        self.b = torch.nn.Parameter(torch.randn(16))

    def forward(self, x):
        return softmax(layer_norm(rms_norm(x, [16], self.w), [16], self.w, self.b), -1)


def test_symbolic_trace_records_the_custom_ops():
    gm = torch.fx.symbolic_trace(_Block())
    targets = {n.target for n in gm.graph.nodes if n.op == "call_function"}
    assert {torch.ops.pypm.rms_norm.default, torch.ops.pypm.layer_norm.default,
            torch.ops.pypm.softmax.default} <= targets


def test_torch_compile_fullgraph_forward_and_backward():
    block = _Block()
    x = torch.randn(3, 16, requires_grad=True)
    out = torch.compile(block, backend="aot_eager", fullgraph=True)(x)
    out.backward(torch.randn_like(out))
    ref_x = x.detach().clone().requires_grad_(True)
    ref_block = _Block()
    ref_block.load_state_dict(block.state_dict())
    expected = ref_block(ref_x)
    torch.testing.assert_close(out, expected)


_WITHOUT_TRITON = """
import builtins
real_import = builtins.__import__
def no_triton(name, *args, **kwargs):
    if name == "triton" or name.startswith("triton."):
        raise ImportError("triton is not installed")
    return real_import(name, *args, **kwargs)
builtins.__import__ = no_triton
import torch
import torch.nn.functional as F
from pypm.kernels import attention, layer_norm, rms_norm, softmax, triton_available
assert not triton_available()
q = torch.randn(1, 2, 5, 8, requires_grad=True)
out = attention(q, q, q, is_causal=True)
out.sum().backward()
assert torch.allclose(out, F.scaled_dot_product_attention(q, q, q, is_causal=True), atol=1e-5)
x = torch.randn(3, 8, requires_grad=True)
(softmax(x) + rms_norm(x, [8]) + layer_norm(x, [8])).sum().backward()
"""


def test_import_and_every_op_work_without_triton():
    import subprocess
    from pathlib import Path

    result = subprocess.run([sys.executable, "-c", _WITHOUT_TRITON], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
