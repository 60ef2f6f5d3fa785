"""Types of graph values: shapes, dtypes and devices from node metadata, and example values
for nodes that have none (LANGUAGE.md §1: every term has a type visible to guards).

Types come from ``node.meta["val"]`` (or dynamo's ``example_value``, or ShapeProp's
``tensor_meta``), computed with fake tensors by :func:`propagate_types` when missing; symbolic
sizes are sympy expressions, never specialised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.fx

from .names import fetch_attr

Node = torch.fx.Node


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


def tensor_type(v: Any) -> tuple[tuple[Any, ...] | None, Any, Any]:
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



def has_types(graph: torch.fx.Graph) -> bool:
    """True when the graph's inputs carry example values (so shapes and dtypes are known)."""
    phs = [n for n in graph.nodes if n.op == "placeholder"]
    return all(meta_value(n) is not None for n in phs)


def propagate_types(gm: torch.fx.GraphModule, example_inputs: Iterable[Any]) -> None:
    """Record ``meta["val"]`` on every node by running the graph on fake tensors made from the
    example inputs (real tensors or fake ones; symbolic sizes stay symbolic; ``requires_grad``
    kept)."""
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    class Prop(FakeTensorProp):
        """FakeTensorProp records detached values; a value that requires grad keeps saying so
        here (the gradient check of a rewrite reads it)."""

        def run_node(self, n: Node) -> Any:
            result = super().run_node(n)
            val = n.meta.get("val")
            if (isinstance(result, torch.Tensor) and result.requires_grad
                    and isinstance(val, torch.Tensor) and not val.requires_grad):
                n.meta["val"] = val.requires_grad_(True)
            return result

    inputs = list(example_inputs)
    mode = next((a.fake_mode for a in inputs if isinstance(a, FakeTensor)), None)
    if mode is None:
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        inputs = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in inputs]
    Prop(gm, mode).propagate_dont_convert_inputs(*inputs)


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
            v = fetch_attr(owner, str(n.target))
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
        if _is_tensor_metadata(v):  # ShapeProp's record: shape, dtype and strides, no device
            with mode:
                return torch.empty_strided(tuple(v.shape), tuple(v.stride), dtype=v.dtype,
                                           device=getattr(v, "device", "cpu"))
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
        return fetch_attr(owner, str(node.target))
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
        if _is_tensor_metadata(v):
            return ("M", tuple(v.shape), v.dtype, tuple(v.stride))
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


def _is_tensor_metadata(v: Any) -> bool:
    """Whether a value is ShapeProp's ``TensorMetadata``: a named tuple that stands for one
    tensor (so it is a leaf, never a sequence of values to map over or rebuild)."""
    return isinstance(v, tuple) and type(v).__name__ == "TensorMetadata" and hasattr(v, "dtype") \
        and hasattr(v, "shape")


def _map_values(a: Any, f: Callable[[Any], Any]) -> Any:
    """``f`` applied to each value in nested lists, tuples and dicts (a ``TensorMetadata`` is one
    value)."""
    if _is_tensor_metadata(a):
        return f(a)
    if isinstance(a, (list, tuple)):
        return type(a)(_map_values(x, f) for x in a)
    if isinstance(a, dict):
        return {k: _map_values(v, f) for k, v in a.items()}
    return f(a)

