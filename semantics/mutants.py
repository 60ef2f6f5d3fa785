"""Mutation check: deliberate bugs in copies of pypm's modules, each of which the conformance
properties must kill (find a counterexample for).

A mutant is the source text of one module of :mod:`pypm.lang` (the interpreter ``match``, the
compiled matcher ``fastmatch``, equality of values in ``terms``, the guard evaluator ``guards``,
the checker ``check``, guard ``placement``) with one edit, loaded as a module of its own; the
modules that import from it are loaded again as copies that see the mutated functions (the real
modules are untouched). An edit whose target text is no longer in its module makes :func:`load`
raise, so the list cannot silently rot when the code changes.

Each mutant names the rule it breaks; :data:`FAMILIES` says which properties run against the
mutants of each module (:func:`pypm.semantics.conformance.kill`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pypm.lang.match import Match
from pypm.lang.terms import TermView

from .properties import System

# The modules a system is made of, each after the ones it imports from.
MODULES = ("pypm.lang.terms", "pypm.lang.guards", "pypm.lang.check", "pypm.lang.placement",
           "pypm.lang.match", "pypm.lang.fastmatch")


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug: replace ``old`` (which must occur in ``module``) by ``new``."""

    name: str
    description: str
    old: str
    new: str
    count: int = 1  # how many occurrences to replace (-1: all)
    module: str = "pypm.lang.match"
    rule: str = ""  # the rule of LANGUAGE.md it breaks

    @property
    def family(self) -> str:
        """Which properties run against it: the module's short name."""
        return self.module.rsplit(".", 1)[-1]


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
    # -- result order and regions (only the list semantics of §4 sees these) --------------------
    Mutant("alt-order-swapped", "p1 | p2 gives the matches of p2 first", rule="§4 alternation",
           old="                yield from self.run(left, v, sigma)\n"
               "                yield from self.run(right, v, sigma)\n",
           new="                yield from self.run(right, v, sigma)\n"
               "                yield from self.run(left, v, sigma)\n"),
    Mutant("results-deduplicated", "equal results are given once (duplicates are allowed, §4)",
           rule="§4 multiplicity",
           old="    for out, region in Interpreter(program, tracer).run(p, v, dict(sigma or {})):\n"
               "        yield Match(out, region, v)\n",
           new="    seen = []\n"
               "    for out, region in Interpreter(program, tracer).run(p, v, dict(sigma or {})):\n"
               "        if any(out.keys() == o.keys() and all(values_equal(out[k], o[k]) for k in o)\n"
               "               for o in seen):\n"
               "            continue\n"
               "        seen.append(out)\n"
               "        yield Match(out, region, v)\n"),
    Mutant("then-drops-region", "p ; x ≍ q forgets the terms q consumed", rule="§4 regions",
           old="yield out2, region + region2", new="yield out2, region"),
    # -- equality of values (pypm/lang/terms.py) -------------------------------------------------
    Mutant("eq-bool-is-int", "values_equal: True equals 1 (booleans compared as numbers)",
           module="pypm.lang.terms", rule="§1 literals",
           old="    if isinstance(a, bool) or isinstance(b, bool):\n"
               "        return isinstance(a, bool) and isinstance(b, bool) and a == b\n",
           new=""),
    Mutant("eq-int-is-not-float", "values_equal: 8 differs from 8.0 (numbers compared with their type)",
           module="pypm.lang.terms", rule="§1 literals",
           old="    if isinstance(a, (int, float)) and isinstance(b, (int, float)):\n        return a == b\n",
           new="    if isinstance(a, (int, float)) and isinstance(b, (int, float)):\n"
               "        return type(a) is type(b) and a == b\n"),
    Mutant("eq-list-is-not-tuple", "values_equal: [0, 1] differs from (0, 1)", module="pypm.lang.terms",
           rule="§1 literals",
           old="    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):",
           new="    if type(a) is type(b) and isinstance(a, (tuple, list)):"),
    # -- three-valued guards (pypm/lang/guards.py) ------------------------------------------------
    Mutant("guard-not-unknown-is-true", "not unknown is true (a guard accepts what it could not prove)",
           module="pypm.lang.guards", rule="§7 Kleene not",
           old="                return UNKNOWN if t is None else not t",
           new="                return True if t is None else not t"),
    Mutant("guard-and-unknown-is-false", "true and unknown is false (so not (true and unknown) holds)",
           module="pypm.lang.guards", rule="§7 Kleene and",
           old="return False if u is False else (True if t and u else UNKNOWN)",
           new="return False if u is False else (True if t and u else False)"),
    Mutant("guard-undecided-is-false", "an equality sympy cannot decide is false, not unknown",
           module="pypm.lang.guards", rule="§7 unknown",
           old="        return False if d.is_zero is False else None", new="        return False"),
    # -- the checker (pypm/lang/check.py) ----------------------------------------------------------
    Mutant("check-accepts-left-recursion", "no cycle of calls is reported (left recursion accepted)",
           module="pypm.lang.check", rule="§5 guarded recursion",
           old="if depth == 0 and c.name in program]", new="if depth < 0 and c.name in program]"),
    Mutant("check-then-counted-where-it-stands", "a call in q of p ; x ≍ q is counted from the `;`, "
           "not from x's binding", module="pypm.lang.check", rule="§5 guarded recursion",
           old="return _edges(q, env.get(x, 0), env, out)", new="return _edges(q, d, env, out)"),
    # -- guard placement (pypm/lang/placement.py) -------------------------------------------------
    Mutant("placement-guard-too-early", "a guard moves into the first argument that binds any of its "
           "variables, not all", module="pypm.lang.placement", rule="§7 assert placement",
           old="            if need <= after:\n", new="            if need & after:\n"),
    # -- the compiled matcher (pypm/lang/fastmatch.py) --------------------------------------------
    Mutant("fast-alt-drops-right", "fastmatch: p1 | p2 never tries p2", module="pypm.lang.fastmatch",
           rule="§4 alternation", old="return ml(v, s, k) or mr(v, s, k)", new="return ml(v, s, k)"),
    Mutant("fast-inline-params-not-renamed", "fastmatch: an inlined body's parameters are renamed "
           "apart instead of to the arguments", module="pypm.lang.fastmatch", rule="M-Call",
           old="return _rename(d.body, dict(zip(d.params, xs)), tag, [0])",
           new="return _rename(d.body, {}, tag, [0])"),
    Mutant("fast-inline-local-captured", "fastmatch: an ∃ in an inlined body keeps the name it "
           "shadows (a local named like a parameter captures the argument)",
           module="pypm.lang.fastmatch", rule="M-Call, M-Exists",
           old="            return _rename(body, {**env, x: f\"{x}{tag}.{count[0]}\"}, tag, count)",
           new="            return _rename(body, env, tag, count)"),
    Mutant("fast-then-drops-region", "fastmatch: p ; x ≍ q forgets the terms q consumed",
           module="pypm.lang.fastmatch", rule="§4 regions",
           old="k(out2, region + region2)", new="k(out2, region)"),
)

