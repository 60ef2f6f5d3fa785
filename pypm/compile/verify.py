"""Checking a rewritten graph against the original one (``pypm.backend(..., verify=True)``).

A check runs the original graph once, on deep copies of the call's inputs, and lets the
compiled (rewritten) graph run once on the real inputs, so that an input mutation happens
exactly once, as in eager mode. It then compares every output (nested tuples, lists and dicts;
non-tensor values by ``==``): dtype, shape, device, ``requires_grad``, the positions of NaN,
+inf and -inf exactly, the other values within the tolerance of the dtype; and the final values
of the inputs and of the buffers the graph reads, since a rewrite must mutate what the
original mutates and nothing else.

When the two runs differ, :func:`find_culprit` asks which part of the rewrite is to blame, by
replaying it on fresh copies of the original graph and the call's inputs: the rewritten graph
without the inner compiler; pypm's common-subexpression elimination (CSE) alone; then each rule
that fired, alone. A verification error names what first reproduces the difference.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from ..errors import RewriteError, Span

# Tolerances per dtype: (rtol, atol). Complex dtypes use those of their real dtype; other
# floating dtypes (float8 and the like) two machine epsilons; integers and booleans compare
# exactly.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (1e-2, 1e-2),
}

CULPRIT_CSE = "cse"  # VerifyError.culprit when common-subexpression elimination alone differs
CULPRIT_INNER = "inner compiler"  # ... when only the compiled form of the rewritten graph differs
MAX_DIFFERENCES_SHOWN = 8


class VerifyError(RewriteError):
    """The rewritten graph does not compute what the original computes. ``differences`` lists
    what differs (one line per output or input); ``culprit`` is the name of the rule to blame,
    :data:`CULPRIT_CSE`, :data:`CULPRIT_INNER`, or None when no single part reproduces it."""

    def __init__(self, message: str, span: Span | None = None, pattern: str | None = None,
                 hint: str | None = None, *, culprit: str | None = None,
                 differences: Sequence[str] = ()):
        self.culprit = culprit
        self.differences = list(differences)
        super().__init__(message, span, pattern, hint)


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol) for comparing values of ``dtype``: :data:`TOLERANCES`, else exact for
    integers and booleans, else two machine epsilons."""
    if dtype.is_complex:
        dtype = dtype.to_real()
    if dtype in TOLERANCES:
        return TOLERANCES[dtype]
    if dtype.is_floating_point:
        eps = float(torch.finfo(dtype).eps)
        return 2 * eps, 2 * eps
    return 0.0, 0.0


# ---------------------------------------------------------------------------------------------
# Comparison


def _index(mask: torch.Tensor) -> tuple[int, ...]:
    """The first position where ``mask`` holds."""
    return tuple(int(i) for i in torch.nonzero(mask)[0])


def _show_index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, index)) + "]"


def tensor_difference(expected: torch.Tensor, actual: torch.Tensor) -> str | None:
    """None when ``actual`` stands for ``expected``, else what differs, in words: dtype, shape,
    device, ``requires_grad``, positions of NaN / +inf / -inf (exactly), values (within the
    tolerance of the dtype, with the largest absolute difference and where it is)."""
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype} instead of {expected.dtype}"
    if actual.shape != expected.shape:
        return f"shape {list(actual.shape)} instead of {list(expected.shape)}"
    if actual.device != expected.device:
        return f"device {actual.device} instead of {expected.device}"
    problems = []
    if actual.requires_grad != expected.requires_grad:
        problems.append(f"requires_grad mismatch: {actual.requires_grad} instead of {expected.requires_grad}")
    values = _value_difference(expected.detach(), actual.detach())
    if values:
        problems.append(values)
    return "; ".join(problems) or None


