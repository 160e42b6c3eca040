"""Lowering rules of the contractions (matmul, conv, conv_transpose, conv_weight_grad) and
the window ops (pools and their gradients).

Float contractions run on the GEMM micro-kernel (gemm.py); a convolution is an implicit
GEMM per (sample, group) whose B operand reads the input windows directly. Integer matmuls
and tiny ones (a few rows) are plain loop nests with a reduction, vectorized along the
contiguous axis. Each rule takes an optional `epilogue(index, acc) -> value` so that fused
bodies run their pointwise tail on the accumulators (lower_fused.py).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from dlc.ir.graph import Node
from backends.llvm.gemm import ACC, Gemm, gemm_kernel, may_prepack, plan, prepacked_bytes
from backends.llvm.loops import (INDEX, Buffer, Const, Expr, Let, Load, Reduce, Ref, Var,
                                 flat_index, fresh, iadd, ifloordiv, imod, imul, isub, loads,
                                 unflatten)
from backends.llvm.lower import KERNELS, Lowering
from backends.llvm.schedule import reduction_kernel
from backends.llvm.views import View, cast, cmp, const, imax, imin, op, select

Epilogue = Callable[[list, Expr], Expr]
SMALL_M = 4  # at most this many rows: a loop nest beats packing


def _plain(index: list, acc: Expr) -> Expr:
    return acc


def _kernel(*names):
    def deco(fn):
        for n in names:
            KERNELS[n] = fn
        return fn
    return deco


# -- matmul ------------------------------------------------------------------------------------
@_kernel("matmul")
def lower_matmul(lw: Lowering, node: Node, views: list, out, epilogue: Epilogue = _plain,
                 name: str | None = None) -> None:
    a, b = views
    shape = node.type.shape
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    batch_shape = shape[:-2]
    name = name or lw.kernel_name(node)
    dtype = node.type.dtype
    if out.size == 0:
        return
    if K == 0:  # an empty sum: the epilogue of zeros
        _zero_k(lw, node, out, epilogue, name)
        return
    if dtype not in ("float32", "float64") or M <= SMALL_M:
        lw.emit(_matmul_loops(lw, node, a, b, out, epilogue, name))
        return
    batch = [(fresh("b"), d) for d in batch_shape]
    bidx = [Var(v) if d > 1 else Const(0) for v, d in batch]
    i, j, k = fresh("i"), fresh("j"), fresh("k")
    a_expr = a.at(_operand_batch(a, bidx) + [Var(i), Var(k)])
    b_expr = b.at(_operand_batch(b, bidx) + [Var(k), Var(j)])
    index = bidx + [Var(i), Var(j)]
    g = Gemm(name, dtype, M, N, K, [(v, d) for v, d in batch if d > 1], a_expr, b_expr,
             epilogue(index, Ref(ACC, dtype)), out, flat_index(index, shape), i, j, k)
    _emit_gemm(lw, g)


def _emit_gemm(lw: Lowering, g: Gemm) -> None:
    p = plan(g, lw.threads)
    scratch = lw.need_thread_scratch(p["a_bytes"] + p["b_bytes"])
    prepacked = None
    if may_prepack(p):
        # B read only from weights (a Linear layer's W^T): packed once, not per call
        prepacked = lw.prepacked_b(f"{g.name}.packed_b", prepacked_bytes(g, p),
                                   [e.buf for e in loads([Let("b", g.b)])])
    lw.emit(gemm_kernel(g, p, scratch, prepacked))


def _operand_batch(v: View, bidx: list) -> list:
    """The batch part of an operand's index under broadcasting of batch dims."""
    nb = v.ndim - 2
    lead = len(bidx) - nb
    return [Const(0) if d == 1 else bidx[lead + t] for t, d in enumerate(v.shape[:nb])]


def _matmul_loops(lw, node, a: View, b: View, out, epilogue, name):
    shape = node.type.shape
    K = a.shape[-1]
    dtype = node.type.dtype

    def element(index):
        bidx = index[:-2]
        k = fresh("k")
        prod = op("mul", a.at(_operand_batch(a, bidx) + [index[-2], Var(k)]),
                  b.at(_operand_batch(b, bidx) + [Var(k), index[-1]]))
        acc = fresh("acc")
        return [Reduce(acc, "sum", [(k, K)], prod, dtype)], epilogue(index, Ref(acc, dtype))

    return reduction_kernel(name, out, shape, element, out.size * K, lw.threads)


