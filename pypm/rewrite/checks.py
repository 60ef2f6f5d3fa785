"""Checks of what a rule body built, before it is kept (ARCHITECTURE.md, "Rewriting
semantics"): the new nodes are well formed (what ``graph.lint()`` would check), write nothing
that existed before, and the replacement has the root's device, shape, dtype and (where later
ops may rely on it) layout.

Contract violations (a node on a dead or later value, a write to an existing value, another
device) are :class:`~pypm.errors.RewriteError` naming the rule; a replacement whose type does
not fit is a skipped match with the reason.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from ..errors import RewriteError
from ..graph.cse import TargetNames
from ..graph.effects import ALL, UNKNOWN, referenced
from ..graph.graph_effects import bases
from ..graph.names import fetch_attr, node_source
from ..graph.types import infer_value, meta_value, size_value
from .outcome import Skipped
from .report import Hazard
from .rule import Rule

Node = torch.fx.Node


def lint_new(rule: Rule, new: list[Node], out: Node, root: Node,
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


def check_writes(rule: Rule, new: list[Node], root: Node, names: TargetNames) -> None:
    """A body may write its own temporaries, never a value that existed before it ran (an
    in-place method, ``out=``, ``x[i] = y``, a mutable ATen op on a bound value or a view of
    one): the region's reads and every later use would see the write."""
    fresh = set(new)
    for n in new:
        writes = names.effect(n).writes
        if not writes or writes is ALL:
            continue  # writes nothing, or a call of unknown effect: not something a body's torch calls record
        for t in referenced(n, writes):
            old = [b for b in bases(t, names.effect) if b not in fresh]
            if old:
                raise RewriteError(
                    f"rule {rule.name} writes %{old[0].name} in place ({node_source(n)}) at "
                    f"%{root.name}: a rule body may not change values that exist in the graph",
                    rule.span, pattern=rule.name)


def _show_type(v: Any) -> str:
    shape = tuple(size_value(s) for s in v.shape) if hasattr(v, "shape") else None
    return f"{getattr(v, 'dtype', '?')}{list(shape) if shape is not None else ''}"


def _give_values(new: list[Node], root: Node) -> Skipped | None:
    """Example values for the new nodes (from their inputs'), under the root's meta key."""
    owner = root.graph.owning_module
    key = "val" if "val" in root.meta or "example_value" not in root.meta else "example_value"
    for n in new:
        if meta_value(n) is None:
            try:
                val = infer_value(n, owner)
            except Exception as e:
                return Skipped.unsafe(Hazard.TYPE, "the replacement fails on the example values: "
                                      f"{type(e).__name__}: {e}")
            if val is not None:
                n.meta[key] = val
    return None


def fit_replacement(rule: Rule, new: list[Node], out: Node, root: Node,
                    names: TargetNames) -> Node | Skipped:
    """The replacement to use for the root, checked against the root's example value: the
    same device (else a RewriteError: a body must not move values), shape and dtype (else
    skipped), and, where a later op reads the root's strides (:func:`layout_matters`) and the
    root's value is contiguous, contiguous too: ``.contiguous()`` (in
    an ATen graph, a contiguous ``aten.clone``) is appended when the replacement's strides
    differ (a later ``.view`` relies on them); a
    non-contiguous root whose strides the replacement does not have is skipped."""
    failed = _give_values(new, root)
    if failed is not None:
        return failed
    want, got = meta_value(root), meta_value(out)
    if want is not None and not hasattr(want, "shape"):
        return Skipped.unsafe(Hazard.TYPE, "the root's value is not a tensor, so the replacement "
                              "cannot be checked")
    if want is None:
        return Skipped.unsafe(Hazard.TYPE, "the graph has no shape information to check the "
                              "replacement against (pass example_inputs to RewritePass.apply)")
    if got is None or not hasattr(got, "shape"):
        return Skipped.unsafe(Hazard.TYPE, "could not compute the replacement's shape (it is not a tensor)")
    wd, gd = getattr(want, "device", None), getattr(got, "device", None)
    if wd is not None and gd is not None and wd != gd:
        raise RewriteError(f"rule {rule.name} returned a value on {gd} for %{root.name}, which is "
                           f"on {wd}: a rule body may not move values between devices",
                           rule.span, pattern=rule.name)
    ws, gs = tuple(want.shape), tuple(got.shape)
    if not (want.dtype == got.dtype and ws == gs and all(type(d) is int for d in ws)):
        from ..lang.guards import eq3

        ws = tuple(size_value(s) for s in ws)
        gs = tuple(size_value(s) for s in gs)
        if eq3(ws, gs) is not True or want.dtype != got.dtype:
            return Skipped.unsafe(Hazard.TYPE, f"the replacement has type {_show_type(got)} but the "
                                  f"root has {_show_type(want)}")
    return _fit_layout(want, got, out, root, names)


