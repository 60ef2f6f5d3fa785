"""pypm in torch's logging: ``TORCH_LOGS=pypm``, ``torch._logging.set_logs``, ``TORCH_TRACE``.

pypm logs under the ``pypm`` logger namespace (module loggers ``logging.getLogger("pypm.xxx")``).
:func:`register_torch_log` registers that namespace with torch's logging as the component
``pypm``, so that

    TORCH_LOGS=pypm python train.py        # each rewrite, and a summary per graph (INFO)
    TORCH_LOGS=+pypm python train.py       # also each skipped match and near miss (DEBUG)
    torch._logging.set_logs(modules={"pypm": logging.INFO})

turn it on, with torch's format and handlers, next to ``dynamo`` and ``inductor``.
(``TORCH_LOGS`` is read when torch is imported, before pypm can register anything; torch then
accepts ``pypm`` as a module name, which names the same loggers.)

:func:`log_report` logs one :class:`~pypm.rewrite.RewriteReport` and writes it, as JSON
(:func:`report_to_json`), to torch's structured trace as the artifact ``pypm_rewrite_report``:
with ``TORCH_TRACE=/tmp/trace``, ``tlparse`` lists it beside inductor's artifacts for the same
compile id.

Nothing here imports torch at module import (``import pypm`` stays light) or any other part of
pypm: reports are read by attribute.
"""

from __future__ import annotations

import json
import logging
from typing import Any

LOG_NAME = "pypm"  # the TORCH_LOGS component, and the root of pypm's logger namespace
ARTIFACT_NAME = "pypm_rewrite_report"  # the structured-trace artifact of one report

log = logging.getLogger(__name__)

_registered = False


def register_torch_log() -> bool:
    """Register the ``pypm`` logger namespace with torch's logging as the component ``pypm``
    (idempotent; imports torch._logging). False when this torch has no such registry."""
    global _registered
    if _registered:
        return True
    try:
        from torch._logging._internal import log_registry, register_log
    except ImportError:  # pragma: no cover - a torch without the logging registry
        return False
    if not log_registry.is_log(LOG_NAME):
        register_log(LOG_NAME, [LOG_NAME])
    _registered = True
    return True


# -- reports as data ----------------------------------------------------------------------