def _zero_k(lw, node, out, epilogue, name):
    dtype = node.type.dtype
    lw.emit(reduction_kernel(name, out, node.type.shape,
                             lambda index: ([], epilogue(index, const(0, dtype))),
                             out.size, lw.threads))


# -- convolutions as implicit GEMMs --------------------------------------------------------------
def _window_source(x: View, n: Expr, channel: Expr, positions: list) -> Expr:
    """x[n, channel, *positions], zero where a position is outside x (padding)."""
    inside = None
    clamped = []
    for pos, size in zip(positions, x.shape[2:]):
        ok = op("and", cmp("ge", pos, Const(0)), cmp("lt", pos, Const(size)))
        inside = ok if inside is None else op("and", inside, ok)
        clamped.append(imax(imin(pos, size - 1), 0))
    value = x.at([n, channel] + clamped)
    return select(inside, value, const(0, x.dtype))


def _lower_row_conv(lw: Lowering, node: Node, x: View, w: View, out, epilogue, name) -> bool:
    """An output row at a time (conv_rows.py) where it applies; False otherwise."""
    from backends.llvm.conv_rows import RowConv, row_conv_applies, row_conv_kernel, tap_tables
    stride, padding, dilation = (tuple(node.attrs[k]) for k in ("stride", "padding",
                                                                  "dilation"))
    shape = node.type.shape
    if not (row_conv_applies(shape, w.shape[2:], stride, node.type.dtype)
            and x.buf is not None and x.buf.shape == x.shape
            and w.buf is not None and w.buf.shape == w.shape):
        return False
    groups = node.attrs["groups"]
    n_batch, c_out = shape[:2]
    out_sp, kernel = shape[2:], w.shape[2:]
    cig, cog = x.shape[1] // groups, c_out // groups
    name = name or lw.kernel_name(node)
    offsets, rows = tap_tables(cig, kernel, dilation, x.shape[2:])
    nv, gv, i, j = fresh("n"), fresh("g"), fresh("i"), fresh("j")
    lead = [(fresh("o"), d) for d in out_sp[:-1]]
    index = [Var(nv), iadd(imul(Var(gv), cog), Var(i))] + [Var(v) for v, _ in lead] + [Var(j)]
    K = cig * math.prod(kernel)
    g = Gemm(name, node.type.dtype, cog, out_sp[-1], K, [(nv, n_batch), (gv, groups)] + lead,
             None, None, epilogue(index, Ref(ACC, node.type.dtype)), out,
             flat_index(index, shape), i, j, fresh("k"))
    conv = RowConv(name, node.type.dtype, x.buf, w.buf, tuple(out_sp[:-1]), out_sp[-1],
                   groups, cog, cig, lw.constant(f"{name}.offsets", offsets),
                   [lw.constant(f"{name}.rows{a}", r) for a, r in enumerate(rows)],
                   tuple(dilation), stride, padding, tuple(x.shape[2:]), g)
    lw.emit(row_conv_kernel(conv, lw.threads))
    return True


# a convolution's window table stays in L2 beside the packed panels
WINDOW_TABLE_BYTES = 512 * 1024


def _window_table(in_sp, out_sp, kernel, stride, padding, dilation) -> np.ndarray:
    """table[tap, pixel] = the flat offset, within one input channel, of the element the
    tap reads for the output pixel, or -1 where it reads padding. Packing the implicit
    GEMM's B then costs a table load and a gather per element, not the index arithmetic
    of the window."""
    grids = np.meshgrid(*[np.arange(n) for n in kernel], *[np.arange(n) for n in out_sp],
                        indexing="ij")
    nsp = len(kernel)
    offset = np.zeros(grids[0].shape, dtype=np.int64)
    inside = np.ones(grids[0].shape, dtype=bool)
    for a in range(nsp):
        pos = grids[nsp + a] * stride[a] + grids[a] * dilation[a] - padding[a]
        inside &= (pos >= 0) & (pos < in_sp[a])
        offset = offset * in_sp[a] + pos
    table = np.where(inside, offset, -1).reshape(math.prod(kernel), math.prod(out_sp))
    return table.astype(np.int32)


