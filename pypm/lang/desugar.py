"""Desugaring: a surface definition (:mod:`pypm.lang.surface`) becomes a core definition (§7).

* ``a @ b``, ``a / b``, ... are ``matmul``, ``div``, ... with the schema's defaults filled in;
  ``|`` is alternation, ``p & q`` conjunction, ``(x := p)`` is ``x & p``;
* keyword arguments go to their schema position (operators) or parameter (patterns);
* ``name = p`` is ``∃name. (… ; name ≍ p)``; ``assert g`` is a guard ``body ? g``, moved later
  to where its variables are bound (:mod:`pypm.lang.placement`);
* ``B, H, S, D = q.shape`` names dimensions for guards and requires rank 4;
* a non-variable call argument ``P(a)`` is ``∃y. P(y) ; y ≍ a``.

The :class:`Scope` of one definition (parameters, locals, dimension names, fresh names) is
shared by the pattern and the guard halves. Nothing here executes user code: names are looked
up in tables, never evaluated. A desugared definition deeper than
:data:`~pypm.lang.limits.MAX_CORE_DEPTH` is refused (:func:`core_depth`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ..errors import ArityError, GuardError, LimitError, PatternSyntaxError, PypmError, ScopeError, Span
from . import schema
from .guards import ALLOWED_ATTRS
from .limits import MAX_CORE_DEPTH
from .surface import (
    SAssert,
    SAssign,
    SAttr,
    SBinOp,
    SBoolOp,
    SCall,
    SCompare,
    SConst,
    SDef,
    SExpr,
    SExprStmt,
    SIfExp,
    SIndex,
    SKeyword,
    SList,
    SName,
    SPass,
    SReturn,
    SSlice,
    SString,
    STuple,
    SUnary,
    SUnpack,
    SWalrus,
    dotted,
)
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

_NAMESPACES = ("torch", "F", "aten", "nn", "functional", "prims", "Tensor", "ops")
_BINOPS = {"@": "matmul", "/": "div", "*": "mul", "+": "add", "-": "sub", "//": "floor_divide",
           "%": "remainder", "**": "pow"}
_CONSTANTS = {"None": None, "True": True, "False": False}
_RESERVED = frozenset({"_", "fail", "exists", "then", "None", "True", "False", "Op"})
_ANNOTATIONS = (None, "Op", "pypm.Op", "Tensor", "torch.Tensor", "Any")


@dataclass
class Scope:
    """What one definition's names mean while it is desugared.

    ``patterns`` are the names that are calls of definitions (the module's own, its imports,
    known ``@pattern`` objects); any other call is an operator. ``arities`` gives the parameters
    of those whose definitions are known (for keyword arguments)."""

    d: SDef
    patterns: frozenset[str]
    arities: dict[str, tuple[str, ...]]
    locals: list[str] = field(default_factory=list)
    implicit_locals: list[str] = field(default_factory=list)      # from `(x := p)`
    dims: dict[str, tuple[str, int]] = field(default_factory=dict)  # `B, S, D = x.shape`
    fresh: itertools.count = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.params = tuple(p.name for p in self.d.params)
        self.param_set = frozenset(self.params)

    def in_scope(self, name: str) -> bool:
        return name in self.param_set or name in self.locals or name in self.implicit_locals

    def new_var(self) -> str:
        return f"%{next(self.fresh)}"  # not a Python identifier: cannot clash with user names

    def err(self, cls: type[PypmError], msg: str, span: Span, hint: str | None = None) -> PypmError:
        return cls(msg, span, pattern=self.d.name, hint=hint)


def desugar(d: SDef, patterns: frozenset[str], arities: dict[str, tuple[str, ...]]) -> Definition:
    """The core definition of surface definition d (raises PypmError subclasses)."""
    out = _Desugar(Scope(d, patterns, arities)).definition()
    depth = core_depth(out.body)
    if depth > MAX_CORE_DEPTH:
        raise LimitError(f"pattern `{d.name}` nests {depth} levels deep once desugared (the limit "
                         f"is {MAX_CORE_DEPTH})", d.span, pattern=d.name,
                         hint="each local, operator argument position and non-variable call argument "
                              "adds a level; split the pattern into smaller ones")
    return out


class _Desugar:
    def __init__(self, scope: Scope):
        self.s = scope

    def err(self, cls: type[PypmError], msg: str, span: Span, hint: str | None = None) -> PypmError:
        return self.s.err(cls, msg, span, hint)

    # -- definitions --------------------------------------------------------------------------

    def definition(self) -> Definition:
        d, s = self.s.d, self.s
        seen: set[str] = set()
        for p in d.params:
            if p.name in seen:
                raise self.err(ScopeError, f"parameter `{p.name}` is declared twice", p.span)
            if p.name in _RESERVED:
                raise self.err(ScopeError, f"`{p.name}` cannot be a parameter name", p.span)
            if p.annotation not in _ANNOTATIONS:
                raise self.err(PatternSyntaxError, f"unknown annotation `{p.annotation}` on `{p.name}`",
                               p.span, hint="annotate operator variables with `: Op`")
            seen.add(p.name)
        stmts = list(d.body)
        returns = [st for st in stmts if isinstance(st, SReturn)]
        if not returns:
            raise self.err(PatternSyntaxError, "pattern has no `return`", d.span,
                           hint="a pattern body ends with `return <pattern>`")
        if len(returns) > 1 or not isinstance(stmts[-1], SReturn):
            extra = returns[1] if len(returns) > 1 else stmts[stmts.index(returns[0]) + 1]
            raise self.err(PatternSyntaxError, "nothing may follow the `return` of a pattern",
                           extra.span)
        # Declare locals and dims first so that uses before the assignment are reported well.
        assigns: list[SAssign] = []
        guards: list[tuple[GExpr, Span]] = []
        for st in stmts[:-1]:
            match st:
                case SAssign(name, name_span):
                    self._declare_local(name, name_span)
                    assigns.append(st)
                case SUnpack():
                    guards.append(self._unpack(st))
                case SAssert() | SPass() | SExprStmt(SString()):
                    pass  # asserts come next; a string in the middle is a comment
                case _:
                    raise self.err(PatternSyntaxError, "an expression on its own does nothing in a "
                                   "pattern", st.span, hint="write `return <pattern>`, `name = "
                                   "<pattern>` or `assert <guard>`")
        for st in stmts[:-1]:
            if isinstance(st, SAssert):
                guards.append((self.guard(st.expr), st.span))
        body = self.pattern(returns[0].expr)
        for a in reversed(assigns):
            body = Then(body, a.name, self.pattern(a.expr), span=a.expr.span)
        for g, sp in guards:  # `assert g` is `body ? g`; placement moves it where it can run
            body = Guard(body, g, span=sp)
        for name in reversed(s.locals + s.implicit_locals):
            body = Exists(name, body, span=d.span)
        op_params = frozenset(p.name for p in d.params if p.annotation in ("Op", "pypm.Op"))
        return Definition(d.name, s.params, body, op_params, d.doc, span=d.span)

    def _declare_local(self, name: str, span: Span) -> None:
        s = self.s
        if name in s.param_set:
            raise self.err(ScopeError, f"`{name}` is a parameter and cannot be assigned", span)
        if name in s.locals:
            raise self.err(ScopeError, f"local `{name}` is assigned twice", span,
                           hint="a local names one value; use a new name")
        if name in _RESERVED or name in s.dims:
            raise self.err(ScopeError, f"`{name}` cannot be assigned", span)
        s.locals.append(name)

    def _unpack(self, st: SUnpack) -> tuple[GExpr, Span]:
        s = self.s
        e = st.expr
        if not (isinstance(e, SAttr) and e.attr == "shape" and isinstance(e.obj, SName)):
            raise self.err(PatternSyntaxError, "only a shape can be unpacked: `B, H, S, D = q.shape`",
                           st.span)
        var = e.obj.name
        if var not in s.param_set and var not in s.locals:
            raise self.err(ScopeError, f"unknown variable `{var}`", e.obj.span)
        for i, (name, nspan) in enumerate(st.targets):
            if name == "_":
                continue
            if name in s.param_set or name in s.locals or name in s.dims:
                raise self.err(ScopeError, f"`{name}` is already defined", nspan)
            s.dims[name] = (var, i)
        at = e.obj.span
        rank = GCompare(GAttr(GName(var, span=at), "ndim", span=at),
                        (("==", GConst(len(st.targets), span=st.span)),), span=st.span)
        return rank, st.span

    # -- patterns -----------------------------------------------------------------------------

    def pattern(self, e: SExpr) -> Pattern:
        s, sp = self.s, e.span
        match e:
            case SName("_"):
                return Wild(span=sp)
            case SName("fail"):
                return Fail(span=sp)
            case SName(name) if name in _CONSTANTS:
                return Lit(_CONSTANTS[name], span=sp)
            case SName(name):
                return self._name(name, sp)
            case SConst(value) | SString(value):
                return Lit(value, span=sp)
            case STuple(items) | SList(items):
                return Lit(self._literal_tuple(items), span=sp)
            case SUnary("-", SConst(value)):
                return Lit(-value, span=sp)
            case SUnary("+", SConst(value)):
                return Lit(value, span=sp)
            case SUnary("-", operand):
                return Op("neg", (self.pattern(operand),), span=sp)
            case SUnary("~", operand):
                return Op("bitwise_not", (self.pattern(operand),), span=sp)
            case SUnary(op):
                raise self.err(PatternSyntaxError, f"`{op}` is a guard operator; use it in `assert` "
                               "or in `p if cond else fail`", sp)
            case SBinOp("|", left, right):
                return Alt(self.pattern(left), self.pattern(right), span=sp)
            case SBinOp("&", left, right):
                return self._conj(self.pattern(left), self.pattern(right), sp)
            case SBinOp(op, left, right):
                return self._infix(_BINOPS[op], (self.pattern(left), self.pattern(right)), sp)
            case SWalrus(name, value):
                if not (name in s.param_set or name in s.locals):
                    if name in _RESERVED or name in s.dims:
                        raise self.err(ScopeError, f"`{name}` cannot be bound with `:=`", sp)
                    if name not in s.implicit_locals:
                        s.implicit_locals.append(name)
                return self._conj(Var(name, span=sp), self.pattern(value), sp)
            case SIfExp(body, cond, orelse):
                if not (isinstance(orelse, SName) and orelse.name == "fail"):
                    raise self.err(PatternSyntaxError, "a conditional pattern must read "
                                   "`p if cond else fail`", orelse.span)
                return Guard(self.pattern(body), self.guard(cond), span=sp)
            case SCall():
                return self._call(e)
            case SAttr(_, attr):
                dt = schema.dtype_named(dotted(e) or "")
                if dt is not None:
                    return Lit(dt, span=sp)
                raise self.err(PatternSyntaxError, f"attribute `.{attr}` outside a guard", sp,
                               hint="`.shape`, `.dtype` and friends are read in guards: `assert "
                                    "x.ndim == 4`; a method call is written `x.transpose(-2, -1)`")
            case SCompare(_, rest):
                raise self.err(PatternSyntaxError, f"`{' '.join(op for op, _ in rest)}` is a guard "
                               "operator; use it in `assert` or in `p if cond else fail`", sp)
            case SBoolOp(op):
                raise self.err(PatternSyntaxError, f"`{op}` is a guard operator; use it in `assert` "
                               "or in `p if cond else fail`", sp)
            case SIndex():
                raise self.err(PatternSyntaxError, "indexing is only allowed in guards", sp)
        raise self.err(PatternSyntaxError, f"not a pattern ({type(e).__name__})", sp)

    def _name(self, name: str, sp: Span) -> Pattern:
        s = self.s
        if s.in_scope(name):
            return Var(name, span=sp)
        if name in s.dims:
            raise self.err(ScopeError, f"`{name}` names a dimension of `{s.dims[name][0]}.shape`;"
                           " it can be used in guards only", sp)
        dt = schema.dtype_named(name)
        if dt is not None:
            return Lit(dt, span=sp)
        if name in s.patterns:
            raise self.err(ArityError, f"pattern `{name}` must be called with its arguments", sp,
                           hint=f"write `{name}(...)`")
        raise self.err(ScopeError, f"unknown variable `{name}`", sp,
                       hint=f"add `{name}` to the parameters of {s.d.name}, or make it a "
                            f"local with `{name} = _`")

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

    def _literal_tuple(self, items: tuple[SExpr, ...]) -> tuple[Any, ...]:
        out = []
        for c in items:
            p = self.pattern(c)
            if not isinstance(p, Lit):
                raise self.err(PatternSyntaxError, "a tuple in a pattern may contain only literals",
                               c.span, hint="match the tuple with `_` or a variable and test it in "
                                            "a guard")
            out.append(p.value)
        return tuple(out)

    def _conj(self, p: Pattern, q: Pattern, sp: Span) -> Pattern:
        """``p & q`` = ``∃z. ((z ; z ≍ p) ; z ≍ q)``; when p is a variable x, ``x ; x ≍ q``."""
        if isinstance(p, Var):
            return Then(p, p.name, q, span=sp)
        z = self.s.new_var()
        return Exists(z, Then(Then(Var(z, span=sp), z, p, span=sp), z, q, span=sp), span=sp)

    def _call(self, e: SCall) -> Pattern:
        s, sp, args, kwargs = self.s, e.span, list(e.args), e.kwargs
        match e.func:
            case SName("exists"):
                return self._exists(e)
            case SName("then"):
                return self._then(e)
            case SName(name) if s.in_scope(name):  # M-OpVar: a variable in operator position
                if kwargs:
                    raise self.err(PatternSyntaxError, "an operator variable takes no keyword "
                                   "arguments", kwargs[0].span)
                return OpVar(name, tuple(self.pattern(a) for a in args), span=sp)
            case SName(name) if name in s.patterns or (name[:1].isupper() and name not in _RESERVED):
                return self._pattern_call(name, args, kwargs, sp)
            case SName(name) if name in s.dims or name in _RESERVED:
                raise self.err(PatternSyntaxError, f"`{name}` cannot be called", sp)
            case SName(name):
                return self._op(schema.pattern_op_name(name), args, kwargs, sp)
            case SAttr(base, attr):
                name = dotted(e.func)
                head = name.split(".")[0] if name is not None else ""
                if name is not None and head in _NAMESPACES and not s.in_scope(head):
                    return self._op(schema.pattern_op_name(name), args, kwargs, sp)
                # method-call sugar: `k.transpose(-2, -1)` is `transpose(k, -2, -1)`
                return self._op(schema.pattern_op_name(attr), [base, *args], kwargs, sp)
        raise self.err(PatternSyntaxError, "only operators and patterns can be called", sp)

    def _exists(self, e: SCall) -> Pattern:
        s = self.s
        if len(e.args) != 2 or not isinstance(e.args[0], SName) or e.kwargs:
            raise self.err(PatternSyntaxError, "`exists` takes a variable name and a pattern: "
                           "`exists(x, p)`", e.span)
        name = e.args[0].name
        if name in _RESERVED or name in s.dims:
            raise self.err(ScopeError, f"`{name}` cannot be a local", e.args[0].span)
        added = not s.in_scope(name)
        if added:
            s.locals.append(name)
        try:
            body = self.pattern(e.args[1])
        finally:
            if added:
                s.locals.remove(name)
        return Exists(name, body, span=e.span)

    def _then(self, e: SCall) -> Pattern:
        if len(e.args) != 3 or not isinstance(e.args[1], SName) or e.kwargs:
            raise self.err(PatternSyntaxError, "`then` takes a pattern, a variable and a pattern: "
                           "`then(p, x, q)`", e.span)
        x = e.args[1]
        if not self.s.in_scope(x.name):
            raise self.err(ScopeError, f"unknown variable `{x.name}`", x.span)
        return Then(self.pattern(e.args[0]), x.name, self.pattern(e.args[2]), span=e.span)

    def _op(self, op: str, args: list[SExpr], kwargs: tuple[SKeyword, ...], sp: Span) -> Pattern:
        pats: list[Pattern | None] = [self.pattern(a) for a in args]
        if kwargs:
            names = schema.arg_names(op)
            if names is None:
                raise self.err(ArityError, f"operator `{op}` has no known schema, so keyword "
                               f"`{kwargs[0].name}=` cannot be placed", kwargs[0].span,
                               hint="pass the argument by position")
            for kw in kwargs:
                if kw.name not in names:
                    raise self.err(ArityError, f"operator `{op}` has no argument `{kw.name}`", kw.span,
                                   hint=f"its arguments are: {', '.join(names)}")
                i = names.index(kw.name)
                while len(pats) <= i:
                    pats.append(None)
                if pats[i] is not None and i < len(args):
                    raise self.err(ArityError, f"argument `{kw.name}` of `{op}` is given twice",
                                   kw.span)
                pats[i] = self.pattern(kw.value)
        return Op(op, tuple(Wild(span=sp) if p is None else p for p in pats), span=sp)

    def _pattern_call(self, name: str, args: list[SExpr], kwargs: tuple[SKeyword, ...],
                      sp: Span) -> Pattern:
        """``P(a1..an)``: variables pass straight through; any other argument a becomes
        ``∃y. P(.., y, ..) ; y ≍ a``, and a missing keyword argument a fresh ``∃y``."""
        s = self.s
        exprs: list[SExpr | None] = list(args)
        if kwargs:
            params = s.arities.get(name)
            if params is None:
                raise self.err(ArityError, f"keyword arguments to `{name}` need its definition in "
                               "this file or an import", kwargs[0].span)
            for kw in kwargs:
                if kw.name not in params:
                    raise self.err(ArityError, f"pattern `{name}` has no parameter `{kw.name}`",
                                   kw.span, hint=f"its parameters are: {', '.join(params)}")
                i = params.index(kw.name)
                while len(exprs) <= i:
                    exprs.append(None)
                if exprs[i] is not None:
                    raise self.err(ArityError, f"argument `{kw.name}` of `{name}` is given twice",
                                   kw.span)
                exprs[i] = kw.value
            while len(exprs) < len(params):
                exprs.append(None)
        names: list[str] = []
        fresh: list[str] = []
        thens: list[tuple[str, SExpr]] = []
        for a in exprs:
            if isinstance(a, SName) and s.in_scope(a.name):
                names.append(a.name)
                continue
            y = s.new_var()
            names.append(y)
            fresh.append(y)
            if a is not None and not (isinstance(a, SName) and a.name == "_"):
                thens.append((y, a))
        out: Pattern = Call(name, tuple(names), span=sp)
        for y, a in thens:
            out = Then(out, y, self.pattern(a), span=a.span)
        for y in reversed(fresh):
            out = Exists(y, out, span=sp)
        return out

    # -- guards -------------------------------------------------------------------------------

    def guard(self, e: SExpr) -> GExpr:
        s, sp = self.s, e.span
        match e:
            case SName(name) if name in _CONSTANTS:
                return GConst(_CONSTANTS[name], span=sp)
            case SName(name) if name in s.dims:
                var, i = s.dims[name]
                return GIndex(GAttr(GName(var, span=sp), "shape", span=sp), GConst(i, span=sp), span=sp)
            case SName(name) if s.in_scope(name):
                return GName(name, span=sp)
            case SName(name):
                dt = schema.dtype_named(name)
                if dt is not None:
                    return GConst(dt, span=sp)
                raise self.err(ScopeError, f"guard uses unknown name `{name}`", sp,
                               hint=f"guards read parameters and locals of {s.d.name}, and dimension "
                                    "names from `B, S, D = x.shape`")
            case SConst(value) | SString(value):
                return GConst(value, span=sp)
            case STuple(items) | SList(items):
                return GTuple(tuple(self.guard(c) for c in items), span=sp)
            case SUnary(op, operand):
                return GUnary(op, self.guard(operand), span=sp)
            case SBinOp("|" | "&" | "@" as op):
                raise self.err(GuardError, f"`{op}` is not a guard operator", sp,
                               hint="use `or` / `and` in guards")
            case SBinOp(op, left, right) | SBoolOp(op, left, right):
                return GBinary(op, self.guard(left), self.guard(right), span=sp)
            case SCompare(first, rest):
                return GCompare(self.guard(first), tuple((op, self.guard(r)) for op, r in rest),
                                span=sp)
            case SAttr(obj, attr):
                dt = schema.dtype_named(dotted(e) or "")
                if dt is not None:
                    return GConst(dt, span=sp)
                if attr not in ALLOWED_ATTRS:
                    raise self.err(GuardError, f"guards cannot read `.{attr}`", sp,
                                   hint=f"readable attributes: {', '.join(sorted(ALLOWED_ATTRS))}")
                return GAttr(self.guard(obj), attr, span=sp)
            case SIndex(obj, idx):
                return GIndex(self.guard(obj), self.guard(idx), span=sp)
            case SSlice(lo, hi, st):
                parts = [None if c is None else self.guard(c) for c in (lo, hi, st)]
                return GSlice(parts[0], parts[1], parts[2], span=sp)
            case SCall(func, args, kwargs):
                fname = dotted(func)
                if fname is not None and fname.startswith("math."):
                    fname = fname[len("math."):]
                if fname is None or "." in fname:
                    raise self.err(GuardError, "guards call functions by plain name", func.span)
                return GCall(fname, tuple(self.guard(a) for a in args),
                             tuple((kw.name, self.guard(kw.value)) for kw in kwargs), span=sp)
            case SIfExp():
                raise self.err(GuardError, "conditional expressions are not allowed in guards; use "
                               "`and` / `or`", sp)
            case SWalrus():
                raise self.err(GuardError, "`:=` binds pattern variables; it is not allowed in guards",
                               sp)
        raise self.err(GuardError, f"not a guard expression ({type(e).__name__})", sp)


# ---------------------------------------------------------------------------------------------
# Depth of a core pattern as the interpreter walks it


def core_depth(p: Pattern) -> int:
    """How deep the recursive passes over p go, computed without recursion: one level per
    constructor, the i-th argument of an operator i levels below the first (arguments are
    threaded left to right), a guard as deep as its expression."""
    depth = 0
    stack: list[tuple[Any, int]] = [(p, 1)]
    while stack:
        node, d = stack.pop()
        depth = max(depth, d)
        if depth > MAX_CORE_DEPTH:
            return depth
        match node:
            case Op(_, args) | OpVar(_, args):
                stack.extend((a, d + 2 + i) for i, a in enumerate(args))
            case Alt(left, right):
                stack += [(left, d + 1), (right, d + 1)]
            case Exists(_, body):
                stack.append((body, d + 1))
            case Guard(body, cond):
                stack += [(body, d + 1), (cond, d + 1)]
            case Then(body, _, q):
                stack += [(body, d + 1), (q, d + 1)]
            case GAttr(obj) | GUnary(_, obj):
                stack.append((obj, d + 1))
            case GIndex(obj, index):
                stack += [(obj, d + 1), (index, d + 1)]
            case GSlice(lo, hi, st):
                stack.extend((e, d + 1) for e in (lo, hi, st) if e is not None)
            case GCall(_, args, kwargs):
                stack.extend((e, d + 1) for e in (*args, *(e for _, e in kwargs)))
            case GBinary(_, left, right):
                stack += [(left, d + 1), (right, d + 1)]
            case GCompare(first, rest):
                stack.extend((e, d + 1) for e in (first, *(e for _, e in rest)))
            case GTuple(items):
                stack.extend((e, d + 1) for e in items)
    return depth


__all__ = ["Scope", "core_depth", "desugar"]