def _value_difference(e: torch.Tensor, a: torch.Tensor) -> str | None:
    if e.device.type == "meta":
        return None  # no values
    try:
        if e.layout != torch.strided:
            e, a = e.to_dense(), a.to_dense()
        if torch.equal(e, a):  # the common case, and the cheap one
            return None
        if e.is_complex():  # indices get one more dimension: 0 the real part, 1 the imaginary
            e, a = torch.view_as_real(e.resolve_conj()), torch.view_as_real(a.resolve_conj())
    except (RuntimeError, TypeError, NotImplementedError):
        return None  # a tensor kind without comparable values (quantized, opaque subclasses)
    if not e.is_floating_point():
        ne = e != a
        i = _index(ne)
        return (f"{int(ne.sum())} element(s) differ, first at index {_show_index(i)}: "
                f"{a[i].item()!r} instead of {e[i].item()!r}")
    problems = []
    rtol, atol = tolerance(e.dtype)
    e, a = e.double(), a.double()  # every floating dtype has NaN, inf and these operations here
    for what, test in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        me, ma = test(e), test(a)
        if not torch.equal(me, ma):
            i = _index(me != ma)
            problems.append(f"{what} mismatch at index {_show_index(i)}: {a[i].item()!r} instead of "
                            f"{e[i].item()!r} ({int((me != ma).sum())} position(s))")
    finite = torch.isfinite(e) & torch.isfinite(a)
    err = torch.where(finite, (a - e).abs(), torch.zeros((), dtype=torch.float64, device=e.device))
    bad = err > atol + rtol * e.abs().nan_to_num(0.0, 0.0, 0.0)
    if bool(bad.any()):
        i = tuple(int(j) for j in torch.unravel_index(torch.argmax(err), err.shape))
        problems.append(f"max abs diff {err[i].item():.3g} at index {_show_index(i)} "
                        f"({a[i].item()!r} instead of {e[i].item()!r}; {int(bad.sum())} element(s) "
                        f"beyond rtol={rtol:g}, atol={atol:g})")
    return "; ".join(problems) or None


def differences(expected: Any, actual: Any, where: str = "output") -> list[str]:
    """Every difference between two (nested) values, one line each, named by its path
    (``output[1]['k']: ...``): tensors by :func:`tensor_difference`, tuples and lists by
    length and element, dicts by keys and value, anything else by ``==``."""
    out: list[str] = []
    _differences(expected, actual, where, out)
    return out


def _differences(e: Any, a: Any, where: str, out: list[str]) -> None:
    if isinstance(e, torch.Tensor):
        if not isinstance(a, torch.Tensor):
            out.append(f"{where}: {type(a).__name__} instead of a tensor")
        elif (problem := tensor_difference(e, a)) is not None:
            out.append(f"{where}: {problem}")
    elif isinstance(e, (list, tuple)):
        if not isinstance(a, (list, tuple)):
            out.append(f"{where}: {type(a).__name__} instead of a {type(e).__name__}")
        elif len(a) != len(e):
            out.append(f"{where}: {len(a)} elements instead of {len(e)}")
        else:
            for i, (x, y) in enumerate(zip(e, a)):
                _differences(x, y, f"{where}[{i}]", out)
    elif isinstance(e, dict):
        if not isinstance(a, dict):
            out.append(f"{where}: {type(a).__name__} instead of a dict")
        elif set(a) != set(e):
            out.append(f"{where}: keys {sorted(map(repr, a))} instead of {sorted(map(repr, e))}")
        else:
            for k in e:
                _differences(e[k], a[k], f"{where}[{k!r}]", out)
    else:
        try:
            same = e is a or bool(e == a)
        except Exception:  # an == without a truth value: compare identity only
            same = False
        if not same:
            out.append(f"{where}: {a!r} instead of {e!r}")


def compare_outputs(expected: Any, actual: Any) -> str | None:
    """None when the outputs agree (see :func:`differences`), else every difference, joined."""
    found = differences(expected, actual)
    return "; ".join(found) or None


# ---------------------------------------------------------------------------------------------
# Copies of inputs and graphs


def _plain(t: torch.Tensor) -> bool:
    """A dense tensor of real storage whose copy can share storage between views."""
    return (type(t) in (torch.Tensor, torch.nn.Parameter) and t.layout == torch.strided
            and not t.is_quantized and t.device.type != "meta")


