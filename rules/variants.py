"""Attention variants recovered from unmodified eager graphs as an ``AttentionSpec``.

``patterns/attention_variants.pypm`` finds softmax attention in its written-out forms (with the
scores' chain of scaling, soft-capping, biases and masks; with sinks; with K/V repeated for
grouped queries). Here the bound pieces are read:

- K and V are taken before ``repeat_kv``/``repeat_interleave`` (:func:`repeats_heads` is the
  guard that checks repeat_kv's index); the group size comes from the shapes.
- The chain from the scores to the softmax becomes an expression over the raw score; side
  operands (biases, masks) are lifted by the index algebra of :mod:`.lift`.
- The outermost mask (``where``/``masked_fill`` with a very negative fill, or an added
  ``where(keep, 0, fill)``) is peeled off as the mask predicate; a positive scale applied after
  a -inf mask is moved inside it first. What remains is the score modification; a constant
  factor on the raw score is the scale.

:func:`recover` returns, per attention site, the spec or the reason none was recovered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

import pypm
from pypm import guard_function, load
from pypm import kernels as ops
from pypm.graph import meta_value
from pypm.kernels import spec as _spec
from pypm.rewrite import Decline, rule

from . import on_fused_device
from .lift import Lifter, has_dims, to_indices

AttentionSpec = _spec.AttentionSpec
Call = _spec.Call
Captured = _spec.Captured
Const = _spec.Const
Expr = _spec.Expr
Score = _spec.Score
call = _spec.call
rename = _spec.rename
walk = _spec.walk


_VERY_NEGATIVE = -1e4  # a fill at or below this is a mask (exp underflows to 0 in every dtype)
_CHAIN = ("mul", "div", "add", "sub", "tanh", "neg", "masked_fill", "where", "to", "type_as")


def repeats_heads(rep: Any) -> bool:
    """Guard function: ``rep`` is repeat_kv's index ``[:, :, None]`` (a new dim after the heads)."""
    full = slice(None, None, None)
    return (
        isinstance(rep, tuple)
        and len(rep) >= 3
        and rep[0] == full
        and rep[1] == full
        and rep[2] is None
        and all(r == full for r in rep[3:])
    )


def fused_device(t: Any) -> bool:
    """Guard function: the tensor behind term ``t`` lives on a device of
    :data:`pypm.rules.FUSED_DEVICES`, where the variant rule uses ``pypm::attention``."""
    node = getattr(t, "node", None)
    return node is not None and on_fused_device(node)


GUARDS = (("repeats_heads", repeats_heads), ("on_fused_device", fused_device))


def register() -> None:
    """Register the guard functions the variant patterns call (idempotent)."""
    for name, fn in GUARDS:
        guard_function(fn, name=name)


class NotRecovered(Exception):
    """Why a match was not lifted into a specification."""


@dataclass
class Site:
    """One attention site: its root node, the spec (or the reason there is none), and the graph
    nodes the spec reads (q, k, v before repeats; captured tensors by their spec names)."""

    root: Any
    spec: AttentionSpec | None = None
    reason: str | None = None
    q: Any = None
    k: Any = None
    v: Any = None
    captured: dict[str, Any] = field(default_factory=dict)
    casts: tuple[Any, ...] = ()  # the dtypes the score chain is cast to, in order
    sink: tuple[Expr, Any] | None = None  # the sink column read as it stands: (expr of "sink", node)


def _patterns() -> Any:
    register()
    return load("attention_variants")


def _shape(t: Any) -> tuple[int, ...]:
    from .lift import _shape as shape_of

    s = shape_of(t)
    if s is None:
        raise NotRecovered(f"{t!r} has no known shape")
    return s


