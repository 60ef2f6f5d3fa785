"""Rewrite time against graph size (CPU): pypm's attention rule vs torch.fx's replace_pattern
and inductor's PatternMatcherPass with an equivalent pattern, on the same transformer graphs.

Each graph is a stack of pre-norm transformer layers traced with torch.fx.symbolic_trace (with
shapes recorded, as dynamo and inductor graphs have them), about 1k, 8k and 50k nodes. Each
tool rewrites its own fresh copy of the graph once, after a warm-up on a 2-layer graph (imports,
pattern loading); the table prints seconds, rewrites found, microseconds per node for pypm,
replace_pattern's time over pypm's, and pypm's time over inductor's.

What each time covers: pypm, the whole ``RewritePass.apply`` on the graph (CSE, matching with
the full standard attention pattern and its alternatives, safety and type checks, DCE, report,
``graph.lint()``; no recompile, like an inductor pass); replace_pattern, its own call (which
recompiles the module); inductor, ``PatternMatcherPass.apply`` with a hand-written pattern for
the one spelling present in the graph. Run:
``python benchmarks/rewrite_scaling.py [--sizes 1000 8000 50000]``.
"""

from __future__ import annotations

import argparse
import operator
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SCALE = 0.125
B, T, H, D = 1, 4, 2, 4
C = H * D


class Layer(nn.Module):
    """One transformer layer with attention written out by hand."""

    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(C)
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C)
        self.fc = nn.Linear(C, 4 * C)
        self.out = nn.Linear(4 * C, C)

    def forward(self, x):
        h = self.qkv(self.ln1(x))
        q, k, v = h.split(C, dim=2)
        q = q.view(B, T, H, D).transpose(1, 2)
        k = k.view(B, T, H, D).transpose(1, 2)
        v = v.view(B, T, H, D).transpose(1, 2)
        att = (q @ k.transpose(-2, -1) * SCALE).softmax(-1) @ v
        x = x + self.proj(att.transpose(1, 2).reshape(B, T, C))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class Stack(nn.Module):
    def __init__(self, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(Layer() for _ in range(layers))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def nodes_per_layer() -> int:
    def size(n: int) -> int:
        return len(torch.fx.symbolic_trace(Stack(n)).graph.nodes)

    return size(2) - size(1)


def make_graph(layers: int) -> torch.fx.GraphModule:
    """A traced stack with shapes and dtypes recorded on every node (meta["val"])."""
    from pypm.fx import propagate_types

    gm = torch.fx.symbolic_trace(Stack(layers))
    propagate_types(gm, (torch.randn(B, T, C),))
    return gm


def count_sdpa(gm: torch.fx.GraphModule) -> int:
    return sum(1 for n in gm.graph.nodes if "scaled_dot_product_attention" in str(n.target))


# ---------------------------------------------------------------------------------------------
# The three tools


def run_pypm(gm: torch.fx.GraphModule) -> int:
    from pypm.rules.attention import RULES

    from pypm.rewrite import RewritePass

    report = RewritePass(RULES).apply(gm.graph)  # like inductor's pass: no recompile
    return len(report.rewrites)


def _pattern(q, k, v):
    return (q @ k.transpose(-2, -1) * SCALE).softmax(-1) @ v


def _replacement(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, scale=SCALE)


def run_replace_pattern(gm: torch.fx.GraphModule) -> int:
    from torch.fx import subgraph_rewriter

    return len(subgraph_rewriter.replace_pattern(gm, _pattern, _replacement))


def inductor_pass():
    """The same computation as an inductor pattern (CallFunction/CallMethod over torch-level
    targets), replaced by one scaled_dot_product_attention node, as a PatternMatcherPass."""
    from torch._inductor.pattern_matcher import (
        CallFunction,
        CallMethod,
        KeywordArg,
        PatternMatcherPass,
        register_graph_pattern,
    )

    kt = CallMethod("transpose", KeywordArg("k"), -2, -1)
    scores = CallFunction(operator.matmul, KeywordArg("q"), kt)
    scaled = CallFunction(operator.mul, scores, KeywordArg("scale"))
    probs = CallMethod("softmax", scaled, -1)
    attention = CallFunction(operator.matmul, probs, KeywordArg("v"))
    pm_pass = PatternMatcherPass()

    @register_graph_pattern(attention, pass_dict=pm_pass)
    def replace(match, q, k, v, scale):
        node = match.output_node()
        graph = node.graph
        with graph.inserting_before(node):
            new = graph.call_function(F.scaled_dot_product_attention, (q, k, v), {"scale": scale})
        node.replace_all_uses_with(new)
        try:
            match.erase_nodes()
        except TypeError:  # torch < 2.6 takes the graph
            match.erase_nodes(graph)

    return pm_pass


def run_inductor(gm: torch.fx.GraphModule, pm_pass) -> int:
    return pm_pass.apply(gm.graph)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 8000, 50000])
    ap.add_argument("--skip-replace-pattern-above", type=int, default=10**9,
                    help="skip replace_pattern on graphs bigger than this (it is the slow one)")
    args = ap.parse_args()
    per_layer = nodes_per_layer()
    pm_pass = inductor_pass()
    for tool in (run_pypm, run_replace_pattern, lambda gm: run_inductor(gm, pm_pass)):
        tool(make_graph(2))  # warm-up: imports, pattern loading, first fake-tensor dispatch
    rows = []
    for size in args.sizes:
        layers = max(1, round(size / per_layer))
        times: dict[str, float | None] = {}
        found: dict[str, int | None] = {}
        n_nodes = 0
        for tool in ("pypm", "replace_pattern", "inductor"):
            if tool == "replace_pattern" and size > args.skip_replace_pattern_above:
                times[tool], found[tool] = None, None
                continue
            gm = make_graph(layers)
            n_nodes = len(gm.graph.nodes)
            start = time.perf_counter()
            if tool == "pypm":
                run_pypm(gm)
            elif tool == "replace_pattern":
                run_replace_pattern(gm)
            else:
                run_inductor(gm, pm_pass)
            times[tool] = time.perf_counter() - start
            found[tool] = count_sdpa(gm)
        rows.append((n_nodes, layers, times, found))
        print_row(rows[-1], header=len(rows) == 1)


def _fmt(t: float | None) -> str:
    return "skipped" if t is None else f"{t:8.3f}"


def print_row(row, header: bool) -> None:
    n_nodes, layers, times, found = row
    if header:
        print(f"torch {torch.__version__}, CPU; times in seconds (one run), found = attention rewrites")
        print(f"{'nodes':>7} {'layers':>6} | {'pypm':>8} {'found':>5} {'us/node':>7} | "
              f"{'replace_pattern':>15} {'found':>5} {'ratio':>7} | {'inductor PM':>11} {'found':>5} "
              f"{'ratio':>6}")
    p, r, i = times["pypm"], times["replace_pattern"], times["inductor"]
    rp = f"{r / p:6.1f}x" if r is not None and p else "     -"
    ip = f"{p / i:5.2f}x" if i and p else "    -"
    print(f"{n_nodes:>7} {layers:>6} | {_fmt(p)} {found['pypm']:>5} {p / n_nodes * 1e6:>7.1f} | "
          f"{_fmt(r):>15} {found['replace_pattern'] if found['replace_pattern'] is not None else '-':>5} "
          f"{rp:>7} | {_fmt(i):>11} {found['inductor']:>5} {ip:>6}", flush=True)


if __name__ == "__main__":
    main()
