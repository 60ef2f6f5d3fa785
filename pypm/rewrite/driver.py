"""The rewrite driver: :class:`RewritePass` sweeps a graph, outputs to inputs, trying rules
by priority at each candidate root, to a fixpoint (ARCHITECTURE.md, "Rewriting semantics").

1. :class:`~pypm.graph.cse.CSE` merges common subexpressions, so that term equality is node
   identity (incrementally on later sweeps);
2. the root-operator index (:mod:`pypm.rewrite.index`) picks the candidate roots and the rules
   to try at each;
3. :func:`~pypm.rewrite.attempt.try_rule` tries one rule at one root: matching, safety, the
   body, its checks, and the commit, with an :class:`~pypm.rewrite.outcome.Outcome`;
4. sweeps repeat until one applies nothing (a fixpoint) or the sweep cap, and the report
   records which (at the cap, the rules that kept rewriting); candidate roots that matched
   nothing are explained (:mod:`pypm.rewrite.explain`).
"""

from __future__ import annotations

import gc
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from ..errors import RewriteError
from ..graph.cse import CSE, TargetNames
from ..graph.graph_effects import Writers
from ..graph.types import has_types, propagate_types
from ..graph.view import GraphView
from .attempt import Graph, try_rule
from .index import rule_index
from .outcome import Applied, NoMatch, Skipped
from .report import RewriteReport, Skip, SkipKind, Stop, StopKind
from .rule import Rule

Node = torch.fx.Node


class SweepCapWarning(UserWarning):
    """A rewrite pass stopped at its sweep cap: some rules' replacements match again."""


