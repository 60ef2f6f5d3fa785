"""Softmax, RMSNorm and LayerNorm on the GPU: ``pypm`` against eager and ``torch.compile``, bf16,
rows of 1k..32k elements; prints GB/s, the ratio of pypm to each peer, and pypm as a share of
the device's measured copy bandwidth.

    python benchmarks/norms.py            # check on the GPU, then the sweep (about 3 minutes)

Bytes: forward reads x (and weight/bias) and writes y; backward reads the saved tensor (y for
softmax, x for the norms) and dy and writes dx. Per-row statistics are ignored (< 0.1%).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pypm.kernels import layer_norm, rms_norm, softmax

ELEMENTS = 1 << 26  # 64M bf16 elements (128 MB) per tensor: many times the 50-60 MB of L2
ROW_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768)


def time_ms(fn) -> float:
    from triton.testing import do_bench
    return do_bench(fn, warmup=25, rep=100, return_mode="median")


def copy_bandwidth() -> float:
    """GB/s of a device-to-device copy of 1 GiB, counting bytes read and written."""
    x = torch.randn(1 << 29, device="cuda", dtype=torch.bfloat16)
    y = torch.empty_like(x)
    t = time_ms(lambda: y.copy_(x))
    return 2 * x.numel() * x.element_size() / t / 1e6


def cases(n: int, dtype=torch.bfloat16):
    """(name, pypm fn, eager fn, parameters) for rows of length n; each fn maps (x, *params)."""
    w = torch.randn(n, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(n, device="cuda", dtype=dtype, requires_grad=True)
    return [
        ("softmax", lambda x: softmax(x, -1), lambda x: torch.softmax(x, -1), []),
        ("rms_norm", lambda x, w: rms_norm(x, [n], w, 1e-6), lambda x, w: F.rms_norm(x, [n], w, 1e-6), [w]),
        ("layer_norm", lambda x, w, b: layer_norm(x, [n], w, b),
         lambda x, w, b: F.layer_norm(x, [n], w, b), [w, b]),
    ]


def run_check() -> bool:
    """Forward and every gradient against float64, at ragged, one-tile and chunked row lengths."""
    ok = True
    torch.manual_seed(2)
    for n in (1000, 4096, 40000):
        x = (torch.randn(37, n, device="cuda") * 2 + 0.5).to(torch.bfloat16).requires_grad_(True)
        for name, fn, ref, params in cases(n):
            y = fn(x, *params)
            g = torch.randn_like(y)
            grads = torch.autograd.grad(y, [x, *params], g)
            ins = [t.detach().double().requires_grad_(True) for t in (x, *params)]
            r = ref(*ins)
            rgrads = torch.autograd.grad(r, ins, g.double())
            errs = [((a.double() - e).norm() / e.norm()).item() for a, e in zip((y, *grads), (r, *rgrads))]
            good = all(e < 2e-2 for e in errs) and torch.isfinite(y).all().item()
            ok &= good
            print(f"check {name} rows=37 n={n}: rel err y, grads {', '.join(f'{e:.1e}' for e in errs)} "
                  f"{'PASS' if good else 'FAIL'}", flush=True)
    return ok


def measure(f, x, params, g) -> tuple[float, float]:
    """Median ms of the forward alone and of forward + backward (all gradients)."""
    def fwd():
        with torch.no_grad():
            return f(x, *params)

    def fwd_bwd():
        return torch.autograd.grad(f(x, *params), [x, *params], g)
    return time_ms(fwd), time_ms(fwd_bwd)


def run_bench(out_dir: str | None) -> None:
    torch._dynamo.config.cache_size_limit = 256
    bw = copy_bandwidth()
    print(f"copy bandwidth: {bw:.0f} GB/s (1 GiB device-to-device, read + write)", flush=True)
    print("| op | row | mode | pypm GB/s | eager | compile | pypm/eager | pypm/compile | pypm % of copy |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows_out = []
    for n in ROW_LENGTHS:
        x = torch.randn(ELEMENTS // n, n, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        g = torch.randn_like(x)
        for name, fn, eager, params in cases(n):
            comp = torch.compile(eager, dynamic=False)
            fwd_bytes = 2 * x.numel() * 2
            res = {}
            for label, f in (("pypm", fn), ("eager", eager), ("compile", comp)):
                t_f, t_fb = measure(f, x, params, g)
                res[label] = (fwd_bytes / t_f / 1e6, 2.5 * fwd_bytes / t_fb / 1e6)
            for i, mode in ((0, "fwd"), (1, "fwd+bwd")):
                p, e, c = res["pypm"][i], res["eager"][i], res["compile"][i]
                print(f"| {name} | {n} | {mode} | {p:.0f} | {e:.0f} | {c:.0f} | {p / e:.2f} | {p / c:.2f} | "
                      f"{100 * p / bw:.0f}% |", flush=True)
            rows_out.append({"op": name, "n": n, **res})
        del x, g
        torch.cuda.empty_cache()
    if out_dir:
        with open(os.path.join(out_dir, "norms.json"), "w") as fh:
            json.dump({"copy_gbps": bw, "rows": rows_out}, fh, indent=1)


def run_sweep() -> None:
    """Time the norm backward alone under each BackwardTuning setting (GB/s: x, dy read, dx written)."""
    import itertools

    norms = sys.modules["pypm.kernels.norms"]
    tuning = norms.BackwardTuning
    print("| op | row | tile elems | stages | programs/SM | bwd GB/s |\n|---|---|---|---|---|---|")
    for n in (1024, 4096, 16384):
        x = torch.randn(ELEMENTS // n, n, device="cuda", dtype=torch.bfloat16)
        g = torch.randn_like(x)
        w = torch.randn(n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, device="cuda", dtype=torch.bfloat16)
        for op, center in (("rms_norm", False), ("layer_norm", True)):
            if center:
                _, mean, rstd = torch.ops.pypm.layer_norm(x, [n], w, b, 1e-5)
            else:
                _, mean, rstd = torch.ops.pypm.rms_norm(x, [n], w, 1e-6)
            for tile, stages, per_sm in itertools.product((1024, 4096), (1,), (None, 2, 8, 16)):
                tuning.tile_elements, tuning.num_stages, tuning.programs_per_sm = tile, stages, per_sm
                args = (g, x, w, mean, rstd, [n], center, center)
                t = time_ms(lambda args=args: torch.ops.pypm.norm_backward(*args))
                print(f"| {op} | {n} | {tile} | {stages} | {per_sm or 'auto'} | "
                      f"{3 * x.numel() * 2 / t / 1e6:.0f} |", flush=True)
        tuning.tile_elements, tuning.num_stages, tuning.programs_per_sm = 1024, 1, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="time the backward's tuning knobs")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    args = ap.parse_args()
    import triton
    print(f"GPU {torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}",
          flush=True)
    if args.sweep:
        run_sweep()
    if not args.no_check and not run_check():
        print("CHECK FAILED", flush=True)
    if not args.no_bench:
        run_bench(args.out)


if __name__ == "__main__":
    main()