def _text(v: Any) -> Any:
    """JSON-safe: strings, numbers, booleans and None as they are; enums by value; the rest as str."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    value = getattr(v, "value", None)
    if isinstance(value, str):
        return value
    return str(v)


def _bindings(b: Any) -> dict[str, Any]:
    return {str(k): _text(v) for k, v in (b or {}).items()}


def _rewrite_json(r: Any) -> dict[str, Any]:
    return {"rule": _text(getattr(r, "rule", None)), "root": _text(getattr(r, "root", None)),
            "root_source": _text(getattr(r, "root_source", None)),
            "bindings": _bindings(getattr(r, "bindings", None)),
            "replacement": _text(getattr(r, "replacement", None))}


def _skip_json(s: Any) -> dict[str, Any]:
    return {"rule": _text(getattr(s, "rule", None)), "root": _text(getattr(s, "root", None)),
            "kind": _text(getattr(s, "kind", None)), "reason": _text(getattr(s, "reason", None)),
            "hazard": _text(getattr(s, "hazard", None)),
            "bindings": _bindings(getattr(s, "bindings", None))}


def _stop_json(stop: Any) -> Any:
    if stop is None:
        return None
    return {"kind": _text(getattr(stop, "kind", None)), "text": str(stop),
            "rules": [str(r) for r in getattr(stop, "rules", ()) or ()],
            "where": [str(w) for w in getattr(stop, "where", ()) or ()]}


def counts(report: Any) -> dict[str, int]:
    """Rewrites per rule name."""
    out: dict[str, int] = {}
    for r in getattr(report, "rewrites", ()) or ():
        out[r.rule] = out.get(r.rule, 0) + 1
    return out


def report_to_json(report: Any, graph_name: str | None = None) -> dict[str, Any]:
    """A rewrite report as JSON-ready data: the graph's name, each rewrite (rule, root,
    root_source, bindings, replacement), each skipped match and near miss (rule, root, kind,
    reason, hazard, bindings), the rewrites per rule, sweeps, why the sweeps stopped, node counts
    and seconds."""
    return {
        "graph": graph_name,
        "counts": counts(report),
        "rewrites": [_rewrite_json(r) for r in getattr(report, "rewrites", ()) or ()],
        "skipped": [_skip_json(s) for s in getattr(report, "skipped", ()) or ()],
        "misses": [_skip_json(s) for s in getattr(report, "misses", ()) or ()],
        "sweeps": getattr(report, "sweeps", 0),
        "stop": _stop_json(getattr(report, "stop", None)),
        "nodes_before": getattr(report, "nodes_before", 0),
        "nodes_after": getattr(report, "nodes_after", 0),
        "seconds": getattr(report, "seconds", 0.0),
    }


def report_to_json_text(report: Any, graph_name: str | None = None) -> str:
    """:func:`report_to_json`, as text (one key per line, as torch's trace payloads are)."""
    return json.dumps(report_to_json(report, graph_name), indent=0, sort_keys=False)


# -- logging one report -------------------------------------------------------------------


def current_graph_name() -> str | None:
    """The compile id dynamo is compiling (``"0/0"``), or None outside a compile."""
    try:
        import torch._guards
    except ImportError:  # pragma: no cover
        return None
    cid = torch._guards.CompileContext.current_compile_id()
    return None if cid is None else str(cid)


def _summary(report: Any, name: str) -> str:
    by_rule = ", ".join(f"{k}: {v}" for k, v in counts(report).items())
    n = len(getattr(report, "rewrites", ()) or ())
    skipped = len(getattr(report, "skipped", ()) or ())
    text = (f"graph {name}: {n} rewrite(s){f' ({by_rule})' if by_rule else ''}, {skipped} skipped, "
            f"{getattr(report, 'nodes_before', 0)} -> {getattr(report, 'nodes_after', 0)} nodes, "
            f"{getattr(report, 'seconds', 0.0) * 1e3:.1f} ms")
    stop = getattr(report, "stop", None)
    if stop is not None and _text(getattr(stop, "kind", None)) not in (None, "fixpoint"):
        text += f"; {stop}"
    return text


def log_report(report: Any, graph_name: str | None = None, *, logger: logging.Logger | None = None) -> None:
    """Log what a rewrite pass did to one graph and put the report in torch's structured trace.

    INFO: a summary line and one line per rewrite. DEBUG: one line per skipped match (with
    its reason) and per near miss. ``graph_name`` defaults to dynamo's compile id (``0/0``).
    The trace artifact is ``pypm_rewrite_report`` (JSON of :func:`report_to_json`), written
    only when torch's trace is on (``TORCH_TRACE``). A report is logged once: a second call
    with the same report object does nothing."""
    if report is None:
        return
    try:
        if getattr(report, "_pypm_logged", False):
            return
        object.__setattr__(report, "_pypm_logged", True)
    except (AttributeError, TypeError):  # a report without a __dict__: log it every time
        pass
    register_torch_log()
    name = graph_name if graph_name is not None else (current_graph_name() or "?")
    lg = logger if logger is not None else log
    if lg.isEnabledFor(logging.INFO):
        lg.info("%s", _summary(report, name))
        for r in getattr(report, "rewrites", ()) or ():
            lg.info("rewrote %s", r)
    if lg.isEnabledFor(logging.DEBUG):
        for s in getattr(report, "skipped", ()) or ():
            lg.debug("skipped %s", s)
        for s in getattr(report, "misses", ()) or ():
            lg.debug("no match %s", s)
    trace_report(report, name)


def trace_report(report: Any, graph_name: str | None = None) -> None:
    """Write ``report`` to torch's structured trace (artifact ``pypm_rewrite_report``, JSON);
    nothing when the trace is off."""
    try:
        from torch._logging import trace_structured
        from torch._logging._internal import trace_log
    except ImportError:  # pragma: no cover
        return
    if not trace_log.handlers:
        return
    trace_structured(
        "artifact",
        metadata_fn=lambda: {"name": ARTIFACT_NAME, "encoding": "json"},
        payload_fn=lambda: report_to_json_text(report, graph_name),
    )


def log_pass_failure(error: BaseException, graph_name: str | None = None) -> None:
    """Log (WARNING) a rewrite pass that raised, whose graph was compiled without rewrites."""
    register_torch_log()
    name = graph_name if graph_name is not None else (current_graph_name() or "?")
    log.warning("graph %s: the rewrite pass failed (%s: %s); compiled without pypm's rewrites",
                name, type(error).__name__, error)


__all__ = ["ARTIFACT_NAME", "LOG_NAME", "counts", "current_graph_name", "log_pass_failure", "log_report",
           "register_torch_log", "report_to_json", "report_to_json_text", "trace_report"]
