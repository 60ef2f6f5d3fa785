"""Purity and common-subexpression elimination over fx graphs.

Equality of graph terms is node identity after CSE (LANGUAGE.md §1): two nodes are one value
when they have the same operator and the same arguments, both compute a value and nothing else
(:mod:`.effects`: an allow-list of functional operators at torch level, schemas and tags at
ATen level), neither may alias a tensor that some node writes, both run under the same grad
mode and autocast state, and not both reach the graph's outputs. Everything else (random,
in-place, unknown calls, fresh uninitialised tensors) is equal only to itself.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.fx

from ..lang import schema
from .effects import (
    INPUT,
    MERGEABLE,
    PLAIN_MODULES,
    VIEW,
    Effect,
    TargetEffect,
    target_effect,
)
from .graph_effects import GraphEffects
from .names import DTYPE_METHODS, MODULES, callable_key, is_torch_callable, submodule, target_name

Node = torch.fx.Node


_TARGET_EFFECTS: dict[tuple[str, Any], TargetEffect] = {}


def is_impure(node: Node, op: str | None = None, owner: torch.nn.Module | None = None,
              module: Callable[[str], Any] | None = None) -> bool:
    """True for nodes that a rewrite must not consume and CSE must not merge: graph inputs and
    outputs, random ops (dropout only while training), in-place ops and calls with ``out=`` or
    ``inplace=True``, changes of grad mode or autocast, and anything off the allow-list of
    functional operators (unknown functions and modules). Attributes (``get_attr``) are pure.
    ``module`` looks up submodules by name (a cache), ``op`` is the node's canonical name.
    Whether a pure node's inputs are written elsewhere in the graph is a property of the graph,
    not of the node: see :class:`~pypm.graph.effects.GraphEffects`."""
    kind = node.op
    if kind == "get_attr":
        return False
    if kind in ("placeholder", "output"):
        return True
    if kind == "call_module":
        lookup = module if module is not None else (lambda q: submodule(owner, q))
        effect, check, positional = target_effect(node, "", lookup)
    else:
        key = (kind, node.target)
        try:
            effect, check, positional = _TARGET_EFFECTS[key]
        except KeyError:
            effect, check, positional = _TARGET_EFFECTS[key] = target_effect(
                node, op or target_name(node, owner), _no_module)
        except TypeError:
            effect, check, positional = target_effect(node, op or target_name(node, owner), _no_module)
    if check is not None and (positional or node.kwargs):
        effect = check(node, effect)
    return effect.kind not in MERGEABLE


def _no_module(qualname: str) -> Any:
    """No submodule (``call_function`` and ``call_method`` targets need none)."""
    return None


def _all_submodules(owner: torch.nn.Module) -> dict[str, Any]:
    """Every submodule by qualified name (duplicates under each name), like
    ``named_modules(remove_duplicate=False)`` without its recursive generators."""
    out: dict[str, Any] = {"": owner}
    stack: list[tuple[str, torch.nn.Module]] = [("", owner)]
    while stack:
        prefix, mod = stack.pop()
        for name, sub in mod._modules.items():
            if sub is None:
                continue
            qual = f"{prefix}.{name}" if prefix else name
            out[qual] = sub
            stack.append((qual, sub))
    return out


class TargetNames:
    """Canonical names of nodes, cached by (kind, target), with submodules looked up once."""

    def __init__(self, owner: torch.nn.Module | None):
        self.owner = owner
        self._names: dict[Any, str] = {}
        self._modules: dict[str, Any] = {}
        self._cse: dict[Any, Any] = {}
        self._effects: dict[Any, TargetEffect] = {}
        self._all_modules = False

    def module(self, qualname: str) -> Any:
        """The submodule called by a ``call_module`` node (None when absent)."""
        try:
            return self._modules[qualname]
        except KeyError:
            pass
        if not self._all_modules and self.owner is not None:  # one walk instead of one per call
            self._all_modules = True
            self._modules.update(_all_submodules(self.owner))
            if qualname in self._modules:
                return self._modules[qualname]
        mod = self._modules[qualname] = submodule(self.owner, qualname)
        return mod

    def target_effect(self, node: Node) -> TargetEffect:
        """The effect of a node's target and the per-call check that refines it (see
        :func:`pypm.graph.effects.target_effect`), cached by target (modules by their name: a
        module's flags are fixed during a pass)."""
        key = (node.op, node.target)
        try:
            return self._effects[key]
        except KeyError:
            pass
        except TypeError:
            return self._target_effect(node)
        out = self._effects[key] = self._target_effect(node)
        return out

    def _target_effect(self, node: Node) -> TargetEffect:
        name = self(node) if node.op in ("call_function", "call_method") else ""
        return target_effect(node, name, self.module)

    def effect(self, node: Node) -> Effect:
        """A node's effect, its arguments taken into account."""
        effect, check, positional = self.target_effect(node)
        if check is not None and (positional or node.kwargs):
            return check(node, effect)
        return effect

    def kinds(self, graph: torch.fx.Graph) -> Iterable[tuple[Node, int]]:
        """The nodes of a graph that are not values (kind above ``VIEW``: inputs, writers,
        changes of state, opaque and unknown calls, the output), with their kinds, in graph
        order. The common case, a cached pure target called without keywords, costs one
        look-up."""
        cache, target_effect, module = self._effects, self.target_effect, self.module
        for n in graph.nodes:
            if n.op == "call_module":  # modules are seldom called twice: look at the type first
                mod = module(str(n.target))
                if type(mod) in PLAIN_MODULES and not vars(mod).get("_is_impure"):
                    continue
            try:
                entry = cache.get((n.op, n.target))
            except TypeError:
                entry = None
            if entry is None:
                entry = target_effect(n)
            effect, check, positional = entry
            if check is not None and (positional or n.kwargs):
                effect = check(n, effect)
            if effect.kind > VIEW:
                yield n, effect.kind

    def cse_info(self, node: Node) -> tuple[Any, TargetEffect] | None:
        """None for nodes CSE never merges whatever their arguments (inputs, outputs, impure
        targets); else the part of the key that depends on the target, the target's effect and
        the check that refines it per call. Cached by target."""
        key = (node.op, node.target)
        try:
            return self._cse[key]
        except KeyError:
            pass
        except TypeError:
            return self._cse_info(node)
        out = self._cse[key] = self._cse_info(node)
        return out

    def _cse_info(self, node: Node) -> tuple[Any, TargetEffect] | None:
        if node.op in ("placeholder", "output"):
            return None
        entry = self.target_effect(node)
        if node.op != "get_attr" and entry[0].kind not in MERGEABLE and entry[1] is None:
            return None
        return (_cse_target(node, self), entry)

    def __call__(self, node: Node) -> str:
        key = (node.op, node.target)
        try:
            return self._names[key]
        except KeyError:
            pass
        except TypeError:
            return target_name(node, self.owner)
        if node.op == "call_module":
            mod = self.module(str(node.target))
            conv = MODULES.get(type(mod)) if mod is not None else None
            name = conv[0] if conv else (type(mod).__name__ if mod is not None else str(node.target))
        else:
            name = target_name(node, self.owner)
        self._names[key] = name
        return name


_ATOMS = frozenset({Node, int, str, type(None)})  # key parts that stand for themselves


def _freeze(a: Any) -> Any:
    """A hashable key for an argument. Nodes, ints, strings and None stand for themselves;
    floats and bools are tagged so that ``x * 1``, ``x * 1.0`` and ``x * True`` stay apart."""
    t = type(a)
    if t is Node or t is int or t is str or a is None:
        return a
    if t is float:
        return ("nan",) if a != a else ("f", a)
    if t is bool:
        return ("b", a)
    if isinstance(a, tuple):
        return tuple(_freeze(x) for x in a)
    if t is list:
        return ("list", tuple(_freeze(x) for x in a))
    if t is dict:
        return ("dict", tuple((k, _freeze(v)) for k, v in a.items()))
    if t is slice:
        return ("slice", _freeze(a.start), _freeze(a.stop), _freeze(a.step))
    try:
        hash(a)
    except TypeError:
        return ("id", id(a))
    return (t.__name__, a)


def _rep_args(a: Any, rep: Mapping[Node, Node]) -> Any:
    return torch.fx.node.map_arg(a, lambda n: rep.get(n, n))


def _cse_target(n: Node, names: TargetNames) -> Any:
    """What must agree, besides the arguments, for two nodes to compute the same value: the
    OpOverload itself at ATen level; at torch level the canonical name and argument layout, so
    that ``torch.sigmoid(x)`` and ``x.sigmoid()`` merge."""
    if n.op == "call_function" and not isinstance(n.target, torch._ops.OpOverload) and (
            is_torch_callable(n.target)
            or getattr(n.target, "__module__", None) in ("_operator", "operator")):
        key = callable_key(n.target)
        return ("call", names(n), key if key in schema.SIGNATURES else "")
    if n.op == "call_method":
        if n.target in DTYPE_METHODS:  # the method name carries an argument (the dtype)
            return ("method", n.target)
        return ("call", schema.canonical_name(str(n.target)), "")
    if n.op == "call_function":
        return ("fn", id(n.target))
    return (n.op, _freeze(n.target))


class CSE:
    """Common-subexpression elimination over one graph, kept incremental across sweeps: the
    table of keys survives, and a later :meth:`merge` only looks at the nodes it is told
    changed (new nodes and users of rewired ones) and at the users of what it merges.

    Most nodes of a model graph are the only user of one of their inputs (a chain: each layer
    feeds the next), and such a node can have no equal: an equal node would take the same
    input. :meth:`merge` leaves those out of the table (``lone``, by that input) and puts one
    back the moment that input has another user that could equal it, so that most nodes are
    never keyed at all.

    Which nodes may be merged at all, and under which global state each runs, comes from
    :class:`~pypm.graph.effects.GraphEffects` (see the module docstring), analysed on the first
    merge and kept up to date by later ones."""

    def __init__(self, graph: torch.fx.Graph, owner: torch.nn.Module | None = None,
                 names: TargetNames | None = None):
        self.graph = graph
        self.owner = owner
        self.names = names or TargetNames(owner)
        self.seen: dict[Any, Node] = {}
        self.lone: dict[Node, Node] = {}  # input -> the node left out of `seen` as its only user
        self._effects: GraphEffects | None = None

    @property
    def effects(self) -> GraphEffects:
        """The graph's effects (analysed on first use)."""
        if self._effects is None:
            self._effects = GraphEffects(self.graph, self.names.effect, self.names.kinds)
        return self._effects

    def key(self, n: Node, rep: Mapping[Node, Node]) -> Any:
        """The CSE key of a node that may be merged (None for the others: impure nodes, nodes
        that may alias a written tensor). Equal keys mean equal values; the key includes the
        global-state region the node runs in."""
        names = self.names
        info = names.cse_info(n)
        if info is None:
            return None
        target, (effect, check, positional) = info
        if effect.kind == INPUT:  # an attribute: the same object wherever it is read
            return (target, ())
        if check is not None and (positional or n.kwargs) and check(n, effect).kind not in MERGEABLE:
            return None
        eff = self._effects or self.effects
        if eff.mutated and eff.blocked(n):
            return None
        args, kwargs = n.args, n.kwargs
        if rep:
            args, kwargs = _rep_args(args, rep), _rep_args(kwargs, rep)
        # Fast path: arguments that stand for themselves in a key (nodes, ints, strings, None)
        # are keyed as they are; anything else goes through _freeze.
        atoms = _ATOMS
        for a in args:
            if type(a) not in atoms:
                args = _freeze(args)
                break
        if not kwargs:
            key: Any = (target, args)
        else:
            for a in kwargs.values():
                if type(a) not in atoms:
                    key = (target, args, _freeze(kwargs))
                    break
            else:
                key = (target, args, tuple(kwargs.items()))
        if eff.regions is not None:
            region = eff.region(n)
            if region:
                return (key, region)
        return key

    def _apart(self, first: Node, n: Node) -> bool:
        """Whether two nodes with one key must stay apart: both reach the outputs (the caller
        would get one tensor twice)."""
        eff = self._effects
        return eff is not None and bool(eff.escaping) and eff.both_escape(first, n)

    def classes(self) -> dict[Node, Node]:
        """Representatives of every node of the graph, without changing it (see cse_classes)."""
        rep: dict[Node, Node] = {}
        self.seen = {}
        self._effects = None
        for n in self.graph.nodes:
            key = self.key(n, rep)
            if key is None:
                continue
            first = self.seen.setdefault(key, n)
            if first is not n and not self._apart(first, n):
                rep[n] = first
        return rep

    def merge(self, dirty: set[Node] | None = None, erased: set[Node] | None = None) -> int:
        """Merge duplicates in place (all nodes, or those in ``dirty`` and what their merges
        touch, in graph order); erased nodes are recorded in ``erased``. Returns how many were
        removed."""
        if dirty is None:
            self.seen, self.lone, self._effects = {}, {}, None
            return self._merge(list(self.graph.nodes), erased)
        graph = self.graph
        work = [n for n in dirty if n.graph is graph and not getattr(n, "_erased", False)]
        if self._effects is not None:
            self._effects.update(work)
            if self._effects.stale:  # a new change of global state: analyse the graph afresh
                self.seen, self.lone, self._effects = {}, {}, None
                return self._merge(list(graph.nodes), erased)
        try:
            heapq.heapify(work)  # graph order: fx nodes compare by position
        except TypeError:  # nodes without an order (older torch): start again, in graph order
            self.seen, self.lone, self._effects = {}, {}, None
            return self._merge(list(graph.nodes), erased)
        return self._merge(work, erased, heap=True)

    def _merge(self, nodes: list[Node], erased: set[Node] | None, heap: bool = False) -> int:
        """Merge nodes into the first equal node seen: each of ``nodes`` in graph order, or
        each node of a heap (in graph order too) that grows by the users of merged nodes. The
        node that stays is always the earlier one: a rewrite may insert a node equal to one
        further down the graph, which then merges into the new one.

        A node that is the only user of one of its inputs is left out (``lone``); any other
        node first puts back the nodes left out by its inputs, since it may equal one of them
        (an input that had one user has more now)."""
        removed = 0
        graph, seen, lone, key, live = self.graph, self.seen, self.lone, self.key, self._live
        eff = self.effects
        done: set[Node] = set()
        i = 0
        while True:
            if heap:
                if not nodes:
                    break
                n = heapq.heappop(nodes)
                if n in done:
                    continue
                done.add(n)
            else:
                if i == len(nodes):
                    break
                n = nodes[i]
                i += 1
            inputs = n._input_nodes
            only = None
            for a in inputs:
                if len(a.users) == 1:
                    only = a
                    break
            if only is not None:  # n is `only`'s one user: no other node can equal it
                lone[only] = n
                continue
            if lone:
                self._put_back(inputs, n, erased)
            k = key(n, {})
            if k is None:
                continue
            first = seen.get(k)
            if first is None or first is n or not live(first, erased) or (
                    eff.mutated and eff.blocked(first)):
                seen[k] = n
                continue
            if eff.escaping and eff.both_escape(first, n):
                continue
            if heap and n < first:  # the table's node comes later: it merges into n
                seen[k] = n
                first, n = n, first
            if heap:  # their keys change: look at them again
                for u in n.users:
                    if u not in done:
                        heapq.heappush(nodes, u)
            n.replace_all_uses_with(first)
            graph.erase_node(n)
            if n in eff.escaping:  # what reached the outputs through n now does through first
                eff.escaping.update(eff.aliases_of([first]))
            if erased is not None:
                erased.add(n)
            removed += 1
        return removed

    def _put_back(self, inputs: Iterable[Node], n: Node, erased: set[Node] | None) -> None:
        """Put the nodes left out by ``n``'s inputs back in the table: each input has another
        user now (n), which may equal the one left out."""
        for a in inputs:
            m = self.lone.pop(a, None)
            if m is None or m is n or not self._live(m, erased):
                continue
            k = self.key(m, {})
            if k is not None:
                other = self.seen.get(k)
                if other is None or not self._live(other, erased):
                    self.seen[k] = m

    def _live(self, m: Node, erased: set[Node] | None) -> bool:
        return m.graph is self.graph and (erased is None or m not in erased)


def cse_classes(graph: torch.fx.Graph, owner: torch.nn.Module | None = None,
                names: TargetNames | None = None) -> dict[Node, Node]:
    """Representative of each node merged by common-subexpression elimination (nodes that are
    their own representative are absent). Nodes with the same operator target and the same
    arguments (after mapping to representatives) form one class when CSE may merge them (see
    the module docstring): the same notion of equality as :func:`cse`, without changing the
    graph."""
    return CSE(graph, owner, names).classes()


def cse(gm: torch.fx.GraphModule | torch.fx.Graph, names: TargetNames | None = None) -> int:
    """Merge common subexpressions in place (see the module docstring); returns how many nodes
    were removed."""
    graph = gm.graph if isinstance(gm, torch.fx.GraphModule) else gm
    owner = gm if isinstance(gm, torch.fx.GraphModule) else graph.owning_module
    return CSE(graph, owner, names).merge()

