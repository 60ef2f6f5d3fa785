"""Well-formedness (LANGUAGE.md §5), checked when patterns are defined.

* scoping: every variable is a parameter or a local; no unused locals;
* calls name defined patterns, with the right number of arguments;
* definitely-bound variables: a guard may only read, and ``p ; x ≍ q`` may only continue from,
  variables that every match of what comes before has bound. Calls bind the parameters that
  their definition *always* binds, computed once per program as a greatest fixed point;
* recursion is guarded: every cycle of calls passes under an operator pattern, so matching
  consumes a proper subterm before it recurses and always terminates;
* guards call only known functions.

Errors are :class:`~pypm.errors.PypmError` subclasses with the pattern, file, line and source
line. :func:`check_program` returns all of them (``pypm check`` prints every one).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import (
    ArityError,
    GuardError,
    LeftRecursionError,
    PypmError,
    ScopeError,
    Span,
    UnboundError,
    UnknownPatternError,
)
from .guards import known_functions
from .syntax import (
    Alt,
    Call,
    Definition,
    Exists,
    Fail,
    GCall,
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
    guard_free_vars,
    guard_subexprs,
    show,
    show_guard,
)


def _is_fresh(x: str) -> bool:
    """Variables the desugarer introduced (``%1``): messages speak of the source instead."""
    return x.startswith("%")


def always_binds(program: Program) -> dict[str, frozenset[str]]:
    """For each definition, the parameters every match of its body binds (§5): the greatest
    fixed point, starting from "binds every parameter" and removing what the body cannot
    guarantee. Sound because a match is a finite derivation. A definition is recomputed only
    when a callee's result shrank, so the work is linear in the program for each shrink."""
    binds = {name: frozenset(d.params) for name, d in program.items()}
    callers: dict[str, set[str]] = {name: set() for name in program}
    for name, d in program.items():
        for c, _ in call_edges(d.body):
            if c.name in callers:
                callers[c.name].add(name)
    todo = list(program)
    pending = set(todo)
    while todo:
        name = todo.pop()
        pending.discard(name)
        d = program[name]
        out = bound_after(d.body, frozenset(), Binds(program, binds)) & frozenset(d.params)
        if out != binds[name]:
            binds[name] = out
            for caller in callers[name] - pending:
                todo.append(caller)
                pending.add(caller)
    return binds


@dataclass(frozen=True)
class Binds:
    """The program and, per definition, the parameters it always binds."""

    program: Program
    always: dict[str, frozenset[str]]


def bound_after(p: Pattern, b: frozenset[str], binds: Binds) -> frozenset[str]:
    """B after p, given B before (the threading of §5), ignoring errors."""
    match p:
        case Wild() | Lit() | Fail():
            return b
        case Var(x):
            return b | {x}
        case Op(_, args):
            for a in args:
                b = bound_after(a, b, binds)
            return b
        case OpVar(x, args):
            b = b | {x}
            for a in args:
                b = bound_after(a, b, binds)
            return b
        case Alt(left, right):
            return bound_after(left, b, binds) & bound_after(right, b, binds)
        case Exists(x, body):
            inner = bound_after(body, b - {x}, binds) - {x}
            return inner | {x} if x in b else inner
        case Call(name, xs):
            d = binds.program.get(name)
            if d is None:
                return b
            return b | {x for x, y in zip(xs, d.params) if y in binds.always[name]}
        case Guard(body, _):
            return bound_after(body, b, binds)
        case Then(body, _, q):
            return bound_after(q, bound_after(body, b, binds), binds)
    raise TypeError(f"not a core pattern: {p!r}")


