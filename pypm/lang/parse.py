"""Parsing: source text → lark tree → surface AST → core AST (LANGUAGE.md §7), with spans.

Three steps, each a function of its own:

1. :func:`_lark_parse` runs the lark grammar (``grammar.lark``) and turns lark's exceptions into
   :class:`~pypm.errors.PatternSyntaxError` with line, column and a human message (a table of
   known mistakes, in the spirit of lark's ``match_examples``: unclosed parenthesis, Python
   statements that are not part of the language, ...).
2. :class:`_ToSurface` turns the tree into the surface AST (:class:`SDef`, ``S*`` expressions).
3. :class:`_Desugar` turns each surface definition into a core :class:`~pypm.syntax.Definition`:
   operators to ``matmul``/``div``/..., keyword arguments to schema positions, ``name = p`` to
   ``∃name. (… ; name ≍ p)``, ``assert`` to guards placed where their variables are bound,
   ``B, H, S, D = q.shape`` to guard-only names, non-variable call arguments to ``∃y. P(y) ; y ≍ a``.

Nothing here executes user code: names are looked up in tables, never evaluated.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    ArityError,
    GuardError,
    PatternSyntaxError,
    PypmError,
    ScopeError,
    Source,
    Span,
)
from . import schema
from .guards import ALLOWED_ATTRS
from .syntax import (
    Alt,
    Call,
    Definition,
    Exists,
    Fail,
    GAttr,
    GBinary,
    GCall,
    GCompare,
    GConst,
    GExpr,
    GIndex,
    GName,
    GSlice,
    GTuple,
    Guard,
    GUnary,
    Lit,
    Op,
    OpVar,
    Pattern,
    Then,
    Var,
    Wild,
)

# ---------------------------------------------------------------------------------------------
# Surface AST


@dataclass(frozen=True)
class SExpr:
    """A surface expression: ``kind`` says which (name, number, call, binop, ...)."""

    kind: str
    span: Span
    value: Any = None                 # name / literal value / operator symbol / attribute
    children: tuple[SExpr, ...] = ()
    kwargs: tuple[tuple[str, SExpr, Span], ...] = ()


@dataclass(frozen=True)
class SStmt:
    """``kind`` in return, assert, assign, unpack, expr, pass."""

    kind: str
    span: Span
    targets: tuple[tuple[str, Span], ...] = ()
    expr: SExpr | None = None


@dataclass(frozen=True)
class SParam:
    name: str
    annotation: str | None
    span: Span


@dataclass(frozen=True)
class SDef:
    name: str
    params: tuple[SParam, ...]
    body: tuple[SStmt, ...]
    span: Span
    doc: str | None = None


@dataclass(frozen=True)
class SImport:
    """``from module import a as b, c``: ``names`` are (imported, bound-as) pairs; ``star`` for ``*``."""

    module: str
    names: tuple[tuple[str, str], ...]
    span: Span
    star: bool = False


@dataclass
class ParsedModule:
    """The result of parsing one text: definitions (core, desugared) and pattern imports."""

    source: Source
    definitions: dict[str, Definition] = field(default_factory=dict)
    imports: list[SImport] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Step 1: lark


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    from lark import Lark
    from lark.indenter import PythonIndenter

    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(grammar, parser="lalr", postlex=PythonIndenter(), propagate_positions=True,
                maybe_placeholders=True)


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


def _unclosed(text: str) -> tuple[int, int, str] | None:
    """Position of the first bracket that is never closed (line, col, char), ignoring strings
    and comments; None when brackets balance."""
    stack: list[tuple[int, int, str]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for lineno, line in enumerate(text.splitlines(), 1):
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


def _syntax_error(exc: Exception, source: Source, line_offset: int) -> PatternSyntaxError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    line = getattr(exc, "line", None) or 1
    col = getattr(exc, "column", None) or 1
    if not isinstance(line, int) or line < 1:
        line = max(1, len(source.text.splitlines()))
        col = 1
    text = source.text.splitlines()[line - 1] if source.text.splitlines() else ""
    span = Span(source, line + line_offset, col, line + line_offset, col + 1)
    first_word = text.strip().split("(")[0].split(" ")[0].rstrip(":") if text.strip() else ""
    if first_word in _NOT_IN_LANGUAGE:
        c = text.index(first_word) + 1
        return PatternSyntaxError(_NOT_IN_LANGUAGE[first_word],
                                  Span(source, line + line_offset, c, line + line_offset,
                                       c + len(first_word)))
    token = getattr(exc, "token", None)
    tok_type = getattr(token, "type", "")
    unclosed = _unclosed(source.text)
    if unclosed is not None and (isinstance(exc, UnexpectedEOF) or tok_type in ("$END", "_DEDENT")
                                 or (tok_type == "_NEWLINE" and unclosed[0] < line)
                                 or (unclosed[0] < line)):
        ln, c, ch = unclosed
        return PatternSyntaxError(f"unclosed {'parenthesis' if ch == '(' else 'bracket'} {ch!r}",
                                  Span(source, ln + line_offset, c, ln + line_offset, c + 1))
    if isinstance(exc, UnexpectedCharacters):
        ch = source.text[exc.pos_in_stream] if exc.pos_in_stream < len(source.text) else "?"
        if ch == "\t" or (ch == " " and text[:col].strip() == ""):
            return PatternSyntaxError("unexpected indentation", span)
        if ch in "'\"":
            return PatternSyntaxError("unterminated string", span)
        if ch == "=" and "=" in text:
            return PatternSyntaxError("unexpected `=`: parameters have no defaults and only a plain "
                                      "name can be assigned (`name = pattern`)", span)
        return PatternSyntaxError(f"unexpected character {ch!r}", span)
    if isinstance(exc, UnexpectedToken):
        value = str(token)
        expected = set(getattr(exc, "expected", ()) or ())
        if tok_type == "_INDENT":
            lines = source.text.splitlines()
            ln = line + 1
            while ln <= len(lines) and (not lines[ln - 1].strip() or lines[ln - 1].lstrip().startswith("#")):
                ln += 1
            if ln <= len(lines):
                c = len(lines[ln - 1]) - len(lines[ln - 1].lstrip()) + 1
                span = Span(source, ln + line_offset, c, ln + line_offset, c + 1)
            return PatternSyntaxError("unexpected indentation", span)
        if tok_type in ("_DEDENT", "$END") and "_INDENT" in expected:
            return PatternSyntaxError("expected an indented body after `:`", span)
        if "COLON" in expected and len(expected) <= 3 and text.lstrip().startswith("def"):
            return PatternSyntaxError("expected `:` at the end of the `def` line", span)
        if tok_type == "_NEWLINE":
            return PatternSyntaxError("the line ends in the middle of an expression", span)
        if tok_type == "NAME" and text.lstrip().startswith(value) and "def" not in text:
            return PatternSyntaxError(f"expected a `def` or an import, found {value!r}", span)
        if tok_type == "EQUAL":
            return PatternSyntaxError("unexpected `=`: parameters have no defaults and only a plain "
                                      "name can be assigned (`name = pattern`); compare with `==`",
                                      span)
        shown = "end of input" if tok_type == "$END" else f"{value!r}"
        return PatternSyntaxError(f"unexpected {shown}", span)
    return PatternSyntaxError(str(exc).splitlines()[0], span)


def _lark_parse(source: Source, line_offset: int) -> Any:
    from lark.exceptions import LarkError

    text = source.text if source.text.endswith("\n") else source.text + "\n"
    try:
        return _parser().parse(text)
    except LarkError as exc:
        raise _syntax_error(exc, source, line_offset) from None
    except RecursionError:
        raise PatternSyntaxError("expression nested too deeply",
                                 Span(source, 1 + line_offset, 1)) from None


# ---------------------------------------------------------------------------------------------
# Step 2: lark tree → surface AST


class _ToSurface:
    def __init__(self, source: Source, line_offset: int):
        self.source = source
        self.offset = line_offset

    def span(self, node: Any) -> Span:
        meta = getattr(node, "meta", None)
        if meta is not None and not getattr(meta, "empty", True):
            return Span(self.source, meta.line + self.offset, meta.column,
                        meta.end_line + self.offset, meta.end_column)
        line = getattr(node, "line", 1) or 1
        col = getattr(node, "column", 1) or 1
        end_col = getattr(node, "end_column", col + 1) or col + 1
        return Span(self.source, line + self.offset, col, line + self.offset, end_col)

    def module(self, tree: Any) -> tuple[list[SDef], list[SImport]]:
        defs, imports = [], []
        for item in tree.children:
            if item is None or not hasattr(item, "data"):
                continue
            if item.data == "funcdef":
                defs.append(self.funcdef(item))
            elif item.data == "from_import":
                imp = self.from_import(item)
                if imp is not None:
                    imports.append(imp)
            # `import torch`, `import pypm`: accepted and ignored (files read like Python)
        return defs, imports

    def from_import(self, node: Any) -> SImport | None:
        module = str(node.children[0])
        if module in ("pypm", "torch", "__future__") or module.startswith("torch."):
            return None  # `from pypm import pattern` in a .pypm file read like Python
        lst = node.children[1]
        if any(getattr(c, "type", None) == "STAR" for c in lst.children):
            return SImport(module, (), self.span(node), star=True)
        names = []
        for item in lst.children:
            if item is None or not hasattr(item, "children"):
                continue
            parts = [str(c) for c in item.children if c is not None]
            names.append((parts[0], parts[-1]))
        return SImport(module, tuple(names), self.span(node))

    def funcdef(self, node: Any) -> SDef:
        children = list(node.children)
        while hasattr(children[0], "data") and children[0].data == "decorator":
            children.pop(0)
        name_tok, params_node, _ret, suite = children
        params = []
        if params_node is not None:
            for p in params_node.children:
                pname, ann = p.children
                ann_text = None
                if ann is not None:
                    ann_expr = self.expr(ann)
                    ann_text = ann_expr.value if ann_expr.kind == "name" else "?"
                    if ann_expr.kind == "attr":
                        ann_text = ann_expr.value
                params.append(SParam(str(pname), ann_text, self.span(pname)))
        stmts: list[SStmt] = []
        for simple in suite.children:
            if simple is None:
                continue
            if simple.data == "simple_stmt":
                stmts.extend(self.stmt(s) for s in simple.children if s is not None)
            else:
                stmts.append(self.stmt(simple))
        doc = None
        if stmts and stmts[0].kind == "expr" and stmts[0].expr is not None \
                and stmts[0].expr.kind == "string":
            doc = stmts[0].expr.value
            stmts = stmts[1:]
        return SDef(str(name_tok), tuple(params), tuple(stmts), self.span(name_tok), doc)

    def stmt(self, node: Any) -> SStmt:
        sp = self.span(node)
        if node.data == "return_stmt":
            return SStmt("return", sp, expr=self.expr(node.children[0]))
        if node.data == "assert_stmt":
            return SStmt("assert", sp, expr=self.expr(node.children[0]))
        if node.data == "assign_stmt":
            targets_node, value = node.children
            targets = tuple((str(t), self.span(t)) for t in targets_node.children if t is not None)
            kind = "unpack" if len(targets) > 1 or str(self._last_token(targets_node)) == "," else "assign"
            return SStmt(kind, sp, targets=targets, expr=self.expr(value))
        if node.data == "pass_stmt":
            return SStmt("pass", sp)
        return SStmt("expr", sp, expr=self.expr(node.children[0]))

    @staticmethod
    def _last_token(node: Any) -> Any:
        toks = list(node.scan_values(lambda _: True))
        return toks[-1] if toks else ""

    def expr(self, node: Any) -> SExpr:
        from lark import Token

        sp = self.span(node)
        if isinstance(node, Token):
            return SExpr("name", sp, str(node))
        d = node.data
        ch = [c for c in node.children if c is not None]
        if d == "name":
            return SExpr("name", sp, str(ch[0]))
        if d == "number":
            text = str(ch[0]).replace("_", "")
            if text.lower().startswith("0x"):
                return SExpr("const", sp, int(text, 16))
            is_float = any(c in text for c in ".eE")
            return SExpr("const", sp, float(text) if is_float else int(text))
        if d == "string":
            return SExpr("string", sp, "".join(_string_value(str(t), self.span(t)) for t in ch))
        if d == "empty_tuple":
            return SExpr("tuple", sp)
        if d in ("tuple", "list"):
            return SExpr(d, sp, children=tuple(self.expr(c) for c in ch))
        if d == "walrus":
            return SExpr("walrus", sp, str(ch[0]), (self.expr(ch[1]),))
        if d == "call":
            func = self.expr(ch[0])
            args: list[SExpr] = []
            kwargs: list[tuple[str, SExpr, Span]] = []
            if len(ch) > 1:
                for a in ch[1].children:
                    if a is None:
                        continue
                    if hasattr(a, "data") and a.data == "kwarg":
                        kwargs.append((str(a.children[0]), self.expr(a.children[1]), self.span(a)))
                    else:
                        if kwargs:
                            raise PatternSyntaxError("positional argument after keyword argument",
                                                     self.span(a))
                        args.append(self.expr(a))
            return SExpr("call", sp, None, (func, *args), tuple(kwargs))
        if d == "index":
            return SExpr("index", sp, None, (self.expr(ch[0]), self.expr(ch[1])))
        if d == "slice":
            parts = list(node.children) + [None] * 3
            kids = tuple(SExpr("none", sp) if c is None else self.expr(c) for c in parts[:3])
            return SExpr("slice", sp, None, kids)
        if d == "attr":
            return SExpr("attr", sp, str(ch[1]), (self.expr(ch[0]),))
        if d == "unary":
            return SExpr("unary", sp, str(ch[0]), (self.expr(ch[1]),))
        if d == "power":
            return SExpr("binop", sp, "**", (self.expr(ch[0]), self.expr(ch[2])))
        if d in ("arith", "term"):
            out = self.expr(ch[0])
            for op, rhs in zip(ch[1::2], ch[2::2]):
                r = self.expr(rhs)
                out = SExpr("binop", _join(out.span, r.span), str(op), (out, r))
            return out
        if d in ("bor", "band"):
            parts = [self.expr(c) for c in ch]
            out = parts[0]
            for r in parts[1:]:
                out = SExpr("binop", _join(out.span, r.span), "|" if d == "bor" else "&", (out, r))
            return out
        if d in ("or_test", "and_test"):
            return SExpr("boolop", sp, "or" if d == "or_test" else "and",
                         tuple(self.expr(c) for c in ch))
        if d == "not_test":
            return SExpr("unary", sp, "not", (self.expr(ch[0]),))
        if d == "comparison":
            first = self.expr(ch[0])
            ops = tuple(" ".join(str(t) for t in op.children) for op in ch[1::2])
            rest = tuple(self.expr(c) for c in ch[2::2])
            return SExpr("compare", sp, ops, (first, *rest))
        if d == "ifexp":
            body, cond, orelse = (self.expr(c) for c in ch)
            return SExpr("ifexp", sp, None, (body, cond, orelse))
        raise PatternSyntaxError(f"unsupported syntax ({d})", sp)


def _join(a: Span, b: Span) -> Span:
    return Span(a.source, a.line, a.col, b.end_line, b.end_col)


def _string_value(tok: str, span: Span) -> str:
    """The value of a string literal, read without Python's eval."""
    prefix = ""
    while tok and tok[0] in "rRbBuU":
        prefix += tok[0].lower()
        tok = tok[1:]
    q = 3 if tok[:3] in ('"""', "'''") else 1
    body = tok[q:-q]
    if "r" in prefix:
        return body
    try:
        return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as e:
        raise PatternSyntaxError(f"bad escape in string: {e.reason}", span) from None


