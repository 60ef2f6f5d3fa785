"""pypm.explain: for each candidate root, the deepest partial match and its failing step (with
the values involved and the pattern line), or the escaping user of an unsafe match."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pypm
from pypm.graph import propagate_types
from pypm.rewrite.explain import explain, main

ATT = pypm.load("attention").Attention
Q = tuple(torch.randn(2, 4, 4, 4) for _ in range(3))


def graph(fn, inputs=Q):
    gm = torch.fx.symbolic_trace(fn)
    propagate_types(gm, inputs)
    return gm


def only_reason(e, root):
    (r,) = [r for r in e.roots if r.root == root]
    return r


def test_softmax_over_the_wrong_dim_is_a_literal_mismatch_with_both_values():
    e = explain(ATT, graph(lambda q, k, v: F.softmax(q @ k.transpose(-2, -1), dim=-2) @ v))
    r = only_reason(e, "matmul_1")
    assert not r.matched and r.failure.reason == "literal"
    assert "the pattern says -1, the graph has -2" in r.failure.message
    assert r.failure.where.split(":")[0].endswith("attention.pypm") and "softmax(" in r.failure.where
    assert "dim=-1" in r.failure.where
    assert "attention.pypm:" in r.failure.where


def test_scale_on_the_wrong_operand_is_an_operator_mismatch():
    e = explain(ATT, graph(lambda q, k, v: (F.softmax(q @ k.transpose(-2, -1), -1) / 2.0) @ v))
    r = only_reason(e, "matmul_1")
    assert r.failure.reason == "operator" and "expected operator softmax, found %truediv" in r.failure.message


def test_k_transposed_on_the_wrong_dims():
    e = explain(ATT, graph(lambda q, k, v: F.softmax(q @ k.transpose(-3, -1), -1) @ v))
    r = only_reason(e, "matmul_1")
    assert r.failure.reason == "literal" and r.failure.node == "transpose"
    assert "the pattern says -2, the graph has -3" in r.failure.message
    assert "def Transposed" not in r.failure.where and "transpose(k, -2, -1)" in r.failure.where


def test_intermediate_used_outside_names_the_escaping_user():
    def fn(q, k, v):
        p = F.softmax(q @ k.transpose(-2, -1), -1)
        return p @ v, p.sum()

    r = only_reason(explain(ATT, graph(fn)), "matmul_1")
    assert r.matched and "%softmax" in r.unsafe and "used by %sum_1" in r.unsafe


def test_guard_false_shows_the_values_of_its_variables():
    mod = pypm.loads("def Wide(x):\n    assert x.shape[-1] == 64\n    return softmax(x, dim=-1)\n")
    e = explain(mod.Wide, graph(lambda q, k, v: q.softmax(-1)))
    (r,) = e.roots
    assert r.failure.reason == "guard"
    assert "x.shape[-1] == 64" in r.failure.message and "x = %q (placeholder, float32[2, 4, 4, 4])" in \
        r.failure.message


def test_no_candidate_root_is_said():
    e = explain(ATT, graph(lambda q, k, v: q + k))
    assert not e.roots and "no node has a root operator" in str(e)


def test_a_match_is_reported_with_bindings():
    e = explain(ATT, graph(lambda q, k, v: F.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v))
    r = only_reason(e, "matmul_1")
    assert r.matched and not r.unsafe and r.bindings["mul_by"] == "0.5"


def test_explain_is_exported_lazily():
    assert pypm.explain is explain


@pytest.mark.parametrize("trace", ["dynamo", "fx"])
def test_cli_on_a_model(trace, capsys, tmp_path, monkeypatch):
    (tmp_path / "tiny_model.py").write_text(
        "import torch, torch.nn.functional as F\n"
        "def build():\n"
        "    f = lambda q, k, v: F.softmax(q @ k.transpose(-2, -1), dim=-2) @ v\n"
        "    return f, tuple(torch.randn(1, 2, 4, 4) for _ in range(3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--model", "tiny_model:build", "--trace", trace]) == 0
    out = capsys.readouterr().out
    assert "literal mismatch: the pattern says -1, the graph has -2" in out


def test_cli_default_is_the_demo_model(capsys):
    assert main([]) == 0
    assert "matched: q=" in capsys.readouterr().out


def test_causal_guard_false_is_explained_with_the_mask():
    class Shifted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.tril(torch.ones(4, 4), diagonal=1), requires_grad=False)

        def forward(self, q, k, v):
            att = (q @ k.transpose(-2, -1)).masked_fill(self.bias == 0, float("-inf"))
            return att.softmax(-1) @ v

    e = explain(pypm.load("attention").CausalMasked, graph(Shifted()))
    (r,) = e.roots
    assert r.failure.reason == "guard" and "causal_mask(causal, s)" in r.failure.message
    assert "causal = %eq (eq, bool[4, 4])" in r.failure.message and "fill = -inf" in r.failure.message


def test_safety_counts_the_users_of_every_copy_of_a_merged_node():
    def fn(q, k, v):
        p = F.softmax(q @ k.transpose(-2, -1), -1) @ v
        return p, k.transpose(-2, -1).sum()  # a second copy of the transpose, used elsewhere

    r = only_reason(explain(ATT, graph(fn)), "matmul_1")
    assert r.matched and "used by %sum_1" in r.unsafe
