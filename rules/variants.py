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
from .chain import (
    NotRecovered,
    _Chain,
    _heads,
    _peel_mask,
    _push_scale,
    _shape,
    _softmax_dtype,
    _take_scale,
    flat_probs,
    unmerge,
)
from .lift import Lifter, to_indices

AttentionSpec = _spec.AttentionSpec
Call = _spec.Call
Captured = _spec.Captured
Const = _spec.Const
Expr = _spec.Expr
Score = _spec.Score
call = _spec.call
rename = _spec.rename
walk = _spec.walk




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
    flat: bool = False  # the result is (B * H, Sq, Dv): the op's (B, H, Sq, Dv) with dims 0, 1 merged


def _patterns() -> Any:
    register()
    return load("attention_variants")



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
    flat = flat_probs(m.root, probs)
    if chain.merged is not None or flat:
        if sinks is not None or any(scores_m.get(n) is not None for n in ("rep_k", "dim_k")) \
                or any(b.get(n) is not None for n in ("rep_v", "dim_v")):
            raise NotRecovered("3-d attention (batch and heads merged) with sinks or repeated K/V heads")
    if chain.merged is not None:
        q, k = unmerge(q, chain.merged), unmerge(k, chain.merged)
    qs, ks = _shape(q), _shape(k)
    if len(qs) != 4:
        raise NotRecovered(f"q has shape {qs}, not (B, H, S, D)")
    group = 1
    if chain.merged is None:
        repeated_k = chain.scores.args[2 if chain.scores.op == "baddbmm" else 1].args[0]
        group = _heads(k, scores_m.get("rep_k"), scores_m.get("dim_k"), repeated_k)
    elif len(ks) != 4:
        raise NotRecovered(f"k has shape {ks}, not (B, H, S, D)")
    v = b["v"]
    if flat:
        v = unmerge(v, qs[1])
        vgroup = 1
    else:
        vgroup = _heads(v, b.get("rep_v"), b.get("dim_v"), m.root.args[1])
    vs = _shape(v)
    if group != vgroup or ks[1] != vs[1] or qs[1] != group * ks[1] or len(vs) != 4:
        raise NotRecovered(f"heads: q {qs}, k {ks} (x{group}), v {vs} (x{vgroup})")
    if flat != (len(_shape(m.root)) == 3):
        raise NotRecovered(f"the attention result has shape {_shape(m.root)}")
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
    return Site(m.root.node, canon, None, q.node, k.node, v.node, nodes, tuple(chain.casts), sink_read,
                flat)


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
    return Site(site.root, spec.canonical(), None, site.q, site.k, site.v, captured, site.casts, None,
                site.flat)


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
    return out.flatten(0, 1) if site.flat else out


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
