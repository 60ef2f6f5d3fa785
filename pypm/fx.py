"""The torch.fx adapter: graph nodes as terms (LANGUAGE.md §1), at torch level and at ATen level.

A node ``n`` is seen as the term ``f(v1..vn)`` where ``f`` is a *canonical* operator name and
the ``vi`` are its arguments in schema position, defaults filled in:

- torch level (``symbolic_trace``, dynamo): ``x @ y``, ``torch.matmul(x, y)`` and
  ``x.matmul(y)`` are all ``matmul(x, y)``; ``x.softmax(-1)``, ``torch.softmax(x, dim=-1)`` and
  ``F.softmax(x, -1)`` are all ``softmax(x, -1, None)``; common modules (``nn.Linear``,
  ``nn.Softmax``, ``nn.Dropout``, ...) become their functional form.
- ATen level (OpOverloads, as in inductor's post-grad graphs): ``aten.bmm(a, b)``,
  ``aten._softmax(x, -1, False)``, named by overload packet, arguments by the op's schema.

Dimension arguments are normalised (negative for ``softmax``/``transpose``/reductions,
non-negative for ``permute``) when the input's rank is known, so ``softmax(x, 3)`` on a 4-d x
is ``softmax(x, -1)``; sizes given as varargs are one tuple (``x.view(B, T, C)`` is
``view(x, (B, T, C))``); ``x.float()``, ``x.bool()``, ``x.to(dtype)`` are ``to(x, dtype)``.
Types come from ``node.meta["val"]`` (or dynamo's ``example_value``, or ``tensor_meta``),
computed with fake tensors by :func:`propagate_types` when missing; symbolic sizes are sympy
expressions. The tables behind all this are in :mod:`pypm.schema`.

This module also holds the mask analysis behind the guard functions ``causal_mask`` and
``causal_keep`` (registered on import), a skeleton pre-filter for matching (a necessary
condition checked before the matcher runs) and :func:`match_graph`, which ``pypm.match`` uses
for graphs.

Equality of graph terms is node identity *after common-subexpression elimination*: a
:class:`GraphView` groups pure nodes with the same operator and arguments and gives each group
one :class:`FxTerm` object, so ``==`` is ``is``. :func:`cse` does the same merge on the graph
itself (the rewriter runs it first). Impure nodes (random, in-place, I/O) are equal only to
themselves.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx

from . import schema
from .index import root_ops
from .match import Interpreter, Match
from .syntax import Alt, Call, Definition, Exists, Fail, Guard, Op, Pattern, Program, Then, Var
from .terms import TermView

Node = torch.fx.Node


# ---------------------------------------------------------------------------------------------
# Types: shapes, dtypes and devices from node metadata


def meta_value(node: Node) -> Any:
    """The example value recorded for a node: ``meta["val"]`` (make_fx, inductor, fake-tensor
    propagation), ``meta["example_value"]`` (dynamo) or ``meta["tensor_meta"]`` (ShapeProp)."""
    m = node.meta
    v = m.get("val")
    if v is None:
        v = m.get("example_value")
    if v is None:
        v = m.get("tensor_meta")
    return v


def size_value(s: Any) -> Any:
    """A size as a plain int, or a sympy expression when it is symbolic (never specialised:
    calling ``int()`` on a SymInt would add a guard)."""
    if isinstance(s, int):
        return s
    if isinstance(s, torch.SymInt):
        expr = s.node.expr
        return int(expr) if getattr(expr, "is_number", False) else expr
    return s


def _tensor_type(v: Any) -> tuple[tuple[Any, ...] | None, Any, Any]:
    """(shape, dtype, the value itself when it is a tensor: its device is read on demand)."""
    if isinstance(v, torch.Tensor):
        shape = tuple(v.shape)
        for d in shape:
            if type(d) is not int:
                shape = tuple(size_value(d) for d in shape)
                break
        return shape, v.dtype, v
    shape = getattr(v, "shape", None)
    dtype = getattr(v, "dtype", None)
    if shape is not None and isinstance(dtype, torch.dtype):  # TensorMetadata
        return tuple(size_value(s) for s in shape), dtype, None
    return None, None, None


# ---------------------------------------------------------------------------------------------
# Terms


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
            self._type = _tensor_type(meta_value(self.node))
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


# ---------------------------------------------------------------------------------------------
# Canonical operator names


def _callable_key(target: Any) -> str:
    mod = getattr(target, "__module__", None) or ""
    return f"{mod}.{getattr(target, '__name__', '')}"


def _is_torch_callable(target: Any) -> bool:
    mod = getattr(target, "__module__", None) or ""
    if mod.startswith("torch"):
        return True
    qual = getattr(target, "__qualname__", "") or ""
    return qual.startswith("_TensorBase.") or qual.startswith("TensorBase.") or \
        qual.startswith("Tensor.")


def target_name(node: Node, owner: torch.nn.Module | None = None) -> str:
    """The canonical operator name of a node (see the module docstring)."""
    kind = node.op
    target = node.target
    if kind == "call_function":
        return function_name(target)
    if kind == "call_method":
        if target in _DTYPE_METHODS:
            return "to"  # x.float(), x.bool(), ... are x.to(dtype)
        return schema.canonical_name(str(target))
    if kind == "call_module":
        mod = _submodule(owner, str(target))
        if mod is not None:
            conv = _MODULES.get(type(mod))
            if conv is not None:
                return conv[0]
            return type(mod).__name__
        return str(target)
    return kind  # placeholder, get_attr, output


_FUNCTION_NAMES: dict[Any, str] = {}

# Tensor methods that convert the dtype: term ``to(x, dtype)``.
_DTYPE_METHODS: dict[str, torch.dtype] = {
    "float": torch.float32, "half": torch.float16, "bfloat16": torch.bfloat16, "double": torch.float64,
    "bool": torch.bool, "int": torch.int32, "long": torch.int64,
}


def function_name(target: Any) -> str:
    """Canonical name of a ``call_function`` target: OpOverloads as ``aten.bmm`` (other
    namespaces likewise: ``prims.convert_element_type``, ``pypm.attention``), Python operators
    and torch functions by their canonical bare name."""
    try:
        cached = _FUNCTION_NAMES.get(target)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    if isinstance(target, torch._ops.OpOverload):
        name = f"{target.namespace}.{target.overloadpacket.__name__}"
    elif isinstance(target, torch._ops.OpOverloadPacket):
        name = f"{target._qualified_op_name.split('::')[0]}.{target.__name__}"
    elif getattr(target, "__module__", None) in ("_operator", "operator"):
        name = schema.OPERATORS.get(target.__name__, target.__name__)
    elif _is_torch_callable(target):
        name = schema.canonical_name(getattr(target, "__name__", str(target)))
    else:
        name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or str(target)
        mod = getattr(target, "__module__", None)
        name = f"{mod}.{name}" if mod and mod != "builtins" else name
    try:
        _FUNCTION_NAMES[target] = name
    except TypeError:
        pass
    return name


def _submodule(owner: torch.nn.Module | None, qualname: str) -> Any:
    if owner is None:
        return None
    try:
        return owner.get_submodule(qualname)
    except AttributeError:
        return None


def _param(owner: torch.nn.Module, qual: str, name: str) -> Any:
    t = getattr(owner.get_submodule(qual), name, None)
    return None if t is None else (f"{qual}.{name}", t)


# Modules seen as their functional form: class -> (name, function(module, qualname, inputs)).
# Parameters become ParamTerm values (made by the view, one per parameter).
_MODULES: dict[type, tuple[str, Callable[[Any, str, tuple[Any, ...]], tuple[Any, ...]]]] = {
    torch.nn.Linear: ("linear", lambda m, q, a: (a[0], ("param", q, "weight"), ("param", q, "bias"))),
    torch.nn.Softmax: ("softmax", lambda m, q, a: (a[0], m.dim, None)),
    torch.nn.LogSoftmax: ("log_softmax", lambda m, q, a: (a[0], m.dim, None)),
    torch.nn.Dropout: ("dropout", lambda m, q, a: (a[0], m.p, m.training, m.inplace)),
    torch.nn.ReLU: ("relu", lambda m, q, a: (a[0],)),
    torch.nn.GELU: ("gelu", lambda m, q, a: (a[0], m.approximate)),
    torch.nn.SiLU: ("silu", lambda m, q, a: (a[0],)),
    torch.nn.Sigmoid: ("sigmoid", lambda m, q, a: (a[0],)),
    torch.nn.Tanh: ("tanh", lambda m, q, a: (a[0],)),
    torch.nn.LayerNorm: ("layer_norm", lambda m, q, a: (
        a[0], tuple(m.normalized_shape), ("param", q, "weight"), ("param", q, "bias"), m.eps)),
    torch.nn.Embedding: ("embedding", lambda m, q, a: (a[0], ("param", q, "weight"))),
}


# ---------------------------------------------------------------------------------------------
# Argument normalisation


_LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[Any, ...]] | None] = {}


def _schema_layout(op: str) -> tuple[tuple[str, ...], tuple[Any, ...]] | None:
    """(argument names, trailing defaults) of an operator, cached."""
    try:
        return _LAYOUTS[op]
    except KeyError:
        names = schema.arg_names(op)
        layout = _LAYOUTS[op] = None if names is None else (names, schema.defaults(op))
        return layout


def _positional_names(target: Any) -> tuple[str, ...] | None:
    """Positional parameter names of a callable, when they differ from the canonical schema."""
    return schema.SIGNATURES.get(_callable_key(target))


def _place(op: str, args: tuple[Any, ...], kwargs: Mapping[str, Any],
           positional: tuple[str, ...] | None = None) -> tuple[Any, ...]:
    """Put keyword arguments in schema position and fill in defaults (LANGUAGE.md §1)."""
    layout = _schema_layout(op)
    if layout is None:
        return tuple(args) + tuple(kwargs[k] for k in sorted(kwargs))
    names, dflts = layout
    if not kwargs and positional is None:  # the common case: positions already canonical
        if len(args) >= len(names):
            return tuple(args)
        return tuple(args) + _filled_defaults(op, names, dflts)[len(args):]
    by_name: dict[str, Any] = dict(kwargs)
    pos = positional or names
    extra: list[Any] = []
    for i, a in enumerate(args):
        if i < len(pos):
            by_name.setdefault(pos[i], a)
        else:
            extra.append(a)
    out: list[Any] = []
    first_default = len(names) - len(dflts)
    unknown = sorted(k for k in by_name if k not in names)
    # A keyword the schema table does not know (torch.var(x, correction=0)) can change what the
    # unnamed positions mean: never fill their defaults then, mark them as unknown instead, so
    # that no literal in a pattern matches them.
    marker = Unspecified(tuple((k, by_name[k]) for k in unknown)) if unknown else None
    for i, n in enumerate(names):
        if n in by_name:
            out.append(by_name[n])
        elif marker is not None:
            out.append(marker)
        elif i >= first_default:
            out.append(dflts[i - first_default])
        else:
            out.append(None)
    return tuple(out) + tuple(extra)


@dataclass(frozen=True)
class Unspecified:
    """An argument position whose value depends on keywords the schema table does not know."""

    given: tuple[tuple[str, Any], ...]

    def __repr__(self) -> str:
        return "<unspecified: " + ", ".join(f"{k}={v!r}" for k, v in self.given) + ">"


_FILLED: dict[str, tuple[Any, ...]] = {}


def _filled_defaults(op: str, names: tuple[str, ...], dflts: tuple[Any, ...]) -> tuple[Any, ...]:
    """One value per argument of op: its default, or None where it has none (cached)."""
    out = _FILLED.get(op)
    if out is None:
        out = _FILLED[op] = (None,) * (len(names) - len(dflts)) + tuple(dflts)
    return out


_ATEN_LAYOUT: dict[Any, tuple[tuple[str, ...], tuple[Any, ...]]] = {}


def _aten_place(target: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    layout = _ATEN_LAYOUT.get(target)
    if layout is None:
        arguments = target._schema.arguments
        names = tuple(a.name for a in arguments)
        defs = tuple(a.default_value if a.has_default_value() else None for a in arguments)
        layout = _ATEN_LAYOUT.setdefault(target, (names, defs))
    names, defs = layout
    out = list(args[: len(names)])
    for n, d in zip(names[len(out):], defs[len(out):]):
        out.append(kwargs.get(n, d))
    return tuple(out)


def _norm_dim(d: Any, ndim: int, mode: str) -> Any:
    if isinstance(d, bool) or not isinstance(d, int):
        return d
    if mode == "neg":
        return d - ndim if d >= 0 else d
    return d + ndim if d < 0 else d


def _normalise_dims(op: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    spec = schema.DIM_ARGS.get(op)
    if spec is None or not args or not isinstance(args[0], TermView):
        return args
    ndim = args[0].ndim
    if ndim is None:
        return args
    mode, positions = spec
    out = list(args)
    for i in positions:
        if i < len(out):
            a = out[i]
            if isinstance(a, tuple):
                out[i] = tuple(_norm_dim(d, ndim, mode) for d in a)
            else:
                out[i] = _norm_dim(a, ndim, mode)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Purity and CSE


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
        mod = module(str(node.target)) if module is not None else _submodule(owner, str(node.target))
        if mod is None or type(mod) not in _MODULES:
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
        if not (_is_torch_callable(target) or module in ("_operator", "operator", "math")
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
        mod = self._modules[qualname] = _submodule(self.owner, qualname)
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
            conv = _MODULES.get(type(mod)) if mod is not None else None
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
            _is_torch_callable(n.target)
            or getattr(n.target, "__module__", None) in ("_operator", "operator")):
        key = _callable_key(n.target)
        return ("call", names(n), key if key in schema.SIGNATURES else "")
    if n.op == "call_method":
        if n.target in _DTYPE_METHODS:  # the method name carries an argument (the dtype)
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


# ---------------------------------------------------------------------------------------------
# The view of a graph


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
            conv = _MODULES.get(type(mod)) if mod is not None else None
            if conv is None:
                return tuple(self.value(a) for a in args)
            raw = conv[1](mod, str(target), tuple(args))
            vals = tuple(self._param_term(a[1], a[2]) if isinstance(a, tuple) and a[:1] == ("param",)
                         else self.value(a) for a in raw)
            return _normalise_dims(op, vals)
        if kind == "call_function" and isinstance(target, torch._ops.OpOverload):
            vals = self._values(_aten_place(target, args, kwargs))
            return _normalise_dims(op, vals)
        if not kwargs and self._plain(kind, target, op):  # positions already canonical
            return _normalise_dims(op, self._values(_place(op, args, {})))
        bare = op
        sizes_at = schema.VARARG_SIZES.get(bare)
        if kind == "call_method":
            pos_names: tuple[str, ...] | None = None
        else:
            pos_names = _positional_names(target)
            if sizes_at is not None and bare in ("permute", "view", "reshape", "expand", "repeat"):
                sizes_at = None  # torch.permute(x, dims): already one sequence
        if sizes_at is not None and len(args) > sizes_at:
            rest = args[sizes_at:]
            if not (len(rest) == 1 and isinstance(rest[0], (list, tuple, torch.Size))):
                args = (*args[:sizes_at], tuple(rest))
        if kind == "call_method" and target in _DTYPE_METHODS:
            args, kwargs = (args[0], _DTYPE_METHODS[target]), {}
        elif bare == "to":
            args, kwargs = _to_args(args, kwargs)
        if bare in ("ones", "zeros", "full") or bare.endswith("_like"):
            kwargs = {k: v for k, v in kwargs.items() if k in ("dtype", "fill_value")}
        placed = _place(op, tuple(args), kwargs, pos_names)
        return _normalise_dims(op, self._values(placed))

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
        plain = (op not in schema.VARARG_SIZES and op != "to" and target not in _DTYPE_METHODS
                 and op not in ("full",) and not op.endswith("_like")
                 and (kind == "call_method" or _positional_names(target) is None))
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


# ---------------------------------------------------------------------------------------------
# Patterns over graphs


def resolve(pattern: Any) -> tuple[Program, Definition]:
    """The program Δ and definition of a pattern: a ``@pattern`` object (``.program`` and
    ``.definition``), a core Definition, or a ``(program, definition)`` pair."""
    if isinstance(pattern, tuple) and len(pattern) == 2:
        return dict(pattern[0]), pattern[1]
    if isinstance(pattern, Definition):
        return {pattern.name: pattern}, pattern
    program = getattr(pattern, "program", None)
    definition = getattr(pattern, "definition", None)
    if program is not None and isinstance(definition, Definition):
        prog = dict(program)
        prog.setdefault(definition.name, definition)
        return prog, definition
    raise TypeError(f"not a pattern: {pattern!r}")


# A skeleton is a necessary condition for a match, checked before the interpreter runs: None
# (any value), or a dict from operator name to the skeletons of its first arguments. It
# over-approximates the pattern (guards and literals are ignored, alternatives are merged
# position-wise, depth is capped), so a term that does not fit cannot match.
Skeleton = dict[str, tuple[Any, ...]] | None

SKELETON_DEPTH = 4


def _union(a: Skeleton, b: Skeleton) -> Skeleton:
    if a is None or b is None:
        return None
    out = dict(a)
    for op, kids in b.items():
        if op not in out:
            out[op] = kids
        else:
            mine = out[op]
            n = min(len(mine), len(kids))  # prefix arity: missing positions are unconstrained
            out[op] = tuple(_union(mine[i], kids[i]) for i in range(n))
    return out


def skeleton(program: Program, p: Pattern, env: Mapping[str, Skeleton] | None = None,
             depth: int = SKELETON_DEPTH, _calls: int = 0) -> Skeleton:
    """The skeleton of pattern p (see above). ``env`` refines variables (``p ; x ≍ q`` puts
    q's skeleton on x's occurrences in p)."""
    env = env or {}
    if depth <= 0 or _calls > 32:
        return None
    match p:
        case Var(x):
            return env.get(x)
        case Op(name, args):
            return {name: tuple(skeleton(program, a, env, depth - 1, _calls) for a in args)}
        case Alt(left, right):
            return _union(skeleton(program, left, env, depth, _calls),
                          skeleton(program, right, env, depth, _calls))
        case Exists(x, body):
            return skeleton(program, body, {k: v for k, v in env.items() if k != x}, depth, _calls)
        case Guard(body, _):
            return skeleton(program, body, env, depth, _calls)
        case Then(body, x, q):
            refined = {**env, x: skeleton(program, q, env, depth, _calls)}
            return skeleton(program, body, refined, depth, _calls)
        case Call(name, xs):
            d = program.get(name)
            if d is None:
                return None
            inner = {y: env[x] for y, x in zip(d.params, xs) if x in env}
            return skeleton(program, d.body, inner, depth, _calls + 1)
        case Fail():
            return {}
    return None  # wildcard, literal, operator variable


def fits(v: Any, sk: Skeleton) -> bool:
    """Whether a value can possibly match a pattern with skeleton ``sk``."""
    if sk is None:
        return True
    if not isinstance(v, TermView):
        return False
    kids = sk.get(v.op)
    if kids is None:
        return False
    args = v.args
    if len(kids) > len(args):
        return False
    for a, k in zip(args, kids):
        if k is not None and not fits(a, k):
            return False
    return True


def call_of(definition: Definition) -> Call:
    """The call ``P(y1..yn)`` that matches a definition with its own parameter names."""
    return Call(definition.name, definition.params, span=definition.span)


def match_graph(pattern: Any, graph: torch.fx.Graph | torch.fx.GraphModule, **bound: Any) -> list[Match]:
    """Every match of a pattern at every node of a graph, in graph order (nodes whose operator
    cannot be the pattern's root are skipped by a root-operator index). ``bound`` fixes some
    parameters: fx nodes or literals."""
    program, definition = resolve(pattern)
    view = GraphView(graph)
    sigma = {k: view.value(v) for k, v in bound.items()}
    from .fastmatch import Compiler, all_results

    call = call_of(definition)
    matcher = Compiler(program).compile(call)
    out: list[Match] = []
    sk = skeleton(program, call)
    for node in view.candidates(root_ops(program, call)):
        t = view.term(node)
        if not fits(t, sk):
            continue
        try:
            results = all_results(matcher, t, dict(sigma))
        except RecursionError:  # a very deep term: the generator interpreter has no such limit
            results = list(Interpreter(program).run(call, t, dict(sigma)))
        seen: list[Match] = []
        for s, region in results:
            m = Match(s, region, t, definition.name)
            if m not in seen:  # alternatives can yield the same match twice (§4 allows it)
                seen.append(m)
        out.extend(seen)
    return out


# ---------------------------------------------------------------------------------------------
# Shape propagation


def has_types(graph: torch.fx.Graph) -> bool:
    """True when the graph's inputs carry example values (so shapes and dtypes are known)."""
    phs = [n for n in graph.nodes if n.op == "placeholder"]
    return all(meta_value(n) is not None for n in phs)


def propagate_types(gm: torch.fx.GraphModule, example_inputs: Iterable[Any]) -> None:
    """Record ``meta["val"]`` on every node by running the graph on fake tensors made from the
    example inputs (real tensors or fake ones; symbolic sizes stay symbolic)."""
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    inputs = list(example_inputs)
    mode = next((a.fake_mode for a in inputs if isinstance(a, FakeTensor)), None)
    if mode is None:
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        inputs = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in inputs]
    FakeTensorProp(gm, mode).propagate_dont_convert_inputs(*inputs)