def _tabled_window_source(x: Buffer, table: Buffer, n: Expr, channel: Expr, tap: Expr,
                          pixel: Expr, pixels: int) -> Expr:
    """x[n, channel] at the table's offset for (tap, pixel); zero where it is -1."""
    at = cast(Load(table, iadd(imul(tap, pixels), pixel)), INDEX)
    plane = math.prod(x.shape[2:])
    base = imul(iadd(imul(n, x.shape[1]), channel), plane)
    value = Load(x, iadd(base, imax(at, 0)))
    return select(cmp("ge", at, Const(0)), value, const(0, x.dtype))


@_kernel("conv")
def lower_conv(lw: Lowering, node: Node, views: list, out, epilogue: Epilogue = _plain,
               name: str | None = None) -> None:
    x, w = views
    groups = node.attrs["groups"]
    stride, padding, dilation = (node.attrs[k] for k in ("stride", "padding", "dilation"))
    n_batch, c_out = node.type.shape[:2]
    out_sp, kernel = node.type.shape[2:], w.shape[2:]
    cig, cog = x.shape[1] // groups, c_out // groups
    taps, pixels = math.prod(kernel), math.prod(out_sp)
    if _lower_row_conv(lw, node, x, w, out, epilogue, name):
        return
    nv, gv, i, j, k = fresh("n"), fresh("g"), fresh("i"), fresh("j"), fresh("k")
    # A(i = output channel in the group, k = (input channel, tap)) = w[g*cog + i, k]
    a_expr = w.at(unflatten(iadd(imul(iadd(imul(Var(gv), cog), Var(i)), cig * taps),
                                 Var(k)), w.shape))
    # B(k, j = output pixel) = x at the pixel's window tap
    c, tap = ifloordiv(Var(k), taps), imod(Var(k), taps)
    t_index = unflatten(tap, kernel)
    o_index = unflatten(Var(j), out_sp)
    channel = iadd(imul(Var(gv), cig), c)
    table = _window_table(x.shape[2:], out_sp, kernel, stride, padding, dilation)
    if x.buf is not None and x.buf.shape == x.shape and table.nbytes <= WINDOW_TABLE_BYTES:
        b_expr = _tabled_window_source(x.buf, lw.constant(f"{name or 'conv'}.windows", table),
                                       Var(nv), channel, tap, Var(j), pixels)
    else:
        positions = [iadd(imul(o, s), imul(t, d), -p) for o, t, s, d, p in
                     zip(o_index, t_index, stride, dilation, padding)]
        b_expr = _window_source(x, Var(nv), channel, positions)
    index = [Var(nv), iadd(imul(Var(gv), cog), Var(i))] + o_index
    shape = node.type.shape
    g = Gemm(name or lw.kernel_name(node), node.type.dtype, cog, pixels, cig * taps,
             [(nv, n_batch), (gv, groups)], a_expr, b_expr,
             epilogue(index, Ref(ACC, node.type.dtype)), out, flat_index(index, shape),
             i, j, k)
    _emit_gemm(lw, g)


