"""Purity and common-subexpression elimination over fx graphs.

Equality of graph terms is node identity after CSE (LANGUAGE.md §1): pure nodes with the same
operator and the same arguments are one value. Impure nodes (random, in-place, I/O) are equal
only to themselves.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.fx

from ..lang import schema
from .names import DTYPE_METHODS, MODULES, callable_key, is_torch_callable, submodule, target_name

Node = torch.fx.Node


_PURE_TARGETS: dict[tuple[str, Any], bool] = {}


def is_impure(node: Node, op: str | None = None, owner: torch.nn.Module | None = None,
              module: Callable[[str], Any] | None = None) -> bool:
    """True for nodes that a rewrite must not consume and CSE must not merge: graph inputs and
    outputs, random ops (dropout only while training), in-place ops, unknown modules.
    ``module`` looks up submodules by name (a cache), ``op`` is the node's canonical name."""
    kind = node.op
    if kind in ("placeholder", "output"):
        return True
    if kind == "get_attr":
        return False
    if kind == "call_module":
        mod = module(str(node.target)) if module is not None else submodule(owner, str(node.target))
        if mod is None or type(mod) not in MODULES:
            return True
        return isinstance(mod, torch.nn.Dropout) and mod.training and mod.p > 0
    op = op or target_name(node, owner)
    if op.endswith("dropout") and not op.startswith("aten.native"):
        training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
        p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else 0.5)
        return not (training is False or p == 0)
    key = (kind, node.target)
    try:
        cached = _PURE_TARGETS.get(key)
    except TypeError:
        key, cached = None, None  # type: ignore[assignment]
    if cached is not None:
        return not cached
    impure = _impure_target(node, op)
    if key is not None:
        _PURE_TARGETS[key] = not impure
    return impure


# Python builtins that compute a value and nothing else (dynamo graphs call them on sizes).
_PURE_BUILTINS = frozenset({getattr, len, int, float, bool, abs, min, max, round, isinstance})


def _impure_target(node: Node, op: str) -> bool:
    """Impurity that depends on the target only. A call of a function pypm does not know (a
    user's ``torch.fx.wrap``-ed function, say) counts as impure: it may have side effects."""
    if schema.is_random(op) or schema.is_inplace(op):
        return True
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return bool(target._schema.is_mutable or torch.Tag.nondeterministic_seeded in target.tags)
    if node.op == "call_function":
        module = getattr(target, "__module__", None) or ""
        if module == "builtins":
            return target not in _PURE_BUILTINS
        if not (is_torch_callable(target) or module in ("_operator", "operator", "math")
                or isinstance(target, torch._ops.OpOverloadPacket)):
            return True
    try:
        return bool(node.is_impure())
    except Exception:  # older torch: is_impure may need a module
        return False


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

    def cse_info(self, node: Node) -> tuple[Any, bool] | None:
        """None for nodes CSE never merges (inputs, outputs, impure targets); else the part of
        the key that depends on the target, and whether purity also depends on the arguments
        (dropout, modules). Cached by target."""
        key = (node.op, node.target)
        try:
            return self._cse[key]
        except KeyError:
            pass
        except TypeError:
            return self._cse_info(node)
        out = self._cse[key] = self._cse_info(node)
        return out

    def _cse_info(self, node: Node) -> tuple[Any, bool] | None:
        if node.op in ("placeholder", "output"):
            return None
        if node.op == "call_module":  # pure or not by the module alone (fixed during a pass)
            if is_impure(node, None, self.owner, self.module):
                return None
            return (_cse_target(node, self), False)
        name = self(node)
        if name.endswith("dropout"):
            return (_cse_target(node, self), True)
        if is_impure(node, name, self.owner, self.module):
            return None
        return (_cse_target(node, self), False)

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
    never keyed at all."""

    def __init__(self, graph: torch.fx.Graph, owner: torch.nn.Module | None = None,
                 names: TargetNames | None = None):
        self.graph = graph
        self.owner = owner
        self.names = names or TargetNames(owner)
        self.seen: dict[Any, Node] = {}
        self.lone: dict[Node, Node] = {}  # input -> the node left out of `seen` as its only user

    def key(self, n: Node, rep: Mapping[Node, Node]) -> Any:
        """The CSE key of a pure node (None for impure ones)."""
        names = self.names
        info = names.cse_info(n)
        if info is None:
            return None
        target, depends_on_args = info
        if depends_on_args and is_impure(n, names(n) if n.op != "call_module" else None, self.owner,
                                          names.module):
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
            return (target, args)
        for a in kwargs.values():
            if type(a) not in atoms:
                return (target, args, _freeze(kwargs))
        return (target, args, tuple(kwargs.items()))

    def classes(self) -> dict[Node, Node]:
        """Representatives of every node of the graph, without changing it (see cse_classes)."""
        rep: dict[Node, Node] = {}
        self.seen = {}
        for n in self.graph.nodes:
            key = self.key(n, rep)
            if key is None:
                continue
            first = self.seen.setdefault(key, n)
            if first is not n:
                rep[n] = first
        return rep

    def merge(self, dirty: set[Node] | None = None, erased: set[Node] | None = None) -> int:
        """Merge duplicates in place (all nodes, or those in ``dirty`` and what their merges
        touch, in graph order); erased nodes are recorded in ``erased``. Returns how many were
        removed."""
        if dirty is None:
            self.seen, self.lone = {}, {}
            return self._merge(list(self.graph.nodes), erased)
        graph = self.graph
        work = [n for n in dirty if n.graph is graph and not getattr(n, "_erased", False)]
        try:
            heapq.heapify(work)  # graph order: fx nodes compare by position
        except TypeError:  # nodes without an order (older torch): start again, in graph order
            self.seen, self.lone = {}, {}
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
            if first is None or first is n or not live(first, erased):
                seen[k] = n
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
    their own representative are absent). Pure nodes with the same operator target and the same
    arguments (after mapping to representatives) form one class."""
    return CSE(graph, owner, names).classes()


def cse(gm: torch.fx.GraphModule | torch.fx.Graph, names: TargetNames | None = None) -> int:
    """Merge common subexpressions of pure nodes in place; returns how many nodes were removed."""
    graph = gm.graph if isinstance(gm, torch.fx.GraphModule) else gm
    owner = gm if isinstance(gm, torch.fx.GraphModule) else graph.owning_module
    return CSE(graph, owner, names).merge()

