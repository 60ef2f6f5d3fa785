"""Pattern analyses that speed matching up without changing its results.

- ``root_ops``: which operators can stand at the root of a match of a pattern, and the
  index that tries only those nodes (``candidates``, ``match_everywhere``);
- ``skeleton``/``fits``: a necessary condition on a term's shape, checked before the matcher
  runs;
- ``resolve``/``call_of``: a pattern object as a program and the call that matches it.

Each is an optimisation beside the interpreter, never inside it: matching a pattern over a graph or a
term DAG only needs to try the nodes whose operator can head a match. ``root_ops`` computes that
set from the pattern (None when any value can match, e.g. a bare variable), and
:func:`match_everywhere` tries exactly those nodes. Tests check that it finds the same matches
as trying every node.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .guards import BUILTINS
from .load import PatternDef
from .match import Match
from .syntax import (
    Alt,
    Call,
    Definition,
    Exists,
    Fail,
    GAttr,
    GCall,
    Guard,
    Lit,
    Op,
    OpVar,
    Pattern,
    Program,
    Then,
    Var,
    Wild,
    guard_subexprs,
)
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




def resolve(pattern: Any) -> tuple[Program, Definition]:
    """The program Δ and definition of a pattern: a ``@pattern`` object (``.program`` and
    ``.definition``), a core Definition, or a ``(program, definition)`` pair."""
    if isinstance(pattern, tuple) and len(pattern) == 2:
        return dict(pattern[0]), pattern[1]
    if isinstance(pattern, Definition):
        return {pattern.name: pattern}, pattern
    program = getattr(pattern, "program", None)
    definition = getattr(pattern, "definition", None)
    if program is not None and isinstance(definition, Definition):
        prog = dict(program)
        prog.setdefault(definition.name, definition)
        return prog, definition
    raise TypeError(f"not a pattern: {pattern!r}")


# A skeleton is a necessary condition for a match, checked before the interpreter runs: None
# (any value), or a dict from operator name to the skeletons of its first arguments. It
# over-approximates the pattern (guards and literals are ignored, alternatives are merged
# position-wise, depth is capped), so a term that does not fit cannot match.
Skeleton = dict[str, tuple[Any, ...]] | None

SKELETON_DEPTH = 4


def _union(a: Skeleton, b: Skeleton) -> Skeleton:
    if a is None or b is None:
        return None
    out = dict(a)
    for op, kids in b.items():
        if op not in out:
            out[op] = kids
        else:
            mine = out[op]
            n = min(len(mine), len(kids))  # prefix arity: missing positions are unconstrained
            out[op] = tuple(_union(mine[i], kids[i]) for i in range(n))
    return out


def skeleton(program: Program, p: Pattern, env: Mapping[str, Skeleton] | None = None,
             depth: int = SKELETON_DEPTH, _calls: int = 0) -> Skeleton:
    """The skeleton of pattern p (see above). ``env`` refines variables (``p ; x ≍ q`` puts
    q's skeleton on x's occurrences in p)."""
    env = env or {}
    if depth <= 0 or _calls > 32:
        return None
    match p:
        case Var(x):
            return env.get(x)
        case Op(name, args):
            return {name: tuple(skeleton(program, a, env, depth - 1, _calls) for a in args)}
        case Alt(left, right):
            return _union(skeleton(program, left, env, depth, _calls),
                          skeleton(program, right, env, depth, _calls))
        case Exists(x, body):
            return skeleton(program, body, {k: v for k, v in env.items() if k != x}, depth, _calls)
        case Guard(body, _):
            return skeleton(program, body, env, depth, _calls)
        case Then(body, x, q):
            refined = {**env, x: skeleton(program, q, env, depth, _calls)}
            return skeleton(program, body, refined, depth, _calls)
        case Call(name, xs):
            d = program.get(name)
            if d is None:
                return None
            inner = {y: env[x] for y, x in zip(d.params, xs) if x in env}
            return skeleton(program, d.body, inner, depth, _calls + 1)
        case Fail():
            return {}
    return None  # wildcard, literal, operator variable


def fits(v: Any, sk: Skeleton) -> bool:
    """Whether a value can possibly match a pattern with skeleton ``sk``."""
    if sk is None:
        return True
    if not isinstance(v, TermView):
        return False
    kids = sk.get(v.op)
    if kids is None:
        return False
    args = v.args
    if len(kids) > len(args):
        return False
    for a, k in zip(args, kids):
        if k is not None and not fits(a, k):
            return False
    return True


TYPE_ATTRS = frozenset({"shape", "dtype", "ndim", "device"})


def reads_types(p: Pattern) -> bool:
    """Whether a guard in p (not counting called definitions) reads a term's shape, dtype,
    rank or device, or calls a function that may (registered guard functions)."""
    match p:
        case Guard(body, g):
            for e in guard_subexprs(g):
                if (isinstance(e, GAttr) and e.attr in TYPE_ATTRS) or (
                        isinstance(e, GCall) and e.func not in BUILTINS):
                    return True
            return reads_types(body)
        case Op(_, args) | OpVar(_, args):
            return any(reads_types(a) for a in args)
        case Alt(left, right):
            return reads_types(left) or reads_types(right)
        case Exists(_, body):
            return reads_types(body)
        case Then(body, _, q):
            return reads_types(body) or reads_types(q)
    return False


def call_of(definition: Definition) -> Call:
    """The call ``P(y1..yn)`` that matches a definition with its own parameter names."""
    return Call(definition.name, definition.params, span=definition.span)


__all__ = ["Skeleton", "build_index", "call_of", "candidates", "fits", "match_everywhere", "reads_types",
           "resolve", "root_ops", "skeleton"]
