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

# ---------------------------------------------------------------------------------------------
# Purity (graph side: pypm.graph.effects). Allow-lists by canonical name: an operator that is in
# none of them is of unknown effect (it may write every tensor it is given and change global
# state), so CSE never merges it and never merges across it. ATen operators are judged by their
# schemas and tags instead; these lists are for torch-level graphs (symbolic_trace, dynamo).

# Functions, methods and Python operators that compute a fresh value from their arguments and do
# nothing else. Some are pure only for some arguments (``inplace=True``, ``out=``,
# ``training=True`` for the random ones): pypm.graph.effects checks those per call.
FUNCTIONAL = frozenset({
    # arithmetic and pointwise math
    "add", "sub", "rsub", "mul", "div", "floor_divide", "floordiv", "remainder", "fmod", "neg",
    "pow", "float_power", "sqrt", "rsqrt", "square", "exp", "exp2", "expm1", "log", "log2",
    "log10", "log1p", "reciprocal", "abs", "sign", "sgn", "signbit", "sin", "cos", "tan", "asin",
    "acos", "atan", "atan2", "arctan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
    "sigmoid", "logit", "erf", "erfc", "erfinv", "floor", "ceil", "round", "trunc", "frac",
    "clamp", "clamp_min", "clamp_max", "clip", "maximum", "minimum", "fmax", "fmin", "lerp",
    "addcmul", "addcdiv", "hypot", "xlogy", "nan_to_num", "copysign", "deg2rad", "rad2deg",
    "lgamma", "digamma", "polygamma", "i0", "sinc", "logaddexp", "logaddexp2", "heaviside",
    "conj_physical", "angle", "polar", "complex",
    # comparisons and logic
    "eq", "ne", "lt", "le", "gt", "ge", "equal", "isclose", "allclose", "isnan", "isinf",
    "isfinite", "isposinf", "isneginf", "isreal", "logical_not", "logical_and", "logical_or",
    "logical_xor", "bitwise_not", "bitwise_and", "bitwise_or", "bitwise_xor",
    "bitwise_left_shift", "bitwise_right_shift", "and_", "or_", "xor", "lshift", "rshift",
    # reductions and scans
    "sum", "mean", "nansum", "nanmean", "prod", "amax", "amin", "max", "min", "aminmax", "argmax",
    "argmin", "var", "std", "var_mean", "std_mean", "norm", "logsumexp", "cumsum", "cumprod",
    "cummax", "cummin", "logcumsumexp", "any", "all", "count_nonzero", "median", "nanmedian",
    "mode", "quantile", "nanquantile", "sort", "argsort", "msort", "topk", "kthvalue", "unique",
    "unique_consecutive", "bincount", "histc", "bucketize", "searchsorted", "nonzero",
    "dist", "cdist", "diff",
    # linear algebra
    "matmul", "mm", "bmm", "mv", "dot", "vdot", "inner", "outer", "ger", "addmm", "addmv",
    "addbmm", "baddbmm", "addr", "einsum", "tensordot", "kron", "cross", "linear", "bilinear",
    "chain_matmul", "trace", "tril", "triu", "cholesky", "inverse", "det", "logdet",
    # building and combining tensors (fresh results)
    "cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack",
    "where", "masked_fill", "masked_scatter", "masked_select", "index_select", "gather",
    "scatter", "scatter_add", "scatter_reduce", "index_add", "index_copy", "index_fill",
    "index_put", "index_reduce", "take", "take_along_dim", "put", "repeat", "repeat_interleave",
    "tile", "flip", "fliplr", "flipud", "roll", "rot90", "clone", "fill", "block_diag",
    "cartesian_prod", "combinations", "meshgrid", "broadcast_tensors", "atleast_1d",
    "atleast_2d", "atleast_3d", "diag", "diag_embed", "diagflat", "vander", "cov", "corrcoef",
    "one_hot", "pad", "constant_pad_nd",
    # neural-network functions
    "softmax", "log_softmax", "softmin", "relu", "relu6", "gelu", "silu", "mish", "elu", "selu",
    "celu", "leaky_relu", "hardtanh", "hardswish", "hardsigmoid", "hardshrink", "softshrink",
    "tanhshrink", "threshold", "softplus", "softsign", "logsigmoid", "glu", "prelu", "rrelu",
    "layer_norm", "rms_norm", "group_norm", "batch_norm", "local_response_norm", "normalize",
    "embedding", "scaled_dot_product_attention", "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "max_pool1d", "max_pool2d", "max_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "lp_pool1d", "lp_pool2d", "interpolate", "upsample", "pixel_shuffle",
    "pixel_unshuffle", "cosine_similarity", "pairwise_distance", "pdist", "cross_entropy",
    "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "kl_div", "cosine_embedding_loss", "margin_ranking_loss",
    "soft_margin_loss", "hinge_embedding_loss", "dropout", "alpha_dropout", "feature_alpha_dropout",
    "dropout1d", "dropout2d", "dropout3d", "feature_dropout",
    # sizes, strides and symbolic integers
    "size", "dim", "ndimension", "stride", "numel", "nelement", "element_size", "is_contiguous",
    "is_floating_point", "is_complex", "get_device", "storage_offset", "sym_int", "sym_float",
    "sym_max", "sym_min", "sym_not", "sym_sum", "sym_ite", "_sym_sqrt", "sym_sqrt",
    "positive_or_zero",
    # factories of tensors with defined contents (fresh: merged like any value nobody writes)
    "zeros", "ones", "full", "arange", "range", "linspace", "logspace", "eye", "zeros_like",
    "ones_like", "full_like", "new_zeros", "new_ones", "new_full", "scalar_tensor",
    "tril_indices", "triu_indices",
})

