"""The user-facing way in: ``@pattern``, ``pypm.loads``/``pypm.load`` and ``pypm.match``.

``@pattern`` reads the decorated function's *source text* and parses it with pypm's grammar; the
Python body never runs. Patterns are linked (calls resolved, the program checked for
well-formedness) as soon as every pattern they call is known: at definition time when callees
come first, otherwise at first use. Pattern files (``.pypm``) are parsed, linked and checked
whole when loaded; ``from other import P`` finds ``other.pypm`` beside the importing file or in
the standard library (``pypm.patterns``).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import inspect
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PatternImportError, PypmError, ScopeError, Span, UnknownPatternError
from .check import check_program
from .match import Interpreter, Match, Tracer
from .parse import ParsedModule, desugar_module, parse_module, parse_surface, text_of
from .placement import place_guards
from .surface import SImport
from .syntax import Call, Definition, Program


class PatternDef:
    """A named pattern: its core definition and the program Δ it can call.

    Created by ``@pattern`` or by loading a pattern file; never constructed by users directly.
    ``P.match(value, **bound)`` lists the matches of ``P(params)`` at ``value`` (a term).
    """

    def __init__(self, definition: Definition, resolver: Callable[[], Program] | None = None,
                 program: Program | None = None):
        self.definition = definition
        self._resolver = resolver
        self._program = program
        self._placed: Program | None = None
        self.__doc__ = definition.doc

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def params(self) -> tuple[str, ...]:
        return self.definition.params

    @property
    def span(self) -> Span | None:
        return self.definition.span

    @property
    def source_program(self) -> Program:
        """Δ as written (desugared): this definition and every definition it can reach, checked
        for well-formedness. Programs are merged at this level."""
        if self._program is None:
            assert self._resolver is not None
            program = self._resolver()
            errors = check_program(program)
            if errors:
                raise errors[0]
            self._program = program
        return self._program

    @property
    def program(self) -> Program:
        """Δ as matched: :attr:`source_program` with each guard moved to the earliest point
        where its variables are bound (same results, earlier pruning)."""
        if self._placed is None:
            self._placed = place_guards(self.source_program)
        return self._placed

    def link(self) -> PatternDef:
        """Resolve calls and check the program now (errors raise here)."""
        _ = self.source_program
        return self

    def matches(self, value: Any, *, tracer: Tracer | None = None, **bound: Any) -> Iterator[Match]:
        """Lazily, every match of this pattern at ``value``, in the interpreter's order."""
        unknown = set(bound) - set(self.params)
        if unknown:
            raise ScopeError(f"`{self.name}` has no parameter {', '.join(sorted(unknown))}", self.span,
                             pattern=self.name)
        call = Call(self.name, self.params, span=self.span)
        for sigma, region in Interpreter(self.program, tracer).run(call, value, dict(bound)):
            yield Match(sigma, region, value, self.name)

    def match(self, value: Any, **bound: Any) -> list[Match]:
        """Every match of this pattern at ``value`` (a term; for graphs use ``pypm.match``)."""
        return list(self.matches(value, **bound))

    def __repr__(self) -> str:
        where = f" at {self.span}" if self.span else ""
        return f"<pattern {self.name}({', '.join(self.params)}){where}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise PypmError(f"pattern `{self.name}` is not a Python function: match it with "
                        f"`pypm.match({self.name}, graph)`", self.span, pattern=self.name)


# ---------------------------------------------------------------------------------------------
# @pattern in Python modules

# Patterns defined with @pattern, per Python module: later patterns may call earlier ones and
# vice versa (resolved at first use).
_MODULE_PATTERNS: dict[str, dict[str, PatternDef]] = {}


def _function_source(fn: Callable[..., Any]) -> tuple[str, str, int]:
    try:
        lines, start = inspect.getsourcelines(fn)
        filename = inspect.getsourcefile(fn) or "<unknown>"
    except (OSError, TypeError) as e:
        raise PypmError(f"cannot read the source of {getattr(fn, '__name__', fn)!r}: {e}; "
                        "define patterns in a file, or use pypm.loads(text)") from None
    return textwrap.dedent("".join(lines)), filename, start - 1


def _known_in(env: dict[str, Any]) -> dict[str, PatternDef]:
    """Patterns visible by name in a namespace: PatternDef objects and loaded pattern modules'
    patterns imported as names."""
    return {k: v for k, v in env.items() if isinstance(v, PatternDef)}


