"""The inductor custom-pass hook: pypm rules on inductor's post-grad ATen graphs.

    torch._inductor.config.post_grad_custom_pre_pass = pypm.inductor_pass(rules)

A pass that fails (a rule body that raises, a rule that keeps rewriting) does not fail the
compilation: the rewrites committed before the failure stay (each was checked when it was
made, and a failing rule body leaves no node behind), torch's ``graph.lint()`` confirms the
graph is well formed, the error is kept in ``InductorPass.errors`` and a
:class:`~pypm.compile.backend.RewriteWarning` says so. Only a graph that fails the lint
re-raises the error.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from collections.abc import Sequence

import torch
import torch.fx

from ..lang.syntax import show
from ..logs import log_report
from ..rewrite import RewritePass, RewriteReport, Rule
from .backend import RewriteWarning, standard_rules


def _rules_digest(rules: Sequence[Rule]) -> str:
    h = hashlib.sha256(b"pypm-inductor-pass-v1")
    for r in rules:
        h.update(f"{r.name}\0{r.priority}\0".encode())
        for name in sorted(r.program):
            d = r.program[name]
            h.update(f"{name}({','.join(d.params)}):={show(d.body)}\0".encode())
        try:
            h.update(inspect.getsource(r.fn).encode())
        except (OSError, TypeError):
            h.update(getattr(r.fn, "__qualname__", "").encode())
    return h.hexdigest()


try:
    from torch._inductor.custom_graph_pass import CustomGraphPass as _PassBase
except ImportError:  # pragma: no cover - torch without custom graph passes
    _PassBase = object  # type: ignore[assignment,misc]


class InductorPass(_PassBase):  # type: ignore[misc,valid-type]
    """A post-grad inductor pass applying pypm rules to the ATen-level graph. Its ``uuid`` is a
    digest of the rules (names, priorities, patterns, bodies), so inductor's FX graph cache
    stays valid across processes and changes when the rules change."""

    def __init__(self, rules: Sequence[Rule] | None = None):
        self.rules = list(rules) if rules is not None else standard_rules()
        self.reports: list[RewriteReport] = []
        self.errors: list[Exception] = []
        self._pass = RewritePass(self.rules)
        self._uuid = _rules_digest(self.rules)

    def __call__(self, graph: torch.fx.Graph) -> None:
        """Rewrite inductor's graph in place (see the module docstring for failures)."""
        size = len(graph.nodes)
        try:
            report = self._pass.apply(graph)
        except Exception as e:
            try:
                graph.lint()
            except Exception:
                raise e from None
            self.errors.append(e)
            report = RewriteReport(nodes_before=size, nodes_after=len(graph.nodes))
            warnings.warn(f"pypm: the inductor pass failed on this graph, which keeps only the "
                          f"rewrites made before the failure: {e}", RewriteWarning, stacklevel=2)
        self.reports.append(report)
        log_report(report)

    def uuid(self) -> str:
        return self._uuid


def inductor_pass(rules: Sequence[Rule] | None = None) -> InductorPass:
    """A pass for ``torch._inductor.config.post_grad_custom_pre_pass`` (or ``..._post_pass``)."""
    return InductorPass(rules)


__all__ = ["InductorPass", "inductor_pass"]
