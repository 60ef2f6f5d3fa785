"""Rewrite time against graph size (CPU): pypm's attention rule vs torch.fx's replace_pattern,
inductor's PatternMatcherPass with an equivalent pattern, and a pass written by hand, on the same
transformer graphs.

Each graph is a stack of pre-norm transformer layers traced with torch.fx.symbolic_trace (with
shapes recorded, as dynamo and inductor graphs have them), about 1k, 8k and 50k nodes. Each
tool rewrites its own fresh copy of the graph, after a warm-up on a 2-layer graph (imports,
pattern loading) and a ``gc.collect()`` (so that no tool's time includes collecting the garbage
left by the one before); with ``--repeat N`` each tool runs N times per size, the tools
interleaved, and the medians are printed. The table prints seconds, rewrites found,
microseconds per node for pypm, and the ratios of the times.

What each time covers: pypm, the whole ``RewritePass.apply`` on the graph (CSE, matching with
the full standard attention pattern and its alternatives, safety and type checks, DCE, report;
no recompile, like an inductor pass); replace_pattern, its own call (which recompiles the
module); inductor, ``PatternMatcherPass.apply`` with a hand-written pattern for the one spelling
present in the graph; by hand, :func:`run_by_hand`, the one spelling checked node by node with
nothing else (no CSE, no type check, no report), which is about as fast as a Python pass that
finds this spelling can be; by hand + CSE, :func:`run_by_hand_after_cse`, the same pass after
pypm's common-subexpression elimination of the whole graph (which the issue's pass must do
first): the least a pass with CSE first can take. Run:
``python benchmarks/rewrite_scaling.py [--sizes 1000 8000 50000] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import operator
import statistics
import time
from collections.abc import Callable, Iterator

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
    from pypm.graph import propagate_types

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


def run_by_hand(gm: torch.fx.GraphModule) -> int:
    """What an engineer writes for this one graph: the one spelling checked node by node from
    the root up, intermediates with one user each, one SDPA node in place of the five. No CSE,
    no other spelling, no type check, no report: a floor for any pass that finds this spelling.
    The garbage collector is off while it runs, as during a pypm pass."""
    with _gc_off():
        return _by_hand(gm.graph)


def run_by_hand_after_cse(gm: torch.fx.GraphModule) -> int:
    """:func:`run_by_hand` after pypm's CSE of the whole graph (``pypm.graph.cse``): a floor for a
    pass that merges common subexpressions first, as the rewriter does."""
    from pypm.graph import cse

    with _gc_off():
        cse(gm)
        return _by_hand(gm.graph)


@contextlib.contextmanager
def _gc_off() -> Iterator[None]:
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _by_hand(graph: torch.fx.Graph) -> int:
    found, erased = 0, set()

    def call(n, op, target, *tail):
        return isinstance(n, torch.fx.Node) and n.op == op and n.target == target \
            and tuple(n.args[len(n.args) - len(tail):]) == tail and len(n.users) == 1

    for node in reversed(list(graph.nodes)):
        if node in erased or node.op != "call_function" or node.target is not operator.matmul:
            continue
        probs, v = node.args
        if not call(probs, "call_method", "softmax", -1):
            continue
        scaled = probs.args[0]
        if not call(scaled, "call_function", operator.mul) or len(scaled.args) != 2:
            continue
        scores, scale = scaled.args
        if not call(scores, "call_function", operator.matmul):
            continue
        q, kt = scores.args
        if not call(kt, "call_method", "transpose", -2, -1):
            continue
        with graph.inserting_before(node):
            new = graph.call_function(F.scaled_dot_product_attention, (q, kt.args[0], v),
                                      {"scale": scale})
        node.replace_all_uses_with(new)
        for n in (node, probs, scaled, scores, kt):
            graph.erase_node(n)
            erased.add(n)
        found += 1
    return found


def all_tools() -> dict[str, Callable[[torch.fx.GraphModule], int]]:
    """The tools the table compares, by column, in the order they run."""
    pm_pass = inductor_pass()
    return {"pypm": run_pypm, "replace_pattern": run_replace_pattern,
            "inductor": lambda gm: run_inductor(gm, pm_pass), "by_hand": run_by_hand,
            "by_hand_cse": run_by_hand_after_cse}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 8000, 50000])
    ap.add_argument("--repeat", type=int, default=1,
                    help="time each tool this many times per size, on fresh graphs, tools "
                         "interleaved, and print the medians")
    ap.add_argument("--skip-replace-pattern-above", type=int, default=10**9,
                    help="skip replace_pattern on graphs bigger than this (it is the slow one)")
    args = ap.parse_args()
    per_layer = nodes_per_layer()
    tools = all_tools()
    for tool in tools.values():
        tool(make_graph(2))  # warm-up: imports, pattern loading, first fake-tensor dispatch
    for i, size in enumerate(args.sizes):
        layers = max(1, round(size / per_layer))
        runs: dict[str, list[float]] = {name: [] for name in tools}
        found: dict[str, int | None] = {}
        n_nodes = 0
        for _ in range(args.repeat):
            for name, tool in tools.items():
                if name == "replace_pattern" and size > args.skip_replace_pattern_above:
                    found[name] = None
                    continue
                gm = make_graph(layers)
                n_nodes = len(gm.graph.nodes)
                gc.collect()  # no tool pays for the garbage of the one before
                start = time.perf_counter()
                tool(gm)
                runs[name].append(time.perf_counter() - start)
                found[name] = count_sdpa(gm)
                del gm
        times = {name: statistics.median(ts) if ts else None for name, ts in runs.items()}
        print_row((n_nodes, layers, times, found), header=i == 0, repeat=args.repeat)


def _fmt(t: float | None, width: int = 8) -> str:
    return f"{'skipped':>{width}}" if t is None else f"{t:{width}.3f}"


def _ratio(a: float | None, b: float | None, width: int = 6) -> str:
    return f"{a / b:{width - 1}.2f}x" if a is not None and b else f"{'-':>{width}}"


def print_row(row, header: bool, repeat: int = 1) -> None:
    """Seconds and rewrites found per tool; rp/pypm is replace_pattern's time over pypm's (the
    issue's target: 20x at 8k nodes), pypm/ind and pypm/hand pypm's over inductor's and over the
    hand-written pass's, rp/hand the most any pass finding this spelling could reach, and
    rp/h+cse the most a pass that merges common subexpressions first could reach."""
    n_nodes, layers, times, found = row
    if header:
        runs = "one run each" if repeat == 1 else f"median of {repeat} runs each"
        print(f"torch {torch.__version__}, CPU; times in seconds ({runs}, each on a fresh graph "
              "after gc.collect()), found = attention rewrites")
        print(f"{'nodes':>7} {'layers':>6} | {'pypm':>8} {'found':>5} {'us/node':>7} | "
              f"{'replace_pattern':>15} {'found':>5} {'rp/pypm':>7} | {'inductor PM':>11} "
              f"{'found':>5} {'pypm/ind':>8} | {'by hand':>8} {'found':>5} {'pypm/hand':>9} "
              f"{'rp/hand':>7} | {'hand+CSE':>8} {'found':>5} {'rp/h+cse':>8}")
    t, f = times, {k: "-" if v is None else v for k, v in found.items()}
    p = t["pypm"]
    print(f"{n_nodes:>7} {layers:>6} | {_fmt(p)} {f['pypm']:>5} {p / n_nodes * 1e6:>7.1f} | "
          f"{_fmt(t['replace_pattern'], 15)} {f['replace_pattern']:>5} "
          f"{_ratio(t['replace_pattern'], p, 7)} | {_fmt(t['inductor'], 11)} {f['inductor']:>5} "
          f"{_ratio(p, t['inductor'], 8)} | {_fmt(t['by_hand'])} {f['by_hand']:>5} "
          f"{_ratio(p, t['by_hand'], 9)} {_ratio(t['replace_pattern'], t['by_hand'], 7)} | "
          f"{_fmt(t['by_hand_cse'])} {f['by_hand_cse']:>5} "
          f"{_ratio(t['replace_pattern'], t['by_hand_cse'], 8)}", flush=True)


if __name__ == "__main__":
    main()
