"""Reports: what a rewrite pass did to one graph (each rewrite, each skipped match with its
reason, candidate roots that matched nothing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
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
    """One applied rewrite: which rule, at which root, with which bindings, giving which node,
    and what the rule says it recovered there (``note``: the text a rule body leaves in its
    replacement's ``meta[NOTE]``, e.g. an attention specification)."""

    rule: str
    root: str
    root_source: str
    bindings: dict[str, str]
    replacement: str
    note: str = ""

    def __str__(self) -> str:
        b = ", ".join(f"{k}={v}" for k, v in self.bindings.items())
        line = f"{self.rule}: {self.root_source}  ->  %{self.replacement}  [{b}]"
        return f"{line}\n      {self.note}" if self.note else line


# The node meta key under which a rule body may describe what it recovered (see Rewrite.note).
NOTE = "pypm_note"


class SkipKind(str, Enum):
    """Who said no to a match (compares equal to its value: ``kind == "unsafe"``)."""

    DECLINED = "declined"  # the rule body (returned None or raised Decline)
    UNSAFE = "unsafe"  # a check of the region or of the replacement (see Hazard)
    FAILED = "failed"  # the body raised an error while building the replacement
    NO_MATCH = "no match"  # the pattern (a candidate root's near miss, in report.misses)

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class Hazard(str, Enum):
    """Which check found an unsafe match (ARCHITECTURE.md, "Rewriting semantics")."""

    ESCAPE = "escape"  # an intermediate is used outside the region
    IMPURE = "impure"  # a region node is random, in-place or of unknown effect
    MUTATION = "mutation"  # a value the region reads may be written before the root
    GRADIENT = "gradient"  # an input requiring grad would lose its gradient
    TYPE = "type"  # shape, dtype or device differ, or cannot be checked
    LAYOUT = "layout"  # the root's strides cannot be kept
    STATE = "state"  # region nodes run under different grad-mode, autocast or inference-mode states

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


@dataclass(frozen=True)
class Skip:
    """A match that was not rewritten: its rule and root, ``kind`` (who said no), ``reason``
    in words, and for unsafe matches the ``hazard`` found."""

    rule: str
    root: str
    kind: SkipKind
    reason: str
    bindings: dict[str, str] = field(default_factory=dict)
    hazard: Hazard | None = None

    def __str__(self) -> str:
        return f"{self.rule} at %{self.root}: {self.kind}: {self.reason}"


class StopKind(str, Enum):
    """Why the sweeps ended."""

    FIXPOINT = "fixpoint"  # a sweep applied nothing
    SWEEP_CAP = "sweep cap"  # max_sweeps sweeps all rewrote something

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


@dataclass(frozen=True)
class Stop:
    """Why a pass stopped; at the cap, the rules that rewrote in the last sweep (their
    replacements match again) with their locations."""

    kind: StopKind
    rules: tuple[str, ...] = ()
    where: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind is StopKind.FIXPOINT:
            return "stopped at a fixpoint"
        named = ", ".join(f"{r} ({w})" if w else r for r, w in zip(self.rules, self.where))
        return f"stopped at the sweep cap: rule(s) {named} keep rewriting (their replacements match again)"


@dataclass
class RewriteReport:
    """What a :class:`RewritePass` did to one graph."""

    rewrites: list[Rewrite] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    misses: list[Skip] = field(default_factory=list)  # candidate roots the pattern did not match
    sweeps: int = 0
    stop: Stop | None = None  # why the sweeps ended
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
        if self.stop is not None and self.stop.kind is not StopKind.FIXPOINT:
            lines.append(f"  {self.stop}")
        lines += [f"  rewrote  {r}" for r in self.rewrites]
        lines += [f"  skipped  {s}" for s in self.skipped]
        shown = self.misses[:MAX_MISSES_SHOWN]
        lines += [f"  no match {s}" for s in shown]
        if len(self.misses) > len(shown):
            lines.append(f"  ... and {len(self.misses) - len(shown)} more candidate roots without a match")
        return "\n".join(lines)
