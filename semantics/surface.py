"""Core programs printed back as surface syntax (LANGUAGE.md §7), for counterexamples that can
be pasted into a test and read by ``pypm.loads``.

The core forms with no sugar of their own use the three escapes: ``exists(x, p)`` for ∃x. p,
``then(p, x, q)`` for ``p ; x ≍ q`` and ``(p if g else fail)`` for ``p ? g``. A 0-ary operator
is written ``c()`` (a bare name would be a variable).
"""

from __future__ import annotations

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
    show_guard,
)
from pypm.lang.terms import show_value


def literal_source(v: Any) -> str:
    """A literal as Python source (strings double-quoted, tuples with their trailing comma)."""
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        inner = ", ".join(literal_source(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    return repr(v)


def guard_source(g: GExpr) -> str:
    """A guard as a Python-like boolean expression, fully parenthesised."""
    match g:
        case GConst(value):
            return literal_source(value)
        case GName(name):
            return name
        case GCompare(first, rest):
            return " ".join([guard_source(first)] + [f"{op} {guard_source(e)}" for op, e in rest])
        case GUnary("not", operand):
            return f"not ({guard_source(operand)})"
        case GBinary(op, left, right) if op in ("and", "or"):
            return f"({guard_source(left)}) {op} ({guard_source(right)})"
    return show_guard(g)


def pattern_source(p: Pattern) -> str:
    """A core pattern as a surface expression."""
    match p:
        case Wild():
            return "_"
        case Var(x):
            return x
        case Lit(v):
            return literal_source(v)
        case Op(f, args) | OpVar(f, args):
            return f"{f}({', '.join(pattern_source(a) for a in args)})"
        case Alt(left, right):
            return f"({pattern_source(left)} | {pattern_source(right)})"
        case Exists(x, body):
            return f"exists({x}, {pattern_source(body)})"
        case Call(name, args):
            return f"{name}({', '.join(args)})"
        case Guard(body, cond):
            return f"({pattern_source(body)} if {guard_source(cond)} else fail)"
        case Then(body, x, q):
            return f"then({pattern_source(body)}, {x}, {pattern_source(q)})"
        case Fail():
            return "fail"
    raise TypeError(f"not a core pattern: {p!r}")


def definition_source(d: Definition) -> str:
    """``def P(x, f: Op):`` and its ``return``."""
    params = ", ".join(f"{y}: Op" if y in d.op_params else y for y in d.params)
    return f"def {d.name}({params}):\n    return {pattern_source(d.body)}\n"


def program_source(program: Program) -> str:
    """Every definition of Δ, separated by blank lines."""
    return "\n".join(definition_source(d) for d in program.values())


def case_source(program: Program, value: Any, sigma: dict[str, Any], query: str = "Main") -> str:
    """A counterexample ready to paste into a test: the program, the term and σ0."""
    d = program[query]
    lines = [program_source(program).rstrip(), "",
             f"# term:  {show_value(value)}",
             f"# query: {query}({', '.join(d.params)})"]
    if sigma:
        shown = ", ".join(f"{k!r}: {show_value(v)}" for k, v in sorted(sigma.items()))
        lines.append("# sigma: {" + shown + "}")
    return "\n".join(lines)


__all__ = ["case_source", "definition_source", "guard_source", "literal_source", "pattern_source",
           "program_source"]
