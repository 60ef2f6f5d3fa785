"""Operator schemas: canonical torch-level operator names and their argument names.

owner: fx (the parser calls only :func:`pattern_op_name`, :func:`arg_names` and :func:`defaults`).

Patterns and graphs meet on *canonical names*: ``x @ y``, ``torch.matmul(x, y)`` and
``x.matmul(y)`` are all ``matmul``. Keyword arguments are put in schema position (and defaults
filled in) on both sides, so ``softmax(x, dim=-1)`` in a pattern matches ``F.softmax(x, -1)`` in
a graph. ATen operators keep their namespace: ``aten.bmm``, ``aten._softmax``.
"""

from __future__ import annotations

from typing import Any

# name -> (argument names, defaults of the trailing arguments). Names follow torch's Python API.
# A default of _REQUIRED marks an argument that has none.
_REQUIRED: Any = object()

_TABLE: dict[str, tuple[tuple[str, ...], tuple[Any, ...]]] = {
    # linear algebra
    "matmul": (("input", "other"), ()),
    "mm": (("input", "mat2"), ()),
    "bmm": (("input", "mat2"), ()),
    "linear": (("input", "weight", "bias"), (None,)),
    "baddbmm": (("input", "batch1", "batch2", "beta", "alpha"), (1, 1)),
    # arithmetic
    "add": (("input", "other", "alpha"), (1,)),
    "sub": (("input", "other", "alpha"), (1,)),
    "mul": (("input", "other"), ()),
    "div": (("input", "other", "rounding_mode"), (None,)),
    "neg": (("input",), ()),
    "pow": (("input", "exponent"), ()),
    "sqrt": (("input",), ()),
    "rsqrt": (("input",), ()),
    "exp": (("input",), ()),
    "reciprocal": (("input",), ()),
    "mean": (("input", "dim", "keepdim", "dtype"), (None, False, None)),
    "sum": (("input", "dim", "keepdim", "dtype"), (None, False, None)),
    "amax": (("input", "dim", "keepdim"), ((), False)),
    "var": (("input", "dim", "unbiased", "keepdim"), (None, True, False)),
    # activations and normalisation
    "softmax": (("input", "dim", "dtype"), (None,)),
    "log_softmax": (("input", "dim", "dtype"), (None,)),
    "relu": (("input",), ()),
    "gelu": (("input", "approximate"), ("none",)),
    "silu": (("input",), ()),
    "sigmoid": (("input",), ()),
    "tanh": (("input",), ()),
    "dropout": (("input", "p", "training", "inplace"), (0.5, True, False)),
    "layer_norm": (("input", "normalized_shape", "weight", "bias", "eps"), (None, None, 1e-5)),
    "rms_norm": (("input", "normalized_shape", "weight", "eps"), (None, None)),
    # layout
    "transpose": (("input", "dim0", "dim1"), ()),
    "permute": (("input", "dims"), ()),
    "view": (("input", "size"), ()),
    "reshape": (("input", "shape"), ()),
    "expand": (("input", "size"), ()),
    "contiguous": (("input",), ()),
    "unsqueeze": (("input", "dim"), ()),
    "squeeze": (("input", "dim"), (None,)),
    "flatten": (("input", "start_dim", "end_dim"), (0, -1)),
    "to": (("input", "dtype"), ()),
    "type_as": (("input", "other"), ()),
    "float": (("input",), ()),
    "half": (("input",), ()),
    "getitem": (("input", "index"), ()),
    "size": (("input", "dim"), (None,)),
    "unflatten": (("input", "dim", "sizes"), ()),
    "split": (("input", "split_size", "dim"), (0,)),
    "chunk": (("input", "chunks", "dim"), (0,)),
    "cat": (("tensors", "dim"), (0,)),
    "embedding": (("input", "weight"), ()),
    # comparisons and logic (masks)
    "eq": (("input", "other"), ()),
    "ne": (("input", "other"), ()),
    "lt": (("input", "other"), ()),
    "le": (("input", "other"), ()),
    "gt": (("input", "other"), ()),
    "ge": (("input", "other"), ()),
    "logical_not": (("input",), ()),
    "bitwise_not": (("input",), ()),
    "logical_and": (("input", "other"), ()),
    "bitwise_and": (("input", "other"), ()),
    "bitwise_or": (("input", "other"), ()),
    # factories (size as one tuple; dtype kept, device/layout dropped)
    "ones": (("size", "dtype"), (None,)),
    "zeros": (("size", "dtype"), (None,)),
    "full": (("size", "fill_value", "dtype"), (None,)),
    "ones_like": (("input", "dtype"), (None,)),
    "zeros_like": (("input", "dtype"), (None,)),
    "arange": (("start", "end", "step"), (None, 1)),
    # masking
    "masked_fill": (("input", "mask", "value"), ()),
    "where": (("condition", "input", "other"), ()),
    "tril": (("input", "diagonal"), (0,)),
    "triu": (("input", "diagonal"), (0,)),
    # fused targets
    "scaled_dot_product_attention": (
        ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"),
        (None, 0.0, False, None, False)),
}

