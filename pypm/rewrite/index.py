"""The root-operator index: which rules are tried at a node, and which nodes are candidate
roots at all. It is the one candidate selector of the rewrite side (the driver, and
``pypm.explain`` for a single pattern): a pattern can only match at a node whose operator
can head a match (:func:`pypm.lang.analysis.root_ops`); a pattern that can match any value
(None) is tried everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import torch.fx

from ..errors import RewriteError
from .rule import Rule

Node = torch.fx.Node
T = TypeVar("T")

_NOT_ROOTS = ("output", "placeholder")


class RootIndex(Generic[T]):
    """Entries (rules, or anything with root operators) by the operators that can stand at the
    root of their matches, in the order given (ties keep it)."""

    def __init__(self, entries: Iterable[tuple[T, frozenset[str] | None]]):
        entries = list(entries)
        self.entries: list[T] = [e for e, _ in entries]
        self.anywhere: list[T] = [e for e, ops in entries if ops is None]
        position = {id(e): i for i, e in enumerate(self.entries)}
        by_op: dict[str, list[T]] = {}
        for e, ops in entries:
            for op in ops or ():
                by_op.setdefault(op, []).append(e)
        if self.anywhere:  # tried at every operator: listed under each, in order
            for op, listed in by_op.items():
                by_op[op] = sorted(listed + self.anywhere, key=lambda e: position[id(e)])
        self.by_op = by_op

    def for_op(self, op: str) -> list[T]:
        """The entries whose pattern may have ``op`` at its root, in order."""
        return self.by_op.get(op, self.anywhere)

    def admits(self, node: Node, names: Callable[[Node], str]) -> bool:
        """Whether some entry may match with ``node`` at the root."""
        return node.op not in _NOT_ROOTS and (bool(self.anywhere) or names(node) in self.by_op)

    def candidates(self, nodes: Iterable[Node], names: Callable[[Node], str]) -> list[Node]:
        """The nodes some entry may match at, in the order given."""
        if self.anywhere:
            return [n for n in nodes if n.op not in _NOT_ROOTS]
        by_op = self.by_op
        return [n for n in nodes if n.op not in _NOT_ROOTS and names(n) in by_op]


def rule_index(rules: Iterable[Rule]) -> RootIndex[Rule]:
    """Rules by root operator, highest priority first (declaration order on ties)."""
    rules = list(rules)
    for r in rules:
        if not isinstance(r, Rule):
            raise RewriteError(f"RewritePass takes rules made with @rule, not {type(r).__name__}")
    ordered = sorted(rules, key=lambda r: -r.priority)  # stable
    return RootIndex((r, r.root_ops) for r in ordered)


__all__ = ["RootIndex", "rule_index"]
