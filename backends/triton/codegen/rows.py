"""Row kernels: reductions with their producers and consumers in one kernel.

All reductions of a row kernel share one space: input shape S reduced over axes A. The
kernel sees S as a matrix of rows (the kept axes, flattened) by columns (the reduced axes,
flattened); a program owns RB rows and walks the columns CB at a time:

    for each level (a reduction needing another one's result waits one level):
        acc = identity;  for c0 in range(0, NCOLS, CB): acc = combine(acc, operand tile)
        result = reduce(acc, axis=1)            # one value per row, kept in registers
    output: per-row values stored once, or a full-row value (softmax) in a last sweep

When a row fits in one block the loops disappear and the operand tiles loaded for the
first reduction are reused by the later ones and by the output sweep (softmax reads its
input once). Softmax, log_softmax, layer_norm, rms_norm and cross_entropy decompose into
exactly this shape. Argmax keeps a value and an index per lane; max/min keep NaN explicitly
(tl.max may drop it).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from dlc.ir.graph import Node, Value
from dlc.ops.registry import REDUCTION
from backends.triton.codegen.builder import (TL, Conflict, KernelBuilder, KernelContext,
                                             float_literal, is_float, next_pow2, reg_dtype)
from backends.triton.codegen.common import (GeneratedKernel, GeneratedLaunch, KernelRequest,
                                            cone, function, header, pointer_names, warps_for)
from backends.triton.codegen.store import store

MAX_COLS = 4096  # longest row held in one tile; longer rows loop


def is_reduction(node: Node) -> bool:
    return node.op.kind is REDUCTION and node.op.decompose is None and node.body is None


def space_of(node: Node) -> tuple[tuple[int, ...], tuple[int, ...]]:
    axes = node.attrs["axes"] if "axes" in node.attrs else (node.attrs["axis"],)
    shape = node.inputs[0].shape
    return shape, tuple(axes) if shape else ()


@dataclass
class Space:
    shape: tuple[int, ...]
    axes: tuple[int, ...]

    @property
    def outer(self) -> tuple[int, ...]:
        return tuple(s for d, s in enumerate(self.shape) if d not in self.axes)

    @property
    def inner(self) -> tuple[int, ...]:
        return tuple(self.shape[d] for d in self.axes)

    def row_shape(self, keepdims: bool) -> tuple[int, ...]:
        if keepdims:
            return tuple(1 if d in self.axes else s for d, s in enumerate(self.shape))
        return self.outer


def choose_space(out: Value, nodes: list[Node]) -> Space:
    """The reduction space of a row kernel for `out`: the nearest reduction whose input has
    out's shape (a full-row output) or whose rows number out's elements (a per-row output)."""
    reductions = [n for n in reversed(nodes) if is_reduction(n)]
    for r in reductions:
        space = Space(*space_of(r))
        if out.shape == space.shape or prod(out.shape) == prod(space.outer):
            return space
    raise Conflict(reductions[0], "no reduction of this kernel matches its output")


class RowKernel(KernelContext):
    def __init__(self, space: Space):
        self.space = space
        self.results: dict[int, str] = {}
        self.row_idx: tuple[str, ...] = ()

    def expected(self, node: Node) -> tuple[str, ...]:
        keep = node.attrs["keepdims"]
        if keep:
            rows = iter(self.row_idx)
            return tuple("0" if d in self.space.axes else next(rows)
                         for d in range(len(self.space.shape)))
        return self.row_idx

    def reduction(self, kb: KernelBuilder, node: Node, idx, mask) -> str:
        if id(node) not in self.results:
            raise Conflict(node, "a reduction over another space, or not yet computed")
        if tuple(idx) != self.expected(node):
            raise Conflict(node, "a per-row value needed at another row")
        return self.results[id(node)]


def levels(reductions: list[Node], stop: set) -> dict[int, int]:
    """1 + the deepest same-kernel reduction a reduction's operand depends on."""
    ids = {id(r) for r in reductions}
    level: dict[int, int] = {}
    for r in reductions:  # topological order
        deps = [level[id(n)] for n in cone(r.inputs[0], stop) if id(n) in ids]
        level[id(r)] = 1 + max(deps, default=0)
    return level


# -- accumulators ------------------------------------------------------------------------------
def _extreme(dtype: str, low: bool) -> str:
    if is_float(dtype):
        return 'float("-inf")' if low else 'float("inf")'
    info = np.iinfo(dtype if dtype != "bool" else "int32")
    return str(int(info.min if low else info.max))


