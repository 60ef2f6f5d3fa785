"""Parsing: source text → lark tree → surface AST → core AST (LANGUAGE.md §7), with spans.

Three steps, each in a module of its own:

1. :func:`parse_surface` runs the lark grammar (``grammar.lark``) and walks its tree into the
   surface AST (:mod:`pypm.lang.surface`). A lark error becomes a
   :class:`~pypm.errors.PatternSyntaxError` with line, column and a human message, found by
   the table of known mistakes :data:`MISTAKES` (in the spirit of lark's ``match_examples``:
   unclosed parenthesis, `=` where a guard compares, Python statements that are not part of the
   language, ...).
2. :func:`desugar_module` turns each surface definition into a core
   :class:`~pypm.lang.syntax.Definition` (:mod:`pypm.lang.desugar`).
3. :func:`parse_module` is both, for callers that have no imports to resolve in between.

Nothing here executes user code: names are looked up in tables, never evaluated.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LimitError, PatternSyntaxError, PypmError, ScopeError, Source, Span
from .desugar import desugar
from .limits import MAX_NESTING, MAX_STATEMENT_TOKENS, MAX_STRING_CHARS
from .surface import SDef, SImport, SModule, ToSurface
from .syntax import Definition


@dataclass
class ParsedModule:
    """The result of parsing one text: definitions (core, desugared) and pattern imports."""

    source: Source
    definitions: dict[str, Definition] = field(default_factory=dict)
    imports: list[SImport] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Text → lark tree


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    from lark import Lark
    from lark.indenter import PythonIndenter

    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(grammar, parser="lalr", postlex=PythonIndenter(), propagate_positions=True,
                maybe_placeholders=True)


def text_of(data: object, filename: str = "<string>") -> str:
    """Pattern source as text: a str as it is, bytes decoded as UTF-8 (a byte that is not UTF-8
    is a syntax error at its line and column); anything else is refused."""
    if isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            good = raw[:e.start].decode("utf-8")
            line = good.count("\n") + 1
            col = len(good) - (good.rfind("\n") + 1) + 1
            source = Source(filename, good + raw[e.start:].decode("utf-8", "replace"))
            raise PatternSyntaxError(f"the text is not UTF-8: byte {raw[e.start]:#04x} cannot be "
                                     "decoded", Span(source, line, col, line, col + 1)) from None
    raise PypmError(f"pattern source must be text (str or UTF-8 bytes), not {type(data).__name__}")


def _lines(text: str) -> list[str]:
    """Lines as the parser counts them (ended by ``\\n`` only)."""
    return [ln.removesuffix("\r") for ln in text.split("\n")]


# Strings, comments, line ends, brackets, words and single characters: enough of the lexical
# structure to measure a text before lark spends time on it.
_TOKEN = re.compile(
    r'[rRbBuU]*(?:"""[\s\S]*?"""|' + r"'''[\s\S]*?'''" + r'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
    + r"|'[^'\\\n]*(?:\\.[^'\\\n]*)*')"
    r"|#[^\n]*|\\\r?\n|\n|[(\[{]|[)\]}]|[A-Za-z_0-9.]+|\S")


def _measure(source: Source, line_offset: int) -> None:
    """Refuse, in one linear scan, texts that would make the parser or the later recursive
    passes slow or deep: brackets nested deeper than MAX_NESTING, statements of more than
    MAX_STATEMENT_TOKENS tokens, string literals longer than MAX_STRING_CHARS (a LimitError
    where the limit is crossed)."""
    depth = tokens = 0
    line, line_start = 1, 0

    def limit(message: str, at: int, hint: str | None = None) -> LimitError:
        col = at - line_start + 1
        return LimitError(message, Span(source, line + line_offset, col, line + line_offset, col + 1),
                          hint=hint)

    for m in _TOKEN.finditer(source.text):
        tok = m.group()
        c = tok[0]
        if c == "\n" or (c == "\\" and len(tok) > 1):
            line, line_start = line + 1, m.end()
            if depth == 0 and c == "\n":
                tokens = 0
            continue
        if c == "#":
            continue
        if c in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise limit(f"brackets nested deeper than {MAX_NESTING} levels", m.start())
        elif c in ")]}":
            depth = max(0, depth - 1)
        tokens += 1
        if len(tok) > MAX_STRING_CHARS and tok[-1] in "\"'":
            raise limit(f"a string literal of {len(tok)} characters (the limit is {MAX_STRING_CHARS})",
                        m.start())
        if tokens > MAX_STATEMENT_TOKENS:
            raise limit(f"a statement of more than {MAX_STATEMENT_TOKENS} tokens", m.start(),
                        hint="split it: name parts with locals, or move them into patterns")
        newlines = tok.count("\n")
        if newlines:  # a multi-line string
            line, line_start = line + newlines, m.start() + tok.rfind("\n") + 1


def _lark_parse(source: Source, line_offset: int) -> Any:
    from lark.exceptions import LarkError

    _measure(source, line_offset)
    text = source.text if source.text.endswith("\n") else source.text + "\n"
    try:
        return _parser().parse(text)
    except LarkError as exc:
        raise _syntax_error(exc, source, line_offset) from None


# ---------------------------------------------------------------------------------------------
# Known mistakes → messages


# Python statements and expressions that are not part of the pattern language, with the advice
# a user needs (lark would only say "unexpected token").
_NOT_IN_LANGUAGE = {
    "for": "`for` loops are not part of the pattern language; patterns are declarative: "
           "use a recursive pattern (e.g. `Chain(x) := x | f(Chain(x))`)",
    "while": "`while` loops are not part of the pattern language; use a recursive pattern",
    "if": "`if` statements are not part of the pattern language; use `assert cond` for a "
          "guard, or `p if cond else fail`",
    "class": "classes are not part of the pattern language; a file holds `def` patterns",
    "lambda": "`lambda` is not part of the pattern language",
    "with": "`with` is not part of the pattern language",
    "try": "`try` is not part of the pattern language",
    "yield": "`yield` is not part of the pattern language; a pattern `return`s what it matches",
    "global": "`global` is not part of the pattern language",
    "nonlocal": "`nonlocal` is not part of the pattern language",
    "del": "`del` is not part of the pattern language",
    "raise": "`raise` is not part of the pattern language; use `fail` for a pattern that never "
             "matches",
    "async": "`async` is not part of the pattern language",
    "await": "`await` is not part of the pattern language",
    "print": "`print` is not part of the pattern language",
}

_ASSIGN_ADVICE = ("unexpected `=`: parameters have no defaults and only a plain name can be "
                  "assigned (`name = pattern`)")

# Mistakes recognised by the parser state they leave lark in (lark's ``match_examples``): each
# message with texts that make that mistake. A new entry needs only an example.
EXAMPLES: dict[str, list[str]] = {
    "`=` in a guard: compare with `==`": [
        "def P(x):\n    assert x = 1\n    return x\n",
        "def P(x):\n    assert x.ndim = 2\n    return x\n",
        "def P(x):\n    assert x.shape[0] = 2\n    return x\n",
        "def P(x):\n    assert f(x) = 2\n    return x\n",
        "def P(x):\n    return x if x = 1 else fail\n",
        "def P(x):\n    return x if x.ndim = 1 else fail\n",
        "def P(x):\n    return x if x.shape[0] = 1 else fail\n",
    ],
    "parameters have no default values; test a value with a guard: `assert x == ...`": [
        "def P(x=1):\n    return x\n",
        "def P(x, y=1):\n    return x\n",
    ],
    "`return` needs the pattern to match: `return <pattern>`": [
        "def P(x):\n    return\n",
    ],
    "`assert` needs a guard: `assert <condition>`": [
        "def P(x):\n    assert\n    return x\n",
    ],
    "two expressions in a row: a comma or an operator is missing": [
        "def P(x):\n    return f(x y)\n",
        "def P(x):\n    return f(x 1)\n",
    ],
    "a `def` needs a name and a parameter list: `def P(x):`": [
        "def (x):\n    return x\n",
        "def P:\n    return x\n",
    ],
}


def _unclosed(text: str) -> tuple[int, int, str] | None:
    """Position of the first bracket that is never closed (line, col, char), ignoring strings
    and comments; None when brackets balance."""
    stack: list[tuple[int, int, str]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for lineno, line in enumerate(_lines(text), 1):
        i = 0
        while i < len(line):
            c = line[i]
            if c == "#":
                break
            if c in "'\"":
                j = line.find(c, i + 1)
                i = len(line) if j < 0 else j + 1
                continue
            if c in "([{":
                stack.append((lineno, i + 1, c))
            elif c in pairs:
                if stack and stack[-1][2] == pairs[c]:
                    stack.pop()
            i += 1
    return stack[0] if stack else None


@dataclass(frozen=True)
class _Failure:
    """Where and how lark gave up, with what a mistake recogniser needs to name the mistake."""

    exc: Exception
    source: Source
    offset: int
    line: int
    col: int
    text: str  # the source line

    def span(self, line: int | None = None, col: int | None = None, width: int = 1) -> Span:
        ln = self.line if line is None else line
        c = self.col if col is None else col
        return Span(self.source, ln + self.offset, c, ln + self.offset, c + width)

    @property
    def token_type(self) -> str:
        return getattr(getattr(self.exc, "token", None), "type", "")


def _statement_not_in_language(f: _Failure) -> PatternSyntaxError | None:
    stripped = f.text.strip()
    word = stripped.split("(")[0].split(" ")[0].rstrip(":") if stripped else ""
    if word not in _NOT_IN_LANGUAGE:
        return None
    return PatternSyntaxError(_NOT_IN_LANGUAGE[word], f.span(col=f.text.index(word) + 1, width=len(word)))


_EXPRESSION_KEYWORDS = re.compile(r"\b(lambda|yield|await|async|del|global|nonlocal|raise)\b")


def _keyword_in_expression(f: _Failure) -> PatternSyntaxError | None:
    """A Python keyword inside an expression (``return lambda y: y``), before the failure."""
    found = list(_EXPRESSION_KEYWORDS.finditer(f.text[:f.col]))
    if not found:
        return None
    m = found[-1]
    return PatternSyntaxError(_NOT_IN_LANGUAGE[m.group(1)], f.span(col=m.start() + 1, width=len(m.group(1))))


def _unclosed_bracket(f: _Failure) -> PatternSyntaxError | None:
    from lark.exceptions import UnexpectedEOF

    unclosed = _unclosed(f.source.text)
    if unclosed is None:
        return None
    ln, c, ch = unclosed
    if isinstance(f.exc, UnexpectedEOF) or f.token_type in ("$END", "_DEDENT") or ln < f.line:
        return PatternSyntaxError(f"unclosed {'parenthesis' if ch == '(' else 'bracket'} {ch!r}",
                                  f.span(ln, c))
    return None


def _bad_character(f: _Failure) -> PatternSyntaxError | None:
    from lark.exceptions import UnexpectedCharacters

    if not isinstance(f.exc, UnexpectedCharacters):
        return None
    pos = f.exc.pos_in_stream
    ch = f.source.text[pos] if pos < len(f.source.text) else "?"
    if ch == "\t" or (ch == " " and f.text[:f.col].strip() == ""):
        return PatternSyntaxError("unexpected indentation", f.span())
    if ch in "'\"":
        return PatternSyntaxError("unterminated string", f.span())
    if ch == "=" and "=" in f.text:
        return PatternSyntaxError(_ASSIGN_ADVICE, f.span())
    if ch in "{}":
        return PatternSyntaxError("dicts and sets are not part of the pattern language", f.span())
    if ch == "\x00":
        return PatternSyntaxError("NUL character in the text", f.span())
    return PatternSyntaxError(f"unexpected character {ch!r}", f.span())


def _indentation(f: _Failure) -> PatternSyntaxError | None:
    expected = set(getattr(f.exc, "expected", ()) or ())
    if f.token_type == "_INDENT":
        lines = _lines(f.source.text)
        ln = f.line + 1
        while ln <= len(lines) and (not lines[ln - 1].strip() or lines[ln - 1].lstrip().startswith("#")):
            ln += 1
        span = f.span()
        if ln <= len(lines):
            span = f.span(ln, len(lines[ln - 1]) - len(lines[ln - 1].lstrip()) + 1)
        return PatternSyntaxError("unexpected indentation", span)
    if f.token_type in ("_DEDENT", "$END") and "_INDENT" in expected:
        return PatternSyntaxError("expected an indented body after `:`", f.span())
    return None


def _missing_colon(f: _Failure) -> PatternSyntaxError | None:
    expected = set(getattr(f.exc, "expected", ()) or ())
    if "COLON" in expected and len(expected) <= 3 and f.text.lstrip().startswith("def"):
        return PatternSyntaxError("expected `:` at the end of the `def` line", f.span())
    return None


@functools.lru_cache(maxsize=1)
def _example_parse() -> Callable[[str], Any]:
    return _parser().parse


def _by_example(f: _Failure) -> PatternSyntaxError | None:
    from lark.exceptions import UnexpectedInput

    if not isinstance(f.exc, UnexpectedInput) or getattr(f.exc, "state", None) is None:
        return None
    try:
        label = f.exc.match_examples(_example_parse(), EXAMPLES, use_accepts=True)
    except Exception:  # an example that no longer fails the same way: fall through
        return None
    return PatternSyntaxError(label, f.span()) if label is not None else None


def _unexpected_token(f: _Failure) -> PatternSyntaxError | None:
    from lark.exceptions import UnexpectedToken

    if not isinstance(f.exc, UnexpectedToken):
        return None
    value = str(f.exc.token)
    tok = f.token_type
    if tok == "_NEWLINE":
        return PatternSyntaxError("the line ends in the middle of an expression", f.span())
    if tok == "NAME" and f.text.lstrip().startswith(value) and "def" not in f.text:
        return PatternSyntaxError(f"expected a `def` or an import, found {value!r}", f.span())
    if tok == "EQUAL":
        return PatternSyntaxError(f"{_ASSIGN_ADVICE}; compare with `==`", f.span())
    shown = "end of input" if tok == "$END" else f"{value!r}"
    return PatternSyntaxError(f"unexpected {shown}", f.span())


# The recognisers, most specific first; the first that names the mistake wins.
MISTAKES: tuple[Callable[[_Failure], PatternSyntaxError | None], ...] = (
    _statement_not_in_language, _keyword_in_expression, _unclosed_bracket, _bad_character,
    _indentation, _missing_colon, _by_example, _unexpected_token,
)


def _syntax_error(exc: Exception, source: Source, line_offset: int) -> PatternSyntaxError:
    lines = _lines(source.text)
    line = getattr(exc, "line", None) or 1
    col = getattr(exc, "column", None) or 1
    if not isinstance(line, int) or line < 1:
        line, col = max(1, len(lines)), 1
    text = lines[line - 1] if line <= len(lines) else ""
    failure = _Failure(exc, source, line_offset, line, col if isinstance(col, int) else 1, text)
    for recognise in MISTAKES:
        err = recognise(failure)
        if err is not None:
            return err
    return PatternSyntaxError(str(exc).splitlines()[0], failure.span())


# ---------------------------------------------------------------------------------------------
# Entry points


def parse_surface(text: str, filename: str = "<string>", *, line_offset: int = 0) -> SModule:
    """Parse a pattern file (or a ``@pattern`` function's source) into its surface AST."""
    tree = _lark_parse(Source(filename, text, 0), line_offset)
    return ToSurface(Source(filename, text, line_offset), line_offset).module(tree)


def desugar_module(surface: SModule, *, known_patterns: dict[str, tuple[str, ...]] | None = None,
                   errors: list[PypmError] | None = None) -> ParsedModule:
    """The core definitions of a parsed text.

    ``known_patterns`` maps names of patterns defined elsewhere (imports, ``@pattern`` objects in
    scope) to their parameters; calls of them are pattern calls. Raises PypmError subclasses;
    when an ``errors`` list is given, a definition that fails to desugar is left out and its
    error appended instead, so that ``pypm check`` can report every mistake of a file.
    """
    known = known_patterns or {}
    arities: dict[str, tuple[str, ...]] = dict(known)
    for imp in surface.imports:
        for _imported, alias in imp.names:
            arities.setdefault(alias, ())  # arity known after linking; () means "unknown here"
    seen: dict[str, SDef] = {}
    for d in surface.defs:
        if d.name in seen:
            raise ScopeError(f"pattern `{d.name}` is defined twice (first at line {seen[d.name].span.line})",
                             d.span, pattern=d.name)
        seen[d.name] = d
        arities[d.name] = tuple(p.name for p in d.params)
    for name, params in arities.items():
        if params == () and name not in seen and name in known:
            arities[name] = known[name]
    names = frozenset(arities)
    kw_arities = {k: v for k, v in arities.items() if v or k in seen}
    out = ParsedModule(surface.source, imports=list(surface.imports))
    for d in surface.defs:
        try:
            out.definitions[d.name] = desugar(d, names, kw_arities)
        except PypmError as e:
            if errors is None:
                raise
            errors.append(e)
    return out


def parse_module(text: str, filename: str = "<string>", *, line_offset: int = 0,
                 known_patterns: dict[str, tuple[str, ...]] | None = None,
                 errors: list[PypmError] | None = None) -> ParsedModule:
    """Parse and desugar a pattern text (:func:`parse_surface`, then :func:`desugar_module`)."""
    surface = parse_surface(text, filename, line_offset=line_offset)
    return desugar_module(surface, known_patterns=known_patterns, errors=errors)


__all__ = ["EXAMPLES", "MISTAKES", "ParsedModule", "SDef", "SImport", "desugar_module", "parse_module",
           "parse_surface", "text_of"]
