"""End to end: the demo GPT compiled with ``backend="pypm"`` (and with pypm as inductor's post-grad
pass) against the same model compiled with inductor alone (what a user would pick instead) and
eager, forward (inference) and a training step (forward + backward), on one device and dtype.

For each model size the script prints which rules fired, how far pypm's outputs and gradients are
from eager's (relative to eager's own distance from a float32 eager run, so that a bf16 result is
judged against bf16's own rounding), and a table of times with ratios measured in the same run.
Times are medians of CUDA-synchronised wall-clock repeats (or CPU wall clock).

Run: ``python benchmarks/e2e_gpt.py --device cuda --dtype bfloat16`` (a small CPU smoke run:
``python benchmarks/e2e_gpt.py --sizes tiny``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from pypm.demo import GPT, GPTConfig

SIZES = {  # name: (layers, width, heads, batch, tokens)
    "tiny": (2, 64, 4, 2, 32),
    "gpt2-small": (12, 768, 12, 8, 1024),
    "gpt2-medium": (24, 1024, 16, 4, 1024),
    "wide-2k": (8, 2048, 16, 2, 2048),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_time(fn: Callable[[], Any], device: str, repeats: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def _grads(model: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], idx: torch.Tensor,
           target: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = fn(idx)
    loss = torch.nn.functional.cross_entropy(out.float().flatten(0, 1), target.flatten())
    loss.backward()
    return out.detach(), [p.grad.detach().clone() for p in model.parameters()]


def run_size(name: str, device: str, dtype: torch.dtype, repeats: int) -> None:
    import pypm

    layers, width, heads, batch, tokens = SIZES[name]
    cfg = GPTConfig(layers=layers, width=width, heads=heads, block=tokens, dropout=0.0)
    torch.manual_seed(0)
    ref32 = GPT(cfg).to(device)  # float32 reference for the rounding yardstick
    model = GPT(cfg).to(device=device, dtype=dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in ref32.state_dict().items()})
    idx = torch.randint(0, cfg.vocab, (batch, tokens), device=device)
    target = torch.randint(0, cfg.vocab, (batch, tokens), device=device)

    be = pypm.backend(inner="inductor")
    torch._dynamo.reset()
    pypm_fn = torch.compile(model, backend=be)
    plain_fn = torch.compile(model, backend="inductor")
    # pypm as inductor's post-grad pass (ATen graphs) instead of as the dynamo backend.
    post_grad = pypm.inductor_pass()

    def inductor_with_pass(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        """Inductor with pypm's post-grad pass (a backend of its own, so that dynamo does not
        reuse the code compiled for plain inductor)."""
        from torch._inductor import config as inductor_config
        from torch._inductor.compile_fx import compile_fx

        with inductor_config.patch(post_grad_custom_pre_pass=post_grad):
            return compile_fx(gm, example_inputs)

    pass_fn = torch.compile(model, backend=inductor_with_pass)
    print(f"\n## {name}: {layers} layers, width {width}, {heads} heads, batch {batch} x {tokens} "
          f"tokens, {dtype}, {device}")

    # Inference (eval, no grad).
    model.eval()
    ref32.eval()
    with torch.no_grad():
        start = time.perf_counter()
        out_p = pypm_fn(idx)
        _sync(device)
        compile_s = time.perf_counter() - start
        out_e, out_32 = model(idx), ref32(idx)
        out_i = plain_fn(idx)
        out_pg = pass_fn(idx)
        rows = [("eager", _median_time(lambda: model(idx), device, repeats)),
                ("inductor", _median_time(lambda: plain_fn(idx), device, repeats)),
                ("pypm + inductor", _median_time(lambda: pypm_fn(idx), device, repeats)),
                ("inductor + pypm pass", _median_time(lambda: pass_fn(idx), device, repeats))]
    yard = _rel(out_e, out_32)
    print(f"rules fired (inference graphs): backend {_counts(be.reports, 0)}, post-grad pass "
          f"{_counts(post_grad.reports, 0)}; first call {compile_s:.1f} s")
    print(f"output rel. error vs float32 eager: eager {yard:.2e}, inductor {_rel(out_i, out_32):.2e}, "
          f"pypm {_rel(out_p, out_32):.2e}, pypm pass {_rel(out_pg, out_32):.2e}")

    # Training step (train mode, forward + backward).
    model.train()
    ref32.train()
    n_be, n_pg = len(be.reports), len(post_grad.reports)
    _, g_p = _grads(model, pypm_fn, idx, target)
    _, g_pg = _grads(model, pass_fn, idx, target)
    _, g_e = _grads(model, model, idx, target)
    _, g_32 = _grads(ref32, ref32, idx, target)
    worst_e = max(_rel(a, b) for a, b in zip(g_e, g_32))
    worst_p = max(_rel(a, b) for a, b in zip(g_p, g_32))
    worst_pg = max(_rel(a, b) for a, b in zip(g_pg, g_32))
    print(f"rules fired (training graphs): backend {_counts(be.reports, n_be)}, post-grad pass "
          f"{_counts(post_grad.reports, n_pg)}")
    print(f"worst gradient rel. error vs float32 eager: eager {worst_e:.2e}, pypm {worst_p:.2e}, "
          f"pypm pass {worst_pg:.2e}")

    def step(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def go() -> None:
            model.zero_grad(set_to_none=True)
            out = fn(idx)
            torch.nn.functional.cross_entropy(out.float().flatten(0, 1), target.flatten()).backward()
        return go

    rows_t = [("eager", _median_time(step(model), device, repeats)),
              ("inductor", _median_time(step(plain_fn), device, repeats)),
              ("pypm + inductor", _median_time(step(pypm_fn), device, repeats)),
              ("inductor + pypm pass", _median_time(step(pass_fn), device, repeats))]
    base_f, base_t = rows[1][1], rows_t[1][1]
    print(f"\n| {'':<20} | forward ms | inductor / this | train step ms | inductor / this |")
    print(f"|{'-' * 22}|-----------:|----------------:|--------------:|----------------:|")
    for (label, tf), (_, tt) in zip(rows, rows_t):
        print(f"| {label:<20} | {tf * 1e3:10.2f} | {base_f / tf:15.2f} | {tt * 1e3:13.2f} | "
              f"{base_t / tt:15.2f} |")


def _counts(reports: list[Any], start: int) -> dict[str, int] | str:
    """Rewrites per rule in the reports from ``start`` on."""
    out: dict[str, int] = {}
    for rep in reports[start:]:
        for k, n in rep.counts().items():
            out[k] = out.get(k, 0) + n
    return out or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--sizes", nargs="+", default=["gpt2-small", "gpt2-medium", "wide-2k"],
                    choices=sorted(SIZES))
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    dev = torch.cuda.get_device_name() if a.device.startswith("cuda") else "CPU"
    import triton

    print(f"{dev}, torch {torch.__version__}, triton {triton.__version__}")
    for name in a.sizes:
        run_size(name, a.device, getattr(torch, a.dtype), a.repeats)


if __name__ == "__main__":
    main()
