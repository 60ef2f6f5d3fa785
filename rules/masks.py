"""Mask proofs: guard functions that decide whether a mask is provably the causal triangle.

``causal_mask(mask, scores)``, ``causal_keep(keep, scores)`` and ``causal_bias(bias,
scores)`` read a mask's term (comparisons of index ranges, ``tril``/``triu``, ``where``,
casts, constant buffers) and answer True only when the triangle is proved; anything they
cannot read is "not proved". :func:`register` makes them available to patterns; the standard
attention rules call it before loading their patterns.
"""

from __future__ import annotations

from typing import Any

import torch

from pypm.graph import ParamTerm, fetch_attr
from pypm.lang import TermView, guard_function

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
    from pypm.lang import eq3

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


def _very_negative(v: Any) -> bool:
    """-inf: the only value that masks a score whatever the score is. (A finite value, however
    negative, loses to scores lower still: -1e4 added to scores of +2e4 leaves them kept.)"""
    return not isinstance(v, (bool, TermView)) and isinstance(v, (int, float)) and v == float("-inf")


def _constant_bias_is_causal(tensor: Any) -> bool:
    """A concrete additive mask: 0 on and below the diagonal, -inf above it."""
    from torch._subclasses.fake_tensor import FakeTensor

    if not isinstance(tensor, torch.Tensor) or isinstance(tensor, FakeTensor) or tensor.is_meta \
            or tensor.ndim < 2 or not tensor.is_floating_point():
        return False
    rows, cols = tensor.shape[-2:]
    lower = torch.ones(rows, cols, dtype=torch.bool, device=tensor.device).tril()
    return bool((tensor.masked_select(lower.expand(tensor.shape)) == 0).all()) and bool(
        torch.isneginf(tensor.masked_select((~lower).expand(tensor.shape))).all())


def _bias_is_causal(t: Any) -> bool:
    """Whether an additive mask is provably 0 where j <= i and -inf where j > i, in its last two
    dims (top-left anchored)."""
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
    and -inf above it, over the last two dims of ``scores``: adding it leaves what
    ``is_causal=True`` leaves (``torch.full((T, T), -inf).triu(1)``, LLaMA's spelling)."""
    if not isinstance(bias, TermView) or not isinstance(scores, TermView):
        return False
    if bias.shape is None or scores.shape is None or len(bias.shape) < 2 or len(scores.shape) < 2:
        return False
    return _same_sizes(bias.shape[-2:], scores.shape[-2:]) and _bias_is_causal(bias)


GUARDS = (("causal_mask", causal_mask), ("causal_keep", causal_keep), ("causal_bias", causal_bias))


def register() -> None:
    """Register the mask proofs as guard functions (idempotent)."""
    for name, fn in GUARDS:
        guard_function(fn, name=name)


__all__ = ["GUARDS", "causal_bias", "causal_keep", "causal_mask", "register", "triangle_kind"]