def _heads(kv: Any, rep: Any, dim: Any, repeated: Any) -> int:
    """The number of times each K/V head is repeated, checked against the repeat's spelling."""
    base = _shape(kv)
    if rep is None:
        return 1
    if isinstance(rep, tuple):  # x[:, :, None].expand(B, Hkv, n, S, D).reshape(B, Hkv * n, S, D)
        expanded = _shape(repeated.args[0])
        out = _shape(repeated)
        if (
            len(base) != 4
            or len(expanded) != 5
            or expanded[:2] != base[:2]
            or expanded[3:] != base[2:]
            or out != (base[0], base[1] * expanded[2], base[2], base[3])
        ):
            raise NotRecovered(f"repeat of K/V heads with shapes {base} -> {expanded} -> {out}")
        return expanded[2]
    if isinstance(rep, int) and not isinstance(rep, bool) and dim in (1, -3) and len(base) == 4:
        return rep
    raise NotRecovered(f"repeat_interleave({rep!r}, dim={dim!r}) is not a repeat of heads")


class _Chain:
    """The expression of a logits term over the raw score (``Score``)."""

    def __init__(self, lifter: Lifter, scores_ndim: int = 4):
        self.lifter = lifter
        self.ndim = scores_ndim
        self.scores: Any = None
        self.casts: list[Any] = []

    def reaches(self, t: Any) -> bool:
        if not hasattr(t, "op"):
            return False
        if t.op in ("matmul", "bmm"):
            return True
        return t.op in _CHAIN and any(self.reaches(a) for a in t.args[:3])

    def side(self, t: Any) -> Expr:
        e, shape = self.lifter.lift(t)
        if len(shape) > self.ndim:
            raise NotRecovered(f"{t!r} of shape {shape} does not broadcast to the scores")
        out = to_indices(e, shape, self.ndim)
        if has_dims(out):
            raise NotRecovered(f"{t!r} is not read at score positions")
        return out

    def expr(self, t: Any) -> Expr:
        if t.op in ("matmul", "bmm"):
            self.scores = t
            return Score()
        op, args = t.op, t.args
        on = [i for i, a in enumerate(args[:3]) if self.reaches(a)]
        if len(on) != 1:
            raise NotRecovered(f"{t!r}: the scores reach it {len(on)} times")
        i = on[0]
        x = self.expr(args[i])
        if op in ("to", "type_as"):
            self.casts.append(t.dtype)
            return x
        if op in ("tanh", "neg"):
            return call(op, x)
        if op in ("add", "sub"):
            if len(args) > 2 and args[2] != 1:
                raise NotRecovered(f"{t!r}: alpha={args[2]!r}")
            y = self.side(args[1 - i])
            return call(op, x, y) if i == 0 else call(op, y, x)
        if op == "mul":
            return call("mul", x, self.side(args[1 - i]))
        if op == "div":
            if i != 0 or (len(args) > 2 and args[2] is not None):
                raise NotRecovered(f"{t!r}: not a true division of the scores")
            return call("div", x, self.side(args[1]))
        if op == "masked_fill" and i == 0:
            return call("where", self.side(args[1]), self.side(args[2]), x)
        if op == "where" and i in (1, 2):
            ys = [self.side(a) if j != i else x for j, a in enumerate(args[:3])]
            return call("where", *ys)
        raise NotRecovered(f"{t!r}: not a score operation")


def _has_score(e: Expr) -> bool:
    return any(isinstance(n, Score) for n in walk(e))


def _fill(e: Expr) -> float | None:
    if isinstance(e, Const) and not isinstance(e.value, bool) and e.value <= _VERY_NEGATIVE:
        return float(e.value)
    return None


def _push_scale(e: Expr) -> Expr:
    """``where(keep, x, -inf) * c`` with c > 0 is ``where(keep, x * c, -inf)`` (also for /)."""
    if isinstance(e, Call) and e.op in ("mul", "div") and isinstance(e.args[1], Const):
        inner, c = _push_scale(e.args[0]), e.args[1].value
        if isinstance(inner, Call) and inner.op == "where" and not isinstance(c, bool) and c > 0:
            keep, a, b = inner.args
            if _fill(b) == -math.inf and _has_score(a):
                return call("where", keep, call(e.op, a, e.args[1]), b)
            if _fill(a) == -math.inf and _has_score(b):
                return call("where", keep, a, call(e.op, b, e.args[1]))
        return call(e.op, inner, e.args[1])
    return e


