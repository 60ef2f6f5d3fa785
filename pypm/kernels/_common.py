"""What every kernel module shares: finding Triton, choosing the Triton or the reference path,
registering an op with ``torch.library``, allocating outputs, and checking inputs.

Triton is imported lazily and optionally: ``import pypm`` works without it, and then every op
runs its reference implementation (CPU) and the CUDA path reports itself unavailable.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from pypm.errors import KernelInputError

#: dtypes every kernel accepts; fp32 goes through tf32 dots in attention.
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@functools.cache
def triton_available() -> bool:
    """True when Triton can be imported (it is optional: CPU-only installs run the references)."""
    try:
        import triton
        import triton.language  # noqa: F401
    except ImportError:
        return False
    return True


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


class _Settings:
    """Process-wide switches. ``triton_on_cpu`` makes the ops run their Triton kernels on CPU
    tensors (only meaningful under ``TRITON_INTERPRET=1``), so tests cover the kernels through
    the registered ops, autograd included. ``poison_outputs`` fills every freshly allocated
    output with NaN so a test can prove that each element was written."""

    triton_on_cpu: bool = False
    poison_outputs: bool = False
    # Cap on the tile of the row kernels (softmax, norms), below each kernel's own cap (what
    # fits in registers); longer rows are streamed in chunks. Tests lower it to exercise the
    # chunked path at small sizes.
    max_row_block: int = 1 << 20


settings = _Settings()


def use_triton(t: torch.Tensor) -> bool:
    """Whether an op on ``t`` takes the Triton path (CUDA, or CPU under the interpreter)."""
    if not triton_available():
        return False
    if t.device.type == "cuda":
        return True
    return t.device.type == "cpu" and settings.triton_on_cpu and interpreting()


def new_empty(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An output buffer; NaN-filled when ``settings.poison_outputs`` is on."""
    if settings.poison_outputs:
        return torch.full(tuple(shape), float("nan"), dtype=dtype, device=device)
    return torch.empty(tuple(shape), dtype=dtype, device=device)


def register_op(name: str, fn: Callable[..., Any], mutates_args: Iterable[str] = ()) -> Any:
    """Register ``fn`` as the custom op ``pypm::<name>``.

    ``fn`` must choose between its Triton launch and its reference itself (by device), because
    ``torch.library.triton_op`` runs ``fn`` for every device, for fake tensors (tracing) and,
    under ``torch.compile``, decomposes into it so that inductor sees the kernel. Without
    Triton the op is a plain ``custom_op`` whose fake implementation is ``fn`` too.
    """
    qualname = f"pypm::{name}"
    if triton_available():
        return torch.library.triton_op(qualname, fn, mutates_args=tuple(mutates_args))
    op = torch.library.custom_op(qualname, fn, mutates_args=tuple(mutates_args))
    op.register_fake(fn)
    return op


def wrap(kernel: Any) -> Any:
    """``torch.library.wrap_triton(kernel)``: launches that tracing and inductor can see."""
    return torch.library.wrap_triton(kernel)


def check_dtype(op: str, what: str, t: torch.Tensor) -> None:
    if t.dtype not in SUPPORTED_DTYPES:
        raise KernelInputError(
            f"{op}: {what} has dtype {t.dtype}; supported dtypes are float16, bfloat16 and float32"
        )


def check_floating_same(op: str, named: dict[str, torch.Tensor | None]) -> None:
    """All given tensors share one supported dtype and one device."""
    present = {k: v for k, v in named.items() if v is not None}
    for what, t in present.items():
        check_dtype(op, what, t)
    dtypes = {str(t.dtype) for t in present.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{k}: {v.dtype}" for k, v in present.items())
        raise KernelInputError(f"{op}: inputs must share one dtype, got {listing}")
    devices = {str(t.device) for t in present.values()}
    if len(devices) > 1:
        listing = ", ".join(f"{k}: {v.device}" for k, v in present.items())
        raise KernelInputError(f"{op}: inputs must be on one device, got {listing}")


def row_plan(n: int, max_block: int, per_thread: int) -> dict[str, int]:
    """Tile, chunk count and warps for a row kernel over rows of length ``n``: tiles of at most
    ``max_block`` elements (and ``settings.max_row_block``), each thread holding about
    ``per_thread`` values of every row-long array, 4 to 32 warps."""
    block = max(16, min(next_pow2(n), max_block, settings.max_row_block))
    warps = min(32, max(4, block // (32 * per_thread)))
    return {"BLOCK_N": block, "NUM_CHUNKS": -(-n // block), "num_warps": warps}


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


@functools.cache
def num_sms(device_index: int) -> int:
    """Multiprocessors of a CUDA device (a small constant under the interpreter)."""
    if not torch.cuda.is_available():
        return 4  # interpreter: a handful of programs is enough to exercise the row striding
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def sms_for(t: torch.Tensor) -> int:
    return num_sms(t.device.index or 0) if t.device.type == "cuda" else num_sms(-1)
