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

# Every rewrite in the suite is also checked by torch's whole-graph lint, on top of the checks
# of each rewrite's new nodes that users get (RewritePass(lint="new"), the default): a rewrite
# that breaks the graph where the per-rewrite checks do not look fails here.
os.environ.setdefault("PYPM_LINT", "full")


# The skip policy (tests/skip_policy.py): under CI=true a skip not on its allow-list fails the run.
pytest_plugins = ("skip_policy",)
