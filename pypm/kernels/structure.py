"""The structure class of an attention mask, proved over the index domain with sympy.

A mask predicate is split into its conjuncts. Those over ``q_idx`` and ``kv_idx`` alone form the
*index part*; the others read captured tensors and are named by form: ``padding``
(``t[b, kv_idx]``), ``documents`` (``t[b, q_idx] == t[b, kv_idx]``), else ``data``.

The index part is decided, not guessed: each comparison is an affine inequality in the two
indices, normalised with sympy into one of three integer forms, ``kv_idx - q_idx <= c``,
``kv_idx <= c``, ``q_idx <= c`` (``<`` becomes ``<= c - 1``, ``>=`` a negation, ``==`` two
inequalities), or ``q_idx // C == kv_idx // C``; anything else stays an opaque proposition. The
predicate is then a propositional formula over these atoms, and each candidate class (full,
causal with the offsets that occur, sliding windows from pairs of them, chunked, prefix) is
checked for equivalence with sympy's SAT solver, under the axioms that order atoms of one form
(``d <= c1`` implies ``d <= c2`` when ``c1 <= c2``) and the domain facts (``q_idx, kv_idx >= 0``).
Leaving out true axioms only makes more assignments possible, so a proved equivalence holds for
every index and every length; an unproved one is "arbitrary". The sizes ``Sq``, ``Sk`` stay
symbolic: a window of 4096 is a window, whatever the example's length.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import sympy
from sympy.logic.boolalg import And, Equivalent, Implies, Not, Or, false, true
from sympy.logic.inference import satisfiable

from .expr import (
    COMPARISONS,
    KV_IDX,
    Q_IDX,
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
    walk,
)

_q, _k = sympy.symbols("q_idx kv_idx", integer=True, nonnegative=True)


def conjuncts(e: Expr) -> list[Expr]:
    if isinstance(e, Call) and e.op == "and":
        return conjuncts(e.args[0]) + conjuncts(e.args[1])
    return [e]


def _index_only(e: Expr) -> bool:
    return all(not isinstance(n, (Captured, Score)) and not (isinstance(n, Index) and n.name in ("b", "h"))
               for n in walk(e))


def _data_kind(e: Expr) -> str:
    """padding / documents / data, by the form of a conjunct that reads captured tensors."""
    core = e.args[0] if isinstance(e, Call) and e.op in ("ne",) and e.args[1] == Const(0) else e
    if isinstance(core, Captured) and core.index and core.index[-1] == KV_IDX \
            and all(isinstance(i, Const) or i == Index("b") for i in core.index[:-1]):
        return "padding"
    if isinstance(core, Call) and core.op == "eq":
        a, b = core.args
        if isinstance(a, Captured) and isinstance(b, Captured) and a.name == b.name \
                and a.index[:-1] == b.index[:-1] and {a.index[-1], b.index[-1]} == {Q_IDX, KV_IDX} \
                and all(isinstance(i, Const) or i == Index("b") for i in a.index[:-1]):
            return "documents"
    return "data"


def _sym(e: Expr) -> Any:
    """An index expression as a sympy expression (None when it is not one)."""
    if isinstance(e, Index):
        return {"q_idx": _q, "kv_idx": _k}.get(e.name)
    if isinstance(e, Const):
        return sympy.Integer(e.value) if isinstance(e.value, int) and not isinstance(e.value, bool) else None
    if isinstance(e, Call):
        xs = [_sym(a) for a in e.args]
        if any(x is None for x in xs):
            return None
        if e.op == "add":
            return xs[0] + xs[1]
        if e.op == "sub":
            return xs[0] - xs[1]
        if e.op == "neg":
            return -xs[0]
        if e.op == "mul":
            return xs[0] * xs[1]
        if e.op == "floordiv" and xs[1].is_Integer and xs[1] > 0:
            return sympy.floor(xs[0] / xs[1])
    return None


class _Atoms:
    """Interning of normalised atoms as sympy propositional symbols."""

    def __init__(self) -> None:
        self.table: dict[tuple[Any, ...], sympy.Symbol] = {}

    def atom(self, key: tuple[Any, ...]) -> sympy.Symbol:
        if key not in self.table:
            self.table[key] = sympy.Symbol(f"a{len(self.table)}")
        return self.table[key]

    def le(self, form: str, c: int) -> Any:
        """The atom ``form <= c`` (form D: kv - q, K: kv, Q: q), with the domain facts applied."""
        if form in ("K", "Q") and c < 0:
            return false
        return self.atom((form, c))

    def axioms(self) -> Any:
        out = []
        by_form: dict[str, list[tuple[int, sympy.Symbol]]] = {}
        for key, sym in self.table.items():
            if key[0] in ("D", "K", "Q"):
                by_form.setdefault(key[0], []).append((key[1], sym))
        for items in by_form.values():
            items.sort(key=lambda t: t[0])
            for (_, s1), (_, s2) in itertools.pairwise(items):
                out.append(Implies(s1, s2))
        return And(*out) if out else true


def _linear(cmp: str, lhs: Any, rhs: Any, atoms: _Atoms) -> Any:
    """``lhs cmp rhs`` over q, kv as a formula over normalised atoms (None when not affine in
    one of the forms)."""
    diff = sympy.expand(lhs - rhs)  # diff cmp 0
    if cmp in ("gt", "ge"):
        diff, cmp = -diff, {"gt": "lt", "ge": "le"}[cmp]
    poly = sympy.Poly(diff, _q, _k) if diff.free_symbols <= {_q, _k} else None
    if poly is None or poly.total_degree() > 1:
        return None
    a, b = int(poly.coeff_monomial(_q)), int(poly.coeff_monomial(_k))
    c = poly.coeff_monomial(1)
    if not c.is_Integer:
        return None
    c = int(c)
    if (a, b) == (0, 0):
        return _truth(cmp, c)
    g = abs(a) if b == 0 else abs(b)
    form = {(0, 1): "K", (1, 0): "Q", (-1, 1): "D"}.get((a // g, b // g)) if g else None
    sign = 1
    if form is None:
        form = {(0, -1): "K", (-1, 0): "Q", (1, -1): "D"}.get((a // g, b // g)) if g else None
        sign = -1
    if form is None or a % g or b % g:
        return None
    # diff = sign*g*X + c, X the form's expression; diff cmp 0
    if cmp == "eq":
        return _eq_form(form, sign, g, c, atoms)
    if cmp == "ne":
        inner = _eq_form(form, sign, g, c, atoms)
        return Not(inner)
    strict = cmp == "lt"
    # sign*g*X + c < 0  (or <= 0)
    if sign > 0:  # X < -c/g  or X <= -c/g
        bound = -c / g
        ub = (int(-(-bound // 1)) - 1) if strict else int(bound // 1)
        return atoms.le(form, ub)
    bound = c / g  # X > c/g or X >= c/g
    lb = (int(bound // 1) + 1) if strict else int(-(-bound // 1))
    return Not(atoms.le(form, lb - 1))


def _eq_form(form: str, sign: int, g: int, c: int, atoms: _Atoms) -> Any:
    if c % g:
        return false
    v = -sign * c // g
    return And(atoms.le(form, v), Not(atoms.le(form, v - 1)))


def _truth(cmp: str, c: int) -> Any:
    ok = {"lt": c < 0, "le": c <= 0, "eq": c == 0, "ne": c != 0}[cmp]
    return true if ok else false


def _chunk(e: Call) -> int | None:
    """C when ``e`` says ``q_idx // C == kv_idx // C`` (either way round)."""
    if e.op != "eq":
        return None
    a, b = (_sym(x) for x in e.args)
    if a is None or b is None:
        return None
    for x, y in ((a, b), (b, a)):
        if isinstance(x, sympy.floor) and isinstance(y, sympy.floor):
            rq, rk = sympy.simplify(x.args[0] / _q), sympy.simplify(y.args[0] / _k)
            if rq == rk and rq.is_Rational and rq > 0 and rq.p == 1:
                return int(rq.q)
    return None


