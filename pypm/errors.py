"""Errors a user can cause, each naming the pattern, its file and line, with the source line shown.

Every mistake in a pattern (syntax, scoping, arity, recursion, guard types), an unsafe rewrite
or a bad kernel input is a :class:`PypmError` subclass. The message is built so that a user can
act on it without reading a traceback: ``file:line:col: error: message`` then the source line
and a caret under the offending column.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """A piece of pattern source text and where it came from (a file name or ``<string>``)."""

    name: str
    text: str
    line_offset: int = 0  # added to line numbers: a @pattern body sits inside a bigger file

    def line(self, lineno: int) -> str:
        """The text of line ``lineno`` (numbered as the user sees it, offset included).

        Lines end at ``\n`` only, as the parser counts them (``str.splitlines`` would also
        split at form feeds and other separators, and show the wrong line)."""
        i = lineno - self.line_offset - 1
        if i < 0:
            return ""
        start = 0
        for _ in range(i):
            start = self.text.find("\n", start) + 1
            if start == 0:
                return ""
        end = self.text.find("\n", start)
        return self.text[start:] if end < 0 else self.text[start:end].removesuffix("\r")


@dataclass(frozen=True)
class Span:
    """Where an AST node came from: 1-based line and column, end exclusive."""

    source: Source
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0

    @property
    def file(self) -> str:
        return self.source.name

    def line_text(self) -> str:
        return self.source.line(self.line)

    def __str__(self) -> str:
        return f"{self.source.name}:{self.line}:{self.col}"


def caret(span: Span, offset: int) -> str:
    """The line of carets under a span's columns (one caret for an empty or multi-line span),
    for a source line printed ``offset`` columns from the left margin."""
    width = 1
    if span.end_line == span.line and span.end_col > span.col:
        width = span.end_col - span.col
    return " " * (offset + span.col - 1) + "^" * width


class PypmError(Exception):
    """Base of every error a user of pypm can cause.

    ``message`` is the plain sentence; ``span`` (optional) points at the source; ``pattern``
    names the definition the error is about, when there is one. ``str(err)`` renders
    ``file:line:col: error in pattern P: message`` followed by the line and a caret.
    """

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, pattern: str | None = None,
                 hint: str | None = None):
        self.message = message
        self.span = span
        self.pattern = pattern
        self.hint = hint
        super().__init__(self.render())

    @property
    def file(self) -> str | None:
        return self.span.file if self.span else None

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def col(self) -> int | None:
        return self.span.col if self.span else None

    def render(self) -> str:
        where = f"{self.span}: " if self.span else ""
        who = f" in pattern {self.pattern}" if self.pattern else ""
        out = f"{where}{self.kind}{who}: {self.message}"
        if self.span is not None:
            text = self.span.line_text()
            if text:
                out += f"\n    {text}\n{caret(self.span, 4)}"
        if self.hint:
            out += f"\n  hint: {self.hint}"
        return out

    def __reduce__(self):  # keep errors picklable (multiprocessing in conformance runs)
        return (_rebuild, (type(self), self.message, self.span, self.pattern, self.hint))


def _rebuild(cls, message, span, pattern, hint):
    return cls(message, span, pattern, hint)


class PatternSyntaxError(PypmError):
    """The text is not in the surface syntax (unclosed parenthesis, bad statement, ...)."""

    kind = "syntax error"


class LimitError(PatternSyntaxError):
    """A pattern beyond the sizes the language accepts: nested too deeply, a number literal too
    long (the limits are in :mod:`pypm.lang.limits`)."""

    kind = "limit exceeded"


class ScopeError(PypmError):
    """A variable that is neither a parameter nor a local, or a local that is never used."""

    kind = "scope error"


class ArityError(PypmError):
    """A call of a pattern with the wrong number of arguments, or an unknown keyword."""

    kind = "arity error"


class UnboundError(PypmError):
    """A guard or ``;`` uses a variable before any pattern binds it (§5 definitely-bound)."""

    kind = "unbound variable"


class LeftRecursionError(PypmError):
    """Unguarded (left) recursion: a cycle of calls that consumes no operator."""

    kind = "left recursion"


class UnknownPatternError(PypmError):
    """A call names a pattern that is not defined or imported."""

    kind = "unknown pattern"


class GuardError(PypmError):
    """A guard is ill-typed or calls an unknown function."""

    kind = "guard error"


class PatternImportError(PypmError):
    """A ``from X import P`` in a pattern file that cannot be resolved."""

    kind = "import error"


class RewriteError(PypmError):
    """A rule is ill-formed, a rewrite is unsafe, or a rewritten graph disagrees with the original."""

    kind = "rewrite error"


class KernelInputError(PypmError):
    """A fused kernel was given inputs it cannot handle (shapes, dtypes, heads, masks)."""

    kind = "bad kernel input"


__all__ = [
    "ArityError", "GuardError", "LimitError", "PatternImportError", "KernelInputError",
    "PatternSyntaxError",
    "PypmError", "LeftRecursionError", "caret", "RewriteError", "ScopeError", "Source", "Span",
    "UnboundError", "UnknownPatternError",
]
