"""Rewrite safety (ARCHITECTURE.md, "Rewriting semantics"): which matches may be replaced
without changing what the program computes."""

from __future__ import annotations

import torch
import torch.fx

from ..graph.cse import is_impure
from ..graph.names import node_source
from ..graph.view import FxTerm
from ..lang.match import Match

Node = torch.fx.Node


def region_nodes(match: Match) -> list[Node]:
    """The graph nodes a match consumed (root first, each once)."""
    seen: dict[Node, None] = {}
    for t in match.region:
        if isinstance(t, FxTerm):
            seen.setdefault(t.node, None)
    return list(seen)


def unsafe_reason(match: Match, root: Node, owner: torch.nn.Module | None = None,
                  rep: dict[Node, Node] | None = None) -> str | None:
    """Why replacing the match's region would change the program, or None if it is safe: an
    intermediate used outside the region (it must survive, and would be computed twice), or an
    impure node (random, in-place) inside it. ``rep`` maps nodes to their CSE representative
    when the graph was merged only virtually (``pypm.explain``), so that the users of every
    copy count."""
    nodes = region_nodes(match)
    inside = set(nodes)
    for n in nodes:
        if is_impure(n, None, owner):
            return f"%{n.name} ({node_source(n)}) is impure (random, in-place or I/O)"
    members: dict[Node, list[Node]] = {}
    for m, r in (rep or {}).items():
        members.setdefault(r, []).append(m)
    for n in nodes:
        if n is root:
            continue
        for copy in (n, *members.get(n, ())):
            for u in copy.users:
                if (rep or {}).get(u, u) not in inside:
                    return (f"intermediate %{n.name} ({node_source(n)}) is also used by %{u.name} "
                            f"({node_source(u)}) outside the match")
    return None
