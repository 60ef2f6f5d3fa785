"""Whole-graph effect analyses over the per-node effects of :mod:`pypm.graph.effects`.

:class:`GraphEffects` reads one graph. A node is *blocked* (never merged) when its result or
one of its inputs may alias a tensor that some node writes, anywhere in the graph: a simple
rule that is sound whatever the order of the reads and the writes. Aliasing is followed through
every op whose result may alias an argument, both ways (a write to a view reaches its base and
every other view of it); graph inputs and attributes may alias each other (nothing says two
inputs are not views of one tensor). Every node also gets a *region*: the grad-mode, autocast
and inference-mode state it runs under, so that equal nodes under different states stay apart;
after an ``UNKNOWN`` node the state is a fresh one, equal to no other. Finally, two nodes whose
results both reach the graph's outputs are not merged: the caller would get one tensor twice
where it had two.

:class:`Writers` serves rewriting (ARCHITECTURE.md, "Rewriting semantics"): the nodes that may
write a tensor, in graph order, what each may write, and the *bases* of a value (the values it
may be a view of), so that a rewrite can tell whether a write falls between a region's reads and
its root.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.fx

from .effects import ALL, INPUT, MUTATE, OUTPUT, STATE, STATE_FUNCTIONS, UNKNOWN, Effect, referenced

Node = torch.fx.Node

# ---------------------------------------------------------------------------------------------
# Global state: grad mode, autocast, inference mode


class _States:
    """Interns global states as small integers. A state is (grad mode, autocast stack,
    inference-mode stack, epoch): the epoch changes after a node of unknown effect, so states
    on either side of it are never equal. The state a graph starts in is unknown but fixed, so
    it is a value of its own (``"entry"``), equal to no state a node sets."""

    def __init__(self) -> None:
        self._ids: dict[Any, int] = {}
        self.epoch = 0

    def intern(self, state: Any) -> int:
        found = self._ids.get(state)
        if found is None:
            found = self._ids[state] = len(self._ids)
        return found

    def entry(self) -> tuple[Any, ...]:
        return ("entry", ("entry",), ("entry",), 0)

    def after_unknown(self, state: tuple[Any, ...]) -> tuple[Any, ...]:
        self.epoch += 1
        mark = ("unknown", self.epoch)
        return (mark, (mark,), (mark,), self.epoch)

    def after(self, node: Node, state: tuple[Any, ...], enters: list[Node]) -> tuple[Any, ...]:
        """The state after a ``STATE`` node (``enters``: the open autocast and inference-mode
        regions, innermost last)."""
        grad, autocast, inference, epoch = state
        role = STATE_FUNCTIONS.get(node.target)
        target = node.target
        if role == "grad":
            flag = node.args[0] if len(node.args) == 1 and not node.kwargs else node.kwargs.get("mode")
            if type(flag) is not bool:
                return self.after_unknown(state)
            return (flag, autocast, inference, epoch)
        inference_fn = getattr(target, "__name__", "").endswith("inference_mode")
        if role == "enter":
            enters.append(node)
            mark = _literal_key((tuple(node.args), tuple(node.kwargs.items())))
            if inference_fn:
                return (grad, autocast, (*inference, mark), epoch)
            return (grad, (*autocast, mark), inference, epoch)
        # exit: the innermost region must be the one this node closes
        stack = inference if inference_fn else autocast
        if not enters or not node.args or node.args[0] is not enters[-1] or len(stack) < 2:
            return self.after_unknown(state)
        enters.pop()
        if inference_fn:
            return (grad, autocast, stack[:-1], epoch)
        return (grad, stack[:-1], inference, epoch)


def _literal_key(value: Any) -> Any:
    """A hashable key for the literal arguments of a state change (a fresh object, equal to
    nothing else, when they cannot be hashed)."""
    try:
        hash(value)
    except TypeError:
        return object()
    return value


# ---------------------------------------------------------------------------------------------
# One graph


class GraphEffects:
    """The effects of one graph's nodes, as CSE needs them (see the module docstring):
    :meth:`blocked` nodes, the :meth:`region` of each node and the nodes whose values reach the
    outputs (:attr:`escaping`). ``effect`` gives a node's effect (cached by the caller);
    ``kinds``, when given, yields the nodes of a graph that are not values (kind above
    ``VIEW``) with their kinds, in graph order: a faster walk than ``effect`` on every node.

    Kept up to date across a rewrite pass by :meth:`update`, told which nodes a rewrite added
    or rewired; a new node of unknown effect or one that changes global state makes
    :attr:`stale` true (the caller analyses the graph afresh)."""

    def __init__(self, graph: torch.fx.Graph, effect: Callable[[Node], Effect],
                 kinds: Callable[[torch.fx.Graph], Iterable[tuple[Node, int]]] | None = None):
        self.graph = graph
        self.effect = effect
        self._kinds = kinds
        self.writers: list[Node] = []  # nodes that write a tensor (MUTATE, UNKNOWN)
        self.inputs: list[Node] = []  # placeholders and attributes
        self.mutated: set[Node] = set()  # nodes whose value may alias a written tensor
        self.escaping: set[Node] = set()  # nodes whose value may alias an output
        self.regions: dict[Node, int] | None = None  # None: one region (no state changes)
        self.first_change: Node | None = None  # the first node that changes global state
        self.stale = False
        self._states = _States()
        self._analyse()

    # -- the whole graph

    def _analyse(self) -> None:
        effect = self.effect
        writers, inputs = self.writers, self.inputs
        output = None
        found = self._kinds(self.graph) if self._kinds is not None else \
            ((n, effect(n).kind) for n in self.graph.nodes)
        for n, kind in found:
            if kind == INPUT:
                inputs.append(n)
            elif kind == MUTATE:
                writers.append(n)
            elif kind == OUTPUT:
                output = n
            else:
                if kind == UNKNOWN:
                    writers.append(n)
                if kind >= STATE and self.first_change is None:
                    self.first_change = n
        if self.first_change is not None:
            self._assign_regions()
        if writers:
            self.mutated = self._closure(self._written(writers), through_inputs=True)
        if output is not None:
            self.escaping = self._closure(output._input_nodes, through_inputs=False)

    def _assign_regions(self) -> None:
        """The region of every node from the first change of state on (nodes before it are in
        region 0, the graph's entry state). A ``STATE`` or ``UNKNOWN`` node is recorded with
        the region after it, which is what a node inserted after it runs under."""
        states, effect = self._states, self.effect
        state = states.entry()
        regions: dict[Node, int] = {}
        enters: list[Node] = []
        current = states.intern(state)
        node = self.first_change
        while node is not None and node.op != "root":
            kind = effect(node).kind
            if kind == STATE:
                state = states.after(node, state, enters)
                current = states.intern(state)
            elif kind == UNKNOWN:
                state = states.after_unknown(state)
                current = states.intern(state)
            regions[node] = current
            node = node.next
        self.regions = regions

    def _written(self, writers: Iterable[Node]) -> list[Node]:
        """The tensors the writers may write (every input, for a writer of unknown effect)."""
        out: list[Node] = []
        for w in writers:
            e = self.effect(w)
            if e.writes is ALL:
                out.extend(w._input_nodes)
                out.extend(self.inputs)
            else:
                out.extend(referenced(w, e.writes))
        return out

    def _closure(self, start: Iterable[Node], through_inputs: bool) -> set[Node]:
        """Every node whose value may share storage with one of ``start``: up through what a
        value may alias, down through the users that may alias it; with ``through_inputs``,
        from any graph input to all of them."""
        effect = self.effect
        seen: set[Node] = set()
        stack = list(start)
        inputs_done = not through_inputs
        while stack:
            m = stack.pop()
            if m in seen:
                continue
            seen.add(m)
            e = effect(m)
            if e.aliases:
                stack.extend(referenced(m, e.aliases))
            if not inputs_done and (e.kind == INPUT or (e.kind == UNKNOWN and e.aliases is ALL)):
                inputs_done = True  # an unknown call may return a graph input, or a global
                stack.extend(self.inputs)
            for u in m.users:
                eu = effect(u)
                if eu.aliases and (eu.aliases is ALL or m in referenced(u, eu.aliases)):
                    stack.append(u)
        return seen

    def aliases_of(self, start: Iterable[Node]) -> set[Node]:
        """Every node whose value may share storage with one of ``start`` (graph inputs not
        taken as aliases of each other)."""
        return self._closure(start, through_inputs=False)

    # -- queries

    def blocked(self, n: Node) -> bool:
        """Whether a node must not be merged because its value or one of its inputs may alias a
        tensor that some node writes."""
        mutated = self.mutated
        if not mutated:
            return False
        if n in mutated:
            return True
        for a in n._input_nodes:
            if a in mutated:
                return True
        return False

    def region(self, n: Node) -> int:
        """The global-state region a node runs in (0 when the graph never changes state)."""
        regions = self.regions
        if regions is None:
            return 0
        found = regions.get(n)
        if found is not None:
            return found
        first = self.first_change
        try:
            if first is None or n < first:
                return 0
        except TypeError:  # nodes without an order: walk back to a known node
            pass
        p = n.prev
        walked = [n]
        while p.op != "root":
            found = regions.get(p)
            if found is not None:
                break
            walked.append(p)
            p = p.prev
        if found is None:
            found = 0
        for w in walked:  # inserted nodes are values: they run in the region before them
            regions[w] = found
        return found

    def both_escape(self, a: Node, b: Node) -> bool:
        """Whether the values of both nodes may reach the outputs (merging them would return
        one tensor where the caller had two)."""
        escaping = self.escaping
        return a in escaping and b in escaping

    # -- a rewrite pass

    def update(self, changed: Iterable[Node]) -> None:
        """Take in nodes a rewrite inserted or rewired. The written and escaping sets are
        recomputed when they may have changed (a writer or the output among the changed
        nodes, or any change while some tensor is written: a rewired view may now lead to a
        written tensor)."""
        effect = self.effect
        rewrite_writers = False
        output = None
        for n in changed:
            if n.graph is not self.graph or getattr(n, "_erased", False):
                continue
            kind = effect(n).kind
            if kind >= STATE:
                if kind == OUTPUT:
                    output = n
                else:
                    self.stale = True
                    return
            elif kind == MUTATE:
                if n not in self.writers:
                    self.writers.append(n)
                rewrite_writers = True
            elif kind == INPUT and n not in self.inputs:
                self.inputs.append(n)
                rewrite_writers = True
            if self.regions is not None:
                self.region(n)
        if rewrite_writers or self.mutated:
            live = [w for w in self.writers if w.graph is self.graph and not getattr(w, "_erased", False)]
            self.writers = live
            self.mutated = self._closure(self._written(live), through_inputs=True) if live else set()
        if output is not None or self.escaping:
            if output is None:
                output = next((n for n in reversed(self.graph.nodes) if n.op == "output"), None)
            if output is not None:
                self.escaping = self._closure(output._input_nodes, through_inputs=False)


# ---------------------------------------------------------------------------------------------
# Writes in graph order, for rewriting


def bases(node: Node, effect: Callable[[Node], Effect]) -> frozenset[Node]:
    """The values ``node`` may be a view of (itself when it is no view): the roots of its chain
    of aliasing ops, followed through every argument its result may alias. Two values may share
    storage when their bases meet (graph inputs are taken as distinct here: what a write to an
    input reaches is asked of :meth:`Writers.targets`, which names every input for a call of
    unknown effect)."""
    out: set[Node] = set()
    seen: set[Node] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        e = effect(n)
        up = list(referenced(n, e.aliases)) if e.aliases else []
        if up:
            stack.extend(up)
        else:
            out.add(n)
    return frozenset(out)


class Writers:
    """The nodes of one graph that may write a tensor (``MUTATE`` and ``UNKNOWN`` nodes), in
    graph order, found once per pass and extended with the nodes rewrites insert (rule bodies
    may write their own temporaries). ``effect`` gives a node's effect; ``kinds``, when given,
    the faster walk of :class:`GraphEffects`; ``found``, when given, the writers already known
    (:attr:`GraphEffects.writers`), so that the graph is not walked again."""

    def __init__(self, graph: torch.fx.Graph, effect: Callable[[Node], Effect],
                 kinds: Callable[[torch.fx.Graph], Iterable[tuple[Node, int]]] | None = None,
                 found: Iterable[Node] | None = None):
        self.graph = graph
        self.effect = effect
        if found is None:
            walk = kinds(graph) if kinds is not None else ((n, effect(n).kind) for n in graph.nodes)
            found = (n for n, k in walk if k == MUTATE or k == UNKNOWN)
        self.nodes: list[Node] = list(found)
        self._inputs: list[Node] | None = None

    def add(self, nodes: Iterable[Node]) -> None:
        """Take in nodes a rewrite inserted."""
        self.nodes.extend(n for n in nodes if self.effect(n).kind in (MUTATE, UNKNOWN))

    def _live(self) -> list[Node]:
        return [w for w in self.nodes if not getattr(w, "_erased", False)]

    def between(self, first: Node, last: Node) -> list[Node]:
        """The writers strictly between two nodes in graph order."""
        try:
            return [w for w in self._live() if first < w < last]
        except TypeError:  # nodes without an order: walk the graph
            live, out, n = set(self._live()), [], first.next
            while n is not last and n.op != "root":
                if n in live:
                    out.append(n)
                n = n.next
            return out

    def before(self, last: Node) -> list[Node]:
        """The writers before a node in graph order."""
        try:
            return [w for w in self._live() if w < last]
        except TypeError:
            live, out, n = set(self._live()), [], last.prev
            while n.op != "root":
                if n in live:
                    out.append(n)
                n = n.prev
            return out

    def targets(self, w: Node) -> tuple[Node, ...]:
        """What writer ``w`` may write: its written arguments, or, for a call of unknown effect,
        every node it is given and every graph input (it may reach them through globals)."""
        e = self.effect(w)
        if e.writes is ALL:
            if self._inputs is None:
                self._inputs = [n for n in self.graph.nodes if n.op in ("placeholder", "get_attr")]
            return (*w._input_nodes, *self._inputs)
        return tuple(referenced(w, e.writes))


__all__ = ["GraphEffects", "Writers", "bases"]
