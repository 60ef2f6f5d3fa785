"""Attention on the GPU: ``pypm::attention`` against eager, SDPA (flash, cuDNN, efficient) and
``torch.compile`` of the eager form, forward and forward+backward, bf16; prints TFLOP/s and the
ratio of pypm to each peer.

    python benchmarks/attention.py                 # the full sweep (about 5 minutes on an H100)
    python benchmarks/attention.py --check         # correctness of every feature on the GPU first
    PYPM_AUTOTUNE=0 python benchmarks/attention.py --check --no-bench   # quick correctness only

FLOPs: forward 4·B·H·Sq·Sk·D (two matmuls), halved when causal; backward 2.5× forward (five
matmuls), so forward+backward counts 3.5× forward.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pypm.kernels import attention

EAGER_BYTES_LIMIT = 40e9  # skip materialising peers when ~10 bytes per score would exceed this


def eager_attention(q, k, v, causal: bool):
    """The textbook form a graph contains: scores, mask, softmax in fp32, weighted sum."""
    s = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if causal:
        sq, sk = s.shape[-2:]
        s = s.masked_fill(torch.ones(sq, sk, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.softmax(s.float(), dim=-1).to(q.dtype) @ v


_compiled = {}


def compiled_attention(q, k, v, causal: bool):
    if causal not in _compiled:
        _compiled[causal] = torch.compile(lambda a, b, c: eager_attention(a, b, c, causal), dynamic=True)
    return _compiled[causal](q, k, v)


def sdpa(backend):
    from torch.nn.attention import sdpa_kernel

    def run(q, k, v, causal):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return run


def methods():
    from torch.nn.attention import SDPBackend
    return {
        "pypm": lambda q, k, v, c: attention(q, k, v, is_causal=c),
        "eager": eager_attention,
        "sdpa_flash": sdpa(SDPBackend.FLASH_ATTENTION),
        "sdpa_cudnn": sdpa(SDPBackend.CUDNN_ATTENTION),
        "sdpa_efficient": sdpa(SDPBackend.EFFICIENT_ATTENTION),
        "compile": compiled_attention,
    }


def flops(b, h, s, d, causal):
    f = 4.0 * b * h * s * s * d
    return f / 2 if causal else f


def bench_shapes(full: bool):
    shapes = []
    for d, h in ((128, 32), (64, 64)):  # B·S = 16k, H·D = 4096
        for s in (1024, 2048, 4096, 8192, 16384):
            shapes.append((16384 // s, h, s, d))
    if full:
        for s in (1024, 4096, 16384):
            shapes.append((4, 32, s, 128))
    shapes.append((8, 16, 2048, 64))
    return list(dict.fromkeys(shapes))


def time_ms(fn, grads=None) -> float:
    from triton.testing import do_bench
    return do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")


def measure(name, fn, q, k, v, g, causal, f):
    """(fwd TFLOP/s, fwd+bwd TFLOP/s, fwd ms, fwd+bwd ms), or Nones where the peer refuses."""
    def fwd():
        with torch.no_grad():
            return fn(q, k, v, causal)

    def fwd_bwd():
        fn(q, k, v, causal).backward(g)
    try:
        t_f = time_ms(fwd)
        t_fb = time_ms(fwd_bwd, grads=[q, k, v])
    except Exception as e:  # a peer that does not support the case
        print(f"  {name} {tuple(q.shape)} causal={causal}: {type(e).__name__}: {str(e)[:100]}")
        return (None, None)
    return (f / t_f / 1e9, 3.5 * f / t_fb / 1e9, t_f, t_fb)


def run_bench(out_dir: str | None, full: bool, only: list[str] | None = None) -> list[dict]:
    torch.manual_seed(0)
    rows = []
    meths = {n: f for n, f in methods().items() if not only or n in only}
    for (b, h, s, d) in bench_shapes(full):
        for causal in (False, True):
            q, k, v = [torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                       for _ in range(3)]
            g = torch.randn_like(q)
            f = flops(b, h, s, d, causal)
            row = {"shape": (b, h, s, d), "causal": causal}
            row.update({p: (None, None) for p in PEERS})
            for name, fn in meths.items():
                big = b * h * s * s * 10 > EAGER_BYTES_LIMIT
                if name in ("eager", "compile") and big:
                    row[name] = (None, None)
                    continue
                row[name] = measure(name, fn, q, k, v, g, causal, f)
                torch.cuda.empty_cache()
            rows.append(row)
            print_row(row, flush=True)
            del q, k, v, g
    if out_dir:
        with open(os.path.join(out_dir, "attention.json"), "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


PEERS = ("eager", "sdpa_flash", "sdpa_cudnn", "sdpa_efficient", "compile")


def print_header():
    print("| shape (B,H,S,D) | causal | mode | pypm TFLOP/s | " + " | ".join(PEERS) + " | "
          + " | ".join(f"pypm/{p}" for p in PEERS) + " |")
    print("|" + "---|" * (4 + 2 * len(PEERS)))


def print_row(row, flush=False):
    for i, mode in ((0, "fwd"), (1, "fwd+bwd")):
        def tf(name, i=i):
            v = row[name][i]
            return "-" if v is None else f"{v:.0f}"

        def ratio(name, i=i):
            a, p = row["pypm"][i], row[name][i]
            return "-" if a is None or p is None else f"{a / p:.2f}"
        print(f"| {row['shape']} | {row['causal']} | {mode} | {tf('pypm')} | "
              + " | ".join(tf(p) for p in PEERS) + " | " + " | ".join(ratio(p) for p in PEERS) + " |",
              flush=flush)


# --------------------------------------------------------------------------------------------
# Correctness of every feature on the GPU, against float64
# --------------------------------------------------------------------------------------------


def reference(q, k, v, mask, scale, causal):
    q, k, v = q.double(), k.double(), v.double()
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    s = q @ k.transpose(-1, -2) * scale
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.double()
    if causal:
        sq, sk = s.shape[-2:]
        i = torch.arange(sq, device=q.device)[:, None]
        j = torch.arange(sk, device=q.device)[None]
        s = s.masked_fill(j > i + sk - sq, float("-inf"))
    return torch.softmax(s, -1).nan_to_num(0.0) @ v


TOL = {torch.float16: 1e-2, torch.bfloat16: 3e-2, torch.float32: 5e-3}  # rel. Frobenius error


def make(b, h, s, d, dt, layout):
    """Random (B, H, S, D); ``bshd`` stores it as (B, S, H, D) and returns the permuted view."""
    if layout == "bshd":
        return torch.randn(b, s, h, d, device="cuda", dtype=dt).transpose(1, 2)
    return torch.randn(b, h, s, d, device="cuda", dtype=dt)


def run_check() -> bool:
    torch.manual_seed(1)
    cases = [  # (B, Hq, Hkv, Sq, Sk, D, causal, dtype, mask, layout)
        (2, 4, 4, 300, 300, 128, False, torch.bfloat16, None, "bshd"),
        (2, 4, 4, 300, 300, 128, True, torch.bfloat16, None, "bhsd"),
        (1, 8, 2, 257, 513, 64, True, torch.float16, None, "bshd"),
        (1, 8, 1, 130, 77, 64, True, torch.bfloat16, None, "bhsd"),
        (2, 2, 2, 200, 333, 32, False, torch.float16, "bool", "bshd"),
        (1, 4, 2, 190, 190, 96, False, torch.bfloat16, "add", "bhsd"),
        (1, 2, 2, 150, 260, 256, True, torch.bfloat16, None, "bshd"),
        (1, 2, 1, 129, 129, 128, True, torch.float32, "add", "bshd"),
        (1, 4, 4, 1, 300, 128, True, torch.bfloat16, None, "bhsd"),
        (3, 4, 2, 64, 64, 64, False, torch.float16, "bool", "bhsd"),
    ]
    ok = True
    for (b, hq, hkv, sq, sk, d, causal, dt, mk, layout) in cases:
        q, k, v = (make(b, h, s, d, dt, layout) for h, s in ((hq, sq), (hkv, sk), (hkv, sk)))
        mask = None
        if mk == "bool":
            mask = torch.rand(sq, sk, device="cuda") > 0.3
        elif mk == "add":
            mask = torch.randn(1, hq, 1, sk, device="cuda", dtype=dt)
        scale = 0.3
        for t in (q, k, v):
            t.requires_grad_(True)
        t0 = time.time()
        o = attention(q, k, v, scale=scale, is_causal=causal, attn_mask=mask)
        go = torch.randn_like(o)
        o.backward(go)
        torch.cuda.synchronize()
        refs = [x.detach().double().requires_grad_(True) for x in (q, k, v)]
        r = reference(*refs, mask, scale, causal)
        r.backward(go.double())
        errs = [((a.double() - e).norm() / e.norm().clamp_min(1e-30)).item()
                for a, e in zip((o, q.grad, k.grad, v.grad), (r, *[x.grad for x in refs]))]
        good = all(e < TOL[dt] for e in errs) and all(
            torch.isfinite(x).all().item() for x in (o, q.grad, k.grad, v.grad))
        ok &= good
        print(f"check B={b} Hq={hq} Hkv={hkv} Sq={sq} Sk={sk} D={d} causal={causal} {dt} mask={mk} "
              f"{layout}: rel err out/dq/dk/dv = {', '.join(f'{e:.1e}' for e in errs)} "
              f"{'PASS' if good else 'FAIL'} ({time.time() - t0:.1f}s)", flush=True)
    return ok


def run_overhead() -> None:
    """Host overhead: a problem so small that the GPU work is negligible (median ms per call)."""
    q, k, v = (torch.randn(1, 1, 128, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    g = torch.randn_like(q)
    for name in ("pypm", "sdpa_flash"):
        t_f, t_fb = measure(name, methods()[name], q, k, v, g, False, 1.0)[2:]
        print(f"overhead {name}: fwd {t_f * 1e3:.0f} us, fwd+bwd {t_fb * 1e3:.0f} us", flush=True)


def run_profile() -> None:
    """Where the time of small forward+backward calls goes: torch.profiler's CPU and CUDA
    totals per op and kernel, and the backward launched with and without the op wrapper."""
    from torch.profiler import ProfilerActivity, profile

    mod = sys.modules["pypm.kernels.attention"]
    q, k, v = (torch.randn(1, 1, 128, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    g = torch.randn_like(q)
    out, lse = torch.ops.pypm.attention(q, k, v, None, None, False, [])
    args = (g, q, k, v, out, lse, None, None, False)
    for name, fn in (("op", lambda: torch.ops.pypm.attention_backward(*args)),
                     ("python fn", lambda: mod._attention_backward_op(*args)),
                     ("launcher", lambda: mod._launch_backward(g, q, k, v, out, lse, None, 0.125, False))):
        print(f"backward via {name}: {time_ms(fn) * 1e3:.0f} us", flush=True)

    def step():
        attention(q, k, v).backward(g)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), flush=True)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12), flush=True)


def run_inductor_check() -> bool:
    """torch.compile with inductor (what backend="pypm" hands over to) of a block that uses all
    four ops: it must compile with the Triton kernels visible, and match eager, forward and
    backward."""
    from pypm.kernels import layer_norm, rms_norm, softmax

    def block(x, w, b, q, k, v):
        h = layer_norm(rms_norm(x, [x.shape[-1]], w), [x.shape[-1]], w, b)
        a = attention(q, k, v, is_causal=True).transpose(1, 2).flatten(2)
        return (softmax(h, -1) * h).float().sum() + a.float().square().mean()  # every gradient non-zero

    torch.manual_seed(3)
    inputs = [torch.randn(*s, device="cuda", dtype=torch.bfloat16, requires_grad=True)
              for s in ((64, 256), (256,), (256,), (2, 4, 200, 64), (2, 4, 200, 64), (2, 4, 200, 64))]
    try:
        compiled = torch.compile(block, backend="inductor", fullgraph=True)
        got = compiled(*inputs)
        got_grads = torch.autograd.grad(got, inputs)
    except Exception as e:
        print(f"inductor check: {type(e).__name__}: {str(e)[:400]} FAIL", flush=True)
        return False
    want = block(*inputs)
    want_grads = torch.autograd.grad(want, inputs)
    errs = [((a.double() - e.double()).norm() / e.double().norm()).item()
            for a, e in zip((got, *got_grads), (want, *want_grads))]
    good = all(e < 2e-2 for e in errs)
    print(f"inductor check: rel err out and grads {', '.join(f'{e:.1e}' for e in errs)} "
          f"{'PASS' if good else 'FAIL'}", flush=True)
    return good


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer shapes")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--only", nargs="*", help="methods to time (default: all)")
    ap.add_argument("--overhead", action="store_true", help="host overhead at a tiny shape")
    ap.add_argument("--profile", action="store_true", help="profile the host side of small calls")
    ap.add_argument("--inductor", action="store_true", help="only the torch.compile(inductor) check")
    args = ap.parse_args()
    import triton
    print(f"GPU {torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}",
          flush=True)
    if args.overhead:
        run_overhead()
    if args.profile:
        run_profile()
    if args.inductor and not run_inductor_check():
        print("CHECK FAILED", flush=True)
    if args.check and not (run_check() and run_inductor_check()):
        print("CHECK FAILED", flush=True)
    if not args.no_bench:
        print_header()
        run_bench(args.out, full=not args.quick, only=args.only)


if __name__ == "__main__":
    main()