@_kernel("conv_transpose")
def lower_conv_transpose(lw: Lowering, node: Node, views: list, out,
                         epilogue: Epilogue = _plain, name: str | None = None) -> None:
    x, w = views
    groups = node.attrs["groups"]
    stride, padding, dilation = (node.attrs[k] for k in ("stride", "padding", "dilation"))
    n_batch, c_out = node.type.shape[:2]
    out_sp, in_sp, kernel = node.type.shape[2:], x.shape[2:], w.shape[2:]
    cig, cog = x.shape[1] // groups, c_out // groups
    taps, pixels = math.prod(kernel), math.prod(out_sp)
    nv, gv, i, j, k = fresh("n"), fresh("g"), fresh("i"), fresh("j"), fresh("k")
    c, tap = ifloordiv(Var(k), taps), imod(Var(k), taps)
    # A(i = output channel in the group, k = (input channel, tap)) = w[g*cig + c, i, tap]
    a_expr = w.at([iadd(imul(Var(gv), cig), c), Var(i)] + unflatten(tap, kernel))
    # B(k, j): x at the input pixel whose tap lands on output pixel j: o = in*s - p + t*d
    t_index = unflatten(tap, kernel)
    o_index = unflatten(Var(j), out_sp)
    inside, src = None, []
    for o, t, s, d, p, size in zip(o_index, t_index, stride, dilation, padding, in_sp):
        num = iadd(o, p, imul(t, -d))
        q = ifloordiv(num, s)
        ok = op("and", cmp("ge", num, Const(0)), cmp("eq", imod(num, s), Const(0)))
        ok = op("and", ok, cmp("lt", q, Const(size)))
        inside = ok if inside is None else op("and", inside, ok)
        src.append(imax(imin(q, size - 1), 0))
    value = x.at([Var(nv), iadd(imul(Var(gv), cig), c)] + src)
    b_expr = select(inside, value, const(0, x.dtype))
    index = [Var(nv), iadd(imul(Var(gv), cog), Var(i))] + o_index
    g = Gemm(name or lw.kernel_name(node), node.type.dtype, cog, pixels, cig * taps,
             [(nv, n_batch), (gv, groups)], a_expr, b_expr,
             epilogue(index, Ref(ACC, node.type.dtype)), out,
             flat_index(index, node.type.shape), i, j, k)
    _emit_gemm(lw, g)


@_kernel("conv_weight_grad")
def lower_conv_weight_grad(lw: Lowering, node: Node, views: list, out,
                           epilogue: Epilogue = _plain, name: str | None = None) -> None:
    x, gr = views
    groups = node.attrs["groups"]
    stride, padding, dilation = (node.attrs[k] for k in ("stride", "padding", "dilation"))
    kernel = node.attrs["kernel"]
    n_batch, c_out = gr.shape[:2]
    out_sp = gr.shape[2:]
    cig, cog = x.shape[1] // groups, c_out // groups
    taps, pixels = math.prod(kernel), math.prod(out_sp)
    gv, i, j, k = fresh("g"), fresh("i"), fresh("j"), fresh("k")
    # dw[g*cog + i, c, tap] = sum over (n, pixel) of g[n, g*cog + i, pixel] * x window
    n_of_k, p_of_k = ifloordiv(Var(k), pixels), imod(Var(k), pixels)
    o_index = unflatten(p_of_k, out_sp)
    a_expr = gr.at([n_of_k, iadd(imul(Var(gv), cog), Var(i))] + o_index)
    c, tap = ifloordiv(Var(j), taps), imod(Var(j), taps)
    t_index = unflatten(tap, kernel)
    positions = [iadd(imul(o, s), imul(t, d), -p) for o, t, s, d, p in
                 zip(o_index, t_index, stride, dilation, padding)]
    b_expr = _window_source(x, n_of_k, iadd(imul(Var(gv), cig), c), positions)
    index = [iadd(imul(Var(gv), cog), Var(i)), c] + t_index
    g = Gemm(name or lw.kernel_name(node), node.type.dtype, cog, cig * taps,
             n_batch * pixels, [(gv, groups)], a_expr, b_expr,
             epilogue(index, Ref(ACC, node.type.dtype)), out,
             flat_index(index, node.type.shape), i, j, k)
    _emit_gemm(lw, g)


# -- pools -------------------------------------------------------------------------------------
def _pool_geometry(attrs: dict, nsp: int):
    dilation = attrs.get("dilation", (1,) * nsp)
    return attrs["kernel"], attrs["stride"], attrs["padding"], dilation


def _taps(kernel) -> tuple[list, list]:
    loops = [(fresh("t"), kk) for kk in kernel]
    return loops, [Var(v) if kk > 1 else Const(0) for v, kk in loops]


def _window(x: View, index: list, tap_index: list, kernel, stride, padding, dilation):
    """(positions, inside) of one tap of the window of output index."""
    positions, inside = [], None
    for o, t, s, p, d, size in zip(index[2:], tap_index, stride, padding, dilation,
                                   x.shape[2:]):
        pos = iadd(imul(o, s), imul(t, d), -p)
        ok = op("and", cmp("ge", pos, Const(0)), cmp("lt", pos, Const(size)))
        inside = ok if inside is None else op("and", inside, ok)
        positions.append(pos)
    return positions, inside


