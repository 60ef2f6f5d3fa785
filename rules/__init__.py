"""The standard rules: pattern → kernel, collected by ``pypm.standard_rules()``.

Each module here defines rules with ``@pypm.rule`` at import time and lists them in ``RULES``.
"""

from __future__ import annotations

import importlib
from typing import Any

MODULES = ("attention", "norms")

# Rules that are exact but not yet measured to make real models faster than the compiler alone
# (ARCHITECTURE.md: a rule that can slow a model down is opt-in): `attention-variant` runs
# FlexAttention for score modifications and sinks, untimed on real models so far. Add them with
# ``pypm.backend(rules=pypm.standard_rules() + pypm.rules.opt_in_rules())``.
OPT_IN = ("variants",)

# Where the standard rules swap in pypm's fused kernels (``pypm::attention``, ...). On CUDA the
# ops run Triton; elsewhere they run a reference implementation and torch's own kernels are the
# better pick, so the rules decline there (attention falls back to torch's SDPA). Tests add "cpu"
# to exercise the fused ops through rewriting.
FUSED_DEVICES: set[str] = {"cuda"}


def on_fused_device(x: Any) -> bool:
    """Whether the tensor behind fx proxy (or node) ``x`` lives on a device in FUSED_DEVICES."""
    from pypm.graph import meta_value

    node = getattr(x, "node", x)
    device = getattr(meta_value(node), "device", None)
    return device is not None and torch_device_type(device) in FUSED_DEVICES


def torch_device_type(device: Any) -> str:
    return getattr(device, "type", str(device).split(":")[0])


def require_fused_device(x: Any, op: str) -> None:
    """Decline (with the reason in the report) unless ``x`` is on a device in FUSED_DEVICES."""
    from pypm.rewrite import Decline

    if not on_fused_device(x):
        raise Decline(f"{op} is used on {', '.join(sorted(FUSED_DEVICES))} only (this tensor is on "
                      "another device, where torch's own kernel is the better pick)")


def all_rules() -> list[Any]:
    """Every standard rule, module by module in ``MODULES`` order."""
    out: list[Any] = []
    for name in MODULES:
        out.extend(importlib.import_module(f"{__name__}.{name}").RULES)
    return out


def opt_in_rules() -> list[Any]:
    """The exact rules that are off by default (``OPT_IN``), module by module."""
    out: list[Any] = []
    for name in OPT_IN:
        out.extend(importlib.import_module(f"{__name__}.{name}").RULES)
    return out


__all__ = ["FUSED_DEVICES", "MODULES", "OPT_IN", "all_rules", "on_fused_device", "opt_in_rules",
           "require_fused_device"]
