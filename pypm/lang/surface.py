"""The surface syntax (LANGUAGE.md §7) as typed nodes, and the walk from lark's tree to them.

One node type per form a user can write: names, literals, calls, operators, comparisons, ``p if
g else fail``, ``(x := p)``, and the statements of a pattern body. Whether an expression is a
pattern or a guard is decided later, by where it stands (:mod:`pypm.lang.desugar`). The walk
refuses expressions nested deeper than :data:`~pypm.lang.limits.MAX_NESTING` and number literals
longer than :data:`~pypm.lang.limits.MAX_NUMBER_CHARS`, so that every later pass can recurse
over what it receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import LimitError, PatternSyntaxError, Source, Span
from .limits import MAX_NESTING, MAX_NUMBER_CHARS

# ---------------------------------------------------------------------------------------------
# Expressions


@dataclass(frozen=True)
class SName:
    """A name: a variable, an operator, a pattern, a dtype, ``_``, ``fail``, ``None``, ``True``."""

    name: str
    span: Span


@dataclass(frozen=True)
class SConst:
    """A number literal."""

    value: int | float
    span: Span


@dataclass(frozen=True)
class SString:
    """A string literal (adjacent literals joined, as in Python)."""

    value: str
    span: Span


@dataclass(frozen=True)
class STuple:
    """``(a, b)`` or ``()``."""

    items: tuple[SExpr, ...]
    span: Span


@dataclass(frozen=True)
class SList:
    """``[a, b]``."""

    items: tuple[SExpr, ...]
    span: Span


@dataclass(frozen=True)
class SKeyword:
    """``name=value`` in a call."""

    name: str
    value: SExpr
    span: Span


@dataclass(frozen=True)
class SCall:
    """``func(args, name=value)``."""

    func: SExpr
    args: tuple[SExpr, ...]
    kwargs: tuple[SKeyword, ...]
    span: Span


@dataclass(frozen=True)
class SIndex:
    """``obj[index]``; a slice index is an :class:`SSlice`."""

    obj: SExpr
    index: SExpr
    span: Span


@dataclass(frozen=True)
class SSlice:
    """``lower:upper:step`` inside an index; missing parts are None."""

    lower: SExpr | None
    upper: SExpr | None
    step: SExpr | None
    span: Span


@dataclass(frozen=True)
class SAttr:
    """``obj.attr``."""

    obj: SExpr
    attr: str
    span: Span


@dataclass(frozen=True)
class SUnary:
    """``-a``, ``+a``, ``~a``, ``not a``."""

    op: str
    operand: SExpr
    span: Span


@dataclass(frozen=True)
class SBinOp:
    """``a op b`` for ``| & + - * / // % @ **``; chains nest to the left (``**`` to the right)."""

    op: str
    left: SExpr
    right: SExpr
    span: Span


@dataclass(frozen=True)
class SBoolOp:
    """``a and b``, ``a or b``; chains nest to the left."""

    op: str
    left: SExpr
    right: SExpr
    span: Span


@dataclass(frozen=True)
class SCompare:
    """A comparison chain ``a < b <= c``: ``rest`` holds (operator, operand) pairs."""

    first: SExpr
    rest: tuple[tuple[str, SExpr], ...]
    span: Span


@dataclass(frozen=True)
class SIfExp:
    """``body if cond else orelse``."""

    body: SExpr
    cond: SExpr
    orelse: SExpr
    span: Span


@dataclass(frozen=True)
class SWalrus:
    """``(name := value)``."""

    name: str
    value: SExpr
    span: Span


SExpr = (SName | SConst | SString | STuple | SList | SCall | SIndex | SSlice | SAttr | SUnary
         | SBinOp | SBoolOp | SCompare | SIfExp | SWalrus)


# ---------------------------------------------------------------------------------------------
# Statements and definitions


@dataclass(frozen=True)
class SReturn:
    expr: SExpr
    span: Span


@dataclass(frozen=True)
class SAssert:
    expr: SExpr
    span: Span


@dataclass(frozen=True)
class SAssign:
    """``name = expr``."""

    name: str
    name_span: Span
    expr: SExpr
    span: Span


