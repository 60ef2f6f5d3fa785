"""A torch.fx graph seen as terms (LANGUAGE.md §1), at torch level and at ATen level.

A node ``n`` is seen as the term ``f(v1..vn)``: ``f`` its canonical name (:mod:`.names`), the
``vi`` its arguments in schema position (:mod:`.args`). A :class:`GraphView` gives one
:class:`FxTerm` per CSE class (:mod:`.cse`), so ``==`` on terms is identity.
:func:`match_graph` is ``pypm.match`` on graphs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.fx

from ..lang import schema
from ..lang.analysis import call_of, fits, reads_types, resolve, root_ops, skeleton
from ..lang.match import Match
from ..lang.terms import TermView
from .args import aten_place, normalise_dims, place, positional_names
from .cse import TargetNames, cse_classes
from .names import DTYPE_METHODS, MODULES
from .types import has_types, meta_value, propagate_types, size_value, tensor_type

Node = torch.fx.Node


class FxTerm(TermView):
    """The term seen from one fx node. One object per CSE class, so ``==`` is identity.

    ``args`` is computed on first use (most nodes of a big graph are never looked into).
    """

    __slots__ = ("_args", "_type", "_view", "node", "op")

    def __init__(self, view: GraphView, node: Node, op: str):
        self.node = node
        self.op = op
        self._view = view
        self._args: tuple[Any, ...] | None = None
        self._type: tuple[Any, Any, Any] | None = None

    @property
    def args(self) -> tuple[Any, ...]:  # type: ignore[override]
        if self._args is None:
            self._args = self._view._canonical_args(self.node, self.op)
        return self._args

    def _types(self) -> tuple[Any, Any, Any]:
        if self._type is None:
            self._type = tensor_type(meta_value(self.node))
        return self._type

    @property
    def shape(self) -> tuple[Any, ...] | None:
        return self._types()[0]

    @property
    def dtype(self) -> Any:
        return self._types()[1]

    @property
    def device(self) -> Any:
        tensor = self._types()[2]
        return None if tensor is None else str(tensor.device)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<{self.op} %{self.node.name}>"


class ParamTerm(TermView):
    """A module parameter seen by a ``call_module`` node (``nn.Linear``'s weight): a 0-ary
    ``get_attr`` term with no node of its own until a rewrite needs one."""

    __slots__ = ("args", "op", "qualname", "tensor")

    def __init__(self, qualname: str, tensor: torch.Tensor):
        self.qualname = qualname
        self.tensor = tensor
        self.op = "get_attr"
        self.args = ()

    @property
    def shape(self) -> tuple[Any, ...]:
        return tuple(self.tensor.shape)

    @property
    def dtype(self) -> Any:
        return self.tensor.dtype

    @property
    def device(self) -> Any:
        return str(self.tensor.device)

    @property
    def node(self) -> Any:
        return None

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<get_attr {self.qualname}>"



class GraphView:
    """Terms over one graph, one :class:`FxTerm` per CSE class, built lazily.

    ``cse=True`` merges common subexpressions *virtually* (the graph is not changed), so that a
    pattern like ``x * sigmoid(x)`` matches even if ``x`` was computed twice.
    """

    def __init__(self, graph: torch.fx.Graph | torch.fx.GraphModule, *, cse: bool = True,
                 names: TargetNames | None = None):
        if isinstance(graph, torch.fx.GraphModule):
            self.owner: torch.nn.Module | None = graph
            graph = graph.graph
        else:
            self.owner = graph.owning_module
        self.graph = graph
        self.names = names or TargetNames(self.owner)
        self.rep: dict[Node, Node] = cse_classes(graph, self.owner, self.names) if cse else {}
        self._terms: dict[Node, FxTerm] = {}
        self._params: dict[str, ParamTerm] = {}
        self._plain_targets: dict[Any, bool] = {}

    def op_name(self, node: Node) -> str:
        """The canonical operator name of a node (cached by target)."""
        return self.names(node)

    def term(self, node: Node) -> FxTerm:
        """The term of a node (the same object for every node of its CSE class)."""
        if self.rep:
            node = self.rep.get(node, node)
        t = self._terms.get(node)
        if t is None:
            t = self._terms[node] = FxTerm(self, node, self.op_name(node))
        return t

    def forget(self, node: Node) -> None:
        """Drop the cached term of a node the rewriter erased or rewired."""
        self._terms.pop(node, None)

    def value(self, a: Any) -> Any:
        """A graph argument as a pypm value: nodes as terms, lists as tuples, literals as is."""
        if type(a) is Node:
            return self.term(a)
        if isinstance(a, (list, tuple)):
            return tuple(self.value(x) for x in a)
        if isinstance(a, slice):
            return slice(self.value(a.start), self.value(a.stop), self.value(a.step))
        if isinstance(a, torch.SymInt):
            return size_value(a)
        return a

    def _values(self, args: Iterable[Any]) -> tuple[Any, ...]:
        """``value`` of each argument (nodes, the common case, looked up directly)."""
        term = self.term
        return tuple(term(a) if type(a) is Node else self.value(a) for a in args)

    def _param_term(self, qual: str, name: str) -> Any:
        key = f"{qual}.{name}"
        t = self._params.get(key)
        if t is None:
            tensor = getattr(self.owner.get_submodule(qual), name, None) if self.owner else None
            if tensor is None:
                return None
            t = self._params[key] = ParamTerm(key, tensor)
        return t

    def _canonical_args(self, node: Node, op: str) -> tuple[Any, ...]:
        """The argument values of a node in schema position (see the module docstring)."""
        kind, target = node.op, node.target
        if kind in ("placeholder", "get_attr", "output"):
            return ()
        args, kwargs = node.args, node.kwargs
        if kind == "call_module":
            mod = self.names.module(str(target))
            conv = MODULES.get(type(mod)) if mod is not None else None
            if conv is None:
                return tuple(self.value(a) for a in args)
            raw = conv[1](mod, str(target), tuple(args))
            vals = tuple(self._param_term(a[1], a[2]) if isinstance(a, tuple) and a[:1] == ("param",)
                         else self.value(a) for a in raw)
            return normalise_dims(op, vals)
        if kind == "call_function" and isinstance(target, torch._ops.OpOverload):
            vals = self._values(aten_place(target, args, kwargs))
            return normalise_dims(op, vals)
        if not kwargs and self._plain(kind, target, op):  # positions already canonical
            return normalise_dims(op, self._values(place(op, args, {})))
        bare = op
        sizes_at = schema.VARARG_SIZES.get(bare)
        if kind == "call_method":
            pos_names: tuple[str, ...] | None = None
        else:
            pos_names = positional_names(target)
            if sizes_at is not None and bare in ("permute", "view", "reshape", "expand", "repeat"):
                sizes_at = None  # torch.permute(x, dims): already one sequence
        if sizes_at is not None and len(args) > sizes_at:
            rest = args[sizes_at:]
            if not (len(rest) == 1 and isinstance(rest[0], (list, tuple, torch.Size))):
                args = (*args[:sizes_at], tuple(rest))
        if kind == "call_method" and target in DTYPE_METHODS:
            args, kwargs = (args[0], DTYPE_METHODS[target]), {}
        elif bare == "to":
            args, kwargs = _to_args(args, kwargs)
        if bare in ("ones", "zeros", "full") or bare.endswith("_like"):
            kwargs = {k: v for k, v in kwargs.items() if k in ("dtype", "fill_value")}
        placed = place(op, tuple(args), kwargs, pos_names)
        return normalise_dims(op, self._values(placed))

    def _plain(self, kind: str, target: Any, op: str) -> bool:
        """Whether a torch-level call's positional arguments are already in schema order (no
        varargs sizes, no dtype methods, no signature of its own); cached by target."""
        key = (kind, target)
        try:
            return self._plain_targets[key]
        except KeyError:
            pass
        except TypeError:
            return False
        plain = (op not in schema.VARARG_SIZES and op != "to" and target not in DTYPE_METHODS
                 and op not in ("full",) and not op.endswith("_like")
                 and (kind == "call_method" or positional_names(target) is None))
        self._plain_targets[key] = plain
        return plain

    def candidates(self, root_ops: frozenset[str] | None) -> Iterator[Node]:
        """Nodes (one per CSE class, in graph order) whose operator may be a pattern's root."""
        for n in self.graph.nodes:
            if n in self.rep or n.op == "output":
                continue
            if root_ops is None or self.op_name(n) in root_ops:
                yield n