def pattern(fn: Callable[..., Any]) -> PatternDef:
    """Define a pattern from a Python function's source (its body is never executed).

    >>> @pattern
    ... def Transposed(k):
    ...     return transpose(k, -2, -1) | transpose(k, -1, -2)
    """
    if isinstance(fn, PatternDef):
        return fn
    text, filename, offset = _function_source(fn)
    module_name = getattr(fn, "__module__", "__main__")
    registry = _MODULE_PATTERNS.setdefault(module_name, {})
    globals_ = getattr(fn, "__globals__", {})
    visible = {**_known_in(globals_), **registry}
    parsed = parse_module(text, filename, line_offset=offset,
                          known_patterns={k: v.params for k, v in visible.items()})
    if len(parsed.definitions) != 1:
        raise PypmError("@pattern decorates exactly one function", None)
    (definition,) = parsed.definitions.values()

    def resolve() -> Program:
        env = {**_known_in(globals_), **registry}
        return _closure(definition, env)

    pdef = PatternDef(definition, resolve)
    registry[definition.name] = pdef
    # Check now if every callee is already known (reject bad patterns where they are written).
    if all(c in {**_known_in(globals_), **registry} for c in _callees(definition)):
        pdef.link()
    return pdef


def _callees(d: Definition) -> set[str]:
    from .check import call_edges

    return {c.name for c, _ in call_edges(d.body)}


def _closure(root: Definition, env: dict[str, PatternDef]) -> Program:
    """Δ for ``root``: it and every definition reachable by calls, looked up in ``env`` and in
    the programs of the PatternDefs found there."""
    program: Program = {root.name: root}
    todo = [root]
    while todo:
        d = todo.pop()
        for name in sorted(_callees(d)):
            if name in program:
                continue
            target = env.get(name)
            if target is None:
                continue  # reported by the checker as an unknown pattern, with its line
            if target._program is not None or target._resolver is None:
                for k, v in target.source_program.items():
                    _add(program, k, v)
            else:
                _add(program, name, target.definition)
                todo.append(target.definition)
    return program


def _add(program: Program, name: str, d: Definition) -> None:
    old = program.get(name)
    if old is not None and old is not d and old != d:
        raise ScopeError(f"two different patterns named `{name}` meet in one program "
                         f"(the other is at {old.span})", d.span, pattern=name,
                         hint="rename one of them")
    program[name] = d


# ---------------------------------------------------------------------------------------------
# Pattern files


@dataclass
class PatternModule:
    """The patterns of one file or text, by name (attribute access: ``ns.Attention``)."""

    name: str
    path: Path | None
    patterns: dict[str, PatternDef] = field(default_factory=dict)

    def __getattr__(self, item: str) -> PatternDef:
        patterns = self.__dict__.get("patterns", {})
        if item in patterns:
            return patterns[item]
        raise AttributeError(f"pattern module {self.name} has no pattern {item!r}")

    def __getitem__(self, item: str) -> PatternDef:
        return self.patterns[item]

    def __iter__(self) -> Iterator[PatternDef]:
        return iter(self.patterns.values())

    def __contains__(self, item: str) -> bool:
        return item in self.patterns

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self.patterns]


def standard_patterns_dir() -> Path:
    """Where the standard pattern library (``pypm.patterns``) is installed.

    The library sits above every layer (its package imports the rules that register the guard
    functions its patterns call), so it is found by name, as a plugin is, not imported here."""
    library = importlib.import_module("pypm.patterns")
    return Path(library.__file__).parent