def _formula(e: Expr, atoms: _Atoms) -> Any:
    """The predicate as a propositional formula over atoms (opaque atoms for what is not
    read)."""
    if isinstance(e, Const):
        return true if e.value else false
    if isinstance(e, Call):
        if e.op == "and":
            return And(_formula(e.args[0], atoms), _formula(e.args[1], atoms))
        if e.op == "or":
            return Or(_formula(e.args[0], atoms), _formula(e.args[1], atoms))
        if e.op == "not":
            return Not(_formula(e.args[0], atoms))
        if e.op in COMPARISONS:
            size = _chunk(e)
            if size is not None:
                return atoms.atom(("C", size))
            lhs, rhs = _sym(e.args[0]), _sym(e.args[1])
            if lhs is not None and rhs is not None and not (lhs.has(sympy.floor) or rhs.has(sympy.floor)):
                f = _linear(e.op, lhs, rhs, atoms)
                if f is not None:
                    return f
    return atoms.atom(("opaque", repr(e)))


def _equivalent(f: Any, g: Any, axioms: Any) -> bool:
    return not satisfiable(And(axioms, Not(Equivalent(f, g))))


@functools.lru_cache(maxsize=512)
def _classify_index(e: Expr | None) -> tuple[str, tuple[tuple[str, Any], ...]]:
    if e is None:
        return ("full", ())
    atoms = _Atoms()
    f = _formula(e, atoms)
    if any(k[0] == "opaque" for k in atoms.table):
        return ("arbitrary", ())
    axioms = atoms.axioms()
    d = sorted(k[1] for k in atoms.table if k[0] == "D")
    kk = sorted(k[1] for k in atoms.table if k[0] == "K")
    chunks = sorted(k[1] for k in atoms.table if k[0] == "C")
    candidates: list[tuple[str, tuple[tuple[str, Any], ...], Any]] = [("full", (), true)]
    for c in d:
        candidates.append(("causal", (("offset", c),), atoms.le("D", c)))
    for lo, hi in itertools.product(d, d):  # -left <= kv - q <= right, lo = -left - 1
        if lo < hi:
            candidates.append(("sliding_window", (("left", -lo - 1), ("right", hi)),
                               And(atoms.le("D", hi), Not(atoms.le("D", lo)))))
    for lo in d:
        candidates.append(("sliding_window", (("left", -lo - 1), ("right", None)), Not(atoms.le("D", lo))))
    for size in chunks:
        ch = atoms.atom(("C", size))
        candidates.append(("chunked", (("causal", None), ("size", size)), ch))
        for c in d:
            candidates.append(("chunked", (("causal", c), ("size", size)), And(ch, atoms.le("D", c))))
    for p, c in itertools.product(kk, d):
        candidates.append(("prefix", (("offset", c), ("prefix", p + 1)),
                           Or(atoms.le("K", p), atoms.le("D", c))))
    for kind, params, g in candidates:
        if _equivalent(f, g, axioms):
            return (kind, params)
    return ("arbitrary", ())


