"""torch.compile(backend="pypm"): the rules rewrite the dynamo graph, the result agrees with
eager (dynamic=False and dynamic=True), verify=True catches a wrong rule, and the inductor
custom pass has a stable uuid."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from pypm.rules.attention import Attention

import pypm
from pypm.compile.backend import Backend
from pypm.errors import RewriteError
from pypm.rewrite import rule


class Attn(nn.Module):
    def __init__(self, c=16, heads=2, causal=True):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(c, 3 * c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (y.view(b, t, self.heads, c // self.heads).transpose(1, 2)
                   for y in self.qkv(x).split(c, dim=2))
        att = q @ k.transpose(-2, -1) / math.sqrt(c // self.heads)
        if self.causal:
            att = att.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        return (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(b, t, c)


def sdpa_calls(gm):
    return [n for n in gm.graph.nodes if "scaled_dot_product_attention" in str(n.target)]


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_compiled_model_agrees_with_eager(dynamic, causal):
    torch._dynamo.reset()
    m = Attn(causal=causal).eval()
    be = pypm.backend(inner="aot_eager", verify=True)
    c = torch.compile(m, backend=be, dynamic=dynamic)
    for t in (5, 7):  # a second length: recompiles (static) or reuses the graph (dynamic)
        x = torch.randn(2, t, 16)
        with torch.no_grad():
            torch.testing.assert_close(c(x), m(x), rtol=1e-5, atol=1e-5)
    assert be.reports and all(r.counts() == {"attention": 1} for r in be.reports)
    if dynamic:
        assert len(be.reports) == 1


def test_rewritten_dynamo_graph_uses_is_causal():
    torch._dynamo.reset()
    graphs = []

    def inner(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    be = pypm.backend(inner=inner)
    torch.compile(Attn().eval(), backend=be)(torch.randn(2, 5, 16))
    (n,) = sdpa_calls(graphs[0])
    assert n.kwargs["is_causal"] is True and n.kwargs["scale"] == pytest.approx(1 / math.sqrt(8))


def test_inductor_inner_compiler():
    torch._dynamo.reset()
    m = Attn().eval()
    be = pypm.backend()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(m, backend=be)(x), m(x), rtol=1e-5, atol=1e-5)
    assert be.reports[0].counts() == {"attention": 1}


def test_verify_names_the_rule_that_changed_the_result():
    @rule(Attention, name="wrong-scale")
    def wrong(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, scale=1.0)

    torch._dynamo.reset()
    be = pypm.backend(rules=[wrong], inner="aot_eager", verify=True)
    with pytest.raises(RewriteError, match="wrong-scale"):
        torch.compile(Attn(causal=False).eval(), backend=be)(torch.randn(2, 5, 16))


def test_backend_name_works_without_importing_pypm():
    code = ("import torch, torch.nn.functional as F\n"
            "f = lambda q, k, v: F.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v\n"
            "x = torch.randn(1, 2, 4, 8)\n"
            "assert 'pypm' in torch._dynamo.list_backends()\n"
            "import sys; assert 'pypm' not in sys.modules\n"
            "torch._dynamo.config.suppress_errors = False\n"
            "y = torch.compile(f, backend='pypm')(x, x, x)\n"
            "torch.testing.assert_close(y, f(x, x, x))\n"
            "from pypm.compile.backend import default_backend\n"
            "print(default_backend().reports[0].counts())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'attention': 1" in out.stdout


def test_standard_rules_include_attention():
    assert "attention" in [r.name for r in pypm.standard_rules()]


def test_inductor_pass_uuid_is_stable_and_depends_on_rules():
    a = pypm.inductor_pass()
    b = pypm.inductor_pass()
    assert a.uuid() == b.uuid()

    @rule(Attention, name="other")
    def other(q, k, v):
        return None

    assert pypm.inductor_pass([other]).uuid() != a.uuid()


def test_inductor_post_grad_pass_runs_rules():
    from torch._inductor import config

    p = pypm.inductor_pass()
    torch._dynamo.reset()
    with config.patch(post_grad_custom_pre_pass=p, force_disable_caches=True):
        f = torch.compile(lambda x: torch.relu(x) * 2)
        f(torch.randn(4))
    assert len(p.reports) == 1  # the pass ran on the ATen-level graph


def test_inductor_pass_rewrites_the_aten_graph():
    from torch._inductor import config

    mod = pypm.loads("def Twice(x):\n    return aten.mul(aten.mul(x, 2.0), 0.5)\n")

    @rule(mod.Twice, name="mul-cancel")
    def cancel(x):
        return x

    p = pypm.inductor_pass([cancel])
    torch._dynamo.reset()
    x = torch.randn(8)
    with config.patch(post_grad_custom_pre_pass=p, force_disable_caches=True):
        y = torch.compile(lambda x: torch.relu(x) * 2.0 * 0.5 + 1)(x)
    torch.testing.assert_close(y, torch.relu(x) + 1)
    assert p.reports[0].counts() == {"mul-cancel": 1}


def test_pypm_backend_and_explain_are_the_public_functions():
    assert isinstance(pypm.backend(inner="eager"), Backend)
    gm = torch.fx.symbolic_trace(lambda x: x.softmax(-1))
    assert "no node has a root operator" in str(pypm.explain(Attention, gm))


def test_fx_graph_cache_keeps_working_with_the_pass(monkeypatch, tmp_path):
    from torch._inductor import config

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    p = pypm.inductor_pass()
    x = torch.randn(8)
    with config.patch(post_grad_custom_pre_pass=p, fx_graph_cache=True, force_disable_caches=False):
        for _ in range(2):
            torch._dynamo.reset()
            torch.compile(lambda x: torch.sigmoid(x) * 3)(x)
    assert len(p.reports) == 1  # the second compile was a cache hit: the pass's uuid is stable


def test_lazy_names_are_served_whatever_the_import_order():
    """``pypm.backend`` and ``pypm.explain`` stay the public functions after the modules that
    define them are imported: a fresh interpreter, since this process imported both already."""
    import subprocess
    import sys

    code = ("import pypm\n"
            "assert pypm.backend is not None and pypm.explain is not None\n"
            "import pypm.compile.backend, pypm.rewrite.explain\n"
            "assert isinstance(pypm.backend(inner='eager'), pypm.compile.backend.Backend)\n"
            "assert pypm.explain is pypm.rewrite.explain.explain\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_equal_attentions_on_either_side_of_no_grad_keep_their_gradients_under_inductor():
    """Rewritten, the two attentions below are two equal SDPA calls, which AOTAutograd's CSE
    would merge across the grad-mode change (the first would lose its gradient, as plain
    inductor does to such a program written with SDPA); the backend compiles a rewritten graph
    that changes grad mode without that CSE."""
    def attend(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) * 0.5, dim=-1) @ v

    def f(q, k, v):
        a = attend(q, k, v)
        with torch.no_grad():
            b = attend(q, k, v)
        return a, b

    xs = [torch.randn(1, 2, 8, 8, requires_grad=True) for _ in range(3)]
    torch._dynamo.reset()
    be = pypm.backend(inner="inductor")
    a, b = torch.compile(f, backend=be)(*xs)
    torch._dynamo.reset()
    assert sum(r.counts().get("attention", 0) for r in be.reports) == 2
    assert a.requires_grad and not b.requires_grad
    a.sum().backward()
    want = [torch.autograd.grad(attend(*xs).sum(), x)[0] for x in xs]
    for x, w in zip(xs, want):
        torch.testing.assert_close(x.grad, w)
