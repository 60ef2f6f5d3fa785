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
import sys
from typing import Any

from .errors import PypmError, UnknownPatternError
from .lang.guards import guard_function
from .lang.load import PatternDef, PatternModule, load, loads, pattern
from .lang.match import Match

__version__ = "0.1.0"

# Names served lazily from the modules that own them, so that `import pypm` stays light (no
# torch.fx / inductor / triton import until a rewrite, backend or kernel is used).
_LAZY = {
    "rule": ("pypm.rewrite", "rule"),
    "Rule": ("pypm.rewrite", "Rule"),
    "RewritePass": ("pypm.rewrite", "RewritePass"),
    "RewriteReport": ("pypm.rewrite", "RewriteReport"),
    "Decline": ("pypm.rewrite", "Decline"),
    "backend": ("pypm.compile.backend", "backend"),
    "standard_rules": ("pypm.compile.backend", "standard_rules"),
    "inductor_pass": ("pypm.compile.inductor", "inductor_pass"),
    "explain": ("pypm.rewrite.explain", "explain"),
    "ops": ("pypm.kernels", None),
    "terms": ("pypm.lang.terms", None),
    "errors": ("pypm.errors", None),
}


def match(pattern: PatternDef, value_or_graph: Any, example_inputs: Any = None, **bound: Any) -> list[Match]:
    """Every match of ``pattern`` in a torch.fx graph (every node a candidate root, in graph
    order) or at a term.

    ``bound`` fixes parameters in advance (``pypm.match(P, g, dim=-1)``). For a graph whose
    nodes carry no shapes (``symbolic_trace``), pass ``example_inputs`` to propagate them;
    without shapes, a guard that reads one cannot hold, and a warning says so.
    """
    if not isinstance(pattern, PatternDef):
        raise UnknownPatternError(f"pypm.match needs a pattern (from @pattern or pypm.load), "
                                  f"not {type(pattern).__name__}")
    fx = sys.modules.get("torch.fx")
    if fx is not None and isinstance(value_or_graph, (fx.Graph, fx.GraphModule)):
        from .graph.view import match_graph

        return match_graph(pattern, value_or_graph, example_inputs, **bound)
    return pattern.match(value_or_graph, **bound)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pypm' has no attribute {name!r}")


__all__ = [
    "Decline", "Match", "PatternDef", "PatternModule", "PypmError", "RewritePass", "RewriteReport",
    "Rule", "backend", "explain", "guard_function", "inductor_pass", "load", "loads", "match", "ops",
    "pattern", "rule", "standard_rules",
]
