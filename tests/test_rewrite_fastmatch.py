"""The compiled matcher agrees with the interpreter: same results, same order, same regions,
on random well-formed programs, terms and substitutions, and on the attention graphs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from pypm.semantics.generators import cases

import pypm
from pypm.fastmatch import Compiler, all_results
from pypm.fx import GraphView, call_of, propagate_types, resolve
from pypm.match import Interpreter


def interpreted(program, p, v, sigma):
    return [(dict(s), r) for s, r in Interpreter(program).run(p, v, dict(sigma))]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(cases())
def test_compiled_matcher_agrees_with_the_interpreter(case):
    expected = interpreted(case.program, case.pattern, case.value, case.sigma)
    got = all_results(Compiler(case.program).compile(case.pattern), case.value, dict(case.sigma))
    assert got == expected


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