# ---------------------------------------------------------------------------------------------
# Step 3: surface AST → core


# dtypes that may be written bare in patterns and guards (`float16`) as well as `torch.float16`.
DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64", "half", "int8", "int16", "int32",
               "int64", "uint8", "complex64", "complex128", "float8_e4m3fn", "float8_e5m2")
_NAMESPACES = ("torch", "F", "aten", "nn", "functional", "prims", "Tensor", "ops")
_BINOPS = {"@": "matmul", "/": "div", "*": "mul", "+": "add", "-": "sub", "//": "floor_divide",
           "%": "remainder", "**": "pow"}
_RESERVED = frozenset({"_", "fail", "exists", "then", "None", "True", "False", "Op"})


def dtype_value(name: str) -> Any:
    """``float16``/``torch.float16`` → ``torch.float16``; None for other names."""
    bare = name[len("torch."):] if name.startswith("torch.") else name
    if bare not in DTYPE_NAMES and not name.startswith("torch."):
        return None
    import torch

    d = getattr(torch, bare, None)
    return d if isinstance(d, torch.dtype) else None


def _dotted(e: SExpr) -> str | None:
    """``torch.nn.functional.softmax`` as a string, when e is a chain of names."""
    if e.kind == "name":
        return e.value
    if e.kind == "attr":
        base = _dotted(e.children[0])
        return None if base is None else f"{base}.{e.value}"
    return None


