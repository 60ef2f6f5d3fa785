"""Rules: a pattern paired with a Python body that builds the replacement.

At rewrite time the body runs on fx proxies for the pattern's bound variables (literal
bindings as plain values, unbound ones as None) and returns the replacement value, or None /
:class:`Decline` to decline. A rule records the file and line it was written at.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RewriteError, Source, Span
from ..lang.analysis import Skeleton, call_of, resolve, root_ops, skeleton
from ..lang.fastmatch import Compiler, Matcher
from ..lang.syntax import Call, Definition, Program

MAX_MATCHES_PER_ROOT = 64  # alternatives can multiply; the first accepted match wins anyway


class Decline(Exception):
    """Raised by a rule body to decline a match with a reason (returning None also declines)."""


# ---------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True, eq=False)
class Rule:
    """A pattern and the body that builds its replacement; identity, priority and location."""

    pattern: Any
    fn: Callable[..., Any]
    name: str
    priority: int
    program: Program
    definition: Definition
    span: Span | None
    params: tuple[str, ...]  # the pattern parameters the body receives

    @property
    def call(self) -> Call:
        return call_of(self.definition)

    @functools.cached_property
    def matcher(self) -> Matcher:
        """The rule's pattern compiled to closures (:mod:`pypm.lang.fastmatch`)."""
        return Compiler(self.program).compile(self.call)

    @functools.cached_property
    def root_ops(self) -> frozenset[str] | None:
        """The operators a match's root can have (None: any), for the driver's index."""
        return root_ops(self.program, self.call)

    @functools.cached_property
    def skeleton(self) -> Skeleton:
        """A necessary condition for a match, checked before the interpreter runs."""
        return skeleton(self.program, self.call)

    def __repr__(self) -> str:
        return f"<rule {self.name} ({self.definition.name}, priority {self.priority}) at {self.span}>"


def _fn_span(fn: Callable[..., Any]) -> Span | None:
    try:
        file = inspect.getsourcefile(fn) or "<unknown>"
        line = fn.__code__.co_firstlineno
        text = Path(file).read_text() if Path(file).is_file() else ""
    except (TypeError, OSError, AttributeError):
        return None
    lines = text.splitlines()
    while line <= len(lines) and not lines[line - 1].lstrip().startswith(("def ", "async def ")):
        line += 1  # past the decorators, to the `def` line
    if line > len(lines):
        line = fn.__code__.co_firstlineno
    src = lines[line - 1] if line <= len(lines) else ""
    col = len(src) - len(src.lstrip()) + 1
    return Span(Source(file, text), line, col, line, len(src.rstrip()) + 1)


def rule(pattern: Any, *, name: str | None = None, priority: int = 0) -> Callable[[Callable[..., Any]], Rule]:
    """Make a rule from a pattern and a body: ``@rule(Attention, name="...", priority=10)``.

    The body's parameters must be parameters of the pattern (it may take fewer). Higher
    priority rules are tried first at a node. Ill-formed rules are rejected here.
    """
    def make(fn: Callable[..., Any]) -> Rule:
        span = _fn_span(fn)
        rule_name = name or fn.__name__
        try:
            program, definition = resolve(pattern)
        except TypeError:
            raise RewriteError(f"rule {rule_name}: {pattern!r} is not a pattern", span,
                               pattern=rule_name) from None
        sig = inspect.signature(fn)
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
        wanted = [p.name for p in sig.parameters.values()
                  if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
        unknown = [w for w in wanted if w not in definition.params]
        if unknown:
            raise RewriteError(
                f"rule {rule_name} takes {', '.join(unknown)}, which pattern {definition.name} does "
                f"not bind", span, pattern=rule_name,
                hint=f"the pattern's parameters are: {', '.join(definition.params)}")
        params = definition.params if takes_all else tuple(wanted)
        return Rule(pattern, fn, rule_name, priority, program, definition, span, params)

    return make
