"""What trying one rule at one node gives (:func:`pypm.rewrite.attempt.try_rule`): the graph was
rewritten (:class:`Applied`), every match was skipped (:class:`Skipped`, the first reason), or
the pattern did not match (:class:`NoMatch`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch.fx

from .report import Hazard, Rewrite, SkipKind

Node = torch.fx.Node


@dataclass(frozen=True)
class Applied:
    """The graph was rewritten: the report entry, the replacement, and the nodes it added."""

    rewrite: Rewrite
    out: Node
    new: tuple[Node, ...]
    skipped: tuple[Skipped, ...] = ()  # matches at the same root skipped before this one


@dataclass(frozen=True)
class Skipped:
    """A match that was not rewritten: who said no, why, and for unsafe ones which check."""

    kind: SkipKind
    reason: str
    hazard: Hazard | None = None
    bindings: dict[str, str] = field(default_factory=dict)  # the match's, as the report shows them
    skipped: tuple[Skipped, ...] = ()  # matches at the same root skipped before this one

    @staticmethod
    def unsafe(hazard: Hazard, reason: str) -> Skipped:
        """A match a safety or type check turned down."""
        return Skipped(SkipKind.UNSAFE, reason, hazard)

    def bound(self, bindings: dict[str, str]) -> Skipped:
        """The same, for the match with these bindings."""
        return replace(self, bindings=bindings)


@dataclass(frozen=True)
class NoMatch:
    """The rule's pattern has no match at the node."""


Outcome = Applied | Skipped | NoMatch

__all__ = ["Applied", "NoMatch", "Outcome", "Skipped"]
