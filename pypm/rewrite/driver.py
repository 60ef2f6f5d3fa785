"""The rewrite driver: :class:`RewritePass` sweeps a graph, outputs to inputs, trying rules
by priority at each candidate root, to a fixpoint (ARCHITECTURE.md, "Rewriting semantics").

1. :class:`~pypm.graph.cse.CSE` merges common subexpressions, so that term equality is node
   identity (incrementally on later sweeps);
2. a root-operator index picks the rules whose pattern can have a node's operator at its
   root; a skeleton (a necessary condition) rejects most other nodes without the matcher;
3. the compiled matcher (:mod:`pypm.lang.fastmatch`) calls back with each match in order;
   :func:`~pypm.rewrite.safety.unsafe_reason` checks its region;
4. the body is traced and checked (:mod:`pypm.rewrite.body`) and committed;
5. sweeps repeat to a fixpoint (a cap names the rules that keep rewriting); candidate roots
   that matched nothing are explained (:mod:`pypm.rewrite.explain`).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from ..errors import RewriteError
from ..graph.cse import CSE, TargetNames
from ..graph.names import node_source
from ..graph.types import has_types, propagate_types
from ..graph.view import GraphView
from ..lang.analysis import fits
from ..lang.match import Interpreter, Match
from .body import commit, lint_new, new_nodes, remove_nodes, run_body, type_check
from .report import Rewrite, RewriteReport, Skip, show_binding
from .rule import MAX_MATCHES_PER_ROOT, Rule
from .safety import unsafe_reason

Node = torch.fx.Node


# ---------------------------------------------------------------------------------------------
# The driver


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
        self.rules = sorted(rules, key=lambda r: -r.priority)  # stable: declaration order on ties
        for r in self.rules:
            if not isinstance(r, Rule):
                raise RewriteError(f"RewritePass takes rules made with @rule, not {type(r).__name__}")
        self.max_sweeps = max_sweeps
        self._index: dict[str, list[Rule]] = {}
        self._anywhere: list[Rule] = []
        for r in self.rules:
            ops = r.root_ops
            if ops is None:
                self._anywhere.append(r)
            else:
                for op in ops:
                    self._index.setdefault(op, []).append(r)
        if self._anywhere:
            for op, rs in self._index.items():
                self._index[op] = sorted(rs + self._anywhere, key=lambda r: -r.priority)

    def rules_for(self, op: str) -> list[Rule]:
        """The rules whose pattern may have ``op`` at its root, highest priority first."""
        return self._index.get(op, self._anywhere)

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
        state = _SweepState(names, CSE(graph, gm, names))
        for sweep in range(1, self.max_sweeps + 1):
            report.sweeps = sweep
            applied = self._sweep(gm, report, state)
            if not applied:
                break
        else:
            names = sorted(set(applied))
            first = next(r for r in self.rules if r.name == names[0])
            raise RewriteError(
                f"no fixpoint after {self.max_sweeps} sweeps: rule(s) {', '.join(names)} keep "
                f"rewriting (their replacements match again)", first.span, pattern=first.name)
        if self.misses:
            self._explain_misses(gm, report, state)
        if (report.rewrites or state.merged) and (self.lint == "full" or state.unordered):
            graph.lint()  # an untouched graph is as well-formed as it came
        if report.rewrites and not bare:
            gm.recompile()
        report.nodes_after = len(graph.nodes)
        report.seconds = time.perf_counter() - start
        return report

    def _sweep(self, gm: torch.fx.GraphModule, report: RewriteReport, state: _SweepState) -> list[str]:
        """One sweep from outputs to inputs; returns the names of the rules applied."""
        state.merged += state.cse.merge(state.dirty, state.erased)  # everything on the first sweep
        state.dirty = set()
        view = GraphView(gm, cse=False, names=state.names)
        applied: list[str] = []
        erased, names, index, anywhere = state.erased, state.names, self._index, self._anywhere
        for node in reversed(self._candidates(gm.graph, state)):
            if node in erased:
                continue
            for r in index.get(names(node), anywhere):
                if self._try(r, view, node, report, state):
                    applied.append(r.name)
                    break
        return applied

    def _candidates(self, graph: torch.fx.Graph, state: _SweepState) -> list[Node]:
        """The nodes a sweep visits, in graph order: those whose operator some rule's pattern may
        have at its root (every node when a rule may match at any operator). The first sweep
        scans the graph; later ones only re-check the survivors and the nodes rewrites inserted,
        since a node's operator never changes."""
        names, index = state.names, self._index

        def root(n: Node) -> bool:
            return n.op not in ("output", "placeholder") and (bool(self._anywhere) or names(n) in index)

        if state.candidates is None or self._anywhere:
            cands = [n for n in graph.nodes if root(n)]
        else:
            erased = state.erased
            cands = [n for n in state.candidates if n not in erased]
            cands += [n for n in state.inserted if n not in erased and root(n)]
            try:
                cands.sort()  # graph order (fx nodes compare by position)
            except TypeError:  # an fx without ordered nodes: scan the graph
                cands = [n for n in graph.nodes if root(n)]
        state.candidates, state.inserted = cands, []
        return cands

    def _explain_misses(self, gm: torch.fx.GraphModule, report: RewriteReport, state: _SweepState) -> None:
        """For candidate roots that no rule matched and that survived the rewrites, the deepest
        failing step (computed once, at the end, on the final graph)."""
        from .explain import DeepestFailure

        view = GraphView(gm, cse=False, names=state.names)
        for r, node in state.misses:
            if node in state.erased or node.graph is not gm.graph:
                continue
            term = view.term(node)
            interp = DeepestFailure(r.program, term)
            if next(iter(interp.run(r.call, term, {})), None) is not None or interp.best is None:
                continue
            best = interp.best
            report.misses.append(Skip(r.name, node.name, "no match",
                                      f"{best.reason}: {best.message} (pattern {best.where})"))

    def _try(self, r: Rule, view: GraphView, node: Node, report: RewriteReport, state: _SweepState) -> bool:
        """Try one rule at one node: the first match that is safe, accepted and well-typed is
        committed. Every other match is recorded with its reason."""
        term = view.term(node)
        if not fits(term, r.skeleton):
            self._missed(r, node, state)
            return False
        tried = 0

        def accept(sigma: dict[str, Any], region: tuple[Any, ...]) -> bool:
            nonlocal tried
            tried += 1
            if tried > MAX_MATCHES_PER_ROOT:
                return True  # stop looking (nothing was accepted)
            return self._accept(r, Match(sigma, region, term, r.definition.name), node, view, report,
                                state)

        try:
            r.matcher(term, {}, accept)
        except RecursionError:  # a very deep term: the generator interpreter has no such limit
            tried = 0
            for sigma, region in Interpreter(r.program).run(r.call, term, {}):
                if accept(sigma, region):
                    break
        if tried == 0:
            self._missed(r, node, state)
        return node in state.erased

    def _missed(self, r: Rule, node: Node, state: _SweepState) -> None:
        if self.misses and (r.name, node) not in state.missed:
            state.missed.add((r.name, node))
            state.misses.append((r, node))

    def _accept(self, r: Rule, m: Match, node: Node, view: GraphView, report: RewriteReport,
                state: _SweepState) -> bool:
        """Check and apply one match; True when the graph was rewritten."""
        bindings = {k: show_binding(v) for k, v in m.bindings.items() if k in r.definition.params}
        reason = unsafe_reason(m, node, view.owner)
        kind = "unsafe"
        out = None
        if reason is None:
            marker = node.prev
            out, reason = run_body(r, m, node)
            kind = "declined"
            if out is not None:
                new = new_nodes(marker, node)
                try:
                    if not lint_new(r, new, out, node, view.owner):
                        state.unordered = True
                except RewriteError:
                    remove_nodes(new)
                    raise
                reason = type_check(new, out, node)
                kind = "unsafe"
                if reason is not None:
                    remove_nodes(new)
        if reason is None and out is not None:
            report.rewrites.append(Rewrite(r.name, node.name, node_source(node), bindings, out.name))
            state.dirty.update(new)
            state.dirty.update(node.users)
            state.inserted.extend(new)
            commit(out, node, m, view, state.erased)
            return True
        key = (r.name, node.name, reason or "")
        if key not in state.seen:
            state.seen.add(key)
            report.skipped.append(Skip(r.name, node.name, kind, reason or "", bindings))
        return False


@dataclass
class _SweepState:
    """What sweeps share: target names, erased nodes, reasons already reported, misses."""

    names: TargetNames
    cse: CSE
    dirty: set[Node] | None = None  # nodes CSE must look at next sweep (None: all of them)
    candidates: list[Node] | None = None  # the last sweep's candidate roots, in graph order
    inserted: list[Node] = field(default_factory=list)  # nodes rewrites added since
    merged: int = 0  # nodes CSE removed
    unordered: bool = False  # nodes have no order here: lint the whole graph at the end
    erased: set[Node] = field(default_factory=set)
    seen: set[tuple[str, str, str]] = field(default_factory=set)
    missed: set[tuple[str, Node]] = field(default_factory=set)
    misses: list[tuple[Rule, Node]] = field(default_factory=list)