class RewritePass:
    """Apply rules to a graph until none applies (ARCHITECTURE.md, "Rewriting semantics")."""

    def __init__(self, rules: Iterable[Rule], *, max_sweeps: int = 10, misses: bool = True,
                 lint: str | None = None):
        self.misses = misses  # explain candidate roots that did not match (the deepest failing step)
        # "new": graph.lint()'s checks on each rewrite's new nodes (lint_new), which is all a
        # rewrite can break; "full": graph.lint() of the whole graph as well, after the pass.
        # The default comes from PYPM_LINT (the test suite sets "full"), else "new".
        self.lint = lint or os.environ.get("PYPM_LINT") or "new"
        if self.lint not in ("new", "full"):
            raise RewriteError(f"RewritePass(lint=...) takes 'new' or 'full', not {self.lint!r}")
        self.index = rule_index(rules)
        self.rules = self.index.entries  # highest priority first, declaration order on ties
        self.max_sweeps = max_sweeps

    def rules_for(self, op: str) -> list[Rule]:
        """The rules whose pattern may have ``op`` at its root, highest priority first."""
        return self.index.for_op(op)

    def apply(self, gm: torch.fx.GraphModule | torch.fx.Graph,
              example_inputs: Sequence[Any] | None = None) -> RewriteReport:
        """Rewrite ``gm`` in place and return the report. Shapes and dtypes come from node
        metadata; when the graph has none, ``example_inputs`` are propagated as fake tensors.
        A bare ``Graph`` (an inductor pass) is rewritten in place and not recompiled: its owner
        (inductor) generates code from it afterwards."""
        # The cyclic garbage collector would walk every node of a big graph many times over
        # while a pass allocates; nothing a pass creates needs it until the pass ends.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._apply(gm, example_inputs)
        finally:
            if collecting:
                gc.enable()

    def _apply(self, gm: torch.fx.GraphModule | torch.fx.Graph,
               example_inputs: Sequence[Any] | None) -> RewriteReport:
        start = time.perf_counter()
        bare = isinstance(gm, torch.fx.Graph)
        if bare:
            graph = gm
            gm = graph.owning_module or torch.fx.GraphModule(torch.nn.Module(), graph)
        graph = gm.graph
        report = RewriteReport(nodes_before=len(graph.nodes))
        if example_inputs is not None and not has_types(graph):
            propagate_types(gm, list(example_inputs))
        names = TargetNames(gm)
        cse = CSE(graph, gm, names)
        state = _PassState(cse, Graph(GraphView(gm, cse=False, names=names), names,
                                      Writers(graph, names.effect, found=cse.effects.writers),
                                      lambda n: cse.effects.region(n)))
        report.stop = self._sweeps(gm, report, state)
        if self.misses:
            self._explain_misses(gm, report, state)
        if (report.rewrites or state.merged) and (self.lint == "full" or state.graph.unordered):
            graph.lint()  # an untouched graph is as well-formed as it came
        if report.rewrites and not bare:
            gm.recompile()
        report.nodes_after = len(graph.nodes)
        report.seconds = time.perf_counter() - start
        return report

    def _sweeps(self, gm: torch.fx.GraphModule, report: RewriteReport, state: _PassState) -> Stop:
        """Sweep to a fixpoint or to the cap; why they stopped."""
        applied: list[str] = []
        for sweep in range(1, self.max_sweeps + 1):
            report.sweeps = sweep
            applied = self._sweep(gm, report, state)
            if not applied:
                return Stop(StopKind.FIXPOINT)
        cycled = [r for r in self.rules if r.name in set(applied)]
        stop = Stop(StopKind.SWEEP_CAP, tuple(r.name for r in cycled),
                    tuple(f"{r.span.file}:{r.span.line}" if r.span else "" for r in cycled))
        warnings.warn(f"pypm: {stop}", SweepCapWarning, stacklevel=4)
        return stop

    def _sweep(self, gm: torch.fx.GraphModule, report: RewriteReport, state: _PassState) -> list[str]:
        """One sweep from outputs to inputs; returns the names of the rules applied."""
        state.merged += state.cse.merge(state.dirty, state.graph.erased)  # everything on the first sweep
        state.dirty = set()
        g = state.graph
        g.view = GraphView(gm, cse=False, names=state.names)
        applied: list[str] = []
        erased, names, for_op = g.erased, state.names, self.index.for_op
        for node in reversed(self._candidates(gm.graph, state)):
            if node in erased:
                continue
            for r in for_op(names(node)):
                outcome = try_rule(r, node, g)
                if isinstance(outcome, NoMatch):
                    self._missed(r, node, state)
                    continue
                for s in (*outcome.skipped, outcome) if isinstance(outcome, Skipped) else outcome.skipped:
                    self._skipped(r, node, s, report, state)
                if isinstance(outcome, Applied):
                    report.rewrites.append(outcome.rewrite)
                    state.dirty.update(outcome.new)
                    state.dirty.update(outcome.out.users)  # the root's users, rewired
                    state.inserted.extend(outcome.new)
                    applied.append(r.name)
                    break
        return applied

    def _candidates(self, graph: torch.fx.Graph, state: _PassState) -> list[Node]:
        """The nodes a sweep visits, in graph order (see :mod:`pypm.rewrite.index`). The first
        sweep scans the graph; later ones only re-check the survivors and the nodes rewrites
        inserted, since a node's operator never changes."""
        index, names, erased = self.index, state.names, state.graph.erased
        if state.candidates is None or index.anywhere:
            cands = index.candidates(graph.nodes, names)
        else:
            cands = [n for n in state.candidates if n not in erased]
            cands += index.candidates((n for n in state.inserted if n not in erased), names)
            try:
                cands.sort()  # graph order (fx nodes compare by position)
            except TypeError:  # an fx without ordered nodes: scan the graph
                cands = index.candidates(graph.nodes, names)
        state.candidates, state.inserted = cands, []
        return cands

    def _skipped(self, r: Rule, node: Node, s: Skipped, report: RewriteReport, state: _PassState) -> None:
        key = (r.name, node.name, s.reason)
        if key not in state.seen:
            state.seen.add(key)
            report.skipped.append(Skip(r.name, node.name, s.kind, s.reason, s.bindings, s.hazard))

    def _missed(self, r: Rule, node: Node, state: _PassState) -> None:
        if self.misses and (r.name, node) not in state.missed:
            state.missed.add((r.name, node))
            state.misses.append((r, node))

    def _explain_misses(self, gm: torch.fx.GraphModule, report: RewriteReport, state: _PassState) -> None:
        """For candidate roots that no rule matched and that survived the rewrites, the deepest
        failing step (computed once, at the end, on the final graph)."""
        from .explain import DeepestFailure

        view = GraphView(gm, cse=False, names=state.names)
        for r, node in state.misses:
            if node in state.graph.erased or node.graph is not gm.graph:
                continue
            term = view.term(node)
            interp = DeepestFailure(r.program, term)
            if next(iter(interp.run(r.call, term, {})), None) is not None or interp.best is None:
                continue
            best = interp.best
            report.misses.append(Skip(r.name, node.name, SkipKind.NO_MATCH,
                                      f"{best.reason}: {best.message} (pattern {best.where})"))


@dataclass
class _PassState:
    """What sweeps share: CSE, the graph as rules see it, reasons already reported, misses."""

    cse: CSE
    graph: Graph
    dirty: set[Node] | None = None  # nodes CSE must look at next sweep (None: all of them)
    candidates: list[Node] | None = None  # the last sweep's candidate roots, in graph order
    inserted: list[Node] = field(default_factory=list)  # nodes rewrites added since
    merged: int = 0  # nodes CSE removed
    seen: set[tuple[str, str, str]] = field(default_factory=set)
    missed: set[tuple[str, Node]] = field(default_factory=set)
    misses: list[tuple[Rule, Node]] = field(default_factory=list)

    @property
    def names(self) -> TargetNames:
        return self.graph.names  # type: ignore[return-value]
