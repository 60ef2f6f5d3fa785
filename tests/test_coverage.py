"""``pypm coverage``: the attention, norm and softmax sites of a model, rewritten or not and why,
with the recovered attention specification; on tiny transformers configs (random weights, no
download) and on a ``module:function`` target."""

from __future__ import annotations

import json
import textwrap

import pytest

from pypm.cli import main as cli_main
from pypm.coverage import coverage, format_table

transformers = pytest.importorskip("transformers")


def _by_kind(cov):
    out = {}
    for s in cov.sites:
        out.setdefault(s.kind, []).append(s)
    return out


def test_llama_attention_rewritten_with_spec_and_rms_norms_declined_on_cpu():
    cov = coverage("llama", layers=1)
    sites = _by_kind(cov)
    (att,) = sites["attention"]
    assert att.rewritten and att.rule == "attention"
    assert att.spec is not None and att.spec.startswith("causal") and "gqa=2" in att.spec
    assert att.module.startswith("model.layers.0.self_attn")
    (soft,) = sites["softmax"]
    assert soft.status == "rewritten (inside attention)" and soft.within == att.node
    norms = sites["rms norm (written out)"]
    assert len(norms) == 3  # input, post-attention, final
    for s in norms:
        assert not s.rewritten and s.rule == "rms-norm-to-pypm"
        assert "cuda only" in s.reason
    table = format_table(cov)
    assert "attention: 1/1 rewritten" in table and "rms norm (written out): 0/3 rewritten" in table


def test_gpt2_attention_not_rewritten_says_why_and_still_recovers_the_spec():
    cov = coverage("gpt2", layers=1)
    sites = _by_kind(cov)
    (att,) = sites["attention"]
    assert not att.rewritten
    # GPT-2 casts the probabilities with .type(value.dtype): the reason names that node
    assert att.rule == "attention" and "no match" in att.reason and "type" in att.reason
    assert att.spec is not None and att.spec.startswith("causal")
    assert len(sites["layer norm"]) == 3
    assert all("cuda only" in s.reason for s in sites["layer norm"])


MODEL = '''
import torch

class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = torch.nn.LayerNorm(16)
        self.qkv = torch.nn.Linear(16, 48)

    def forward(self, x):
        q, k, v = self.qkv(self.ln(x)).view(2, 8, 3, 2, 8).permute(2, 0, 3, 1, 4)
        p = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1)
        other = torch.softmax(x, dim=-1)          # a softmax that is not attention
        return (p @ v).transpose(1, 2).reshape(2, 8, 16) + other

def build():
    torch.manual_seed(0)
    return Block().eval(), (torch.randn(2, 8, 16),)
'''


def test_module_function_target_json(tmp_path, monkeypatch, capsys):
    (tmp_path / "cov_model.py").write_text(textwrap.dedent(MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli_main(["coverage", "cov_model:build", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target"] == "cov_model:build" and out["graphs"] == 1
    kinds = {(s["kind"], s["status"]) for s in out["sites"]}
    assert ("attention", "rewritten") in kinds
    assert ("softmax", "rewritten (inside attention)") in kinds
    assert ("layer norm", "not rewritten") in kinds
    lone = [s for s in out["sites"] if s["kind"] == "softmax" and s["within"] is None]
    assert len(lone) == 1 and lone[0]["reason"] and not lone[0]["rewritten"]
    att = next(s for s in out["sites"] if s["kind"] == "attention")
    assert att["spec"] is not None and att["rule"] == "attention"
    assert out["summary"]["attention"] == {"sites": 1, "rewritten": 1}


def test_table_output_and_exit_status(tmp_path, monkeypatch, capsys):
    (tmp_path / "cov_model2.py").write_text(textwrap.dedent(MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli_main(["coverage", "cov_model2:build", "--progress"]) == 0
    captured = capsys.readouterr()
    assert "attention: 1/1 rewritten" in captured.out and "why not:" in captured.out
    assert "[3/3]" in captured.err  # forced progress lines go to stderr


def test_unknown_target_is_an_error_message():
    with pytest.raises(SystemExit, match="unknown target"):
        coverage("no-such-architecture")
