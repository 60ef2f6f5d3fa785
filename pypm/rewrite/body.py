"""Running a rule body: trace the replacement in front of the root on proxies, check what it
added (what ``graph.lint()`` would, and the root's shape and dtype), then commit it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx

from ..errors import PypmError, RewriteError
from ..graph.names import fetch_attr
from ..graph.types import infer_value, meta_value, size_value
from ..graph.view import FxTerm, GraphView, ParamTerm
from ..lang.match import Match
from .rule import Decline, Rule
from .safety import region_nodes

Node = torch.fx.Node


def new_nodes(marker: Node, root: Node) -> list[Node]:
    """Nodes inserted between ``marker`` and ``root`` (what a rule body created), in order."""
    out = []
    n = marker.next
    while n is not root:
        out.append(n)
        n = n.next
    return out


def remove_nodes(nodes: Sequence[Node]) -> None:
    for n in reversed(nodes):
        if not n.users:
            n.graph.erase_node(n)


# Argument types a body's torch call passes to the new node as they are.
_PLAIN_ARGS = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout,
                         torch.memory_format})
_CALL_KIND: dict[Any, str] = {}  # torch callable -> "call_method" (a Tensor method) or "call_function"


class BodyProxy(torch.fx.Proxy):
    """The proxies a rule body receives: ``torch.fx.Proxy`` with a shorter path for the common
    torch call (proxies and plain values as arguments, no nesting), which records the same node
    torch's general ``__torch_function__`` would, about three times faster. Anything else takes
    torch's path."""

    @classmethod
    def __torch_function__(cls, orig_method: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        tracers: set[Any] = set()

        def unwrap(a: Any) -> Any:
            if isinstance(a, torch.fx.Proxy):
                tracers.add(a.tracer)
                return a.node
            if type(a) in _PLAIN_ARGS:
                return a
            raise _NotPlain

        kind = _call_kind(orig_method)
        try:
            args_ = tuple(unwrap(a) for a in args or ())
            kwargs_ = {k: unwrap(a) for k, a in (kwargs or {}).items()}
        except _NotPlain:
            kind = None
        if kind is None or len(tracers) != 1:
            return super().__torch_function__(orig_method, types, args, kwargs)
        (tracer,) = tracers
        if kind == "call_method":
            node = tracer.create_node(kind, orig_method.__name__, args_, kwargs_)
        else:
            node = tracer.create_node(kind, orig_method, args_, kwargs_,
                                      name=tracer.graph._target_to_str(orig_method.__name__))
        return tracer.proxy(node)


class _NotPlain(Exception):
    """An argument BodyProxy's short path does not take (it goes to torch's path)."""


def _call_kind(fn: Any) -> str | None:
    """How torch's ``Proxy.__torch_function__`` records a call of ``fn``, or None for the
    callables it treats specially (script methods, higher-order operators)."""
    try:
        return _CALL_KIND[fn]
    except KeyError:
        pass
    except TypeError:
        return None
    if isinstance(fn, (torch._C.ScriptMethod, torch._ops.HigherOrderOperator)) \
            or not hasattr(fn, "__name__"):
        kind = None
    elif torch.overrides.is_tensor_method_or_property(fn):
        kind = "call_method"
    else:
        kind = "call_function"
    _CALL_KIND[fn] = kind  # type: ignore[assignment]
    return kind


class _BodyTracer(torch.fx.proxy.GraphAppendingTracer):
    """Appends a body's nodes to the graph; every proxy it makes is a :class:`BodyProxy`."""

    def proxy(self, node: Node) -> torch.fx.Proxy:
        return BodyProxy(node, self)


def _argument(v: Any, tracer: Any, graph: torch.fx.Graph) -> Any:
    """A bound value as the body sees it: terms as proxies, literals as themselves."""
    if isinstance(v, FxTerm):
        return BodyProxy(v.node, tracer)
    if isinstance(v, ParamTerm):
        return BodyProxy(graph.get_attr(v.qualname), tracer)
    if isinstance(v, tuple):
        return tuple(_argument(x, tracer, graph) for x in v)
    return v


def run_body(rule: Rule, match: Match, root: Node) -> tuple[Node | None, str | None]:
    """Run the rule body in front of the root. Returns (replacement node, None), or (None, the
    reason it declined). Nodes the body created are removed again when it declines."""
    graph = root.graph
    marker = root.prev
    tracer = _BodyTracer(graph)
    with graph.inserting_before(root):
        kwargs = {p: _argument(match.bindings.get(p), tracer, graph) for p in rule.params}
        try:
            out = rule.fn(**kwargs)
        except Decline as d:
            remove_nodes(new_nodes(marker, root))
            return None, str(d) or "the rule declined"
        except PypmError:
            remove_nodes(new_nodes(marker, root))
            raise
        except Exception as e:
            remove_nodes(new_nodes(marker, root))
            raise RewriteError(f"rule {rule.name} failed at %{root.name}: {type(e).__name__}: {e}",
                               rule.span, pattern=rule.name) from e
    if isinstance(out, torch.fx.Proxy):
        out = out.node
    if out is None:
        remove_nodes(new_nodes(marker, root))
        return None, "the rule returned None"
    if not isinstance(out, Node):
        remove_nodes(new_nodes(marker, root))
        raise RewriteError(f"rule {rule.name} returned {type(out).__name__}, not a graph value",
                           rule.span, pattern=rule.name)
    return out, None


def lint_new(rule: Rule, new: list[Node], out: Node, root: Node,
              owner: torch.nn.Module | None) -> bool:
    """``graph.lint()``'s checks on what a rewrite adds: each new node belongs to the graph and
    takes only live nodes of the graph defined before it, and its attribute and module targets
    exist. Nothing else can break them: the root's users follow the replacement (it is
    inserted in front of the root), CSE keeps the first of equal nodes, and erasing checks
    users. Raises RewriteError naming the rule; returns False where this torch's nodes have
    no order to check against (the pass then lints the whole graph)."""
    graph = root.graph
    # (user, input) pairs: every input of a new node, and the replacement as the root's stand-in.
    for user, a in [(n, a) for n in new for a in n._input_nodes] + [(root, out)]:
        what = f"%{user.name}" if user is not root else f"the replacement of %{root.name}"
        if a.graph is not graph or getattr(a, "_erased", False):
            raise RewriteError(f"rule {rule.name} built {what} on %{a.name}, which is not a live "
                               "node of this graph (a proxy kept from another rewrite?)",
                               rule.span, pattern=rule.name)
        try:
            before = a < user
        except TypeError:  # nodes without an order (older torch)
            return False
        if not before:
            raise RewriteError(f"rule {rule.name} built {what} on %{a.name}, which comes after "
                               "it in the graph", rule.span, pattern=rule.name)
    for n in new:
        if n.op in ("get_attr", "call_module") and owner is not None:
            if fetch_attr(owner, str(n.target)) is None:
                raise RewriteError(f"rule {rule.name} built %{n.name} on {n.op} {n.target!r}, "
                                   "which the module does not have", rule.span, pattern=rule.name)
    return True


def _show_type(v: Any) -> str:
    shape = tuple(size_value(s) for s in v.shape) if hasattr(v, "shape") else None
    return f"{getattr(v, 'dtype', '?')}{list(shape) if shape is not None else ''}"


def type_check(new: list[Node], out: Node, root: Node) -> str | None:
    """Give new nodes example values and compare the replacement's type with the root's."""
    owner = root.graph.owning_module
    key = "val" if "val" in root.meta or "example_value" not in root.meta else "example_value"
    for n in new:
        if meta_value(n) is None:
            try:
                val = infer_value(n, owner)
            except Exception as e:
                return f"the replacement fails on the example values: {type(e).__name__}: {e}"
            if val is not None:
                n.meta[key] = val
    want, got = meta_value(root), meta_value(out)
    if want is not None and not hasattr(want, "shape"):
        return "the root's value is not a tensor, so the replacement cannot be checked"
    if want is None:
        return "the graph has no shape information to check the replacement against " \
               "(pass example_inputs to RewritePass.apply)"
    if got is None or not hasattr(got, "shape"):
        return "could not compute the replacement's shape (it is not a tensor)"
    ws, gs = tuple(want.shape), tuple(got.shape)
    if want.dtype == got.dtype and ws == gs and all(type(d) is int for d in ws):
        return None  # static shapes (the common case): no sympy
    from ..lang.guards import eq3

    ws = tuple(size_value(s) for s in ws)
    gs = tuple(size_value(s) for s in gs)
    if eq3(ws, gs) is not True or want.dtype != got.dtype:
        return f"the replacement has type {_show_type(got)} but the root has {_show_type(want)}"
    return None


def commit(out: Node, root: Node, match: Match, view: GraphView, erased: set[Node]) -> None:
    """Rewire the root's users to the replacement and remove the dead region."""
    for k in ("stack_trace", "nn_module_stack", "source_fn_stack"):
        if k in root.meta and k not in out.meta:
            out.meta[k] = root.meta[k]
    root.replace_all_uses_with(out)
    region = region_nodes(match)
    changed = True
    while changed:
        changed = False
        for n in region:
            if n not in erased and not n.users:
                n.graph.erase_node(n)
                view.forget(n)
                erased.add(n)
                changed = True