class _Desugar:
    """Desugars one surface definition. ``patterns`` is the set of names that are calls of
    definitions (the module's own, its imports, known @pattern objects); any other call is an
    operator (with a capitalised unknown name reported as an unknown pattern by the checker)."""

    def __init__(self, d: SDef, patterns: frozenset[str], arities: dict[str, tuple[str, ...]]):
        self.d = d
        self.patterns = patterns
        self.arities = arities
        self.params = tuple(p.name for p in d.params)
        self.op_params = frozenset(p.name for p in d.params if p.annotation in ("Op", "pypm.Op"))
        self.locals: list[str] = []
        self.implicit_locals: list[str] = []      # from `(x := p)`
        self.dims: dict[str, tuple[str, int]] = {}  # guard-only names from shape unpacking
        self.fresh = itertools.count(1)

    def err(self, cls: type[PypmError], msg: str, span: Span, hint: str | None = None) -> PypmError:
        return cls(msg, span, pattern=self.d.name, hint=hint)

    def new_var(self) -> str:
        return f"%{next(self.fresh)}"  # not a Python identifier: cannot clash with user names

    # -- definitions --------------------------------------------------------------------------

    def definition(self) -> Definition:
        seen: set[str] = set()
        for p in self.d.params:
            if p.name in seen:
                raise self.err(ScopeError, f"parameter `{p.name}` is declared twice", p.span)
            if p.name in _RESERVED:
                raise self.err(ScopeError, f"`{p.name}` cannot be a parameter name", p.span)
            if p.annotation not in (None, "Op", "pypm.Op", "Tensor", "torch.Tensor", "Any"):
                raise self.err(PatternSyntaxError, f"unknown annotation `{p.annotation}` on `{p.name}`",
                               p.span, hint="annotate operator variables with `: Op`")
            seen.add(p.name)
        stmts = list(self.d.body)
        returns = [s for s in stmts if s.kind == "return"]
        if not returns:
            raise self.err(PatternSyntaxError, "pattern has no `return`", self.d.span,
                           hint="a pattern body ends with `return <pattern>`")
        if len(returns) > 1 or stmts[-1].kind != "return":
            extra = returns[1] if len(returns) > 1 else stmts[stmts.index(returns[0]) + 1]
            raise self.err(PatternSyntaxError, "nothing may follow the `return` of a pattern",
                           extra.span)
        # Declare locals and dims first so that uses before the assignment are reported well.
        assigns: list[tuple[str, Span, SExpr]] = []
        guards: list[tuple[GExpr, Span]] = []
        for s in stmts[:-1]:
            if s.kind == "assign":
                (name, nspan), = s.targets
                self._declare_local(name, nspan)
                assigns.append((name, nspan, s.expr))
            elif s.kind == "unpack":
                guards.append(self._unpack(s))
            elif s.kind == "assert":
                pass
            elif s.kind == "pass":
                pass
            elif s.kind == "expr" and s.expr is not None and s.expr.kind == "string":
                pass  # a string in the middle: a comment
            else:
                raise self.err(PatternSyntaxError, "an expression on its own does nothing in a "
                               "pattern", s.span, hint="write `return <pattern>`, `name = <pattern>` "
                               "or `assert <guard>`")
        for s in stmts[:-1]:
            if s.kind == "assert":
                guards.append((self.guard(s.expr), s.span))
        body = self.pattern(returns[0].expr)
        for name, _nspan, rhs in reversed(assigns):
            body = Then(body, name, self.pattern(rhs), span=rhs.span)
        body = _place_guards(body, guards)
        for name in reversed(self.locals + self.implicit_locals):
            body = Exists(name, body, span=self.d.span)
        return Definition(self.d.name, self.params, body, self.op_params, self.d.doc, span=self.d.span)

    def _declare_local(self, name: str, span: Span) -> None:
        if name in self.params:
            raise self.err(ScopeError, f"`{name}` is a parameter and cannot be assigned", span)
        if name in self.locals:
            raise self.err(ScopeError, f"local `{name}` is assigned twice", span,
                           hint="a local names one value; use a new name")
        if name in _RESERVED or name in self.dims:
            raise self.err(ScopeError, f"`{name}` cannot be assigned", span)
        self.locals.append(name)

    def _unpack(self, s: SStmt) -> tuple[GExpr, Span]:
        e = s.expr
        if e is None or e.kind != "attr" or e.value != "shape" or e.children[0].kind != "name":
            raise self.err(PatternSyntaxError, "only a shape can be unpacked: `B, H, S, D = q.shape`",
                           s.span)
        var = e.children[0].value
        if var not in self.params and var not in self.locals:
            raise self.err(ScopeError, f"unknown variable `{var}`", e.children[0].span)
        for i, (name, nspan) in enumerate(s.targets):
            if name == "_":
                continue
            if name in self.params or name in self.locals or name in self.dims:
                raise self.err(ScopeError, f"`{name}` is already defined", nspan)
            self.dims[name] = (var, i)
        at = e.children[0].span
        rank = GCompare(GAttr(GName(var, span=at), "ndim", span=at),
                        (("==", GConst(len(s.targets), span=s.span)),), span=s.span)
        return rank, s.span

    def in_scope(self, name: str) -> bool:
        return name in self.params or name in self.locals or name in self.implicit_locals

    # -- patterns -----------------------------------------------------------------------------

    def pattern(self, e: SExpr) -> Pattern:
        sp = e.span
        k = e.kind
        if k == "name":
            name = e.value
            if name == "_":
                return Wild(span=sp)
            if name == "fail":
                return Fail(span=sp)
            if name in ("None", "True", "False"):
                return Lit({"None": None, "True": True, "False": False}[name], span=sp)
            if self.in_scope(name):
                return Var(name, span=sp)
            if name in self.dims:
                raise self.err(ScopeError, f"`{name}` names a dimension of `{self.dims[name][0]}.shape`;"
                               " it can be used in guards only", sp)
            dt = dtype_value(name)
            if dt is not None:
                return Lit(dt, span=sp)
            if name in self.patterns:
                raise self.err(ArityError, f"pattern `{name}` must be called with its arguments", sp,
                               hint=f"write `{name}(...)`")
            raise self.err(ScopeError, f"unknown variable `{name}`", sp,
                           hint=f"add `{name}` to the parameters of {self.d.name}, or make it a "
                                f"local with `{name} = _`")
        if k in ("const", "string"):
            return Lit(e.value, span=sp)
        if k in ("tuple", "list"):
            return Lit(self._literal_tuple(e), span=sp)
        if k == "unary":
            op, (operand,) = e.value, e.children
            if op == "-" and operand.kind == "const":
                return Lit(-operand.value, span=sp)
            if op == "+" and operand.kind == "const":
                return Lit(operand.value, span=sp)
            if op == "-":
                return Op("neg", (self.pattern(operand),), span=sp)
            if op == "~":
                return Op("bitwise_not", (self.pattern(operand),), span=sp)
            raise self.err(PatternSyntaxError, f"`{op}` is a guard operator; use it in `assert` or in "
                           "`p if cond else fail`", sp)
        if k == "binop":
            op = e.value
            left, right = e.children
            if op == "|":
                return Alt(self.pattern(left), self.pattern(right), span=sp)
            if op == "&":
                return self._conj(self.pattern(left), self.pattern(right), sp)
            return self._infix(_BINOPS[op], (self.pattern(left), self.pattern(right)), sp)
        if k == "walrus":
            name = e.value
            if name in self.params or name in self.locals:
                target = name
            elif name in _RESERVED or name in self.dims:
                raise self.err(ScopeError, f"`{name}` cannot be bound with `:=`", sp)
            else:
                if name not in self.implicit_locals:
                    self.implicit_locals.append(name)
                target = name
            return self._conj(Var(target, span=sp), self.pattern(e.children[0]), sp)
        if k == "ifexp":
            body, cond, orelse = e.children
            if not (orelse.kind == "name" and orelse.value == "fail"):
                raise self.err(PatternSyntaxError, "a conditional pattern must read `p if cond else fail`",
                               orelse.span)
            return Guard(self.pattern(body), self.guard(cond), span=sp)
        if k == "call":
            return self._call(e)
        if k == "attr":
            dotted = _dotted(e)
            if dotted is not None:
                dt = dtype_value(dotted)
                if dt is not None:
                    return Lit(dt, span=sp)
            raise self.err(PatternSyntaxError, f"attribute `.{e.value}` outside a guard", sp,
                           hint="`.shape`, `.dtype` and friends are read in guards: `assert x.ndim == 4`;"
                                " a method call is written `x.transpose(-2, -1)`")
        if k in ("compare", "boolop"):
            raise self.err(PatternSyntaxError, f"`{' '.join(e.value) if k == 'compare' else e.value}` is a "
                           "guard operator; use it in `assert` or in `p if cond else fail`", sp)
        if k == "index":
            raise self.err(PatternSyntaxError, "indexing is only allowed in guards", sp)
        raise self.err(PatternSyntaxError, f"not a pattern ({k})", sp)

    def _infix(self, op: str, operands: tuple[Pattern, ...], sp: Span) -> Pattern:
        """``a + b`` means Python's ``+``: ``add(a, b, 1)``, never ``add(a, b, alpha=2)``. The
        schema's defaults fill the remaining arguments (``alpha=1`` for add/sub,
        ``rounding_mode=None`` for div), so an infix pattern matches exactly what the infix
        operator computes; the call form ``add(a, b)`` keeps prefix arity."""
        names = schema.arg_names(op) or ()
        defaults = schema.defaults(op)
        missing = len(names) - len(operands)
        extra = tuple(Lit(d, span=sp) for d in defaults[len(defaults) - missing:]) if missing > 0 else ()
        return Op(op, operands + extra, span=sp)

    def _literal_tuple(self, e: SExpr) -> tuple[Any, ...]:
        out = []
        for c in e.children:
            p = self.pattern(c)
            if not isinstance(p, Lit):
                raise self.err(PatternSyntaxError, "a tuple in a pattern may contain only literals", c.span,
                               hint="match the tuple with `_` or a variable and test it in a guard")
            out.append(p.value)
        return tuple(out)

    def _conj(self, p: Pattern, q: Pattern, sp: Span) -> Pattern:
        """``p & q`` = ``∃z. ((z ; z ≍ p) ; z ≍ q)``; when p is a variable x, ``x ; x ≍ q``."""
        if isinstance(p, Var):
            return Then(p, p.name, q, span=sp)
        z = self.new_var()
        return Exists(z, Then(Then(Var(z, span=sp), z, p, span=sp), z, q, span=sp), span=sp)

    def _call(self, e: SExpr) -> Pattern:
        func, *args = e.children
        sp = e.span
        name = _dotted(func)
        if func.kind == "name":
            if name == "exists":
                return self._exists(e, args)
            if name == "then":
                return self._then(e, args)
            if self.in_scope(name):  # M-OpVar: a variable in operator position
                if e.kwargs:
                    raise self.err(PatternSyntaxError, "an operator variable takes no keyword arguments",
                                   e.kwargs[0][2])
                return OpVar(name, tuple(self.pattern(a) for a in args), span=sp)
            if name in self.patterns or (name[:1].isupper() and name not in _RESERVED):
                return self._pattern_call(name, args, e.kwargs, sp)
            if name in self.dims or name in _RESERVED:
                raise self.err(PatternSyntaxError, f"`{name}` cannot be called", sp)
            return self._op(schema.pattern_op_name(name), args, e.kwargs, sp)
        if func.kind == "attr":
            base = func.children[0]
            head = name.split(".")[0] if name is not None else ""
            if name is not None and head in _NAMESPACES and not self.in_scope(head):
                return self._op(schema.pattern_op_name(name), args, e.kwargs, sp)
            # method-call sugar: `k.transpose(-2, -1)` is `transpose(k, -2, -1)`
            return self._op(schema.pattern_op_name(func.value), [base, *args], e.kwargs, sp)
        raise self.err(PatternSyntaxError, "only operators and patterns can be called", sp)

    def _exists(self, e: SExpr, args: list[SExpr]) -> Pattern:
        if len(args) != 2 or args[0].kind != "name" or e.kwargs:
            raise self.err(PatternSyntaxError, "`exists` takes a variable name and a pattern: "
                           "`exists(x, p)`", e.span)
        name = args[0].value
        if name in _RESERVED or name in self.dims:
            raise self.err(ScopeError, f"`{name}` cannot be a local", args[0].span)
        added = not self.in_scope(name)
        if added:
            self.locals.append(name)
        try:
            body = self.pattern(args[1])
        finally:
            if added:
                self.locals.remove(name)
        return Exists(name, body, span=e.span)

    def _then(self, e: SExpr, args: list[SExpr]) -> Pattern:
        if len(args) != 3 or args[1].kind != "name" or e.kwargs:
            raise self.err(PatternSyntaxError, "`then` takes a pattern, a variable and a pattern: "
                           "`then(p, x, q)`", e.span)
        if not self.in_scope(args[1].value):
            raise self.err(ScopeError, f"unknown variable `{args[1].value}`", args[1].span)
        return Then(self.pattern(args[0]), args[1].value, self.pattern(args[2]), span=e.span)

    def _op(self, op: str, args: list[SExpr], kwargs: tuple[tuple[str, SExpr, Span], ...],
            sp: Span) -> Pattern:
        pats: list[Pattern | None] = [self.pattern(a) for a in args]
        if kwargs:
            names = schema.arg_names(op)
            if names is None:
                raise self.err(ArityError, f"operator `{op}` has no known schema, so keyword "
                               f"`{kwargs[0][0]}=` cannot be placed", kwargs[0][2],
                               hint="pass the argument by position")
            for key, val, kspan in kwargs:
                if key not in names:
                    raise self.err(ArityError, f"operator `{op}` has no argument `{key}`", kspan,
                                   hint=f"its arguments are: {', '.join(names)}")
                i = names.index(key)
                while len(pats) <= i:
                    pats.append(None)
                if pats[i] is not None and i < len(args):
                    raise self.err(ArityError, f"argument `{key}` of `{op}` is given twice", kspan)
                pats[i] = self.pattern(val)
        return Op(op, tuple(Wild(span=sp) if p is None else p for p in pats), span=sp)

    def _pattern_call(self, name: str, args: list[SExpr], kwargs: tuple[tuple[str, SExpr, Span], ...],
                      sp: Span) -> Pattern:
        """``P(a1..an)``: variables pass straight through; any other argument a becomes
        ``∃y. P(.., y, ..) ; y ≍ a``, and a missing keyword argument a fresh ``∃y``."""
        exprs: list[SExpr | None] = list(args)
        if kwargs:
            params = self.arities.get(name)
            if params is None:
                raise self.err(ArityError, f"keyword arguments to `{name}` need its definition in "
                               "this file or an import", kwargs[0][2])
            for key, val, kspan in kwargs:
                if key not in params:
                    raise self.err(ArityError, f"pattern `{name}` has no parameter `{key}`", kspan,
                                   hint=f"its parameters are: {', '.join(params)}")
                i = params.index(key)
                while len(exprs) <= i:
                    exprs.append(None)
                if exprs[i] is not None:
                    raise self.err(ArityError, f"argument `{key}` of `{name}` is given twice", kspan)
                exprs[i] = val
            while len(exprs) < len(params):
                exprs.append(None)
        names: list[str] = []
        fresh: list[str] = []
        thens: list[tuple[str, SExpr]] = []
        for a in exprs:
            if a is not None and a.kind == "name" and self.in_scope(a.value):
                names.append(a.value)
                continue
            y = self.new_var()
            names.append(y)
            fresh.append(y)
            if a is not None and not (a.kind == "name" and a.value == "_"):
                thens.append((y, a))
        out: Pattern = Call(name, tuple(names), span=sp)
        for y, a in thens:
            out = Then(out, y, self.pattern(a), span=a.span)
        for y in reversed(fresh):
            out = Exists(y, out, span=sp)
        return out

    # -- guards -------------------------------------------------------------------------------

    def guard(self, e: SExpr) -> GExpr:
        sp = e.span
        k = e.kind
        if k == "name":
            name = e.value
            if name in ("None", "True", "False"):
                return GConst({"None": None, "True": True, "False": False}[name], span=sp)
            if name in self.dims:
                var, i = self.dims[name]
                return GIndex(GAttr(GName(var, span=sp), "shape", span=sp), GConst(i, span=sp), span=sp)
            if self.in_scope(name):
                return GName(name, span=sp)
            dt = dtype_value(name)
            if dt is not None:
                return GConst(dt, span=sp)
            raise self.err(ScopeError, f"guard uses unknown name `{name}`", sp,
                           hint=f"guards read parameters and locals of {self.d.name}, and dimension "
                                "names from `B, S, D = x.shape`")
        if k in ("const", "string"):
            return GConst(e.value, span=sp)
        if k in ("tuple", "list"):
            return GTuple(tuple(self.guard(c) for c in e.children), span=sp)
        if k == "unary":
            return GUnary(e.value, self.guard(e.children[0]), span=sp)
        if k == "binop":
            if e.value in ("|", "&", "@"):
                raise self.err(GuardError, f"`{e.value}` is not a guard operator", sp,
                               hint="use `or` / `and` in guards")
            return GBinary(e.value, self.guard(e.children[0]), self.guard(e.children[1]), span=sp)
        if k == "boolop":
            parts = [self.guard(c) for c in e.children]
            out = parts[0]
            for p in parts[1:]:
                out = GBinary(e.value, out, p, span=sp)
            return out
        if k == "compare":
            first, *rest = e.children
            return GCompare(self.guard(first), tuple((op, self.guard(r)) for op, r in zip(e.value, rest)),
                            span=sp)
        if k == "attr":
            dotted = _dotted(e)
            if dotted is not None:
                dt = dtype_value(dotted)
                if dt is not None:
                    return GConst(dt, span=sp)
            if e.value not in ALLOWED_ATTRS:
                raise self.err(GuardError, f"guards cannot read `.{e.value}`", sp,
                               hint=f"readable attributes: {', '.join(sorted(ALLOWED_ATTRS))}")
            return GAttr(self.guard(e.children[0]), e.value, span=sp)
        if k == "index":
            obj, idx = e.children
            return GIndex(self.guard(obj), self.guard(idx), span=sp)
        if k == "slice":
            parts = [None if c.kind == "none" else self.guard(c) for c in e.children]
            return GSlice(parts[0], parts[1], parts[2], span=sp)
        if k == "call":
            func, *args = e.children
            fname = _dotted(func)
            if fname is not None and fname.startswith("math."):
                fname = fname[len("math."):]
            if fname is None or "." in fname:
                raise self.err(GuardError, "guards call functions by plain name", func.span)
            return GCall(fname, tuple(self.guard(a) for a in args),
                         tuple((key, self.guard(v)) for key, v, _ in e.kwargs), span=sp)
        if k == "ifexp":
            raise self.err(GuardError, "conditional expressions are not allowed in guards; use "
                           "`and` / `or`", sp)
        if k == "walrus":
            raise self.err(GuardError, "`:=` binds pattern variables; it is not allowed in guards", sp)
        raise self.err(GuardError, f"not a guard expression ({k})", sp)


