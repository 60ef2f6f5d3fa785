"""Equality of values and guard evaluation: the interpreter's (``values_equal`` of
:mod:`pypm.lang.terms`, :mod:`pypm.lang.guards`) against the semantics' own (:mod:`.equality`,
:mod:`.guardsem`), and the laws each must obey.

* :func:`value_triples` draws three values that are often equal in a non-obvious way (``1``,
  ``1.0``, ``[1]`` against ``(1,)``, a term rebuilt from scratch) or nearly equal (``True`` for
  ``1``, a fresh NaN, a dtype for its name); :func:`equality_laws` checks agreement, symmetry,
  reflexivity (NaN-free values), transitivity, and that wrapping both sides in a term changes
  nothing (``Term.__eq__`` and its hash agree with ``values_equal``).
* :func:`guard_cases` draws a guard and an environment: numbers, symbolic sizes (sympy symbols
  without assumptions, so that comparisons are often undecided), terms with shapes and dtypes,
  literals; comparisons, chains, arithmetic, ``.shape[i]``, ``not``/``and``/``or``.
  :func:`guard_laws` checks agreement of the three-valued outcome (true, false, unknown, fails),
  that an unbound variable never makes a guard true, locality (only fv(g) matters) and
  monotonicity (a guard that is true or false with symbolic sizes keeps its value when the
  sizes are made concrete: unknown is "not yet known", never a value of its own).

``values_equal`` and the guard module are parameters, so that the mutants run the same laws.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from pypm.lang.syntax import GAttr, GBinary, GCompare, GConst, GExpr, GIndex, GName, GUnary, guard_free_vars
from pypm.lang.terms import Term, TermView, show_value

from . import guardsem
from .equality import equal


class LawFailure(AssertionError):
    """A law of equality or of guards does not hold; the message says which."""


# ---------------------------------------------------------------------------------------------
# Values


def _atoms() -> tuple[Any, ...]:
    import torch

    return (0, 1, 2, -1, 0.0, 1.0, 2.0, 0.5, True, False, None, "a", "b", "", float("inf"),
            float("-inf"), 2 ** 53, 2 ** 53 + 1, float(2 ** 53), torch.float16, torch.float32, "float16")


_NAN = "nan"  # a marker: each NaN is drawn as a fresh object


@functools.cache
def _atom_strategy() -> st.SearchStrategy[Any]:
    near = (0, 1, True, False, 1.0, 0.0)  # drawn more often: where bool/int/float bugs show
    return st.sampled_from((*near, *_atoms(), _NAN)).map(lambda a: float("nan") if a is _NAN else a)


def _values(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return _atom_strategy()
    inner = _values(depth - 1)
    return st.one_of(
        _atom_strategy(),
        st.lists(inner, max_size=2).map(tuple),
        st.lists(inner, max_size=2),
        st.builds(lambda op, args: Term(op, args), st.sampled_from(("f", "g")), st.lists(inner, max_size=2)),
    )


def _variant(draw: Callable[..., Any], v: Any) -> Any:
    """v rebuilt from fresh objects, often with an equal-looking change: an int as a float, a
    tuple as a list (and back), a boolean for its number, a dtype for its name."""
    import torch

    how = draw(st.integers(0, 5))
    if isinstance(v, float) and v != v:
        return float("nan")
    if isinstance(v, bool):
        return int(v) if how <= 1 else v
    if isinstance(v, int):
        return float(v) if how <= 1 else (bool(v) if how in (2, 3) and v in (0, 1) else v)
    if isinstance(v, float):
        return int(v) if how <= 1 and v.is_integer() else v
    if isinstance(v, torch.dtype):
        return str(v).split(".")[-1] if how == 0 else v
    if isinstance(v, (tuple, list)):
        items = [_variant(draw, x) for x in v]
        return items if (isinstance(v, tuple)) == (how <= 2) else tuple(items)
    if isinstance(v, Term):
        return Term(v.op, [_variant(draw, a) for a in v.args])
    return v


@st.composite
def value_triples(draw: Callable[..., Any]) -> tuple[Any, Any, Any]:
    """(a, b, c): b and c are mostly variants of a (equal or nearly), sometimes unrelated."""
    a = draw(_values(2))
    b = _variant(draw, a) if draw(st.integers(0, 3)) else draw(_values(2))
    c = _variant(draw, b) if draw(st.integers(0, 3)) else draw(_values(2))
    return a, b, c


def _has_nan(v: Any) -> bool:
    if isinstance(v, float):
        return v != v
    if isinstance(v, (tuple, list)):
        return any(_has_nan(x) for x in v)
    if isinstance(v, TermView):
        return any(_has_nan(x) for x in v.args)
    return False


def _show(v: Any) -> str:
    return f"{show_value(v)} ({type(v).__name__})"


def equality_laws(triple: tuple[Any, Any, Any], values_equal: Callable[[Any, Any], bool]) -> None:
    """``values_equal`` agrees with :func:`.equality.equal` and is an equivalence relation on
    NaN-free values (NaN is equal to nothing)."""
    a, b, c = triple
    for x, y in ((a, b), (b, c), (a, c), (a, a)):
        got, want = values_equal(x, y), equal(x, y)
        if got != want:
            raise LawFailure(f"values_equal({_show(x)}, {_show(y)}) is {got}, §1 says {want}")
        if values_equal(y, x) != got:
            raise LawFailure(f"values_equal is not symmetric on {_show(x)}, {_show(y)}")
        tx, ty = Term("wrap", (x,)), Term("wrap", (y,))
        if values_equal(tx, ty) != want:
            raise LawFailure(f"values_equal(wrap({_show(x)}), wrap({_show(y)})) is "
                             f"{values_equal(tx, ty)}, but the arguments are {'' if want else 'not '}equal")
    if not _has_nan(a) and not values_equal(a, a):
        raise LawFailure(f"values_equal is not reflexive on {_show(a)}")
    if values_equal(a, b) and values_equal(b, c) and not values_equal(a, c):
        raise LawFailure(f"values_equal is not transitive on {_show(a)}, {_show(b)}, {_show(c)}")


# ---------------------------------------------------------------------------------------------
# Guards


@dataclass(frozen=True)
class GuardCase:
    guard: GExpr
    env: dict[str, Any]

    def source(self) -> str:
        from pypm.lang.syntax import show_guard

        env = ", ".join(f"{k} ↦ {_show_env(v)}" for k, v in sorted(self.env.items()))
        return f"# guard: {show_guard(self.guard)}\n# σ: {{{env}}}"


def _show_env(v: Any) -> str:
    if isinstance(v, Term):
        return f"{v.op}[shape={v.shape}, dtype={v.dtype}]"
    return repr(v)


NUMERIC, TERMS, LITERAL = ("a", "b"), ("t", "u"), ("x", "y")


@functools.cache
def _symbols() -> tuple[Any, Any]:
    import sympy

    return sympy.Symbol("s0"), sympy.Symbol("s1")


def _sizes() -> tuple[Any, ...]:
    s0, s1 = _symbols()
    return (0, 1, 2, 3, 2.0, s0, s1, s0 + 1, 2 * s0, s0 * s1)


def _literals() -> tuple[Any, ...]:
    import torch

    return (0, 1, 1.0, True, False, None, "a", (1, 2), (), torch.float16, torch.float32)


def _pick(draw: Callable[..., Any], items: tuple[Any, ...]) -> Any:
    return items[draw(st.integers(0, len(items) - 1))]


def _num(draw: Callable[..., Any], depth: int) -> GExpr:
    kind = draw(st.integers(-1, 5 if depth < 2 else 3))
    if kind <= 0:
        return GName(_pick(draw, NUMERIC))
    if kind == 1:
        return GConst(draw(st.integers(0, 3)))
    if kind == 2:
        return GIndex(GAttr(GName(_pick(draw, TERMS)), "shape"), GConst(_pick(draw, (0, 0, 1, -1, 2))))
    if kind == 3:
        return GAttr(GName(_pick(draw, TERMS)), "ndim")
    return GBinary("+" if kind == 4 else "*", _num(draw, depth + 1), _num(draw, depth + 1))


def _any(draw: Callable[..., Any]) -> GExpr:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return _num(draw, 1)
    if kind == 1:
        return GName(_pick(draw, LITERAL + TERMS))
    if kind == 2:
        return GAttr(GName(_pick(draw, TERMS)), "shape")
    if kind == 3:
        return GAttr(GName(_pick(draw, TERMS)), "dtype")
    return GConst(_pick(draw, _literals()))


def _bool(draw: Callable[..., Any], depth: int) -> GExpr:
    kind = draw(st.integers(0, 7 if depth < 3 else 2))
    if kind == 0:
        return GConst(draw(st.booleans()))
    if kind == 1:  # an ordering (sometimes chained) of numbers
        ops = [_pick(draw, ("<", "<=", ">", ">=", "==", "!=")) for _ in range(draw(st.integers(1, 2)))]
        return GCompare(_num(draw, 1), tuple((op, _num(draw, 1)) for op in ops))
    if kind == 2:  # equality of anything
        return GCompare(_any(draw), ((_pick(draw, ("==", "!=")), _any(draw)),))
    if kind in (3, 4):
        return GUnary("not", _bool(draw, depth + 1))
    return GBinary("and" if kind in (5, 6) else "or", _bool(draw, depth + 1), _bool(draw, depth + 1))


def _term(draw: Callable[..., Any], name: str) -> Term:
    import torch

    shape = tuple(_pick(draw, _sizes()) for _ in range(draw(st.integers(1, 3))))
    shape = tuple(int(s) if isinstance(s, float) else s for s in shape)
    return Term(name, (), shape=shape, dtype=_pick(draw, (torch.float16, torch.float32)))


@st.composite
def guard_cases(draw: Callable[..., Any]) -> GuardCase:
    """A guard over a, b (numbers, often symbolic), t, u (terms with shapes and dtypes) and x, y
    (literals), with an environment binding most of them."""
    g = _bool(draw, 0)
    env: dict[str, Any] = {}
    for x in NUMERIC:
        env[x] = _pick(draw, _sizes())
    for x in TERMS:
        env[x] = _term(draw, x)
    for x in LITERAL:
        env[x] = _pick(draw, _literals())
    for x in list(env):
        if draw(st.integers(0, 19)) == 0:
            del env[x]
    return GuardCase(g, env)


def _their_outcome(guards: types.ModuleType, g: GExpr, env: dict[str, Any]) -> str:
    try:
        t = guards.truth3(guards.evaluate(g, env))
    except guards.GuardEvalError:
        return "fails"
    return "unknown" if t is None else ("true" if t else "false")


def _concrete(env: dict[str, Any], values: dict[Any, int]) -> dict[str, Any]:
    """env with every symbolic size replaced by a number."""
    def size(s: Any) -> Any:
        if isinstance(s, (int, float, str, bool, tuple, type(None))) or isinstance(s, TermView):
            return s
        if hasattr(s, "subs"):
            r = s.subs(values)
            return int(r) if r.is_Integer else r
        return s

    out: dict[str, Any] = {}
    for k, v in env.items():
        if isinstance(v, Term) and v.shape is not None:
            out[k] = Term(v.op, v.args, shape=tuple(size(s) for s in v.shape), dtype=v.dtype)
        else:
            out[k] = size(v)
    return out


def _match_holds(match: types.ModuleType, g: GExpr, env: dict[str, Any]) -> bool:
    """Whether the interpreter's M-Guard accepts σ = env for the guard g."""
    from pypm.lang.syntax import Guard, Wild

    p = Guard(Wild(), g)
    return bool(list(match.interpret({}, p, Term("c"), env)))


