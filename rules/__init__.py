"""The standard rules: pattern → kernel, collected by ``pypm.standard_rules()``.

Each module here defines rules with ``@pypm.rule`` at import time and lists them in ``RULES``.
"""

from __future__ import annotations

import importlib
from typing import Any

MODULES = ("attention",)


def all_rules() -> list[Any]:
    """Every standard rule, module by module in ``MODULES`` order."""
    out: list[Any] = []
    for name in MODULES:
        out.extend(importlib.import_module(f"{__name__}.{name}").RULES)
    return out


__all__ = ["MODULES", "all_rules"]
