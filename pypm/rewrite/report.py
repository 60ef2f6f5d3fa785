"""Reports: what a rewrite pass did to one graph (each rewrite, each skipped match with its
reason, candidate roots that matched nothing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..graph.view import FxTerm, ParamTerm
from ..lang.terms import TermView

MAX_MISSES_SHOWN = 10  # a report prints this many candidate roots without a match


def show_binding(v: Any) -> str:
    if isinstance(v, FxTerm):
        return f"%{v.node.name}"
    if isinstance(v, ParamTerm):
        return v.qualname
    if isinstance(v, TermView):
        return f"<{v.op}>"
    return repr(v)


@dataclass(frozen=True)
class Rewrite:
    """One applied rewrite: which rule, at which root, with which bindings, giving which node."""

    rule: str
    root: str
    root_source: str
    bindings: dict[str, str]
    replacement: str

    def __str__(self) -> str:
        b = ", ".join(f"{k}={v}" for k, v in self.bindings.items())
        return f"{self.rule}: {self.root_source}  ->  %{self.replacement}  [{b}]"


@dataclass(frozen=True)
class Skip:
    """A match that was not rewritten: ``kind`` is "declined" (the body said no) or "unsafe"
    (the region check or the type check failed), with the reason in words."""

    rule: str
    root: str
    kind: str
    reason: str
    bindings: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.rule} at %{self.root}: {self.kind}: {self.reason}"


@dataclass
class RewriteReport:
    """What a :class:`RewritePass` did to one graph."""

    rewrites: list[Rewrite] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    misses: list[Skip] = field(default_factory=list)  # candidate roots the pattern did not match
    sweeps: int = 0
    nodes_before: int = 0
    nodes_after: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Rewrites per rule name."""
        out: dict[str, int] = {}
        for r in self.rewrites:
            out[r.rule] = out.get(r.rule, 0) + 1
        return out

    def reasons(self) -> list[str]:
        """The reasons of every skipped match and every near miss, in order."""
        return [s.reason for s in self.skipped] + [s.reason for s in self.misses]

    def __bool__(self) -> bool:
        return bool(self.rewrites)

    def __str__(self) -> str:
        lines = [f"{len(self.rewrites)} rewrite(s) in {self.sweeps} sweep(s), "
                 f"{self.nodes_before} -> {self.nodes_after} nodes, {self.seconds * 1e3:.1f} ms"]
        lines += [f"  rewrote  {r}" for r in self.rewrites]
        lines += [f"  skipped  {s}" for s in self.skipped]
        shown = self.misses[:MAX_MISSES_SHOWN]
        lines += [f"  no match {s}" for s in shown]
        if len(self.misses) > len(shown):
            lines.append(f"  ... and {len(self.misses) - len(shown)} more candidate roots without a match")
        return "\n".join(lines)