def guard_laws(case: GuardCase, guards: types.ModuleType, match: types.ModuleType | None = None,
               concrete: tuple[int, int] = (2, 3)) -> str:
    """The interpreter's guard evaluator against :mod:`.guardsem` and the laws of §6/§7. Returns
    the outcome (true, false, unknown, fails). ``match`` is the interpreter whose M-Guard must
    never accept a guard over an unbound variable (the evaluator itself may: ``True or x == x``
    does not read x, and §5 checks fv(g) ⊆ B before any match)."""
    if match is None:
        from pypm.lang import match
    g, env = case.guard, case.env
    want = guardsem.outcome(g, env)
    got = _their_outcome(guards, g, env)
    if got != want:
        raise LawFailure(f"the guard is {got}, §7 says {want}")
    if guards.holds(g, env) != (want == "true"):
        raise LawFailure(f"holds() is {guards.holds(g, env)} on a guard that is {want}")
    fv = guard_free_vars(g)
    for x in sorted(fv & env.keys()):
        less = {k: v for k, v in env.items() if k != x}
        if _match_holds(match, g, less) or guardsem.holds(g, less):
            raise LawFailure(f"M-Guard accepts the guard with {x} unbound")
    if _match_holds(match, g, env) != (want == "true" and fv <= env.keys()):
        raise LawFailure(f"M-Guard {'accepts' if _match_holds(match, g, env) else 'refuses'} a guard "
                         f"that is {want}")
    local = {k: v for k, v in env.items() if k in fv}
    more = {**env, "unrelated": 1, **{k: 0 for k in NUMERIC + TERMS + LITERAL if k not in fv}}
    for other in (local, more):
        if _their_outcome(guards, g, other) != got:
            raise LawFailure(f"the guard reads variables it does not mention: {got} under σ, "
                             f"{_their_outcome(guards, g, other)} under {sorted(other)}")
    if want in ("true", "false"):
        s0, s1 = _symbols()
        env2 = _concrete(env, {s0: concrete[0], s1: concrete[1]})
        after = _their_outcome(guards, g, env2)
        if after != want or guardsem.outcome(g, env2) != want:
            raise LawFailure(f"the guard is {want} on symbolic sizes but {after} with s0 = "
                             f"{concrete[0]}, s1 = {concrete[1]} (monotonicity)")
    return want


__all__ = ["GuardCase", "LawFailure", "equality_laws", "guard_cases", "guard_laws", "value_triples"]