def classify(mask: Expr | None) -> Structure:
    """The structure of a mask predicate (module docstring); ``None`` is full attention."""
    if mask is None:
        return Structure("full")
    parts = conjuncts(mask)
    index_parts = [p for p in parts if _index_only(p)]
    data = tuple(sorted({_data_kind(p) for p in parts if not _index_only(p)}))
    index = None
    for p in index_parts:
        index = p if index is None else call("and", index, p)
    kind, params = _classify_index(index)
    return Structure(kind, tuple(sorted(params)), data)


def describe_score_mod(e: Expr) -> list[str]:
    """Words for a score modification: ``softcap=c`` for ``tanh(s / c) * c``, ``alibi`` for
    ``s + slope[h] * (kv_idx - q_idx)``, ``bias`` for another additive term, and
    ``score_mod`` for anything else; nothing for the identity."""
    if e == S:
        return []
    words: list[str] = []
    core = e
    terms: list[Expr] = []
    while isinstance(core, Call) and core.op == "add" and not _has_score(core.args[1]):
        terms.append(core.args[1])
        core = core.args[0]
    cap = _softcap(core)
    if cap is not None:
        words.append(f"softcap={cap!r}")
    elif core != S:
        return ["score_mod"]
    for t in reversed(terms):
        words.append("alibi" if _is_alibi(t) else "bias")
    return words


def _has_score(e: Expr) -> bool:
    return any(isinstance(n, Score) for n in walk(e))


def _softcap(e: Expr) -> float | None:
    if isinstance(e, Call) and e.op == "mul" and isinstance(e.args[1], Const):
        inner = e.args[0]
        if isinstance(inner, Call) and inner.op == "tanh":
            x = inner.args[0]
            cap = e.args[1].value
            if isinstance(x, Call) and x.op == "div" and x.args[0] == S and x.args[1] == Const(cap):
                return float(cap)
            if isinstance(x, Call) and x.op == "mul" and x.args[0] == S and isinstance(x.args[1], Const) \
                    and cap != 0 and x.args[1].value == 1.0 / cap:
                return float(cap)
    return None


def _is_alibi(t: Expr) -> bool:
    """``slope[h] * (kv_idx - q_idx)`` (or ``-slope[h] * (q_idx - kv_idx)``), slopes per head."""
    rel = _sym(Call("sub", (KV_IDX, Q_IDX)))
    if isinstance(t, Call) and t.op == "neg":
        t, flip = t.args[0], -1
    else:
        flip = 1
    if not (isinstance(t, Call) and t.op == "mul"):
        return False
    for slope, dist in ((t.args[0], t.args[1]), (t.args[1], t.args[0])):
        if isinstance(slope, Captured) and len(slope.index) == 1 and slope.index[0] == H:
            d = _sym(dist)
            if d is not None and sympy.expand(flip * d - rel) == 0:
                return True
    return False


__all__ = ["classify", "conjuncts", "describe_score_mod"]