# Module prefixes that name the same operator as the bare name, longest first.
_PREFIXES = ("torch.nn.functional.", "torch.Tensor.", "torch.special.", "torch.", "F.", "Tensor.")


def pattern_op_name(dotted: str) -> str:
    """The canonical name of an operator as written in a pattern: ``torch.matmul`` → ``matmul``,
    ``F.softmax`` → ``softmax``, ``torch.ops.aten.bmm`` → ``aten.bmm``; an overload named in a
    pattern (``aten.mul.Tensor``) is dropped, since graph terms are named by overload packet."""
    if dotted.startswith("torch.ops."):
        dotted = dotted[len("torch.ops."):]
    if dotted.startswith("aten.") or dotted.startswith("prims."):
        return ".".join(dotted.split(".")[:2])
    for prefix in _PREFIXES:
        if dotted.startswith(prefix):
            return dotted[len(prefix):]
    return dotted


def _aten_schema(name: str) -> Any:
    """The torch schema of ``aten.X`` or ``aten.X.overload``; with no overload named, the widest
    functional one (``aten.sum`` is ``aten.sum.dim_IntList``: graphs name ops by packet, so
    keyword arguments in patterns are placed by the overload that has them all)."""
    parts = name.split(".")
    if len(parts) not in (2, 3) or parts[0] != "aten":
        return None
    try:
        import torch

        packet = getattr(torch.ops.aten, parts[1])
        if len(parts) == 3:
            return getattr(packet, parts[2])._schema
        return _widest_overload(packet)
    except (AttributeError, RuntimeError, ImportError):
        return None


def _widest_overload(packet: Any) -> Any:
    """The schema of the functional overload with the most arguments (on ties, one on tensors,
    whose first argument is ``self``, then ``default``)."""
    best, best_key = None, None
    for name in packet.overloads():
        sch = getattr(packet, name)._schema
        args = sch.arguments
        if name.endswith("out") or sch.is_mutable or not args:
            continue
        key = (len(args), args[0].name == "self", name == "default")
        if best_key is None or key > best_key:
            best, best_key = sch, key
    return best


def arg_names(op: str) -> tuple[str, ...] | None:
    """Argument names of operator ``op`` in schema order, or None when unknown."""
    if op in _TABLE:
        return _TABLE[op][0]
    schema = _aten_schema(op)
    if schema is not None:
        return tuple(a.name for a in schema.arguments)
    return None


def defaults(op: str) -> tuple[Any, ...]:
    """Defaults of the trailing arguments of ``op`` (empty when unknown)."""
    if op in _TABLE:
        return _TABLE[op][1]
    schema = _aten_schema(op)
    if schema is None:
        return ()
    out: list[Any] = []
    for a in reversed(schema.arguments):
        if not a.has_default_value():
            break
        out.append(a.default_value)
    return tuple(reversed(out))


# ---------------------------------------------------------------------------------------------
# Graph side: canonical names of fx targets (used by pypm.fx)