def _peel_mask(e: Expr) -> tuple[Expr, Expr | None, float, str]:
    """(score_mod, mask, fill, mode): the outermost mask taken off the logits, as written."""
    if isinstance(e, Call) and e.op == "where":
        keep, a, b = e.args
        if not _has_score(keep):
            if _fill(b) is not None and _has_score(a):
                return a, keep, _fill(b), "fill"
            if _fill(a) is not None and _has_score(b):
                return b, call("not", keep), _fill(a), "fill"
    if isinstance(e, Call) and e.op == "add":
        x, y = e.args
        if _has_score(y) and not _has_score(x):
            x, y = y, x
        if isinstance(y, Call) and y.op == "where" and not _has_score(y):
            keep, a, b = y.args
            if _fill(b) is not None:
                rest = (
                    x if a in (Const(0.0), Const(0)) else call("add", x, call("where", keep, a, Const(0.0)))
                )
                return rest, keep, _fill(b), "add"
    return e, None, -math.inf, "fill"


def _take_scale(e: Expr) -> tuple[Expr, float]:
    """A constant factor applied to the raw score first is the scale."""

    def go(x: Expr) -> tuple[Expr, float | None]:
        if isinstance(x, Call):
            if (
                x.op in ("mul", "div")
                and x.args[0] == Score()
                and isinstance(x.args[1], Const)
                and not isinstance(x.args[1].value, bool)
                and x.args[1].value != 0
            ):
                c = float(x.args[1].value)
                return Score(), (c if x.op == "mul" else 1.0 / c)
            if x.op == "mul" and x.args[1] == Score() and isinstance(x.args[0], Const):
                return Score(), float(x.args[0].value)
            for j, a in enumerate(x.args):
                if _has_score(a):
                    inner, c = go(a)
                    args = list(x.args)
                    args[j] = inner
                    return Call(x.op, tuple(args)), c
        return x, None

    out, c = go(e)
    return (out, c) if c is not None else (e, 1.0)


def _softmax_dtype(probs: Any, casts: list[Any]) -> str | None:
    dt = None
    sm = probs if probs.op == "softmax" else None
    if sm is not None and len(sm.args) > 2 and sm.args[2] is not None:
        dt = sm.args[2]
    elif casts:
        dt = casts[-1]
    return None if dt is None else str(dt).removeprefix("torch.")