def _walk(x: Any) -> Iterable[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for y in x:
            yield from _walk(y)
    elif isinstance(x, dict):
        for y in x.values():
            yield from _walk(y)


def _storage_key(t: torch.Tensor) -> tuple[Any, ...] | None:
    try:
        s = t.untyped_storage()
        return (str(t.device), s.data_ptr()) if s.data_ptr() else None
    except (RuntimeError, NotImplementedError):
        return None


class _Cloner:
    """Deep copies of call arguments. A tensor keeps its dtype, device, strides and
    ``requires_grad`` (a copy is a leaf); tensors that share storage (views of one buffer,
    the same tensor passed twice) share storage in the copy as well, so a mutation through one
    shows through the other as it does in the original. Tensor subclasses are copied with
    ``clone()``; immutable values are shared."""

    def __init__(self, values: Iterable[Any]):
        tensors: dict[int, torch.Tensor] = {}
        for t in _walk(values):
            if _plain(t):
                tensors[id(t)] = t
        per_storage: dict[tuple[Any, ...], int] = {}
        for t in tensors.values():
            if (key := _storage_key(t)) is not None:
                per_storage[key] = per_storage.get(key, 0) + 1
        self.shared = {k for k, n in per_storage.items() if n > 1}
        self.storages: dict[tuple[Any, ...], torch.UntypedStorage] = {}
        self.memo: dict[int, Any] = {}

    def __call__(self, x: Any) -> Any:
        if id(x) in self.memo:
            return self.memo[id(x)]
        if isinstance(x, torch.Tensor):
            out: Any = self._tensor(x)
        elif isinstance(x, tuple):
            items = [self(y) for y in x]
            out = type(x)(*items) if hasattr(x, "_fields") else type(x)(items)
        elif isinstance(x, list):
            out = [self(y) for y in x]
        elif isinstance(x, dict):
            out = {k: self(v) for k, v in x.items()}
        elif x is None or isinstance(x, (bool, int, float, complex, str, torch.SymInt, torch.SymFloat,
                                         torch.SymBool, torch.dtype, torch.device)):
            out = x
        else:
            try:
                out = copy.deepcopy(x)
            except Exception:  # an object that cannot be copied is shared
                out = x
        self.memo[id(x)] = out
        return out

    def _tensor(self, t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if _plain(t):
                key = _storage_key(t)
                c = t.clone(memory_format=torch.preserve_format) if key not in self.shared else None
                if c is None or c.stride() != t.stride():  # shared, or overlapping or with gaps
                    if key is None:
                        c = t.clone()
                    else:
                        if key not in self.storages:
                            self.storages[key] = t.untyped_storage().clone()
                        c = torch.empty((0,), dtype=t.dtype, device=t.device)
                        c.set_(self.storages[key], t.storage_offset(), t.size(), t.stride())
                if isinstance(t, torch.nn.Parameter):
                    return torch.nn.Parameter(c, requires_grad=t.requires_grad)
            else:
                try:
                    c = t.detach().clone()
                except Exception:  # a tensor that cannot be copied is shared
                    return t
        if t.requires_grad and c.is_leaf:
            c.requires_grad_(True)
        return c


def clone_inputs(args: Sequence[Any]) -> list[Any]:
    """Deep copies of ``args`` (see :class:`_Cloner`), so that running a graph on them leaves
    ``args`` as they are."""
    cloner = _Cloner(args)
    return [cloner(a) for a in args]


def _owner_path(gm: torch.nn.Module, target: str) -> tuple[torch.nn.Module, str] | None:
    *prefix, name = target.split(".")
    mod = gm
    for item in prefix:
        mod = getattr(mod, item, None)
        if not isinstance(mod, torch.nn.Module):
            return None
    return mod, name


def state_tensors(gm: torch.fx.GraphModule) -> dict[str, torch.Tensor]:
    """The tensors other than parameters that the graph reads through ``get_attr`` (buffers,
    constants): what a graph may mutate besides its inputs."""
    out: dict[str, torch.Tensor] = {}
    for n in gm.graph.nodes:
        if n.op == "get_attr" and (owner := _owner_path(gm, str(n.target))) is not None:
            v = getattr(owner[0], owner[1], None)
            if isinstance(v, torch.Tensor) and not isinstance(v, torch.nn.Parameter):
                out[str(n.target)] = v
    return out


def copy_graph_module(gm: torch.fx.GraphModule, own_state: bool = False,
                      state: dict[str, torch.Tensor] | None = None) -> torch.fx.GraphModule:
    """A copy of a graph module: its own graph, the same parameters. With ``own_state``, the
    copy also has its own copies of the buffers and constants the graph reads
    (:func:`state_tensors`), so that running it mutates none of the original's; those named
    in ``state`` are copied from there instead (the values they had before a call)."""
    out = torch.fx.GraphModule(gm, copy.deepcopy(gm.graph))
    if own_state:
        mine_state = state_tensors(out)
        cloner = _Cloner(list(mine_state.values()) + list((state or {}).values()))
        for target, t in mine_state.items():
            mine, theirs = _owner_path(out, target), _owner_path(gm, target)
            if mine is not None and theirs is not None and mine[0] is not theirs[0]:
                setattr(mine[0], mine[1], cloner((state or {}).get(target, t)))
    return out


# ---------------------------------------------------------------------------------------------
# Runs


@dataclass
class Run:
    """What one run of a graph left: its outputs (or the exception it raised), its inputs and
    the buffers it reads, after the run."""

    outputs: Any = None
    inputs: list[Any] = field(default_factory=list)
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    error: BaseException | None = None


def run(fn: Callable[..., Any], inputs: list[Any], state: Callable[[], dict[str, torch.Tensor]]) -> Run:
    """Call ``fn(*inputs)`` and record what it left; an exception is recorded, not raised."""
    try:
        outputs = fn(*inputs)
    except Exception as e:
        return Run(inputs=inputs, state=state(), error=e)
    return Run(outputs, inputs, state())


def run_differences(expected: Run, actual: Run) -> list[str]:
    """What differs between two runs: outputs, inputs after the run, buffers after the run."""
    if actual.error is not None:
        return [f"the rewritten graph raised {type(actual.error).__name__}: {actual.error}"]
    found = differences(expected.outputs, actual.outputs)
    for i, (e, a) in enumerate(zip(expected.inputs, actual.inputs)):
        found += [f"{d} (after the call)" for d in differences(e, a, f"input {i}")]
    for name in expected.state.keys() & actual.state.keys():
        found += [f"{d} (after the call)"
                  for d in differences(expected.state[name], actual.state[name], f"buffer {name}")]
    return found


def run_graph(gm: torch.fx.GraphModule, inputs: list[Any], state: dict[str, torch.Tensor]) -> Run:
    """Run ``gm`` on fresh copies of ``inputs`` and of the buffers it reads (those named in
    ``state`` from there), leaving all of them as they are."""
    mine = copy_graph_module(gm, own_state=True, state=state)
    return run(mine, clone_inputs(inputs), lambda: state_tensors(mine))


def snapshot_state(gm: torch.fx.GraphModule) -> dict[str, torch.Tensor]:
    """Copies of the buffers and constants ``gm`` reads (:func:`state_tensors`), as they are now."""
    state = state_tensors(gm)
    cloner = _Cloner(state.values())
    return {k: cloner(v) for k, v in state.items()}


# ---------------------------------------------------------------------------------------------
# Blame


@dataclass(frozen=True)
class Culprit:
    """What a verification error blames: ``name`` (a rule, :data:`CULPRIT_CSE`,
    :data:`CULPRIT_INNER`, or None), how it was found, and the rule's source span."""

    name: str | None
    reason: str
    span: Span | None = None


def _where(found: Sequence[str]) -> str:
    """What the differences are about (``output[0], input 1``), without the details."""
    return ", ".join(dict.fromkeys(d.split(": ")[0] for d in found))


@dataclass
class Call:
    """A call as verification keeps it: copies of its inputs and of the buffers the graph
    reads, as they were before the call, and what the original graph's run left."""

    inputs: list[Any]
    state: dict[str, torch.Tensor]
    expected: Run

    def reproduces(self, gm: torch.fx.GraphModule) -> list[str]:
        """How ``gm``, run on fresh copies of the call's inputs, differs from the original."""
        return run_differences(self.expected, run_graph(gm, self.inputs, self.state))


Rewrite = Callable[[Any, torch.fx.GraphModule, list[Any]], Any]


def find_culprit(call: Call, original: torch.fx.GraphModule, rewritten: torch.fx.GraphModule,
                 applied: Sequence[Any], rewrite: Rewrite,
                 cse: Callable[[torch.fx.GraphModule], Any]) -> Culprit:
    """Find what makes the rewritten graph differ from the original on ``call``:

    1. ``rewritten`` run as it is, without the inner compiler: if it agrees, the inner
       compiler's treatment of the rewritten graph is to blame;
    2. ``cse`` alone, on a fresh copy of ``original``: if that differs, CSE is to blame;
    3. with one rule in ``applied``, that rule; with several, each alone (``rewrite(rule,
       copy, inputs)``) on a fresh copy of ``original``: the first that differs is to blame;
       if none does alone, the rules together.
    """
    reproduces = call.reproduces

    if not reproduces(rewritten):
        return Culprit(CULPRIT_INNER, "the rewritten graph agrees with the original when run as it "
                       "is: only its compiled form differs")
    try:
        alone = copy_graph_module(original)
        cse(alone)
        alone.recompile()
        found = reproduces(alone)
    except Exception as e:
        found = [f"CSE raised {type(e).__name__}: {e}"]
    if found:
        return Culprit(CULPRIT_CSE, "common-subexpression elimination alone, on a fresh copy of the "
                       f"original graph, already changes {_where(found)}")
    if not applied:
        return Culprit(CULPRIT_CSE, "no rule fired: the rewrite pass changed the graph by merging "
                       "common subexpressions only")
    if len(applied) == 1:
        r = applied[0]
        return Culprit(r.name, "the only rule applied, and CSE alone agrees with the original",
                       r.span)
    for r in applied:
        alone = copy_graph_module(original)
        try:
            rewrite(r, alone, clone_inputs(call.inputs))
            found = reproduces(alone)
        except Exception:  # the rule cannot be applied alone: no verdict
            continue
        if found:
            return Culprit(r.name, "applied alone to a fresh copy of the original graph, it already "
                           f"changes {_where(found)}", r.span)
    names = ", ".join(r.name for r in applied)
    return Culprit(None, f"no rule differs when applied alone; the rules together do ({names})")


def verify_error(found: Sequence[str], culprit: Culprit, counts: dict[str, int],
                 cause: BaseException | None = None) -> VerifyError:
    """The error for a rewritten graph that differs from the original."""
    shown = list(found[:MAX_DIFFERENCES_SHOWN])
    if len(found) > len(shown):
        shown.append(f"... and {len(found) - len(shown)} more")
    applied = ", ".join(f"{k} ({v})" for k, v in counts.items()) or "none"
    if culprit.name == CULPRIT_CSE:
        blame = "common-subexpression elimination (pypm.graph.cse)"
    elif culprit.name == CULPRIT_INNER:
        blame = "the inner compiler"
    elif culprit.name is not None:
        blame = f"rule {culprit.name}"
    else:
        blame = "the rules together"
    message = ("verify: the rewritten graph disagrees with the original\n  "
               + "\n  ".join(shown)
               + f"\n  culprit: {blame}: {culprit.reason}\n  rules applied: {applied}")
    pattern = culprit.name if culprit.span is not None else None
    err = VerifyError(message, culprit.span, pattern, culprit=culprit.name, differences=found)
    if cause is not None:
        err.__cause__ = cause
    return err


__all__ = ["CULPRIT_CSE", "CULPRIT_INNER", "Call", "Culprit", "Run", "TOLERANCES", "VerifyError",
           "clone_inputs", "compare_outputs", "copy_graph_module", "differences", "find_culprit", "run",
           "run_differences", "run_graph", "snapshot_state", "state_tensors", "tensor_difference",
           "tolerance", "verify_error"]
