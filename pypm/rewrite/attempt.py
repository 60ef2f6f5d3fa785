"""Trying one rule at one node (ARCHITECTURE.md, "Rewriting semantics"): the matches of its
pattern in order, each checked for safety, built by the body, checked again and either kept
(the root's users rewired to the replacement, the dead region removed) or skipped with its
reason. :func:`try_rule` says which: :class:`Applied`, :class:`Skipped` or :class:`NoMatch`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from ..graph.cse import TargetNames
from ..graph.graph_effects import Writers
from ..graph.names import node_source
from ..graph.view import GraphView
from ..lang.analysis import fits
from ..lang.fastmatch import feed
from ..lang.match import Match
from .body import Built, Scratch, run_body
from .checks import check_writes, fit_replacement, lint_new
from .outcome import Applied, NoMatch, Outcome, Skipped
from .report import NOTE, Hazard, Rewrite, show_binding
from .rule import MAX_MATCHES_PER_ROOT, Rule
from .safety import check_region, lost_gradient, region_inputs, region_nodes

Node = torch.fx.Node


@dataclass
class Graph:
    """The graph being rewritten, as the rules see it: its term view and target names, the
    nodes that write to tensors, and the nodes erased so far."""

    view: GraphView
    names: TargetNames
    writers: Writers
    region: Callable[[Node], int]  # a node's global-state region (GraphEffects.region)
    erased: set[Node] = field(default_factory=set)
    unordered: bool = False  # nodes have no order here: the pass lints the whole graph


def try_rule(rule: Rule, node: Node, graph: Graph) -> Outcome:
    """Try ``rule`` with ``node`` at the root: the first match that is safe, built and well-typed
    is applied. :class:`Applied` and :class:`Skipped` list the matches skipped before them."""
    term = graph.view.term(node)
    if not fits(term, rule.skeleton):
        return NoMatch()
    skipped: list[Skipped] = []
    applied: list[Applied] = []

    def accept(sigma: dict[str, Any], region: tuple[Any, ...]) -> bool:
        if len(skipped) >= MAX_MATCHES_PER_ROOT:
            return True  # stop looking (nothing was accepted)
        outcome = try_match(rule, Match(sigma, region, term, rule.definition.name), node, graph)
        if isinstance(outcome, Applied):
            applied.append(outcome)
            return True
        skipped.append(outcome)
        return False

    feed(rule.matcher, rule.program, rule.call, term, {}, accept, skipped.clear)
    if applied:
        a = applied[0]
        return Applied(a.rewrite, a.out, a.new, tuple(skipped))
    if skipped:
        last = skipped[-1]
        return Skipped(last.kind, last.reason, last.hazard, last.bindings, tuple(skipped[:-1]))
    return NoMatch()


def try_match(rule: Rule, match: Match, root: Node, graph: Graph) -> Applied | Skipped:
    """Check one match, run the body, check what it built, and keep it or undo it."""
    bindings = {k: show_binding(v) for k, v in match.bindings.items() if k in rule.definition.params}
    owner = graph.view.owner
    nodes = region_nodes(match)
    hazard = check_region(match, root, owner, writers=graph.writers, names=graph.names, nodes=nodes,
                          region=graph.region)
    if hazard is not None:
        return Skipped.unsafe(*hazard).bound(bindings)
    inputs = region_inputs(match, nodes)
    with Scratch(root, [*nodes, *inputs]) as scratch:
        built = run_body(rule, match, root, scratch)
        if isinstance(built, Skipped):
            return built.bound(bindings)
        out = _checked(rule, built, root, scratch, graph, inputs)
        if isinstance(out, Skipped):
            return out.bound(bindings)
        scratch.keep()
    new = tuple(scratch.new())
    graph.writers.add(new)
    note = out.meta.get(NOTE)
    done = Rewrite(rule.name, root.name, node_source(root), bindings, out.name,
                   note if isinstance(note, str) else "")
    commit(out, root, nodes, graph)
    return Applied(done, out, new)


def _checked(rule: Rule, built: Built, root: Node, scratch: Scratch, graph: Graph,
             inputs: list[Node]) -> Node | Skipped:
    """The replacement once the checks of :mod:`pypm.rewrite.checks` and the gradient check
    pass (it may gain a ``.contiguous()``), or why it is skipped."""
    new = scratch.new()
    if not lint_new(rule, new, built.out, root, graph.view.owner):
        graph.unordered = True
    check_writes(rule, new, root, graph.names)
    out = fit_replacement(rule, new, built.out, root, graph.names)
    if isinstance(out, Skipped):
        return out
    lost = lost_gradient(inputs, scratch.new(), out)
    if lost is not None:
        return Skipped.unsafe(Hazard.GRADIENT, lost)
    return out


def commit(out: Node, root: Node, region: list[Node], graph: Graph) -> None:
    """Rewire the root's users to the replacement and remove the dead region (its nodes)."""
    for k in ("stack_trace", "nn_module_stack", "source_fn_stack"):
        if k in root.meta and k not in out.meta:
            out.meta[k] = root.meta[k]
    root.replace_all_uses_with(out)
    erased, view = graph.erased, graph.view
    changed = True
    while changed:
        changed = False
        for n in region:
            if n not in erased and not n.users:
                n.graph.erase_node(n)
                view.forget(n)
                erased.add(n)
                changed = True


__all__ = ["Graph", "commit", "try_match", "try_rule"]
