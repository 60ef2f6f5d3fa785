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

:class:`GraphEffects` reads one graph. A node is *blocked* (never merged) when its result or
one of its inputs may alias a tensor that some node writes, anywhere in the graph: a simple
rule that is sound whatever the order of the reads and the writes. Aliasing is followed through
every op whose result may alias an argument, both ways (a write to a view reaches its base and
every other view of it); graph inputs and attributes may alias each other (nothing says two
inputs are not views of one tensor). Every node also gets a *region*: the grad-mode, autocast
and inference-mode state it runs under, so that equal nodes under different states stay apart;
after an ``UNKNOWN`` node the state is a fresh one, equal to no other. Finally, two nodes whose
results both reach the graph's outputs are not merged: the caller would get one tensor twice
where it had two.
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


# ---------------------------------------------------------------------------------------------
# Global state: grad mode, autocast, inference mode


class _States:
    """Interns global states as small integers. A state is (grad mode, autocast stack,
    inference-mode stack, epoch): the epoch changes after a node of unknown effect, so states
    on either side of it are never equal. The state a graph starts in is unknown but fixed, so
    it is a value of its own (``"entry"``), equal to no state a node sets."""

    def __init__(self) -> None:
        self._ids: dict[Any, int] = {}
        self.epoch = 0

    def intern(self, state: Any) -> int:
        found = self._ids.get(state)
        if found is None:
            found = self._ids[state] = len(self._ids)
        return found

    def entry(self) -> tuple[Any, ...]:
        return ("entry", ("entry",), ("entry",), 0)

    def after_unknown(self, state: tuple[Any, ...]) -> tuple[Any, ...]:
        self.epoch += 1
        mark = ("unknown", self.epoch)
        return (mark, (mark,), (mark,), self.epoch)

    def after(self, node: Node, state: tuple[Any, ...], enters: list[Node]) -> tuple[Any, ...]:
        """The state after a ``STATE`` node (``enters``: the open autocast and inference-mode
        regions, innermost last)."""
        grad, autocast, inference, epoch = state
        role = STATE_FUNCTIONS.get(node.target)
        target = node.target
        if role == "grad":
            flag = node.args[0] if len(node.args) == 1 and not node.kwargs else node.kwargs.get("mode")
            if type(flag) is not bool:
                return self.after_unknown(state)
            return (flag, autocast, inference, epoch)
        inference_fn = getattr(target, "__name__", "").endswith("inference_mode")
        if role == "enter":
            enters.append(node)
            mark = _literal_key((tuple(node.args), tuple(node.kwargs.items())))
            if inference_fn:
                return (grad, autocast, (*inference, mark), epoch)
            return (grad, (*autocast, mark), inference, epoch)
        # exit: the innermost region must be the one this node closes
        stack = inference if inference_fn else autocast
        if not enters or not node.args or node.args[0] is not enters[-1] or len(stack) < 2:
            return self.after_unknown(state)
        enters.pop()
        if inference_fn:
            return (grad, autocast, stack[:-1], epoch)
        return (grad, stack[:-1], inference, epoch)


def _literal_key(value: Any) -> Any:
    """A hashable key for the literal arguments of a state change (a fresh object, equal to
    nothing else, when they cannot be hashed)."""
    try:
        hash(value)
    except TypeError:
        return object()
    return value


# ---------------------------------------------------------------------------------------------
# One graph


