"""The declarative semantics of LANGUAGE.md §3, executable: ``σ ⊨ v : p`` under a program Δ.

This module decides the relation by searching for a derivation, one case per rule (M-Wild ..
M-Then), reading σ and never extending it: the premises of M-Op are independent conjunctions,
M-Exists tries witnesses, M-Call substitutes arguments for parameters with the locals renamed
apart. It deliberately shares no code with the interpreter (:mod:`pypm.lang.match`), which threads σ
left to right: equality of values is that of :mod:`.equality`, not ``values_equal``, and guards are
evaluated by :mod:`.guardsem`, not :mod:`pypm.lang.guards`; the conformance properties compare the two.

Deciding M-Exists needs a finite set of witnesses. For well-formed programs (§5) every local
that a derivation reads is bound by M-Var to a value the pattern is matched against, or by
M-OpVar to an operator name, and every value matched is a subterm of the root value (or of a
value in the initial σ). So the witnesses are those subterms, typed by how the local is used
(operator names for operator variables), which makes :func:`holds` a decision procedure on
well-formed programs. On ill-formed ones it may miss derivations that invent a value.

:func:`match_set` enumerates the declarative match set of a finite term: every σ ⊇ σ0 over
the free variables of p with values from the same finite universe, kept when σ ⊨ v : p, and
reduced to the ⊆-minimal ones. By monotonicity (§6) those describe every solution.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pypm.lang.syntax import (
    Alt,
    Call,
    Exists,
    Fail,
    GExpr,
    Guard,
    Lit,
    Op,
    OpVar,
    Pattern,
    Program,
    Then,
    Var,
    Wild,
    free_vars,
    guard_free_vars,
    rename_guard,
    show,
)
from pypm.lang.terms import TermView, show_value, subterms

from .equality import equal as values_equal
from .equality import value_key
from .guardsem import holds as guard_holds

Subst = Mapping[str, Any]


class DeclarativeLoop(Exception):
    """The derivation search met a goal that depends on itself: unguarded recursion (§5).

    The relation is inductive, so such a goal has no derivation through the cycle; rather than
    decide least fixed points, the checker refuses programs that are not guarded.
    """


@dataclass(frozen=True)
class Derivation:
    """A derivation of ``σ ⊨ value : pattern``: the last rule used and its premises.

    ``note`` records the rule's side condition in words: the witness of M-Exists, the
    definition of M-Call, the guard of M-Guard, the value looked up by M-Var or M-Then.
    """

    rule: str
    pattern: Pattern
    value: Any
    premises: tuple[Derivation, ...] = ()
    note: str = ""

    def rules(self) -> list[str]:
        """The rule names of the derivation, root first, depth first."""
        out = [self.rule]
        for d in self.premises:
            out.extend(d.rules())
        return out

    def show(self, indent: int = 0) -> str:
        """The derivation as an indented tree, one judgement per line."""
        pad = "  " * indent
        note = f"   [{self.note}]" if self.note else ""
        lines = [f"{pad}{self.rule}: {show_value(self.value)} : {show(self.pattern)}{note}"]
        lines.extend(d.show(indent + 1) for d in self.premises)
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Guards: ⟦g⟧σ by the semantics' own three-valued evaluator (.guardsem); true only when it is
# true: an unbound variable, a failure or an unknown value does not hold.


def guard_true(g: GExpr, sigma: Subst) -> bool:
    """⟦g⟧σ = true; false when g reads a variable that σ does not bind."""
    return guard_holds(g, sigma)


# ---------------------------------------------------------------------------------------------
# How a variable is used: as a value, as an operator name, or both. Types the witnesses of
# M-Exists and the candidates of match_set.

VALUE, OPERATOR = "value", "operator"


def _param_kinds(program: Program) -> dict[str, tuple[frozenset[str], ...]]:
    """For each definition, how each parameter is used by its body (least fixed point)."""
    kinds = {name: tuple(frozenset() for _ in d.params) for name, d in program.items()}
    changed = True
    while changed:
        changed = False
        for name, d in program.items():
            new = tuple(_uses(d.body, y, kinds) | (frozenset({OPERATOR}) if y in d.op_params else frozenset())
                        for y in d.params)
            if new != kinds[name]:
                kinds[name] = new
                changed = True
    return kinds


def _uses(p: Pattern, x: str, kinds: Mapping[str, tuple[frozenset[str], ...]]) -> frozenset[str]:
    match p:
        case Var(y):
            return frozenset({VALUE}) if y == x else frozenset()
        case Op(_, args):
            return frozenset().union(*(_uses(a, x, kinds) for a in args))
        case OpVar(y, args):
            own = frozenset({OPERATOR}) if y == x else frozenset()
            return own.union(*(_uses(a, x, kinds) for a in args))
        case Alt(left, right):
            return _uses(left, x, kinds) | _uses(right, x, kinds)
        case Exists(y, body):
            return frozenset() if y == x else _uses(body, x, kinds)
        case Call(name, args):
            ks = kinds.get(name, ())
            return frozenset().union(*(k for a, k in zip(args, ks) if a == x))
        case Guard(body, cond):
            own = frozenset({VALUE}) if x in guard_free_vars(cond) else frozenset()
            return own | _uses(body, x, kinds)
        case Then(body, y, q):
            own = frozenset({VALUE}) if y == x else frozenset()
            return own | _uses(body, x, kinds) | _uses(q, x, kinds)
    return frozenset()


def _locals(p: Pattern) -> set[str]:
    match p:
        case Exists(x, body):
            return {x} | _locals(body)
        case Op(_, args) | OpVar(_, args):
            return set().union(*(_locals(a) for a in args))
        case Alt(left, right):
            return _locals(left) | _locals(right)
        case Guard(body, _):
            return _locals(body)
        case Then(body, _, q):
            return _locals(body) | _locals(q)
    return set()


def _substitute(p: Pattern, env: Mapping[str, str], suffix: str) -> Pattern:
    """p with free variables renamed by env and every ∃-bound name given ``suffix``."""
    match p:
        case Wild() | Lit() | Fail():
            return p
        case Var(x):
            return Var(env.get(x, x))
        case Op(f, args):
            return Op(f, tuple(_substitute(a, env, suffix) for a in args))
        case OpVar(x, args):
            return OpVar(env.get(x, x), tuple(_substitute(a, env, suffix) for a in args))
        case Alt(left, right):
            return Alt(_substitute(left, env, suffix), _substitute(right, env, suffix))
        case Exists(x, body):
            return Exists(x + suffix, _substitute(body, {**env, x: x + suffix}, suffix))
        case Call(name, args):
            return Call(name, tuple(env.get(a, a) for a in args))
        case Guard(body, cond):
            return Guard(_substitute(body, env, suffix), rename_guard(cond, env))
        case Then(body, x, q):
            return Then(_substitute(body, env, suffix), env.get(x, x), _substitute(q, env, suffix))
    raise TypeError(f"not a core pattern: {p!r}")


# ---------------------------------------------------------------------------------------------
# The derivation search


class Checker:
    """Decides ``σ ⊨ v : p`` under one program, for values drawn from one finite universe.

    ``universe`` is every value a derivation may look at: the subterms of the root value and of
    the values of the initial σ. Results are memoised on (pattern, value, σ restricted to the
    free variables of the pattern), which is sound because the relation only reads those.
    """

    def __init__(self, program: Program, universe: Iterable[Any]):
        self.program = program
        values: dict[Any, Any] = {}
        for root in universe:
            for u in subterms(root):
                values.setdefault(value_key(u), u)
        self.values = list(values.values())
        ops: dict[Any, str] = {}
        for u in self.values:
            if isinstance(u, TermView):
                ops.setdefault(value_key(u.op), u.op)
        self.operators = list(ops.values())
        self.kinds = _param_kinds(program)
        self._memo: dict[Any, Derivation | None] = {}
        self._active: set[Any] = set()
        self._instances: dict[tuple[str, tuple[str, ...]], Pattern] = {}
        self._fv: dict[int, tuple[Pattern, frozenset[str]]] = {}
        self._witness: dict[int, tuple[Pattern, list[Any]]] = {}

    # -- helpers ------------------------------------------------------------------------------

    def candidates(self, kinds: frozenset[str]) -> list[Any]:
        """Values a variable used in these ways may take: subterms, operator names, or both."""
        out: list[Any] = []
        if VALUE in kinds:
            out.extend(self.values)
        if OPERATOR in kinds:
            seen = {value_key(u) for u in out}
            out.extend(f for f in self.operators if value_key(f) not in seen)
        return out

    def uses(self, p: Pattern, x: str) -> frozenset[str]:
        """How p reads x (through calls too)."""
        return _uses(p, x, self.kinds)

    def _free(self, p: Pattern) -> frozenset[str]:
        hit = self._fv.get(id(p))
        if hit is None:
            hit = self._fv[id(p)] = (p, free_vars(p))
        return hit[1]

    def _witnesses(self, p: Exists) -> list[Any]:
        hit = self._witness.get(id(p))
        if hit is None:
            ws = self.candidates(self.uses(p.body, p.var))
            # A local that no premise reads takes any value: one witness is enough.
            hit = self._witness[id(p)] = (p, ws or self.values[:1])
        return hit[1]

    def instance(self, name: str, args: tuple[str, ...]) -> Pattern | None:
        """body[ȳ := x̄] with the locals renamed apart from x̄ (M-Call); None if Δ(P) is not
        a definition of that arity."""
        key = (name, args)
        if key not in self._instances:
            d = self.program.get(name)
            if d is None or len(d.params) != len(args):
                self._instances[key] = None  # type: ignore[assignment]
            else:
                locs = _locals(d.body)
                k = 0
                while any(loc + "'" * k in args for loc in locs):
                    k += 1
                self._instances[key] = _substitute(d.body, dict(zip(d.params, args)), "'" * k)
        return self._instances[key]

    # -- the rules ----------------------------------------------------------------------------

    def derive(self, p: Pattern, v: Any, sigma: Subst) -> Derivation | None:
        """A derivation of ``σ ⊨ v : p``, or None when there is none."""
        fv = self._free(p)
        key = (id(p), value_key(v),
               frozenset((x, value_key(sigma[x])) for x in fv if x in sigma))
        if key in self._memo:
            return self._memo[key]
        if key in self._active:
            raise DeclarativeLoop(f"the goal {show_value(v)} : {p} depends on itself")
        self._active.add(key)
        try:
            result = self._rule(p, v, sigma)
        finally:
            self._active.discard(key)
        self._memo[key] = result
        return result

    def _rule(self, p: Pattern, v: Any, sigma: Subst) -> Derivation | None:
        match p:
            case Wild():
                return Derivation("M-Wild", p, v)
            case Var(x):
                if x in sigma and values_equal(sigma[x], v):
                    return Derivation("M-Var", p, v, note=f"σ({x}) = {show_value(v)}")
                return None
            case Lit(lit):
                if not isinstance(v, TermView) and values_equal(v, lit):
                    return Derivation("M-Lit", p, v)
                return None
            case Op(f, args):
                if not isinstance(v, TermView) or v.op != f or len(args) > len(v.args):
                    return None
                return self._all("M-Op", p, v, args, sigma, "")
            case OpVar(x, args):
                if not isinstance(v, TermView) or len(args) > len(v.args):
                    return None
                if x not in sigma or not values_equal(sigma[x], v.op):
                    return None
                return self._all("M-OpVar", p, v, args, sigma, f"σ({x}) = {v.op!r}")
            case Alt(left, right):
                d = self.derive(left, v, sigma)
                if d is not None:
                    return Derivation("M-AltL", p, v, (d,))
                d = self.derive(right, v, sigma)
                return None if d is None else Derivation("M-AltR", p, v, (d,))
            case Exists(x, body):
                for u in self._witnesses(p):
                    d = self.derive(body, v, {**sigma, x: u})
                    if d is not None:
                        return Derivation("M-Exists", p, v, (d,), f"{x} ↦ {show_value(u)}")
                return None
            case Call(name, args):
                inst = self.instance(name, args)
                if inst is None:
                    return None
                d = self.derive(inst, v, sigma)
                return None if d is None else Derivation("M-Call", p, v, (d,), f"Δ({name})")
            case Guard(body, cond):
                if not guard_true(cond, sigma):
                    return None
                d = self.derive(body, v, sigma)
                return None if d is None else Derivation("M-Guard", p, v, (d,), "⟦g⟧σ = true")
            case Then(body, x, q):
                if x not in sigma:
                    return None
                d1 = self.derive(body, v, sigma)
                if d1 is None:
                    return None
                w = sigma[x]
                d2 = self.derive(q, w, sigma)
                if d2 is None:
                    return None
                return Derivation("M-Then", p, v, (d1, d2), f"σ({x}) = {show_value(w)}")
            case Fail():
                return None  # no rule for ⊥
        raise TypeError(f"not a core pattern: {p!r}")

    def _all(self, rule: str, p: Pattern, v: Any, args: tuple[Pattern, ...], sigma: Subst,
             note: str) -> Derivation | None:
        premises = []
        for pi, vi in zip(args, v.args):
            d = self.derive(pi, vi, sigma)
            if d is None:
                return None
            premises.append(d)
        return Derivation(rule, p, v, tuple(premises), note)


# ---------------------------------------------------------------------------------------------
# Public entry points


def derive(program: Program, sigma: Subst, value: Any, pattern: Pattern) -> Derivation | None:
    """A derivation of ``σ ⊨ value : pattern`` under Δ = program, or None."""
    checker = Checker(program, [value, *sigma.values()])
    return checker.derive(pattern, value, dict(sigma))


def holds(program: Program, sigma: Subst, value: Any, pattern: Pattern) -> bool:
    """Decide ``σ ⊨ value : pattern`` under Δ = program by the rules of §3 (see module doc)."""
    return derive(program, sigma, value, pattern) is not None


def match_set(program: Program, pattern: Pattern, value: Any,
              sigma: Subst | None = None) -> list[dict[str, Any]]:
    """The ⊆-minimal τ ⊇ σ with ``τ ⊨ value : pattern``, values drawn from the subterms of the
    value (operator names for operator variables). Ordered by size, then enumeration order.

    Variables of the pattern that no premise reads are never bound (binding them cannot make a
    σ minimal). The search tries each number of bound variables in turn and skips supersets of
    solutions already found, so what it keeps is minimal.
    """
    sigma = dict(sigma or {})
    checker = Checker(program, [value, *sigma.values()])
    names = sorted(free_vars(pattern) - sigma.keys())
    options = {x: checker.candidates(checker.uses(pattern, x)) for x in names}
    names = [x for x in names if options[x]]
    found: list[dict[str, Any]] = []
    found_keys: list[set[tuple[str, Any]]] = []
    for r in range(len(names) + 1):
        for chosen in itertools.combinations(names, r):
            for vals in itertools.product(*(options[x] for x in chosen)):
                keys = {(x, value_key(u)) for x, u in zip(chosen, vals)}
                if any(k <= keys for k in found_keys):
                    continue
                tau = {**sigma, **dict(zip(chosen, vals))}
                if checker.derive(pattern, value, tau) is not None:
                    found.append(tau)
                    found_keys.append(keys)
    return found


def subst_leq(small: Subst, big: Subst) -> bool:
    """σ ⊆ τ: every binding of σ is in τ with an equal value."""
    return all(x in big and values_equal(u, big[x]) for x, u in small.items())


__all__ = ["Checker", "DeclarativeLoop", "Derivation", "derive", "guard_true", "holds",
           "match_set", "subst_leq", "value_key"]
