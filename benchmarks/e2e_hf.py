"""End to end on Hugging Face architectures: what pypm's rewrites buy over what a transformers user
gets without pypm, on the models people actually run (LLaMA, Qwen2, Mistral, Phi, GPT-NeoX,
Gemma-2, GPT-2, BERT), built from ``transformers`` config objects with random weights (nothing is
downloaded).

For each architecture and mode (``inference``: forward under ``torch.no_grad()``; ``train``:
forward, cross-entropy loss and backward) one run measures, on the same weights and inputs:

- ``eager``: the model with ``attn_implementation="eager"`` (attention written out in torch ops);
- ``inductor``: that model under ``torch.compile`` (inductor);
- ``sdpa+inductor``: ``attn_implementation="sdpa"`` under ``torch.compile``, what a transformers
  user gets by default;
- ``flex+compile``: ``attn_implementation="flex_attention"`` under ``torch.compile``, where
  transformers supports it for the model (``n/a: <reason>`` otherwise);
- ``pypm``: the eager-attention model under ``torch.compile(model, backend=pypm.backend(rules=
  pypm.standard_rules() + pypm.rules.opt_in_rules()))`` (inductor inside), with the rewrites
  its reports list.

Times are medians of ``--repeats`` wall-clock runs after warm-up (CUDA-synchronised on a GPU).
Each variant's logits (train: also the gradients of the first layer's query projection and of the
input embedding) are compared with a float32 eager run of the same weights as a relative L2 error
``|a - b| / |b|``, shown next to the time; the eager column (in the model's dtype) is the yardstick
for that dtype's own rounding. Ratios ``x / pypm`` above 1 mean pypm is faster; ``best`` is the
fastest of inductor, sdpa+inductor and flex+compile. A variant that fails prints its short error
in its cell; an architecture this transformers version lacks prints a row saying so.

Sizes: ``tiny`` (2 layers, width 64, 4 heads, batch 2 x 32 tokens; a CPU smoke run) and
``realistic`` (4 layers of a 2048-wide config, 16 heads, intermediate 5632, vocab 32000, batch
2 x 2048 tokens; meant for bf16 on a GPU). LLaMA, Qwen2, Mistral and Gemma-2, whose real models
use grouped-query attention, get a quarter as many kv heads (tiny: half); the others keep one
kv head per head, as their real models do.
The realistic window is Mistral-7B's 4096, so it bites only with ``--long``, which adds the
sliding-window arch (mistral) at 8192 tokens, batch 1 (tiny: a window of 16, and 128 tokens).
Every (arch, mode) compiles four models: where a job has a time limit, run a few ``--archs`` per
invocation (``--json`` keeps the rows of each).

Run::

    python benchmarks/e2e_hf.py --size realistic --device cuda --dtype bfloat16
    python benchmarks/e2e_hf.py --size tiny --archs llama gpt2 --modes inference --repeats 1  # CPU

``main(argv)`` returns the table rows as a list of dicts (the tests read those).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import json
import math
import platform
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

VARIANTS = ("eager", "inductor", "sdpa+inductor", "flex+compile", "pypm")
ALTERNATIVES = ("inductor", "sdpa+inductor", "flex+compile")  # what "best" is chosen from
MODES = ("inference", "train")


@dataclass(frozen=True)
class Size:
    layers: int
    width: int
    heads: int
    kv_heads: int  # for the archs whose real models use grouped-query attention
    intermediate: int
    vocab: int
    batch: int
    seq: int
    window: int  # sliding window (mistral, gemma-2's local layers)
    long_seq: int  # --long: the sliding-window arch at this length
    long_batch: int


SIZES = {
    "tiny": Size(layers=2, width=64, heads=4, kv_heads=2, intermediate=128, vocab=256, batch=2, seq=32,
                 window=16, long_seq=128, long_batch=1),
    "realistic": Size(layers=4, width=2048, heads=16, kv_heads=4, intermediate=5632, vocab=32000, batch=2,
                      seq=2048, window=4096, long_seq=8192, long_batch=1),
}


def _decoder(s: Size, gqa: bool) -> dict[str, Any]:
    return dict(vocab_size=s.vocab, hidden_size=s.width, intermediate_size=s.intermediate,
                num_hidden_layers=s.layers, num_attention_heads=s.heads,
                num_key_value_heads=s.kv_heads if gqa else s.heads,
                max_position_embeddings=max(s.seq, s.long_seq))


# name -> (config class, model class, config arguments for a size, the arch has a sliding window)
ARCHS: dict[str, tuple[str, str, Callable[[Size], dict[str, Any]], bool]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", lambda s: _decoder(s, gqa=True), False),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", lambda s: _decoder(s, gqa=True), False),
    "mistral": ("MistralConfig", "MistralForCausalLM",
                lambda s: dict(_decoder(s, gqa=True), sliding_window=s.window), True),
    "phi": ("PhiConfig", "PhiForCausalLM", lambda s: _decoder(s, gqa=False), False),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", lambda s: _decoder(s, gqa=False), False),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               lambda s: dict(_decoder(s, gqa=True), head_dim=s.width // s.heads, sliding_window=s.window,
                              attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                              query_pre_attn_scalar=s.width // s.heads), False),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             lambda s: dict(vocab_size=s.vocab, n_embd=s.width, n_layer=s.layers, n_head=s.heads,
                            n_inner=s.intermediate, n_positions=max(s.seq, s.long_seq), bos_token_id=0,
                            eos_token_id=0), False),
    "bert": ("BertConfig", "BertForMaskedLM",
             lambda s: dict(vocab_size=s.vocab, hidden_size=s.width, num_hidden_layers=s.layers,
                            num_attention_heads=s.heads, intermediate_size=s.intermediate,
                            max_position_embeddings=max(s.seq, s.long_seq)), False),
}

ATTN_IMPL = {"eager": "eager", "inductor": "eager", "pypm": "eager", "sdpa+inductor": "sdpa",
             "flex+compile": "flex_attention"}


# -- helpers ---------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _short(e: BaseException, limit: int = 160) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    a, b = a.detach().double(), b.detach().to(a.device, torch.float64)
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' and torch's advisory warnings off (they would drown the table)."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:  # pragma: no cover
        tlog = None
    level = tlog.get_verbosity() if tlog else None
    if tlog:
        tlog.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if tlog:
            tlog.set_verbosity(level)


def _config(arch: str, size: Size) -> Any:
    """The arch's config object (raises if this transformers version lacks it)."""
    import transformers

    config_name, model_name, kwargs, _ = ARCHS[arch]
    config_cls = getattr(transformers, config_name, None)
    if config_cls is None or getattr(transformers, model_name, None) is None:
        raise LookupError(f"transformers {transformers.__version__} has no {model_name}")
    cfg = config_cls(**kwargs(size))
    for key, value in list(vars(cfg).items()):  # dropout off: the train-mode errors compare like with like
        if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
            setattr(cfg, key, 0.0)
    cfg.use_cache = False
    return cfg


