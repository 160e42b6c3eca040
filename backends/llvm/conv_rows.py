"""Convolutions computed an output row at a time, reading the input rows in place.

For a convolution whose last spatial axis has stride 1, the elements one tap reads for
consecutive outputs along that axis are consecutive in memory. So an output row (fixed
sample, group and leading output position) is a small GEMM whose B operand needs no
packing: out[i, ow] = sum_k w[i, k] * x_row(k)[ow], where k = (input channel, tap) and
x_row(k) is the input row that tap reads, shifted by the tap's column. The micro-kernel
keeps an MR x NRV-vector tile of accumulators in registers and per k makes NRV masked
vector loads of the shifted row (the mask is the padding: columns outside the input, rows
outside it) and MR broadcasts of the weights. Per-k offsets come from small tables made at
lowering time, so the K loop does no division.

Against the implicit GEMM (gemm.py, which packs an im2col panel per work item), this wins
when the output channels are few: packing costs as much as the products there (LeNet's
5x5 convolutions with 6 and 16 channels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import llvmlite.ir as ir
import numpy as np

from backends.llvm.gemm import (ACC, VECTOR_BYTES, Gemm, _bind_batch, _min, _store_edge,
                                rank1_update, tile_loop_head)
from backends.llvm.irutil import I1, I32, I64, IR, ITEMSIZE, SCALAR
from backends.llvm.loops import Buffer, Kernel, Let, Load, Store, Var

# accumulator rows per tile for 1..4 vectors of columns (MR * NRV + NRV <= 32 registers)
ROWS_FOR_VECTORS = {1: 28, 2: 14, 3: 8, 4: 6}


@dataclass
class RowConv:
    """out[n, g*cog + i, *o_lead, ow] = value(acc = sum_k w[g*cog + i, k] x_k[ow + shift])."""
    name: str
    dtype: str
    x: Buffer              # [N, C, *in_sp], contiguous
    w: Buffer              # [C_out, cig, *kernel], contiguous
    out_lead: tuple        # leading output spatial sizes (all but the last axis)
    out_width: int
    groups: int
    cog: int
    cig: int
    offsets: Buffer        # per k: channel plane + tap rows + tap column offset in x
    rows: list             # per leading axis: per k, the tap's row displacement
    cols: Buffer           # per k: the tap's column displacement (kw * dilation)
    stride: tuple
    padding: tuple
    in_sp: tuple
    gemm: Gemm             # the epilogue and output indexing, as a GEMM over (i, ow)
    origin: str = ""


def row_conv_applies(x_shape, kernel, stride, dtype: str) -> bool:
    """Stride 1 along the last axis and rows wide enough to fill half a vector."""
    width = VECTOR_BYTES // ITEMSIZE[dtype]
    out_last = x_shape[-1]
    return dtype in ("float32", "float64") and stride[-1] == 1 and out_last >= width // 2


def tap_tables(cig: int, kernel, dilation, in_sp) -> tuple[np.ndarray, list, np.ndarray]:
    """(offset[k], [row displacement per leading axis][k], column displacement[k]) for
    k = (input channel, tap) in row-major order."""
    taps = list(np.ndindex(*kernel))
    plane = math.prod(in_sp)
    strides = [math.prod(in_sp[a + 1:]) for a in range(len(in_sp))]
    offsets, cols = [], []
    rows = [[] for _ in kernel[:-1]]
    for c in range(cig):
        for tap in taps:
            disp = [t * d for t, d in zip(tap, dilation)]
            offsets.append(c * plane + sum(dd * s for dd, s in zip(disp, strides)))
            for a in range(len(kernel) - 1):
                rows[a].append(disp[a])
            cols.append(disp[-1])
    as32 = lambda v: np.asarray(v, dtype=np.int32)  # noqa: E731
    return as32(offsets), [as32(r) for r in rows], as32(cols)


def tile(cog: int, out_width: int, width: int) -> tuple[int, int]:
    """(MR, NRV): vectors enough for the row (at most 4), rows split evenly."""
    nrv = min(4, -(-out_width // width))
    most = ROWS_FOR_VECTORS[nrv]
    mr = -(-cog // -(-cog // most))
    return mr, nrv


def row_conv_kernel(c: RowConv, threads: int) -> Kernel:
    width = VECTOR_BYTES // ITEMSIZE[c.dtype]
    mr, nrv = tile(c.cog, c.out_width, width)
    items = c.x.shape[0] * c.groups * math.prod(c.out_lead)
    k = Kernel(c.name, [], c.origin)
    g = c.gemm
    k.extra.update(emit=lambda m, ev, err, lo, hi, tid, exit_block:
                   _emit(c, mr, nrv, width, m, ev, lo, hi),
                   parallel_extent=items, grain=1, parallel=items > 1,
                   buffers=[c.x, c.w, c.offsets, c.cols] + c.rows + _loads(g) + [g.out],
                   identity=([Let(g.ivar, Var(g.ivar)), Let(g.jvar, Var(g.jvar))] +
                             [Let(v, Var(v)) for v, _ in g.batch] +
                             [Store(g.out, g.out_index, g.value)],
                             ("rowconv", c.dtype, tuple(c.x.shape), tuple(c.w.shape),
                              c.out_lead, c.out_width, c.groups, c.stride, c.padding,
                              mr, nrv)))
    return k


def _loads(g: Gemm) -> list[Buffer]:
    from backends.llvm.loops import body_exprs
    found = []
    for e in body_exprs([Store(g.out, g.out_index, g.value)]):
        if isinstance(e, Load) and e.buf not in found:
            found.append(e.buf)
    return found


def _emit(c: RowConv, mr: int, nrv: int, width: int, m: IR, ev, lo, hi) -> None:
    b = m.b
    g = c.gemm
    t = SCALAR[c.dtype]
    K = c.cig * math.prod(c.w.shape[2:])
    tile_mem = m.stack_array(t, mr * nrv * width, name="edge")
    p = dict(mr=mr, nr=nrv * width, width=width)
    with m.loop(lo, hi, name="row") as item:
        ev.push()
        _bind_batch(g, b, ev, item)
        n, grp = ev.vars[g.batch[0][0]], ev.vars[g.batch[1][0]]
        lead = [ev.vars[v] for v, _ in g.batch[2:]]
        # x at (n, first channel of the group, the row's first tap position, column -pad)
        x_base = b.mul(b.add(b.mul(n, I64(c.x.shape[1])), b.mul(grp, I64(c.cig))),
                       I64(math.prod(c.in_sp)))
        starts = [b.sub(b.mul(o, I64(s)), I64(p_)) for o, s, p_ in
                  zip(lead, c.stride, c.padding)]
        for a, start in enumerate(starts):
            x_base = b.add(x_base, b.mul(start, I64(math.prod(c.in_sp[a + 1:]))))
        x_base = b.sub(x_base, I64(c.padding[-1]))
        w_base = b.mul(b.mul(grp, I64(c.cog)), I64(K))
        with m.loop(I64(0), I64(c.cog), mr, name="ct") as i0:
            with m.loop(I64(0), I64(c.out_width), nrv * width, name="cj") as j0:
                accs = _micro(c, mr, nrv, width, K, m, ev, x_base, w_base, starts, i0, j0)
                if _masked_store_safe(g):
                    _store_masked(c, mr, nrv, width, m, ev, accs, i0, j0)
                else:
                    _store_edge(g, p, m, ev, accs, i0, j0, tile_mem)
        ev.pop()


def _masked_store_safe(g: Gemm) -> bool:
    """Whether the epilogue reads nothing along the row (a bias is per channel): then a
    row's tail is one masked vector store, with no load past the row's end."""
    from backends.llvm.loops import body_exprs
    return not any(isinstance(e, Load) and g.jvar in e.index.vars
                   for e in body_exprs([Let("v", g.value)]))


def _store_masked(c: RowConv, mr, nrv, width, m: IR, ev, accs, i0, j0) -> None:
    b = m.b
    g = c.gemm
    t = SCALAR[c.dtype]
    lanes = m.iota(I64, width)
    saved = (ev.vector_var, ev.lanes)
    for r, row in enumerate(accs):
        def store_row(r=r, row=row):
            for v, acc in enumerate(row):
                col = b.add(j0, I64(v * width))
                ok = b.icmp_signed("<", b.add(m.splat(col, width), lanes),
                                   m.const(ir.VectorType(I64, width), c.out_width))
                ev.push()
                ev.vars[g.ivar] = b.add(i0, I64(r))
                ev.vars[g.jvar] = col
                ev.vector_var, ev.lanes = g.jvar, width
                ev.refs[ACC] = acc
                value = m.splat(ev(g.value), width)
                addr = ev.address(g.out, ev(g.out_index, base=True))
                ev.vector_var, ev.lanes = saved
                ev.pop()
                m.intrinsic("masked.store", ir.VoidType(),
                            [value, addr, I32(ITEMSIZE[c.dtype]), ok],
                            overload=[value.type, addr.type])
        if c.cog % mr:
            with m.if_then(b.icmp_signed("<", b.add(i0, I64(r)), I64(c.cog))):
                store_row()
        else:
            store_row()


def _micro(c: RowConv, mr, nrv, width, K, m: IR, ev, x_base, w_base, starts, i0, j0):
    """The MR x NRV-vector tile's accumulators after the K loop."""
    b = m.b
    t = SCALAR[c.dtype]
    vt = ir.VectorType(t, width)
    zero = m.const(vt, 0.0)
    lanes = m.iota(I64, width)
    ptrs = ev.ptrs
    w_rows = [b.mul(_min(b, b.add(i0, I64(r)), I64(c.cog - 1)), I64(K)) for r in range(mr)]
    k, accs, head, done = tile_loop_head(m, vt, mr, nrv, K, "rc", may_skip=False)  # K >= 1

    def table(buf: Buffer):
        v = b.load(b.gep(ptrs[buf], [k], source_etype=I32), typ=I32)
        return b.sext(v, I64)

    row_ok = ir.Constant(I1, 1)
    for a, (start, rows) in enumerate(zip(starts, c.rows)):
        pos = b.add(start, table(rows))
        inside = b.and_(b.icmp_signed(">=", pos, I64(0)),
                        b.icmp_signed("<", pos, I64(c.in_sp[a])))
        row_ok = b.and_(row_ok, inside)
    col = b.add(b.sub(j0, I64(c.padding[-1])), table(c.cols))
    base = b.add(b.add(x_base, table(c.offsets)), j0)
    bvec = []
    for v in range(nrv):
        pos = b.add(m.splat(b.add(col, I64(v * width)), width), lanes)
        ok = b.and_(b.icmp_signed(">=", pos, m.const(pos.type, 0)),
                    b.icmp_signed("<", pos, m.const(pos.type, c.in_sp[-1])))
        ok = b.and_(ok, m.splat(row_ok, width))
        addr = b.gep(ptrs[c.x], [b.add(base, I64(v * width))], source_etype=t)
        bvec.append(m.intrinsic("masked.load", vt, [addr, I32(ITEMSIZE[c.dtype]), ok, zero],
                                overload=[vt, addr.type]))
    a_values = [b.load(b.gep(ptrs[c.w], [b.add(b.add(w_base, w_rows[r]), k)], source_etype=t),
                       typ=t) for r in range(mr)]
    new, _ = rank1_update(m, k, K, accs, a_values, bvec, head, done)
    return new
