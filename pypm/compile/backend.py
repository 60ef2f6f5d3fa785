"""``torch.compile(model, backend="pypm")``.

The backend rewrites the dynamo graph with pypm rules, then hands it to an inner compiler
(inductor by default). ``backend="pypm"`` is registered through the package entry point
``torch_dynamo_backends`` (``pypm.compile.backend:pypm_backend``), so it works without importing pypm.

    torch.compile(model, backend="pypm")                              # standard rules, inductor
    be = pypm.backend(rules=[...], inner="aot_eager", verify=True)
    torch.compile(model, backend=be); ...; be.reports                 # one report per graph

What the inner compiler receives:

- with ``rules=[]``, the graph exactly as dynamo made it (no pass runs, not even CSE: with
  nothing to match, merging common subexpressions has no purpose), so the backend is the inner
  compiler alone;
- otherwise the graph as the rewrite pass left it (common subexpressions merged, rules
  applied), its code regenerated whenever the graph changed;
- when the pass raises (a rule body that fails, a rule that keeps rewriting), the graph as
  dynamo made it: torch.compile goes on without pypm's rewrites for that graph, the error is
  kept in ``Backend.errors`` and a :class:`RewriteWarning` says so.

``verify=True`` checks each graph the pass changed (by CSE alone included) on its first call:
see :mod:`pypm.compile.verify`. The original graph runs once on copies of the inputs, the
compiled graph once on the real inputs (an input mutation happens once, as in eager mode);
outputs and mutated inputs are compared, and a :class:`~pypm.compile.verify.VerifyError` (a
:class:`~pypm.errors.RewriteError`) names the culprit: the rule, CSE, or the inner compiler.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx

from .. import graph as _graph
from ..errors import RewriteError
from ..graph.effects import STATE_FUNCTIONS
from ..logs import log_pass_failure, log_report, register_torch_log
from ..rewrite import RewritePass, RewriteReport, Rule
from .verify import (
    TOLERANCES,
    Call,
    Culprit,
    VerifyError,
    clone_inputs,
    compare_outputs,
    copy_graph_module,
    find_culprit,
    run,
    run_differences,
    run_graph,
    snapshot_state,
    state_tensors,
    verify_error,
)

register_torch_log()  # TORCH_LOGS / torch._logging.set_logs know the pypm component once the backend loads

InnerCompiler = Callable[[torch.fx.GraphModule, Sequence[Any]], Callable[..., Any]]


class RewriteWarning(UserWarning):
    """The rewrite pass failed on a graph, which was compiled as dynamo made it."""


def standard_rules() -> list[Rule]:
    """The standard rule set (every rule listed by the modules of ``pypm.rules``)."""
    from pypm.rules import all_rules

    return list(all_rules())


def _inner_compiler(inner: str | InnerCompiler) -> InnerCompiler:
    if callable(inner):
        return inner
    if inner == "eager":
        return lambda gm, example_inputs: gm.forward
    if inner == "inductor":
        from torch._inductor.compile_fx import compile_fx

        return compile_fx
    try:
        from torch._dynamo import lookup_backend
    except ImportError:  # pragma: no cover - very old torch
        from torch._dynamo.backends.registry import lookup_backend
    try:
        return lookup_backend(inner)
    except Exception as e:
        raise RewriteError(f"unknown inner compiler {inner!r} for the pypm backend: {e}") from None


def _fingerprint(graph: torch.fx.Graph) -> list[tuple[Any, ...]]:
    """The nodes of a graph with their targets and arguments, compared by identity: fx
    replaces a node's argument tuple whenever it rewires it, so any change to the graph
    changes the fingerprint."""
    return [(n, n.target, n.args, n.kwargs) for n in graph.nodes]


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    return len(a) == len(b) and all(x is y for s, t in zip(a, b) for x, y in zip(s, t))


def _restore(gm: torch.fx.GraphModule, backup: torch.fx.Graph) -> None:
    """Put the graph as it came back into ``gm``: its placeholders stay (dynamo hangs each
    input's source on them), every other node is replaced by its copy in ``backup``, a copy
    of the graph taken before the pass. Nodes may come back under new names."""
    graph = gm.graph
    mine = [n for n in graph.nodes if n.op == "placeholder"]
    theirs = [n for n in backup.nodes if n.op == "placeholder"]
    if [n.target for n in mine] != [n.target for n in theirs]:  # the inputs changed: no node kept
        gm.graph = backup
        return
    for n in reversed(list(graph.nodes)):
        if n.op != "placeholder":
            graph.erase_node(n)
    copied = graph.graph_copy(backup, dict(zip(theirs, mine)), return_output_node=True)
    if copied is not None:
        value, output = copied  # type: ignore[misc]
        graph.output(value, type_expr=getattr(output, "type", None)).meta = copy.copy(output.meta)
    gm.recompile()


def _rewrite_alone(rule: Rule, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> None:
    RewritePass([rule]).apply(gm, example_inputs)
    gm.recompile()


class _Verified:
    """A compiled graph that checks itself against the original graph on its first call (see
    the module docstring); later calls go straight to the compiled graph."""

    def __init__(self, compiled: Callable[..., Any], original: torch.fx.GraphModule,
                 rewritten: torch.fx.GraphModule, report: RewriteReport, rules: Sequence[Rule]):
        self.compiled = compiled
        self.original = original  # a copy of the graph before the pass, sharing its module's tensors
        self.rewritten = rewritten  # a copy of the graph after the pass, before the inner compiler
        self.report = report
        self.rules = rules
        self.checked = False

    def __call__(self, *args: Any) -> Any:
        if self.checked:
            return self.compiled(*args)
        self.checked = True
        original = self.original
        inputs, state = clone_inputs(args), snapshot_state(original)  # before anything runs
        call = Call(inputs, state, run_graph(original, inputs, state))
        if call.expected.error is not None:
            # The original graph fails on copies of the inputs: there is nothing to check against.
            warnings.warn(f"pypm verify: the original graph raised {type(call.expected.error).__name__} "
                          f"on copies of the inputs; the rewritten graph is not checked",
                          RewriteWarning, stacklevel=2)
            return self.compiled(*args)
        actual = run(self.compiled, list(args), lambda: state_tensors(original))
        found = run_differences(call.expected, actual)
        if found:
            raise self._error(call, found, actual.error)
        self.original = self.rewritten = None  # type: ignore[assignment]
        return actual.outputs

    def _error(self, call: Call, found: list[str], cause: BaseException | None) -> VerifyError:
        by_name = {r.name: r for r in reversed(list(self.rules))}
        applied = [by_name[n] for n in dict.fromkeys(r.rule for r in self.report.rewrites) if n in by_name]
        try:
            culprit = find_culprit(call, self.original, self.rewritten, applied, _rewrite_alone,
                                   lambda gm: _graph.cse(gm))
        except Exception as e:  # the search itself failed: name what was applied
            culprit = Culprit(None, f"the search for a culprit failed ({type(e).__name__}: {e})")
        return verify_error(found, culprit, self.report.counts(), cause)


class Backend:
    """A torch.compile backend: rewrite the dynamo graph with ``rules``, then compile it with
    ``inner`` (see the module docstring). ``reports`` keeps one
    :class:`~pypm.rewrite.RewriteReport` per compiled graph; ``errors`` the exceptions of
    passes that failed (their graphs were compiled as dynamo made them)."""

    def __init__(self, rules: Sequence[Rule] | None = None, inner: str | InnerCompiler = "inductor",
                 verify: bool = False):
        self.rules = list(rules) if rules is not None else None
        self.inner = inner
        self.verify = verify
        self.reports: list[RewriteReport] = []
        self.errors: list[Exception] = []
        self._pass: RewritePass | None = None
        self._rules: list[Rule] = []
        self.__name__ = "pypm"  # dynamo names backends in its logs and errors

    def rewrite_pass(self) -> RewritePass:
        """The pass over this backend's rules (the standard rules when none were given)."""
        if self._pass is None:
            self._rules = self.rules if self.rules is not None else standard_rules()
            self._pass = RewritePass(self._rules)
        return self._pass

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
        inner = _inner_compiler(self.inner)
        rewrite = self.rewrite_pass()
        if not self._rules:
            size = len(gm.graph.nodes)
            self.reports.append(RewriteReport(nodes_before=size, nodes_after=size))
            return inner(gm, example_inputs)
        backup = copy.deepcopy(gm.graph)
        before = _fingerprint(gm.graph)
        try:
            report = rewrite.apply(gm, example_inputs)
        except Exception as e:
            _restore(gm, backup)
            self.errors.append(e)
            log_pass_failure(e)
            size = len(gm.graph.nodes)
            self.reports.append(RewriteReport(nodes_before=size, nodes_after=size))
            warnings.warn(f"pypm: the rewrite pass failed, so this graph is compiled without pypm's "
                          f"rewrites: {e}", RewriteWarning, stacklevel=2)
            return inner(gm, list(example_inputs))
        self.reports.append(report)
        log_report(report)
        if _same(before, _fingerprint(gm.graph)):
            return inner(gm, list(example_inputs))
        gm.recompile()  # the pass regenerates code only when a rule fired; CSE may have changed it too
        if not self.verify:
            return _compile_changed(inner, gm, list(example_inputs))
        original = torch.fx.GraphModule(gm, backup)
        rewritten = copy_graph_module(gm)  # the inner compiler may change gm
        compiled = _compile_changed(inner, gm, list(example_inputs))
        return _Verified(compiled, original, rewritten, report, self._rules)


def _changes_grad_mode(gm: torch.fx.GraphModule) -> bool:
    """Whether the graph switches grad mode, autocast or inference mode somewhere."""
    return any(n.op == "call_function" and _is_state_function(n.target) for n in gm.graph.nodes)


def _is_state_function(target: Any) -> bool:
    try:
        return target in STATE_FUNCTIONS
    except TypeError:  # an unhashable target
        return False


def _compile_changed(inner: InnerCompiler, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
    """The inner compiler on a graph the pass changed. AOTAutograd's common-subexpression
    elimination (``torch._functorch.config.cse``) merges equal ops without regard to grad mode:
    two equal ``scaled_dot_product_attention`` calls on either side of a ``no_grad`` block
    become one, and the first loses its gradient (plain inductor does this to such a program
    written by hand, too). pypm's rewrites can make such pairs out of attention written out,
    so on a rewritten graph that changes grad mode, AOTAutograd's CSE is switched off for
    the compile (pypm's own CSE, which keeps grad modes apart, has run already)."""
    if not _changes_grad_mode(gm):
        return inner(gm, example_inputs)
    import torch._functorch.config as functorch_config

    with functorch_config.patch(cse=False):
        return inner(gm, example_inputs)


def backend(rules: Sequence[Rule] | None = None, *, inner: str | InnerCompiler = "inductor",
            verify: bool = False) -> Backend:
    """A pypm backend for ``torch.compile``: ``rules`` (default: the standard rules), then the
    ``inner`` compiler ("inductor", "aot_eager", "eager", any registered backend name, or a
    callable ``(gm, example_inputs) -> callable``)."""
    return Backend(rules, inner, verify)


_DEFAULT: Backend | None = None


def pypm_backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
    """The backend named "pypm" (entry point target): the standard rules, then inductor.
    Its reports accumulate on ``pypm.backend.default_backend().reports``."""
    return default_backend()(gm, example_inputs)


def default_backend() -> Backend:
    """The :class:`Backend` behind ``backend="pypm"``."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Backend()
    return _DEFAULT


__all__ = ["Backend", "RewriteWarning", "TOLERANCES", "VerifyError", "backend", "compare_outputs",
           "default_backend", "pypm_backend", "standard_rules"]
