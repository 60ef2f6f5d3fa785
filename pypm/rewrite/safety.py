"""Rewrite safety (ARCHITECTURE.md, "Rewriting semantics"): which matches may be replaced
without changing what the program computes.

A replacement is computed at the root from the values the region reads (the leaves the match
bound and the arguments of its nodes), and the region's nodes disappear. So a match is safe
only when

- every region node other than the root has all its users inside the region (``ESCAPE``),
- no region node is impure (random, of unknown effect, or in-place on a tensor that exists
  outside the region: ``IMPURE``); an in-place op on a tensor the region itself made
  (``s = q @ k.mT; s *= c``) is part of what the replacement computes, since nothing outside
  the region can see that tensor (the escape check) and reads of its old value after the write
  are caught as stale (``MUTATION``),
- every region node runs under the root's grad mode, autocast and inference mode: the
  replacement runs under the root's, so a score computed under ``no_grad`` would gain a
  gradient and a matmul under ``autocast`` would change dtype (``STATE``),
- no value the region reads may be written between the region node that reads it and the root:
  the replacement would read the new value where the region read the old one; graph inputs
  count as one value here, since two of them may be views of one tensor (``MUTATION``), and
  no value whose definition the match may have looked into (the region's inputs and what they
  are computed from, a few steps back) is read after a write to a computed tensor it is made
  of: its term then describes the value before the write (``MUTATION``);

and, once the body has built it, when the replacement keeps every gradient: an input of the
region that requires grad must be read by the replacement (``GRADIENT``, :func:`lost_gradient`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.fx

from ..graph.cse import TargetNames
from ..graph.effects import ALL, MERGEABLE, MUTATE, PURE, Effect, referenced
from ..graph.graph_effects import GraphEffects, Writers, bases
from ..graph.names import node_source
from ..graph.types import meta_value
from ..graph.view import FxTerm
from ..lang.match import Match
from .report import Hazard

Node = torch.fx.Node

# How far (in users) a stale value is followed: further than any guard of the standard rules
# looks into a bound value's definition (mask proofs read a handful of nodes).
STALE_DEPTH = 8

_INPUTS = ("placeholder", "get_attr")


def region_nodes(match: Match) -> list[Node]:
    """The graph nodes a match consumed (root first, each once)."""
    seen: dict[Node, None] = {}
    for t in match.region:
        if isinstance(t, FxTerm):
            seen.setdefault(t.node, None)
    return list(seen)


def region_inputs(match: Match, nodes: Iterable[Node]) -> list[Node]:
    """The values a region reads: the leaves the match bound and the arguments of its nodes
    that are not themselves in the region, each once."""
    inside = set(nodes)
    out: dict[Node, None] = {}
    for v in match.bindings.values():
        for t in v if isinstance(v, tuple) else (v,):
            if isinstance(t, FxTerm) and t.node not in inside:
                out.setdefault(t.node, None)
    for n in inside:
        for a in n._input_nodes:
            if a not in inside:
                out.setdefault(a, None)
    return list(out)


def check_region(match: Match, root: Node, owner: torch.nn.Module | None = None,
                 rep: dict[Node, Node] | None = None, writers: Writers | None = None,
                 names: TargetNames | None = None, nodes: list[Node] | None = None,
                 region: Callable[[Node], int] | None = None) -> tuple[Hazard, str] | None:
    """The hazard that makes replacing the match's region unsafe, with the reason in words, or
    None when it is safe (see the module docstring). ``rep`` maps nodes to their CSE
    representative when the graph was merged only virtually (``pypm.explain``), so that the
    users of every copy count. ``writers`` are the graph's writing nodes (found here when not
    given); ``nodes``: the match's region nodes, when the caller has them; ``region``: the
    global-state region of a node (:meth:`GraphEffects.region`, analysed here when not given)."""
    nodes = region_nodes(match) if nodes is None else nodes
    inside = set(nodes)
    if names is None:
        names = TargetNames(owner)
    for n in nodes:
        e = names.effect(n)
        if e.kind not in MERGEABLE and not (e.kind == MUTATE and _writes_inside(n, e, inside, names.effect)):
            return Hazard.IMPURE, f"%{n.name} ({node_source(n)}) is impure (random, in-place or I/O)"
    members: dict[Node, list[Node]] = {}
    for m, r in (rep or {}).items():
        members.setdefault(r, []).append(m)
    for n in nodes:
        if n is root:
            continue
        for copy in (n, *members.get(n, ())):
            for u in copy.users:
                if (rep or {}).get(u, u) not in inside:
                    return (Hazard.ESCAPE, f"intermediate %{n.name} ({node_source(n)}) is also used "
                            f"by %{u.name} ({node_source(u)}) outside the match")
    if writers is None:
        writers = Writers(root.graph, names.effect, names.kinds)
    found = _written_read(match, nodes, root, writers, names.effect)
    if found is not None:
        return Hazard.MUTATION, found
    if region is None:
        region = GraphEffects(root.graph, names.effect, names.kinds).region
    state = region(root)
    for n in nodes:
        if region(n) != state:
            return (Hazard.STATE, f"%{n.name} ({node_source(n)}) may run under another grad mode, "
                    f"autocast or inference mode than %{root.name}, where the replacement runs "
                    "(a change of mode, or a call of unknown effect, lies between them)")
    return None


def _writes_inside(n: Node, e: Effect, inside: set[Node], effect: Callable[[Node], Effect]) -> bool:
    """Whether in-place node ``n`` writes only tensors made inside the region: every tensor it
    writes is a view of region nodes that compute fresh values."""
    if e.writes is ALL:
        return False
    targets = list(referenced(n, e.writes))
    if not targets:
        return False
    for t in targets:
        for b in bases(t, effect):
            if b not in inside or effect(b).kind != PURE:
                return False
    return True


def unsafe_reason(match: Match, root: Node, owner: torch.nn.Module | None = None,
                  rep: dict[Node, Node] | None = None) -> str | None:
    """Why replacing the match's region would change the program, or None if it is safe
    (:func:`check_region`'s reason)."""
    found = check_region(match, root, owner, rep)
    return None if found is None else found[1]


def _earliest(nodes: list[Node]) -> Node:
    try:
        return min(nodes)  # fx nodes compare by position
    except TypeError:  # nodes without an order: walk back from the first
        inside, n, first = set(nodes), nodes[0], nodes[0]
        while n.op != "root":
            if n in inside:
                first = n
            n = n.prev
        return first


def _written_read(match: Match, nodes: list[Node], root: Node, writers: Writers,
                  effect: Callable[[Node], Effect]) -> str | None:
    """A write that changes what the region reads (see the module docstring), in words."""
    before = writers.before(root)
    if not before:
        return None
    inputs = region_inputs(match, nodes)
    first = _earliest(nodes)
    # Where the region reads each input: the region nodes that take it (a bound value that no
    # region node takes counts as read at the earliest one).
    readers: dict[Node, list[Node]] = {x: [] for x in inputs}
    for n in nodes:
        for a in n._input_nodes:
            if a in readers:
                readers[a].append(n)
    read: dict[Node, list[Node]] = {}
    for x in inputs:
        for b in bases(x, effect):
            read.setdefault(b, []).append(x)
    # Graph inputs may be views of one tensor (nothing says they are not): a write to one may
    # change what any other reads.
    through_inputs = [x for b, xs in read.items() if b.op in _INPUTS for x in xs]
    for w in writers.between(first, root):
        for t in writers.targets(w):
            for b in bases(t, effect):
                for x in through_inputs if b.op in _INPUTS else read.get(b, ()):
                    # the replacement reads x at the root, after w: a hazard when the region
                    # read it before w
                    if any(_after(w, r) for r in readers[x] or [first]):
                        return (f"%{x.name}, which the match reads, may be written by %{w.name} "
                                f"({node_source(w)}) before %{root.name}")
    looked = [*inputs, *nodes]
    inside_set = set(nodes)
    for w in before:
        for t in writers.targets(w):
            for b in bases(t, effect):
                if b.op in ("placeholder", "get_attr"):
                    continue  # an input's term has no structure to go stale
                # a write by the region itself: its base's own term is what the writer read;
                # only what reads the base after the write is out of date
                stale = _stale_after(b, w, effect, views_stale=w not in inside_set)
                hit = next((x for x in looked if x in stale), None)
                if hit is not None:
                    return (f"%{hit.name} is computed from %{b.name} ({node_source(b)}) after "
                            f"%{w.name} ({node_source(w)}) writes it, so the match sees a "
                            "definition that is out of date")
    return None


def _stale_after(base: Node, writer: Node, effect: Callable[[Node], Effect],
                 views_stale: bool = True) -> set[Node]:
    """The values whose terms describe ``base`` as it was before ``writer`` wrote it: the
    views of ``base`` themselves (with ``views_stale`` False, only those made after the write:
    the ones before are what the writer itself read), and what reads one of them after the
    write, followed STALE_DEPTH users down."""
    views = {base}
    stack = [base]
    while stack:
        n = stack.pop()
        for u in n.users:
            if u not in views and u is not writer and base in bases(u, effect):
                views.add(u)
                stack.append(u)
    # with views_stale False (a write by the region itself) only the views made after the write
    stale = set(views) if views_stale else {v for v in views if v is not base and _after(v, writer)}
    frontier: list[Node] = []
    for v in views:
        for u in v.users:
            if u is not writer and u not in views and _after(u, writer):
                frontier.append(u)
    for _ in range(STALE_DEPTH):
        nxt = []
        for n in frontier:
            if n not in stale:
                stale.add(n)
                nxt.extend(n.users)
        frontier = nxt
    return stale


def _after(a: Node, b: Node) -> bool:
    try:
        return b < a
    except TypeError:
        n = b.next
        while n.op != "root":
            if n is a:
                return True
            n = n.next
        return False


def lost_gradient(inputs: Iterable[Node], new: Iterable[Node], out: Node) -> str | None:
    """An input of the region that requires grad (by its example value) and that the
    replacement does not read, directly or through the nodes the body added, in words; None
    when every such input keeps its gradient."""
    wanting = [x for x in inputs if getattr(meta_value(x), "requires_grad", False)]
    if not wanting:
        return None
    added = set(new)
    reached: set[Node] = set()
    stack = [out]
    while stack:
        n = stack.pop()
        if n in reached:
            continue
        reached.add(n)
        if n in added:
            stack.extend(n._input_nodes)
    for x in wanting:
        if x not in reached:
            return (f"%{x.name} requires grad, but the replacement does not read it: its gradient "
                    "would be lost")
    return None


__all__ = ["STALE_DEPTH", "check_region", "lost_gradient", "region_inputs", "region_nodes", "unsafe_reason"]