@dataclass
class _Checker:
    program: Program
    binds: Binds
    errors: list[PypmError] = field(default_factory=list)
    d: Definition | None = None

    def error(self, cls: type[PypmError], msg: str, node: object, hint: str | None = None) -> None:
        span = getattr(node, "span", None) or (self.d.span if self.d else None)
        self.errors.append(cls(msg, span, pattern=self.d.name if self.d else None, hint=hint))

    def definition(self, d: Definition) -> None:
        self.d = d
        for i, y in enumerate(d.params):
            if y in d.params[:i]:
                self.error(ScopeError, f"parameter `{y}` is declared twice", d)
        scope = frozenset(d.params)
        self.scope(d.body, scope)
        self.bound(d.body, frozenset())

    # scoping, arity, unknown patterns, guard functions, unused locals
    def scope(self, p: Pattern, sc: frozenset[str]) -> None:
        match p:
            case Var(x):
                if x not in sc:
                    self.error(ScopeError, f"unknown variable `{x}`", p)
            case OpVar(x, args):
                if x not in sc:
                    self.error(ScopeError, f"unknown operator variable `{x}`", p)
                for a in args:
                    self.scope(a, sc)
            case Op(_, args):
                for a in args:
                    self.scope(a, sc)
            case Alt(left, right):
                self.scope(left, sc)
                self.scope(right, sc)
            case Exists(x, body):
                from .syntax import free_vars

                if x not in free_vars(body):
                    self.error(ScopeError, f"local `{x}` is never used", p)
                self.scope(body, sc | {x})
            case Call(name, xs):
                for x in xs:
                    if x not in sc:
                        self.error(ScopeError, f"unknown variable `{x}`", p)
                callee = self.program.get(name)
                if callee is None:
                    near = difflib.get_close_matches(name, list(self.program), n=1)
                    self.error(UnknownPatternError, f"no pattern named `{name}`", p,
                               hint=f"did you mean `{near[0]}`?" if near else
                               "define it in this file, or import it: `from FILE import " + name + "`")
                elif len(callee.params) != len(xs):
                    self.error(ArityError, f"`{name}` takes {len(callee.params)} argument"
                               f"{'s' if len(callee.params) != 1 else ''} "
                               f"({', '.join(callee.params)}), given {len(xs)}", p)
            case Guard(body, cond):
                self.scope(body, sc)
                for x in sorted(guard_free_vars(cond) - sc):
                    self.error(ScopeError, f"guard uses unknown name `{x}`", cond)
                self.guard_functions(cond)
            case Then(body, x, q):
                self.scope(body, sc)
                if x not in sc:
                    self.error(ScopeError, f"unknown variable `{x}`", p)
                self.scope(q, sc)
            case Wild() | Lit() | Fail():
                pass
            case _:
                raise TypeError(f"not a core pattern: {p!r}")

    def guard_functions(self, g: GExpr) -> None:
        known = known_functions()
        for e in guard_subexprs(g):
            if isinstance(e, GCall) and e.func not in known:
                near = difflib.get_close_matches(e.func, sorted(known), n=1)
                self.error(GuardError, f"unknown guard function `{e.func}`", e,
                           hint=f"did you mean `{near[0]}`?" if near else
                           "register it with @pypm.guard_function before the pattern is checked")

    # definitely-bound variables for guards and `;`
    def bound(self, p: Pattern, b: frozenset[str]) -> frozenset[str]:
        match p:
            case Wild() | Lit() | Fail() | Var():
                return bound_after(p, b, self.binds)
            case Op(_, args):
                for a in args:
                    b = self.bound(a, b)
                return b
            case OpVar(x, args):
                b = b | {x}
                for a in args:
                    b = self.bound(a, b)
                return b
            case Alt(left, right):
                return self.bound(left, b) & self.bound(right, b)
            case Exists(x, body):
                inner = self.bound(body, b - {x}) - {x}
                return inner | {x} if x in b else inner
            case Call():
                return bound_after(p, b, self.binds)
            case Guard(body, cond):
                after = self.bound(body, b)
                for x in sorted(guard_free_vars(cond) - after):
                    if x in pattern_params_and_locals(self.d):
                        self.error(UnboundError, f"guard uses `{x}` before any pattern binds it", cond,
                                   hint=f"`{show_guard(cond)}` runs when `{x}` is bound on every path; "
                                        f"bind `{x}` in the pattern, or in every alternative")
                return after
            case Then(body, x, q):
                after = self.bound(body, b)
                if x not in after:
                    self._unbound_then(p, x, body)
                return self.bound(q, after | {x})
        raise TypeError(f"not a core pattern: {p!r}")

    def _unbound_then(self, p: Then, x: str, body: Pattern) -> None:
        from .syntax import pattern_vars

        if _is_fresh(x):
            callee = _find_call_with(body, x)
            if callee is not None:
                i = callee.args.index(x)
                d = self.program.get(callee.name)
                param = d.params[i] if d and i < len(d.params) else f"#{i + 1}"
                self.error(UnboundError, f"`{callee.name}` does not bind its parameter `{param}` on "
                           f"every path, so argument {i + 1} cannot be matched against "
                           f"`{show(p.pat)}`", p.pat)
                return
            self.error(UnboundError, f"the value to match against `{show(p.pat)}` is not bound "
                       "on every path", p)
            return
        if x not in pattern_vars(body) and self.d is not None and x not in self.d.params:
            self.error(ScopeError, f"local `{x}` is assigned but never used in the pattern", p,
                       hint=f"use `{x}` in the `return` pattern (or remove the assignment)")
        else:
            self.error(UnboundError, f"`{x}` is not bound on every path before it is matched "
                       f"against `{show(p.pat)}`", p,
                       hint=f"bind `{x}` in every alternative of the pattern before it")


def pattern_params_and_locals(d: Definition | None) -> frozenset[str]:
    from .syntax import pattern_vars

    if d is None:
        return frozenset()
    return frozenset(d.params) | pattern_vars(d.body)


