"""Fused kernels as torch custom ops (``torch.ops.pypm.*``), Triton on CUDA, references elsewhere."""

from .attention import attention

__all__ = ["attention"]
