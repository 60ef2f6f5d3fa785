"""Set-up shared by the whole suite.

The CI machine has no GPU: pypm's Triton kernels run on the CPU through Triton's interpreter.
``TRITON_INTERPRET`` must be set before anything imports triton's JIT, and any test may be the
first to do so (a rule firing on the CPU calls a kernel), so it is set here, for every test.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