def _windows_within(in_sizes, out_sizes, kernel, stride, padding, dilation) -> bool:
    """Whether every window of every output lies inside the input (no padding reached):
    then a tap needs neither a bounds test nor a clamp."""
    return all(p == 0 and (o - 1) * s + (k - 1) * d <= n - 1
               for n, o, k, s, p, d in zip(in_sizes, out_sizes, kernel, stride, padding,
                                           dilation))


def _clamped(positions, shape) -> list:
    return [imax(imin(p, size - 1), 0) for p, size in zip(positions, shape)]


@_kernel("max_pool")
def _max_pool(lw, node, views, out):
    (x,) = views
    kernel, stride, padding, dilation = _pool_geometry(node.attrs, x.ndim - 2)
    dtype = x.dtype

    within = _windows_within(x.shape[2:], node.type.shape[2:], kernel, stride, padding,
                             dilation)

    def element(index):
        loops, t_index = _taps(kernel)
        pos, inside = _window(x, index, t_index, kernel, stride, padding, dilation)
        if within:  # plain affine loads: a stride-2 window is two vectors and a shuffle
            value = x.at(index[:2] + pos)
        else:
            value = select(inside, x.at(index[:2] + _clamped(pos, x.shape[2:])),
                           const(-math.inf, dtype))
        acc = fresh("acc")
        return [Reduce(acc, "max", [lp for lp in loops if lp[1] > 1], value, dtype)], \
            Ref(acc, dtype)

    lw.emit(reduction_kernel(lw.kernel_name(node), out, node.type.shape, element,
                             out.size * math.prod(kernel), lw.threads))


def _avg_divisor(index, in_sizes, attrs, dtype) -> Expr:
    """torch's divisor of the window at output index (an int64 expression, cast)."""
    total = None
    for o, size, k, s, p in zip(index[2:], in_sizes, attrs["kernel"], attrs["stride"],
                                attrs["padding"]):
        start = iadd(imul(o, s), -p)
        end = imin(iadd(start, k), size + p)
        if not attrs["count_include_pad"]:
            start, end = imax(start, 0), imin(end, size)
        count = imax(isub(end, start), 1)
        total = count if total is None else op("mul", total, count)
    return cast(total, dtype)


@_kernel("avg_pool")
def _avg_pool(lw, node, views, out):
    (x,) = views
    kernel, stride, padding, _ = _pool_geometry(node.attrs, x.ndim - 2)
    ones = (1,) * len(kernel)
    dtype = x.dtype

    def element(index):
        loops, t_index = _taps(kernel)
        pos, inside = _window(x, index, t_index, kernel, stride, padding, ones)
        value = select(inside, x.at(index[:2] + _clamped(pos, x.shape[2:])), const(0, dtype))
        acc = fresh("acc")
        total = Ref(acc, dtype)
        return [Reduce(acc, "sum", [lp for lp in loops if lp[1] > 1], value, dtype)], \
            op("div", total, _avg_divisor(index, x.shape[2:], node.attrs, dtype))

    lw.emit(reduction_kernel(lw.kernel_name(node), out, node.type.shape, element,
                             out.size * math.prod(kernel), lw.threads))


def _adaptive_bounds(o: Expr, size: int, out: int) -> tuple[Expr, Expr]:
    """torch's window [floor(o*size/out), ceil((o+1)*size/out))."""
    start = ifloordiv(imul(o, size), out)
    end = isub(0, ifloordiv(imul(iadd(o, 1), -size), out))
    return start, end


