"""Matching scales linearly: the attention pattern of LANGUAGE.md §7 over synthetic term DAGs.

Builds transformer-like term DAGs (shared subterms, as in a CSE'd graph) of about 1k, 10k and
100k nodes, matches the Attention pattern at every candidate root picked by the root-op index,
and prints time per node. Linear means the per-node time stays flat: the script exits non-zero
if the ratio of per-node time at 100k to 1k is 2 or more.

    python benchmarks/match_scaling.py [--sizes 1000 10000 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import pypm
from pypm.lang.analysis import build_index, match_everywhere
from pypm.lang.terms import Term, subterms

ATTENTION = '''
def Attention(q, k, v, scale):
    """Softmax attention, scaled by multiplying or dividing."""
    scores = q @ Transposed(k)
    assert q.shape[-1] == k.shape[-1]
    return softmax(Scaled(scores, scale), dim=-1) @ v

def Transposed(k):
    return transpose(k, -2, -1) | transpose(k, -1, -2)

def Scaled(s, c):
    return s / c | s * c | mul(c, s)
'''

SHAPE = (2, 4, 16, 64)


def transformer_dag(target_nodes: int) -> tuple[Term, int]:
    """A chain of attention + MLP blocks over a shared residual stream, with the three scale
    spellings and both transpose spellings in turn."""
    x = Term("x", shape=SHAPE)
    layer = 0
    while True:
        def w(name: str, layer: int = layer) -> Term:
            return Term(f"w_{name}_{layer}", shape=(64, 64))

        q = Term("matmul", (x, w("q")), shape=SHAPE)
        k = Term("matmul", (x, w("k")), shape=SHAPE)
        v = Term("matmul", (x, w("v")), shape=SHAPE)
        kt = Term("transpose", (k, -2, -1) if layer % 2 else (k, -1, -2), shape=SHAPE)
        s = Term("matmul", (q, kt), shape=(2, 4, 16, 16))
        scaled = [Term("div", (s, 8.0, None)), Term("mul", (s, 0.125)), Term("mul", (0.125, s))][layer % 3]
        p = Term("softmax", (scaled, -1))
        a = Term("matmul", (p, v), shape=SHAPE)
        h = Term("add", (x, Term("matmul", (a, w("o")), shape=SHAPE), 1), shape=SHAPE)
        m = Term("gelu", (Term("matmul", (h, w("up")), shape=SHAPE),), shape=SHAPE)
        x = Term("add", (h, Term("matmul", (m, w("down")), shape=SHAPE), 1), shape=SHAPE)
        layer += 1
        if layer * 20 >= target_nodes:  # about 20 distinct nodes per block
            return x, layer


def measure(size: int, repeat: int) -> tuple[int, int, float]:
    ns = pypm.loads(ATTENTION)
    root, layers = transformer_dag(size)
    nodes = list(subterms(root))
    best = float("inf")
    found = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        index = build_index(nodes)
        found = sum(1 for _ in match_everywhere(ns.Attention, nodes, index=index))
        best = min(best, time.perf_counter() - t0)
    if found != layers:
        raise SystemExit(f"expected {layers} matches at {size} nodes, found {found}")
    return len(nodes), found, best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    rows = [measure(s, args.repeat) for s in args.sizes]
    base = rows[0][2] / rows[0][0]
    print(f"{'nodes':>8} {'matches':>8} {'time (ms)':>10} {'µs/node':>8} {'per-node ratio vs smallest':>27}")
    for n, found, t in rows:
        print(f"{n:>8} {found:>8} {t * 1e3:>10.1f} {t / n * 1e6:>8.2f} {t / n / base:>27.2f}")
    ratio = (rows[-1][2] / rows[-1][0]) / base
    print(f"per-node time ratio, largest/smallest: {ratio:.2f} (linear if < 2)")
    return 0 if ratio < 2 else 1


if __name__ == "__main__":
    sys.exit(main())