def _build(arch: str, cfg: Any, impl: str, device: str, dtype: torch.dtype,
           state: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    """The arch with attention implementation ``impl``, weights from ``state`` (random from seed 0
    when None), in ``dtype`` on ``device``."""
    import transformers

    auto = transformers.AutoModelForMaskedLM if arch == "bert" else transformers.AutoModelForCausalLM
    torch.manual_seed(0)
    with torch.device(device):  # a config of its own: from_config records the implementation in it
        model = auto.from_config(copy.deepcopy(cfg), attn_implementation=impl)
    if state is not None:
        model.load_state_dict(state)
    return model.to(dtype)


def _probe_names(model: torch.nn.Module) -> list[str]:
    """The parameters whose gradients are compared: the first layer's query projection (a fused
    qkv weight where the arch has one) and the input embedding."""
    names = [n for n, _ in model.named_parameters()]
    emb = model.get_input_embeddings().weight
    emb_name = next(n for n, p in model.named_parameters() if p is emb)
    query = next((n for n in names if n.endswith("weight") and ".0." in n
                  and any(k in n for k in ("q_proj", "query", "c_attn", "qkv"))), None)
    return [n for n in (query, emb_name) if n is not None]


def _reports_summary(reports: Sequence[Any]) -> tuple[dict[str, int], list[str]]:
    """Rewrites per rule over every report, and why attention was left alone: the distinct
    reasons of the attention rules' skipped matches, then of their near misses (first few)."""
    counts: dict[str, int] = {}
    skipped: list[str] = []
    missed: list[str] = []
    seen: set[str] = set()
    for rep in reports:
        for k, n in rep.counts().items():
            counts[k] = counts.get(k, 0) + n
        for entries, out in ((rep.skipped, skipped), (rep.misses, missed)):
            for s in entries:
                key = re.sub(r"%\w+", "%", f"{s.rule}: {s.reason}")  # the same reason in another layer
                if s.rule.startswith("attention") and key not in seen:
                    seen.add(key)
                    out.append(f"{s.rule} at {s.root}: {s.reason}")
    return counts, (skipped + missed)[:6]


# -- one cell --------------------------------------------------------------------------------


class _Case:
    """One architecture at one sequence length: its models (one per attention implementation, the
    same weights), inputs and float32 eager reference per mode."""

    def __init__(self, arch: str, size: Size, batch: int, seq: int, device: str, dtype: torch.dtype):
        self.arch, self.device, self.dtype = arch, device, dtype
        self.cfg = _config(arch, size)
        with _quiet():
            self.ref = _build(arch, self.cfg, "eager", device, torch.float32, None)
        self.state = {k: v.detach().clone() for k, v in self.ref.state_dict().items()}
        self.probes = _probe_names(self.ref)
        gen = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, size.vocab, (batch, seq), generator=gen).to(device)
        self.target = torch.randint(0, size.vocab, (batch, seq), generator=gen).to(device)
        self.models: dict[str, torch.nn.Module | str] = {}
        self.expected: dict[str, list[torch.Tensor]] = {}

    def model(self, impl: str) -> torch.nn.Module:
        """The model with attention implementation ``impl`` (built once; an error is kept)."""
        if impl not in self.models:
            try:
                with _quiet():
                    self.models[impl] = _build(self.arch, self.cfg, impl, self.device, self.dtype, self.state)
            except Exception as e:
                self.models[impl] = f"n/a: {_short(e)}"
        got = self.models[impl]
        if isinstance(got, str):
            raise _NotAvailable(got)
        return got

    def step(self, model: torch.nn.Module, fn: Callable[..., Any],
             mode: str) -> Callable[[], list[torch.Tensor]]:
        """One forward (inference) or training step of ``fn``; returns the logits (and the probed
        gradients)."""
        ids, target = self.ids, self.target
        params = dict(model.named_parameters())

        def inference() -> list[torch.Tensor]:
            with torch.no_grad():
                return [fn(input_ids=ids).logits]

        def train() -> list[torch.Tensor]:
            model.zero_grad(set_to_none=True)
            logits = fn(input_ids=ids).logits
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), target.flatten())
            loss.backward()
            return [logits.detach()] + [params[n].grad for n in self.probes]

        if mode == "inference":
            model.eval()
            return inference
        model.train()
        return train

    def reference(self, mode: str) -> list[torch.Tensor]:
        if mode not in self.expected:
            with _quiet():
                out = self.step(self.ref, self.ref, mode)()
            self.expected[mode] = [t.detach().clone() for t in out]
        return self.expected[mode]

    def release(self) -> None:
        self.models.clear()
        self.expected.clear()
        self.ref = None  # type: ignore[assignment]
        self.state.clear()


