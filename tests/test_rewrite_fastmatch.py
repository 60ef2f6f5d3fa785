"""The compiled matcher agrees with the interpreter: same results, same order, same regions,
on random well-formed programs, terms and substitutions, and on the attention graphs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from pypm.semantics.generators import cases

import pypm
from pypm.graph import GraphView, propagate_types
from pypm.lang.analysis import call_of, resolve
from pypm.lang.fastmatch import Compiler, all_results
from pypm.lang.match import Interpreter


def interpreted(program, p, v, sigma):
    return [(dict(s), r) for s, r in Interpreter(program).run(p, v, dict(sigma))]


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(cases())
def test_compiled_matcher_agrees_with_the_interpreter(case):
    """With calls inlined (the default) and with every call a frame."""
    expected = interpreted(case.program, case.pattern, case.value, case.sigma)
    for inline in (True, False):
        m = Compiler(case.program, inline=inline).compile(case.pattern)
        assert all_results(m, case.value, dict(case.sigma)) == expected


INLINING = pypm.loads(
    "def Twice(x):\n"
    "    return add(x, x)\n"
    "def Local(x, y):\n"
    "    z = neg(y)\n"
    "    return add(x, z)\n"
    "def Shadow(z, y):\n"
    "    t = Local(z, y)\n"
    "    return t\n"
    "def Sum(a, b):\n"
    "    assert a.shape == b.shape\n"
    "    return add(a, b)\n"
    "def Pair(u, w):\n"
    "    return Sum(u, w) | Sum(w, u)\n"
    "def Chain(x):\n"
    "    return neg(Chain(x)) | x\n"
    "def Same(p, q):\n"
    "    return Twice(p) | add(p, q)\n"
    "def Dup(s):\n"
    "    return Same(s, s)\n"
)


def test_inlined_calls_rename_locals_apart_and_keep_frames_where_needed():
    """Locals of an inlined body never meet the caller's names (a callee local named like a
    caller's argument, an ∃ shadowing a parameter), guards see the caller's values, recursive
    definitions and calls passing one variable twice keep their frames, and no made-up name
    reaches a result."""
    def f(x, y):
        a = torch.neg(y)
        return torch.neg(torch.neg(x + a)) + (x + a) + (y + y)

    gm = torch.fx.symbolic_trace(f)
    propagate_types(gm, (torch.randn(3), torch.randn(3)))
    view = GraphView(gm)
    for name in ("Twice", "Local", "Shadow", "Pair", "Chain", "Same", "Dup"):
        found = 0
        program, definition = resolve(getattr(INLINING, name))
        call = call_of(definition)
        frames = Compiler(program, inline=False).compile(call)
        inlined_compiler = Compiler(program)
        inlined = inlined_compiler.compile(call)
        for n in gm.graph.nodes:
            t = view.term(n)
            expected = interpreted(program, call, t, {})
            assert all_results(inlined, t, {}) == all_results(frames, t, {}) == expected
            for sigma, _ in expected:
                assert not any("%" in k for k in sigma)
            found += len(expected)
        assert found > 0, name
        assert inlined_compiler._recursive == {"Chain"}
    program, definition = resolve(INLINING.Dup)
    assert Compiler(program)._inline("Same", ("s", "s")) is None  # one variable twice: a frame
    assert Compiler(program)._inline("Twice", ("s",)) is not None


def test_compiled_matcher_on_attention_graphs():
    program, definition = resolve(pypm.load("attention").Attention)
    fns = [lambda q, k, v: F.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v,
           lambda q, k, v: (q @ k.transpose(-2, -1)).masked_fill(
               ~torch.ones(4, 4, dtype=torch.bool).tril(), float("-inf")).softmax(-1) @ v,
           lambda q, k, v: F.softmax(q @ k.transpose(-3, -1), -1) @ v]
    x = tuple(torch.randn(2, 4, 4, 4) for _ in range(3))
    m = Compiler(program).compile(call_of(definition))
    for fn in fns:
        gm = torch.fx.symbolic_trace(fn)
        propagate_types(gm, x)
        view = GraphView(gm)
        for n in gm.graph.nodes:
            t = view.term(n)
            assert all_results(m, t, {}) == interpreted(program, call_of(definition), t, {})


def test_stops_at_the_first_accepted_result():
    program, definition = resolve(pypm.loads("def P(x):\n    return x | x | x\n").P)
    seen = []

    def accept(s, r):
        seen.append(s)
        return len(seen) == 2

    assert Compiler(program).compile(call_of(definition))(1, {}, accept) is True
    assert len(seen) == 2
