"""Rules and the rewrite driver (ARCHITECTURE.md, "Rewriting semantics").

A :class:`Rule` pairs a pattern with a Python body. At rewrite time the body runs on fx
proxies for the pattern's bound variables (literal bindings as plain values, unbound ones as
None) and returns the replacement value, or None / :class:`Decline` to decline.

:meth:`RewritePass.apply` is a pipeline of small steps, each a function of its own:

1. :class:`~pypm.fx.CSE` merges common subexpressions, so that term equality is node identity
   (incrementally on later sweeps: only new and rewired nodes are looked at again);
2. a root-operator index picks, for each node (outputs to inputs), the rules whose pattern can
   have that node's operator at its root, by priority; a skeleton (:func:`~pypm.fx.skeleton`,
   a necessary condition) rejects most other nodes without running the matcher;
3. the matcher (the pattern compiled by :mod:`pypm.fastmatch`, equivalent to the interpreter)
   calls back with each match (immutable :class:`~pypm.match.Match`) in order; for each,
   :func:`unsafe_reason` checks the region (no intermediate escapes, nothing impure);
4. :func:`_run_body` traces the body's replacement in front of the root (on
   :class:`BodyProxy` proxies); :func:`_lint_new` checks what ``graph.lint()`` would on the
   nodes it added; :func:`_type_check` requires the root's shape and dtype;
5. :func:`_commit` rewires the root's users and removes the dead region;
6. sweeps repeat to a fixpoint (a cap names the rules that keep rewriting); candidate roots
   that matched nothing are explained (:mod:`pypm.explain`); with ``lint="full"``, the whole
   graph is linted by torch as well.

Every rewrite and every declined or unsafe match lands in the :class:`RewriteReport`.
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.fx

from .errors import PypmError, RewriteError, Source, Span
from .fastmatch import Compiler, Matcher
from .fx import (
    CSE,
    FxTerm,
    GraphView,
    ParamTerm,
    Skeleton,
    TargetNames,
    call_of,
    fetch_attr,
    fits,
    has_types,
    infer_value,
    is_impure,
    meta_value,
    node_source,
    propagate_types,
    resolve,
    size_value,
    skeleton,
)
from .index import root_ops
from .match import Interpreter, Match
from .syntax import Call, Definition, Program
from .terms import TermView

Node = torch.fx.Node

MAX_MATCHES_PER_ROOT = 64  # alternatives can multiply; the first accepted match wins anyway
MAX_MISSES_SHOWN = 10  # a report prints this many candidate roots without a match


class Decline(Exception):
    """Raised by a rule body to decline a match with a reason (returning None also declines)."""


# ---------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True, eq=False)
class Rule:
    """A pattern and the body that builds its replacement; identity, priority and location."""

    pattern: Any
    fn: Callable[..., Any]
    name: str
    priority: int
    program: Program
    definition: Definition
    span: Span | None
    params: tuple[str, ...]  # the pattern parameters the body receives

    @property
    def call(self) -> Call:
        return call_of(self.definition)

    @functools.cached_property
    def matcher(self) -> Matcher:
        """The rule's pattern compiled to closures (:mod:`pypm.fastmatch`)."""
        return Compiler(self.program).compile(self.call)

    @functools.cached_property
    def root_ops(self) -> frozenset[str] | None:
        """The operators a match's root can have (None: any), for the driver's index."""
        return root_ops(self.program, self.call)

    @functools.cached_property
    def skeleton(self) -> Skeleton:
        """A necessary condition for a match, checked before the interpreter runs."""
        return skeleton(self.program, self.call)

    def __repr__(self) -> str:
        return f"<rule {self.name} ({self.definition.name}, priority {self.priority}) at {self.span}>"


def _fn_span(fn: Callable[..., Any]) -> Span | None:
    try:
        file = inspect.getsourcefile(fn) or "<unknown>"
        line = fn.__code__.co_firstlineno
        text = Path(file).read_text() if Path(file).is_file() else ""
    except (TypeError, OSError, AttributeError):
        return None
    lines = text.splitlines()
    while line <= len(lines) and not lines[line - 1].lstrip().startswith(("def ", "async def ")):
        line += 1  # past the decorators, to the `def` line
    if line > len(lines):
        line = fn.__code__.co_firstlineno
    src = lines[line - 1] if line <= len(lines) else ""
    col = len(src) - len(src.lstrip()) + 1
    return Span(Source(file, text), line, col, line, len(src.rstrip()) + 1)