def infer_value(node: Node, owner: torch.nn.Module | None = None) -> Any:
    """An example value for a node inserted by a rewrite, computed from its inputs' example
    values (fake tensors under their fake mode, or meta tensors made from static shapes)."""
    from torch._subclasses.fake_tensor import FakeTensor

    vals: list[Any] = []
    missing = False

    def conv(n: Node) -> Any:
        nonlocal missing
        v = meta_value(n)
        if n.op == "get_attr" and v is None and owner is not None:
            v = _fetch_attr(owner, str(n.target))
        if v is None:
            missing = True
        vals.append(v)
        return v

    args = torch.fx.node.map_arg(node.args, conv)
    kwargs = torch.fx.node.map_arg(node.kwargs, conv)
    if missing:
        return None
    mode = next((v.fake_mode for v in vals if isinstance(v, FakeTensor)), None)
    if mode is None:  # no fake input (``aten.full``): the mode of the graph's other values
        mode = _graph_fake_mode(node.graph)
    if mode is None:
        global _FAKE_MODE
        if _FAKE_MODE is None:
            from torch._subclasses.fake_tensor import FakeTensorMode

            _FAKE_MODE = FakeTensorMode(allow_non_fake_inputs=True)
        mode = _FAKE_MODE
    # Results are remembered per fake mode (a value of another mode would mix modes in one
    # graph), on the mode itself, so that they go when it goes.
    memo = getattr(mode, "_pypm_infer_memo", None)
    if memo is None:
        memo = {}
        try:
            mode._pypm_infer_memo = memo
        except AttributeError:
            pass
    memo_key = _memo_key(node, args, kwargs)
    if memo_key is not None and memo_key in memo:
        return memo[memo_key]

    def to_meta(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and not isinstance(v, FakeTensor):
            return mode.from_tensor(v)
        if isinstance(v, FakeTensor) and v.fake_mode is not mode:
            # a value from another fake mode (an earlier graph): same type, same device, this mode
            with mode:
                return torch.empty_strided(v.shape, v.stride(), dtype=v.dtype, device=v.device)
        if not isinstance(v, torch.Tensor) and hasattr(v, "shape") and hasattr(v, "dtype"):
            with mode:
                return torch.empty(tuple(v.shape), dtype=v.dtype, device=getattr(v, "device", "cpu"))
        return v

    args = _map_values(args, to_meta)
    kwargs = _map_values(kwargs, to_meta)
    fn: Any
    if node.op == "call_function":
        fn = node.target
    elif node.op == "call_method":
        self_, *rest = args
        fn, args = getattr(self_, str(node.target)), tuple(rest)
    elif node.op == "call_module" and owner is not None:
        fn = owner.get_submodule(str(node.target))
    elif node.op == "get_attr" and owner is not None:
        return _fetch_attr(owner, str(node.target))
    else:
        return None
    with mode:
        out = fn(*args, **kwargs)
    if memo_key is not None:
        memo[memo_key] = out
    return out


_FAKE_MODE: Any = None


def _graph_fake_mode(graph: torch.fx.Graph) -> Any:
    """The fake mode of the example values already in a graph (None when it has none), so that
    a node without tensor inputs gets a value of the same mode: inductor's passes refuse a
    graph that mixes modes. The first fake value, usually an input's, decides."""
    from torch._subclasses.fake_tensor import FakeTensor

    for n in graph.nodes:
        v = meta_value(n)
        if isinstance(v, FakeTensor):
            return v.fake_mode
    return None


_PLAIN_KEYS = frozenset({int, float, bool, str, type(None), torch.dtype})


def _memo_key(node: Node, args: Any, kwargs: Any) -> Any:
    """A key for an inserted node's example value from its target and its inputs' static types
    (None when an input cannot be keyed, or has a symbolic size: those are not remembered)."""
    def sig(v: Any) -> Any:
        t = type(v)
        if t in _PLAIN_KEYS:
            return (t, v)
        if isinstance(v, torch.Tensor):
            shape = tuple(v.shape)
            for d in shape:
                if type(d) is not int:
                    raise TypeError  # a symbolic size
            return ("T", shape, v.dtype, v.stride(), v.device)
        if isinstance(v, (list, tuple)):
            return tuple(sig(x) for x in v)
        if isinstance(v, dict):
            return tuple((k, sig(x)) for k, x in v.items())
        raise TypeError
    try:
        key = (node.op, node.target, sig(args), sig(kwargs))
        hash(key)
    except TypeError:
        return None
    return key


def _map_values(a: Any, f: Callable[[Any], Any]) -> Any:
    if isinstance(a, (list, tuple)):
        return type(a)(_map_values(x, f) for x in a)
    if isinstance(a, dict):
        return {k: _map_values(v, f) for k, v in a.items()}
    return f(a)


def _fetch_attr(owner: torch.nn.Module, qual: str) -> Any:
    obj: Any = owner
    for part in qual.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def fetch_attr(owner: torch.nn.Module, qual: str) -> Any:
    """The value behind a ``get_attr`` target (None if absent)."""
    return _fetch_attr(owner, qual)


def node_source(node: Node) -> str:
    """A one-line description of a node for reports: ``%name = op(args)``."""
    def show(a: Any) -> str:
        if isinstance(a, Node):
            return f"%{a.name}"
        if isinstance(a, (list, tuple)):
            return "(" + ", ".join(show(x) for x in a) + ")"
        return repr(a)

    if node.op == "placeholder":
        return f"%{node.name} = input"
    if node.op == "get_attr":
        return f"%{node.name} = get_attr {node.target}"
    name = target_name(node, node.graph.owning_module)
    parts = [show(a) for a in node.args] + [f"{k}={show(v)}" for k, v in node.kwargs.items()]
    return f"%{node.name} = {name}({', '.join(parts)})"


__all__ = ["CSE", "FxTerm", "GraphView", "ParamTerm", "Skeleton", "TargetNames", "cse", "cse_classes",
           "fetch_attr", "fits", "function_name", "has_types", "infer_value", "is_impure", "match_graph",
           "meta_value", "node_source", "propagate_types", "resolve", "size_value", "skeleton",
           "target_name"]



# ---------------------------------------------------------------------------------------------
# Mask analysis (a guard function): is a boolean mask provably the causal triangle?

_LOWER, _UPPER = "lower", "strict-upper"  # True where j <= i / where j > i (top-left anchored)


def _flip(kind: str | None) -> str | None:
    return None if kind is None else (_UPPER if kind == _LOWER else _LOWER)


def _constant_value(t: Any) -> Any:
    """The value every element of a constant holds: a literal number or bool, or a term that
    fills a tensor with one (ones, zeros, full, scalar_tensor, or a copy of one); None when t is
    not such a constant. Through a cast only 0 and 1 (which every dtype keeps)."""
    if not isinstance(t, TermView):
        return t if isinstance(t, (bool, int, float)) else None
    op, args = t.op, t.args
    if op in ("ones", "ones_like", "aten.ones", "aten.ones_like"):
        return 1
    if op in ("zeros", "zeros_like", "aten.zeros", "aten.zeros_like"):
        return 0
    if op in ("full", "aten.full") and len(args) > 1 and not isinstance(args[1], TermView):
        return _constant_value(args[1])
    if op == "aten.scalar_tensor" and args and not isinstance(args[0], TermView):
        return _constant_value(args[0])
    if op in ("contiguous", "aten.clone", "aten.alias") and args:
        return _constant_value(args[0])
    if op in ("to", "aten._to_copy", "prims.convert_element_type") and args:
        v = _constant_value(args[0])
        return v if v is not None and not isinstance(v, bool) and v in (0, 1) else None
    return None


def _is_one(v: Any) -> bool:
    return v is True or (not isinstance(v, bool) and isinstance(v, (int, float)) and v == 1)


def _is_zero(v: Any) -> bool:
    return v is False or (not isinstance(v, bool) and isinstance(v, (int, float)) and v == 0)


def _all_true(t: Any) -> bool:
    """A term whose every element is 1 (or True): ones, ones_like, full with the value 1. (Exactly
    1, not just non-zero: a later cast to an integer dtype keeps 1 but turns 0.5 into 0.)"""
    return isinstance(t, TermView) and _is_one(_constant_value(t))


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Integer dtypes whose index arithmetic cannot wrap around at mask sizes (int8 and uint8 can).
_INDEX_DTYPES = (torch.int32, torch.int64)


def _index_form(t: Any) -> tuple[int, int, int] | None:
    """(a, b, c) when t holds the integer a*i + b*j + c at row i, column j of its last two dims
    (a 1-d t: b*j + c along its only dim), for index arithmetic built from ``prims.iota``,
    ``unsqueeze``, ``add`` and ``sub``: how ``tril``/``triu`` decompose in ATen graphs. None
    when that cannot be read off the term."""
    if _int(t):
        return (0, 0, t)
    if not isinstance(t, TermView) or t.shape is None or t.dtype not in _INDEX_DTYPES:
        return None
    op, args = t.op, t.args
    if op == "prims.iota" and len(args) > 2 and _int(args[1]) and _int(args[2]) and t.ndim == 1:
        return (0, args[2], args[1])  # iota(n, start=s, step=d)[j] = d*j + s
    if op in ("unsqueeze", "aten.unsqueeze") and len(args) > 1 and _int(args[1]) \
            and isinstance(args[0], TermView) and args[0].ndim == 1:
        base = _index_form(args[0])
        if base is None:
            return None
        # to (1, n): the index runs along the columns; to (n, 1): along the rows
        return (base[1], 0, base[2]) if args[1] % 2 == 1 else base
    if op in ("sub", "add", "aten.sub", "aten.add") and len(args) > 2 and _int(args[2]) and args[2] == 1:
        x, y = _operand_form(args[0], t), _operand_form(args[1], t)
        if x is None or y is None:
            return None
        sign = -1 if op.endswith("sub") else 1
        return (x[0] + sign * y[0], x[1] + sign * y[1], x[2] + sign * y[2])
    return None


def _operand_form(x: Any, t: TermView) -> tuple[int, int, int] | None:
    """The index form of an operand of elementwise op t, when it holds in t's dims: a dim the
    form depends on must not be broadcast (a size-1 iota repeated along a dim is not an index)."""
    f = _index_form(x)
    if f is None or not isinstance(x, TermView):
        return f
    if t.shape is None or len(t.shape) < 2:
        return None
    if f[0] != 0 and not (x.ndim >= 2 and _same_sizes(x.shape[-2:-1], t.shape[-2:-1])):
        return None
    if f[1] != 0 and not (x.ndim >= 1 and _same_sizes(x.shape[-1:], t.shape[-1:])):
        return None
    return f


_COMPARISONS = {"le": "le", "lt": "lt", "ge": "ge", "gt": "gt", "aten.le": "le", "aten.lt": "lt",
                "aten.ge": "ge", "aten.gt": "gt"}
_MIRRORED = {"le": "ge", "lt": "gt", "ge": "le", "gt": "lt"}


def _compared_triangle(t: TermView) -> str | None:
    """Kind of ``x <= y`` (or <, >=, >) over index forms: lower when it says j - i <= 0, strict
    upper when it says j - i >= 1, None otherwise."""
    cmp, args = _COMPARISONS[t.op], t.args
    if len(args) < 2:
        return None
    x, y = _operand_form(args[0], t), _operand_form(args[1], t)
    if x is None or y is None:
        return None
    a, b, c = x[0] - y[0], x[1] - y[1], x[2] - y[2]  # the predicate: a*i + b*j + c  cmp  0
    if (a, b) == (1, -1):
        a, b, c, cmp = -a, -b, -c, _MIRRORED[cmp]
    if (a, b) != (-1, 1):
        return None
    # j - i + c  cmp  0, that is j - i  cmp  -c; integers, so < k is <= k - 1 and > k is >= k + 1
    if cmp in ("le", "lt"):
        return _LOWER if -c - (cmp == "lt") == 0 else None
    return _UPPER if -c + (cmp == "gt") == 1 else None


def _keeps_last_two(x: Any, t: TermView) -> bool:
    """Whether x, an operand of elementwise op t, has t's last two sizes (is not broadcast there)."""
    return (isinstance(x, TermView) and x.shape is not None and t.shape is not None
            and len(x.shape) >= 2 and len(t.shape) >= 2 and _same_sizes(x.shape[-2:], t.shape[-2:]))


def _constant_triangle(tensor: Any) -> str | None:
    """Kind of a concrete mask (a ``get_attr`` buffer): every leading plane equal to the same
    top-left-anchored triangle."""
    if not isinstance(tensor, torch.Tensor) or tensor.ndim < 2 or tensor.is_meta:
        return None
    from torch._subclasses.fake_tensor import FakeTensor

    if isinstance(tensor, FakeTensor):
        return None
    if tensor.dtype != torch.bool and not bool(((tensor == 0) | (tensor == 1)).all()):
        return None  # only 0/1 masks keep their pattern through casts and comparisons
    rows, cols = tensor.shape[-2:]
    lower = torch.ones(rows, cols, dtype=torch.bool, device=tensor.device).tril()
    b = tensor != 0
    if bool((b == lower).all()):
        return _LOWER
    if bool((b == ~lower).all()):
        return _UPPER
    return None


def _index_keeps_anchor(idx: Any, ndim: int | None) -> bool:
    """An index that takes, in the last two dims, slices starting at 0 with step 1."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    if ndim is None:
        return False
    entries = [e for e in idx if e is not None]
    if any(e is Ellipsis for e in entries):
        k = entries.index(Ellipsis)
        before, after = entries[:k], entries[k + 1:]
        dims = list(range(len(before))) + list(range(ndim - len(after), ndim))
        entries = before + after
    else:
        dims = list(range(len(entries)))
    for d, e in zip(dims, entries):
        if d < ndim - 2:
            continue  # leading dims: every plane is the same triangle
        if not isinstance(e, slice) or e.start not in (None, 0) or e.step not in (None, 1):
            return False
    return True


def triangle_kind(t: Any, owner: torch.nn.Module | None = None) -> str | None:
    """"lower" when the mask (0/1 or boolean) is 1 exactly where j <= i in its last two dims,
    "strict-upper" when exactly where j > i, None when that cannot be proved."""
    if not isinstance(t, TermView):
        return None
    op, args = t.op, t.args
    if op == "get_attr":
        if isinstance(t, ParamTerm):
            return _constant_triangle(t.tensor)
        owner = owner or t.node.graph.owning_module
        return _constant_triangle(fetch_attr(owner, str(t.node.target))) if owner else None
    if op in ("tril", "aten.tril") and len(args) > 1 and _all_true(args[0]) and args[1] == 0:
        return _LOWER
    if op in ("triu", "aten.triu") and len(args) > 1 and _all_true(args[0]) and args[1] == 1:
        return _UPPER
    if op in ("to", "contiguous", "aten._to_copy", "aten.clone", "aten.alias", "prims.convert_element_type"):
        return triangle_kind(args[0], owner)
    if op in _COMPARISONS:
        return _compared_triangle(t)
    if op in ("logical_and", "aten.logical_and", "bitwise_and", "aten.bitwise_and") and len(args) > 1:
        for x, y in ((args[0], args[1]), (args[1], args[0])):
            if _all_true(y) and _keeps_last_two(x, t):
                return triangle_kind(x, owner)
        return None
    if op in ("where", "aten.where") and len(args) > 2 and _keeps_last_two(args[0], t) \
            and args[0].dtype == torch.bool:
        x, y = _constant_value(args[1]), _constant_value(args[2])
        if _is_one(x) and _is_zero(y):
            return triangle_kind(args[0], owner)
        if _is_zero(x) and _is_one(y):
            return _flip(triangle_kind(args[0], owner))
        return None
    if op in ("eq", "ne", "aten.eq", "aten.ne") and len(args) > 1 and not isinstance(args[1], TermView):
        inner = triangle_kind(args[0], owner)
        zero = args[1] == 0 or args[1] is False
        one = args[1] == 1 or args[1] is True
        if not (zero or one):
            return None
        flip = (op.endswith("eq") and zero) or (op.endswith("ne") and one)
        return _flip(inner) if flip else inner
    if op in ("logical_not", "aten.logical_not") or (
            op in ("bitwise_not", "aten.bitwise_not") and args and isinstance(args[0], TermView)
            and args[0].dtype == torch.bool):
        return _flip(triangle_kind(args[0], owner))
    if op in ("getitem", "aten.slice") and args:
        base = args[0]
        if op == "getitem":
            ok = isinstance(base, TermView) and _index_keeps_anchor(args[1], base.ndim)
        else:  # aten.slice(x, dim, start, end, step)
            nd = base.ndim if isinstance(base, TermView) else None
            dim = args[1] if len(args) > 1 else 0
            ok = nd is not None and isinstance(dim, int) and (
                (dim % nd) < nd - 2 or (args[2] in (None, 0) and args[4] in (None, 1)))
        return triangle_kind(base, owner) if ok else None
    if op in ("view", "reshape", "expand", "unsqueeze", "aten.view", "aten.reshape", "aten.expand",
              "aten.unsqueeze", "aten._unsafe_view") and args:
        base = args[0]
        if isinstance(base, TermView) and base.shape is not None and t.shape is not None \
                and len(base.shape) >= 2 and len(t.shape) >= 2 \
                and _same_sizes(base.shape[-2:], t.shape[-2:]):
            return triangle_kind(base, owner)
        return None
    return None


def _same_sizes(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    from .guards import eq3

    return eq3(tuple(a), tuple(b)) is True


def causal_mask(mask: Any, scores: Any) -> bool:
    """Guard function: ``mask`` (the condition of ``masked_fill(scores, mask, -inf)``) is provably
    the strict upper triangle over the last two dims of ``scores``, so that the fill leaves
    exactly what ``is_causal=True`` leaves. False whenever that cannot be proved (a mask that is
    a graph input, a shifted diagonal, an unknown shape)."""
    if not isinstance(mask, TermView) or not isinstance(scores, TermView):
        return False
    if mask.shape is None or scores.shape is None or len(mask.shape) < 2 or len(scores.shape) < 2:
        return False
    if not _same_sizes(mask.shape[-2:], scores.shape[-2:]):
        return False
    return triangle_kind(mask) == _UPPER


def causal_keep(keep: Any, scores: Any) -> bool:
    """Guard function: ``keep`` (the condition of ``where(keep, scores, -inf)``, True where a
    score is kept) is provably the lower triangle over the last two dims of ``scores``."""
    if not isinstance(keep, TermView) or not isinstance(scores, TermView):
        return False
    if keep.shape is None or scores.shape is None or len(keep.shape) < 2 or len(scores.shape) < 2:
        return False
    if not _same_sizes(keep.shape[-2:], scores.shape[-2:]):
        return False
    return triangle_kind(keep) == _LOWER


_VERY_NEGATIVE = -1e4  # exp(x - max) underflows to 0 below this, in every float dtype


def _very_negative(v: Any) -> bool:
    return not isinstance(v, (bool, TermView)) and isinstance(v, (int, float)) and v <= _VERY_NEGATIVE


def _constant_bias_is_causal(tensor: Any) -> bool:
    """A concrete additive mask: 0 on and below the diagonal, very negative above it."""
    from torch._subclasses.fake_tensor import FakeTensor

    if not isinstance(tensor, torch.Tensor) or isinstance(tensor, FakeTensor) or tensor.is_meta \
            or tensor.ndim < 2 or not tensor.is_floating_point():
        return False
    rows, cols = tensor.shape[-2:]
    lower = torch.ones(rows, cols, dtype=torch.bool, device=tensor.device).tril()
    return bool((tensor.masked_select(lower.expand(tensor.shape)) == 0).all()) and bool(
        (tensor.masked_select((~lower).expand(tensor.shape)) <= _VERY_NEGATIVE).all())


def _bias_is_causal(t: Any) -> bool:
    """Whether an additive mask is provably 0 where j <= i and very negative where j > i, in
    its last two dims (top-left anchored)."""
    if not isinstance(t, TermView):
        return False
    op, args = t.op, t.args
    if op == "get_attr":
        if isinstance(t, ParamTerm):
            return _constant_bias_is_causal(t.tensor)
        owner = t.node.graph.owning_module
        return owner is not None and _constant_bias_is_causal(fetch_attr(owner, str(t.node.target)))
    if op in ("triu", "aten.triu") and len(args) > 1 and args[1] == 1 and isinstance(args[0], TermView):
        base = args[0]
        return base.op in ("full", "aten.full") and len(base.args) > 1 and _very_negative(base.args[1])
    if op in ("where", "aten.where") and len(args) > 2 and _keeps_last_two(args[0], t) \
            and args[0].dtype == torch.bool:
        kind, x, y = triangle_kind(args[0]), _constant_value(args[1]), _constant_value(args[2])
        return ((kind == _UPPER and _very_negative(x) and _is_zero(y))
                or (kind == _LOWER and _is_zero(x) and _very_negative(y)))
    if op in ("to", "contiguous", "aten._to_copy", "aten.clone", "aten.alias"):
        return bool(args) and _bias_is_causal(args[0])
    if op == "getitem" and args and isinstance(args[0], TermView):
        return _index_keeps_anchor(args[1], args[0].ndim) and _bias_is_causal(args[0])
    if op in ("view", "reshape", "expand", "unsqueeze", "aten.view", "aten.reshape", "aten.expand",
              "aten.unsqueeze", "aten._unsafe_view") and args:
        base = args[0]
        return (isinstance(base, TermView) and base.shape is not None and t.shape is not None
                and len(base.shape) >= 2 and len(t.shape) >= 2
                and _same_sizes(base.shape[-2:], t.shape[-2:]) and _bias_is_causal(base))
    return False


def causal_bias(bias: Any, scores: Any) -> bool:
    """Guard function: ``bias`` (added to ``scores``) is provably 0 on and below the diagonal
    and -inf or very negative above it, over the last two dims of ``scores``: adding it leaves
    what ``is_causal=True`` leaves (``torch.full((T, T), -inf).triu(1)``, LLaMA's spelling)."""
    if not isinstance(bias, TermView) or not isinstance(scores, TermView):
        return False
    if bias.shape is None or scores.shape is None or len(bias.shape) < 2 or len(scores.shape) < 2:
        return False
    return _same_sizes(bias.shape[-2:], scores.shape[-2:]) and _bias_is_causal(bias)


def _register_guards() -> None:
    from .guards import guard_function

    for name, fn in (("causal_mask", causal_mask), ("causal_keep", causal_keep),
                     ("causal_bias", causal_bias)):
        guard_function(fn, name=name)


_register_guards()
