"""Hypothesis strategies for the conformance properties: programs Δ, terms, and test cases.

* :func:`programs` draws well-formed programs (§5) by construction: several definitions with
  guarded (mutual) recursion, every core construct (operator variables, ``∃``, guards from the
  closed guard language, ``;``), threading the set of definitely-bound variables so that guards
  and ``;`` only read what is bound, and ordering definitions so that every call that consumes
  no operator goes to a later definition (so every cycle of calls passes under an operator).
* :func:`terms` draws values with shared subterms over a small alphabet, so that random terms
  and patterns meet often; :func:`positive_term` builds a term from a pattern so that it matches
  (best effort: guards or ``;`` can still refuse it), and :func:`cases` mixes the two about half
  and half.
* :func:`ill_formed_programs` breaks one rule of §5 in a well-formed program and says which
  error class the checker must report.

All choices are hypothesis draws, so failures shrink to small programs and terms. The closed
guard language and the alphabet are shared with the Coq differential test.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import reject
from hypothesis import strategies as st

from pypm.lang.match import Interpreter
from pypm.lang.syntax import (
    Alt,
    Call,
    Definition,
    Exists,
    Fail,
    GBinary,
    GCall,
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
from pypm.lang.terms import Term, TermView, term_size, values_equal

from .declarative import guard_true

# The alphabet shared by patterns and terms. Operators have no fixed arity (prefix arity is
# part of what is tested); c and d are the usual leaves (graph inputs).
OPERATORS = ("f", "g", "h", "aten.mm")
LEAVES = ("c", "d")
LITERALS: tuple[Any, ...] = (0, 1, "a", True, None, (0, 1))
VALUE_PARAMS = ("x", "y", "z", "w")
OP_PARAMS = ("o1", "o2")
DEF_NAMES = ("P", "Q", "R", "S")
MAIN = "Main"


# Strategies are built once: building one per draw costs more than the draw.
_BOOL = st.booleans()


@functools.cache
def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


def _pick(draw: Callable[..., Any], items: Sequence[Any]) -> Any:
    """One of items (shrinking towards the first), like ``sampled_from`` without its set-up."""
    return items[draw(_ints(0, len(items) - 1))]


@dataclass(frozen=True)
class Case:
    """One conformance case: a program (with the query as definition ``Main``), the query
    pattern (Main's body, matched at the root of ``value``) and the initial substitution."""

    program: Program
    pattern: Pattern
    value: Any
    sigma: dict[str, Any] = field(default_factory=dict)
    positive: bool = False

    @property
    def params(self) -> tuple[str, ...]:
        return self.program[MAIN].params


# ---------------------------------------------------------------------------------------------
# Guards (the closed guard language)


def _guard(draw: Callable[..., Any], bound: list[str], ops: set[str], depth: int = 0) -> GExpr:
    """True | False | a == b | a != b | not g | g and g | g or g; atoms bound variables or
    literals (operator names for operator variables). At the top, sometimes ``a != l and b != l'
    and ...`` over several variables: usually true, and it reads each of them (where a guard
    may be placed depends on all the variables it reads)."""
    if depth == 0 and len(bound) >= 2 and draw(_ints(0, 3)) == 0:
        names = sorted(set(bound))[:3]
        conj: GExpr | None = None
        for a in names:
            lit = _pick(draw, (OPERATORS + LEAVES)) if a in ops else _pick(draw, LITERALS)
            c = GCompare(GName(a), (("!=", GConst(lit)),))
            conj = c if conj is None else GBinary("and", conj, c)
        assert conj is not None
        return conj
    kind = _pick(draw, ((0, 1, 2, 3, 5, 6, 6) if depth < 2 else (0, 1, 2)))
    if kind == 0 or not bound:
        return GConst(draw(_BOOL))
    if kind in (1, 2):
        a = _pick(draw, (bound))
        if a in ops:
            b: GExpr = GConst(_pick(draw, (OPERATORS + LEAVES)))
        elif draw(_BOOL):
            b = GName(_pick(draw, (bound)))
        else:
            b = GConst(_pick(draw, (LITERALS)))
        return GCompare(GName(a), (("==" if kind == 1 else "!=", b),))
    if kind == 3:
        return GUnary("not", _guard(draw, bound, ops, depth + 1))
    return GBinary("and" if kind == 5 else "or", _guard(draw, bound, ops, depth + 1),
                   _guard(draw, bound, ops, depth + 1))


# ---------------------------------------------------------------------------------------------
# Patterns, threading the definitely-bound variables of §5 (as a map to the number of operators
# above the binding occurrence: a ``;`` continues at that depth).


@dataclass
class _Scope:
    """What a definition body may refer to while it is generated."""

    index: int                                  # position of the definition; Main is -1
    values: list[str]                           # value variables in scope
    ops: set[str]                               # operator variables in scope (a subset of names)
    sigs: dict[str, Definition]                 # every definition's signature
    binds: dict[str, frozenset[int]]            # parameter positions each generated one binds
    order: dict[str, int]                       # definition index
    fresh: list[int] = field(default_factory=lambda: [0])
    loose: bool = False                         # count `;` from where it stands (see programs)

    def new_local(self) -> str:
        self.fresh[0] += 1
        return f"t{self.fresh[0]}"


Bound = dict[str, int]


def _meet(a: Bound, b: Bound) -> Bound:
    return {x: min(a[x], b[x]) for x in a.keys() & b.keys()}


def _occurs_depth(x: str, p: Pattern, d: int) -> int | None:
    """Fewest operators above an occurrence of x in p (the count the checker uses for ``;``)."""
    match p:
        case Var(y):
            return d if y == x else None
        case OpVar(y, args) if y == x:
            return d
        case Op(_, args) | OpVar(_, args):
            found = [f for f in (_occurs_depth(x, a, d + 1) for a in args) if f is not None]
            return min(found) if found else None
        case Alt(left, right) | Then(left, _, right):
            found = [f for f in (_occurs_depth(x, left, d), _occurs_depth(x, right, d)) if f is not None]
            return min(found) if found else None
        case Exists(y, body):
            return None if y == x else _occurs_depth(x, body, d)
        case Guard(body, _):
            return _occurs_depth(x, body, d)
        case Call(_, xs):
            return d if x in xs else None
    return None


# Constructors by number: 0 _, 1 x, 2 literal, 3 leaf operator or ⊥, 4 f(p̄), 5 x(p̄), 6 |, 7 ∃,
# 8 call, 9 guard, 10 `;`. Leaves first (hypothesis shrinks towards them); compound patterns
# repeated so that they are drawn more often than leaves while the budget lasts.
_KINDS = (0, 1, 2, 3, 1, 1, 4, 4, 4, 5, 5, 6, 6, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10)
_LEAF_KINDS = (0, 1, 2, 3, 1, 1)
_ROOT_KINDS = (4, 6, 10, 1, 7, 9, 8, 4, 6)  # a definition's body: mostly compound


def _pattern(draw: Callable[..., Any], sc: _Scope, bound: Bound, depth: int,
             budget: int, kind: int | None = None) -> tuple[Pattern, Bound]:
    """A pattern well-formed under ``bound``, and the variables bound after it (``kind``
    forces the constructor at the root)."""
    if kind is None:
        kind = _pick(draw, (_KINDS if budget > 0 else _LEAF_KINDS))
    if kind == 0:
        return Wild(), bound
    if kind == 1:
        if not sc.values:
            return Wild(), bound
        x = _pick(draw, (sc.values))
        return Var(x), {**bound, x: min(depth, bound.get(x, depth))}
    if kind == 2:
        return Lit(_pick(draw, (LITERALS))), bound
    if kind == 3:
        if draw(_ints(0, 3)) == 0:
            return Op(_pick(draw, (LEAVES)), ()), bound
        return Fail() if draw(_ints(0, 7)) == 0 else Wild(), bound
    if kind in (4, 5):  # f(p1..pn) or x(p1..pn)
        n = draw(_ints(0, 3))
        out = bound
        head: str | None = None
        if sc.ops and (kind == 5 or draw(_ints(0, 2)) == 0):
            head = _pick(draw, (sorted(sc.ops)))
            out = {**out, head: min(depth, out.get(head, depth))}
        args = []
        for _ in range(n):
            a, out = _pattern(draw, sc, out, depth + 1, (budget - 1) // max(n, 1))
            args.append(a)
        if head is not None:
            return OpVar(head, tuple(args)), out
        return Op(_pick(draw, (OPERATORS)), tuple(args)), out
    if kind == 6:  # p1 | p2
        left, b1 = _pattern(draw, sc, bound, depth, budget // 2)
        right, b2 = _pattern(draw, sc, bound, depth, budget // 2)
        return Alt(left, right), _meet(b1, b2)
    if kind == 7:  # ∃x. p: a new local (sometimes of operator kind, sometimes shadowing), used in p
        shadow = sc.values and draw(_ints(0, 3)) == 0
        x = _pick(draw, (sc.values)) if shadow else sc.new_local()
        is_op = not shadow and draw(_ints(0, 4)) == 0
        values = sc.values if is_op or x in sc.values else [*sc.values, x]
        inner = _Scope(sc.index, values, sc.ops | ({x} if is_op else set()), sc.sigs, sc.binds, sc.order,
                       sc.fresh, sc.loose)
        body, out = _pattern(draw, inner, {k: d for k, d in bound.items() if k != x}, depth, budget - 1)
        if x not in free_vars(body):
            use: Pattern = OpVar(x, ()) if is_op else Var(x)
            body, out = (Alt(use, body), _meet(out, {**bound, x: depth})) if draw(_BOOL) else \
                (Op(_pick(draw, (OPERATORS)), (use, body)), {**out, x: depth + 1})
        out = {k: d for k, d in out.items() if k != x}
        if x in bound:  # a shadowed variable is as bound as it was before
            out[x] = bound[x]
        return Exists(x, body), out
    if kind == 8:  # P(x̄)
        return _call(draw, sc, bound, depth)
    if kind == 9:  # p ? g; the body often an operator, whose arguments bind the guard's variables
        body, out = _pattern(draw, sc, bound, depth, budget - 1,
                             kind=4 if budget > 1 and draw(_ints(0, 2)) == 0 else None)
        new = sorted(out.keys() - bound.keys())  # mostly read what the body itself binds
        atoms = new if new and draw(_ints(0, 3)) else sorted(out)
        return Guard(body, _guard(draw, atoms, sc.ops)), out
    # p ; x ≍ q
    if sc.loose and depth > 0 and bound and draw(_BOOL):
        # `_ ; x ≍ q` under an operator, x bound further up: q is matched against σ(x), which
        # may be the root again, whatever the operators above the `;`.
        x = _pick(draw, (sorted(bound)))
        if x not in sc.ops:
            q, out2 = _pattern(draw, sc, bound, depth, budget // 2, kind=_pick(draw, ((8, 4))))
            return Then(Wild(), x, q), out2
    body, out = _pattern(draw, sc, bound, depth, budget // 2)
    candidates = sorted(x for x in out if x not in sc.ops)
    new = [x for x in candidates if x not in bound]
    old = [x for x in candidates if x in bound]
    if sc.loose and old and draw(_BOOL):  # where the checker's count and the truth differ
        candidates = old
    elif new and draw(_ints(0, 3)):  # mostly continue from what the body itself binds
        candidates = new
    if not candidates:
        return body, out
    x = _pick(draw, (candidates))
    seen = _occurs_depth(x, body, depth)
    if sc.loose:  # operators above an occurrence in the body, else above the `;` (may loop)
        qdepth = depth if seen is None else seen
    else:  # what is really consumed (the binding's depth), never more than the checker counts
        qdepth = out[x] if seen is None else min(out[x], seen)
        if seen is None:
            qdepth = min(qdepth, depth)
    # q often an operator pattern: it consumes terms, which go into the result's region
    q, out2 = _pattern(draw, sc, out, qdepth, budget // 2, kind=4 if draw(_ints(0, 3)) == 0 else None)
    return Then(body, x, q), out2


def _call(draw: Callable[..., Any], sc: _Scope, bound: Bound, depth: int) -> tuple[Pattern, Bound]:
    """A call of a definition: any definition under an operator, a later one otherwise."""
    names = [n for n, i in sc.order.items() if depth > 0 or i > sc.index]
    names = [n for n in names if not sc.sigs[n].op_params or sc.ops]
    if not names or not sc.values:
        return Wild(), bound
    name = _pick(draw, (sorted(names)))
    d = sc.sigs[name]
    same = draw(_ints(0, 2)) == 0  # P(x, x): the callee's parameters must then agree
    first = _pick(draw, (sc.values))
    args = tuple(_pick(draw, (sorted(sc.ops))) if y in d.op_params else
                 first if same else _pick(draw, (sc.values)) for y in d.params)
    out = dict(bound)
    for i, x in enumerate(args):
        if i in sc.binds.get(name, frozenset()):
            out[x] = min(depth, out.get(x, depth))
    return Call(name, args), out


def _binds_params(d: Definition, binds: dict[str, frozenset[int]]) -> frozenset[int]:
    """Parameter positions a body always binds, from definitions already generated (others are
    assumed to bind nothing: fewer than the checker's greatest fixed point, so conservative)."""
    def after(p: Pattern, b: frozenset[str]) -> frozenset[str]:
        match p:
            case Var(x):
                return b | {x}
            case Op(_, args) | OpVar(_, args):
                b = b | ({p.var} if isinstance(p, OpVar) else frozenset())
                for a in args:
                    b = after(a, b)
                return b
            case Alt(left, right):
                return after(left, b) & after(right, b)
            case Exists(x, body):
                inner = after(body, b - {x}) - {x}
                return inner | {x} if x in b else inner
            case Call(name, xs):
                return b | {x for i, x in enumerate(xs) if i in binds.get(name, frozenset())}
            case Guard(body, _):
                return after(body, b)
            case Then(body, _, q):
                return after(q, after(body, b))
        return b

    got = after(d.body, frozenset())
    return frozenset(i for i, y in enumerate(d.params) if y in got)


@st.composite
def programs(draw: Callable[..., Any], max_defs: int = 3, budget: int = 10, loose: bool = False) -> Program:
    """A well-formed program: definitions P, Q, ... and ``Main`` (the query), as core ASTs.

    With ``loose``, a call inside q of ``p ; x ≍ q`` counts as guarded by the operators above
    the ``;`` (or above an occurrence of x in p) rather than by those really consumed above x's
    binding, so some programs recurse forever: the checker must reject those ("every program
    the checker accepts terminates"; an earlier check.py accepted them)."""
    n = draw(_ints(1, max_defs))
    sigs: dict[str, Definition] = {}
    for i in range(n):
        k = draw(_ints(1, 3))
        params = list(VALUE_PARAMS[:k])
        ops: frozenset[str] = frozenset()
        if draw(_ints(0, 2)) == 0:
            params.append(OP_PARAMS[0])
            ops = frozenset({OP_PARAMS[0]})
        sigs[DEF_NAMES[i]] = Definition(DEF_NAMES[i], tuple(params), Fail(), ops)
    order = {name: i for i, name in enumerate(sigs)}
    binds: dict[str, frozenset[int]] = {}
    program: Program = {}
    fresh = [0]
    for name in reversed(list(sigs)):  # later definitions first: unguarded calls go to them
        s = sigs[name]
        sc = _Scope(order[name], [y for y in s.params if y not in s.op_params], set(s.op_params),
                    sigs, binds, order, fresh, loose)
        # A definition with an operator parameter mostly starts with it, to have it used.
        root = 5 if s.op_params and draw(_BOOL) else _pick(draw, (_ROOT_KINDS))
        body, _ = _pattern(draw, sc, {}, 0, budget, root)
        d = Definition(name, s.params, body, s.op_params)
        binds[name] = _binds_params(d, binds)
        program[name] = d
    k = draw(_ints(1, 3))
    params = list(VALUE_PARAMS[:k])
    ops = frozenset()
    if draw(_BOOL):
        params.append(OP_PARAMS[1])
        ops = frozenset({OP_PARAMS[1]})
    sc = _Scope(-1, [y for y in params if y not in ops], set(ops), sigs, binds, order, fresh, loose)
    # The query is most often a call, as a rule's pattern is; never a bare leaf.
    root = 5 if ops and draw(_ints(0, 2)) == 0 else _pick(draw, ((8, *_ROOT_KINDS)))
    body, _ = _pattern(draw, sc, {}, 0, budget, root)
    program[MAIN] = Definition(MAIN, tuple(params), body, ops)
    return dict(sorted(program.items(), key=lambda kv: (kv[0] != MAIN, kv[0])))


# ---------------------------------------------------------------------------------------------
# Terms


def _leaf(draw: Callable[..., Any]) -> Any:
    if draw(_BOOL):
        return Term(_pick(draw, (LEAVES)), ())
    return _pick(draw, (LITERALS))


@st.composite
def terms(draw: Callable[..., Any], max_nodes: int = 7) -> Any:
    """A value with shared subterms: nodes built bottom-up, each argument a fresh leaf or an
    earlier node (the same object, as after CSE)."""
    pool: list[Any] = [_leaf(draw)]
    for _ in range(draw(_ints(0, max_nodes))):
        n = draw(_ints(0, 3))
        args = [pool[draw(_ints(0, len(pool) - 1))] if draw(_BOOL) else _leaf(draw)
                for _ in range(n)]
        pool.append(Term(_pick(draw, (OPERATORS)), args))
    return pool[-1]


_TERMS = {k: terms(max_nodes=k) for k in (1, 2, 7)}


class _GiveUp(Exception):
    pass


def positive_term(draw: Callable[..., Any], program: Program, p: Pattern, fuel: int = 6) -> Any:
    """A value built from p so that p matches it, as far as that is easy: variables bound twice
    get the same value, ``;`` first builds the value of its variable from q, calls unfold up to
    ``fuel`` times. Guards are not solved (a failing one just makes a negative case)."""
    sigma: dict[str, Any] = {}

    def inst(p: Pattern, sigma: dict[str, Any], fuel: int) -> Any:
        match p:
            case Wild() | Fail():
                return draw(_TERMS[1])
            case Var(x):
                if x not in sigma:
                    sigma[x] = draw(_TERMS[2])
                return sigma[x]
            case Lit(v):
                return v
            case Op(f, args):
                vals = [inst(a, sigma, fuel) for a in args]
                extra = [_leaf(draw) for _ in range(draw(_ints(0, 1)))]
                return Term(f, vals + extra)
            case OpVar(x, args):
                if not isinstance(sigma.get(x), str):
                    sigma[x] = _pick(draw, (OPERATORS + LEAVES))
                return Term(sigma[x], [inst(a, sigma, fuel) for a in args])
            case Alt(left, right):
                first, second = (right, left) if draw(_BOOL) else (left, right)
                if fuel <= 0 and _has_call(first) and not _has_call(second):
                    first = second
                return inst(first, sigma, fuel)
            case Exists(x, body):
                saved = sigma.pop(x, _MISSING)
                v = inst(body, sigma, fuel)
                sigma.pop(x, None)
                if saved is not _MISSING:
                    sigma[x] = saved
                return v
            case Call(name, xs):
                d = program.get(name)
                if d is None or fuel <= 0:
                    raise _GiveUp
                frame = {y: sigma[x] for y, x in zip(d.params, xs) if x in sigma}
                v = inst(d.body, frame, fuel - 1)
                for y, x in zip(d.params, xs):
                    if y in frame and x not in sigma:
                        sigma[x] = frame[y]
                return v
            case Guard(body, cond):
                v = inst(body, sigma, fuel)
                guard_true(cond, sigma)
                return v
            case Then(body, x, q):
                if x not in sigma:
                    sigma[x] = inst(q, sigma, fuel)
                return inst(body, sigma, fuel)
        raise TypeError(f"not a core pattern: {p!r}")

    try:
        return inst(p, sigma, fuel)
    except _GiveUp:
        return draw(_TERMS[7])


_MISSING = object()


def _has_call(p: Pattern) -> bool:
    match p:
        case Call():
            return True
        case Op(_, args) | OpVar(_, args):
            return any(_has_call(a) for a in args)
        case Alt(left, right) | Then(left, _, right):
            return _has_call(left) or _has_call(right)
        case Exists(_, body) | Guard(body, _):
            return _has_call(body)
    return False


# Near misses for each literal (a list of pairs: in a dict, 1 and True would be one key).
_SWAPS: tuple[tuple[Any, tuple[Any, ...]], ...] = (
    (True, (1, False)), (False, (0, None)), (1, (True, 0)), (0, (False, None, 1)), (None, (0, False)),
    ("a", ("b", "f")), ((0, 1), ((0,), (1, 0))))


def perturb(draw: Callable[..., Any], v: Any) -> Any:
    """v with one subterm changed a little: a literal swapped for a near one (``1`` for ``True``),
    an operator renamed, an argument dropped or added, a subterm replaced. Near misses are where
    equality and arity bugs show."""
    subs = _subvalues(v)
    target = _pick(draw, (subs))
    how = draw(_ints(0, 3))
    if isinstance(target, TermView):
        if how == 0:
            new: Any = Term(_pick(draw, (OPERATORS + LEAVES)), target.args)
        elif how == 1 and target.args:
            new = Term(target.op, target.args[:-1])
        elif how == 2:
            new = Term(target.op, (*target.args, _leaf(draw)))
        else:
            new = draw(_TERMS[2])
    else:
        near = next((alts for k, alts in _SWAPS if values_equal(k, target)), LITERALS)
        new = _pick(draw, (near))

    def rebuild(u: Any) -> Any:
        if u is target:
            return new
        if isinstance(u, TermView):
            return Term(u.op, [rebuild(a) for a in u.args])
        return u

    return rebuild(v)


def _subvalues(v: Any) -> list[Any]:
    from pypm.lang.terms import subterms

    return list(subterms(v))


@st.composite
def cases(draw: Callable[..., Any], max_defs: int = 3, budget: int = 10, loose: bool = False) -> Case:
    """A program, a term (about half built from the query so that it matches) and an initial σ
    (usually empty; sometimes binding a parameter to a subterm or operator name)."""
    program = draw(programs(max_defs=max_defs, budget=budget, loose=loose))
    main = program[MAIN]
    how = draw(_ints(0, 9))  # 0-4 built from the query, 5-7 built then perturbed, 8-9 random
    positive = how < 5
    if how < 8:
        value = positive_term(draw, program, main.body)
        if how >= 5:
            value = perturb(draw, value)
    else:
        value = draw(_TERMS[7])
    sigma: dict[str, Any] = {}
    if draw(_ints(0, 2)) == 0:
        x = _pick(draw, (main.params))
        subs = _subvalues(value)
        if x in main.op_params:
            names = [t.op for t in subs if isinstance(t, TermView)] or ["f"]
            sigma[x] = _pick(draw, (names))
        else:
            sigma[x] = _pick(draw, (subs))
    case = Case(program, main.body, value, sigma, positive)
    if not feasible(case):
        reject()
    return case


# A case is kept when the interpreter finishes it in this many steps (recursive alternations
# over deep terms have exponentially many matches, all of them legitimate but slow to check)
# and its term has at most this many distinct subterms (match_set enumerates over them).
MAX_STEPS = 20_000
MAX_SUBTERMS = 40


class _TooBig(Exception):
    pass


class _TooDeep(Exception):
    pass


class _StepCounter(Interpreter):
    """The interpreter, counting its steps and the depth of its active recursion."""

    def __init__(self, program: Program, max_depth: int):
        super().__init__(program)
        self.steps = 0
        self.depth = 0
        self.max_depth = max_depth

    def run(self, p: Pattern, v: Any, sigma: dict[str, Any]) -> Any:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise _TooBig
        gen = super().run(p, v, sigma)
        while True:
            self.depth += 1
            if self.depth > self.max_depth:
                raise _TooDeep
            try:
                item = next(gen)
            except StopIteration:
                return
            finally:
                self.depth -= 1
            yield item


def feasible(case: Case, keep_runaway: bool = True) -> bool:
    """Small enough to check quickly: see MAX_STEPS and MAX_SUBTERMS. A program that recurses
    past the fuel bound of §6 is kept when ``keep_runaway`` (the termination properties must see
    it; the desugaring property compares ill-formed programs too, and needs them to finish)."""
    from pypm.lang.syntax import size

    if len(_subvalues(case.value)) > MAX_SUBTERMS:
        return False
    bound = (term_size(case.value) + 1) * (sum(size(d.body) for d in case.program.values())
                                           + size(case.pattern))
    try:
        for _ in _StepCounter(case.program, bound).run(case.pattern, case.value, dict(case.sigma)):
            pass
    except _TooBig:
        return False
    except (_TooDeep, RecursionError):
        return keep_runaway
    return True
    return True


def case_size(case: Case) -> tuple[int, int]:
    """(term size, program size) of a case, for the summary."""
    from pypm.lang.syntax import size

    return term_size(case.value), sum(size(d.body) for d in case.program.values())


# ---------------------------------------------------------------------------------------------
# Ill-formed programs: one rule of §5 broken, with the error class the checker must raise.

ILL_FORMED_KINDS = ("ScopeError", "ArityError", "UnboundError", "LeftRecursionError",
                    "UnknownPatternError", "GuardError")


@st.composite
def ill_formed_programs(draw: Callable[..., Any]) -> tuple[Program, str]:
    """(program, expected error class name): a well-formed program with one violation added to
    the body of Main (or a new definition, for left recursion)."""
    program = dict(draw(programs(max_defs=2, budget=4)))
    kind = _pick(draw, (ILL_FORMED_KINDS))
    main = program[MAIN]
    value_params = [y for y in main.params if y not in main.op_params]
    body = main.body
    if kind == "ScopeError":
        if draw(_BOOL):
            bad: Pattern = Op("f", (body, Var("undeclared")))
        else:
            bad = Exists("unused", body) if "unused" not in free_vars(body) else Op("f", (body, Var("nope")))
    elif kind == "ArityError":
        d = program["P"]
        args = tuple(value_params[0] for _ in range(len(d.params) + _pick(draw, ((1, -1)))))
        if not args:
            args = (value_params[0],) * (len(d.params) + 1)
        bad = Op("f", (body, Call("P", args)))
    elif kind == "UnboundError":
        x = _pick(draw, (value_params))
        if draw(_BOOL):
            bad = Guard(Wild(), GCompare(GName(x), (("==", GConst(1)),)))
        elif draw(_BOOL):  # x occurs before the `;`, on one branch only
            bad = Then(Alt(Var(x), Wild()), x, Wild())
        else:  # x does not occur before the `;` at all
            bad = Then(Wild(), x, Wild())
        bad = Alt(bad, body) if draw(_BOOL) else Op("f", (bad, body))
    elif kind == "LeftRecursionError":
        if draw(_BOOL):
            loop: Pattern = Alt(Op("f", (Var("x"),)), Call("Loop", ("x",)))
        else:  # under g(...), but q of the inner `;` matches σ(x): the root again
            loop = Then(Var("x"), "x", Op("g", (Then(Wild(), "x", Call("Loop", ("x",))),)))
        program["Loop"] = Definition("Loop", ("x",), loop)
        bad = Alt(body, Call("Loop", (value_params[0],)))
    elif kind == "UnknownPatternError":
        bad = Op("f", (body, Call("Missing", (value_params[0],))))
    else:  # GuardError
        bad = Guard(body, GCall("no_such_guard_function", (GConst(1),)))
    program[MAIN] = Definition(MAIN, main.params, bad, main.op_params)
    return program, kind


__all__ = ["MAX_STEPS", "MAX_SUBTERMS", "Case", "ILL_FORMED_KINDS", "LEAVES", "LITERALS", "MAIN", "OPERATORS",
           "case_size", "cases", "feasible", "ill_formed_programs", "perturb", "positive_term", "programs",
           "terms"]
