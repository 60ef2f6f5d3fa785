"""``pypm demo``: a small GPT, compiled with ``backend="pypm"``, against eager.

The model is written the way models in the wild write attention: by hand, with a causal mask
built from ``tril`` and applied with ``masked_fill``, softmax, dropout (off in eval mode) and a
second matmul. pypm's standard rules replace each block's attention with one
``scaled_dot_product_attention`` call; the demo prints which rules fired and how often, the
largest difference from eager, and eager vs compiled time.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of the demo model (random weights; small enough for a CPU)."""

    vocab: int = 512
    block: int = 128
    layers: int = 4
    heads: int = 4
    width: int = 128
    dropout: float = 0.1


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, written out by hand."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.attn_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q = q.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // self.heads))
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.proj(y)


class Block(nn.Module):
    """Pre-norm transformer block: attention and a GELU MLP, each with a residual."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.width)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.fc = nn.Linear(cfg.width, 4 * cfg.width)
        self.out = nn.Linear(4 * cfg.width, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """A small GPT: token and position embeddings, blocks, final norm, tied-free LM head."""

    def __init__(self, cfg: GPTConfig = GPTConfig()):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.width)
        self.pos = nn.Embedding(cfg.block, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


def example(cfg: GPTConfig | None = None, batch: int = 2, tokens: int = 32,
            seed: int = 0) -> tuple[GPT, tuple[torch.Tensor]]:
    """The demo model (eval mode, random weights) and a batch of token ids."""
    torch.manual_seed(seed)
    cfg = cfg or GPTConfig()
    model = GPT(cfg).eval()
    idx = torch.randint(0, cfg.vocab, (batch, tokens))
    return model, (idx,)


def _time(fn: Any, args: tuple[Any, ...], iters: int) -> float:
    cuda = any(isinstance(a, torch.Tensor) and a.is_cuda for a in args)
    with torch.no_grad():
        fn(*args)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            fn(*args)
        if cuda:
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def run(cfg: GPTConfig, *, batch: int, tokens: int, inner: str, dynamic: bool, iters: int,
        baseline: bool = False, device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Compile the demo model with the pypm backend and measure it; returns the figures
    (with ``baseline``, also the inner compiler alone, without pypm's rules)."""
    import pypm

    model, (idx,) = example(cfg, batch, tokens)
    model, idx = model.to(device=device, dtype=dtype), idx.to(device)
    be = pypm.backend(inner=inner)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=be, dynamic=dynamic)
    start = time.perf_counter()
    with torch.no_grad():
        out = compiled(idx)
        ref = model(idx)
    compile_s = time.perf_counter() - start
    counts: dict[str, int] = {}
    for rep in be.reports:
        for k, n in rep.counts().items():
            counts[k] = counts.get(k, 0) + n
    figures = {
        "counts": counts, "reports": be.reports, "max_abs_diff": (out - ref).abs().max().item(),
        "eager_s": _time(model, (idx,), iters), "compiled_s": _time(compiled, (idx,), iters),
        "compile_s": compile_s, "baseline_s": None,
    }
    if baseline:
        torch._dynamo.reset()
        plain = torch.compile(model, backend=inner, dynamic=dynamic)
        figures["baseline_s"] = _time(plain, (idx,), iters)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """``pypm demo``: print rules applied, max abs difference against eager, and timings."""
    ap = argparse.ArgumentParser(
        prog="pypm demo",
        description="Compile a small GPT (attention written out by hand) with backend='pypm' and "
                    "print the rules applied, the difference from eager, and eager vs compiled time.")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--inner", default="inductor", help="inner compiler: inductor, aot_eager, eager")
    ap.add_argument("--dynamic", action="store_true", help="compile with dynamic=True")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--baseline", action="store_true", help="also time the inner compiler without pypm")
    ap.add_argument("--verbose", "-v", action="store_true", help="print the rewrite reports")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the fused pypm kernels run on cuda)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    a = ap.parse_args(argv)
    cfg = GPTConfig(layers=a.layers, width=a.width, heads=a.heads, block=max(a.tokens, 16))
    r = run(cfg, batch=a.batch, tokens=a.tokens, inner=a.inner, dynamic=a.dynamic, iters=a.iters,
            baseline=a.baseline, device=a.device, dtype=getattr(torch, a.dtype))
    dev = "CPU" if not a.device.startswith("cuda") else f"{torch.cuda.get_device_name()}, {a.dtype}"
    print(f"pypm demo: GPT ({cfg.layers} layers, width {cfg.width}, {cfg.heads} heads), batch "
          f"{a.batch} x {a.tokens} tokens, {dev}, torch {torch.__version__}, "
          f"backend=pypm (inner={a.inner}, dynamic={a.dynamic})")
    print()
    print(f"{'rule':<28}{'rewrites':>10}")
    for name, n in sorted(r["counts"].items()) or [("(none)", 0)]:
        print(f"{name:<28}{n:>10}")
    print()
    print(f"{'max |compiled - eager|':<28}{r['max_abs_diff']:>10.2e}")
    print(f"{'eager':<28}{r['eager_s'] * 1e3:>8.2f} ms")
    print(f"{'compiled (pypm)':<28}{r['compiled_s'] * 1e3:>8.2f} ms   "
          f"({r['eager_s'] / r['compiled_s']:.2f}x eager)")
    if r["baseline_s"] is not None:
        print(f"{'compiled (' + a.inner + ' only)':<28}{r['baseline_s'] * 1e3:>8.2f} ms   "
              f"({r['eager_s'] / r['baseline_s']:.2f}x eager)")
    print(f"{'first call (compile)':<28}{r['compile_s']:>8.2f} s")
    if a.verbose:
        for rep in r["reports"]:
            print(rep)
    return 0


__all__ = ["GPT", "GPTConfig", "example", "main", "run"]
