"""``pypm coverage TARGET``: which attention, norm and softmax sites of a model the standard rules
rewrite, and why the others are left alone.

TARGET is ``module:function`` (a function returning ``(model, example_inputs)``, as for
``pypm explain``; the inputs a tuple of positional arguments, a dict of keyword arguments, or
``(args, kwargs)``), or a transformers architecture name (``llama``, ``gpt2``, ...: see
:data:`ARCHITECTURES`) built from a tiny config with random weights and eager attention (no
download).

The model runs once under ``torch.compile`` with a backend that keeps dynamo's graphs. For each
graph, the sites are found by their anchors (a softmax, a norm call, an ``rsqrt``/``sqrt`` of a
written-out norm, an ``exp`` of a written-out softmax; a softmax whose probabilities feed a
matmul is attention, rooted at that matmul), the attention specification is recovered where
``pypm.rules.variants.recover`` is available, and ``pypm.RewritePass(pypm.standard_rules())``
is applied. Each site gets the report entries rooted inside it: a rewrite (rewritten, by which
rule), or the reasons of the skipped matches and near misses (not rewritten).

    pypm coverage llama
    pypm coverage gpt2 --json
    pypm coverage mymodels:build --layers 4
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .progress import Progress

# -- targets -------------------------------------------------------------------------------

_COMMON = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_attention_heads=4,
               max_position_embeddings=64)

# name -> (config class, model class, config arguments, the config's name for the layer count)
ARCHITECTURES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(_COMMON, num_key_value_heads=2), "num_hidden_layers"),
    "mistral": ("MistralConfig", "MistralForCausalLM",
                dict(_COMMON, num_key_value_heads=1, sliding_window=4), "num_hidden_layers"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(_COMMON, num_key_value_heads=2), "num_hidden_layers"),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(_COMMON, num_key_value_heads=1, head_dim=8),
              "num_hidden_layers"),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               dict(_COMMON, num_key_value_heads=2, head_dim=8, sliding_window=4,
                    attn_logit_softcapping=50.0, final_logit_softcapping=30.0, query_pre_attn_scalar=8),
               "num_hidden_layers"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(_COMMON, num_key_value_heads=2, pad_token_id=0),
             "num_hidden_layers"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             dict(vocab_size=64, n_embd=32, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0),
             "n_layer"),
    "bert": ("BertConfig", "BertModel", dict(_COMMON), "num_hidden_layers"),
}


def _tiny_transformer(name: str, layers: int, batch: int, tokens: int) -> tuple[Any, tuple[Any, Any]]:
    import torch
    import transformers

    config_name, model_name, cfg, layer_key = ARCHITECTURES[name]
    config_cls = getattr(transformers, config_name, None)
    model_cls = getattr(transformers, model_name, None)
    if config_cls is None or model_cls is None:
        raise SystemExit(f"pypm coverage: transformers {transformers.__version__} has no {model_name}")
    with _quiet_transformers():
        config = config_cls(**cfg, **{layer_key: layers})
        config._attn_implementation = "eager"
        torch.manual_seed(0)
        model = model_cls(config).eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (batch, tokens), generator=gen)
    mask = torch.ones(batch, tokens, dtype=torch.long)
    mask[0, : min(2, tokens - 1)] = 0  # left padding in the first row
    return model, ((), {"input_ids": ids, "attention_mask": mask})


@contextlib.contextmanager
def _quiet_transformers() -> Any:
    try:
        from transformers.utils import logging as tlog
    except ImportError:  # pragma: no cover
        yield
        return
    level = tlog.get_verbosity()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(level)


def _split_inputs(inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(inputs, dict):
        return (), dict(inputs)
    if (isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[1], dict)
            and isinstance(inputs[0], (tuple, list))):
        return tuple(inputs[0]), dict(inputs[1])
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


def load_target(target: str, *, layers: int = 2, batch: int = 2, tokens: int = 8) -> tuple[Any, tuple, dict]:
    """``(model, args, kwargs)`` for a TARGET (see the module docstring)."""
    if ":" in target:
        module_name, func = target.split(":", 1)
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")  # module:function from the current directory, as `python -m` does
        fn = getattr(importlib.import_module(module_name), func)
        out = fn()
        if not (isinstance(out, tuple) and len(out) == 2):
            raise SystemExit(f"pypm coverage: {target} must return (model, example_inputs)")
        model, inputs = out
        args, kwargs = _split_inputs(inputs)
        return model, args, kwargs
    name = target.lower().replace("-", "_")
    if name not in ARCHITECTURES:
        raise SystemExit(f"pypm coverage: unknown target {target!r}: give module:function or one of "
                         f"{', '.join(ARCHITECTURES)}")
    model, (args, kwargs) = _tiny_transformer(name, layers, batch, tokens)
    return model, args, kwargs


def capture(model: Any, args: Sequence[Any], kwargs: dict[str, Any] | None = None, *,
            grad: bool = False) -> list[tuple[Any, list[Any]]]:
    """The graphs dynamo hands a backend for ``model(*args, **kwargs)`` with their example inputs."""
    import torch

    graphs: list[tuple[Any, list[Any]]] = []

    def keep(gm: Any, example_inputs: Any) -> Any:
        graphs.append((gm, list(example_inputs)))
        return gm.forward

    torch._dynamo.reset()
    try:
        with warnings.catch_warnings(), (contextlib.nullcontext() if grad else torch.no_grad()):
            warnings.simplefilter("ignore")
            torch.compile(model, backend=keep)(*args, **(kwargs or {}))
    finally:
        torch._dynamo.reset()
    return graphs


# -- sites ---------------------------------------------------------------------------------

_PASS_THROUGH = {"to", "type", "type_as", "contiguous", "dropout", "clone", "detach", "getitem",
                 "native_dropout", "_to_copy"}
_ELEMENTWISE = {"mul", "div", "add", "sub", "to", "type", "type_as", "float", "half", "bfloat16",
                "_to_copy", "reciprocal", "neg"}
_MATMUL = {"matmul", "bmm", "einsum", "baddbmm"}
_NORM_CALLS = {"layer_norm": "layer norm", "native_layer_norm": "layer norm", "rms_norm": "rms norm",
               "_fused_rms_norm": "rms norm", "group_norm": "group norm", "native_group_norm": "group norm"}
_SOFTMAX = {"softmax", "_softmax", "_safe_softmax"}


@dataclass
class Site:
    """One attention, norm or softmax site of a graph and what the standard rules did there."""

    graph: int
    kind: str  # "attention", "softmax", "layer norm", "rms norm", "norm (written out)", ...
    node: str  # the root node (attention: the probabilities @ v matmul) or the anchor
    module: str | None = None  # the nn.Module path it came from (model.layers.0.self_attn)
    source: str | None = None  # file:line of the model code
    status: str = "not rewritten"  # "rewritten" | "not rewritten" | "rewritten (inside attention)"
    rule: str | None = None  # the rule that rewrote it, or the rule of the first reason
    reason: str | None = None  # why not (the skip or near miss, with its rule)
    reasons: list[str] = field(default_factory=list)  # every reason found in the site
    spec: str | None = None  # the recovered attention specification
    spec_reason: str | None = None  # why none was recovered
    within: str | None = None  # for a softmax inside attention: the attention's root

    @property
    def rewritten(self) -> bool:
        return self.status.startswith("rewritten")


def _name(node: Any, gm: Any) -> str:
    from .graph import target_name

    try:
        name = target_name(node, gm)
    except Exception:
        name = str(node.target)
    return name.removeprefix("aten.").removesuffix(".default")


def _module_of(node: Any) -> str | None:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    path = re.sub(r"^L\[[^\]]*\](\[\d+\])?\.?", "", str(path))
    cls_name = getattr(cls, "__name__", None) or str(cls).rsplit(".", 1)[-1].rstrip("'>")
    return f"{path} ({cls_name})" if path else cls_name


def _source_of(node: Any) -> str | None:
    trace = node.meta.get("stack_trace") or ""
    found = re.findall(r'File "([^"]+)", line (\d+)', trace)
    if not found:
        return None
    path, line = found[-1]
    return f"{path.rsplit('/', 1)[-1]}:{line}"


def _forward(node: Any, gm: Any, through: set[str], depth: int) -> list[Any]:
    """Nodes reachable from ``node`` through users whose operator is in ``through``, at most
    ``depth`` steps (breadth first, ``node`` first)."""
    seen = [node]
    frontier = [node]
    for _ in range(depth):
        nxt = []
        for n in frontier:
            for u in n.users:
                if u not in seen and u.op.startswith("call") and _name(u, gm) in through:
                    seen.append(u)
                    nxt.append(u)
        frontier = nxt
    return seen


def _attention_root(probs: Any, gm: Any) -> Any | None:
    """The matmul that takes ``probs`` (through casts, dropout, slices) as its left operand."""
    for n in _forward(probs, gm, _PASS_THROUGH, 3):
        for u in n.users:
            if u.op.startswith("call") and _name(u, gm) in _MATMUL:
                if _name(u, gm) == "einsum":
                    first = u.args[1] if len(u.args) > 1 else None
                else:
                    first = u.args[0] if u.args else None
                if first is n or (isinstance(first, (list, tuple)) and first and first[0] is n):
                    return u
    return None


def _is_written_softmax(exp: Any, gm: Any) -> bool:
    """``exp(x - max(x))`` whose result is summed: a written-out softmax."""
    arg = exp.args[0] if exp.args else None
    if getattr(arg, "op", "").startswith("call") and _name(arg, gm) == "sub":
        sub_rhs = arg.args[1] if len(arg.args) > 1 else None
        if getattr(sub_rhs, "op", "").startswith("call") and _name(sub_rhs, gm) in ("amax", "max", "getitem"):
            return any(_name(u, gm) in ("sum", "div") for u in exp.users if u.op.startswith("call"))
    return False


@dataclass
class _Found:
    site: Site
    span: set[str]  # the node names where a report entry counts for this site
    rule_kind: str  # which rules are relevant: "attention", "norm", "softmax"


def find_sites(gm: Any, graph_index: int = 0) -> list[_Found]:
    """The attention, norm and softmax sites of a graph, in graph order."""
    found: list[_Found] = []
    attention_roots: dict[Any, _Found] = {}

    def add(kind: str, node: Any, span: Iterable[Any], rule_kind: str, within: str | None = None) -> _Found:
        f = _Found(Site(graph_index, kind, node.name, _module_of(node), _source_of(node), within=within),
                   {n.name for n in span}, rule_kind)
        found.append(f)
        return f

    for node in list(gm.graph.nodes):
        if not node.op.startswith("call"):
            continue
        name = _name(node, gm)
        if name in _SOFTMAX or (name == "exp" and _is_written_softmax(node, gm)):
            root = _attention_root(node if name in _SOFTMAX else _softmax_end(node, gm), gm)
            kind = "softmax" if name in _SOFTMAX else "softmax (written out)"
            if root is not None and root not in attention_roots:
                attention_roots[root] = add("attention", root, [root], "attention")
            span = _forward(node, gm, {"to", "type", "type_as", "sum", "div", "mul", "reciprocal"},
                            1 if name in _SOFTMAX else 3)
            add(kind, node, span, "softmax", within=root.name if root is not None else None)
        elif name in _NORM_CALLS:
            add(_NORM_CALLS[name], node, _forward(node, gm, {"to", "type", "type_as"}, 1), "norm")
        elif name == "rsqrt" or (name == "sqrt" and any(_name(u, gm) == "div" for u in node.users
                                                           if u.op.startswith("call"))):
            add(f"{_norm_flavour(node, gm)} (written out)", node, _forward(node, gm, _ELEMENTWISE, 4), "norm")
    # attention sites first within a graph's order of roots: sort by node position
    order = {n.name: i for i, n in enumerate(gm.graph.nodes)}
    found.sort(key=lambda f: order.get(f.site.node, 0))
    return found


def _norm_flavour(root: Any, gm: Any) -> str:
    """"rms norm" when the (r)sqrt is of a mean of squares (plus eps), "layer norm" when of a
    variance or a mean of centered squares, "norm" otherwise."""
    def call(n: Any) -> str | None:
        return _name(n, gm) if getattr(n, "op", "").startswith("call") else None

    x = root.args[0] if root.args else None
    if call(x) == "add":
        x = next((a for a in x.args if call(a) in ("mean", "var", "var_mean", "getitem")), x)
    if call(x) in ("var", "var_mean", "getitem"):
        return "layer norm"
    if call(x) == "mean" and x.args:
        sq = x.args[0]
        if call(sq) in ("to", "type", "float", "_to_copy"):
            sq = sq.args[0]
        if call(sq) in ("pow", "mul", "square"):
            base = sq.args[0] if sq.args else None
            return "layer norm" if call(base) == "sub" else "rms norm"
    return "norm"


def _softmax_end(exp: Any, gm: Any) -> Any:
    """The division that ends a written-out softmax (or ``exp`` itself)."""
    for n in _forward(exp, gm, {"sum", "div", "to"}, 2):
        if _name(n, gm) == "div" and n.args and n.args[0] is exp:
            return n
    return exp


def _rule_kind(rule: str) -> str | None:
    r = rule.lower()
    for kind in ("attention", "norm", "softmax"):
        if kind in r:
            return kind
    return None


def _attribute(found: list[_Found], report: Any, recovered: dict[str, str | tuple[str, str]]) -> list[Site]:
    rewrites = list(getattr(report, "rewrites", ()) or ())
    skipped = list(getattr(report, "skipped", ()) or ())
    misses = list(getattr(report, "misses", ()) or ())
    by_root: dict[str, Site] = {f.site.node: f.site for f in found}
    for f in found:
        s = f.site

        def relevant(e: Any, f: _Found = f) -> bool:
            kind = _rule_kind(str(e.rule))
            return kind is None or kind == f.rule_kind

        done = [r for r in rewrites if r.root in f.span and relevant(r)]
        if done:
            s.status, s.rule = "rewritten", done[0].rule
        else:
            why = [e for e in skipped if e.root in f.span and relevant(e)]
            why += [e for e in misses if e.root in f.span and relevant(e)]
            s.reasons = list(dict.fromkeys(f"{e.rule}: {e.kind}: {e.reason}" for e in why))
            if why:
                s.rule, s.reason = why[0].rule, f"{why[0].kind}: {why[0].reason}"
            else:
                s.reason = "no standard rule has a candidate root here"
        if s.kind == "attention" and (s.node in recovered or "" in recovered):
            value = recovered.get(s.node, recovered.get(""))
            if isinstance(value, tuple):
                s.spec_reason = value[1]
            else:
                s.spec = value
    for f in found:  # a softmax gone with its attention
        s = f.site
        outer = by_root.get(s.within) if s.within else None
        if outer is not None and outer.rewritten and not s.rewritten:
            s.status, s.rule, s.reason, s.reasons = "rewritten (inside attention)", outer.rule, None, []
    return [f.site for f in found]


def _recover(gm: Any, example_inputs: Any) -> dict[str, str | tuple[str, str]]:
    """Root name -> recovered spec (str), or ("", reason); empty when recovery is unavailable."""
    try:
        from pypm.rules import variants
    except ImportError:
        return {}
    recover = getattr(variants, "recover", None)
    if recover is None:
        return {}
    out: dict[str, str | tuple[str, str]] = {}
    try:
        pairs = recover(gm, example_inputs)
    except Exception as e:  # recovery is a report here, never a failure of the command
        return {"": ("", f"recovery failed: {type(e).__name__}: {e}")}
    for root, spec in pairs:
        out[getattr(root, "name", str(root))] = ("", spec) if isinstance(spec, str) or spec is None \
            else str(spec)
    return out


def coverage_of_graph(gm: Any, example_inputs: Any, rules: Sequence[Any] | None = None,
                      graph_index: int = 0) -> tuple[list[Site], Any]:
    """The sites of one graph and what ``rules`` (default: the standard rules) did there; the
    graph is rewritten in place. Returns ``(sites, report)``."""
    import pypm

    from .graph import cse

    cse(gm)  # the pass merges common subexpressions first: find the sites among the same nodes
    found = find_sites(gm, graph_index)
    recovered = _recover(gm, example_inputs) if any(f.site.kind == "attention" for f in found) else {}
    rules = pypm.standard_rules() if rules is None else list(rules)
    report = pypm.RewritePass(rules).apply(gm, example_inputs)
    sites = _attribute(found, report, recovered)
    # attention sites recovery found and the anchors did not
    known = {s.node for s in sites}
    for root, value in recovered.items():
        if root and root not in known:
            s = Site(graph_index, "attention", root, status="not rewritten",
                     reason="(recovered by pypm.rules.variants; no softmax anchor found)")
            if isinstance(value, tuple):
                s.spec_reason = value[1]
            else:
                s.spec = value
            for r in getattr(report, "rewrites", ()) or ():
                if r.root == root:
                    s.status, s.rule, s.reason = "rewritten", r.rule, None
            sites.append(s)
    return sites, report


@dataclass
class Coverage:
    """Every site of every graph of a model."""

    target: str
    graphs: int
    sites: list[Site]
    reports: list[Any] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, int]]:
        """Per kind: sites, rewritten."""
        out: dict[str, dict[str, int]] = {}
        for s in self.sites:
            d = out.setdefault(s.kind, {"sites": 0, "rewritten": 0})
            d["sites"] += 1
            d["rewritten"] += s.rewritten
        return out

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "graphs": self.graphs, "summary": self.summary(),
                "sites": [asdict(s) | {"rewritten": s.rewritten} for s in self.sites]}


def coverage(target: str, *, layers: int = 2, batch: int = 2, tokens: int = 8,
             rules: Sequence[Any] | None = None, progress: Progress | None = None) -> Coverage:
    """Build TARGET, capture its graphs, rewrite them and list the sites (see the module doc)."""
    bar = progress if progress is not None else Progress(None, force=False)
    bar.set_total(3)
    bar.set_label(f"building {target}")
    model, args, kwargs = load_target(target, layers=layers, batch=batch, tokens=tokens)
    bar.advance(label="capturing graphs (torch.compile)")
    graphs = capture(model, args, kwargs)
    bar.set_total(2 + len(graphs))
    bar.advance(label=f"rewriting {len(graphs)} graph(s)")
    sites: list[Site] = []
    reports = []
    for i, (gm, example_inputs) in enumerate(graphs):
        s, report = coverage_of_graph(gm, example_inputs, rules, i)
        sites += s
        reports.append(report)
        bar.advance(label=f"graph {i}: {len(s)} site(s)")
    return Coverage(target, len(graphs), sites, reports)


# -- output --------------------------------------------------------------------------------


def _clip(text: str | None, width: int) -> str:
    text = "" if text is None else " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(cov: Coverage, *, width: int = 100, all_reasons: bool = False) -> str:
    """The sites as a readable table, a summary line per kind after it."""
    header = ("graph", "node", "kind", "module", "status", "rule")
    rows = []
    for s in cov.sites:
        rows.append((str(s.graph), f"%{s.node}", s.kind, _clip(s.module, 48), s.status, s.rule or "-"))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [f"pypm coverage: {cov.target}: {cov.graphs} graph(s), {len(cov.sites)} site(s)", "",
           line(header), line(tuple("-" * w for w in widths))]
    for s, row in zip(cov.sites, rows):
        out.append(line(row))
        indent = " " * (widths[0] + 2)
        if s.source:
            out.append(f"{indent}at {s.source}")
        if s.spec is not None:
            out.append(f"{indent}spec: {s.spec}")
        elif s.spec_reason is not None:
            out.append(f"{indent}spec: not recovered: {_clip(s.spec_reason, width)}")
        if s.within and s.kind.startswith("softmax"):
            out.append(f"{indent}in the attention at %{s.within}")
        if not s.rewritten:
            first = f"{s.rule}: {s.reason}" if s.rule else s.reason
            reasons = s.reasons if (all_reasons and s.reasons) else [first]
            for r in reasons:
                out.append(f"{indent}why not: {_clip(r, width) if not all_reasons else r}")
            if not all_reasons and len(s.reasons) > 1:
                out.append(f"{indent}(+{len(s.reasons) - 1} more reason(s); --all-reasons lists them)")
    out.append("")
    for kind, d in cov.summary().items():
        out.append(f"{kind}: {d['rewritten']}/{d['sites']} rewritten")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``pypm coverage TARGET [--json]``."""
    ap = argparse.ArgumentParser(
        prog="pypm coverage",
        description="Which attention, norm and softmax sites of a model the standard rules rewrite, "
                    "by which rule, and why the others are not rewritten.",
        epilog=f"TARGET: module:function returning (model, example_inputs), or one of "
               f"{', '.join(ARCHITECTURES)} (transformers, tiny config, random weights, eager attention)")
    ap.add_argument("target")
    ap.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    ap.add_argument("--layers", type=int, default=2, help="layers of a transformers target (default 2)")
    ap.add_argument("--batch", type=int, default=2, help="batch of a transformers target (default 2)")
    ap.add_argument("--tokens", type=int, default=8,
                    help="sequence length of a transformers target (default 8)")
    ap.add_argument("--all-reasons", action="store_true", help="every reason per site, unclipped")
    ap.add_argument("--progress", action="store_true", default=None,
                    help="progress lines on stderr even when it is not a terminal")
    args = ap.parse_args(argv)
    with Progress(None, f"pypm coverage {args.target}", force=args.progress) as bar:
        cov = coverage(args.target, layers=args.layers, batch=args.batch, tokens=args.tokens, progress=bar)
    if args.json:
        print(json.dumps(cov.to_json(), indent=1))
    else:
        print(format_table(cov, all_reasons=args.all_reasons))
    return 0


__all__ = ["ARCHITECTURES", "Coverage", "Site", "capture", "coverage", "coverage_of_graph", "find_sites",
           "format_table", "load_target", "main"]