def lift_match(m: Any, pats: Any) -> Site:
    """A match of ``AttentionVariant`` read into a :class:`Site` (raises NotRecovered)."""
    b = m.bindings
    lifter = Lifter()
    sinks = sink_read = None
    if b.get("logits") is not None:
        logits = b["logits"]
        probs = b["probs"]
    else:
        parts, sl = b.get("parts"), b.get("slice_")
        if not (isinstance(parts, tuple) and len(parts) == 2):
            raise NotRecovered(f"sinks: cat of {parts!r}")
        if sl != (Ellipsis, slice(None, -1, None)):
            raise NotRecovered(f"sinks: the probabilities are sliced {sl!r}, not [..., :-1]")
        logits, sink_t = parts
        probs = b["probs"].args[0]
        ls, ss = _shape(logits), _shape(sink_t)
        if len(ss) != len(ls) or ss[-1] != 1 or ss[:-1] != ls[:-1]:
            raise NotRecovered(f"sinks of shape {ss} beside logits of shape {ls}")
        e, shape = lifter.lift(sink_t)
        sinks = to_indices(e, shape)
        column = Lifter()
        read = to_indices(column.opaque(sink_t), shape)
        sink_read = (rename(read, {n: "sink" for n in column.captured}), sink_t.node)
    chain = _Chain(lifter)
    raw = chain.expr(logits)
    found = pypm.match(pats.VScores, chain.scores)
    if not found:
        raise NotRecovered(f"{chain.scores!r} is not q @ k^T")
    scores_m = found[0].bindings
    q, k = scores_m["q"], scores_m["k"]
    qs, ks = _shape(q), _shape(k)
    if len(qs) != 4:
        raise NotRecovered(f"q has shape {qs}, not (B, H, S, D)")
    repeated_k = chain.scores.args[1].args[0]
    group = _heads(k, scores_m.get("rep_k"), scores_m.get("dim_k"), repeated_k)
    v = b["v"]
    vgroup = _heads(v, b.get("rep_v"), b.get("dim_v"), m.root.args[1])
    vs = _shape(v)
    if group != vgroup or ks[1] != vs[1] or qs[1] != group * ks[1]:
        raise NotRecovered(f"heads: q {qs}, k {ks} (x{group}), v {vs} (x{vgroup})")
    mod, mask, fill, mode = _peel_mask(_push_scale(raw))
    mod, scale = _take_scale(mod)
    spec = AttentionSpec(
        group=group,
        scale=scale,
        score_mod=mod,
        mask=mask,
        fill=fill,
        mask_mode=mode,
        sinks=sinks,
        softmax_dtype=_softmax_dtype(probs, chain.casts),
    )
    names = spec.captured
    canon = spec.canonical()
    nodes = {f"c{i}": lifter.captured[n] for i, n in enumerate(names)}
    return Site(m.root.node, canon, None, q.node, k.node, v.node, nodes, tuple(chain.casts), sink_read)


def _preference(m: Any) -> int:
    """Matches that took K/V before their repeat first."""
    b = m.bindings
    return -(b.get("rep_k") is not None or b.get("dim_k") is not None) - (
        b.get("rep_v") is not None or b.get("dim_v") is not None
    )


def recover_sites(graph_module: torch.fx.GraphModule, example_inputs: Any = None) -> list[Site]:
    """Every attention site of a graph, with its specification or the reason it has none."""
    pats = _patterns()
    by_root: dict[Any, list[Any]] = {}
    for m in pypm.match(pats.AttentionVariant, graph_module, example_inputs):
        by_root.setdefault(m.root.node, []).append(m)
    out = []
    for root, ms in by_root.items():
        site = None
        reasons = []
        for m in sorted(ms, key=_preference):
            try:
                site = lift_match(m, pats)
                break
            except NotRecovered as e:
                reasons.append(str(e))
        out.append(site if site is not None else Site(root, None, "; ".join(dict.fromkeys(reasons))))
    return out


def recover(graph_module: torch.fx.GraphModule, example_inputs: Any = None) -> list[tuple[Any, Any]]:
    """``[(root node, AttentionSpec or the reason none was recovered)]`` for each attention site."""
    return [
        (s.root, s.spec if s.spec is not None else s.reason)
        for s in recover_sites(graph_module, example_inputs)
    ]


# ---------------------------------------------------------------------------------------------
# The rule: each recovered site becomes one ``pypm::attention`` call carrying its specification

PATTERNS = _patterns()
AttentionVariant = PATTERNS.AttentionVariant
FusedAttentionVariant = PATTERNS.FusedAttentionVariant

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)
_WIDER = {
    torch.float16: (torch.float16, torch.float32, torch.float64),
    torch.bfloat16: (torch.bfloat16, torch.float32, torch.float64),
    torch.float32: (torch.float32, torch.float64),
}
_NOTE = "pypm_note"  # node meta: what the rewrite recovered, for reports


def _op_name(view: Any, node: Any) -> str | None:
    return view.op_name(node) if node.op in ("call_function", "call_method") else None


def _root_of(view: Any, probs: Any) -> Any:
    """The matmul with v that the matched probabilities feed (through casts and a dropout that
    is off: nodes with one user each, as the region's safety requires)."""
    n = probs
    for _ in range(8):
        users = list(n.users)
        if len(users) != 1:
            break
        (n,) = users
        if _op_name(view, n) in ("matmul", "bmm"):
            return n
    raise Decline(f"the attention probabilities %{probs.name} do not lead to one matmul with v")


