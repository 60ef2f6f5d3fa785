"""Mutation check: deliberate bugs in a copy of the interpreter, each of which the conformance
properties must kill (find a counterexample for).

A mutant is the source text of :mod:`pypm.lang.match` with one edit, loaded as a module of its own
(the real interpreter is untouched). An edit whose target text is no longer in ``match.py`` makes
:func:`load` raise, so the list cannot silently rot when the interpreter changes.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pypm.lang.match import Match


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug: replace ``old`` (which must occur in match.py) by ``new``."""

    name: str
    description: str
    old: str
    new: str
    count: int = 1  # how many occurrences to replace (-1: all)


MUTANTS: tuple[Mutant, ...] = (
    Mutant("alt-drops-right", "alternation drops its right branch (M-AltR lost)",
           "                yield from self.run(right, v, sigma)\n", "                pass\n"),
    Mutant("var-nonlinear-skipped", "a second occurrence of a variable is not compared (M-Var)",
           "                elif values_equal(sigma[x], v):\n                    yield sigma, ()",
           "                elif True:\n                    yield sigma, ()"),
    Mutant("lit-python-equality", "literals compared with Python == (True matches 1, M-Lit)",
           "values_equal(v, lit)", "v == lit"),
    Mutant("op-name-ignored", "any operator matches f(...) (M-Op)",
           "if not isinstance(v, TermView) or v.op != f:", "if not isinstance(v, TermView):"),
    Mutant("prefix-arity-off-by-one", "f(p1..pn) needs more than n arguments (n < m instead of n ≤ m)",
           "elif len(args) > len(v.args):", "elif len(args) >= len(v.args):"),
    Mutant("opvar-second-use-unchecked", "an operator variable is not compared on its second use",
           "elif values_equal(sigma[x], v.op):", "elif True:"),
    Mutant("exists-not-restored", "∃x. p does not put back the outer binding of x",
           "                    if x in sigma:\n                        out[x] = sigma[x]\n",
           "                    pass\n"),
    Mutant("exists-leaks-local", "∃x. p lets the local x escape into the result",
           "                    out = {k: w for k, w in out.items() if k != x}\n",
           "                    out = dict(out)\n"),
    Mutant("exists-sees-outer", "∃x. p matches p with the outer x still bound",
           "inner = {k: w for k, w in sigma.items() if k != x}", "inner = dict(sigma)"),
    Mutant("guard-before-body", "a guard is evaluated before its body binds its variables",
           "                for out, region in self.run(body, v, sigma):\n"
           "                    if self._holds(p, cond, v, out):\n"
           "                        yield out, region\n",
           "                if self._holds(p, cond, v, sigma):\n"
           "                    yield from self.run(body, v, sigma)\n"),
    Mutant("then-matches-wrong-value", "p ; x ≍ q matches q against v instead of σ'(x)",
           "self.run(q, out[x], out)", "self.run(q, v, out)"),
    Mutant("args-lose-bindings", "M-Op threads the σ before an argument, not after it",
           "yield from self._args(ps, vs, i + 1, out, region + r)",
           "yield from self._args(ps, vs, i + 1, sigma, region + r)"),
    Mutant("call-repeated-argument-unchecked", "P(x, x): the second parameter's value is not "
           "compared with the first", "if not values_equal(result[x], out[y]):", "if False:"),
    Mutant("call-ignores-bound-argument", "a call does not pass the arguments already bound, nor "
           "compare them afterwards", "                if x in result:\n", "                if False:\n"),
    Mutant("dedup-by-domain", "results deduplicated by their variables instead of their values",
           "    for out, region in Interpreter(program, tracer).run(p, v, dict(sigma or {})):\n"
           "        yield Match(out, region, v)\n",
           "    seen = set()\n"
           "    for out, region in Interpreter(program, tracer).run(p, v, dict(sigma or {})):\n"
           "        if frozenset(out) in seen:\n"
           "            continue\n"
           "        seen.add(frozenset(out))\n"
           "        yield Match(out, region, v)\n"),
    Mutant("guard-negated-or", "`or` in a guard read as `and` by the interpreter's evaluator call",
           "ok = truth(evaluate(cond, sigma))",
           "ok = truth(evaluate(cond, sigma)) and not (type(cond).__name__ == 'GBinary' "
           "and cond.op == 'or' and not truth(evaluate(cond.left, sigma)))"),
)


def load(m: Mutant) -> types.ModuleType:
    """The interpreter module with the mutant's edit applied, as a fresh module."""
    source = inspect.getsource(importlib.import_module("pypm.lang.match"))
    if m.old not in source:
        raise LookupError(f"mutant {m.name}: its target text is no longer in pypm/lang/match.py")
    mutated = source.replace(m.old, m.new, m.count)
    name = f"pypm.lang._mutant_{m.name.replace('-', '_')}"
    module = types.ModuleType(name)
    module.__package__ = "pypm.lang"
    module.__file__ = f"<mutant {m.name}>"
    sys.modules[name] = module
    exec(compile(mutated, module.__file__, "exec"), module.__dict__)
    return module


def interpreter(m: Mutant) -> Callable[..., Iterator[Match]]:
    """The mutant's ``interpret`` function."""
    return load(m).interpret


__all__ = ["MUTANTS", "Mutant", "interpreter", "load"]