# Dimension arguments, normalised in graph terms so that spelling does not matter: "neg" puts a
# dim in negative form (``softmax(x, 3)`` on a 4-d x is ``softmax(x, -1)``), "pos" in
# non-negative form (``permute(x, (0, 2, 1, 3))``). op -> (mode, argument positions).
DIM_ARGS: dict[str, tuple[str, tuple[int, ...]]] = {
    "softmax": ("neg", (1,)), "log_softmax": ("neg", (1,)), "transpose": ("neg", (1, 2)),
    "sum": ("neg", (1,)), "mean": ("neg", (1,)), "amax": ("neg", (1,)), "var": ("neg", (1,)),
    "size": ("neg", (1,)), "split": ("neg", (2,)), "chunk": ("neg", (2,)),
    "permute": ("pos", (1,)),
    "aten._softmax": ("neg", (1,)), "aten._log_softmax": ("neg", (1,)),
    "aten.softmax": ("neg", (1,)), "aten.transpose": ("neg", (1, 2)),
    "aten.amax": ("neg", (1,)), "aten.sum": ("neg", (1,)), "aten.mean": ("neg", (1,)),
    "aten.permute": ("pos", (1,)),
}

# Python operators (``operator.X`` targets) -> canonical name.
OPERATORS: dict[str, str] = {
    "matmul": "matmul", "mul": "mul", "truediv": "div", "add": "add", "sub": "sub",
    "neg": "neg", "pow": "pow", "getitem": "getitem", "eq": "eq", "ne": "ne", "lt": "lt",
    "le": "le", "gt": "gt", "ge": "ge", "invert": "bitwise_not", "and_": "bitwise_and",
    "or_": "bitwise_or", "floordiv": "floordiv", "mod": "remainder", "pos": "positive",
}

# Method and function spellings that differ from the canonical name.
ALIASES: dict[str, str] = {
    "__matmul__": "matmul", "multiply": "mul", "divide": "div", "true_divide": "div",
    "subtract": "sub", "negative": "neg", "__getitem__": "getitem", "swapaxes": "transpose",
    "swapdims": "transpose",
}

# Positional argument names of particular callables whose signature differs from the canonical
# one (``F.softmax(input, dim, _stacklevel, dtype)``), keyed by "module.name".
SIGNATURES: dict[str, tuple[str, ...]] = {
    "torch.nn.functional.softmax": ("input", "dim", "_stacklevel", "dtype"),
    "torch.nn.functional.log_softmax": ("input", "dim", "_stacklevel", "dtype"),
    "torch.nn.functional.gelu": ("input", "approximate"),
    "torch.embedding": ("weight", "input"),  # the ATen order, not F.embedding's
}

# Methods and factories that take sizes as varargs (``x.view(B, T, C)``) or as one sequence.
VARARG_SIZES: dict[str, int] = {
    "view": 1, "reshape": 1, "expand": 1, "permute": 1, "repeat": 1, "ones": 0, "zeros": 0,
    "empty": 0, "rand": 0, "randn": 0,
}

# Impure operators: random, in-place or with side effects. Graph terms of these are equal only
# to themselves (never merged by CSE) and a rewrite never consumes them.
RANDOM = frozenset({"rand", "randn", "randint", "rand_like", "randn_like", "randint_like",
                    "bernoulli", "multinomial", "normal", "poisson", "randperm", "empty",
                    "empty_like", "native_dropout", "aten.native_dropout", "aten.bernoulli",
                    "aten.rand", "aten.randn", "aten.rand_like", "aten.randn_like",
                    "aten.empty", "aten.empty_like"})


def canonical_name(name: str) -> str:
    """The canonical name of a torch function, ``torch.Tensor`` method or ``operator`` function,
    given its bare name (``__matmul__`` → ``matmul``)."""
    return ALIASES.get(name, name)


def is_random(op: str) -> bool:
    """True for operators whose result differs from call to call (dropout: see pypm.fx, which
    treats it as pure when it is switched off)."""
    return op in RANDOM or (op.endswith("dropout") and not op.startswith("aten.native"))


def is_inplace(op: str) -> bool:
    """True for in-place spellings (``add_``, ``aten.add_``, ``operator.iadd``)."""
    base = op.rsplit(".", 1)[-1]
    return (base.endswith("_") and not base.endswith("__")) or base in (
        "iadd", "isub", "imul", "itruediv", "imatmul", "setitem")
