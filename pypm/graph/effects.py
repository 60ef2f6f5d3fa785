"""Effects of graph nodes, for common-subexpression elimination (LANGUAGE.md §1: equal terms
are one value only where computing them twice gives the same value, which nobody changes).

Each node has an :class:`Effect`: its *kind*, which tensors it *writes*, and which arguments
its result may *alias* (share storage with).

- ``PURE`` and ``VIEW`` nodes compute a value and do nothing else; only they are ever merged.
  At ATen level this is read from torch's own information: an OpOverload of the ``aten``,
  ``prims`` or ``pypm`` namespace whose schema writes nothing, without the
  ``nondeterministic_seeded`` tag, is pure, and a view when a return carries an alias
  annotation. At torch level it is an allow-list of canonical names
  (:data:`pypm.lang.schema.FUNCTIONAL`), with the arguments that make some calls impure read
  per call (``out=``, ``inplace=True``, ``training=True`` for dropout and rrelu,
  ``requires_grad=True`` for factories, ``dropout_p`` for attention, ``max_norm`` for
  embeddings, running statistics for batch norm in training).
- ``OPAQUE`` nodes change nothing but are never merged: random draws, uninitialised memory
  (``empty*``), data read into Python (``item``), checks.
- ``MUTATE`` nodes write known arguments: in-place ops, ``out=``, ``x[i] = y``, ATen schemas
  that mark an argument written (``Tensor(a!)``), ``copy_``, ``index_put_``, ``t_``, ...
- ``STATE`` nodes change the global state that decides what later nodes compute: grad mode
  (``torch._C._set_grad_enabled``), autocast (``_enter_autocast``/``_exit_autocast``) and
  inference mode, as dynamo records them.
- ``UNKNOWN`` nodes are everything else (a user's function, an unknown module, a higher-order
  op, a torch function off the allow-list): they may write every tensor they are given and
  every graph input, their result may alias any of them, and the global state after them is
  unknown.

The whole-graph analyses built on these effects are in :mod:`pypm.graph.graph_effects`.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import torch
import torch.fx

from ..lang import schema
from .names import DTYPE_METHODS, MODULES, is_torch_callable

Node = torch.fx.Node

# Kinds, ordered so that one comparison (kind > VIEW) finds the nodes that are not plain values.
PURE, VIEW, INPUT, OPAQUE, MUTATE, STATE, UNKNOWN, OUTPUT = range(8)
MERGEABLE = (PURE, VIEW)

# An argument reference: (position, keyword name); either may be None.
Ref = tuple[int | None, str | None]
ALL: Any = "all"  # every node argument (and, for writes, every graph input)


class Effect(NamedTuple):
    """What a node does: its kind, the arguments it writes and the arguments its result may
    alias (tuples of :data:`Ref`, or :data:`ALL`)."""

    kind: int
    writes: Any = ()
    aliases: Any = ()


EFFECT_PURE = Effect(PURE)
EFFECT_OPAQUE = Effect(OPAQUE)
EFFECT_INPUT = Effect(INPUT)
EFFECT_OUTPUT = Effect(OUTPUT)
EFFECT_STATE = Effect(STATE)
EFFECT_UNKNOWN = Effect(UNKNOWN, ALL, ALL)
EFFECT_VIEW_FIRST = Effect(VIEW, (), ((0, None),))
EFFECT_VIEW_ALL = Effect(VIEW, (), ALL)
EFFECT_WRITES_FIRST = Effect(MUTATE, ((0, None),), ((0, None),))

# A per-call refinement of a target's effect (arguments that make a call impure).
Check = Callable[[Node, Effect], Effect]

# What a target's effect is, and how calls refine it: (effect, check or None, whether the check
# reads positional arguments; when not, it runs only on calls with keyword arguments).
TargetEffect = tuple[Effect, "Check | None", bool]

# ATen namespaces whose schemas are trusted to say everything an op does; ops of other
# namespaces (collectives, a user's custom ops, profiler hooks) are of unknown effect.
_TRUSTED_NAMESPACES = frozenset({"aten", "prims", "pypm"})

# ATen ops that are never merged though their schemas write nothing.
_ATEN_OPAQUE = frozenset({
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "empty_permuted",
    "_local_scalar_dense", "item", "_assert_async", "_assert_scalar", "_assert_tensor_metadata",
    "_functional_assert_async", "_functional_assert_scalar", "sym_constrain_range",
    "sym_constrain_range_for_size", "_functional_sym_constrain_range",
    "_functional_sym_constrain_range_for_size", "_print",
})

# Python builtins that only compute a value (dynamo graphs call them on sizes).
_PURE_BUILTINS = frozenset({len, int, float, bool, abs, min, max, round, isinstance, pow, divmod})

# Attributes that ``getattr`` may read on a tensor: metadata, or a view.
_TENSOR_ATTRIBUTES = frozenset({
    "shape", "dtype", "device", "ndim", "is_cuda", "layout", "requires_grad", "is_leaf", "T",
    "mT", "H", "mH", "real", "imag", "data", "is_sparse", "is_quantized", "is_meta",
})

# Random only while training (dropout only with p > 0 as well): their arguments are read per call.
_SWITCHABLE_RANDOM = frozenset({"dropout", "alpha_dropout", "feature_alpha_dropout", "dropout1d",
                                "dropout2d", "dropout3d", "feature_dropout", "rrelu"})

# The default of ``training`` where it is not True.
_TRAINING_DEFAULT = {"alpha_dropout": False, "feature_alpha_dropout": False, "rrelu": False}


def _state_functions() -> dict[Any, str]:
    """The functions through which dynamo records changes of global state, by role."""
    out: dict[Any, str] = {torch._C._set_grad_enabled: "grad", torch.set_grad_enabled: "grad"}
    try:
        from torch.amp import autocast_mode

        out[autocast_mode._enter_autocast] = "enter"
        out[autocast_mode._exit_autocast] = "exit"
    except (ImportError, AttributeError):  # pragma: no cover - older torch
        pass
    try:
        from torch.autograd import grad_mode

        out[grad_mode._enter_inference_mode] = "enter"
        out[grad_mode._exit_inference_mode] = "exit"
    except (ImportError, AttributeError):  # pragma: no cover - older torch
        pass
    return out


STATE_FUNCTIONS = _state_functions()


def _side_effectful() -> frozenset[Any]:
    """Targets torch.fx itself counts as side-effectful (``Node.is_impure``)."""
    found = getattr(torch.fx.node, "_side_effectful_functions", ())
    try:
        return frozenset(found)
    except TypeError:  # pragma: no cover - unhashable entries
        return frozenset()


_SIDE_EFFECTFUL = _side_effectful()


# ---------------------------------------------------------------------------------------------
# Effects of targets


def target_effect(node: Node, name: str, module: Callable[[str], Any]) -> TargetEffect:
    """The effect of a node's target and, where arguments can change it, a :data:`Check` that
    refines it per call (see :data:`TargetEffect`). ``name`` is the node's canonical name
    (needed for ``call_function`` and ``call_method`` only), ``module`` looks up submodules.
    The result depends on the target only (and, for modules, on the module's flags), so it can
    be cached by ``(node.op, node.target)``."""
    kind = node.op
    if kind == "placeholder" or kind == "get_attr":
        return EFFECT_INPUT, None, False
    if kind == "output":
        return EFFECT_OUTPUT, None, False
    if kind == "call_module":
        return _module_effect(module(str(node.target))), None, False
    target = node.target
    if kind == "call_function":
        if isinstance(target, torch._ops.OpOverload):
            return _aten_effect(target), None, False
        if isinstance(target, torch._ops.OpOverloadPacket):
            return _packet_effect(target), None, False
        try:
            role = STATE_FUNCTIONS.get(target)
        except TypeError:
            role = None
        if role is not None:
            return EFFECT_STATE, None, False
        try:
            if target in _SIDE_EFFECTFUL:
                return (EFFECT_WRITES_FIRST if schema.is_inplace(name) else EFFECT_UNKNOWN), None, False
        except TypeError:
            pass
        mod = getattr(target, "__module__", None) or ""
        if mod == "builtins":
            if target is builtins.getattr:
                return EFFECT_UNKNOWN, _check_getattr, True
            return (EFFECT_PURE if target in _PURE_BUILTINS else EFFECT_UNKNOWN), None, False
        if mod in ("_operator", "operator"):
            return _operator_effect(name), None, False
        if mod == "math":
            return EFFECT_PURE, None, False
        if not is_torch_callable(target):
            return EFFECT_UNKNOWN, None, False
        return _torch_effect(name, _parameters(target))
    if kind == "call_method":
        if target in DTYPE_METHODS:
            return EFFECT_VIEW_FIRST, None, False
        return _torch_effect(name, None)
    return EFFECT_UNKNOWN, None, False


# Known modules whose effect does not depend on their flags: always pure (unless marked impure).
PLAIN_MODULES = frozenset(t for t in MODULES if t not in (
    torch.nn.ReLU, torch.nn.SiLU, torch.nn.Dropout, torch.nn.Embedding))


def _module_effect(mod: Any) -> Effect:
    """Known modules (``nn.Linear``, ...) by their flags; any other module is unknown. (Flags
    are read from the instance dictionary: ``nn.Module.__getattr__`` is slow on a miss.)"""
    if mod is None or type(mod) not in MODULES:
        return EFFECT_UNKNOWN
    flags = vars(mod)
    if flags.get("_is_impure", getattr(type(mod), "_is_impure", False)):
        return EFFECT_UNKNOWN
    if flags.get("inplace", False):
        return EFFECT_WRITES_FIRST
    if isinstance(mod, torch.nn.Dropout):
        return EFFECT_OPAQUE if mod.training and mod.p > 0 else EFFECT_VIEW_FIRST
    if isinstance(mod, torch.nn.Embedding) and mod.max_norm is not None:
        return EFFECT_UNKNOWN  # renormalises its weight in place
    return EFFECT_PURE


_ATEN_EFFECTS: dict[Any, Effect] = {}


def _aten_effect(op: Any) -> Effect:
    """An OpOverload's effect from its schema and tags (cached)."""
    try:
        return _ATEN_EFFECTS[op]
    except KeyError:
        pass
    sch = op._schema
    args = sch.arguments
    written = tuple((i, a.name) for i, a in enumerate(args)
                    if a.alias_info is not None and a.alias_info.is_write)
    aliased = tuple((i, a.name) for i, a in enumerate(args) if a.alias_info is not None)
    tags = op.tags
    base = op.overloadpacket.__name__
    if op.namespace not in _TRUSTED_NAMESPACES:
        # torch.library requires custom ops to declare what they write and alias; what else
        # they do (collectives, hooks) is unknown, so they end the region they run in
        effect = Effect(UNKNOWN, written, aliased)
    elif base in _ATEN_OPAQUE:
        effect = Effect(OPAQUE, (), aliased)
    elif op in _SIDE_EFFECTFUL:
        effect = Effect(UNKNOWN, written, aliased)
    elif sch.is_mutable or written:
        # ``set_`` makes its first argument share storage with the second.
        effect = Effect(MUTATE, written, ALL if base == "set_" else (aliased or written))
    elif torch.Tag.maybe_aliasing_or_mutating in tags:
        effect = Effect(MUTATE, ALL, ALL)
    elif torch.Tag.nondeterministic_seeded in tags:
        effect = Effect(OPAQUE, (), aliased)
    elif any(r.alias_info is not None for r in sch.returns):
        effect = Effect(VIEW, (), aliased or ALL)
    else:
        effect = EFFECT_PURE
    _ATEN_EFFECTS[op] = effect
    return effect


def _packet_effect(packet: Any) -> Effect:
    """An OpOverloadPacket (``torch.ops.aten.add`` in a traced graph): the overload is chosen
    at run time, so the strongest effect of its overloads, with every argument taken as written
    or aliased (their positions differ between overloads). ``out`` overloads are left aside:
    only an ``out=`` argument selects them, and then every overload writes it."""
    kinds = set()
    for name in packet.overloads():
        overload = getattr(packet, name)
        if name == "out" or name.endswith("_out") or torch.Tag.out in overload.tags:
            continue
        kinds.add(_aten_effect(overload).kind)
    worst = max(kinds, default=PURE)
    if worst == PURE:
        return EFFECT_PURE
    if worst == VIEW:
        return EFFECT_VIEW_ALL
    return Effect(worst, ALL if worst in (MUTATE, UNKNOWN) else (), ALL)


def _operator_effect(name: str) -> Effect:
    """Python's ``operator`` functions: item assignment and in-place operators write their
    first argument; ``getitem`` is a view; arithmetic and comparisons are pure."""
    if schema.is_inplace(name):
        return EFFECT_WRITES_FIRST
    if name == "getitem":
        return EFFECT_VIEW_FIRST
    if name in schema.FUNCTIONAL:
        return EFFECT_PURE
    return EFFECT_UNKNOWN


def _torch_effect(name: str, params: tuple[str, ...] | None) -> TargetEffect:
    """A torch function or Tensor method by canonical name (see the module docstring).
    ``params`` are the parameter names of a Python function (None for builtins and methods,
    whose ``out``, ``inplace`` and ``requires_grad`` are keyword-only)."""
    if schema.is_inplace(name):
        return (Effect(MUTATE, ((0, None),), ALL) if name == "set_" else EFFECT_WRITES_FIRST), None, False
    if name in schema.OPAQUE:
        return EFFECT_OPAQUE, None, False
    if name in _SWITCHABLE_RANDOM:
        return EFFECT_OPAQUE, _switchable_check(name, params), True
    if schema.is_random(name):
        return EFFECT_OPAQUE, None, False
    positional = params is not None and any(p in params for p in ("out", "inplace", "requires_grad"))
    if name in schema.ALIASING:
        return EFFECT_VIEW_ALL, _call_check(params), positional
    if name in schema.FUNCTIONAL:
        if name == "scaled_dot_product_attention":
            return EFFECT_PURE, _attention_check, True
        if name == "embedding" and params is not None and "max_norm" in params:
            return EFFECT_PURE, _embedding_check(params), True
        if name == "batch_norm":
            return EFFECT_PURE, _batch_norm_check(params), True
        return EFFECT_PURE, _call_check(params), positional
    return EFFECT_UNKNOWN, None, False


_PARAMETERS: dict[Any, tuple[str, ...] | None] = {}


def _parameters(target: Any) -> tuple[str, ...] | None:
    """The parameter names of a Python function (None for builtins, which have no signature:
    their ``out``, ``inplace`` and ``requires_grad`` are keyword-only)."""
    try:
        return _PARAMETERS[target]
    except KeyError:
        pass
    except TypeError:
        return None
    try:
        params: tuple[str, ...] | None = tuple(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        params = None
    try:
        _PARAMETERS[target] = params
    except TypeError:
        pass
    return params


_MISSING: Any = object()


def argument(node: Node, name: str, params: tuple[str, ...] | None, position: int | None = None,
             default: Any = None) -> Any:
    """A call's argument by keyword, else by position (in ``params`` when known, else
    ``position``), else ``default``."""
    kwargs = node.kwargs
    if kwargs:
        v = kwargs.get(name, _MISSING)
        if v is not _MISSING:
            return v
    i = params.index(name) if params is not None and name in params else position
    if i is not None and i < len(node.args):
        return node.args[i]
    return default


def _writes_out(node: Node, effect: Effect, params: tuple[str, ...] | None) -> Effect:
    """``out=`` makes any call write that argument; ``inplace=True`` its first one."""
    out = argument(node, "out", params) if (node.kwargs or (params and "out" in params)) else None
    if out is not None:
        i = params.index("out") if params is not None and "out" in params else None
        return Effect(MUTATE, ((i, "out"),), ((i, "out"),))
    if (node.kwargs or params) and argument(node, "inplace", params, None, False) is not False:
        return EFFECT_WRITES_FIRST
    if node.kwargs and argument(node, "requires_grad", params, None, False) is not False:
        return EFFECT_OPAQUE  # a new leaf tensor: two of them are two leaves
    return effect


def _call_check(params: tuple[str, ...] | None) -> Check:
    def check(node: Node, effect: Effect) -> Effect:
        return _writes_out(node, effect, params)
    return check


def _switchable_check(name: str, params: tuple[str, ...] | None) -> Check:
    """Dropout and rrelu: random while training (dropout only with p > 0); switched off,
    dropout returns its input and rrelu is a fixed leaky relu."""
    training_default = _TRAINING_DEFAULT.get(name, True)

    def check(node: Node, effect: Effect) -> Effect:
        written = _writes_out(node, EFFECT_PURE, params)
        if written is not EFFECT_PURE:
            return written
        training = argument(node, "training", params, 3 if name == "rrelu" else 2, _MISSING)
        if training is _MISSING:
            training = argument(node, "train", params, None, training_default)
        if name == "rrelu":
            return EFFECT_PURE if training is False else EFFECT_OPAQUE
        p = argument(node, "p", params, 1, 0.5)
        off = training is False or (type(p) in (int, float) and p == 0)
        return EFFECT_VIEW_FIRST if off else EFFECT_OPAQUE
    return check


def _attention_check(node: Node, effect: Effect) -> Effect:
    """Attention with ``dropout_p`` other than 0 draws a random mask."""
    p = argument(node, "dropout_p", None, 4, 0.0)
    return effect if type(p) in (int, float) and p == 0 else EFFECT_OPAQUE


def _embedding_check(params: tuple[str, ...]) -> Check:
    """``F.embedding(..., max_norm=m)`` renormalises rows of its weight in place."""
    def check(node: Node, effect: Effect) -> Effect:
        if argument(node, "max_norm", params, None, None) is not None:
            return Effect(MUTATE, ((params.index("weight"), "weight"),), ())
        return _writes_out(node, effect, params)
    return check


def _batch_norm_check(params: tuple[str, ...] | None) -> Check:
    """``F.batch_norm`` in training updates its running statistics in place."""
    def check(node: Node, effect: Effect) -> Effect:
        training = argument(node, "training", params, 5, False)
        if training is False:
            return _writes_out(node, effect, params)
        stats = ((1, "running_mean"), (2, "running_var"))
        if all(argument(node, n, params, i, None) is None for i, n in stats):
            return effect
        return Effect(MUTATE, stats, ())
    return check


def _check_getattr(node: Node, effect: Effect) -> Effect:
    """``getattr(x, "shape")`` and the like read a tensor's metadata or make a view of it;
    any other attribute is of unknown effect (a property may run code)."""
    if len(node.args) == 2 and node.args[1] in _TENSOR_ATTRIBUTES:
        return EFFECT_VIEW_FIRST
    return effect


# ---------------------------------------------------------------------------------------------
# Arguments named by an effect


def nodes_in(value: Any) -> Iterator[Node]:
    """The nodes inside an argument value (nested lists, tuples, dicts, slices)."""
    if type(value) is Node:
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from nodes_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from nodes_in(v)
    elif isinstance(value, slice):
        yield from nodes_in((value.start, value.stop, value.step))


def referenced(node: Node, refs: Any) -> Iterable[Node]:
    """The nodes named by an effect's ``writes`` or ``aliases``."""
    if not refs:
        return ()
    if refs is ALL:
        return node._input_nodes
    out: list[Node] = []
    args, kwargs = node.args, node.kwargs
    for pos, name in refs:
        if name is not None and name in kwargs:
            out.extend(nodes_in(kwargs[name]))
        elif pos is not None and pos < len(args):
            out.extend(nodes_in(args[pos]))
    return out


def node_effect(node: Node, name: str, module: Callable[[str], Any]) -> Effect:
    """A node's effect, its arguments taken into account (uncached)."""
    effect, check, positional = target_effect(node, name, module)
    if check is not None and (positional or node.kwargs):
        return check(node, effect)
    return effect


__all__ = ["ALL", "EFFECT_PURE", "Effect", "INPUT", "MERGEABLE", "MUTATE", "OPAQUE",
           "OUTPUT", "PLAIN_MODULES", "PURE", "STATE", "STATE_FUNCTIONS", "UNKNOWN", "VIEW", "argument",
           "node_effect", "nodes_in", "referenced", "target_effect"]