# Of those, the ones whose result may share storage with an argument: views, and ops that may
# return their input itself (``contiguous``, ``reshape``, ``to``; dropout switched off). A value
# that may alias a tensor some node writes is never merged.
ALIASING = frozenset({
    "view", "view_as", "reshape", "reshape_as", "transpose", "t", "permute", "expand",
    "expand_as", "broadcast_to", "unsqueeze", "squeeze", "flatten", "unflatten", "ravel",
    "contiguous", "to", "type", "type_as", "cpu", "cuda", "float", "half", "double", "bfloat16",
    "bool", "int", "long", "getitem", "split", "split_with_sizes", "chunk", "unbind",
    "tensor_split", "hsplit", "vsplit", "dsplit", "narrow", "select", "slice", "diagonal",
    "movedim", "moveaxis", "as_strided", "unfold", "detach", "alias", "real", "imag",
    "view_as_real", "view_as_complex", "resolve_conj", "resolve_neg", "conj", "positive",
    "align_as", "adjoint", "mT", "T", "H", "mH", "data", "dropout", "alpha_dropout",
    "feature_alpha_dropout", "dropout1d", "dropout2d", "dropout3d", "feature_dropout",
})

# Operators that change nothing but whose results are never merged: uninitialised memory,
# tensor data read into Python values, and checks.
OPAQUE = frozenset({
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "item", "tolist",
    "numpy", "_assert", "_check", "_check_is_size", "_check_index", "_check_value",
    "_check_type", "_check_with",
})

# Operators whose result differs from call to call. Dropout and rrelu are random only while
# training with p > 0 (pypm.graph.effects reads their arguments).
RANDOM = frozenset({"rand", "randn", "randint", "rand_like", "randn_like", "randint_like",
                    "bernoulli", "multinomial", "normal", "poisson", "randperm", "empty",
                    "empty_like", "native_dropout", "aten.native_dropout", "aten.bernoulli",
                    "aten.rand", "aten.randn", "aten.rand_like", "aten.randn_like",
                    "aten.empty", "aten.empty_like", "uniform", "exponential", "geometric",
                    "cauchy", "log_normal", "random", "gumbel_softmax", "fractional_max_pool2d",
                    "fractional_max_pool3d", "rrelu", "dropout1d", "dropout2d", "dropout3d",
                    "feature_dropout", "feature_alpha_dropout", "alpha_dropout"})

# Python's in-place operators (``operator.iadd``, ``x.__iadd__``) and item assignment.
_INPLACE_OPERATORS = frozenset({
    "iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow", "imatmul", "iand", "ior",
    "ixor", "ilshift", "irshift", "setitem", "delitem", "__iadd__", "__isub__", "__imul__",
    "__itruediv__", "__ifloordiv__", "__imod__", "__ipow__", "__imatmul__", "__iand__",
    "__ior__", "__ixor__", "__ilshift__", "__irshift__", "__setitem__", "__delitem__"})


def canonical_name(name: str) -> str:
    """The canonical name of a torch function, ``torch.Tensor`` method or ``operator`` function,
    given its bare name (``__matmul__`` → ``matmul``)."""
    return ALIASES.get(name, name)


def is_random(op: str) -> bool:
    """True for operators whose result differs from call to call (dropout and rrelu: see
    pypm.graph.effects, which treats them as deterministic when they are switched off)."""
    return op in RANDOM or (op.endswith("dropout") and not op.startswith("aten.native"))


def is_inplace(op: str) -> bool:
    """True for in-place spellings (``add_``, ``aten.add_``, ``operator.iadd``, ``x[i] = y``):
    each writes its first argument."""
    base = op.rsplit(".", 1)[-1]
    return (base.endswith("_") and not base.endswith("__")) or base in _INPLACE_OPERATORS


# dtypes that may be written bare in patterns and guards (`float16`) as well as `torch.float16`.
DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64", "half", "int8", "int16", "int32",
               "int64", "uint8", "complex64", "complex128", "float8_e4m3fn", "float8_e5m2")


def dtype_named(name: str, *, bare: bool = True) -> Any:
    """The torch dtype a name denotes: ``torch.float16``, and with ``bare`` one of
    :data:`DTYPE_NAMES` written alone (``float16``); None for any other name. torch is imported
    only for a name that may be a dtype."""
    if name.startswith("torch."):
        short = name[len("torch."):]
    elif bare and name in DTYPE_NAMES:
        short = name
    else:
        return None
    import torch

    d = getattr(torch, short, None)
    return d if isinstance(d, torch.dtype) else None
