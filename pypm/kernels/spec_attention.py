"""``pypm::attention`` given an attention specification: the registry of specifications and the
paths that compute one.

A rule that lifts a match into an :class:`~pypm.kernels.spec.AttentionSpec` registers it here
(:func:`register_spec`) and passes its key (``spec.digest()``, the same in every process) as the
op's ``spec_key`` string, with the captured tensors in ``spec.captured`` order: the op's schema
stays plain (tensors, a tensor list, a string) and the graph carries the specification as a
constant. The op looks the key up when it runs.

Paths, by device:

* every device without a generated kernel (the CPU): :func:`pypm.kernels.spec_eval.evaluate`,
  the written-out semantics computed over blocks of keys (memory O(Sq · block) per head) in the
  accumulation dtype of the inputs (float32 for fp16, bf16, fp32): NaN rows included.
* CUDA: a specification without score modification or sinks goes to the Triton flash kernel
  (grouped K/V heads read in place): the causal mask as its own flag, any other mask evaluated
  into a dense tensor the kernel reads (as the graph had materialised it); anything else to
  FlexAttention (:func:`pypm.kernels.spec_eval.to_flex`, compiled; the reference if it fails).

Gradients (q, k, v and every captured tensor that requires grad: a learned bias, sink logits)
are computed by ``pypm::attention_spec_backward``, which recomputes the reference under autograd:
exact first (it holds the (Sq, Sk) intermediates of the recomputation), fast later.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Sequence

import torch

from pypm.errors import KernelInputError

from .spec import AttentionSpec, Score
from .spec_eval import evaluate, to_flex

OP = "pypm::attention"
BLOCK = 128  # keys per block of the reference evaluation

_SPECS: dict[str, AttentionSpec] = {}


def register_spec(spec: AttentionSpec) -> str:
    """Make ``spec`` known to ``pypm::attention`` under its digest (returned). The canonical
    form is stored: captured tensors are passed in its ``c0, c1, ...`` order."""
    canon = spec.canonical()
    key = canon.digest()
    _SPECS.setdefault(key, canon)
    return key


def lookup(key: str) -> AttentionSpec:
    """The specification registered under ``key`` (KernelInputError when none is)."""
    spec = _SPECS.get(key)
    if spec is None:
        raise KernelInputError(
            f"{OP}: no attention specification is registered under {key[:16]}...; the rule that "
            "emitted this call registers it (pypm.kernels.spec_attention.register_spec) in the "
            "process that runs the graph")
    return spec


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """What the reference computes in for inputs of ``dtype``."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_spec_inputs(spec: AttentionSpec, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      captured: Sequence[torch.Tensor]) -> None:
    """Raise :class:`KernelInputError` unless q, k, v and the captured tensors fit ``spec``."""
    if q.dtype != k.dtype or q.dtype != v.dtype or not q.dtype.is_floating_point:
        raise KernelInputError(f"{OP}: q, k, v must share one float dtype, got {q.dtype}, {k.dtype}, "
                               f"{v.dtype}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise KernelInputError(f"{OP}: {name} must be 4-D (B, H, S, D), got shape {tuple(t.shape)}")
        if t.device != q.device:
            raise KernelInputError(f"{OP}: {name} is on {t.device}, q on {q.device}")
    (b, hq, _, d), (bk, hkv, sk, dk), (bv, hv, sv, _) = q.shape, k.shape, v.shape
    if not (b == bk == bv) or d != dk or (hkv, sk) != (hv, sv):
        raise KernelInputError(f"{OP}: shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
                               "do not fit (B, H, S, D) attention")
    if hq != spec.group * hkv:
        raise KernelInputError(f"{OP}: q has {hq} heads and k/v {hkv}: not groups of {spec.group} "
                               f"({spec})")
    if len(captured) != len(spec.captured):
        raise KernelInputError(f"{OP}: the specification reads {len(spec.captured)} captured tensors "
                               f"({', '.join(spec.captured)}), {len(captured)} given")
    for name, t in zip(spec.captured, captured):
        if t.device != q.device:
            raise KernelInputError(f"{OP}: captured tensor {name} is on {t.device}, q on {q.device}")


def _plain(spec: AttentionSpec, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool | None:
    """For the Triton flash kernel: None when it cannot compute ``spec``, else ``is_causal``."""
    if spec.score_mod != Score() or spec.sinks is not None or spec.structure.data:
        return None
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32) or q.shape[-1] > 256 \
            or q.shape[-1] != v.shape[-1]:
        return None
    if spec.mask is None:
        return False
    s = spec.structure
    if s.kind == "causal" and not s.param("offset") and spec.mask_mode == "fill" \
            and spec.fill == -math.inf and q.shape[2] == k.shape[2]:
        return True
    return None


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _index_tensors(b: int, h: int, sq: int, sk: int, dev: torch.device) -> dict[str, torch.Tensor]:
    """The four indices as tensors that broadcast over (B, H, Sq, Sk)."""
    return {"b": torch.arange(b, device=dev).view(-1, 1, 1, 1),
            "h": torch.arange(h, device=dev).view(1, -1, 1, 1),
            "q_idx": torch.arange(sq, device=dev).view(1, 1, -1, 1),
            "kv_idx": torch.arange(sk, device=dev).view(1, 1, 1, -1)}


def _dense_mask(spec: AttentionSpec, q, k, cap) -> torch.Tensor:
    """The mask as a boolean tensor (True keeps) over (B or 1, H or 1, Sq, Sk), evaluated from
    the specification at every index (what the graph materialised itself)."""
    from .spec_eval import eval_expr

    b, h, sq, sk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    dev = q.device
    idx = _index_tensors(b, h, sq, sk, dev)
    keep = eval_expr(spec.mask, None, idx, cap, torch.float32)
    keep = keep if isinstance(keep, torch.Tensor) else torch.tensor(bool(keep), device=dev)
    shape = [b if "b" in _uses(spec.mask) else 1, h if "h" in _uses(spec.mask) else 1, sq, sk]
    return torch.broadcast_to(keep, shape)


def _additive_terms(spec: AttentionSpec) -> list | None:
    """The terms of a score modification that only adds to the score (``s + t1 + t2 ...``, each
    term free of ``s``: biases, ALiBi), or None for any other modification."""
    from .expr import Call, walk

    terms = []
    core = spec.score_mod
    while isinstance(core, Call) and core.op == "add" \
            and not any(isinstance(n, Score) for n in walk(core.args[1])):
        terms.append(core.args[1])
        core = core.args[0]
    return terms if core == Score() else None


def _dense_bias(spec: AttentionSpec, terms: list, q, k, cap) -> torch.Tensor:
    """The additive terms and an additive mask (``mask_mode="add"``) summed into one float32
    tensor that broadcasts to (B, H, Sq, Sk) and is no larger than its terms need (a
    materialised (B, 1, S, S) mask stays that size; the kernel reads broadcast dims with stride
    0): what the flash kernel adds to the scaled scores. The written-out form adds the terms to
    the score first and the mask after; where the mask is 0 the sums are the same numbers, and
    where it is the fill (-inf or finfo.min) both round to the fill."""
    from .spec_eval import eval_expr

    b, h, sq, sk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    dev = q.device
    idx = _index_tensors(b, h, sq, sk, dev)
    sizes = {"b": b, "h": h, "q_idx": sq, "kv_idx": sk}
    total = torch.zeros((1, 1, 1, 1), dtype=torch.float32, device=dev)
    for t in terms:
        direct = _read_directly(t, cap, sizes)
        total = total + (direct if direct is not None else eval_expr(t, None, idx, cap, torch.float32))
    if spec.mask is not None:
        keep = eval_expr(spec.mask, None, idx, cap, torch.float32)
        if not isinstance(keep, torch.Tensor):
            keep = torch.tensor(bool(keep), device=dev)
        fill = torch.tensor(spec.fill, dtype=torch.float32, device=dev)
        total = total + torch.where(keep, torch.zeros((), dtype=torch.float32, device=dev), fill)
    return total.to(torch.float32)


_ORDER = ("b", "h", "q_idx", "kv_idx")


def _read_directly(t, cap, sizes: dict[str, int]) -> torch.Tensor | None:
    """A captured tensor read at its own indices (``bias[b, 0, q_idx, kv_idx]``: each dim an
    index of the full range, in the order b, h, q_idx, kv_idx, or a constant) as a float32
    tensor over four dims, dims it broadcasts along (stride 0, as ``expand`` leaves them) kept
    at size 1: the same values as evaluating the read at every index, without materialising
    it. None for any other read."""
    from .expr import Captured, Const, Index

    if not isinstance(t, Captured) or t.name not in cap:
        return None
    x = cap[t.name]
    if x.dim() != len(t.index):
        return None
    kept: list[str] = []
    for d in reversed(range(x.dim())):
        i = t.index[d]
        if isinstance(i, Const) and isinstance(i.value, int) and not isinstance(i.value, bool) \
                and 0 <= i.value < x.shape[d]:
            x = x.select(d, i.value)
        elif isinstance(i, Index) and x.shape[d] == sizes[i.name]:
            kept.insert(0, i.name)
        else:
            return None
    if len(set(kept)) != len(kept) or sorted(kept, key=_ORDER.index) != kept:
        return None
    for d in range(x.dim()):  # broadcast dims (stride 0) read once
        if x.stride(d) == 0 and x.shape[d] > 1:
            x = x.narrow(d, 0, 1)
    shape = [1, 1, 1, 1]
    view_sizes = list(x.shape)
    for name, n in zip(kept, view_sizes):
        shape[_ORDER.index(name)] = n
    return x.to(torch.float32).reshape(shape)


def _uses(e) -> set[str]:
    from .spec import Index, walk

    return {n.name for n in walk(e) if isinstance(n, Index)}


def _cuda_forward(spec: AttentionSpec, q, k, v, cap, launch) -> torch.Tensor:
    scale = spec.scale if spec.scale is not None else 1.0 / math.sqrt(q.shape[-1])
    causal = _plain(spec, q, k, v)
    if causal is not None and launch is not None:
        out, _ = launch(q, k, v, None, scale, causal, -math.inf, True, traced=False)
        return out
    if launch is not None and spec.score_mod == Score() and spec.sinks is None \
            and q.dtype in (torch.float16, torch.bfloat16, torch.float32) \
            and q.shape[-1] <= 256 and q.shape[-1] == v.shape[-1] and spec.mask is not None:
        # a mask the flash kernel reads as a dense tensor (padding, windows, documents): a
        # boolean mask with its fill, or an additive one, as the written-out form applies it
        keep = _dense_mask(spec, q, k, cap)
        if spec.mask_mode == "fill":
            out, _ = launch(q, k, v, keep, scale, False, spec.fill, True, traced=False)
        else:
            zero = torch.zeros((), dtype=torch.float32, device=q.device)
            bias = torch.where(keep, zero, torch.tensor(spec.fill, device=q.device))  # float32: unrounded
            out, _ = launch(q, k, v, bias, scale, False, -math.inf, True, traced=False)
        return out
    terms = _additive_terms(spec)
    if launch is not None and terms and spec.sinks is None \
            and (spec.mask is None or spec.mask_mode == "add") \
            and q.dtype in (torch.float16, torch.bfloat16, torch.float32) \
            and q.shape[-1] <= 256 and q.shape[-1] == v.shape[-1]:
        # additive biases (a materialised mask, a relative bias, ALiBi), with an additive mask:
        # one float32 tensor the flash kernel adds to the scaled scores
        out, _ = launch(q, k, v, _dense_bias(spec, terms, q, k, cap), scale, False, -math.inf, True,
                        traced=False)
        return out
    key = spec.digest()
    if key not in _FLEX_FAILED:
        form = to_flex(spec, cap)
        try:
            return form.attend(q, k, v, flex=_compiled_flex())
        except Exception as e:
            _FLEX_FAILED.add(key)
            warnings.warn(f"{OP}: FlexAttention failed for '{spec}' ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''}); computing the reference "
                          "evaluation instead, for this specification from now on", RuntimeWarning,
                          stacklevel=2)
    return evaluate(spec, q, k, v, cap, dtype=accumulation_dtype(q.dtype), block=BLOCK)


# Specifications FlexAttention failed to compile in this process (by digest): not tried again,
# since every try traces and compiles anew.
_FLEX_FAILED: set[str] = set()


_LAUNCH: list = []  # the Triton flash kernel's launcher, set by .attention (no import cycle)


def spec_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, captured: Sequence[torch.Tensor],
                 key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``pypm::attention``'s forward for a specification: ``(out, stats)``; ``out`` has q's shape
    with v's head dim and q's dtype, ``stats`` (2, B, Hq, Sq) is zeros (the backward recomputes).
    Checks the inputs, then calls ``pypm::attention_spec_forward``, an opaque op with its own fake
    implementation: ``pypm::attention`` is a triton_op, which AOTAutograd traces into its body, and
    the evaluation of a specification is not to be traced into the graph."""
    check_spec_inputs(lookup(key), q, k, v, captured)
    return torch.ops.pypm.attention_spec_forward(q, k, v, list(captured), key)


def _spec_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, captured: Sequence[torch.Tensor],
                  spec_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    spec = lookup(spec_key)
    b, hq, sq, _ = q.shape
    stats = torch.zeros((2, b, hq, sq), dtype=torch.float32, device=q.device)
    cap = dict(zip(spec.captured, captured))
    from ._common import use_triton

    if q.device.type == "cuda" and use_triton(q):
        out = _cuda_forward(spec, q, k, v, cap, _LAUNCH[0] if _LAUNCH else None)
    else:
        out = evaluate(spec, q, k, v, cap, dtype=accumulation_dtype(q.dtype), block=BLOCK)
    return out.to(q.dtype).contiguous(), stats


attention_spec_forward_op = torch.library.custom_op("pypm::attention_spec_forward", _spec_forward,
                                                    mutates_args=())


@attention_spec_forward_op.register_fake
def _(q, k, v, captured, spec_key):
    b, hq, sq, _ = q.shape
    return (q.new_empty((b, hq, sq, v.shape[-1])),
            q.new_empty((2, b, hq, sq), dtype=torch.float32))


@contextlib.contextmanager
def _autograd_inside_op():
    """Autograd back on inside a custom op's implementation (which runs below the autograd
    dispatch keys), for the recomputation of the backward."""
    exclude = torch._C._dispatch_tls_local_exclude_set()
    for name in dir(torch._C.DispatchKey):
        if name.startswith("Autograd"):
            try:
                exclude = exclude.remove(getattr(torch._C.DispatchKey, name))
            except (RuntimeError, TypeError, ValueError):
                pass
    with torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), exclude):
        yield


def _spec_backward(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   captured: Sequence[torch.Tensor], spec_key: str,
                   needs: Sequence[bool]) -> list[torch.Tensor]:
    """``[dq, dk, dv, *d(captured[i]) for each i with needs[i]]``: the reference recomputed
    under autograd."""
    spec = lookup(spec_key)
    with _autograd_inside_op(), torch.enable_grad():
        qkv = [t.detach().requires_grad_() for t in (q, k, v)]
        cap = [c.detach().requires_grad_() if n else c.detach() for c, n in zip(captured, needs)]
        out = evaluate(spec, *qkv, dict(zip(spec.captured, cap)), dtype=accumulation_dtype(q.dtype),
                       block=BLOCK).to(q.dtype)
        inputs = qkv + [c for c, n in zip(cap, needs) if n]
        grads = torch.autograd.grad(out, inputs, grad, allow_unused=True)
    # laid out as the inputs are (what the fake implementation's empty_like says)
    return [torch.zeros_like(t) if g is None else torch.empty_like(t).copy_(g)
            for g, t in zip(grads, inputs)]


attention_spec_backward_op = torch.library.custom_op("pypm::attention_spec_backward", _spec_backward,
                                                     mutates_args=())


@attention_spec_backward_op.register_fake
def _(grad, q, k, v, captured, spec_key, needs):
    return [torch.empty_like(t) for t in (q, k, v, *(c for c, n in zip(captured, needs) if n))]


__all__ = ["accumulation_dtype", "check_spec_inputs", "lookup", "register_spec", "spec_forward"]
