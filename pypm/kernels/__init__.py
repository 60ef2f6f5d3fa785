"""Fused kernels as torch custom ops: ``torch.ops.pypm.attention``, ``softmax``, ``rms_norm``,
``layer_norm`` (and their ``*_backward`` ops), each with a Triton implementation for CUDA, a
reference for other devices, a fake implementation for tracing, and autograd.

The functions below are the API rules call (``pypm.ops`` is an alias of this module): each has the
contract of its torch counterpart, checks its inputs eagerly (raising
:class:`pypm.errors.KernelInputError` before any launch) and emits one ``torch.ops.pypm`` call,
so it can be traced by torch.fx and dynamo. Triton is optional: without it every op runs its
reference implementation.
"""

from ._common import settings, triton_available
from .attention import attention, attention_spec
from .norms import layer_norm, rms_norm
from .softmax import softmax

__all__ = ["attention", "attention_spec", "layer_norm", "rms_norm", "settings", "softmax", "triton_available"]