class GraphEffects:
    """The effects of one graph's nodes, as CSE needs them (see the module docstring):
    :meth:`blocked` nodes, the :meth:`region` of each node and the nodes whose values reach the
    outputs (:attr:`escaping`). ``effect`` gives a node's effect (cached by the caller);
    ``kinds``, when given, yields the nodes of a graph that are not values (kind above
    ``VIEW``) with their kinds, in graph order: a faster walk than ``effect`` on every node.

    Kept up to date across a rewrite pass by :meth:`update`, told which nodes a rewrite added
    or rewired; a new node of unknown effect or one that changes global state makes
    :attr:`stale` true (the caller analyses the graph afresh)."""

    def __init__(self, graph: torch.fx.Graph, effect: Callable[[Node], Effect],
                 kinds: Callable[[torch.fx.Graph], Iterable[tuple[Node, int]]] | None = None):
        self.graph = graph
        self.effect = effect
        self._kinds = kinds
        self.writers: list[Node] = []  # nodes that write a tensor (MUTATE, UNKNOWN)
        self.inputs: list[Node] = []  # placeholders and attributes
        self.mutated: set[Node] = set()  # nodes whose value may alias a written tensor
        self.escaping: set[Node] = set()  # nodes whose value may alias an output
        self.regions: dict[Node, int] | None = None  # None: one region (no state changes)
        self.first_change: Node | None = None  # the first node that changes global state
        self.stale = False
        self._states = _States()
        self._analyse()

    # -- the whole graph

    def _analyse(self) -> None:
        effect = self.effect
        writers, inputs = self.writers, self.inputs
        output = None
        found = self._kinds(self.graph) if self._kinds is not None else \
            ((n, effect(n).kind) for n in self.graph.nodes)
        for n, kind in found:
            if kind == INPUT:
                inputs.append(n)
            elif kind == MUTATE:
                writers.append(n)
            elif kind == OUTPUT:
                output = n
            else:
                if kind == UNKNOWN:
                    writers.append(n)
                if kind >= STATE and self.first_change is None:
                    self.first_change = n
        if self.first_change is not None:
            self._assign_regions()
        if writers:
            self.mutated = self._closure(self._written(writers), through_inputs=True)
        if output is not None:
            self.escaping = self._closure(output._input_nodes, through_inputs=False)

    def _assign_regions(self) -> None:
        """The region of every node from the first change of state on (nodes before it are in
        region 0, the graph's entry state). A ``STATE`` or ``UNKNOWN`` node is recorded with
        the region after it, which is what a node inserted after it runs under."""
        states, effect = self._states, self.effect
        state = states.entry()
        regions: dict[Node, int] = {}
        enters: list[Node] = []
        current = states.intern(state)
        node = self.first_change
        while node is not None and node.op != "root":
            kind = effect(node).kind
            if kind == STATE:
                state = states.after(node, state, enters)
                current = states.intern(state)
            elif kind == UNKNOWN:
                state = states.after_unknown(state)
                current = states.intern(state)
            regions[node] = current
            node = node.next
        self.regions = regions

    def _written(self, writers: Iterable[Node]) -> list[Node]:
        """The tensors the writers may write (every input, for a writer of unknown effect)."""
        out: list[Node] = []
        for w in writers:
            e = self.effect(w)
            if e.writes is ALL:
                out.extend(w._input_nodes)
                out.extend(self.inputs)
            else:
                out.extend(referenced(w, e.writes))
        return out

    def _closure(self, start: Iterable[Node], through_inputs: bool) -> set[Node]:
        """Every node whose value may share storage with one of ``start``: up through what a
        value may alias, down through the users that may alias it; with ``through_inputs``,
        from any graph input to all of them."""
        effect = self.effect
        seen: set[Node] = set()
        stack = list(start)
        inputs_done = not through_inputs
        while stack:
            m = stack.pop()
            if m in seen:
                continue
            seen.add(m)
            e = effect(m)
            if e.aliases:
                stack.extend(referenced(m, e.aliases))
            if not inputs_done and (e.kind == INPUT or (e.kind == UNKNOWN and e.aliases is ALL)):
                inputs_done = True  # an unknown call may return a graph input, or a global
                stack.extend(self.inputs)
            for u in m.users:
                eu = effect(u)
                if eu.aliases and (eu.aliases is ALL or m in referenced(u, eu.aliases)):
                    stack.append(u)
        return seen

    def aliases_of(self, start: Iterable[Node]) -> set[Node]:
        """Every node whose value may share storage with one of ``start`` (graph inputs not
        taken as aliases of each other)."""
        return self._closure(start, through_inputs=False)

    # -- queries

    def blocked(self, n: Node) -> bool:
        """Whether a node must not be merged because its value or one of its inputs may alias a
        tensor that some node writes."""
        mutated = self.mutated
        if not mutated:
            return False
        if n in mutated:
            return True
        for a in n._input_nodes:
            if a in mutated:
                return True
        return False

    def region(self, n: Node) -> int:
        """The global-state region a node runs in (0 when the graph never changes state)."""
        regions = self.regions
        if regions is None:
            return 0
        found = regions.get(n)
        if found is not None:
            return found
        first = self.first_change
        try:
            if first is None or n < first:
                return 0
        except TypeError:  # nodes without an order: walk back to a known node
            pass
        p = n.prev
        walked = [n]
        while p.op != "root":
            found = regions.get(p)
            if found is not None:
                break
            walked.append(p)
            p = p.prev
        if found is None:
            found = 0
        for w in walked:  # inserted nodes are values: they run in the region before them
            regions[w] = found
        return found

    def both_escape(self, a: Node, b: Node) -> bool:
        """Whether the values of both nodes may reach the outputs (merging them would return
        one tensor where the caller had two)."""
        escaping = self.escaping
        return a in escaping and b in escaping

    # -- a rewrite pass

    def update(self, changed: Iterable[Node]) -> None:
        """Take in nodes a rewrite inserted or rewired. The written and escaping sets are
        recomputed when they may have changed (a writer or the output among the changed
        nodes, or any change while some tensor is written: a rewired view may now lead to a
        written tensor)."""
        effect = self.effect
        rewrite_writers = False
        output = None
        for n in changed:
            if n.graph is not self.graph or getattr(n, "_erased", False):
                continue
            kind = effect(n).kind
            if kind >= STATE:
                if kind == OUTPUT:
                    output = n
                else:
                    self.stale = True
                    return
            elif kind == MUTATE:
                if n not in self.writers:
                    self.writers.append(n)
                rewrite_writers = True
            elif kind == INPUT and n not in self.inputs:
                self.inputs.append(n)
                rewrite_writers = True
            if self.regions is not None:
                self.region(n)
        if rewrite_writers or self.mutated:
            live = [w for w in self.writers if w.graph is self.graph and not getattr(w, "_erased", False)]
            self.writers = live
            self.mutated = self._closure(self._written(live), through_inputs=True) if live else set()
        if output is not None or self.escaping:
            if output is None:
                output = next((n for n in reversed(self.graph.nodes) if n.op == "output"), None)
            if output is not None:
                self.escaping = self._closure(output._input_nodes, through_inputs=False)


def node_effect(node: Node, name: str, module: Callable[[str], Any]) -> Effect:
    """A node's effect, its arguments taken into account (uncached)."""
    effect, check, positional = target_effect(node, name, module)
    if check is not None and (positional or node.kwargs):
        return check(node, effect)
    return effect


__all__ = ["ALL", "EFFECT_PURE", "Effect", "GraphEffects", "INPUT", "MERGEABLE", "MUTATE", "OPAQUE",
           "OUTPUT", "PLAIN_MODULES", "PURE", "STATE", "UNKNOWN", "VIEW", "argument", "node_effect",
           "nodes_in", "referenced", "target_effect"]
