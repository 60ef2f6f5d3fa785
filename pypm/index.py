"""Root-operator index: which operators can stand at the root of a match of a pattern.

An optimisation beside the interpreter, never inside it: matching a pattern over a graph or a
term DAG only needs to try the nodes whose operator can head a match. ``root_ops`` computes that
set from the pattern (None when any value can match, e.g. a bare variable), and
:func:`match_everywhere` tries exactly those nodes. Tests check that it finds the same matches
as trying every node.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from .dsl import PatternDef
from .match import Match
from .syntax import Alt, Call, Exists, Fail, Guard, Lit, Op, OpVar, Pattern, Program, Then, Var, Wild
from .terms import TermView


def root_ops(program: Program, p: Pattern) -> frozenset[str] | None:
    """Operators that can head a value matched by p; None means "any value" (no filtering).

    Variables refined by M-Then count: in ``x ; x ≍ q`` (a local variable that is returned, as in
    ``out = Reshaped(y); assert ...; return out``) the value x stands for must match q, so its
    root operators are q's."""
    Env = dict[str, frozenset[str] | None]
    memo: dict[tuple[str, Any], frozenset[str] | None] = {}

    def go(p: Pattern, active: frozenset[str], env: Env) -> frozenset[str] | None:
        match p:
            case Op(f, _):
                return frozenset((f,))
            case Fail() | Lit():
                return frozenset()  # literals are not graph nodes
            case Var(x):
                return env.get(x)
            case Wild() | OpVar():
                return None
            case Alt(left, right):
                a, b = go(left, active, env), go(right, active, env)
                return None if a is None or b is None else a | b
            case Exists(x, body):
                return go(body, active, {k: v for k, v in env.items() if k != x})
            case Guard(body, _):
                return go(body, active, env)
            case Then(body, x, q):
                refined = go(q, active, env)
                inner = {k: v for k, v in env.items() if k != x}
                if refined is not None:
                    inner[x] = refined
                return go(body, active, inner)
            case Call(name, xs):
                d = program.get(name)
                if d is None:
                    return None
                inner = {y: env[x] for y, x in zip(d.params, xs) if env.get(x) is not None}
                key = (name, tuple(sorted(inner.items(), key=lambda kv: kv[0])))
                if key in memo:
                    return memo[key]
                if name in active:
                    # A call back to itself with no operator in between: the checker rejects
                    # such unguarded recursion, so this is an unchecked program; do not filter.
                    return None
                result = memo[key] = go(d.body, active | {name}, inner)
                return result
        return None

    return go(p, frozenset(), {})


def build_index(nodes: Iterable[Any]) -> dict[str, list[Any]]:
    """Terms by operator name, in the order given."""
    index: dict[str, list[Any]] = defaultdict(list)
    for n in nodes:
        if isinstance(n, TermView):
            index[n.op].append(n)
    return index


def candidates(pdef: PatternDef, nodes: list[Any], index: dict[str, list[Any]] | None = None) -> list[Any]:
    """The nodes worth trying as roots of ``pdef``, in the order of ``nodes``."""
    ops = root_ops(pdef.program, Call(pdef.name, pdef.params))
    if ops is None:
        return list(nodes)
    index = index if index is not None else build_index(nodes)
    if len(ops) == 1:
        return list(index.get(next(iter(ops)), []))
    keep = {id(n) for op in ops for n in index.get(op, [])}
    return [n for n in nodes if id(n) in keep]


def match_everywhere(pdef: PatternDef, nodes: list[Any], *, first_only: bool = True,
                     index: dict[str, list[Any]] | None = None, **bound: Any) -> Iterator[Match]:
    """Matches of ``pdef`` rooted at each candidate node (the first per node by default)."""
    for n in candidates(pdef, nodes, index):
        for m in pdef.matches(n, **bound):
            yield m
            if first_only:
                break


__all__ = ["build_index", "candidates", "match_everywhere", "root_ops"]
