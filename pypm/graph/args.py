"""Argument normalisation: a node's arguments in schema position, defaults filled in.

Keyword arguments go to their positions (an unknown keyword leaves the other positions
:class:`Unspecified`, so no literal matches them); dimension arguments are normalised
(negative for ``softmax``/``transpose``/reductions, non-negative for ``permute``) when the
input's rank is known, so ``softmax(x, 3)`` on a 4-d x is ``softmax(x, -1)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..lang import schema
from ..lang.terms import TermView
from .names import callable_key

_LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[Any, ...]] | None] = {}


def _schema_layout(op: str) -> tuple[tuple[str, ...], tuple[Any, ...]] | None:
    """(argument names, trailing defaults) of an operator, cached."""
    try:
        return _LAYOUTS[op]
    except KeyError:
        names = schema.arg_names(op)
        layout = _LAYOUTS[op] = None if names is None else (names, schema.defaults(op))
        return layout


def positional_names(target: Any) -> tuple[str, ...] | None:
    """Positional parameter names of a callable, when they differ from the canonical schema."""
    return schema.SIGNATURES.get(callable_key(target))


def place(op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any],
           positional: tuple[str, ...] | None = None) -> tuple[Any, ...]:
    """Put keyword arguments in schema position and fill in defaults (LANGUAGE.md §1)."""
    layout = _schema_layout(op)
    if layout is None:
        return tuple(args) + tuple(kwargs[k] for k in sorted(kwargs))
    names, dflts = layout
    if not kwargs and positional is None:  # the common case: positions already canonical
        if len(args) >= len(names):
            return tuple(args)
        return tuple(args) + _filled_defaults(op, names, dflts)[len(args):]
    by_name: dict[str, Any] = dict(kwargs)
    pos = positional or names
    extra: list[Any] = []
    for i, a in enumerate(args):
        if i < len(pos):
            by_name.setdefault(pos[i], a)
        else:
            extra.append(a)
    out: list[Any] = []
    first_default = len(names) - len(dflts)
    unknown = sorted(k for k in by_name if k not in names)
    # A keyword the schema table does not know (torch.var(x, correction=0)) can change what the
    # unnamed positions mean: never fill their defaults then, mark them as unknown instead, so
    # that no literal in a pattern matches them.
    marker = Unspecified(tuple((k, by_name[k]) for k in unknown)) if unknown else None
    for i, n in enumerate(names):
        if n in by_name:
            out.append(by_name[n])
        elif marker is not None:
            out.append(marker)
        elif i >= first_default:
            out.append(dflts[i - first_default])
        else:
            out.append(None)
    return tuple(out) + tuple(extra)


@dataclass(frozen=True)
class Unspecified:
    """An argument position whose value depends on keywords the schema table does not know."""

    given: tuple[tuple[str, Any], ...]

    def __repr__(self) -> str:
        return "<unspecified: " + ", ".join(f"{k}={v!r}" for k, v in self.given) + ">"


_FILLED: dict[str, tuple[Any, ...]] = {}


def _filled_defaults(op: str, names: tuple[str, ...], dflts: tuple[Any, ...]) -> tuple[Any, ...]:
    """One value per argument of op: its default, or None where it has none (cached)."""
    out = _FILLED.get(op)
    if out is None:
        out = _FILLED[op] = (None,) * (len(names) - len(dflts)) + tuple(dflts)
    return out


_ATEN_LAYOUT: dict[Any, tuple[tuple[str, ...], tuple[Any, ...]]] = {}


def aten_place(target: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    layout = _ATEN_LAYOUT.get(target)
    if layout is None:
        arguments = target._schema.arguments
        names = tuple(a.name for a in arguments)
        defs = tuple(a.default_value if a.has_default_value() else None for a in arguments)
        layout = _ATEN_LAYOUT.setdefault(target, (names, defs))
    names, defs = layout
    out = list(args[: len(names)])
    for n, d in zip(names[len(out):], defs[len(out):]):
        out.append(kwargs.get(n, d))
    return tuple(out)


def _norm_dim(d: Any, ndim: int, mode: str) -> Any:
    if isinstance(d, bool) or not isinstance(d, int):
        return d
    if mode == "neg":
        return d - ndim if d >= 0 else d
    return d + ndim if d < 0 else d


def normalise_dims(op: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    spec = schema.DIM_ARGS.get(op)
    if spec is None or not args or not isinstance(args[0], TermView):
        return args
    ndim = args[0].ndim
    if ndim is None:
        return args
    mode, positions = spec
    out = list(args)
    for i in positions:
        if i < len(out):
            a = out[i]
            if isinstance(a, tuple):
                out[i] = tuple(_norm_dim(d, ndim, mode) for d in a)
            else:
                out[i] = _norm_dim(a, ndim, mode)
    return tuple(out)