def _place_guards(body: Pattern, guards: list[tuple[GExpr, Span]]) -> Pattern:
    """``assert g`` is the guard ``body ? g`` (§7); :mod:`pypm.placement` moves it to where its
    variables are first definitely bound once the program is linked and checked."""
    for g, sp in guards:
        body = Guard(body, g, span=sp)
    return body


# ---------------------------------------------------------------------------------------------
# Entry points


def parse_module(text: str, filename: str = "<string>", *, line_offset: int = 0,
                 known_patterns: dict[str, tuple[str, ...]] | None = None,
                 errors: list[PypmError] | None = None) -> ParsedModule:
    """Parse a pattern file (or a ``@pattern`` function's source) into core definitions.

    ``known_patterns`` maps names of patterns defined elsewhere (``@pattern`` objects in scope)
    to their parameters; calls of them are pattern calls. Raises PypmError subclasses; when an
    ``errors`` list is given, a definition that fails to desugar is left out and its error
    appended instead, so that ``pypm check`` can report every mistake of a file.
    """
    source = Source(filename, text, line_offset)
    tree = _lark_parse(Source(filename, text, 0), line_offset)
    sdefs, imports = _ToSurface(source, line_offset).module(tree)
    arities: dict[str, tuple[str, ...]] = dict(known_patterns or {})
    for imp in imports:
        for _imported, alias in imp.names:
            arities.setdefault(alias, ())  # arity known after linking; () means "unknown here"
    seen: dict[str, SDef] = {}
    for d in sdefs:
        if d.name in seen:
            raise ScopeError(f"pattern `{d.name}` is defined twice (first at line {seen[d.name].span.line})",
                             d.span, pattern=d.name)
        seen[d.name] = d
        arities[d.name] = tuple(p.name for p in d.params)
    for name, params in list(arities.items()):
        if params == () and name not in seen and known_patterns and name in known_patterns:
            arities[name] = known_patterns[name]
    names = frozenset(arities)
    out = ParsedModule(source, imports=imports)
    for d in sdefs:
        kw_arities = {k: v for k, v in arities.items() if v or k in seen}
        try:
            out.definitions[d.name] = _Desugar(d, names, kw_arities).definition()
        except PypmError as e:
            if errors is None:
                raise
            errors.append(e)
    return out




__all__ = ["DTYPE_NAMES", "ParsedModule", "SDef", "SExpr", "SImport", "dtype_value", "parse_module"]