def _find_call_with(p: Pattern, x: str) -> Call | None:
    match p:
        case Call(_, xs) if x in xs:
            return p
        case Op(_, args) | OpVar(_, args):
            for a in args:
                c = _find_call_with(a, x)
                if c:
                    return c
        case Alt(left, right):
            return _find_call_with(left, x) or _find_call_with(right, x)
        case Exists(_, body) | Guard(body, _):
            return _find_call_with(body, x)
        case Then(body, _, q):
            return _find_call_with(body, x) or _find_call_with(q, x)
    return None


# ---------------------------------------------------------------------------------------------
# Guarded recursion


def call_edges(p: Pattern, depth: int = 0) -> list[tuple[Call, int]]:
    """Every call in p with the number of operator patterns consumed above it (§5's count).

    Depths are absolute, from the root of the value p matches. Inside ``q`` of ``p ; x ≍ q``
    the count restarts from the depth at which x was *bound* (q matches that subterm), wherever
    that binding was: in p, or earlier, even at the root. Variables bound by a call count as
    bound at the call's depth, and a variable bound at several depths counts at the shallowest:
    both under-estimate what is consumed, so an accepted program is guarded.
    """
    edges: list[tuple[Call, int]] = []
    _edges(p, depth, {}, edges)
    return edges


def _edges(p: Pattern, d: int, env: dict[str, int], out: list[tuple[Call, int]]) -> dict[str, int]:
    """Collect calls with their depth; return env (variable → binding depth) after p."""

    def bind(env: dict[str, int], x: str, depth: int) -> dict[str, int]:
        return env if x in env and env[x] <= depth else {**env, x: depth}

    match p:
        case Var(x):
            return bind(env, x, d)
        case Op(_, args) | OpVar(_, args):
            if isinstance(p, OpVar):
                env = bind(env, p.var, d)
            for a in args:
                env = _edges(a, d + 1, env, out)
            return env
        case Alt(left, right):
            e1, e2 = _edges(left, d, env, out), _edges(right, d, env, out)
            return {x: min(v for v in (e1.get(x), e2.get(x)) if v is not None) for x in {*e1, *e2}}
        case Exists(x, body):
            inner = _edges(body, d, {k: v for k, v in env.items() if k != x}, out)
            inner = {k: v for k, v in inner.items() if k != x}
            return {**inner, x: env[x]} if x in env else inner
        case Guard(body, _):
            return _edges(body, d, env, out)
        case Then(body, x, q):
            env = _edges(body, d, env, out)
            return _edges(q, env.get(x, 0), env, out)
        case Call(_, xs):
            out.append((p, d))
            for x in xs:
                env = bind(env, x, d)
            return env
    return env


def find_left_recursion(program: Program) -> list[tuple[str, Call]] | None:
    """A cycle of calls that consumes no operator (as [(caller, call), ...]), or None."""
    unguarded: dict[str, list[Call]] = {
        name: [c for c, depth in call_edges(d.body) if depth == 0 and c.name in program]
        for name, d in program.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in program:  # depth first, with an explicit stack: call chains can be long
        if state.get(root, 0):
            continue
        state[root] = 1
        path: list[tuple[str, Call]] = []  # the call that opened each frame but the root's
        stack: list[tuple[str, Iterator[Call]]] = [(root, iter(unguarded.get(root, [])))]
        while stack:
            name, calls = stack[-1]
            c = next(calls, None)
            if c is None:
                state[name] = 2
                stack.pop()
                if path:
                    path.pop()
                continue
            if state.get(c.name) == 1:
                cycle = [*path, (name, c)]
                start = next(j for j, (caller, _) in enumerate(cycle) if caller == c.name)
                return cycle[start:]
            if state.get(c.name, 0) == 0:
                state[c.name] = 1
                path.append((name, c))
                stack.append((c.name, iter(unguarded.get(c.name, []))))
    return None


# ---------------------------------------------------------------------------------------------
# Entry points


def check_program(program: Program, names: list[str] | None = None) -> list[PypmError]:
    """Every well-formedness error of the definitions ``names`` (default: all) of program Δ."""
    checker = _Checker(program, Binds(program, always_binds(program)))
    for name in names if names is not None else list(program):
        checker.definition(program[name])
    cycle = find_left_recursion(program)
    if cycle is not None:
        chain = " → ".join([caller for caller, _ in cycle] + [cycle[0][0]])
        caller, call = cycle[-1]
        span: Span | None = call.span or program[caller].span
        line = f" at line {span.line}" if span else ""
        checker.errors.append(LeftRecursionError(
            f"{chain}{line}: the cycle consumes no operator, so matching would not terminate",
            span, pattern=cycle[0][0],
            hint="put the recursive call under an operator, e.g. `x | view(Layout(x))`"))
    return checker.errors


__all__ = ["always_binds", "call_edges", "check_program", "find_left_recursion"]
