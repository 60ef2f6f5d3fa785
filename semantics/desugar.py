"""The surface desugarings of §7 against hand-written core.

:func:`desugar_cases` draws a generated case and sprinkles sugar over its program: infix
operators (``a @ b``, ``a + b``, ``a * b``, ``-a``), locals (``name = q`` then ``return p``),
``p & q``, ``(x := p)``, non-variable call arguments (``P(f(x))``, ``P(_)``) and ``assert g``.
Each sugared spot is a node that knows both its surface text and the core that LANGUAGE.md §7
says it means, written here by hand from the spec. :func:`agree` parses the surface text with
:func:`pypm.lang.parse.parse_module` and checks that the parsed program and the hand-written core
give the same matches on the case's term (as sets: the spec leaves the order of several locals'
``;`` open).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import reject
from hypothesis import strategies as st

from pypm.lang.match import interpret
from pypm.lang.syntax import (
    Alt,
    Call,
    Definition,
    Exists,
    GBinary,
    GCompare,
    GConst,
    GExpr,
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

from .declarative import value_key
from .generators import _BOOL, MAIN, Case, _guard, _ints, _pick, cases, feasible
from .surface import guard_source, literal_source, pattern_source

# Generated operators renamed to ones with infix syntax. Only operators whose infix form adds no
# argument: `a + b`, `a - b` and `a / b` desugar to add(a, b, 1), sub(a, b, 1), div(a, b, None)
# (Python's defaults, LANGUAGE.md §7 as implemented), which tests/test_desugar.py covers.
RENAME = {"f": "matmul", "g": "remainder", "h": "mul", "aten.mm": "neg"}
INFIX = {"matmul": "@", "remainder": "%", "mul": "*", "pow": "**"}


@dataclass(frozen=True)
class Conj:
    """``p & q`` (and ``(x := q)`` when ``walrus``, with p the variable x)."""

    left: Pattern
    right: Pattern
    fresh: str
    walrus: bool = False


@dataclass(frozen=True)
class SugarCall:
    """``P(a1..an)`` with some non-variable arguments, or with keyword arguments from position
    ``keywords`` on (``params`` names them; an omitted one is None). ``fresh`` names the core
    variables of the non-variable and omitted arguments, in order."""

    name: str
    args: tuple[Any, ...]       # str (a variable), a pattern, or None (omitted keyword)
    fresh: tuple[str, ...]
    params: tuple[str, ...] = ()
    keywords: int | None = None


@dataclass(frozen=True)
class SugarDef:
    """A definition with locals and asserts, its return pattern possibly holding sugar nodes."""

    name: str
    params: tuple[str, ...]
    op_params: frozenset[str]
    locals: tuple[tuple[str, Any], ...]
    asserts: tuple[GExpr, ...]
    ret: Any

    def source(self) -> str:
        params = ", ".join(f"{y}: Op" if y in self.op_params else y for y in self.params)
        lines = [f"def {self.name}({params}):"]
        lines += [f"    {t} = {sugar_source(q)}" for t, q in self.locals]
        lines += [f"    assert {guard_source(g)}" for g in self.asserts]
        lines.append(f"    return {sugar_source(self.ret)}")
        return "\n".join(lines) + "\n"

    def core(self) -> Definition:
        """The hand-written core of §7: ``∃t. (… ; t ≍ q)`` per local, where … is what follows
        the assignment (so the first local is outermost); asserts as guards around it all."""
        body = expand(self.ret)
        for t, q in reversed(self.locals):  # the first local's `;` is the outermost
            body = Then(body, t, expand(q))
        for t, _ in reversed(self.locals):
            body = Exists(t, body)
        for g in self.asserts:
            body = Guard(body, g)
        return Definition(self.name, self.params, body, self.op_params)


def sugar_source(p: Any) -> str:
    """Surface text of a pattern with sugar nodes (infix operators where they apply)."""
    match p:
        case Conj(left, right, _, walrus):
            if walrus:
                return f"({left.name} := {sugar_source(right)})"
            return f"({sugar_source(left)} & {sugar_source(right)})"
        case SugarCall(name, args, _, params, keywords):
            def one(a: Any) -> str:
                return a if isinstance(a, str) else sugar_source(a)
            k = len(args) if keywords is None else keywords
            parts = [one(a) for a in args[:k]]
            parts += [f"{params[i]}={one(a)}" for i, a in enumerate(args) if i >= k and a is not None]
            return f"{name}({', '.join(parts)})"
        case Op(f, (a, b)) if f in INFIX:
            return f"({sugar_source(a)} {INFIX[f]} {sugar_source(b)})"
        case Op("neg", (a,)) if not isinstance(a, Lit):
            return f"(-{sugar_source(a)})"
        case Op(f, args) | OpVar(f, args):
            return f"{f}({', '.join(sugar_source(a) for a in args)})"
        case Alt(left, right):
            return f"({sugar_source(left)} | {sugar_source(right)})"
        case Exists(x, body):
            return f"exists({x}, {sugar_source(body)})"
        case Guard(body, cond):
            return f"({sugar_source(body)} if {guard_source(cond)} else fail)"
        case Then(body, x, q):
            return f"then({sugar_source(body)}, {x}, {sugar_source(q)})"
        case Lit(v):
            return literal_source(v)
    return pattern_source(p)


def expand(p: Any) -> Pattern:
    """The core meaning of a pattern with sugar nodes, as LANGUAGE.md §7 states it."""
    match p:
        case Conj(left, right, z, _):
            if isinstance(left, Var):  # `x & q` and `(x := q)`: x ; x ≍ q
                return Then(left, left.name, expand(right))
            return Exists(z, Then(Then(Var(z), z, expand(left)), z, expand(right)))
        case SugarCall(name, args, fresh):
            # P(.., a, ..) = ∃y. P(.., y, ..) ; y ≍ a; an omitted keyword or `_` is just ∃y.
            names = list(a if isinstance(a, str) else None for a in args)
            k = iter(fresh)
            thens = []
            for i, a in enumerate(args):
                if not isinstance(a, str):
                    y = next(k)
                    names[i] = y
                    if a is not None and not isinstance(a, Wild):
                        thens.append((y, a))
            out: Pattern = Call(name, tuple(names))  # type: ignore[arg-type]
            for y, a in thens:
                out = Then(out, y, expand(a))
            for y in reversed([n for a, n in zip(args, names) if not isinstance(a, str)]):
                out = Exists(y, out)  # type: ignore[arg-type]
            return out
        case Op(f, args):
            return Op(f, tuple(expand(a) for a in args))
        case OpVar(x, args):
            return OpVar(x, tuple(expand(a) for a in args))
        case Alt(left, right):
            return Alt(expand(left), expand(right))
        case Exists(x, body):
            return Exists(x, expand(body))
        case Guard(body, cond):
            return Guard(expand(body), cond)
        case Then(body, x, q):
            return Then(expand(body), x, expand(q))
    return p


# ---------------------------------------------------------------------------------------------
# Sprinkling sugar over a generated definition


def _rename_ops(p: Pattern) -> Pattern:
    match p:
        case Op(f, args):
            return Op(RENAME.get(f, f), tuple(_rename_ops(a) for a in args))
        case OpVar(x, args):
            return OpVar(x, tuple(_rename_ops(a) for a in args))
        case Alt(left, right):
            return Alt(_rename_ops(left), _rename_ops(right))
        case Exists(x, body):
            return Exists(x, _rename_ops(body))
        case Guard(body, cond):
            return Guard(_rename_ops(body), _rename_guard_ops(cond))
        case Then(body, x, q):
            return Then(_rename_ops(body), x, _rename_ops(q))
    return p


def _rename_guard_ops(g: GExpr) -> GExpr:
    """Operator names compared in a guard (``o == "f"``), renamed like the operators."""
    match g:
        case GConst(str(name)) if name in RENAME:
            return GConst(RENAME[name])
        case GCompare(first, rest):
            return GCompare(_rename_guard_ops(first), tuple((op, _rename_guard_ops(e)) for op, e in rest))
        case GUnary(op, operand):
            return GUnary(op, _rename_guard_ops(operand))
        case GBinary(op, left, right):
            return GBinary(op, _rename_guard_ops(left), _rename_guard_ops(right))
    return g


def _rename_value(v: Any, memo: dict[int, Any]) -> Any:
    if not isinstance(v, TermView):
        return v
    if id(v) not in memo:
        memo[id(v)] = Term(RENAME.get(v.op, v.op), [_rename_value(a, memo) for a in v.args])
    return memo[id(v)]


class _Sprinkler:
    def __init__(self, draw: Callable[..., Any], d: Definition, program: Program):
        self.draw, self.d, self.program = draw, d, program
        self.count = 0
        self.locals: list[tuple[str, Any]] = []

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def walk(self, p: Pattern, top_scope: bool) -> Any:
        """Sugar at some argument positions; ``top_scope``: no ∃ above (locals may move out)."""
        match p:
            case Op(f, args) | OpVar(f, args):
                new = tuple(self.arg(a, top_scope) for a in args)
                return Op(f, new) if isinstance(p, Op) else OpVar(f, new)
            case Alt(left, right):
                return Alt(self.walk(left, top_scope), self.walk(right, top_scope))
            case Exists(x, body):
                return Exists(x, self.walk(body, False))
            case Guard(body, cond):
                return Guard(self.walk(body, top_scope), cond)
            case Then(body, x, q):
                return Then(self.walk(body, top_scope), x, self.walk(q, top_scope))
            case Call(name, xs) if xs and self.draw(_ints(0, 2)) == 0:
                i = self.draw(_ints(0, len(xs) - 1))
                callee = self.program[name]
                if callee.params[i] in callee.op_params:
                    return p
                if self.draw(_BOOL):  # keyword arguments from position i on, some omitted
                    kw_args = tuple(None if j >= i and self.draw(_ints(0, 2)) == 0 else x
                                    for j, x in enumerate(xs))
                    fresh = tuple(self.fresh("a") for a in kw_args if a is None)
                    return SugarCall(name, kw_args, fresh, callee.params, i)
                arg: Pattern = Wild() if self.draw(_BOOL) else Op("neg", (Var(xs[i]),))
                args = tuple(arg if j == i else x for j, x in enumerate(xs))
                return SugarCall(name, args, (self.fresh("a"),))
        return p

    def arg(self, a: Pattern, top_scope: bool) -> Any:
        choice = self.draw(_ints(0, 6))
        values = [y for y in self.d.params if y not in self.d.op_params]
        if choice == 1 and top_scope and free_vars(a) <= set(self.d.params):
            t = self.fresh("loc")
            self.locals.append((t, self.walk(a, True)))
            return Var(t)
        if choice == 2:
            return Conj(self.walk(a, top_scope), Wild() if self.draw(_BOOL) else Lit(0),
                        self.fresh("z"))
        if choice == 3 and values:
            x = _pick(self.draw, values)
            return Conj(Var(x), self.walk(a, top_scope), "", walrus=True)
        return self.walk(a, top_scope)


def sprinkle(draw: Callable[..., Any], d: Definition, program: Program) -> SugarDef:
    """A sugared version of d (its core is :meth:`SugarDef.core`, not d itself)."""
    s = _Sprinkler(draw, d, program)
    ret = s.walk(d.body, True)
    asserts: tuple[GExpr, ...] = ()
    if draw(_ints(0, 2)) == 0:
        bound = sorted(_definitely_bound(expand(ret), program) & set(d.params))
        if bound:
            asserts = (_guard(draw, bound, set(d.op_params)),)
    return SugarDef(d.name, d.params, d.op_params, tuple(s.locals), asserts, ret)


def _definitely_bound(p: Pattern, program: Program) -> set[str]:
    from pypm.lang.check import Binds, always_binds, bound_after

    return set(bound_after(p, frozenset(), Binds(program, always_binds(program))))


@dataclass(frozen=True)
class DesugarCase:
    """A sugared program (its surface text), its hand-written core, and a term."""

    defs: tuple[SugarDef, ...]
    value: Any
    sigma: dict[str, Any]

    def source(self) -> str:
        return "\n".join(d.source() for d in self.defs) + f"\n# term: {self.value!r}\n"

    def core(self) -> Program:
        return {d.name: d.core() for d in self.defs}


@st.composite
def desugar_cases(draw: Callable[..., Any]) -> Case:
    """A generated case, operators renamed to infix ones, with sugar sprinkled over it."""
    case = draw(cases())
    program = {name: replace(d, body=_rename_ops(d.body)) for name, d in case.program.items()}
    defs = tuple(sprinkle(draw, d, program) for d in program.values())
    memo: dict[int, Any] = {}
    value = _rename_value(case.value, memo)
    sigma = {k: _rename_value(v, memo) if isinstance(v, TermView) else RENAME.get(v, v) if isinstance(v, str)
             and k in program[MAIN].op_params else v for k, v in case.sigma.items()}
    out = DesugarCase(defs, value, sigma)
    core = out.core()
    # Moving locals out can make a program ill-formed: explosive, or even unguarded.
    if not feasible(Case(core, core[MAIN].body, value, sigma), keep_runaway=False):
        reject()
    return out  # type: ignore[return-value]


def _results(program: Program, value: Any, sigma: dict[str, Any]) -> dict[frozenset[tuple[str, Any]], str]:
    """The distinct results, keyed by value (``True`` ≠ ``1``), with their text."""
    from .properties import show_subst

    return {frozenset((k, value_key(v)) for k, v in m.bindings.items()): show_subst(m.bindings)
            for m in interpret(program, program[MAIN].body, value, sigma)}


class DesugarMismatch(AssertionError):
    """The parser's desugaring and the hand-written core disagree."""