class _NotAvailable(Exception):
    pass


def _time(step: Callable[[], Any], device: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(case: _Case, variant: str, mode: str, repeats: int, rules: Sequence[Any]) -> dict[str, Any]:
    """Time and error of one variant; ``error`` holds the short reason where it did not run."""
    import pypm

    cell: dict[str, Any] = {"ms": None, "err": None, "compile_s": None, "error": None}
    torch._dynamo.reset()
    be = None
    try:
        model = case.model(ATTN_IMPL[variant])
        if variant == "eager":
            fn: Callable[..., Any] = model
        elif variant == "pypm":
            be = pypm.backend(rules=list(rules))
            fn = torch.compile(model, backend=be)
        else:
            fn = torch.compile(model)
        expected = case.reference(mode)
        step = case.step(model, fn, mode)
        with _quiet():
            _sync(case.device)
            start = time.perf_counter()
            got = step()  # compiles
            _sync(case.device)
            cell["compile_s"] = time.perf_counter() - start
            cell["err"] = max(_rel(a, b) for a, b in zip(got, expected))
            del got
            step()  # warm-up
            cell["ms"] = _time(step, case.device, repeats) * 1e3
    except _NotAvailable as e:
        cell["error"] = str(e)
    except Exception as e:
        cell["error"] = f"error: {_short(e)}"
    if be is not None:
        cell["rewrites"], cell["attention_skips"] = _reports_summary(be.reports)
        cell["pass_errors"] = [_short(e) for e in getattr(be, "errors", [])]
    del be
    torch._dynamo.reset()
    gc.collect()
    if case.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return cell


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def run_arch(arch: str, label: str, size: Size, batch: int, seq: int, modes: Sequence[str],
             variants: Sequence[str], device: str, dtype: torch.dtype, repeats: int,
             rules: Sequence[Any]) -> list[dict[str, Any]]:
    """The rows (one per mode) of one architecture at one length."""
    base = {"arch": label, "batch": batch, "seq": seq}
    try:
        with _quiet():
            case = _Case(arch, size, batch, seq, device, dtype)
    except Exception as e:
        reason = _short(e)
        return [dict(base, mode=m, skipped=reason, variants={}) for m in modes]
    rows = []
    for mode in modes:
        cells = {}
        for v in VARIANTS:
            cells[v] = (_measure(case, v, mode, repeats, rules) if v in variants
                        else {"ms": None, "err": None, "compile_s": None, "error": "not run (--variants)"})
            if v in variants:  # progress on stderr: a run cut short still shows what it measured
                print(f"[{label} {mode}] {v}: {_cell(cells[v])}", file=sys.stderr, flush=True)
        p = cells["pypm"]["ms"]
        alts = [(cells[v]["ms"], v) for v in ALTERNATIVES if cells[v]["ms"] is not None]
        best_ms, best = min(alts) if alts else (None, None)
        errs = [c["err"] for c in cells.values() if c["err"] is not None]
        rows.append(dict(base, mode=mode, skipped=None, variants=cells,
                         rewrites=cells["pypm"].get("rewrites", {}),
                         attention_skips=cells["pypm"].get("attention_skips", []),
                         ratios={"inductor/pypm": _ratio(cells["inductor"]["ms"], p),
                                 "sdpa+inductor/pypm": _ratio(cells["sdpa+inductor"]["ms"], p),
                                 "best/pypm": _ratio(best_ms, p)},
                         best=best, max_err=max(errs) if errs else None))
    case.release()
    del case
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


# -- table -----------------------------------------------------------------------------------


def _cell(c: dict[str, Any]) -> str:
    if c["ms"] is None:
        return c["error"] or "-"
    err = f"{c['err']:.1e}" if c["err"] is not None else "?"
    return f"{c['ms']:.2f} ({err})"


def _fmt_ratio(r: float | None) -> str:
    return f"{r:.2f}" if r is not None else "-"


def print_table(rows: Sequence[dict[str, Any]], mode: str) -> None:
    rows = [r for r in rows if r["mode"] == mode]
    if not rows:
        return
    head = (["arch", "tokens"] + [f"{v} ms (err)" for v in VARIANTS]
            + ["inductor/pypm", "sdpa+inductor/pypm", "best/pypm", "pypm rewrites", "max err (all)"])
    print(f"\n### {mode}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
    for r in rows:
        tokens = f"{r['batch']} x {r['seq']}"
        if r["skipped"]:
            print(f"| {r['arch']} | {tokens} | skipped: {r['skipped']} |" + " |" * (len(head) - 3))
            continue
        rw = ", ".join(f"{k} {n}" for k, n in sorted(r["rewrites"].items())) or "none"
        best = f"{_fmt_ratio(r['ratios']['best/pypm'])} ({r['best']})" if r["best"] else "-"
        max_err = f"{r['max_err']:.1e}" if r["max_err"] is not None else "-"
        cells = ([r["arch"], tokens] + [_cell(r["variants"][v]) for v in VARIANTS]
                 + [_fmt_ratio(r["ratios"]["inductor/pypm"]), _fmt_ratio(r["ratios"]["sdpa+inductor/pypm"]),
                    best, rw, max_err])
        print("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    print("\nfirst call (compile included), s: " + "; ".join(
        f"{r['arch']}: " + ", ".join(f"{v} {r['variants'][v]['compile_s']:.1f}" for v in VARIANTS
                                     if r["variants"][v]["compile_s"] is not None)
        for r in rows if not r["skipped"]))
    for r in rows:
        if not r["skipped"] and not any(k.startswith("attention") for k in r["rewrites"]):
            why = "; ".join(r["attention_skips"][:2]) or "the report names no attention candidate"
            print(f"{r['arch']}: attention not rewritten ({why})")
        errs = r["variants"]["pypm"].get("pass_errors") if not r["skipped"] else None
        if errs:
            print(f"{r['arch']}: pypm pass failed on a graph ({errs[0]})")


def header(device: str, dtype: torch.dtype, size_name: str, repeats: int) -> str:
    try:
        import triton

        triton_v = triton.__version__
    except Exception:
        triton_v = "none"
    try:
        import transformers

        tf_v = transformers.__version__
    except Exception:
        tf_v = "none"
    dev = (torch.cuda.get_device_name() if device.startswith("cuda")
           else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    return (f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, {dev}, torch {torch.__version__}, "
            f"triton {triton_v}, transformers {tf_v}, python {platform.python_version()}\n"
            f"size {size_name}, {dtype}, {device}, median of {repeats} runs after warm-up; "
            f"cells: ms (max relative L2 error vs float32 eager over logits and probed gradients)")


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", default="realistic", choices=sorted(SIZES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                    help="default: bfloat16 on cuda, float32 otherwise")
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                    help="a subset to run (the others' cells say 'not run')")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--long", action="store_true",
                    help="also the sliding-window arch at the size's long length")
    a = ap.parse_args(argv)
    import pypm
    from pypm import rules as pypm_rules

    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype or ("bfloat16" if a.device.startswith("cuda") else "float32"))
    size = SIZES[a.size]
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
        torch._dynamo.config.accumulated_cache_size_limit = max(
            torch._dynamo.config.accumulated_cache_size_limit, 512)
    rules = pypm.standard_rules() + pypm_rules.opt_in_rules()
    print(header(a.device, dtype, a.size, a.repeats))
    print(f"{size.layers} layers, width {size.width}, {size.heads} heads ({size.kv_heads} kv heads for "
          f"llama/qwen2/mistral/gemma2), intermediate {size.intermediate}, vocab {size.vocab}, "
          f"sliding window {size.window}; pypm rules: {', '.join(r.name for r in rules)}", flush=True)
    rows: list[dict[str, Any]] = []
    for arch in a.archs:
        runs = [(arch, size.batch, size.seq)]
        if a.long and ARCHS[arch][3]:
            runs.append((f"{arch}@{size.long_seq}", size.long_batch, size.long_seq))
        for label, batch, seq in runs:
            rows += run_arch(arch, label, size, batch, seq, a.modes, a.variants, a.device, dtype,
                             a.repeats, rules)
    for mode in a.modes:
        print_table(rows, mode)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"header": header(a.device, dtype, a.size, a.repeats), "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