def _copy(name: str, source: str, tag: str) -> types.ModuleType:
    """A fresh module executing ``source`` as if it were module ``name``."""
    mod_name = f"pypm.lang._mutant_{tag}_{name.rsplit('.', 1)[-1]}"
    module = types.ModuleType(mod_name)
    module.__package__ = name.rsplit(".", 1)[0]
    module.__file__ = f"<mutant {tag} of {name}>"
    sys.modules[mod_name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def _share_classes(copy: types.ModuleType, real: types.ModuleType, edited: str) -> None:
    """The classes other modules import from this one, terms (``Term``, ``TermView``: values that
    cross module boundaries) and exceptions (``GuardEvalError``) are the real ones again,
    unless the edit is in them; the module's own classes (``Compiler``, ``Interpreter``) stay
    copies, so that their methods call the mutated functions."""
    shared = {name for other in MODULES if other != real.__name__
              for name in _imports_from(importlib.import_module(other), real)}
    for name, obj in list(copy.__dict__.items()):
        original = real.__dict__.get(name)
        if isinstance(obj, type) and isinstance(original, type) and obj.__module__ == copy.__name__ \
                and (name in shared or issubclass(original, (BaseException, TermView))) \
                and edited not in inspect.getsource(original):
            setattr(copy, name, original)


def _imports_from(real: types.ModuleType, other: types.ModuleType) -> list[str]:
    """The names ``real`` took from ``other`` (functions and classes, by identity)."""
    return [name for name, obj in real.__dict__.items()
            if (callable(obj) or isinstance(obj, type)) and other.__dict__.get(name) is obj
            and getattr(obj, "__module__", None) == other.__name__]


@functools.cache
def _modules(m: Mutant) -> dict[str, types.ModuleType]:
    """The modules of :data:`MODULES` with the mutant applied: its own module mutated, each module
    that imports from a mutated one copied and pointed at the copies, the rest real."""
    real = {name: importlib.import_module(name) for name in MODULES}
    source = inspect.getsource(real[m.module])
    if m.old not in source:
        raise LookupError(f"mutant {m.name}: its target text is no longer in {m.module}")
    tag = m.name.replace("-", "_")
    out = dict(real)
    mutated = _copy(m.module, source.replace(m.old, m.new, m.count), tag)
    _share_classes(mutated, real[m.module], m.old)
    replaced = {m.module: mutated}
    for name in MODULES[MODULES.index(m.module) + 1:]:
        names = {other: _imports_from(real[name], real[other]) for other in replaced}
        if not any(names.values()):
            continue
        copy = _copy(name, inspect.getsource(real[name]), tag)
        for other, taken in names.items():
            for x in taken:
                setattr(copy, x, getattr(replaced[other], x))
        replaced[name] = copy
    out.update(replaced)
    return out


def load(m: Mutant) -> types.ModuleType:
    """The mutated module (raises LookupError when the edit no longer applies)."""
    return _modules(m)[m.module]


def system(m: Mutant) -> System:
    """The modules under test with the mutant applied."""
    mods = _modules(m)
    short = {name.rsplit(".", 1)[-1]: mod for name, mod in mods.items()}
    return System(short["match"], short["fastmatch"], short["terms"], short["guards"], short["check"],
                  short["placement"])


def interpreter(m: Mutant) -> Callable[..., Iterator[Match]]:
    """The ``interpret`` function of the mutant's system."""
    return system(m).interpret


def by_name(name: str) -> Mutant:
    return next(m for m in MUTANTS if m.name == name)


__all__ = ["MODULES", "MUTANTS", "Mutant", "by_name", "interpreter", "load", "system"]
