"""Attention as data: an :class:`AttentionSpec` says which attention a graph computes.

    softmax(where(mask(b, h, q_idx, kv_idx), score_mod(scale * q·k, b, h, q_idx, kv_idx), fill)
            ++ [sink(b, h, q_idx)]) @ v         (the sink column, when present, is dropped)

with K/V taken before any repeat of their heads (``group`` query heads share one K/V head).
``score_mod`` and ``mask`` are small typed expression trees (:class:`Expr`) over the score ``s``,
the indices ``b, h, q_idx, kv_idx``, constants, and captured tensors indexed by index
expressions (``slopes[h]``, ``table[bucket[q_idx - kv_idx + 7], h]``, ``pad[b, kv_idx]``). A
mask is applied as written: ``mask_mode="fill"`` replaces masked scores by ``fill``
(``masked_fill``/``where``), ``"add"`` adds ``where(mask, 0, fill)`` (an additive mask). The mask's
structure class (full, causal, sliding window, chunked, prefix, arbitrary; padding and documents
as data-dependent parts) is proved by :mod:`.structure`, never guessed.

Plain data: hashable, printable (``str(spec)`` reads ``causal window=4096 softcap=50.0 gqa=4
sinks``), with a canonical digest (:meth:`AttentionSpec.digest`) that is the same in every process.
The reference semantics is :func:`pypm.kernels.spec_eval.evaluate`; ``to_flex`` gives the
FlexAttention form.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any

from .expr import (
    COMPARISONS,
    INDICES,
    KV_IDX,
    OPS,
    Q_IDX,
    B,
    Call,
    Captured,
    Const,
    Expr,
    H,
    Index,
    S,
    Score,
    Structure,
    call,
    captured,
    captured_names,
    lit,
    rename,
    render,
    walk,
)
from .structure import classify, describe_score_mod


@dataclass(frozen=True)
class AttentionSpec:
    """Which attention a graph computes (module docstring). ``structure`` is computed from
    ``mask`` by :func:`pypm.kernels.structure.classify` unless given."""

    group: int = 1                       # query heads per K/V head (GQA/MQA); 1: MHA
    scale: float | None = None           # None: 1/sqrt(head dim)
    score_mod: Expr = S                  # over the scaled score s and the indices
    mask: Expr | None = None             # True keeps a score; None keeps all
    fill: float = float("-inf")          # what a masked score becomes (or gets added)
    mask_mode: str = "fill"              # "fill": where(mask, x, fill); "add": x + where(mask, 0, fill)
    sinks: Expr | None = None            # an extra logit per (b, h, q_idx), its column dropped
    softmax_dtype: str | None = None     # the dtype softmax is computed in ("float32"), if cast
    dropout: float = 0.0                 # always 0: attention with dropout on is not a spec
    structure: Structure = field(default=None, compare=True)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.mask_mode not in ("fill", "add"):
            raise ValueError(f"mask_mode is 'fill' or 'add', not {self.mask_mode!r}")
        if self.group < 1:
            raise ValueError(f"group must be positive, got {self.group}")
        if self.dropout != 0.0:
            raise ValueError("an attention specification has dropout off")
        if not isinstance(self.fill, float):
            object.__setattr__(self, "fill", float(self.fill))
        if self.structure is None:
            object.__setattr__(self, "structure", classify(self.mask))

    def with_(self, **changes: Any) -> AttentionSpec:
        """A copy with fields changed (the structure recomputed when the mask changes)."""
        if "mask" in changes and "structure" not in changes:
            changes["structure"] = None
        return replace(self, **changes)

    @property
    def captured(self) -> tuple[str, ...]:
        return captured_names(self.score_mod, self.mask, self.sinks)

    def canonical(self) -> AttentionSpec:
        """The same specification with captured tensors named c0, c1, ... in order of first
        appearance (layers that differ only in which parameter they read compare equal)."""
        names = {n: f"c{i}" for i, n in enumerate(self.captured)}
        return self.with_(score_mod=rename(self.score_mod, names), mask=rename(self.mask, names),
                          sinks=rename(self.sinks, names), structure=self.structure)

    def digest(self) -> str:
        """A canonical hash (sha256 hex) of the canonical form: equal in every process."""
        c = self.canonical()
        text = "|".join(repr(x) for x in (c.group, c.scale, c.score_mod, c.mask, c.fill.hex(),
                                          c.mask_mode, c.sinks, c.softmax_dtype, c.structure))
        return hashlib.sha256(text.encode()).hexdigest()

    def score_mod_words(self) -> list[str]:
        """Names for the well-known score modifications: ``softcap=c``, ``alibi``, ``bias``."""
        return describe_score_mod(self.score_mod)

    def __str__(self) -> str:
        words = [str(self.structure)] if str(self.structure) else ["full"]
        words += self.score_mod_words()
        if self.mask is not None and not (math.isinf(self.fill) and self.mask_mode == "fill"):
            words.append(f"fill={self.mask_mode}:{self.fill:g}")
        if self.group > 1:
            words.append(f"gqa={self.group}")
        if self.sinks is not None:
            words.append("sinks")
        if self.scale is not None:
            words.append(f"scale={self.scale:.6g}")
        return " ".join(words)

    def describe(self) -> str:
        """Every field, one per line (what ``str`` abbreviates)."""
        lines = [str(self), f"  group={self.group} scale={self.scale} softmax_dtype={self.softmax_dtype}",
                 f"  score_mod: {render(self.score_mod)}",
                 f"  mask: {render(self.mask) if self.mask is not None else 'none'} "
                 f"({self.mask_mode} {self.fill!r})",
                 f"  structure: {self.structure.kind} {dict(self.structure.params)} "
                 f"{self.structure.data}",
                 f"  sinks: {render(self.sinks) if self.sinks is not None else 'none'}"]
        return "\n".join(lines)


__all__ = ["B", "COMPARISONS", "H", "INDICES", "KV_IDX", "OPS", "Q_IDX", "S", "AttentionSpec", "Call",
           "Captured", "Const", "Expr", "Index", "Score", "Structure", "call", "captured",
           "captured_names", "lit", "render", "rename", "walk"]
