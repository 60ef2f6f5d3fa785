"""Renaming the variables of a guard expression (used by M-Call's substitution body[ȳ := x̄])."""

from __future__ import annotations

from collections.abc import Mapping

from pypm.syntax import (
    GAttr,
    GBinary,
    GCall,
    GCompare,
    GConst,
    GExpr,
    GIndex,
    GName,
    GSlice,
    GTuple,
    GUnary,
)


def rename_guard(g: GExpr, env: Mapping[str, str]) -> GExpr:
    """g with every variable x replaced by env[x] (names not in env are kept)."""

    def go(e: GExpr | None) -> GExpr | None:
        return None if e is None else rename_guard(e, env)

    match g:
        case GName(name):
            return GName(env.get(name, name))
        case GConst():
            return g
        case GAttr(obj, attr):
            return GAttr(rename_guard(obj, env), attr)
        case GIndex(obj, index):
            return GIndex(rename_guard(obj, env), rename_guard(index, env))
        case GSlice(lo, hi, st):
            return GSlice(go(lo), go(hi), go(st))
        case GCall(func, args, kwargs):
            return GCall(func, tuple(rename_guard(a, env) for a in args),
                         tuple((k, rename_guard(e, env)) for k, e in kwargs))
        case GUnary(op, operand):
            return GUnary(op, rename_guard(operand, env))
        case GBinary(op, left, right):
            return GBinary(op, rename_guard(left, env), rename_guard(right, env))
        case GCompare(first, rest):
            return GCompare(rename_guard(first, env), tuple((op, rename_guard(e, env)) for op, e in rest))
        case GTuple(items):
            return GTuple(tuple(rename_guard(e, env) for e in items))
    raise TypeError(f"not a guard expression: {g!r}")


__all__ = ["rename_guard"]
