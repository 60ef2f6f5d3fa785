"""Decomposed scaled-dot-product attention → one fused attention call.

On the fused devices (:data:`pypm.rules.FUSED_DEVICES`, CUDA by default) the call is
``pypm::attention`` (the Triton flash-attention kernel) whenever its contract fits the graph's
types (:func:`fused_unsuitable` says why not); otherwise, and on other devices, it is torch's
``scaled_dot_product_attention``.

Two rules: ``attention`` for torch-level graphs (dynamo's, ``symbolic_trace``), and
``attention-aten`` for ATen graphs (inductor's post-grad passes, ``pypm.inductor_pass()``), whose
replacement must be an ATen op inductor lowers there: ``pypm::attention`` on the fused devices,
``aten._scaled_dot_product_flash_attention_for_cpu`` on the CPU (inductor's own choice), and no
rewrite elsewhere (the decomposed graph stays as it is).

The patterns (``patterns/attention.pypm``, ``patterns/attention_aten.pypm``) bind q, k, v, the
scale (``mul_by`` or ``div_by``, read from the graph, never assumed to be 1/sqrt(d)) and the mask:
``causal`` when the guard ``causal_mask``/``causal_keep``/``causal_bias`` proved it is the causal
triangle filled with -inf, ``mask`` for any other boolean mask given to ``masked_fill`` (True
masks out), ``keep`` for one given to ``where`` (True keeps), ``bias`` for an additive one, and
the nodes around the softmax, whose dtypes say which casts the graph makes. The body picks the
matching call, or declines with a reason.

What the replacement must keep, beyond rounding (:func:`check_casts`, :func:`_plan`):

* casts: none, or a widening before the softmax and back to the input dtype after it (LLaMA's
  float32 softmax); a cast that rounds the scores or probabilities is not reproduced;
* fills: a boolean mask replaces the masked scores by its fill. Only -inf is what SDPA and
  ``is_causal`` do; a finite fill (``-1e4``, ``finfo.min``) leaves masked scores a weight where
  the kept ones are lower, which only ``pypm::attention`` (``mask_fill``) reproduces;
* fully masked rows: softmax over a row of -inf is NaN. ``pypm::attention`` computes that
  (``empty_rows_nan``); torch's SDPA gives 0, so its result gets those rows set to NaN, and a
  graph that needs gradients through a mask that may empty a row is left alone there (the
  written-out gradients are NaN, SDPA's are not);
* NaN and inf: a boolean mask replaces the scores it hides, even NaN and inf ones, where torch's
  attention ops add -inf (NaN stays NaN): off the fused path it is declined (``is_causal``
  fills and is kept); a scale that is not a finite number is declined; on the CPU, torch's SDPA loses a
  NaN query row when there are fewer than 16 keys, so the result adds ``0 · max|q|`` per row
  (NaN exactly where the row of q is not finite) unless the key length is known to be ≥ 16;
* gradients: every input that requires grad keeps its gradient: a scale tensor is applied to q,
  an additive mask goes to an op that differentiates with respect to it.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.nn.functional as F

from pypm import kernels as ops
from pypm import load
from pypm.graph import meta_value, size_value
from pypm.lang import eq3
from pypm.rewrite import Decline, rule

from . import on_fused_device, torch_device_type

PATTERNS = load("attention")
Attention = PATTERNS.Attention
ATEN_PATTERNS = load("attention_aten")
AttentionAten = ATEN_PATTERNS.AttentionAten

aten = torch.ops.aten


def _graph_scalar(v: torch.fx.Proxy, what: str) -> None:
    """A scale computed in the graph (a symbolic size, a 0-d or row-wise tensor) may be applied
    to q instead of the scores only if it is constant along the keys (its last dim is 1)."""
    val = meta_value(v.node)
    if isinstance(val, (torch.SymInt, torch.SymFloat, int, float)):
        return
    shape = getattr(val, "shape", None)
    if shape is None:
        raise Decline(f"the {what} is computed in the graph and its type is unknown")
    if len(shape) > 0 and size_value(shape[-1]) != 1:
        raise Decline(f"the {what} is a tensor of shape {list(shape)} that varies along the keys")


def scale_of(q: Any, mul_by: Any, div_by: Any) -> tuple[Any, float]:
    """(q, scale) such that softmax(scale * q' @ k^T) is the graph's softmax: a constant scale
    (``mul_by``, ``1 / div_by``, 1 when unscaled) is passed on as is; one computed in the graph
    (a symbolic size under dynamic shapes, a tensor) is applied to q, so that its gradient flows
    through the multiplication. A constant that is not a finite number is declined: inf or NaN
    logits make NaN rows that the attention ops do not all reproduce."""
    for v, what in ((mul_by, "scale"), (div_by, "scale divisor")):
        if v is None:
            continue
        if isinstance(v, torch.fx.Proxy):
            _graph_scalar(v, what)
            return (q * v if v is mul_by else q / v), 1.0
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Decline(f"the {what} {v!r} is not a number")
        if not math.isfinite(v):
            raise Decline(f"the {what} is {v!r}: the logits are inf or NaN, whose rows the "
                          "attention ops do not compute as softmax does")
        if v is div_by:
            if v == 0:
                raise Decline("the scores are divided by zero")
            return q, 1.0 / float(v)
        return q, float(v)
    return q, 1.0


def _positive(v: Any) -> bool:
    """Whether a scale applied after a -inf mask is provably positive (so -inf stays -inf)."""
    if isinstance(v, torch.fx.Proxy):
        val = meta_value(v.node)
        if isinstance(val, (torch.SymInt, torch.SymFloat)):
            return bool(getattr(val.node.expr, "is_positive", False))
        return isinstance(val, (int, float)) and not isinstance(val, bool) and val > 0
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _same(a: Any, b: Any) -> bool:
    """Two sizes known to be equal (ints, or sympy expressions that simplify to the same)."""
    return eq3(size_value(a), size_value(b)) is True


def _broadcasts(mask: Any, full: tuple[Any, ...]) -> bool:
    """Whether a mask's shape broadcasts to the scores' (B, H, Sq, Sk)."""
    return mask.dim() <= 4 and all(size_value(m) == 1 or _same(m, f)
                                   for m, f in zip(mask.shape[::-1], full[::-1]))


def fused_unsuitable(q: Any, k: Any, v: Any, mask: Any, causal: bool) -> str | None:
    """Why ``pypm::attention`` cannot take these inputs (None when it can), decided from the
    graph's types alone, so that the rewrite never launches a kernel that would refuse them:
    a fused device, 4-d (B, H, S, D) inputs of one float dtype, head dim ≤ 256, key/value heads
    dividing query heads, a mask that broadcasts, and equal query and key lengths for a causal
    mask (pypm aligns causal masks bottom-right, torch's tril top-left)."""
    if not on_fused_device(q):
        return "not on a fused device"
    vals = [meta_value(t.node) if isinstance(t, torch.fx.Proxy) else None for t in (q, k, v)]
    if any(getattr(t, "shape", None) is None or getattr(t, "dtype", None) is None for t in vals):
        return "input types unknown"
    qv, kv, vv = vals
    if any(t.dim() != 4 for t in vals):
        return "inputs are not 4-d"
    if qv.dtype not in _FUSED_DTYPES or not (qv.dtype == kv.dtype == vv.dtype):
        return f"dtype {qv.dtype}"
    (b, hq, sq, d), (bk, hk, sk, dk), (bv, hv, sv, dv) = qv.shape, kv.shape, vv.shape
    d, hq, hk = size_value(d), size_value(hq), size_value(hk)
    if not (isinstance(d, int) and d <= 256 and _same(d, dk) and _same(d, dv)):
        return "head dims"
    if not (_same(b, bk) and _same(b, bv) and _same(hk, hv) and _same(sk, sv)):
        return "batch, heads or lengths differ"
    if not (isinstance(hq, int) and isinstance(hk, int) and hk > 0 and hq % hk == 0):
        return "heads"
    if causal and not _same(sq, sk):
        return "causal with different query and key lengths"
    if mask is not None:
        mv = meta_value(mask.node) if isinstance(mask, torch.fx.Proxy) else None
        if mv is None or getattr(mv, "shape", None) is None:
            return "mask type unknown"
        if mv.dtype != torch.bool and not mv.dtype.is_floating_point:
            return "mask dtype"
        if not _broadcasts(mv, (b, hq, sq, sk)):
            return "mask does not broadcast"
    return None


_WIDENINGS = {(torch.float16, torch.float32), (torch.bfloat16, torch.float32),
              (torch.float16, torch.float64), (torch.bfloat16, torch.float64),
              (torch.float32, torch.float64)}


def _widens(a: torch.dtype, b: torch.dtype) -> bool:
    """Whether converting a to b is exact (every value of a is one of b), b's range included."""
    return a == b or (a, b) in _WIDENINGS


def _dtype(p: Any) -> Any:
    return getattr(_val(p), "dtype", None)


def check_casts(q: Any, k: Any, v: Any, logits: Any, soft_in: Any, soft: Any, probs: Any,
                bias: Any = None) -> bool:
    """Decline unless the casts around the softmax are ones the attention ops reproduce: q, k and
    v of one dtype X, the masked scores still X (or widened exactly by adding a wider additive
    mask), the softmax computed in that dtype or a wider one (a widening, exact), and the
    probabilities back in X. A cast that rounds the scores before the softmax
    (``softmax(s.half())``) or the probabilities after it (to another dtype than X) is a
    computation the ops do not make: an fp16 overflow there gives inf where they would not.
    Returns whether the mask is wider than X (only ``pypm::attention`` adds it unrounded)."""
    dq, dk, dv = (_dtype(t) for t in (q, k, v))
    if dq is None or dk is None or dv is None:
        raise Decline("the dtypes of q, k and v are unknown")
    if not (dq == dk == dv):
        raise Decline(f"q, k and v have dtypes {dq}, {dk} and {dv}: the attention ops compute in "
                      "one dtype")
    nodes = (logits, soft_in, soft, probs)
    if any(n is None for n in nodes):
        return False  # a rule written against the pattern without these bindings: nothing to check
    dl, di, ds, dp = (_dtype(n) for n in nodes)
    if None in (dl, di, ds, dp):
        raise Decline("the dtypes around the softmax are unknown")
    wide_mask = dl != dq and bias is not None and _dtype(bias) == dl and _widens(dq, dl)
    if dl != dq and not wide_mask:
        raise Decline(f"the mask makes the {dq} scores {dl}: the attention ops add it in {dq}")
    if not _widens(dl, di):
        raise Decline(f"the scores are cast from {dl} to {di} before the softmax, which rounds "
                      "them (and can overflow): the attention ops do not")
    if not _widens(di, ds):
        raise Decline(f"the softmax of {di} scores is computed in {ds}, which rounds them")
    if dp != dq:
        raise Decline(f"the probabilities are {dp}, not the {dq} of q and k: the attention ops "
                      f"return {dq}")
    return wide_mask


def _check_bias(bias: Any) -> None:
    """Decline an additive mask that is not a float tensor: a number added to every score, or a
    boolean or integer tensor (adding True adds 1, which no attention op's boolean mask means)."""
    val = _val(bias) if isinstance(bias, torch.fx.Proxy) else None
    if not isinstance(val, torch.Tensor):
        raise Decline(f"the scores are shifted by {bias!r}, which is not a mask tensor")
    if not val.dtype.is_floating_point:
        raise Decline(f"the additive mask has dtype {val.dtype}, not a float dtype")


def _sdpa_bias(bias: Any, q: Any) -> Any:
    """The additive mask as torch's SDPA takes it, in q's dtype: a narrower float mask is widened
    exactly, as the addition did (a wider one only reaches ``pypm::attention``)."""
    dq, db = _dtype(q), _dtype(bias)
    return bias.to(dq) if db != dq and dq is not None and _widens(db, dq) else bias


def _check_scores_shape(q: Any, k: Any, logits: Any) -> None:
    """Decline when a mask broadcasts the scores to a larger shape than q @ k^T's (a 5-d bias
    on 4-d scores): one attention call cannot produce that."""
    if logits is None:
        return
    qv, kv, lv = _val(q), _val(k), _val(logits)
    if any(getattr(t, "shape", None) is None for t in (qv, kv, lv)):
        raise Decline("the shapes of q, k or the masked scores are unknown")
    n = max(qv.dim(), kv.dim())
    if lv.dim() != n:
        raise Decline(f"the mask makes the scores {lv.dim()}-d, q @ k^T is {n}-d")
    lead_q = (1,) * (n - qv.dim()) + tuple(qv.shape[:-2])
    lead_k = (1,) * (n - kv.dim()) + tuple(kv.shape[:-2])
    for size, a, b in zip(lv.shape[:-2], lead_q, lead_k):
        if not (_same(size, a) or _same(size, b)):
            raise Decline(f"the mask broadcasts the scores to shape {list(lv.shape)}, larger than "
                          "q @ k^T's")
    if not (_same(lv.shape[-2], qv.shape[-2]) and _same(lv.shape[-1], kv.shape[-2])):
        raise Decline(f"the masked scores have shape {list(lv.shape)}, not q @ k^T's")


def _requires_grad(*ts: Any) -> bool:
    return any(bool(getattr(_val(t), "requires_grad", False)) for t in ts
               if isinstance(t, torch.fx.Proxy))


def _fill_number(fill: Any) -> float:
    """A boolean mask's fill as a float: -inf, or a finite number (NaN and +inf are declined:
    they make every row with a masked score NaN, which the ops do not)."""
    if isinstance(fill, bool) or not isinstance(fill, (int, float)):
        raise Decline(f"the mask fills {fill!r}, which is not a constant number")
    fill = float(fill)
    if math.isnan(fill) or fill == math.inf:
        raise Decline(f"the mask fills {fill!r}: every row with a masked score is NaN")
    return fill


def _keep_nan_rows(q: Any, k: Any) -> bool:
    """Whether SDPA's result needs a NaN query row put back: k's length may be below 16, where
    torch's CPU SDPA takes a path that turns a row of NaN scores into zeros (a NaN query row,
    say), and q's head dim is known to be non-empty (so that ``max|q|`` over it exists)."""
    sk, d = size_value(_val(k).shape[-2]), size_value(_val(q).shape[-1])
    return not (isinstance(sk, int) and sk >= 16) and isinstance(d, int) and d > 0


def _attend(q: Any, k: Any, v: Any, *, scale: float, is_causal: bool = False,
            attn_mask: Any = None, fused: bool, mask_fill: float = -math.inf,
            empty: Any = None, nan_rows: bool = False) -> Any:
    """The attention call: ``pypm::attention`` (``fused``), which computes fills and empty rows
    as the written-out form does, or torch's SDPA with ``empty`` (a boolean, True on rows that
    see no key; None when no row can be empty) set to NaN, and, with ``nan_rows``, a row of q
    that is not finite kept NaN (``0 · max|q|``: 0, or NaN)."""
    if fused:
        fill = None if mask_fill == -math.inf else mask_fill
        return ops.attention(q, k, v, scale=scale, is_causal=is_causal, attn_mask=attn_mask,
                             mask_fill=fill, empty_rows_nan=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    if empty is not None:
        out = torch.where(empty, float("nan"), out)
    if nan_rows:
        out = out + q.abs().amax(-1, keepdim=True) * 0
    return out


def _variant(probs: Any) -> Any:
    """The ``pypm::attention`` call of ``attention-variant`` (rules.variants) for this site, where
    that rule would rewrite it (an exact specification beyond plain attention, on a fused
    device), else None."""
    if probs is None or not on_fused_device(probs):
        return None
    from pypm.graph import GraphView

    from .variants import emit, variant_at

    view = GraphView(probs.node.graph, cse=False)
    node = probs.node
    for _ in range(3):  # through a dropout that is off, to the matmul with v
        users = list(node.users)
        if len(users) != 1:
            return None
        (node,) = users
        if node.op in ("call_function", "call_method") and view.op_name(node) in ("matmul", "bmm"):
            site = variant_at(node)
            return None if site is None else emit(site, probs.tracer)
    return None


@rule(Attention, name="attention", priority=10)
def attention(q, k, v, mul_by, div_by, mul_after, div_after, causal, mask, keep, fill, bias,
              logits, soft_in, soft, probs):
    """One fused attention call for the whole computation: ``pypm::attention`` (Triton) on the
    fused devices when its contract fits, torch's ``scaled_dot_product_attention`` otherwise;
    declined where neither computes what the graph computes (see the module doc). Where the
    ``attention-variant`` rule would take the site (on a fused device, an exact specification
    beyond plain attention: grouped K/V heads before their repeat, padding, windows, score
    modifications), the call is the one that rule emits, carrying the specification."""
    out = _variant(probs)
    if out is not None:
        return out
    wide_mask = check_casts(q, k, v, logits, soft_in, soft, probs, bias)
    _check_scores_shape(q, k, logits)
    after = mul_after if mul_after is not None else div_after
    if after is not None and not _positive(after):
        raise Decline(f"the scale applied after the mask ({after!r}) is not provably positive, "
                      "so the mask's -inf could change sign")
    fill_value = _fill_number(fill) if (mask is not None or keep is not None) else -math.inf
    if bias is not None:
        _check_bias(bias)
    attend = torch.logical_not(mask) if mask is not None else keep if keep is not None else bias
    fused = fused_unsuitable(q, k, v, mask if mask is not None else attend, causal is not None) is None
    if wide_mask and not fused:
        raise Decline(f"the additive mask is {_dtype(bias)}, wider than the scores: torch's SDPA "
                      "takes it in q's dtype, which rounds it")
    nan_rows = not fused and _keep_nan_rows(q, k)
    if bias is not None and not fused:
        attend = bias = _sdpa_bias(bias, q)
    q, scale = scale_of(q, mul_by if after is None else mul_after, div_by if after is None else div_after)
    if causal is not None:
        return _attend(q, k, v, is_causal=True, scale=scale, fused=fused, nan_rows=nan_rows)
    if attend is None or fused:
        return _attend(q, k, v, attn_mask=attend, scale=scale, fused=fused, mask_fill=fill_value,
                       nan_rows=nan_rows)
    if fill_value != -math.inf:
        raise Decline(f"the mask fills {fill_value!r}, not -inf: masked scores keep a weight "
                      "where the kept ones are lower, which only pypm::attention reproduces, and "
                      "it is not used here")
    if mask is not None or keep is not None:
        raise Decline(HIDDEN_NON_FINITE)
    if _requires_grad(q, k, v, bias):
        raise Decline("a row the mask empties is NaN when written out, and so are the gradients "
                      "through it; torch's SDPA gives 0 there and no pypm::attention is used here, "
                      "so a graph that needs gradients is left as it is")
    empty = torch.isneginf(bias).all(-1, keepdim=True)
    return _attend(q, k, v, attn_mask=attend, scale=scale, fused=False, empty=empty,
                   nan_rows=nan_rows)


# Why a boolean mask is not handed to torch's attention ops.
HIDDEN_NON_FINITE = (
    "the boolean mask replaces the scores it hides, NaN and inf included (a non-finite key, or "
    "a score that overflows); torch's attention ops add -inf to them instead, so such a score "
    "would still reach the output, and pypm::attention, which replaces them, is not used here")


# ---------------------------------------------------------------------------------------------
# ATen graphs (inductor post-grad)

# The ATen division overloads that divide exactly; ``div.Tensor_mode`` and ``div.Scalar_mode``
# round unless their rounding_mode is None. Terms name ops by packet, so the rule checks this.
_TRUE_DIVISIONS = (aten.div.Tensor, aten.div.Scalar)
_ROUNDING_DIVISIONS = (aten.div.Tensor_mode, aten.div.Scalar_mode)

# The dtypes aten._scaled_dot_product_flash_attention_for_cpu computes in.
_CPU_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _rounding(p: Any) -> bool:
    """Whether the bound division node rounds (``div.Tensor_mode`` with a rounding mode)."""
    node = p.node
    if node.target in _TRUE_DIVISIONS:
        return False
    if node.target in _ROUNDING_DIVISIONS:
        mode = node.kwargs.get("rounding_mode", node.args[2] if len(node.args) > 2 else None)
        return mode is not None
    return True


def _val(p: Any) -> Any:
    return meta_value(p.node) if isinstance(p, torch.fx.Proxy) else None


def _unsqueezed(p: Any) -> Any:
    """``aten.unsqueeze(p, 0)``, with its example value set so that later checks can read it."""
    out = aten.unsqueeze.default(p, 0)
    val = _val(p)
    if val is not None:
        out.node.meta["val"] = val.unsqueeze(0)
    return out


def _scalar_tensor(value: float, like: Any) -> Any:
    """A 0-d ``aten.full`` node of the dtype and device of ``like`` (a proxy). It has no proxy
    argument, so it is created on the tracer directly; the rewriter gives it an example value
    of the graph's fake mode."""
    lv = _val(like)
    kwargs = {"dtype": lv.dtype, "device": lv.device}
    return like.tracer.create_proxy("call_function", aten.full.default, ([], value), kwargs)


def _aten_scale(q: Any, mul_by: Any, div_by: Any) -> tuple[Any, float]:
    """As :func:`scale_of`, in ATen ops: a scale computed in the graph is applied to q with
    ``aten.mul``/``aten.div``, which inductor lowers in a post-grad graph."""
    for v, what in ((mul_by, "scale"), (div_by, "scale divisor")):
        if isinstance(v, torch.fx.Proxy):
            _graph_scalar(v, what)
            return (aten.mul.Tensor(q, v) if v is mul_by else aten.div.Tensor(q, v)), 1.0
    return scale_of(q, mul_by, div_by)


def cpu_unsuitable(q: Any, k: Any, v: Any, mask: Any) -> str | None:
    """Why ``aten._scaled_dot_product_flash_attention_for_cpu`` cannot take these 4-d inputs
    (None when it can): CPU tensors of one dtype it computes in, one head size for q, k and v,
    one batch and head count, a mask that broadcasts to (B, H, Sq, Sk)."""
    vals = [_val(t) for t in (q, k, v)]
    if any(getattr(t, "shape", None) is None or getattr(t, "dtype", None) is None for t in vals):
        return "input types unknown"
    qv, kv, vv = vals
    devices = {torch_device_type(t.device) for t in vals}
    if devices != {"cpu"}:
        return f"inputs on {', '.join(sorted(devices))}: no ATen attention op that inductor lowers " \
               "in a post-grad graph is known there"
    if qv.dtype not in _CPU_DTYPES or not (qv.dtype == kv.dtype == vv.dtype):
        return f"dtypes {qv.dtype}, {kv.dtype}, {vv.dtype}"
    if any(t.dim() != 4 for t in vals):
        return "inputs are not 4-d"
    (b, h, sq, d), (bk, hk, sk, dk), (bv, hv, sv, dv) = qv.shape, kv.shape, vv.shape
    if not (_same(d, dk) and _same(d, dv)):
        return "q, k and v head sizes differ"
    if not (_same(b, bk) and _same(b, bv) and _same(h, hk) and _same(h, hv) and _same(sk, sv)):
        return "batch, heads or lengths differ"
    if mask is not None:
        mv = _val(mask)
        if getattr(mv, "shape", None) is None:
            return "mask type unknown"
        if not _broadcasts(mv, (b, h, sq, sk)):
            return "mask does not broadcast"
    return None


def _cpu_mask(mask: Any, q: Any) -> Any:
    """An additive mask as the CPU op takes it: 2-d or 4-d, in the query's dtype."""
    qv, mv = _val(q), _val(mask)
    if mv.dtype != qv.dtype:
        mask = torch.ops.prims.convert_element_type.default(mask, qv.dtype)
    for _ in range(0 if mv.dim() in (2, 4) else 4 - mv.dim()):
        mask = aten.unsqueeze.default(mask, 0)
    return mask


def _fill_value(fill: Any) -> float | None:
    """The constant a boolean mask fills: a number, or the value of a ``full``/``scalar_tensor``
    node (masked_fill's decomposition); None when it is not a constant."""
    if isinstance(fill, torch.fx.Proxy):
        node = fill.node
        if node.target is aten.full.default and len(node.args) > 1:
            fill = node.args[1]
        elif node.target is aten.scalar_tensor.default and node.args:
            fill = node.args[0]
        else:
            return None
    if isinstance(fill, bool) or not isinstance(fill, (int, float)):
        return None
    return float(fill)


def _aten_empty_rows(bias: Any) -> Any:
    """True on the rows an additive mask empties (-inf on every key), in ATen ops that inductor
    lowers in a post-grad graph (the minimum over the keys of a 0/1 float)."""
    convert = torch.ops.prims.convert_element_type.default
    hidden = aten.eq.Scalar(bias, -math.inf)
    return aten.eq.Scalar(aten.amin.default(convert(hidden, torch.float32), [-1], True), 1.0)


@rule(AttentionAten, name="attention-aten", priority=10)
def attention_aten(q, k, v, mul_by, div_by, mul_after, div_after, causal, mask, keep, fill, bias,
                   scaled, probs, logits, soft_in, soft, weights):
    """One ATen attention call for the decomposed attention of a post-grad graph:
    ``pypm::attention`` on the fused devices when its contract fits, else, on the CPU,
    ``aten._scaled_dot_product_flash_attention_for_cpu``, the op inductor's own attention
    fusion emits there; no rewrite on other devices. The same exactness conditions as the
    ``attention`` rule (see the module doc)."""
    for d, what in ((scaled, "scale"), (probs, "softmax")):
        if d is not None and _rounding(d):
            raise Decline(f"the {what} division %{d.node.name} rounds ({d.node.target})")
    if any(_val(t) is None for t in (q, k, v)):
        raise Decline("input types unknown")
    wide_mask = check_casts(q, k, v, logits, soft_in, soft, weights, bias)
    after = mul_after if mul_after is not None else div_after
    if after is not None and not _positive(after):
        raise Decline(f"the scale applied after the mask ({after!r}) is not provably positive, "
                      "so the mask's -inf could change sign")
    fill_value = -math.inf
    if fill is not None:
        value = _fill_value(fill)
        if value is None:
            raise Decline(f"the mask fills {fill!r}, which is not a constant")
        fill_value = _fill_number(value)
        if fill_value != -math.inf and (after is not None or causal is not None):
            raise Decline(f"the mask fills {fill_value!r}, not -inf: it is not the causal mask, and "
                          "a scale applied after it would scale the fill too")
    if bias is not None:
        _check_bias(bias)
    three_d = _val(q).dim() == 3
    if three_d:  # bmm on (B, S, D): one more leading dim for the 4-d ops
        q, k, v = _unsqueezed(q), _unsqueezed(k), _unsqueezed(v)
    given = mask if mask is not None else keep if keep is not None else bias
    kind = "mask" if mask is not None else "keep" if keep is not None else "bias"
    is_causal = causal is not None
    why_not_fused = fused_unsuitable(q, k, v, given, is_causal)
    fused = why_not_fused is None
    if not fused and wide_mask:
        raise Decline(f"the additive mask is {_dtype(bias)}, wider than the scores: the CPU "
                      "attention op takes it in q's dtype, which rounds it")
    if not fused and fill_value != -math.inf:
        raise Decline(f"the mask fills {fill_value!r}, not -inf: masked scores keep a weight "
                      "where the kept ones are lower, which only pypm::attention reproduces, and "
                      f"it does not fit here ({why_not_fused})")
    if not fused and kind != "bias" and not is_causal and given is not None:
        raise Decline(HIDDEN_NON_FINITE)
    why_not_cpu = None if fused else cpu_unsuitable(q, k, v, given)
    if why_not_cpu is not None:
        raise Decline(f"no attention op fits: pypm::attention: {why_not_fused}; "
                      f"aten._scaled_dot_product_flash_attention_for_cpu: {why_not_cpu}")
    may_empty = not is_causal and given is not None
    if may_empty and not fused and _requires_grad(q, k, v, bias):
        raise Decline("a row the mask empties is NaN when written out, and so are the gradients "
                      "through it; the CPU attention op gives 0 there")
    if is_causal or given is None:
        attn_mask = None
    elif fused:
        attn_mask = aten.logical_not.default(mask) if mask is not None else given
    else:
        attn_mask = _cpu_mask(given, q)
    nan_rows = not fused and _keep_nan_rows(q, k)
    nan = _scalar_tensor(math.nan, q) if may_empty and not fused else None
    q, scale = _aten_scale(q, mul_by if after is None else mul_after,
                           div_by if after is None else div_after)
    if fused:
        out = ops.attention(q, k, v, scale=scale, is_causal=is_causal, attn_mask=attn_mask,
                            mask_fill=None if fill_value == -math.inf else fill_value,
                            empty_rows_nan=True)
    else:
        res = aten._scaled_dot_product_flash_attention_for_cpu.default(
            q, k, v, 0.0, is_causal, attn_mask=attn_mask, scale=scale)
        out = operator.getitem(res, 0)
        if may_empty:
            out = aten.where.self(_aten_empty_rows(given), nan, out)
        if nan_rows:
            row = aten.amax.default(aten.abs.default(q), [-1], True)
            out = aten.add.Tensor(out, aten.mul.Tensor(row, 0.0))
    return aten.squeeze.dim(out, 0) if three_d else out


RULES = [attention, attention_aten]

__all__ = ["RULES", "Attention", "AttentionAten", "attention", "attention_aten", "cpu_unsuitable",
           "fused_unsuitable", "scale_of"]
