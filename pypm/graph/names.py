"""Canonical operator names of graph nodes (LANGUAGE.md §1).

Patterns and graphs meet on canonical names: at torch level ``x @ y``, ``torch.matmul(x, y)``
and ``x.matmul(y)`` are all ``matmul``, common modules (``nn.Linear``, ``nn.Softmax``, ...)
their functional form, ``x.float()`` is ``to``; at ATen level an OpOverload is named by its
packet (``aten.bmm``). The tables behind this are in :mod:`pypm.lang.schema`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx

from ..lang import schema

Node = torch.fx.Node


def callable_key(target: Any) -> str:
    mod = getattr(target, "__module__", None) or ""
    return f"{mod}.{getattr(target, '__name__', '')}"


def is_torch_callable(target: Any) -> bool:
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
        if target in DTYPE_METHODS:
            return "to"  # x.float(), x.bool(), ... are x.to(dtype)
        return schema.canonical_name(str(target))
    if kind == "call_module":
        mod = submodule(owner, str(target))
        if mod is not None:
            conv = MODULES.get(type(mod))
            if conv is not None:
                return conv[0]
            return type(mod).__name__
        return str(target)
    return kind  # placeholder, get_attr, output


_FUNCTION_NAMES: dict[Any, str] = {}

# Tensor methods that convert the dtype: term ``to(x, dtype)``.
DTYPE_METHODS: dict[str, torch.dtype] = {
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
    elif is_torch_callable(target):
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


def submodule(owner: torch.nn.Module | None, qualname: str) -> Any:
    if owner is None:
        return None
    try:
        return owner.get_submodule(qualname)
    except AttributeError:
        return None


# Modules seen as their functional form: class -> (name, function(module, qualname, inputs)).
# Parameters become ParamTerm values (made by the view, one per parameter).
MODULES: dict[type, tuple[str, Callable[[Any, str, tuple[Any, ...]], tuple[Any, ...]]]] = {
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



def fetch_attr(owner: torch.nn.Module, qual: str) -> Any:
    """The value behind a ``get_attr`` target (None if absent)."""
    obj: Any = owner
    for part in qual.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


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