def site_at(root: Any) -> Site:
    """The specification of the attention whose matmul with v is ``root`` (raises NotRecovered)."""
    from pypm.graph import GraphView

    gm = root.graph.owning_module
    view = GraphView(gm if gm is not None else root.graph)
    reasons = []
    for m in sorted(pypm.match(PATTERNS.AttentionVariant, view.term(root)), key=_preference):
        try:
            return lift_match(m, PATTERNS)
        except NotRecovered as e:
            reasons.append(str(e))
    raise NotRecovered("; ".join(dict.fromkeys(reasons)) or "no attention variant at this root")


def plain(spec: AttentionSpec) -> bool:
    """Plain attention, which the ``attention`` rule takes as well where its pattern matches: one
    K/V head per query head, no sinks, the raw score (or the score plus one dense captured
    bias), no mask, an unstructured one, or the causal mask without padding or documents."""
    if spec.group != 1 or spec.sinks is not None:
        return False
    mod = spec.score_mod
    dense_bias = (
        isinstance(mod, Call)
        and mod.op == "add"
        and mod.args[0] == Score()
        and isinstance(mod.args[1], Captured)
    )
    if mod != Score() and not dense_bias:
        return False
    st = spec.structure
    if st.data not in ((), ("data",)):
        return False
    return st.kind in ("full", "arbitrary") or (st.kind == "causal" and not st.param("offset"))


def _attention_matches(root: Any) -> bool:
    """Whether the ``attention`` rule's pattern matches at ``root`` too."""
    from pypm.graph import GraphView

    from .attention import Attention

    gm = root.graph.owning_module
    view = GraphView(gm if gm is not None else root.graph)
    return bool(pypm.match(Attention, view.term(root)))


def _dtype(node: Any) -> Any:
    return getattr(meta_value(node), "dtype", None)


def check_types(site: Site, root: Any) -> None:
    """Decline unless the op computes what the graph does, up to rounding: q, k, v of one dtype
    the op takes, the score chain and the softmax only cast to that dtype or wider ones (the op
    accumulates in float32, exactly where the graph widens and a little more precisely where it
    does not), the result in q's dtype."""
    dq, dk, dv, dr = (_dtype(n) for n in (site.q, site.k, site.v, root))
    if dq not in _FLOATS or not (dq == dk == dv):
        raise Decline(
            f"q, k and v have dtypes {dq}, {dk}, {dv}: pypm::attention takes one of "
            "float16, bfloat16, float32"
        )
    if dr != dq:
        raise Decline(f"the attention result is {dr}, not the {dq} of q")
    casts = list(site.casts)
    if site.spec is not None and site.spec.softmax_dtype is not None:
        casts.append(getattr(torch, site.spec.softmax_dtype, None))
    for c in casts:
        if c not in _WIDER[dq]:
            raise Decline(f"the scores are cast to {c}, narrower than {dq}: the rounding is not reproduced")


def _sinks_as_read(site: Site) -> Site:
    """The site with its sinks read from the sink column the graph concatenates (rather than
    from the tensor it was expanded from): when that column requires grad, the replacement must
    read it for its gradient to flow as it does in the graph."""
    expr, node = site.sink
    spec = site.spec.with_(sinks=expr, structure=site.spec.structure)
    nodes = {**site.captured, "sink": node}
    captured = {f"c{i}": nodes[n] for i, n in enumerate(spec.captured)}
    return Site(site.root, spec.canonical(), None, site.q, site.k, site.v, captured, site.casts, None)