@dataclass(frozen=True)
class SUnpack:
    """``a, b, c = expr`` (only a shape may be unpacked: checked when desugaring)."""

    targets: tuple[tuple[str, Span], ...]
    expr: SExpr
    span: Span


@dataclass(frozen=True)
class SExprStmt:
    """An expression on its own (a docstring, or a mistake)."""

    expr: SExpr
    span: Span


@dataclass(frozen=True)
class SPass:
    span: Span


SStmt = SReturn | SAssert | SAssign | SUnpack | SExprStmt | SPass


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


@dataclass(frozen=True)
class SModule:
    """One parsed text: its definitions and pattern imports, in source order."""

    source: Source
    defs: tuple[SDef, ...]
    imports: tuple[SImport, ...]


def dotted(e: SExpr) -> str | None:
    """``torch.nn.functional.softmax`` as a string, when e is a chain of names."""
    parts: list[str] = []
    while isinstance(e, SAttr):
        parts.append(e.attr)
        e = e.obj
    if not isinstance(e, SName):
        return None
    parts.append(e.name)
    return ".".join(reversed(parts))


def join(a: Span, b: Span) -> Span:
    """The span from the start of a to the end of b."""
    return Span(a.source, a.line, a.col, b.end_line, b.end_col)


def string_value(tok: str, span: Span) -> str:
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


def number_value(text: str, span: Span) -> int | float:
    """The value of a number literal, refusing literals too long to be sizes or scales."""
    if len(text) > MAX_NUMBER_CHARS:
        raise LimitError(f"number literal of {len(text)} characters (the limit is {MAX_NUMBER_CHARS})",
                         span)
    text = text.replace("_", "")
    if text.lower().startswith("0x"):
        return int(text, 16)
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


# ---------------------------------------------------------------------------------------------
# lark tree → surface


_CHAIN_OPS = {"bor": "|", "band": "&"}


