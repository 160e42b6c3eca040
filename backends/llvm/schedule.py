"""Loop nests for views and reductions: build, collapse, vectorize, parallelize.

Given an output buffer and how to compute one element, these helpers build the loop nest,
merge loops that index memory contiguously (so a contiguous tensor is one long loop), mark
the innermost loop as a vector loop and the outermost as parallel when there is enough work
to share between threads.
"""
from __future__ import annotations

from typing import Callable, Sequence

from backends.llvm.loops import (Buffer, Const, Expr, Kernel, Let, Loop, Reduce, Store, Var,
                                 collapse, collapse_reduce, flat_index, fresh, loads, nest,
                                 stride_along, walk_stmts)
from backends.llvm.views import View, checks

# Below this much work (elements x reduced elements) a kernel runs on one thread: waking
# the thread pool costs a few microseconds.
PARALLEL_MIN_WORK = 1 << 15


def index_vars(shape: Sequence[int]) -> tuple[list[Expr], list[tuple[str, int]]]:
    """Index expressions for an output shape: a loop variable per axis longer than 1."""
    index, loops = [], []
    for d in shape:
        if d == 1:
            index.append(Const(0))
        else:
            v = fresh("i")
            index.append(Var(v))
            loops.append((v, d))
    return index, loops


def finish_nest(body: list, work: int, threads: int, vector_inner: bool = True) -> list:
    """Collapse, then mark the innermost loop vector and the outermost parallel."""
    body = collapse(body)
    chain = []
    level = body
    while len(level) == 1 and isinstance(level[0], Loop):
        chain.append(level[0])
        level = level[0].body
    if not chain:
        return body
    inner = chain[-1]
    if vector_inner and inner.extent > 1:
        inner.vector = True
    outer = chain[0]
    if threads > 1 and work >= PARALLEL_MIN_WORK and outer.extent > 1:
        outer.parallel = True
    return body


def pointwise_kernel(name: str, out: Buffer, view: View, threads: int,
                     origin: str = "") -> Kernel | None:
    """out[i] = view[i] for every element i of out."""
    if out.size == 0:
        return None
    index, loops = index_vars(out.shape)
    with checks() as found:
        value = view.at(index)
    body = found + [Store(out, flat_index(index, out.shape), value)]
    body = finish_nest(nest(loops, body), out.size, threads)
    return Kernel(name, body, origin, can_fail=bool(found))


def reduction_kernel(name: str, out: Buffer, out_shape: Sequence[int],
                     element: Callable[[list[Expr]], tuple[list, Expr]], work: int,
                     threads: int, origin: str = "") -> Kernel | None:
    """out[o] = value, where element(o) gives the statements (Reduce/Let) and the value
    for the output index o (expressions over loop variables)."""
    if out.size == 0:
        return None
    index, loops = index_vars(out_shape)
    with checks() as found:
        stmts, value = element(index)
    stmts = [collapse_reduce(s) if isinstance(s, Reduce) else s for s in stmts]
    body = found + stmts + [Store(out, flat_index(index, out_shape), value)]
    nested = nest(loops, body)
    inner_var = loops[-1][0] if loops else None
    vector = inner_var is not None and _unit_stride_inside(stmts, inner_var)
    body = finish_nest(nested, work, threads, vector_inner=vector)
    return Kernel(name, body, origin, can_fail=bool(found))


def _unit_stride_inside(stmts: list, var: str) -> bool:
    """Whether the reductions read memory contiguously along var (an output axis): then
    var is the vector axis and each lane accumulates its own output element."""
    reduces = [s for s in stmts if isinstance(s, Reduce)]
    if not reduces:
        return True
    for s in reduces:
        found = loads([Let("_", s.value)])
        inner = s.loops[-1][0] if s.loops else None
        along_out = [stride_along(ld.index, var) for ld in found]
        along_red = [stride_along(ld.index, inner) for ld in found] if inner else []
        if any(k == 1 for k in along_red) and not any(k == 1 for k in along_out):
            return False
    return True


def stores(body: list) -> list[Store]:
    return [s for s in walk_stmts(body) if isinstance(s, Store)]
