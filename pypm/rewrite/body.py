"""Running a rule body: the replacement is traced in front of the root on proxies, inside a
:class:`Scratch` that undoes everything the body did unless the replacement is kept. The
checks of what the body built live in :mod:`pypm.rewrite.checks`.

A body may decline (None, :class:`~pypm.rewrite.rule.Decline`), fail (a torch error on the
proxies: the match is skipped with the error as the reason, so that one rule's gap never stops
a compilation), or break its contract: change nodes that were there before it ran, which is a
:class:`~pypm.errors.RewriteError` naming the rule (the graph is put back first).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
import torch.fx

from ..errors import PypmError, RewriteError
from ..graph.view import FxTerm, ParamTerm
from ..lang.match import Match
from .outcome import Skipped
from .report import Hazard, SkipKind
from .rule import Decline, Rule

Node = torch.fx.Node

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


class Scratch:
    """The graph around one body run: records the nodes the body creates and the arguments of
    the existing nodes it could reach (the root, the region, the bound values, their users, the
    graph's output), so that :meth:`edits` can tell whether it changed them and leaving the
    ``with`` block without :meth:`keep` puts the graph back exactly as it was."""

    def __init__(self, root: Node, reachable: Iterable[Node]):
        self.root = root
        self.graph = root.graph
        self.marker = root.prev
        self.length = len(self.graph.nodes)
        output = next(iter(reversed(self.graph.nodes)))
        core = dict.fromkeys([root, *reachable, output])
        self.counts = [(n, len(n.users)) for n in core]
        watched = dict(core)
        for n in core:
            watched.update(n.users)
        self.saved = [(n, n.args, n.kwargs) for n in watched]
        self.created: list[Node] = []
        self.module = self.graph.owning_module
        self.hooked = isinstance(getattr(self.module, "_create_node_hooks", None), list)
        self.kept = False

    def __enter__(self) -> Scratch:
        if self.hooked:
            self.module._create_node_hooks.append(self.created.append)  # type: ignore[union-attr]
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.hooked:
            self.module._create_node_hooks.remove(self.created.append)  # type: ignore[union-attr]
        if not self.kept:
            self.undo()

    def keep(self) -> None:
        """Keep what the body built (the replacement passed every check)."""
        self.kept = True

    def new(self) -> list[Node]:
        """The live nodes the body created, in graph order."""
        if self.hooked:
            return [n for n in self.created if not getattr(n, "_erased", False)]
        out, n = [], self.marker.next
        while n is not self.root and n.op != "root":
            out.append(n)
            n = n.next
        return out

    def edits(self) -> str | None:
        """How the body changed a node that existed before it ran, in words, or None."""
        new = self.new()
        for n, args, kwargs in self.saved:
            if n.args is not args or n.kwargs is not kwargs or n._erased:
                what = "the graph's output" if n.op == "output" else f"%{n.name}"
                if n._erased:
                    return f"erased {what}"
                return f"changed the arguments of {what} (replace_all_uses_with, or an edit of node.args)"
        fresh = set(new)
        for n, count in self.counts:
            if len(n.users) - sum(1 for u in n.users if u in fresh) != count:
                return f"changed which nodes use %{n.name}"
        if len(self.graph.nodes) != self.length + len(new):
            return "added or removed nodes away from the root"
        return None

    def undo(self) -> None:
        """Put back the arguments of the nodes the body changed and erase what it created."""
        for n, args, kwargs in self.saved:
            if not getattr(n, "_erased", False) and (n.args is not args or n.kwargs is not kwargs):
                n.args, n.kwargs = args, kwargs
        for n in reversed(self.new()):
            if not n.users:
                self.graph.erase_node(n)


@dataclass(frozen=True)
class Built:
    """What a body built: the replacement node (new, or an existing value it returned)."""

    out: Node


_SCALARS = (int, float, bool, complex)


def run_body(rule: Rule, match: Match, root: Node, scratch: Scratch) -> Built | Skipped:
    """Run the rule body in front of the root, inside ``scratch``: the replacement, or why the
    match is skipped. A body that edits existing nodes is a RewriteError naming the rule."""
    graph = root.graph
    tracer = _BodyTracer(graph)
    with graph.inserting_before(root):
        kwargs = {p: _argument(match.bindings.get(p), tracer, graph) for p in rule.params}
        try:
            out = rule.fn(**kwargs)
        except Decline as d:
            out = Skipped(SkipKind.DECLINED, str(d) or "the rule declined")
        except PypmError:
            raise
        except Exception as e:  # a torch error on the proxies, a value the body did not expect
            out = Skipped(SkipKind.FAILED, f"the rule raised {type(e).__name__}: {e}{_where(rule, e)}")
    edit = scratch.edits()
    if edit is not None:
        raise RewriteError(f"rule {rule.name} {edit} at %{root.name}: a rule body may only build new "
                           "nodes (return the replacement; the pass rewires the users)",
                           rule.span, pattern=rule.name)
    if isinstance(out, Skipped):
        return out
    if isinstance(out, torch.fx.Proxy):
        out = out.node
    if out is None:
        return Skipped(SkipKind.DECLINED, "the rule returned None")
    if isinstance(out, _SCALARS):
        return Skipped.unsafe(Hazard.TYPE, f"the rule returned the Python {type(out).__name__} "
                              f"{out!r}, not a tensor")
    if not isinstance(out, Node):
        raise RewriteError(f"rule {rule.name} returned {type(out).__name__}, not a graph value",
                           rule.span, pattern=rule.name)
    return Built(out)


def _where(rule: Rule, e: BaseException) -> str:
    """`` (at file:line)``: the innermost frame of the error in the rule's own file."""
    file = rule.span.file if rule.span is not None else None
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == file:
            line = frame.lineno
    return f" (at {file}:{line})" if line is not None else ""


__all__ = ["BodyProxy", "Built", "Scratch", "run_body"]