def _to_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``x.to(torch.bool)``, ``x.to(dtype=...)``, ``x.to(device, dtype)``: keep the dtype only
    (``to(x, dtype)``; None when only the device changes)."""
    dtype = kwargs.get("dtype")
    for a in args[1:]:
        if isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, Node):  # x.to(other): dtype and device of other
            return (args[0], a), {}
    return (args[0], dtype), {}



class NoShapesWarning(UserWarning):
    """A pattern whose guards read shapes or dtypes was matched on a graph that has none."""


def match_graph(pattern: Any, graph: torch.fx.Graph | torch.fx.GraphModule,
                example_inputs: Iterable[Any] | None = None, **bound: Any) -> list[Match]:
    """Every match of a pattern at every node of a graph, in graph order (nodes whose operator
    cannot be the pattern's root are skipped by a root-operator index). ``bound`` fixes some
    parameters: fx nodes or literals.

    A graph whose inputs carry no shapes (``symbolic_trace``) gets them from
    ``example_inputs``; without either, a guard that reads a shape cannot hold, and a
    :class:`NoShapesWarning` says so instead of returning ``[]`` silently."""
    program, definition = resolve(pattern)
    if not has_types(graph.graph if isinstance(graph, torch.fx.GraphModule) else graph):
        if example_inputs is not None:
            if not isinstance(graph, torch.fx.GraphModule):
                raise TypeError("example_inputs need a GraphModule (to run it on fake tensors)")
            propagate_types(graph, example_inputs)
        elif any(reads_types(d.body) for d in program.values()):
            warnings.warn(f"pattern {definition.name} has guards that read shapes or dtypes, but the "
                          "graph carries none (symbolic_trace records no shapes): such guards cannot "
                          "hold; pass example_inputs to pypm.match to propagate them",
                          NoShapesWarning, stacklevel=3)
    view = GraphView(graph)
    sigma = {k: view.value(v) for k, v in bound.items()}
    from ..lang.fastmatch import Compiler, every_result

    call = call_of(definition)
    matcher = Compiler(program).compile(call)
    out: list[Match] = []
    sk = skeleton(program, call)
    for node in view.candidates(root_ops(program, call)):
        t = view.term(node)
        if not fits(t, sk):
            continue
        results = every_result(matcher, program, call, t, sigma)
        seen: list[Match] = []
        for s, region in results:
            m = Match(s, region, t, definition.name)
            if m not in seen:  # alternatives can yield the same match twice (§4 allows it)
                seen.append(m)
        out.extend(seen)
    return out