class ToSurface:
    """Walks one lark tree into an :class:`SModule`; ``line_offset`` is added to every line."""

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

    def module(self, tree: Any) -> SModule:
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
        return SModule(self.source, tuple(defs), tuple(imports))

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
                    ann_expr = self.expr(ann, 1)
                    ann_text = ann_expr.name if isinstance(ann_expr, SName) else \
                        ann_expr.attr if isinstance(ann_expr, SAttr) else "?"
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
        if stmts and isinstance(stmts[0], SExprStmt) and isinstance(stmts[0].expr, SString):
            doc = stmts[0].expr.value
            stmts = stmts[1:]
        return SDef(str(name_tok), tuple(params), tuple(stmts), self.span(name_tok), doc)

    def stmt(self, node: Any) -> SStmt:
        sp = self.span(node)
        match node.data:
            case "return_stmt":
                return SReturn(self.expr(node.children[0], 1), sp)
            case "assert_stmt":
                return SAssert(self.expr(node.children[0], 1), sp)
            case "assign_stmt":
                targets_node, value = node.children
                targets = tuple((str(t), self.span(t)) for t in targets_node.children if t is not None)
                expr = self.expr(value, 1)
                if len(targets) > 1 or str(self._last_token(targets_node)) == ",":
                    return SUnpack(targets, expr, sp)
                (name, name_span), = targets
                return SAssign(name, name_span, expr, sp)
            case "pass_stmt":
                return SPass(sp)
        return SExprStmt(self.expr(node.children[0], 1), sp)

    @staticmethod
    def _last_token(node: Any) -> Any:
        toks = list(node.scan_values(lambda _: True))
        return toks[-1] if toks else ""

    def _deep(self, sp: Span) -> LimitError:
        return LimitError(f"expression nesting deeper than {MAX_NESTING} levels", sp,
                          hint="name parts of it with locals (`y = ...`) or split it into patterns")

    def expr(self, node: Any, depth: int) -> SExpr:
        """The surface expression of a lark node standing ``depth`` levels deep."""
        from lark import Token

        sp = self.span(node)
        if depth > MAX_NESTING:
            raise self._deep(sp)
        if isinstance(node, Token):
            return SName(str(node), sp)
        ch = [c for c in node.children if c is not None]
        inner = depth + 1
        match node.data:
            case "name":
                return SName(str(ch[0]), sp)
            case "number":
                return SConst(number_value(str(ch[0]), sp), sp)
            case "string":
                return SString("".join(string_value(str(t), self.span(t)) for t in ch), sp)
            case "empty_tuple":
                return STuple((), sp)
            case "tuple":
                return STuple(tuple(self.expr(c, inner) for c in ch), sp)
            case "list":
                return SList(tuple(self.expr(c, inner) for c in ch), sp)
            case "walrus":
                return SWalrus(str(ch[0]), self.expr(ch[1], inner), sp)
            case "call":
                return self.call(node, ch, sp, depth)
            case "index":
                return SIndex(self.expr(ch[0], inner), self.expr(ch[1], inner), sp)
            case "slice":
                lo, hi, st = (list(node.children) + [None] * 3)[:3]
                return SSlice(*(None if c is None else self.expr(c, inner) for c in (lo, hi, st)), sp)
            case "attr":
                return SAttr(self.expr(ch[0], inner), str(ch[1]), sp)
            case "unary":
                return SUnary(str(ch[0]), self.expr(ch[1], inner), sp)
            case "not_test":
                return SUnary("not", self.expr(ch[0], inner), sp)
            case "power":
                return SBinOp("**", self.expr(ch[0], inner), self.expr(ch[2], inner), sp)
            case "arith" | "term":
                ops = [str(op) for op in ch[1::2]]
                return self.chain(SBinOp, ops, ch[0::2], depth)
            case "bor" | "band":
                return self.chain(SBinOp, [_CHAIN_OPS[node.data]] * (len(ch) - 1), ch, depth)
            case "or_test" | "and_test":
                op = "or" if node.data == "or_test" else "and"
                return self.chain(SBoolOp, [op] * (len(ch) - 1), ch, depth)
            case "comparison":
                ops = tuple(" ".join(str(t) for t in op.children) for op in ch[1::2])
                first = self.expr(ch[0], inner)
                return SCompare(first, tuple(zip(ops, (self.expr(c, inner) for c in ch[2::2]))), sp)
            case "ifexp":
                body, cond, orelse = (self.expr(c, inner) for c in ch)
                return SIfExp(body, cond, orelse, sp)
        raise PatternSyntaxError(f"unsupported syntax ({node.data})", sp)

    def chain(self, cls: type[SBinOp] | type[SBoolOp], ops: list[str], operands: list[Any],
              depth: int) -> SExpr:
        """``a op b op c`` nested to the left: the first operands stand deepest."""
        inner = depth + len(ops)
        if inner > MAX_NESTING:
            raise self._deep(self.span(operands[0]))
        out = self.expr(operands[0], inner)
        for op, rhs in zip(ops, operands[1:]):
            r = self.expr(rhs, inner)
            out = cls(op, out, r, join(out.span, r.span))
        return out

    def call(self, node: Any, ch: list[Any], sp: Span, depth: int) -> SCall:
        inner = depth + 1
        func = self.expr(ch[0], inner)
        args: list[SExpr] = []
        kwargs: list[SKeyword] = []
        if len(ch) > 1:
            for a in ch[1].children:
                if a is None:
                    continue
                if hasattr(a, "data") and a.data == "kwarg":
                    kwargs.append(SKeyword(str(a.children[0]), self.expr(a.children[1], inner),
                                           self.span(a)))
                else:
                    if kwargs:
                        raise PatternSyntaxError("positional argument after keyword argument",
                                                 self.span(a))
                    args.append(self.expr(a, inner))
        return SCall(func, tuple(args), tuple(kwargs), sp)


__all__ = [
    "SAssert", "SAssign", "SAttr", "SBinOp", "SBoolOp", "SCall", "SCompare", "SConst", "SDef",
    "SExpr", "SExprStmt", "SIfExp", "SImport", "SIndex", "SKeyword", "SList", "SModule", "SName",
    "SParam", "SPass", "SReturn", "SSlice", "SStmt", "SString", "STuple", "SUnary", "SUnpack",
    "SWalrus", "ToSurface", "dotted", "join", "string_value",
]
