"""``torch.compile(model, backend="pypm")``.

The backend rewrites the dynamo graph with pypm rules, then hands it to an inner compiler
(inductor by default). ``backend="pypm"`` is registered through the package entry point
``torch_dynamo_backends`` (``pypm.compile.backend:pypm_backend``), so it works without importing pypm.

    torch.compile(model, backend="pypm")                              # standard rules, inductor
    be = pypm.backend(rules=[...], inner="aot_eager", verify=True)
    torch.compile(model, backend=be); ...; be.reports                 # one report per graph

``verify=True`` runs the original and the rewritten graph on the first call's inputs and
raises a :class:`~pypm.errors.RewriteError` naming the rules applied if they differ beyond the
tolerance of the output dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx

from ..errors import RewriteError
from ..rewrite import RewritePass, RewriteReport, Rule

InnerCompiler = Callable[[torch.fx.GraphModule, Sequence[Any]], Callable[..., Any]]

# Tolerances for verify=True, per output dtype: (rtol, atol).
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (1e-2, 1e-2),
}


def standard_rules() -> list[Rule]:
    """The standard rule set (every rule listed by the modules of ``pypm.rules``)."""
    from pypm.rules import all_rules

    return list(all_rules())


def _inner_compiler(inner: str | InnerCompiler) -> InnerCompiler:
    if callable(inner):
        return inner
    if inner == "eager":
        return lambda gm, example_inputs: gm.forward
    if inner == "inductor":
        from torch._inductor.compile_fx import compile_fx

        return compile_fx
    try:
        from torch._dynamo import lookup_backend
    except ImportError:  # pragma: no cover - very old torch
        from torch._dynamo.backends.registry import lookup_backend
    try:
        return lookup_backend(inner)
    except Exception as e:
        raise RewriteError(f"unknown inner compiler {inner!r} for the pypm backend: {e}") from None


def _clone(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A copy of a graph module sharing its parameters (the graph is copied, not the weights)."""
    graph = torch.fx.Graph()
    out = graph.graph_copy(gm.graph, {})
    graph.output(out)
    graph._codegen = gm.graph._codegen
    return torch.fx.GraphModule(gm, graph)


def _flat_tensors(x: Any) -> list[Any]:
    if isinstance(x, (list, tuple)):
        return [y for e in x for y in _flat_tensors(e)]
    if isinstance(x, dict):
        return [y for e in x.values() for y in _flat_tensors(e)]
    return [x]


def compare_outputs(expected: Any, actual: Any) -> str | None:
    """None when the outputs agree within the tolerance of their dtype, else what differs."""
    e_list, a_list = _flat_tensors(expected), _flat_tensors(actual)
    if len(e_list) != len(a_list):
        return f"{len(a_list)} outputs instead of {len(e_list)}"
    for i, (e, a) in enumerate(zip(e_list, a_list)):
        if not isinstance(e, torch.Tensor):
            if e != a:
                return f"output {i} is {a!r} instead of {e!r}"
            continue
        if not isinstance(a, torch.Tensor) or a.shape != e.shape or a.dtype != e.dtype:
            return f"output {i} has type {getattr(a, 'dtype', type(a))}{list(getattr(a, 'shape', []))} " \
                   f"instead of {e.dtype}{list(e.shape)}"
        rtol, atol = TOLERANCES.get(e.dtype, (0.0, 0.0))
        if not torch.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
            diff = (a.double() - e.double()).abs().nan_to_num(float("inf")).max().item()
            return f"output {i} differs by up to {diff:.3g} (rtol={rtol}, atol={atol})"
    return None


class _Verified:
    """A compiled graph that checks itself against the original graph on its first call."""

    def __init__(self, compiled: Callable[..., Any], original: torch.fx.GraphModule,
                 report: RewriteReport, rules: Sequence[Rule]):
        self.compiled = compiled
        self.original: torch.fx.GraphModule | None = original
        self.report = report
        self.rules = rules

    def __call__(self, *args: Any) -> Any:
        out = self.compiled(*args)
        if self.original is not None:
            original, self.original = self.original, None
            with torch.no_grad():
                expected = original(*args)
            problem = compare_outputs(expected, out)
            if problem is not None:
                names = sorted(self.report.counts())
                first = next((r for r in self.rules if r.name in names), None)
                raise RewriteError(
                    f"verify: the rewritten graph disagrees with the original: {problem}; "
                    f"rule(s) applied: {', '.join(names)}",
                    first.span if first else None, pattern=first.name if first else None)
        return out


class Backend:
    """A torch.compile backend: rewrite the dynamo graph with ``rules``, then compile it with
    ``inner``. ``reports`` keeps one :class:`~pypm.rewrite.RewriteReport` per compiled graph."""

    def __init__(self, rules: Sequence[Rule] | None = None, inner: str | InnerCompiler = "inductor",
                 verify: bool = False):
        self.rules = list(rules) if rules is not None else None
        self.inner = inner
        self.verify = verify
        self.reports: list[RewriteReport] = []
        self._pass: RewritePass | None = None
        self.__name__ = "pypm"  # dynamo names backends in its logs and errors

    def rewrite_pass(self) -> RewritePass:
        if self._pass is None:
            self._pass = RewritePass(self.rules if self.rules is not None else standard_rules())
        return self._pass

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
        rewrite = self.rewrite_pass()
        original = _clone(gm) if self.verify else None
        report = rewrite.apply(gm, example_inputs)
        self.reports.append(report)
        compiled = _inner_compiler(self.inner)(gm, list(example_inputs))
        if original is not None and report.rewrites:
            return _Verified(compiled, original, report, rewrite.rules)
        return compiled


def backend(rules: Sequence[Rule] | None = None, *, inner: str | InnerCompiler = "inductor",
            verify: bool = False) -> Backend:
    """A pypm backend for ``torch.compile``: ``rules`` (default: the standard rules), then the
    ``inner`` compiler ("inductor", "aot_eager", "eager", any registered backend name, or a
    callable ``(gm, example_inputs) -> callable``)."""
    return Backend(rules, inner, verify)


_DEFAULT: Backend | None = None


def pypm_backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
    """The backend named "pypm" (entry point target): the standard rules, then inductor.
    Its reports accumulate on ``pypm.backend.default_backend().reports``."""
    return default_backend()(gm, example_inputs)


def default_backend() -> Backend:
    """The :class:`Backend` behind ``backend="pypm"``."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Backend()
    return _DEFAULT


__all__ = ["Backend", "TOLERANCES", "backend", "compare_outputs", "default_backend", "pypm_backend",
           "standard_rules"]
