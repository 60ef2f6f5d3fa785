"""Cases for the differential test of the Coq interpreter (coq/extract/pypm_interp), used by
``tests/test_coq.py`` and ``pypm conformance --oracle``.

* A serializer from the core AST of :mod:`pypm.lang.syntax` to the driver's one-line s-expression
  format (documented in ``coq/extract/driver.ml``), and the rendering of a result list in the
  driver's output format, so that a Python result list and a Coq one compare as strings.
* A simple generator of well-formed programs whose recursion is guarded in the sense of
  ``coq/Totality.v`` (an unguarded call goes to a later definition; the ``q`` of ``p ; x ≍ q``
  counts as unguarded), with terms built from the pattern about half of the time so that the
  cases have matches. The conformance generators of ``semantics/generators.py`` are used too;
  this one targets the exact hypotheses of ``interp_total_guarded``.

Only the part of the calculus the Coq model has: literals are ints, strings, booleans, None and
tuples of those; guards are the closed guard language (``==``, ``!=``, ``not``, ``and``, ``or``,
constants).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pypm.lang.syntax import (
    Alt,
    Call,
    Definition,
    Exists,
    Fail,
    GBinary,
    GCompare,
    GConst,
    GExpr,
    GName,
    Guard,
    GUnary,
    Lit,
    Op,
    OpVar,
    Pattern,
    Program,
    Then,
    Var,
    Wild,
    free_vars,
)
from pypm.lang.terms import Term, TermView

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class Unsupported(ValueError):
    """The case uses something the Coq model leaves out (floats, tuples, dtypes, other guards)."""


# ---------------------------------------------------------------------------------------------
# Serializer


def _name(x: str) -> str:
    if not _NAME.match(x) or x in ("_", "fail", "none", "true", "false"):
        raise Unsupported(f"name {x!r}")
    return x


def _quote(s: str) -> str:
    if "\n" in s or "\r" in s:
        raise Unsupported("newline in a string")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(v: Any) -> str:
    """A literal: ``(int N)``, ``(str "s")``, ``(bool b)``, ``none`` or ``(tuple l..)``."""
    if v is None:
        return "none"
    if isinstance(v, tuple):
        return "(tuple" + "".join(" " + literal(x) for x in v) + ")"
    if isinstance(v, bool):
        return "(bool true)" if v else "(bool false)"
    if isinstance(v, int):
        return f"(int {v})"
    if isinstance(v, str):
        return f"(str {_quote(v)})"
    raise Unsupported(f"literal {v!r}")


def value(v: Any) -> str:
    """A value: ``(term f v..)`` or a literal."""
    if isinstance(v, TermView):
        return "(term " + " ".join([_name(v.op), *(value(a) for a in v.args)]) + ")"
    return literal(v)


def _atom(e: GExpr) -> str:
    match e:
        case GName(x):
            return f"(var {_name(x)})"
        case GConst(v):
            return f"(lit {literal(v)})"
    raise Unsupported(f"guard atom {e!r}")


def guard(g: GExpr) -> str:
    """A guard of the closed language."""
    match g:
        case GConst(True):
            return "true"
        case GConst(False):
            return "false"
        case GCompare(a, ((op, b),)) if op in ("==", "!="):
            return f"({'eq' if op == '==' else 'neq'} {_atom(a)} {_atom(b)})"
        case GUnary("not", h):
            return f"(not {guard(h)})"
        case GBinary(op, left, right) if op in ("and", "or"):
            return f"({op} {guard(left)} {guard(right)})"
    raise Unsupported(f"guard {g!r}")


def pattern(p: Pattern) -> str:
    """A core pattern."""
    match p:
        case Wild():
            return "_"
        case Fail():
            return "fail"
        case Var(x):
            return f"(var {_name(x)})"
        case Lit(v):
            return f"(lit {literal(v)})"
        case Op(f, args):
            return "(op " + " ".join([_name(f), *(pattern(a) for a in args)]) + ")"
        case OpVar(x, args):
            return "(opvar " + " ".join([_name(x), *(pattern(a) for a in args)]) + ")"
        case Alt(left, right):
            return f"(alt {pattern(left)} {pattern(right)})"
        case Exists(x, body):
            return f"(exists {_name(x)} {pattern(body)})"
        case Call(name, xs):
            return "(call " + " ".join([_name(name), *(_name(x) for x in xs)]) + ")"
        case Guard(body, cond):
            return f"(guard {pattern(body)} {guard(cond)})"
        case Then(body, x, q):
            return f"(then {pattern(body)} {_name(x)} {pattern(q)})"
    raise Unsupported(f"pattern {p!r}")


def case_line(program: Program, p: Pattern, v: Any, sigma: Mapping[str, Any]) -> str:
    """One line for the driver: ``(case (program (def P (y..) body)..) p v (subst (x v)..))``."""
    defs = " ".join(f"(def {_name(d.name)} ({' '.join(_name(y) for y in d.params)}) {pattern(d.body)})"
                    for d in program.values())
    binds = " ".join(f"({_name(x)} {value(w)})" for x, w in sigma.items())
    return f"(case (program {defs}) {pattern(p)} {value(v)} (subst {binds}))"


def rcase_line(program: Program, p: Pattern, v: Any, sigma: Mapping[str, Any]) -> str:
    """The same case, asking for regions: ``(rcase ...)`` runs the extracted ``interp_r``."""
    return "(r" + case_line(program, p, v, sigma)[1:]


def region_results(found: Iterable[tuple[Mapping[str, Any], Iterable[Any]]]) -> str:
    """A list of (substitution, region) as the driver prints an ``rcase``:
    ``(rok (r (s (x v)..) (region v..))..)``."""
    parts = ["(r (s" + "".join(f" ({x} {value(s[x])})" for x in sorted(s)) + ") (region" +
             "".join(" " + value(t) for t in region) + "))" for s, region in found]
    return "(rok" + "".join(" " + p for p in parts) + ")"


def results(substs: Iterable[Mapping[str, Any]]) -> str:
    """A result list as the driver prints it: ``(ok (s (x v)..)..)``, bindings sorted by name."""
    parts = ["(s" + "".join(f" ({x} {value(s[x])})" for x in sorted(s)) + ")" for s in substs]
    return "(ok" + "".join(" " + p for p in parts) + ")"


# ---------------------------------------------------------------------------------------------
# A simple generator of guarded, well-formed programs (the Coq notion of guarded)

OPERATORS = ("f", "g", "h")
LEAVES = ("c", "d")
LITERALS: tuple[Any, ...] = (0, 1, "a", True, False, None, (0, 1), ())
PARAMS = ("x", "y", "z")


@dataclass(frozen=True)
class GeneratedCase:
    program: Program
    pattern: Pattern
    value: Any
    sigma: dict[str, Any]


# Constructors by number: 0 _, 1 x, 2 literal, 3 leaf operator or ⊥, 4 f(p̄), 5 x(p̄), 6 |, 7 ∃,
# 8 call, 9 guard, 10 `;`; compound ones repeated so that they are drawn more often.
_LEAF_KINDS = (0, 1, 1, 2, 3)
_KINDS = (*_LEAF_KINDS, 4, 4, 4, 5, 6, 6, 7, 8, 8, 9, 10, 10)


class _Gen:
    """Draws patterns for definition ``index`` of ``names`` (unguarded calls go to later ones)."""

    def __init__(self, rng: random.Random, names: list[str], params: dict[str, tuple[str, ...]],
                 binds: dict[str, frozenset[int]], index: int):
        self.rng, self.names, self.params, self.binds, self.index = rng, names, params, binds, index
        self.fresh = 0

    def guard(self, bound: list[str], depth: int = 0) -> GExpr:
        r = self.rng
        kind = r.randrange(7 if depth < 2 else 3)
        if kind == 0 or not bound:
            return GConst(r.random() < 0.7)
        if kind in (1, 2):
            a = GName(r.choice(bound))
            b: GExpr = GName(r.choice(bound)) if r.random() < 0.5 else GConst(r.choice(LITERALS))
            return GCompare(a, (("==" if kind == 1 else "!=", b),))
        if kind in (3, 4):
            return GUnary("not", self.guard(bound, depth + 1))
        return GBinary("and" if kind == 5 else "or", self.guard(bound, depth + 1),
                       self.guard(bound, depth + 1))

    def pat(self, scope: list[str], bound: set[str], under_op: bool, budget: int) -> tuple[Pattern, set[str]]:
        """A pattern well-formed after ``bound``; ``under_op``: below an operator (guarded)."""
        r = self.rng
        kind = r.choice(_LEAF_KINDS if budget <= 0 else _KINDS)
        if kind == 0:
            return Wild(), bound
        if kind == 1:
            if not scope:
                return Wild(), bound
            x = r.choice(scope)
            return Var(x), bound | {x}
        if kind == 2:
            return Lit(r.choice(LITERALS)), bound
        if kind == 3:
            return (Op(r.choice(LEAVES), ()) if r.random() < 0.8 else Fail()), bound
        if kind in (4, 5):
            out = set(bound)
            head = None
            if kind == 5 and scope:
                head = r.choice(scope)
                out.add(head)
            args = []
            n = r.randrange(4)
            for _ in range(n):
                a, out = self.pat(scope, out, True, (budget - 1) // max(n, 1))
                args.append(a)
            if head is not None:
                return OpVar(head, tuple(args)), out
            return Op(r.choice(OPERATORS), tuple(args)), out
        if kind == 6:
            left, b1 = self.pat(scope, bound, under_op, budget // 2)
            right, b2 = self.pat(scope, bound, under_op, budget // 2)
            return Alt(left, right), b1 & b2
        if kind == 7:
            self.fresh += 1
            x = f"t{self.fresh}"
            body, out = self.pat([*scope, x], bound - {x}, under_op, budget - 1)
            if x not in free_vars(body):  # §5: no unused locals
                body, out = Op(r.choice(OPERATORS), (Var(x), body)), out | {x}
            return Exists(x, body), out - {x}
        if kind == 8:
            callees = [n for i, n in enumerate(self.names) if under_op or i > self.index]
            if not callees or not scope:
                return Wild(), bound
            name = r.choice(callees)
            args = tuple(r.choice(scope) for _ in self.params[name])
            got = {x for i, x in enumerate(args) if i in self.binds.get(name, frozenset())}
            return Call(name, args), bound | got
        if kind == 9:
            body, out = self.pat(scope, bound, under_op, budget - 1)
            return Guard(body, self.guard(sorted(out))), out
        body, out = self.pat(scope, bound, under_op, budget // 2)
        if not out:
            return body, out
        x = r.choice(sorted(out))
        q, out2 = self.pat(scope, out, False, budget // 2)
        return Then(body, x, q), out2


def _after(p: Pattern, b: frozenset[str], binds: Mapping[str, frozenset[int]]) -> frozenset[str]:
    """The variables §5 says are bound after p (calls with the given table of bound positions)."""
    match p:
        case Var(x):
            return b | {x}
        case Op(_, args) | OpVar(_, args):
            if isinstance(p, OpVar):
                b = b | {p.var}
            for a in args:
                b = _after(a, b, binds)
            return b
        case Alt(left, right):
            return _after(left, b, binds) & _after(right, b, binds)
        case Exists(x, body):
            inner = _after(body, b - {x}, binds) - {x}
            return inner | {x} if x in b else inner
        case Call(name, xs):
            return b | {x for i, x in enumerate(xs) if i in binds.get(name, frozenset())}
        case Guard(body, _):
            return _after(body, b, binds)
        case Then(body, _, q):
            return _after(q, _after(body, b, binds), binds)
    return b


def generate_program(rng: random.Random, budget: int = 8) -> tuple[Program, Pattern, list[str]]:
    """Definitions P0..Pk (later ones first, so unguarded calls see their bound positions) and
    a query pattern over the variables it returns."""
    k = rng.randrange(1, 4)
    names = [f"P{i}" for i in range(k)]
    params = {n: PARAMS[: rng.randrange(1, 4)] for n in names}
    binds: dict[str, frozenset[int]] = {}
    program: dict[str, Definition] = {}
    for i in reversed(range(k)):
        name = names[i]
        gen = _Gen(rng, names, params, binds, i)
        body, _ = gen.pat(list(params[name]), set(), False, budget)
        got = _after(body, frozenset(), binds)
        binds[name] = frozenset(j for j, y in enumerate(params[name]) if y in got)
        program[name] = Definition(name, params[name], body)
    scope = ["a", "b", "c"]
    gen = _Gen(rng, names, params, binds, -1)
    if rng.random() < 0.5:
        name = rng.choice(names)
        query: Pattern = Call(name, tuple(rng.choice(scope) for _ in params[name]))
    else:
        query, _ = gen.pat(scope, set(), False, budget)
    return dict(sorted(program.items())), query, scope


def _leaf(rng: random.Random) -> Any:
    return Term(rng.choice(LEAVES), ()) if rng.random() < 0.5 else rng.choice(LITERALS)


def random_term(rng: random.Random, depth: int = 3) -> Any:
    if depth <= 0 or rng.random() < 0.3:
        return _leaf(rng)
    return Term(rng.choice(OPERATORS), [random_term(rng, depth - 1) for _ in range(rng.randrange(4))])


class _GiveUp(Exception):
    pass


def positive_term(rng: random.Random, program: Program, p: Pattern, fuel: int = 5) -> Any:
    """A value built from p so that p matches it, as far as that is easy (guards and ``;``
    may still refuse it, which makes a negative case)."""

    def inst(p: Pattern, sigma: dict[str, Any], fuel: int) -> Any:
        match p:
            case Wild() | Fail():
                return random_term(rng, 1)
            case Var(x):
                if x not in sigma:
                    sigma[x] = random_term(rng, 2)
                return sigma[x]
            case Lit(v):
                return v
            case Op(f, args):
                vals = [inst(a, sigma, fuel) for a in args]
                return Term(f, vals + [_leaf(rng) for _ in range(rng.randrange(2))])
            case OpVar(x, args):
                if not isinstance(sigma.get(x), str):
                    sigma[x] = rng.choice(OPERATORS + LEAVES)
                return Term(sigma[x], [inst(a, sigma, fuel) for a in args])
            case Alt(left, right):
                return inst(left if rng.random() < 0.5 else right, sigma, fuel)
            case Exists(x, body):
                had, saved = x in sigma, sigma.pop(x, None)
                v = inst(body, sigma, fuel)
                sigma.pop(x, None)
                if had:
                    sigma[x] = saved
                return v
            case Call(name, xs):
                d = program[name]
                if fuel <= 0:
                    raise _GiveUp
                frame = {y: sigma[x] for y, x in zip(d.params, xs) if x in sigma}
                v = inst(d.body, frame, fuel - 1)
                for y, x in zip(d.params, xs):
                    if y in frame and x not in sigma:
                        sigma[x] = frame[y]
                return v
            case Guard(body, _):
                return inst(body, sigma, fuel)
            case Then(body, x, q):
                if x not in sigma:
                    sigma[x] = inst(q, sigma, fuel)
                return inst(body, sigma, fuel)
        raise TypeError(f"not a core pattern: {p!r}")

    try:
        return inst(p, {}, fuel)
    except _GiveUp:
        return random_term(rng)


def _subvalues(v: Any) -> list[Any]:
    out = [v]
    if isinstance(v, TermView):
        for a in v.args:
            out.extend(_subvalues(a))
    return out


def generate_cases(n: int, seed: int = 0) -> list[GeneratedCase]:
    """n cases: about half with terms built from the query, the rest random; σ sometimes binds a
    query variable to a subterm."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        program, query, scope = generate_program(rng)
        v = positive_term(rng, program, query) if rng.random() < 0.6 else random_term(rng)
        sigma: dict[str, Any] = {}
        if rng.random() < 0.3:
            sigma[rng.choice(scope)] = rng.choice(_subvalues(v))
        out.append(GeneratedCase(program, query, v, sigma))
    return out
