"""Helpers shared by the kernel tests: run the Triton kernels on the CPU through the interpreter,
with poisoned (NaN-filled) outputs, and compare with float64 by relative Frobenius error.

Importing this module sets ``TRITON_INTERPRET=1`` (unless set already), so it must be imported
before anything imports triton's kernels; the kernel modules of pypm import them lazily.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

from pypm.kernels import settings, triton_available

#: Relative Frobenius error allowed against float64, per input dtype. The interpreter computes
#: fp32 dots exactly (no tf32), so fp32 is tight; fp16/bf16 carry their rounding of inputs,
#: of the probabilities fed to the second matmul and of the outputs.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 3e-3, torch.bfloat16: 2.5e-2}

needs_triton = pytest.mark.skipif(
    not triton_available() or os.environ.get("TRITON_INTERPRET", "0") in ("", "0"),
    reason="needs triton with TRITON_INTERPRET=1 to run the kernels on the CPU",
)


@pytest.fixture
def triton_on_cpu():
    """Route the ops to their Triton kernels (interpreted) and poison every output buffer."""
    saved = (settings.triton_on_cpu, settings.poison_outputs, settings.max_row_block)
    settings.triton_on_cpu, settings.poison_outputs = True, True
    yield settings
    settings.triton_on_cpu, settings.poison_outputs, settings.max_row_block = saved


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected).norm() / expected.norm().clamp_min(1e-300)).item()


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """Every element written (poisoned NaNs gone) and within the dtype's tolerance."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{name}: non-finite values (unwritten or overflowed elements)"
    err = rel_err(actual, expected)
    assert err < TOLERANCE[dtype], f"{name}: relative error {err:.2e} >= {TOLERANCE[dtype]:.0e} ({dtype})"
