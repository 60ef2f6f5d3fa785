"""Data-parallel training with ``torch.compile(backend="pypm")``: DDP and FSDP2, against the
inner compiler alone.

A small GPT (hand-written causal attention, LayerNorm, GELU MLP) trains for ``--steps`` steps on
each of ``--world-size`` processes (``torch.multiprocessing`` spawn on 127.0.0.1, or under
``torchrun``), wrapped in ``DistributedDataParallel`` or sharded with FSDP2
(``torch.distributed.fsdp.fully_shard`` per block and at the root), once per compiler of
``--compilers``. Every run starts from the same weights and sees the same batches. The table:
rewrites in the compiled graphs (summed over graphs; per rank, which agree), the first step
(compile included), the median step after ``--warmup`` steps, the last loss, and the largest
difference of the loss curve from the first compiler's.

    # the GPU run (2 x H200, NCCL): inductor alone against pypm's rules + inductor
    python3 benchmarks/distributed.py --device cuda --backend nccl --dtype bfloat16 --steps 50
    # a CPU smoke test (gloo)
    python3 benchmarks/distributed.py --device cpu --backend gloo --steps 3
    # the CPU test of the suite: eager against pypm + aot_eager, 10 steps
    python3 benchmarks/distributed.py --device cpu --steps 10 --compilers eager pypm --inner aot_eager \\
        --json out.json

Compilers: ``eager`` (no torch.compile), ``aot_eager``, ``inductor`` (torch.compile with that
backend), ``pypm`` (``pypm.backend(inner=--inner)``: the standard rules, then the inner compiler).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """Pre-LN transformer block; causal attention written out by hand (what pypm rewrites). The
    mask is made in forward, so the rule proves it causal (a mask buffer is a graph input whose
    values it cannot prove: in a training graph such an attention is left as it is)."""

    def __init__(self, width: int, heads: int, seq: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.out = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        causal = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()  # provably causal
        scores = scores.masked_fill(~causal, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(b, s, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab: int, width: int, heads: int, layers: int, seq: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(seq, width))
        self.blocks = nn.ModuleList(Block(width, heads, seq) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx) + self.pos[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


@dataclass
class Result:
    mode: str
    compiler: str
    rewrites: dict[str, int] = field(default_factory=dict)
    graphs: int = 0
    errors: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)


def _backend(name: str, inner: str) -> tuple[Any, Any]:
    """(what torch.compile gets, the pypm Backend or None); (None, None) for eager."""
    if name == "eager":
        return None, None
    if name == "pypm":
        import pypm

        be = pypm.backend(inner=inner)
        return be, be
    return name, None


def _wrap(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    if mode == "ddp":
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:  # type: ignore[attr-defined]
            fully_shard(block)
        fully_shard(model)
        return model
    raise ValueError(f"unknown mode {mode!r}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(mode: str, compiler: str, cfg: argparse.Namespace, rank: int, device: torch.device) -> Result:
    """One training run on this rank; losses are averaged over the ranks."""
    dtype = getattr(torch, cfg.dtype)
    torch.manual_seed(0)
    model = GPT(cfg.vocab, cfg.width, cfg.heads, cfg.layers, cfg.seq).to(device=device, dtype=dtype)
    model = _wrap(model, mode, device)
    backend, be = _backend(compiler, cfg.inner)
    torch._dynamo.reset()
    run = model if backend is None else torch.compile(model, backend=backend)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(1000 + rank)
    out = Result(mode, compiler)
    for _ in range(cfg.steps):
        idx = torch.randint(0, cfg.vocab, (cfg.batch, cfg.seq), generator=gen).to(device)
        _sync(device)
        t0 = time.perf_counter()
        logits = run(idx)
        loss = F.cross_entropy(logits.float().flatten(0, 1), idx.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        out.step_ms.append((time.perf_counter() - t0) * 1e3)
        mean = loss.detach().float().clone()
        dist.all_reduce(mean)
        out.losses.append(mean.item() / dist.get_world_size())
    if be is not None:
        out.graphs = len(be.reports)
        for report in be.reports:
            for rule, n in report.counts().items():
                out.rewrites[rule] = out.rewrites.get(rule, 0) + n
        out.errors = [f"{type(e).__name__}: {e}" for e in be.errors]
    torch._dynamo.reset()
    return out


def worker(rank: int, cfg: argparse.Namespace) -> None:
    world = cfg.world_size
    if cfg.device == "cuda":
        torch.cuda.set_device(rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    torch.set_num_threads(max(1, cfg.threads))
    warnings.filterwarnings("ignore")
    init = "env://" if cfg.torchrun else f"tcp://127.0.0.1:{cfg.port}"
    dist.init_process_group(cfg.backend, rank=rank, world_size=world, init_method=init,
                            **({"device_id": device} if device.type == "cuda" else {}))
    try:
        results = []
        for mode in cfg.modes:
            for compiler in cfg.compilers:
                r = train(mode, compiler, cfg, rank, device)
                gathered: list[Any] = [None] * world
                dist.all_gather_object(gathered, asdict(r))
                results.append(gathered)
                if rank == 0 and cfg.verbose:
                    print(f"  {mode} {compiler}: done", file=sys.stderr, flush=True)
        if rank == 0:
            data = {"config": {k: v for k, v in vars(cfg).items() if k not in ("json", "torchrun")},
                    "runs": results}
            if cfg.json:
                with open(cfg.json, "w") as f:
                    json.dump(data, f, indent=1)
            print(table(data))
    finally:
        dist.destroy_process_group()


def table(data: dict[str, Any]) -> str:
    """The results as a table, one row per (mode, compiler)."""
    warmup = data["config"]["warmup"]
    rows = [("mode", "compiler", "rewrites (rank 0)", "graphs", "first step (s)", "median step (ms)",
             "last loss", "max |Δloss| vs first")]
    reference: dict[str, list[float]] = {}
    for per_rank in data["runs"]:
        r = per_rank[0]
        losses = r["losses"]
        ref = reference.setdefault(r["mode"], losses)
        steps = [statistics.median(x["step_ms"][warmup:] or x["step_ms"][-1:]) for x in per_rank]
        rewrites = ", ".join(f"{k}: {v}" for k, v in sorted(r["rewrites"].items())) or "-"
        if r["errors"]:
            rewrites += f" ({len(r['errors'])} pass error(s))"
        diff = max((abs(a - b) for a, b in zip(losses, ref)), default=0.0)
        rows.append((r["mode"], r["compiler"], rewrites, str(r["graphs"]) if r["compiler"] == "pypm" else "-",
                     f"{max(x['step_ms'][0] for x in per_rank) / 1e3:.2f}", f"{max(steps):.2f}",
                     f"{losses[-1]:.5f}", f"{diff:.2e}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    c = data["config"]
    head = (f"{c['world_size']} x {c['device']} ({c['backend']}), {c['dtype']}, GPT width {c['width']}, "
            f"{c['layers']} layers, {c['heads']} heads, batch {c['batch']} x {c['seq']} tokens per rank, "
            f"{c['steps']} steps (median over steps after the first {warmup}); pypm's inner compiler: "
            f"{c['inner']}")
    return head + "\n" + "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backend", default=None,
                    help="process group backend (default: nccl on cuda, gloo on cpu)")
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--modes", nargs="+", choices=("ddp", "fsdp2"), default=["ddp", "fsdp2"])
    ap.add_argument("--compilers", nargs="+", choices=("eager", "aot_eager", "inductor", "pypm"),
                    default=None, help="default: inductor pypm on cuda, aot_eager pypm on cpu")
    ap.add_argument("--inner", default=None,
                    help="pypm's inner compiler (default: inductor on cuda, aot_eager on cpu)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=None, help="steps left out of the median (default 5, "
                    "or steps - 1 when fewer)")
    ap.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: bfloat16 on cuda)")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--heads", type=int, default=None)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--vocab", type=int, default=None)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process on the CPU")
    ap.add_argument("--port", type=int, default=0, help="rendezvous port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--json", default=None, help="write the results here (rank 0)")
    ap.add_argument("--verbose", action="store_true")
    cfg = ap.parse_args(argv)
    gpu = cfg.device == "cuda"
    defaults = dict(backend="nccl" if gpu else "gloo",
                    compilers=["inductor", "pypm"] if gpu else ["aot_eager", "pypm"],
                    inner="inductor" if gpu else "aot_eager", dtype="bfloat16" if gpu else "float32",
                    width=1024 if gpu else 32, heads=16 if gpu else 4, layers=8 if gpu else 2,
                    seq=1024 if gpu else 16, batch=8 if gpu else 2, vocab=32000 if gpu else 64)
    for k, v in defaults.items():
        if getattr(cfg, k) is None:
            setattr(cfg, k, v)
    if cfg.warmup is None:
        cfg.warmup = min(5, max(0, cfg.steps - 1))
    if not cfg.port:
        cfg.port = _free_port()
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    cfg.torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if cfg.torchrun:  # torchrun --nproc-per-node 2 benchmarks/distributed.py ...
        cfg.world_size = int(os.environ["WORLD_SIZE"])
        worker(int(os.environ["RANK"]), cfg)
    else:
        mp.spawn(worker, args=(cfg,), nprocs=cfg.world_size, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