def agree(case: DesugarCase) -> int:  # type: ignore[override]
    """Parse the sugared text; its matches must equal those of the hand-written core."""
    from pypm.lang.parse import parse_module

    text = case.source()
    parsed = parse_module(text).definitions
    core = case.core()
    got = _results(parsed, case.value, dict(case.sigma))
    want = _results(core, case.value, dict(case.sigma))
    if got.keys() != want.keys():
        raise DesugarMismatch(f"parsed program gives {len(got)} distinct results, hand-written core "
                              f"{len(want)}:\n  parsed {sorted(got.values())}\n  core   "
                              f"{sorted(want.values())}")
    placed = _placed(parsed)  # what pypm.loads runs: asserts moved to where they can run
    if placed is not None:
        got = _results(placed, case.value, dict(case.sigma))
        if got.keys() != want.keys():
            raise DesugarMismatch(f"after guard placement, the parsed program gives {len(got)} distinct "
                                  f"results, hand-written core {len(want)}:\n  placed "
                                  f"{sorted(got.values())}\n  core   {sorted(want.values())}")
    return len(want)


def _placed(program: Program) -> Program | None:
    """The program after :mod:`pypm.lang.placement`, when it is well-formed and the pass exists."""
    from pypm.lang.check import check_program

    try:
        from pypm.lang.placement import place_guards
    except ImportError:
        return None
    return None if check_program(program) else place_guards(program)


__all__ = ["Conj", "DesugarCase", "DesugarMismatch", "SugarCall", "SugarDef", "agree", "desugar_cases",
           "expand", "sprinkle", "sugar_source"]