def strides(v: Any) -> tuple[Any, ...] | None:
    """The strides of an example value (sizes as ints or sympy expressions), None when it
    records none (``tensor_meta`` without strides)."""
    try:
        return tuple(size_value(s) for s in v.stride())
    except (AttributeError, TypeError, RuntimeError):
        st = getattr(v, "stride", None)
        return tuple(size_value(s) for s in st) if isinstance(st, tuple) else None


def same_layout(shape: tuple[Any, ...], a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether two stride tuples lay out ``shape`` alike (dims of size 1 do not count)."""
    return all(x == y for d, x, y in zip(shape, a, b) if d != 1)


def contiguous_strides(shape: tuple[Any, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    step: Any = 1
    for d in reversed(shape):
        out.append(step)
        step = step * d
    return tuple(reversed(out))


# Ops whose result depends on the strides of their input (a view fails on a layout it cannot
# express; the others read the layout itself).
STRIDE_READERS = frozenset({"view", "view_as", "_unsafe_view", "as_strided", "stride", "data_ptr",
                            "is_contiguous", "storage_offset", "untyped_storage"})
# Ops whose result's layout does not follow their input's: contiguous results (``contiguous``,
# products, reductions) and ``reshape`` (its values never depend on its input's strides; it
# copies when it must). Every other op is followed to its users: views carry their input's
# layout, and so do elementwise ops, ``clone`` and dtype conversions (they preserve a dense
# input's strides), so a ``.view`` after ``x * 2`` still depends on ``x``'s layout.
LAYOUT_ENDS = frozenset({
    "contiguous", "reshape", "reshape_as", "matmul", "bmm", "mm", "linear",
    "addmm", "baddbmm", "einsum", "sum", "mean", "amax", "amin", "max", "min", "var", "std",
    "norm", "prod", "any", "all", "size", "dim", "numel", "shape",
})


def layout_matters(root: Node, names: TargetNames) -> bool:
    """Whether a later op may depend on the strides of the root's value: a stride reader (a
    ``view``), an output of the graph (its strides are visible to the caller) or a call of
    unknown effect among its users, or behind ops that carry its layout (everything but
    :data:`LAYOUT_ENDS`)."""
    seen: set[Node] = set()
    stack = list(root.users)
    while stack:
        u = stack.pop()
        if u in seen:
            continue
        seen.add(u)
        if u.op == "output":
            return True
        bare = names(u).rsplit(".", 1)[-1]
        if bare in STRIDE_READERS or names.effect(u).kind == UNKNOWN:
            return True
        if bare not in LAYOUT_ENDS:
            stack.extend(u.users)
    return False


def _fit_layout(want: Any, got: Any, out: Node, root: Node, names: TargetNames) -> Node | Skipped:
    try:
        if want.stride() == got.stride():
            return out  # the common case, without converting sizes
    except (AttributeError, TypeError, RuntimeError):
        pass
    if not layout_matters(root, names):
        return out
    shape = tuple(size_value(s) for s in want.shape)
    ws, gs = strides(want), strides(got)
    if ws is None or gs is None or same_layout(shape, ws, gs):
        return out
    if not same_layout(shape, ws, contiguous_strides(shape)):
        return Skipped.unsafe(Hazard.LAYOUT, f"the replacement has strides {list(gs)} but the root "
                              f"has {list(ws)}, which later ops may rely on")
    with root.graph.inserting_before(root):
        if isinstance(root.target, torch._ops.OpOverload):  # an ATen graph has no methods
            fixed = root.graph.call_function(torch.ops.aten.clone.default, (out,),
                                             {"memory_format": torch.contiguous_format})
        else:
            fixed = root.graph.call_method("contiguous", (out,))
    failed = _give_values([fixed], root)
    return failed if failed is not None else fixed


__all__ = ["LAYOUT_ENDS", "STRIDE_READERS", "check_writes", "contiguous_strides", "fit_replacement",
           "layout_matters", "lint_new", "same_layout", "strides"]