def rule(pattern: Any, *, name: str | None = None, priority: int = 0) -> Callable[[Callable[..., Any]], Rule]:
    """Make a rule from a pattern and a body: ``@rule(Attention, name="...", priority=10)``.

    The body's parameters must be parameters of the pattern (it may take fewer). Higher
    priority rules are tried first at a node. Ill-formed rules are rejected here.
    """
    def make(fn: Callable[..., Any]) -> Rule:
        span = _fn_span(fn)
        rule_name = name or fn.__name__
        try:
            program, definition = resolve(pattern)
        except TypeError:
            raise RewriteError(f"rule {rule_name}: {pattern!r} is not a pattern", span,
                               pattern=rule_name) from None
        sig = inspect.signature(fn)
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
        wanted = [p.name for p in sig.parameters.values()
                  if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
        unknown = [w for w in wanted if w not in definition.params]
        if unknown:
            raise RewriteError(
                f"rule {rule_name} takes {', '.join(unknown)}, which pattern {definition.name} does "
                f"not bind", span, pattern=rule_name,
                hint=f"the pattern's parameters are: {', '.join(definition.params)}")
        params = definition.params if takes_all else tuple(wanted)
        return Rule(pattern, fn, rule_name, priority, program, definition, span, params)

    return make


# ---------------------------------------------------------------------------------------------
# Reports


def _show_binding(v: Any) -> str:
    if isinstance(v, FxTerm):
        return f"%{v.node.name}"
    if isinstance(v, ParamTerm):
        return v.qualname
    if isinstance(v, TermView):
        return f"<{v.op}>"
    return repr(v)


@dataclass(frozen=True)
class Rewrite:
    """One applied rewrite: which rule, at which root, with which bindings, giving which node."""

    rule: str
    root: str
    root_source: str
    bindings: dict[str, str]
    replacement: str

    def __str__(self) -> str:
        b = ", ".join(f"{k}={v}" for k, v in self.bindings.items())
        return f"{self.rule}: {self.root_source}  ->  %{self.replacement}  [{b}]"


@dataclass(frozen=True)
class Skip:
    """A match that was not rewritten: ``kind`` is "declined" (the body said no) or "unsafe"
    (the region check or the type check failed), with the reason in words."""

    rule: str
    root: str
    kind: str
    reason: str
    bindings: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.rule} at %{self.root}: {self.kind}: {self.reason}"


