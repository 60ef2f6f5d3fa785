"""pypm: a pattern-rewrite DSL for PyTorch graphs.

Write a pattern once, in a small declarative language (recursion, alternatives, non-linear and
operator variables, guards on shapes and dtypes); pypm finds every spelling of that computation
in a torch.fx graph and swaps in a fused kernel. See LANGUAGE.md for the calculus and its
semantics, proved equivalent to the interpreter in Coq (``coq/``).

    import pypm
    from pypm import pattern, rule, RewritePass

    @pattern
    def Transposed(k):
        return transpose(k, -2, -1) | transpose(k, -1, -2)
"""

from __future__ import annotations

import importlib
from typing import Any

from .dsl import PatternDef, PatternModule, load, loads, match, pattern
from .errors import PypmError
from .guards import guard_function
from .match import Match

__version__ = "0.1.0"

# Names served lazily from the modules that own them, so that `import pypm` stays light (no
# torch.fx / inductor / triton import until a rewrite, backend or kernel is used).
_LAZY = {
    "rule": ("pypm.rewrite", "rule"),
    "Rule": ("pypm.rewrite", "Rule"),
    "RewritePass": ("pypm.rewrite", "RewritePass"),
    "RewriteReport": ("pypm.rewrite", "RewriteReport"),
    "Decline": ("pypm.rewrite", "Decline"),
    "backend": ("pypm.backend", "backend"),
    "standard_rules": ("pypm.backend", "standard_rules"),
    "inductor_pass": ("pypm.backend", "inductor_pass"),
    "explain": ("pypm.explain", "explain"),
    "ops": ("pypm.kernels", None),
    "terms": ("pypm.terms", None),
    "errors": ("pypm.errors", None),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        if module_name == f"{__name__}.{name}" and callable(module):
            # ``pypm.backend`` and ``pypm.explain`` are callable modules: binding the function
            # here would hide the module from a later ``import pypm.backend``.
            value = module
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pypm' has no attribute {name!r}")


__all__ = [
    "Decline", "Match", "PatternDef", "PatternModule", "PypmError", "RewritePass", "RewriteReport",
    "Rule", "backend", "explain", "guard_function", "inductor_pass", "load", "loads", "match", "ops",
    "pattern", "rule", "standard_rules",
]
