"""The loop-nest IR between the graph and LLVM: statements and kernels.

Statements: `Loop` (serial, vector or parallel), `Store`, `Let` (bind a value to a name that
`Ref` reads), `Reduce` (a reduction over nested loops bound to a name) and `Check` (a runtime
condition that reports an error). A `Kernel` is a list of statements over named buffers.
The element expressions and index arithmetic they hold are in exprs.py (re-exported here).
Collapsing merges loops whose indexing is contiguous; `fingerprint` is a kernel's
structure, the same for kernels that differ only in the arrays they touch.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from backends.llvm.exprs import (INDEX, Affine, Const, Expr, Load, Op, Ref, Var, affine,
                                 contains, flat_index, from_affine, iadd, idx, ifloordiv,
                                 imod, imul, isub, replace, row_major_strides, stride_along,
                                 substitute, unflatten, walk_exprs)

# the expression names are used through this module too
__all__ = ["INDEX", "Affine", "Const", "Expr", "Load", "Op", "Ref", "Var", "affine",
           "contains", "flat_index", "from_affine", "iadd", "idx", "ifloordiv", "imod",
           "imul", "isub", "replace", "row_major_strides", "stride_along", "substitute",
           "unflatten", "walk_exprs", "Buffer", "Stmt", "Loop", "Store", "Let", "Reduce",
           "Check", "Kernel", "stmt_exprs", "walk_stmts", "body_exprs", "loads", "has_op",
           "fresh", "can_merge", "rename_in", "collapse", "collapse_reduce", "nest",
           "fingerprint"]


# -- buffers, statements and kernels -----------------------------------------------------------
@dataclass(eq=False)
class Buffer:
    """A typed array the kernels read or write, identified by object identity."""
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"Buffer({self.name}: {self.dtype}{list(self.shape)})"


class Stmt:
    pass


@dataclass(eq=False)
class Loop(Stmt):
    """for var in range(extent): body. `vector`: the code generator evaluates the body on
    several consecutive values of var at once; `parallel`: iterations are split across
    threads (only a kernel's top-level loop)."""
    var: str
    extent: int
    body: list
    vector: bool = False
    parallel: bool = False


@dataclass(eq=False)
class Store(Stmt):
    buf: Buffer
    index: Expr
    value: Expr


@dataclass(eq=False)
class Let(Stmt):
    name: str
    value: Expr


@dataclass(eq=False)
class Reduce(Stmt):
    """name = op over the nested loops (outermost first) of value; op is sum, prod, max,
    min, argmax/argmin (the int64 position along the single loop of the first extreme,
    NaN counting as extreme), or pool_argmax (`index` of the first maximum among elements
    where `valid` holds; a NaN always takes over, as max_pool_argmax)."""
    name: str
    op: str
    loops: list  # [(var, extent)]
    value: Expr
    dtype: str
    index: Expr | None = None
    valid: Expr | None = None
    # (buffer, index): also store each value there (a row kernel keeps exp(x - max) of its
    # sum pass in the output, so the output pass reads it instead of recomputing it)
    stash: tuple | None = None


@dataclass(eq=False)
class Check(Stmt):
    """Report error `code` with `args` (int64 expressions) unless cond holds."""
    cond: Expr
    code: int
    args: tuple


@dataclass(eq=False)
class Kernel:
    """One generated function: statements over buffers, named after its origin."""
    name: str
    body: list
    origin: str = ""
    can_fail: bool = False
    scratch_bytes: int = 0  # per-thread scratch the kernel needs (GEMM packing)
    extra: dict = field(default_factory=dict)


# -- traversal ---------------------------------------------------------------------------------
def stmt_exprs(s: Stmt) -> Iterator[Expr]:
    """The expressions a statement holds directly."""
    if isinstance(s, Store):
        yield s.index
        yield s.value
    elif isinstance(s, Let):
        yield s.value
    elif isinstance(s, Reduce):
        yield s.value
        if s.index is not None:
            yield s.index
            yield s.valid
        if s.stash is not None:
            yield s.stash[1]
    elif isinstance(s, Check):
        yield s.cond
        yield from s.args


def walk_stmts(body: list) -> Iterator[Stmt]:
    for s in body:
        yield s
        if isinstance(s, Loop):
            yield from walk_stmts(s.body)


def body_exprs(body: list) -> Iterator[Expr]:
    seen: set = set()
    for s in walk_stmts(body):
        for e in stmt_exprs(s):
            yield from walk_exprs(e, seen)


def loads(body: list) -> list[Load]:
    return [e for e in body_exprs(body) if isinstance(e, Load)]


def has_op(body: list, names: set) -> bool:
    return any(isinstance(e, Op) and e.op in names for e in body_exprs(body))


_COUNTER = itertools.count()


def fresh(prefix: str) -> str:
    """A new variable or let name."""
    return f"{prefix}{next(_COUNTER)}"


# -- loop collapsing ---------------------------------------------------------------------------
def _affine_roots(body: list) -> list[Expr]:
    """Maximal index subexpressions: every place a loop variable is used."""
    roots, seen = [], set()

    def visit(e: Expr, parent_affine: bool):
        if not e.vars:
            return
        a = affine(e) if e.dtype == INDEX else None
        if a is not None:
            if not parent_affine and id(e) not in seen:
                seen.add(id(e))
                roots.append(e)
            return
        for c in e.children():
            visit(c, False)

    for s in walk_stmts(body):
        for e in stmt_exprs(s):
            visit(e, False)
    return roots


def can_merge(body: list, outer: str, inner: str, inner_extent: int) -> bool:
    """Whether loops outer (i) and inner (j, extent n) can become one loop v = i*n + j:
    every use of i and j is in an affine form with coeff(i) == coeff(j) * n."""
    for e in _affine_roots(body):
        if outer not in e.vars and inner not in e.vars:
            continue
        coeffs = dict(affine(e)[1])
        if coeffs.get(outer, 0) != coeffs.get(inner, 0) * inner_extent:
            return False
    for s in walk_stmts(body):
        if isinstance(s, Reduce) and any(v in (outer, inner) for v, _ in s.loops):
            return False
    return True


def rename_in(body: list, env: dict[str, Expr]) -> list:
    """A copy of body with variables substituted."""
    memo: dict = {}
    out = []
    for s in body:
        if isinstance(s, Loop):
            out.append(Loop(s.var, s.extent, rename_in(s.body, env), s.vector, s.parallel))
        elif isinstance(s, Store):
            out.append(Store(s.buf, substitute(s.index, env, memo),
                             substitute(s.value, env, memo)))
        elif isinstance(s, Let):
            out.append(Let(s.name, substitute(s.value, env, memo)))
        elif isinstance(s, Reduce):
            sub = [None if e is None else substitute(e, env, memo) for e in (s.index, s.valid)]
            stash = None if s.stash is None else (s.stash[0],
                                                  substitute(s.stash[1], env, memo))
            out.append(Reduce(s.name, s.op, list(s.loops), substitute(s.value, env, memo),
                              s.dtype, sub[0], sub[1], stash))
        elif isinstance(s, Check):
            out.append(Check(substitute(s.cond, env, memo), s.code,
                             tuple(substitute(a, env, memo) for a in s.args)))
        else:
            out.append(s)
    return out


def collapse(body: list) -> list:
    """Merge perfectly nested loop pairs where indexing allows (see can_merge), innermost
    pairs first, so a contiguous nest becomes one long loop."""
    out = []
    for s in body:
        if not isinstance(s, Loop):
            out.append(s)
            continue
        inner_body = collapse(s.body)
        loop = Loop(s.var, s.extent, inner_body, s.vector, s.parallel)
        while (len(loop.body) == 1 and isinstance(loop.body[0], Loop)
               and not loop.body[0].vector and not loop.vector
               and can_merge(loop.body[0].body, loop.var, loop.body[0].var,
                             loop.body[0].extent)):
            inner = loop.body[0]
            merged = fresh("m")
            env = {loop.var: Const(0), inner.var: Var(merged)}
            loop = Loop(merged, loop.extent * inner.extent, rename_in(inner.body, env))
        out.append(loop)
    return out


def collapse_reduce(s: Reduce) -> Reduce:
    """Merge adjacent loops of a Reduce where indexing allows."""
    if s.op in ("argmax", "argmin", "pool_argmax") or s.stash is not None:
        return s
    loops = list(s.loops)
    value = s.value
    i = len(loops) - 2
    while i >= 0:
        (ov, oe), (iv, ie) = loops[i], loops[i + 1]
        probe = [Let("_", value)]
        if can_merge(probe, ov, iv, ie):
            merged = fresh("r")
            value = substitute(value, {ov: Const(0), iv: Var(merged)})
            loops[i:i + 2] = [(merged, oe * ie)]
        i -= 1
    return Reduce(s.name, s.op, loops, value, s.dtype)


def nest(loop_vars: Sequence[tuple[str, int]], body: list) -> list:
    """Wrap body in loops, the first pair outermost."""
    for var, extent in reversed(loop_vars):
        body = [Loop(var, extent, body)]
    return body


# -- structural identity of kernels --------------------------------------------------------------
def fingerprint(body: list, bufs: Sequence[Buffer], extra: tuple = ()) -> str:
    """A canonical text of a kernel body: variables, let names and buffers renamed in
    order of appearance (buffers by their argument position), so two kernels that differ
    only in which arrays they touch get the same text."""
    names: dict = {}
    position = {id(b): i for i, b in enumerate(bufs)}
    memo: dict = {}

    def name(n: str) -> str:
        return names.setdefault(n, f"v{len(names)}")

    def expr(e: Expr) -> str:
        key = id(e)
        if key in memo:
            return memo[key]
        if isinstance(e, Var):
            out = name(e.name)
        elif isinstance(e, Const):
            out = f"{e.value!r}:{e.dtype}"
        elif isinstance(e, Ref):
            out = "$" + name(e.name)
        elif isinstance(e, Load):
            out = f"L{position[id(e.buf)]}:{e.buf.dtype}[{expr(e.index)}]"
        else:
            out = f"{e.op}{e.attr!r}:{e.dtype}({','.join(expr(a) for a in e.args)})"
        memo[key] = out
        return out

    def stmt(s) -> str:
        if isinstance(s, Loop):
            inner = ";".join(stmt(t) for t in s.body)
            return f"for {name(s.var)}<{s.extent} v{int(s.vector)}p{int(s.parallel)}{{{inner}}}"
        if isinstance(s, Store):
            return f"S{position[id(s.buf)]}:{s.buf.dtype}[{expr(s.index)}]={expr(s.value)}"
        if isinstance(s, Let):
            return f"{name(s.name)}={expr(s.value)}"
        if isinstance(s, Reduce):
            loops = ",".join(f"{name(v)}<{n}" for v, n in s.loops)
            extra_parts = "" if s.index is None else f"|{expr(s.index)}|{expr(s.valid)}"
            if s.stash is not None:
                extra_parts += f"|S{position[id(s.stash[0])]}[{expr(s.stash[1])}]"
            return (f"{name(s.name)}={s.op}:{s.dtype}[{loops}]({expr(s.value)}"
                    f"{extra_parts})")
        if isinstance(s, Check):
            return f"check{s.code}({expr(s.cond)};{','.join(expr(a) for a in s.args)})"
        return repr(s)

    return "\n".join([stmt(s) for s in body] + [repr(extra)])