class _Loader:
    """Loads pattern files with their imports; detects import cycles."""

    def __init__(self) -> None:
        self.modules: dict[Path, PatternModule] = {}
        self.loading: list[Path] = []

    def find(self, imp: SImport, importer: Path | None) -> Path:
        rel = imp.module.lstrip(".")
        if rel.startswith("pypm.patterns."):
            rel = rel[len("pypm.patterns."):]
        parts = rel.split(".")
        candidates = []
        if importer is not None:
            candidates.append(importer.parent.joinpath(*parts).with_suffix(".pypm"))
        candidates.append(standard_patterns_dir().joinpath(*parts).with_suffix(".pypm"))
        for c in candidates:
            if c.is_file():
                return c.resolve()
        raise PatternImportError(f"cannot find pattern file `{imp.module}`", imp.span,
                                 hint="looked in: " + ", ".join(str(c) for c in candidates))

    def load_path(self, path: Path) -> PatternModule:
        path = path.resolve()
        if path in self.modules:
            return self.modules[path]
        if path in self.loading:
            cycle = " → ".join(p.name for p in [*self.loading[self.loading.index(path):], path])
            raise PatternImportError(f"import cycle: {cycle}", None)
        try:
            text = text_of(path.read_bytes(), str(path))
        except OSError as e:
            raise PatternImportError(f"cannot read {path}: {e.strerror}") from None
        self.loading.append(path)
        try:
            module = self.load_text(text, str(path), path)
        finally:
            self.loading.pop()
        self.modules[path] = module
        return module

    def imports(self, imports: tuple[SImport, ...], path: Path | None) -> dict[str, PatternDef]:
        """The patterns a text imports, by the name they are bound to (loading their files)."""
        imported: dict[str, PatternDef] = {}
        for imp in imports:
            mod = self.load_path(self.find(imp, path))
            names = [(n, n) for n in mod.patterns] if imp.star else list(imp.names)
            for name, alias in names:
                if name not in mod.patterns:
                    raise PatternImportError(f"`{imp.module}` has no pattern `{name}`", imp.span)
                imported[alias] = mod.patterns[name]
        return imported

    def load_text(self, text: str, filename: str, path: Path | None) -> PatternModule:
        # Parsed once; imports are resolved before desugaring, which needs the parameters of
        # imported patterns.
        with _gc_paused():
            surface = parse_surface(text, filename)
            imported = self.imports(surface.imports, path)
            known = {alias: pdef.params for alias, pdef in imported.items()}
            parsed = desugar_module(surface, known_patterns=known)
            return _link_module(parsed, imported, Path(filename).stem, path)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Loading builds millions of small objects that all stay alive until it ends; the cyclic
    garbage collector would walk them again and again (loading time quadratic in the text).
    Nothing loading makes is garbage before it ends, so the collector waits."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _link_module(parsed: ParsedModule, imported: dict[str, PatternDef], name: str,
                 path: Path | None) -> PatternModule:
    program: Program = {}
    for alias, pdef in imported.items():
        for k, v in pdef.source_program.items():
            _add(program, k, v)
        if alias != pdef.name:
            raise PatternImportError(f"`import {pdef.name} as {alias}`: renaming patterns on import "
                                     "is not supported", None, hint="import it under its own name")
    for k, v in parsed.definitions.items():
        if k in program and program[k] != v:
            raise ScopeError(f"pattern `{k}` is defined here and also imported", v.span, pattern=k)
        program[k] = v
    errors = check_program(program, list(parsed.definitions))
    if errors:
        raise errors[0]
    module = PatternModule(name, path)
    for k, v in parsed.definitions.items():
        module.patterns[k] = PatternDef(v, program=program)
    return module


def loads(text: str | bytes, *, filename: str = "<string>") -> PatternModule:
    """Parse, link and check pattern source text (str, or UTF-8 bytes); imports resolve in the
    standard library. Any text gives a module or a PypmError."""
    return _Loader().load_text(text_of(text, filename), filename, None)


def load(path: str | Path) -> PatternModule:
    """Load a ``.pypm`` pattern file (and the files it imports)."""
    p = Path(path)
    if not p.is_file() and not p.suffix:
        p = p.with_suffix(".pypm")
    if not p.is_file():
        std = standard_patterns_dir() / p.name
        if std.is_file():
            p = std
    if not p.is_file():
        raise PatternImportError(f"no pattern file {path}")
    return _Loader().load_path(p)


def check_files(paths: list[str]) -> list[tuple[str, PatternModule | list[PypmError]]]:
    """For ``pypm check``: each file's module, or every error found in it."""
    out: list[tuple[str, PatternModule | list[PypmError]]] = []
    for p in paths:
        try:
            out.append((p, load(p)))
        except PypmError as e:
            errors = [e]
            if not isinstance(e, (PatternImportError,)) and Path(p).is_file():
                errors = _all_errors(Path(p)) or [e]
            out.append((p, errors))
    return out


def _all_errors(path: Path) -> list[PypmError]:
    """All well-formedness errors of a file whose parse succeeds (not just the first)."""
    try:
        surface = parse_surface(text_of(path.read_bytes(), str(path)), str(path))
        imported = _Loader().imports(surface.imports, path)
        known = {alias: pdef.params for alias, pdef in imported.items()}
        errors: list[PypmError] = []
        parsed = desugar_module(surface, known_patterns=known, errors=errors)
    except PypmError as e:
        return [e]
    program: Program = {}
    for pdef in imported.values():
        program.update(pdef.source_program)
    program.update(parsed.definitions)
    failed = {e.pattern for e in errors}
    errors += [e for e in check_program(program, list(parsed.definitions))
               if not (isinstance(e, UnknownPatternError) and any(f"`{n}`" in e.message for n in failed))]
    return sorted(errors, key=lambda e: (e.line or 0, e.col or 0))


# ---------------------------------------------------------------------------------------------
# pypm.match


__all__ = ["PatternDef", "PatternModule", "check_files", "load", "loads", "pattern"]