@dataclass
class RewriteReport:
    """What a :class:`RewritePass` did to one graph."""

    rewrites: list[Rewrite] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    misses: list[Skip] = field(default_factory=list)  # candidate roots the pattern did not match
    sweeps: int = 0
    nodes_before: int = 0
    nodes_after: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Rewrites per rule name."""
        out: dict[str, int] = {}
        for r in self.rewrites:
            out[r.rule] = out.get(r.rule, 0) + 1
        return out

    def reasons(self) -> list[str]:
        """The reasons of every skipped match and every near miss, in order."""
        return [s.reason for s in self.skipped] + [s.reason for s in self.misses]

    def __bool__(self) -> bool:
        return bool(self.rewrites)

    def __str__(self) -> str:
        lines = [f"{len(self.rewrites)} rewrite(s) in {self.sweeps} sweep(s), "
                 f"{self.nodes_before} -> {self.nodes_after} nodes, {self.seconds * 1e3:.1f} ms"]
        lines += [f"  rewrote  {r}" for r in self.rewrites]
        lines += [f"  skipped  {s}" for s in self.skipped]
        shown = self.misses[:MAX_MISSES_SHOWN]
        lines += [f"  no match {s}" for s in shown]
        if len(self.misses) > len(shown):
            lines.append(f"  ... and {len(self.misses) - len(shown)} more candidate roots without a match")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Steps


def region_nodes(match: Match) -> list[Node]:
    """The graph nodes a match consumed (root first, each once)."""
    seen: dict[Node, None] = {}
    for t in match.region:
        if isinstance(t, FxTerm):
            seen.setdefault(t.node, None)
    return list(seen)


def unsafe_reason(match: Match, root: Node, owner: torch.nn.Module | None = None,
                  rep: dict[Node, Node] | None = None) -> str | None:
    """Why replacing the match's region would change the program, or None if it is safe: an
    intermediate used outside the region (it must survive, and would be computed twice), or an
    impure node (random, in-place) inside it. ``rep`` maps nodes to their CSE representative
    when the graph was merged only virtually (``pypm.explain``), so that the users of every
    copy count."""
    nodes = region_nodes(match)
    inside = set(nodes)
    for n in nodes:
        if is_impure(n, None, owner):
            return f"%{n.name} ({node_source(n)}) is impure (random, in-place or I/O)"
    members: dict[Node, list[Node]] = {}
    for m, r in (rep or {}).items():
        members.setdefault(r, []).append(m)
    for n in nodes:
        if n is root:
            continue
        for copy in (n, *members.get(n, ())):
            for u in copy.users:
                if (rep or {}).get(u, u) not in inside:
                    return (f"intermediate %{n.name} ({node_source(n)}) is also used by %{u.name} "
                            f"({node_source(u)}) outside the match")
    return None


def _new_nodes(marker: Node, root: Node) -> list[Node]:
    """Nodes inserted between ``marker`` and ``root`` (what a rule body created), in order."""
    out = []
    n = marker.next
    while n is not root:
        out.append(n)
        n = n.next
    return out


def _remove(nodes: Sequence[Node]) -> None:
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


def _run_body(rule: Rule, match: Match, root: Node) -> tuple[Node | None, str | None]:
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
            _remove(_new_nodes(marker, root))
            return None, str(d) or "the rule declined"
        except PypmError:
            _remove(_new_nodes(marker, root))
            raise
        except Exception as e:
            _remove(_new_nodes(marker, root))
            raise RewriteError(f"rule {rule.name} failed at %{root.name}: {type(e).__name__}: {e}",
                               rule.span, pattern=rule.name) from e
    if isinstance(out, torch.fx.Proxy):
        out = out.node
    if out is None:
        _remove(_new_nodes(marker, root))
        return None, "the rule returned None"
    if not isinstance(out, Node):
        _remove(_new_nodes(marker, root))
        raise RewriteError(f"rule {rule.name} returned {type(out).__name__}, not a graph value",
                           rule.span, pattern=rule.name)
    return out, None


def _lint_new(rule: Rule, new: list[Node], out: Node, root: Node,
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


def _type_check(new: list[Node], out: Node, root: Node) -> str | None:
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
    from .guards import eq3

    ws = tuple(size_value(s) for s in ws)
    gs = tuple(size_value(s) for s in gs)
    if eq3(ws, gs) is not True or want.dtype != got.dtype:
        return f"the replacement has type {_show_type(got)} but the root has {_show_type(want)}"
    return None


def _commit(out: Node, root: Node, match: Match, view: GraphView, erased: set[Node]) -> None:
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


# ---------------------------------------------------------------------------------------------
# The driver


class RewritePass:
    """Apply rules to a graph until none applies (ARCHITECTURE.md, "Rewriting semantics")."""

    def __init__(self, rules: Iterable[Rule], *, max_sweeps: int = 10, misses: bool = True,
                 lint: str | None = None):
        self.misses = misses  # explain candidate roots that did not match (the deepest failing step)
        # "new": graph.lint()'s checks on each rewrite's new nodes (_lint_new), which is all a
        # rewrite can break; "full": graph.lint() of the whole graph as well, after the pass.
        # The default comes from PYPM_LINT (the test suite sets "full"), else "new".
        self.lint = lint or os.environ.get("PYPM_LINT") or "new"
        if self.lint not in ("new", "full"):
            raise RewriteError(f"RewritePass(lint=...) takes 'new' or 'full', not {self.lint!r}")
        self.rules = sorted(rules, key=lambda r: -r.priority)  # stable: declaration order on ties
        for r in self.rules:
            if not isinstance(r, Rule):
                raise RewriteError(f"RewritePass takes rules made with @rule, not {type(r).__name__}")
        self.max_sweeps = max_sweeps
        self._index: dict[str, list[Rule]] = {}
        self._anywhere: list[Rule] = []
        for r in self.rules:
            ops = r.root_ops
            if ops is None:
                self._anywhere.append(r)
            else:
                for op in ops:
                    self._index.setdefault(op, []).append(r)
        if self._anywhere:
            for op, rs in self._index.items():
                self._index[op] = sorted(rs + self._anywhere, key=lambda r: -r.priority)

    def rules_for(self, op: str) -> list[Rule]:
        """The rules whose pattern may have ``op`` at its root, highest priority first."""
        return self._index.get(op, self._anywhere)

    def apply(self, gm: torch.fx.GraphModule | torch.fx.Graph,
              example_inputs: Sequence[Any] | None = None) -> RewriteReport:
        """Rewrite ``gm`` in place and return the report. Shapes and dtypes come from node
        metadata; when the graph has none, ``example_inputs`` are propagated as fake tensors.
        A bare ``Graph`` (an inductor pass) is rewritten in place and not recompiled: its owner
        (inductor) generates code from it afterwards."""
        # The cyclic garbage collector would walk every node of a big graph many times over
        # while a pass allocates; nothing a pass creates needs it until the pass ends.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._apply(gm, example_inputs)
        finally:
            if collecting:
                gc.enable()

    def _apply(self, gm: torch.fx.GraphModule | torch.fx.Graph,
               example_inputs: Sequence[Any] | None) -> RewriteReport:
        start = time.perf_counter()
        bare = isinstance(gm, torch.fx.Graph)
        if bare:
            graph = gm
            gm = graph.owning_module or torch.fx.GraphModule(torch.nn.Module(), graph)
        graph = gm.graph
        report = RewriteReport(nodes_before=len(graph.nodes))
        if example_inputs is not None and not has_types(graph):
            propagate_types(gm, list(example_inputs))
        names = TargetNames(gm)
        state = _SweepState(names, CSE(graph, gm, names))
        for sweep in range(1, self.max_sweeps + 1):
            report.sweeps = sweep
            applied = self._sweep(gm, report, state)
            if not applied:
                break
        else:
            names = sorted(set(applied))
            first = next(r for r in self.rules if r.name == names[0])
            raise RewriteError(
                f"no fixpoint after {self.max_sweeps} sweeps: rule(s) {', '.join(names)} keep "
                f"rewriting (their replacements match again)", first.span, pattern=first.name)
        if self.misses:
            self._explain_misses(gm, report, state)
        if (report.rewrites or state.merged) and (self.lint == "full" or state.unordered):
            graph.lint()  # an untouched graph is as well-formed as it came
        if report.rewrites and not bare:
            gm.recompile()
        report.nodes_after = len(graph.nodes)
        report.seconds = time.perf_counter() - start
        return report

    def _sweep(self, gm: torch.fx.GraphModule, report: RewriteReport, state: _SweepState) -> list[str]:
        """One sweep from outputs to inputs; returns the names of the rules applied."""
        state.merged += state.cse.merge(state.dirty, state.erased)  # everything on the first sweep
        state.dirty = set()
        view = GraphView(gm, cse=False, names=state.names)
        applied: list[str] = []
        erased, names, index, anywhere = state.erased, state.names, self._index, self._anywhere
        for node in reversed(self._candidates(gm.graph, state)):
            if node in erased:
                continue
            for r in index.get(names(node), anywhere):
                if self._try(r, view, node, report, state):
                    applied.append(r.name)
                    break
        return applied

    def _candidates(self, graph: torch.fx.Graph, state: _SweepState) -> list[Node]:
        """The nodes a sweep visits, in graph order: those whose operator some rule's pattern may
        have at its root (every node when a rule may match at any operator). The first sweep
        scans the graph; later ones only re-check the survivors and the nodes rewrites inserted,
        since a node's operator never changes."""
        names, index = state.names, self._index

        def root(n: Node) -> bool:
            return n.op not in ("output", "placeholder") and (bool(self._anywhere) or names(n) in index)

        if state.candidates is None or self._anywhere:
            cands = [n for n in graph.nodes if root(n)]
        else:
            erased = state.erased
            cands = [n for n in state.candidates if n not in erased]
            cands += [n for n in state.inserted if n not in erased and root(n)]
            try:
                cands.sort()  # graph order (fx nodes compare by position)
            except TypeError:  # an fx without ordered nodes: scan the graph
                cands = [n for n in graph.nodes if root(n)]
        state.candidates, state.inserted = cands, []
        return cands

    def _explain_misses(self, gm: torch.fx.GraphModule, report: RewriteReport, state: _SweepState) -> None:
        """For candidate roots that no rule matched and that survived the rewrites, the deepest
        failing step (computed once, at the end, on the final graph)."""
        from .explain import DeepestFailure

        view = GraphView(gm, cse=False, names=state.names)
        for r, node in state.misses:
            if node in state.erased or node.graph is not gm.graph:
                continue
            term = view.term(node)
            interp = DeepestFailure(r.program, term)
            if next(iter(interp.run(r.call, term, {})), None) is not None or interp.best is None:
                continue
            best = interp.best
            report.misses.append(Skip(r.name, node.name, "no match",
                                      f"{best.reason}: {best.message} (pattern {best.where})"))

    def _try(self, r: Rule, view: GraphView, node: Node, report: RewriteReport, state: _SweepState) -> bool:
        """Try one rule at one node: the first match that is safe, accepted and well-typed is
        committed. Every other match is recorded with its reason."""
        term = view.term(node)
        if not fits(term, r.skeleton):
            self._missed(r, node, state)
            return False
        tried = 0

        def accept(sigma: dict[str, Any], region: tuple[Any, ...]) -> bool:
            nonlocal tried
            tried += 1
            if tried > MAX_MATCHES_PER_ROOT:
                return True  # stop looking (nothing was accepted)
            return self._accept(r, Match(sigma, region, term, r.definition.name), node, view, report,
                                state)

        try:
            r.matcher(term, {}, accept)
        except RecursionError:  # a very deep term: the generator interpreter has no such limit
            tried = 0
            for sigma, region in Interpreter(r.program).run(r.call, term, {}):
                if accept(sigma, region):
                    break
        if tried == 0:
            self._missed(r, node, state)
        return node in state.erased

    def _missed(self, r: Rule, node: Node, state: _SweepState) -> None:
        if self.misses and (r.name, node) not in state.missed:
            state.missed.add((r.name, node))
            state.misses.append((r, node))

    def _accept(self, r: Rule, m: Match, node: Node, view: GraphView, report: RewriteReport,
                state: _SweepState) -> bool:
        """Check and apply one match; True when the graph was rewritten."""
        bindings = {k: _show_binding(v) for k, v in m.bindings.items() if k in r.definition.params}
        reason = unsafe_reason(m, node, view.owner)
        kind = "unsafe"
        out = None
        if reason is None:
            marker = node.prev
            out, reason = _run_body(r, m, node)
            kind = "declined"
            if out is not None:
                new = _new_nodes(marker, node)
                try:
                    if not _lint_new(r, new, out, node, view.owner):
                        state.unordered = True
                except RewriteError:
                    _remove(new)
                    raise
                reason = _type_check(new, out, node)
                kind = "unsafe"
                if reason is not None:
                    _remove(new)
        if reason is None and out is not None:
            report.rewrites.append(Rewrite(r.name, node.name, node_source(node), bindings, out.name))
            state.dirty.update(new)
            state.dirty.update(node.users)
            state.inserted.extend(new)
            _commit(out, node, m, view, state.erased)
            return True
        key = (r.name, node.name, reason or "")
        if key not in state.seen:
            state.seen.add(key)
            report.skipped.append(Skip(r.name, node.name, kind, reason or "", bindings))
        return False


@dataclass
class _SweepState:
    """What sweeps share: target names, erased nodes, reasons already reported, misses."""

    names: TargetNames
    cse: CSE
    dirty: set[Node] | None = None  # nodes CSE must look at next sweep (None: all of them)
    candidates: list[Node] | None = None  # the last sweep's candidate roots, in graph order
    inserted: list[Node] = field(default_factory=list)  # nodes rewrites added since
    merged: int = 0  # nodes CSE removed
    unordered: bool = False  # nodes have no order here: lint the whole graph at the end
    erased: set[Node] = field(default_factory=set)
    seen: set[tuple[str, str, str]] = field(default_factory=set)
    missed: set[tuple[str, Node]] = field(default_factory=set)
    misses: list[tuple[Rule, Node]] = field(default_factory=list)


__all__ = ["Decline", "Rewrite", "RewritePass", "RewriteReport", "Rule", "Skip", "region_nodes", "rule",
           "unsafe_reason"]