def _acc_dtype(node: Node) -> str:
    src = reg_dtype(node.inputs[0].dtype)
    if node.op.name == "sum" and src == "bool":
        return "int64"
    if src == "bool":  # max/min of bools: any/all on int32
        return "int32"
    return src


class Accumulator:
    """Code for one reduction: init before the column loop, update inside, finish after."""

    def __init__(self, kb: KernelBuilder, node: Node, tile: str):
        self.kb, self.node, self.op = kb, node, node.op.name
        self.dtype = _acc_dtype(node)
        self.acc = kb.fresh("acc")
        self.arg = kb.fresh("arg") if self.op in ("argmax", "argmin") else None
        t = TL[self.dtype]
        kb.assign(self.acc, f"tl.full({tile}, {self.identity()}, {t})", axes={0, 1})
        if self.arg:
            kb.assign(self.arg, f"tl.zeros({tile}, tl.int64)", axes={0, 1})

    def identity(self) -> str:
        if self.op in ("sum", "mean"):
            return "0"
        if self.op == "prod":
            return "1"
        return _extreme(self.dtype, low=self.op in ("max", "argmax"))

    def update(self, x: str, mask: str | None, col: str) -> None:
        kb, acc, t = self.kb, self.acc, TL[self.dtype]
        if reg_dtype(self.node.inputs[0].dtype) != self.dtype:
            x = kb.let(f"{x}.to({t})", "x")
        if mask:
            x = kb.let(f"tl.where({mask}, {x}, {self.identity()})", "x")
        if self.op in ("sum", "mean"):
            kb.assign(acc, f"{acc} + {x}")
        elif self.op == "prod":
            kb.assign(acc, f"{acc} * {x}")
        elif self.op in ("max", "min"):
            fn = ("dlc_max_nan" if self.op == "max" else "dlc_min_nan") if is_float(self.dtype) \
                else ("tl.maximum" if self.op == "max" else "tl.minimum")
            kb.assign(acc, f"{fn}({acc}, {x})")
        else:  # argmax/argmin: strictly better (so the first wins), NaN beats any number
            cmp = ">" if self.op == "argmax" else "<"
            better = f"({x} {cmp} {acc})"
            if is_float(self.dtype):
                better = f"({better} | (({x} != {x}) & ({acc} == {acc})))"
            better = kb.let(f"{better} & {mask}" if mask else better, "b")
            kb.assign(acc, f"tl.where({better}, {x}, {acc})")
            kb.assign(self.arg, f"tl.where({better}, {col}.to(tl.int64), {self.arg})")

    def finish(self, count: int) -> str:
        out = self._finish(count)
        self.kb.declare(out, {0})
        return out

    def _finish(self, count: int) -> str:
        kb, acc, op = self.kb, self.acc, self.op
        if op in ("sum", "mean"):
            out = kb.let(f"tl.sum({acc}, axis=1)[:, None]", "r")
            if op == "mean":
                out = kb.let(f"{out} / {float_literal(float(count))}", "r")
        elif op == "prod":
            out = kb.let(f"tl.reduce({acc}, 1, dlc_mul_combine)[:, None]", "r")
        elif op in ("max", "min"):
            out = kb.let(f"tl.{op}({acc}, axis=1)[:, None]", "r")
            if is_float(self.dtype):
                nan = kb.let(f"tl.max(({acc} != {acc}).to(tl.int32), axis=1)[:, None]", "n")
                out = kb.let(f'tl.where({nan} > 0, float("nan"), {out})', "r")
        else:
            best = kb.let(f"tl.{op[3:]}({acc}, axis=1)[:, None]", "r")
            hit = f"{acc} == {best}"
            if is_float(self.dtype):
                nan = kb.let(f"tl.max(({acc} != {acc}).to(tl.int32), axis=1)[:, None]", "n")
                hit = f"tl.where({nan} > 0, {acc} != {acc}, {hit})"
            big = str(2 ** 62)
            out = kb.let(f"tl.min(tl.where({hit}, {self.arg}, {big}), axis=1)[:, None]", "r")
        src = reg_dtype(self.node.inputs[0].dtype)
        if op in ("max", "min") and src == "bool":
            out = kb.let(f"{out} != 0", "r")
        return out