def _tensor(p: Any, val: Any, like: Any) -> Any:
    """A captured value as the op takes it: a tensor, or a 0-d tensor made from a number the
    graph computes (a scale that dynamo made symbolic, under ``dynamic=True``)."""
    if isinstance(val, torch.Tensor):
        return p
    if isinstance(val, (torch.SymFloat, float)):
        return torch.scalar_tensor(p, dtype=torch.float64, device=like.device)
    if isinstance(val, (torch.SymInt, int)) and not isinstance(val, bool):
        return torch.scalar_tensor(p, dtype=torch.int64, device=like.device)
    raise Decline(f"the specification reads %{p.node.name}, which is not a tensor or a number")


def exact_site(root: Any) -> Site:
    """The site at ``root`` when ``attention-variant`` rewrites it: a specification that says
    exactly what the graph computes, in dtypes the op reproduces, and not plain attention that
    the ``attention`` rule's pattern also matches. Raises :class:`Decline` with the reason."""
    try:
        site = site_at(root)
    except NotRecovered as e:
        raise Decline(f"no exact attention specification: {e}") from None
    if plain(site.spec) and _attention_matches(root):
        raise Decline(f"plain attention ({site.spec}): left to the attention rule")
    check_types(site, root)
    return site


def variant_at(root: Any) -> Site | None:
    """The site ``attention-variant`` would rewrite at ``root`` (None: it would not): on a fused
    device, with an exact specification beyond plain attention."""
    if not on_fused_device(root) or meta_value(root) is None:
        return None
    try:
        return exact_site(root)
    except Decline:
        return None


def emit(site: Site, tracer: Any) -> Any:
    """The ``pypm::attention`` call computing ``site``'s specification, built on ``tracer`` (a
    rule body's), with its note for the reports."""
    spec = site.spec
    if site.sink is not None and getattr(meta_value(site.sink[1]), "requires_grad", False):
        site = _sinks_as_read(site)
        spec = site.spec
    proxy = tracer.proxy
    cap = [_tensor(proxy(site.captured[n]), meta_value(site.captured[n]), meta_value(site.q))
           for n in spec.captured]
    out = ops.attention_spec(proxy(site.q), proxy(site.k), proxy(site.v), spec, cap)
    out.node.meta[_NOTE] = f"attention-variant: {spec}"
    return out


@rule(FusedAttentionVariant, name="attention-variant", priority=5)
def attention_variant(probs):
    """One ``pypm::attention`` call carrying the recovered specification (K/V before their
    repeat, the captured tensors it reads), on the fused devices (the pattern's guard); declined
    with the reason when no specification says exactly what the graph computes, and for plain
    attention that the ``attention`` rule's pattern matches. The ``attention`` rule, tried
    first, emits the same call (:func:`emit`) where its pattern matches a site this rule would
    take, so the two never both fire and no site depends on which rules a pass holds."""
    from pypm.graph import GraphView

    root = _root_of(GraphView(probs.node.graph, cse=False), probs.node)
    return emit(exact_site(root), probs.tracer)


def notes(graph_module: torch.fx.GraphModule) -> list[str]:
    """What each ``attention-variant`` rewrite of a graph recovered, in graph order
    (``attention-variant: causal window=4096 softcap=50.0 gqa=4 sinks``)."""
    return [n.meta[_NOTE] for n in graph_module.graph.nodes if _NOTE in n.meta]


def explain_sites(graph_module: torch.fx.GraphModule, example_inputs: Any = None) -> str:
    """One line per attention site: the recovered specification, or why there is none."""
    lines = []
    for s in recover_sites(graph_module, example_inputs):
        what = f"attention-variant: {s.spec}" if s.spec is not None else f"not recovered: {s.reason}"
        lines.append(f"%{s.root.name}: {what}")
    return "\n".join(lines)


RULES = [attention_variant]

__all__ = [
    "RULES",
    "AttentionVariant",
    "attention_variant",
    "check_types",
    "emit",
    "exact_site",
    "explain_sites",
    "FusedAttentionVariant",
    "fused_device",
    "variant_at",
    "notes",
    "plain",
    "site_at",
    "GUARDS",
    "NotRecovered",
    "Site",
    "lift_match",
    "recover",
    "recover_sites",
    "register",
    "repeats_heads",
]