@_kernel("adaptive_avg_pool")
def _adaptive_avg_pool(lw, node, views, out):
    (x,) = views
    sizes, outs = x.shape[2:], node.attrs["output_size"]
    longest = [-(-s // o) + 1 for s, o in zip(sizes, outs)]
    dtype = x.dtype

    def element(index):
        loops, t_index = _taps(longest)
        inside, pos, count = None, [], None
        for o, t, size, n in zip(index[2:], t_index, sizes, outs):
            start, end = _adaptive_bounds(o, size, n)
            p = iadd(start, t)
            ok = cmp("lt", p, end)
            inside = ok if inside is None else op("and", inside, ok)
            pos.append(imin(p, size - 1))
            width = isub(end, start)
            count = width if count is None else op("mul", count, width)
        value = select(inside, x.at(index[:2] + pos), const(0, dtype))
        acc = fresh("acc")
        return [Reduce(acc, "sum", [lp for lp in loops if lp[1] > 1], value, dtype)], \
            op("div", Ref(acc, dtype), cast(count, dtype))

    lw.emit(reduction_kernel(lw.kernel_name(node), out, node.type.shape, element,
                             out.size * math.prod(longest), lw.threads))


@_kernel("max_pool_argmax")
def _max_pool_argmax(lw, node, views, out):
    (x,) = views
    kernel, stride, padding, dilation = _pool_geometry(node.attrs, x.ndim - 2)
    in_sp = x.shape[2:]

    def element(index):
        loops, t_index = _taps(kernel)
        pos, inside = _window(x, index, t_index, kernel, stride, padding, dilation)
        value = x.at(index[:2] + _clamped(pos, in_sp))
        acc = fresh("acc")
        red = Reduce(acc, "pool_argmax", loops, value, INDEX)
        red.index, red.valid = flat_index(pos, in_sp), inside
        return [red], Ref(acc, INDEX)

    lw.emit(reduction_kernel(lw.kernel_name(node), out, node.type.shape, element,
                             out.size * math.prod(kernel), lw.threads))


@_kernel("avg_pool_grad")
def _avg_pool_grad(lw, node, views, out):
    (g,) = views
    attrs = node.attrs
    kernel, stride, padding = attrs["kernel"], attrs["stride"], attrs["padding"]
    in_sp, out_sp = node.type.shape[2:], g.shape[2:]
    dtype = g.dtype

    def element(index):
        # input position i gets g[o] / divisor(o) from every (o, tap) with o*s - p + t = i
        loops, t_index = _taps(kernel)
        inside, o_index = None, []
        for i, t, s, p, n in zip(index[2:], t_index, stride, padding, out_sp):
            num = iadd(i, p, imul(t, -1))
            q = ifloordiv(num, s)
            ok = op("and", cmp("ge", num, Const(0)), cmp("eq", imod(num, s), Const(0)))
            ok = op("and", ok, cmp("lt", q, Const(n)))
            inside = ok if inside is None else op("and", inside, ok)
            o_index.append(imax(imin(q, n - 1), 0))
        full = index[:2] + o_index
        share = op("div", g.at(full), _avg_divisor(full, in_sp, attrs, dtype))
        acc = fresh("acc")
        return [Reduce(acc, "sum", [lp for lp in loops if lp[1] > 1],
                       select(inside, share, const(0, dtype)), dtype)], Ref(acc, dtype)

    lw.emit(reduction_kernel(lw.kernel_name(node), out, node.type.shape, element,
                             out.size * math.prod(kernel), lw.threads))


@_kernel("adaptive_avg_pool_grad")
def _adaptive_avg_pool_grad(lw, node, views, out):
    (g,) = views
    in_sp, out_sp = node.type.shape[2:], g.shape[2:]
    dtype = g.dtype
    # windows covering one input position: at most ceil(out / size) + 1 consecutive ones
    spans = [-(-n // s) + 2 for s, n in zip(in_sp, out_sp)]

    def element(index):
        loops, t_index = _taps(spans)
        inside, o_index, count = None, [], None
        for i, t, size, n in zip(index[2:], t_index, in_sp, out_sp):
            first = isub(ifloordiv(imul(i, n), size), 1)
            o = iadd(first, t)
            start, end = _adaptive_bounds(o, size, n)
            ok = op("and", cmp("ge", o, Const(0)), cmp("lt", o, Const(n)))
            ok = op("and", ok, op("and", cmp("le", start, i), cmp("lt", i, end)))
            inside = ok if inside is None else op("and", inside, ok)
            o_index.append(imax(imin(o, n - 1), 0))
            width = isub(end, start)
            count = width if count is None else op("mul", count, width)
        share = op("div", g.at(index[:2] + o_index), cast(count, dtype))
        acc = fresh("acc")
        return [Reduce(acc, "sum", [lp for lp in loops if lp[1] > 1],
                       select(inside, share, const(0, dtype)), dtype)], Ref(acc, dtype)

    lw.emit(reduction_kernel(lw.kernel_name(node), out, node.type.shape, element,
                             out.size * math.prod(spans), lw.threads))