# -- the kernel --------------------------------------------------------------------------------
def _tiles(space: Space, options) -> tuple[int, int]:
    ncols, nrows = prod(space.inner), prod(space.outer)
    cb = min(next_pow2(ncols), MAX_COLS)
    rb = max(1, min(next_pow2(nrows), options.max_tile // cb))
    return rb, cb


def _columns(kb: KernelBuilder, space: Space, cb: int, start: str,
             rows: str | None) -> tuple:
    """Column variables of one sweep: the full index of S and the tile mask (None when the
    tile never leaves S: no masks, vectorized loads)."""
    ncols = prod(space.inner)
    col = kb.let(f"{start} + tl.arange(0, {cb})[None, :]" if start != "0"
                 else f"tl.arange(0, {cb})[None, :]", "col", axes={1})
    mask = kb.conj([rows, f"({col} < {ncols})" if ncols % cb or not ncols else None])
    inner = iter(kb.delinearize(col, space.inner))
    outer = iter(kb.delinearize("row", space.outer))
    full = tuple(next(inner) if d in space.axes else next(outer)
                 for d in range(len(space.shape)))
    trailing = space.axes == tuple(range(len(space.shape) - len(space.axes), len(space.shape)))
    if trailing and space.axes:  # rows of contiguous columns: offset row * NCOLS + col
        kb.remember(("lin", full, space.shape), kb.let(f"row * {ncols} + {col}", "i"))
    return col, mask, full


def _sweep(kb: KernelBuilder, space: Space, cb: int, rows: str | None, body) -> None:
    """Run body(col, mask, full_idx) over every column block (a loop only if needed)."""
    ncols = prod(space.inner)
    if ncols <= cb:
        body(*_columns(kb, space, cb, "0", rows))
        return
    c0 = kb.fresh("c")
    with kb.loop(f"for {c0} in range(0, {ncols}, {cb}):"):
        body(*_columns(kb, space, cb, c0, rows))


def generate_rows(req: KernelRequest) -> GeneratedKernel:
    out = req.out
    nodes = cone(out, set(req.params))
    space = choose_space(out, nodes)
    ctx = RowKernel(space)
    kb = req.builder(ctx)
    rb, cb = _tiles(space, req.options)
    nrows = prod(space.outer)
    pid = "tl.program_id(0).to(tl.int64)" if req.index64 else "tl.program_id(0)"
    kb.line(f"row = {pid} * RB + tl.arange(0, RB)[:, None]")
    kb.declare("row", {0})
    rows = None if nrows % rb == 0 else "rmask"  # every program's rows exist: no row mask
    if rows:
        kb.line(f"rmask = row < {nrows}")
        kb.declare("rmask", {0})
    ctx.row_idx = kb.delinearize("row", space.outer)
    mine = [n for n in nodes if is_reduction(n) and Space(*space_of(n)) == space]
    depth = levels(mine, set(req.params))
    for level in sorted(set(depth.values())):
        batch = [r for r in mine if depth[id(r)] == level]
        accs = [Accumulator(kb, r, f"[RB, {cb}]") for r in batch]

        def accumulate(col, mask, full, accs=accs):
            for a in accs:
                a.update(kb.value(a.node.inputs[0], full, mask), mask, col)
        _sweep(kb, space, cb, rows, accumulate)
        for a in accs:
            ctx.results[id(a.node)] = a.finish(prod(space.inner))
    if out.shape == space.shape and out.shape != space.outer:
        def write(col, mask, full):
            offset = kb.linearize(full, space.shape)
            store(kb, req.out_param, offset, kb.value(out, full, mask), out.dtype, mask)
        _sweep(kb, space, cb, rows, write)
    else:
        idx = _row_output_index(kb, ctx, space, out)
        store(kb, req.out_param, "row", kb.value(out, idx, rows), out.dtype, rows)
    source = function(req.name, kb, req, ["RB"], header(req, "reduction", nodes))
    launch = GeneratedLaunch(req.name, pointer_names(req, kb), ([(nrows, "RB")],),
                             meta={"RB": rb}, num_warps=warps_for(rb * cb))
    return GeneratedKernel("reduction", source, [launch])


def _row_output_index(kb: KernelBuilder, ctx: RowKernel, space: Space, out: Value):
    for keep in (False, True):
        if out.shape == space.row_shape(keep):
            rows = iter(ctx.row_idx)
            if not keep:
                return ctx.row_idx
            return tuple("0" if d in space.axes else next(rows)
                         for d in range(len(space.shape)))
    return kb.delinearize("row", out.shape)
