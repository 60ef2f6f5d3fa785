"""Why a pattern did or did not match: ``pypm.explain(P, graph)`` and ``pypm explain``.

For each candidate root (a node whose operator can be the pattern's root), the interpreter runs
with a tracer that sees every failing step (:class:`pypm.lang.match.Tracer`). The step of the
*deepest partial match* (the most operator terms matched on the derivation) is the answer: an
operator mismatch, a literal mismatch with both values, a guard that was false with the values
of its variables, ... together with the pattern source line it came from. A root that matched
is checked for safety as the rewriter would (an intermediate used outside the match is named
with its escaping user).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from ..errors import PypmError, caret
from ..graph.graph_effects import Writers
from ..graph.names import node_source
from ..graph.types import has_types, propagate_types
from ..graph.view import GraphView
from ..lang.analysis import call_of, resolve, root_ops
from ..lang.match import Interpreter, Match
from ..lang.syntax import Guard, Op, OpVar, Pattern, guard_free_vars, show, show_guard
from ..lang.terms import TermView
from .index import RootIndex
from .report import show_binding
from .safety import check_region

Node = torch.fx.Node


def show_value(v: Any) -> str:
    """A value for a human: graph terms as ``%name (op, dtype[shape])``, literals as repr."""
    node = getattr(v, "node", None)
    if isinstance(v, TermView) and isinstance(node, Node):
        ty = f", {str(v.dtype).replace('torch.', '')}{list(v.shape)}" if v.shape is not None else ""
        return f"%{node.name} ({v.op}{ty})"
    if isinstance(v, TermView):
        return f"<{v.op}>"
    return repr(v)


@dataclass(frozen=True)
class Failure:
    """One failing step: its kind (the interpreter's reason), the message, the graph node it
    was looking at, how far the derivation had got (operators entered, sub-patterns matched),
    and the pattern step."""

    reason: str
    message: str
    node: str | None
    progress: tuple[int, int]
    pattern: Pattern

    @property
    def where(self) -> str:
        """``file:line: source line`` of the pattern step."""
        span = getattr(self.pattern, "span", None)
        if span is None:
            return show(self.pattern)
        return f"{span.file}:{span.line}: {span.line_text().strip()}"

    def __str__(self) -> str:
        at = f" at %{self.node}" if self.node else ""
        out = f"{self.reason}{at}: {self.message}\n      pattern {self.where}"
        span = getattr(self.pattern, "span", None)
        if span is not None and span.line_text():
            text = span.line_text()
            indent = len(text) - len(text.lstrip())  # `where` shows the line stripped
            out += "\n" + caret(span, len(f"      pattern {span.file}:{span.line}: ") - indent)
        return out


def describe(p: Pattern, v: Any, sigma: dict[str, Any], reason: str, info: dict[str, Any]) -> str:
    """The message of a failing step, with the values involved."""
    if reason == "operator":
        exp = info.get("expected")
        what = f"operator {exp}" if isinstance(exp, str) else "an operator"
        found = show_value(v) if isinstance(v, TermView) else f"the literal {v!r}"
        return f"expected {what}, found {found}"
    if reason == "arity":
        n = len(v.args) if isinstance(v, TermView) else 0
        return f"the pattern needs {info.get('expected')} arguments, {show_value(v)} has {n}"
    if reason == "literal":
        found = show_value(v) if isinstance(v, TermView) else repr(v)
        return f"literal mismatch: the pattern says {info.get('expected')!r}, the graph has {found}"
    if reason == "nonlinear":
        return (f"{info.get('var')} is already {show_value(info.get('expected'))}, but here it would be "
                f"{show_value(v)}")
    if reason == "opvar":
        return f"operator variable {info.get('var')} is {info.get('expected')!r}, found {show_value(v)}"
    if reason == "guard":
        cond = p.cond if isinstance(p, Guard) else None
        if cond is None:
            return "guard false"
        vals = ", ".join(f"{x} = {show_value(sigma[x])}" for x in sorted(guard_free_vars(cond)) if x in sigma)
        return f"guard false: {show_guard(cond)}  where {vals}"
    if reason == "guard-error":
        return f"guard could not be evaluated: {info.get('error')}"
    if reason == "guard-unbound":
        return f"guard reads unbound variable(s) {', '.join(info.get('vars', []))}"
    if reason == "unbound":
        return f"{info.get('var')} is not bound when it is needed"
    if reason == "fail":
        return "the pattern says fail"
    return reason


class DeepestFailure(Interpreter):
    """The interpreter with a tracer that keeps the failing step of the deepest partial match:
    the one reached with the most operator terms entered on the current derivation (then the
    most sub-patterns matched), the first such step on ties, in the interpreter's order."""

    def __init__(self, program: Any, root: TermView):
        super().__init__(program, self)
        self.root = root
        self.best: Failure | None = None
        self._current: Any = root
        self._ops = 0  # operator terms entered on the current (partial) derivation
        self._done = 0  # sub-patterns whose match the current derivation builds on

    def run(self, p: Pattern, v: Any, sigma: dict[str, Any]) -> Any:
        # Progress of the current derivation: the operators entered (graph consumed), then the
        # sub-patterns whose match the derivation is building on (suspended after a result).
        entered = isinstance(p, (Op, OpVar)) and isinstance(v, TermView) and len(p.args) <= len(v.args) \
            and (isinstance(p, OpVar) or v.op == p.name)
        if entered:
            self._ops += 1
        try:
            for out in super().run(p, v, sigma):
                self._done += 1
                try:
                    yield out
                finally:
                    self._done -= 1
        finally:
            if entered:
                self._ops -= 1

    def _args(self, ps: Any, vs: Any, i: int, sigma: Any, region: Any) -> Any:
        self._current = region[0]  # the operator term whose arguments are being matched
        return super()._args(ps, vs, i, sigma, region)

    def fail(self, p: Pattern, v: Any, sigma: dict[str, Any], reason: str, **info: Any) -> None:
        progress = (self._ops, self._done)
        if self.best is not None and self.best.progress >= progress:
            return
        at = v if isinstance(v, TermView) else self._current
        node = getattr(at, "node", None)
        self.best = Failure(reason, describe(p, v, sigma, reason, info),
                            node.name if isinstance(node, Node) else None, progress, p)


@dataclass(frozen=True)
class RootExplanation:
    """What happened at one candidate root."""

    root: str
    source: str
    matched: bool
    unsafe: str | None = None
    failure: Failure | None = None
    bindings: dict[str, str] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """One line: why this root is not rewritten (empty when it would be)."""
        if self.unsafe:
            return f"unsafe: {self.unsafe}"
        if self.failure is not None:
            return f"{self.failure.reason}: {self.failure.message}"
        return ""

    def __str__(self) -> str:
        head = f"  {self.source}\n"
        if self.matched and not self.unsafe:
            b = ", ".join(f"{k}={v}" for k, v in self.bindings.items())
            return head + f"    matched: {b}"
        if self.matched:
            return head + f"    matched, but unsafe: {self.unsafe}"
        return head + f"    no match; deepest step: {self.failure}"


@dataclass(frozen=True)
class Explanation:
    """``pypm.explain``'s answer: the pattern and, per candidate root, what happened there."""

    pattern: str
    root_ops: tuple[str, ...] | None
    roots: tuple[RootExplanation, ...]

    def __str__(self) -> str:
        ops = "any operator" if self.root_ops is None else " | ".join(self.root_ops)
        if not self.roots:
            return f"pattern {self.pattern}: no node has a root operator it can match ({ops})"
        lines = [f"pattern {self.pattern}: {len(self.roots)} candidate root(s) ({ops})"]
        lines += [str(r) for r in self.roots]
        return "\n".join(lines)

    def reasons(self) -> list[str]:
        return [r.reason for r in self.roots]


def explain_root(program: Any, definition: Any, view: GraphView, node: Node,
                 sigma: dict[str, Any] | None = None, writers: Writers | None = None) -> RootExplanation:
    """Match a definition at one node: the first safe match (as the rewriter would take it), else
    the first match with its safety problem, else the deepest failure. ``writers``: the graph's
    writing nodes, when the caller has them (found here otherwise)."""
    if writers is None:
        writers = Writers(view.graph, view.names.effect, view.names.kinds)

    term = view.term(node)
    interp = DeepestFailure(program, term)
    first_unsafe: RootExplanation | None = None
    for out, region in interp.run(call_of(definition), term, dict(sigma or {})):
        m = Match(out, region, term, definition.name)
        bindings = {k: show_binding(v) for k, v in out.items() if k in definition.params}
        hazard = check_region(m, node, view.owner, view.rep, writers, view.names)
        unsafe = None if hazard is None else hazard[1]
        if unsafe is None:  # the rewriter would take this one
            return RootExplanation(node.name, node_source(node), True, None, None, bindings)
        first_unsafe = first_unsafe or RootExplanation(node.name, node_source(node), True, unsafe,
                                                       None, bindings)
    if first_unsafe is not None:
        return first_unsafe
    return RootExplanation(node.name, node_source(node), False, None, interp.best)


def explain(pattern: Any, graph: torch.fx.GraphModule | torch.fx.Graph,
            example_inputs: Sequence[Any] | None = None, *, node: str | None = None,
            **bound: Any) -> Explanation:
    """Why ``pattern`` (a pattern or a rule) does or does not match at each candidate root of
    ``graph`` (or only at the node named ``node``)."""
    if hasattr(pattern, "definition") and hasattr(pattern, "fn"):  # a Rule
        pattern = (pattern.program, pattern.definition)
    program, definition = resolve(pattern)
    if example_inputs is not None and isinstance(graph, torch.fx.GraphModule) and not has_types(graph.graph):
        propagate_types(graph, example_inputs)
    view = GraphView(graph)
    sigma = {k: view.value(v) for k, v in bound.items()}
    ops = root_ops(program, call_of(definition))
    roots = []
    writers = Writers(view.graph, view.names.effect, view.names.kinds)
    index = RootIndex([(definition.name, ops)])
    for n in index.candidates((n for n in view.graph.nodes if n not in view.rep), view.op_name):
        if node is not None and n.name != node:
            continue
        roots.append(explain_root(program, definition, view, n, sigma, writers))
    return Explanation(definition.name, None if ops is None else tuple(sorted(ops)), tuple(roots))


# ---------------------------------------------------------------------------------------------
# pypm explain


def _load_model(spec: str) -> tuple[Any, tuple[Any, ...]]:
    """``module:function`` returning (model or function, example inputs)."""
    mod_name, _, fn_name = spec.partition(":")
    if not fn_name:
        raise PypmError(f"--model wants module:function, not {spec!r}")
    sys.path.insert(0, ".")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    finally:
        sys.path.pop(0)
    model, inputs = fn()
    return model, tuple(inputs)


def capture_graphs(model: Any, inputs: Sequence[Any], *, dynamic: bool = False) -> list[torch.fx.GraphModule]:
    """The graphs dynamo hands to a backend for ``model(*inputs)`` (what ``backend="pypm"``
    would rewrite), in order."""
    graphs: list[torch.fx.GraphModule] = []

    def capture(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(model, backend=capture, dynamic=dynamic)(*inputs)
    torch._dynamo.reset()
    return graphs


def main(argv: Sequence[str] | None = None) -> int:
    """``pypm explain``: explain a pattern on a model's graph (by default, the standard attention
    pattern on the demo GPT model)."""
    ap = argparse.ArgumentParser(
        prog="pypm explain",
        description="For each candidate root of a model's graph: the match, or the deepest partial "
                    "match with its failing step and pattern line.",
        epilog="example: pypm explain attention -p Attention -m mymodels:build  "
               "(build() returns (model, example_inputs))")
    ap.add_argument("patterns", nargs="?", default="attention",
                    help="pattern file or standard library name (default: attention)")
    ap.add_argument("--pattern", "-p", default="Attention", help="pattern name (default: Attention)")
    ap.add_argument("--model", "-m", default="pypm.demo:example",
                    help="module:function returning (model, example_inputs); default: the demo GPT")
    ap.add_argument("--node", "-n", default=None, help="only this node (by fx name)")
    ap.add_argument("--trace", choices=("dynamo", "fx"), default="dynamo",
                    help="graphs as torch.compile sees them (dynamo) or from torch.fx.symbolic_trace")
    ap.add_argument("--dynamic", action="store_true", help="dynamo with dynamic=True")
    args = ap.parse_args(argv)
    try:
        import pypm.patterns  # noqa: F401  (registers the guard functions the standard patterns call)

        from ..lang.load import load

        pdef = load(args.patterns)[args.pattern]
        model, inputs = _load_model(args.model)
        if args.trace == "fx":
            gm = torch.fx.symbolic_trace(model)
            print(explain(pdef, gm, inputs, node=args.node))
        else:
            for i, gm in enumerate(capture_graphs(model, inputs, dynamic=args.dynamic)):
                print(f"graph {i}:")
                print(explain(pdef, gm, node=args.node))
    except PypmError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


__all__ = ["DeepestFailure", "Explanation", "Failure", "RootExplanation", "describe", "explain",
           "explain_root", "main"]
