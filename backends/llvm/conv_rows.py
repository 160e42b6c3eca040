"""Convolutions computed a few output rows at a time, reading the input rows in place.

For a convolution whose last spatial axis has stride 1, the elements one tap reads for
consecutive outputs along that axis are consecutive in memory. So an output row (fixed
sample, group and leading output position) is a small GEMM whose B operand needs no
packing: out[i, ow] = sum_k w[i, k] * x_row(k)[ow], where k = (input channel, tap) and
x_row(k) is the input row that tap reads, shifted by the tap's column.

A register tile (RowTile) is MR output channels x U vectors holding T consecutive output
rows (same sample and leading positions), laid out one of two ways:
- "rows": each row starts a vector and takes NRV of them (long rows; a row longer than
  NRV vectors takes several tiles);
- "flat": rows back to back, as they lie in the output, so that short rows fill the lanes
  (rows of 8 floats: two a vector; rows of 10: 1.6 a vector).
A segment is the part of one row inside one vector. An iteration of the K loop is an input
channel and a tap position along the leading axes; its taps along the row are unrolled, so
that each (segment, tap) has a mask made before the loop: the segment's lanes, less the
columns that tap reads in the padding. Per tap the micro-kernel makes one masked load per
segment, at a lane offset so that it fills the segment's own lanes of its vector, MR
broadcasts of the weights and MR*U vector FMAs. Rows in the padding along the leading axes
are masked off too, but only in the tiles at the border: the others run a loop without
those tests. Per-iteration offsets come from small tables made at lowering time, so the
loop does no division. The layout, T and MR are chosen by a cost model among the tiles
whose accumulators and B vectors fit the vector registers; a work item is one tile.

Against the implicit GEMM (gemm.py, which packs an im2col panel per work item), this wins
when the output channels are few: packing costs as much as the products there (LeNet's
5x5 convolutions with 6 and 16 channels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import llvmlite.ir as ir
import numpy as np

from backends.llvm.gemm import ACC, VECTOR_BYTES, Gemm, _min, close_k_loop, tile_loop_head
from backends.llvm.irutil import I1, I32, I64, IR, ITEMSIZE, SCALAR
from backends.llvm.loops import Buffer, Kernel, Let, Load, Store, Var, body_exprs

# vector registers: the accumulators, the B vectors of a tap and one more per segment (the
# next tap's loads, which the unrolled loop starts early); a tile that needs more spills
REGISTERS = 32
MAX_PACK = 4     # "flat" rows are at least 1/MAX_PACK of a vector: few loads per vector
MAX_VECTORS = 4  # vectors a "rows" tile gives a row; longer rows take several tiles
MAX_TAPS = 16    # taps along the row, each unrolled in the K loop
# The cost model, in cycles of one core (measured on AVX-512 with a 512-bit FMA a cycle): a
# masked vector load takes two, a plain one one, a broadcast half of one; a mask beyond
# the mask registers takes a move; per K iteration the tables and counter take K_STEP, per
# tile its setup TILE_STEP and each masked store STORE.
FMA, MASKED_LOAD, PLAIN_LOAD, BROADCAST, MASK_MOVE = 1.0, 2.0, 1.0, 0.5, 1.0
MASK_REGISTERS, K_STEP, TILE_STEP, STORE = 7, 4.0, 20.0, 2.0
OUTSIDE = 1 << 40  # a lane's column offset outside its segment: fails every bounds test


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
    dilation: tuple        # per spatial axis: the spacing of the taps
    stride: tuple
    padding: tuple
    in_sp: tuple
    gemm: Gemm             # the epilogue and output indexing, as a GEMM over (i, ow)
    origin: str = ""


class Segment(NamedTuple):
    """Row `row` of the tile, columns from j0 + col on, in lanes [lane, lane + count) of
    vector `vector` (j0: the tile's first column)."""
    vector: int
    lane: int
    count: int
    row: int
    col: int


@dataclass(frozen=True)
class RowTile:
    """mr output channels x `vectors` vectors holding `rows` output rows of `cols` columns
    each (the row's width, or, for the "rows" layout, NRV vectors of it)."""
    layout: str
    mr: int
    rows: int
    cols: int
    width: int
    segments: tuple
    tail: bool  # the "rows" layout's last tile of a row ends inside a vector

    @property
    def vectors(self) -> int:
        """B vectors per tap (U)."""
        return 1 + max(s.vector for s in self.segments)

    def plan(self) -> dict:
        """What tests and reports read of the tile."""
        return dict(layout=self.layout, mr=self.mr, rows=self.rows, cols=self.cols,
                    width=self.width, vectors=self.vectors, loads=len(self.segments))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def rows_layout(rows: int, nrv: int, width: int) -> tuple:
    """Each row in NRV whole vectors of its own."""
    return tuple(Segment(q * nrv + v, 0, width, q, v * width)
                 for q in range(rows) for v in range(nrv))


def flat_layout(rows: int, out_width: int, width: int) -> tuple:
    """The rows back to back, each split where it crosses into the next vector."""
    segments = []
    for q in range(rows):
        start, end = q * out_width, (q + 1) * out_width
        while start < end:
            lane = start % width
            count = min(width - lane, end - start)
            segments.append(Segment(start // width, lane, count, q, start - q * out_width))
            start += count
    return tuple(segments)


def _flat_fits(out_width: int, width: int) -> bool:
    return MAX_PACK * out_width >= width


def row_conv_applies(out_shape, kernel, stride, dtype: str) -> bool:
    """Stride 1 along the last axis, at most MAX_TAPS taps along it, and a vector's rows
    fill at least half of it (short rows are laid back to back, at most MAX_PACK a
    vector)."""
    if dtype not in ("float32", "float64") or stride[-1] != 1 or kernel[-1] > MAX_TAPS or \
            math.prod(out_shape) == 0:
        return False
    width = VECTOR_BYTES // ITEMSIZE[dtype]
    out_width, lead = out_shape[-1], out_shape[2:-1]
    rows = min(MAX_PACK, lead[-1]) if lead and _flat_fits(out_width, width) else 1
    return 2 * out_width * rows >= width


def tap_tables(cig: int, kernel, dilation, in_sp) -> tuple[np.ndarray, list]:
    """(offset[k], [row displacement per leading axis][k]) for k = (input channel, tap) in
    row-major order."""
    taps = list(np.ndindex(*kernel))
    plane = math.prod(in_sp)
    strides = [math.prod(in_sp[a + 1:]) for a in range(len(in_sp))]
    offsets = []
    rows = [[] for _ in kernel[:-1]]
    for c in range(cig):
        for tap in taps:
            disp = [t * d for t, d in zip(tap, dilation)]
            offsets.append(c * plane + sum(dd * s for dd, s in zip(disp, strides)))
            for a in range(len(kernel) - 1):
                rows[a].append(disp[a])
    as32 = lambda v: np.asarray(v, dtype=np.int32)  # noqa: E731
    return as32(offsets), [as32(r) for r in rows]


# -- the tile ------------------------------------------------------------------------------------
def _row_count(c: RowConv) -> int:
    """Output rows along the last leading axis (1 for a 1-D convolution)."""
    return c.out_lead[-1] if c.out_lead else 1


def tiles(c: RowConv) -> Iterator[RowTile]:
    """Every tile for c: each layout and row count that leaves room for accumulators,
    with each channel count that fits the registers."""
    width = VECTOR_BYTES // ITEMSIZE[c.dtype]
    W = c.out_width
    nrv = min(MAX_VECTORS, _cdiv(W, width))
    for rows in range(1, _row_count(c) + 1):
        shapes = []
        if rows * nrv < REGISTERS:
            shapes.append(("rows", nrv * width, rows_layout(rows, nrv, width),
                           W % (nrv * width) != 0))
        if _flat_fits(W, width) and _cdiv(rows * W, width) < REGISTERS:
            shapes.append(("flat", W, flat_layout(rows, W, width), False))
        for layout, cols, segments, tail in shapes:
            vectors = 1 + max(s.vector for s in segments)
            for mr in range(1, min(c.cog, (REGISTERS - vectors - len(segments)) // vectors)
                            + 1):
                yield RowTile(layout, mr, rows, cols, width, segments, tail)


def choose_tile(c: RowConv, threads: int) -> RowTile:
    """The tile of least modelled time (ties: fewer loads, then the "rows" layout)."""
    return min(tiles(c), key=lambda t: (_modelled_time(c, t, threads), len(t.segments),
                                        t.layout != "rows"))


def _modelled_time(c: RowConv, t: RowTile, threads: int) -> float:
    """Per tap along the row a tile issues its FMAs and, beside them, its loads; padded
    channels and rows count as work; the work items are shared between the threads."""
    taps = c.w.shape[-1]
    segments = len(t.segments)
    plain = t.layout == "rows" and not t.tail and not c.padding[-1]
    masks = segments * (taps if c.padding[-1] else 1)
    loads = segments * (PLAIN_LOAD if plain else MASKED_LOAD) + t.mr * BROADCAST + \
        (segments * MASK_MOVE if masks > MASK_REGISTERS else 0.0)
    per_tap = max(FMA * t.mr * t.vectors, loads) + K_STEP / taps
    per_tile = _k_count(c) * per_tap + STORE * t.mr * segments + TILE_STEP
    return _cdiv(_items(c, t), threads) * _cdiv(c.out_width, t.cols) * per_tile


def _items(c: RowConv, t: RowTile) -> int:
    """Work items: (sample, group, outer leading positions, block of t.rows rows, tile of
    t.mr channels), the channels innermost (neighbours read the same input rows)."""
    outer = math.prod(c.out_lead[:-1]) if c.out_lead else 1
    return c.x.shape[0] * c.groups * outer * _cdiv(_row_count(c), t.rows) * \
        _cdiv(c.cog, t.mr)


def row_conv_kernel(c: RowConv, threads: int) -> Kernel:
    """A kernel running the row convolution; its parallel range is the work items. Its
    `conv_plan` entry records the tile (RowTile.plan), the work items and how the results
    are stored (a masked vector store per segment, or element stores)."""
    t = choose_tile(c, threads)
    items = _items(c, t)
    k = Kernel(c.name, [], c.origin)
    g = c.gemm
    k.extra.update(emit=lambda m, ev, err, lo, hi, tid, exit_block: _emit(c, t, m, ev, lo, hi),
                   parallel_extent=items, grain=1, parallel=items > 1,
                   buffers=[c.x, c.w, c.offsets] + c.rows + _loads(g) + [g.out],
                   identity=([Let(g.ivar, Var(g.ivar)), Let(g.jvar, Var(g.jvar))] +
                             [Let(v, Var(v)) for v, _ in g.batch] +
                             [Store(g.out, g.out_index, g.value)],
                             ("rowconv", c.dtype, tuple(c.x.shape), tuple(c.w.shape),
                              c.out_lead, c.out_width, c.groups, c.stride, c.padding,
                              c.dilation, t.layout, t.mr, t.rows, t.cols)))
    stores = "vectors" if _masked_store_safe(g) else "elements"
    k.extra["conv_plan"] = dict(t.plan(), items=items, stores=stores)
    return k


def _loads(g: Gemm) -> list[Buffer]:
    found = []
    for e in body_exprs([Store(g.out, g.out_index, g.value)]):
        if isinstance(e, Load) and e.buf not in found:
            found.append(e.buf)
    return found


# -- code ----------------------------------------------------------------------------------------
def _emit(c: RowConv, t: RowTile, m: IR, ev, lo, hi) -> None:
    b = m.b
    g = c.gemm
    safe = _masked_store_safe(g)
    spill = None if safe else m.stack_array(SCALAR[c.dtype], t.mr * t.vectors * t.width,
                                            name="edge")
    with m.loop(lo, hi, name="tile") as item:
        ev.push()
        oh0, i0 = _bind_item(c, t, b, ev, item)
        # a last block of fewer rows than the tile's ends at the last row instead: its
        # first rows are the previous block's, computed again and not stored
        first = _min(b, oh0, I64(_row_count(c) - t.rows)) if _row_count(c) % t.rows else oh0
        rows = (first, oh0)
        x_base, starts = _input_base(c, b, ev, first)
        w_base = b.mul(b.mul(ev.vars[g.batch[1][0]], I64(c.cog)), I64(_k_count(c)))

        def tile(j0):
            accs = _micro(c, t, m, ev, x_base, w_base, starts, i0, j0)
            if safe:
                _store_vectors(c, t, m, ev, accs, rows, i0, j0)
            else:
                _store_elements(c, t, m, ev, accs, rows, i0, j0, spill)
        if t.cols >= c.out_width:  # one tile spans the row: its masks are constants
            tile(I64(0))
        else:
            with m.loop(I64(0), I64(c.out_width), t.cols, name="cj") as j0:
                tile(j0)
        ev.pop()


def _k_count(c: RowConv) -> int:
    return c.cig * math.prod(c.w.shape[2:])


def _bind_item(c: RowConv, t: RowTile, b, ev, item):
    """Binds the batch variables but the last leading one from the work item; returns
    (the block's first output row along that axis, the tile's first channel)."""
    g = c.gemm
    channels = _cdiv(c.cog, t.mr)
    i0 = b.mul(b.srem(item, I64(channels)), I64(t.mr))
    rest, batch = b.sdiv(item, I64(channels)), g.batch
    if c.out_lead:
        blocks = _cdiv(_row_count(c), t.rows)
        block, rest = b.srem(rest, I64(blocks)), b.sdiv(rest, I64(blocks))
        batch = batch[:-1]
    for var, extent in reversed(batch):
        ev.vars[var] = b.srem(rest, I64(extent))
        rest = b.sdiv(rest, I64(extent))
    return (b.mul(block, I64(t.rows)) if c.out_lead else I64(0)), i0


def _input_base(c: RowConv, b, ev, oh0):
    """(offset in x of (n, the group's first channel, the tile's first row's first tap
    position, column -padding), per leading axis that first position)."""
    g = c.gemm
    n, grp = ev.vars[g.batch[0][0]], ev.vars[g.batch[1][0]]
    lead = [ev.vars[v] for v, _ in g.batch[2:-1]] + ([oh0] if c.out_lead else [])
    x_base = b.mul(b.add(b.mul(n, I64(c.x.shape[1])), b.mul(grp, I64(c.cig))),
                   I64(math.prod(c.in_sp)))
    starts = [b.sub(b.mul(o, I64(s)), I64(p)) for o, s, p in zip(lead, c.stride, c.padding)]
    for a, start in enumerate(starts):
        x_base = b.add(x_base, b.mul(start, I64(math.prod(c.in_sp[a + 1:]))))
    return b.sub(x_base, I64(c.padding[-1])), starts


def _row_new(c: RowConv, t: RowTile, b, rows, row: int):
    """Whether the tile's row is one of its block's, not the previous block's (rows:
    (the tile's first row, the block's)); None when every tile's rows are."""
    if _row_count(c) % t.rows == 0:
        return None
    first, block = rows
    return b.icmp_signed(">=", b.add(first, I64(row)), block)


def _columns(t: RowTile, s: Segment) -> ir.Constant:
    """Per lane of the segment's vector: its column past j0, or OUTSIDE for the lanes of
    other segments."""
    return ir.Constant(ir.VectorType(I64, t.width),
                       [I64(s.col + lane - s.lane if s.lane <= lane < s.lane + s.count
                            else OUTSIDE) for lane in range(t.width)])


def _output_mask(c: RowConv, t: RowTile, m: IR, s: Segment, j0):
    """The segment's lanes whose column is inside the output row."""
    b = m.b
    return b.icmp_unsigned("<", b.add(m.splat(j0, t.width), _columns(t, s)),
                           m.const(ir.VectorType(I64, t.width), c.out_width))


def _tap_mask(c: RowConv, t: RowTile, m: IR, s: Segment, shift: int, j0):
    """The segment's lanes whose output column is inside the row and whose input column,
    `shift` past the output column (the tap less the padding), is inside the input."""
    b = m.b
    cols = b.add(m.splat(j0, t.width), _columns(t, s))
    inside = b.icmp_unsigned("<", b.add(cols, m.const(cols.type, shift)),
                             m.const(cols.type, c.in_sp[-1]))
    return b.and_(inside, _output_mask(c, t, m, s, j0))


def _all(b, conditions: list):
    """The conjunction of the scalar conditions that are not None (None if all are)."""
    present = [x for x in conditions if x is not None]
    if not present:
        return None
    out = present[0]
    for x in present[1:]:
        out = b.and_(out, x)
    return out


def _micro(c: RowConv, t: RowTile, m: IR, ev, x_base, w_base, starts, i0, j0):
    """The tile's accumulators ([channel][vector]) after the K loop. An iteration is an
    input channel and a tap position along the leading axes; the taps along the row are
    unrolled, so each (segment, tap) load has a mask made before the loop. With padding
    along the leading axes, a tile whose taps all read inside the input (most of them)
    runs a loop without the per-row tests that the border tiles need."""
    b = m.b
    taps, dil = c.w.shape[-1], c.dilation[-1]
    K = _k_count(c)
    w_rows = [b.add(w_base, b.mul(_min(b, b.add(i0, I64(r)), I64(c.cog - 1)), I64(K)))
              for r in range(t.mr)]
    masks = [[_tap_mask(c, t, m, s, tap * dil - c.padding[-1], j0) for tap in range(taps)]
             for s in t.segments]
    loop = dict(x_base=b.add(x_base, j0), w_rows=w_rows, masks=masks, starts=starts)
    if not any(c.padding[:-1]):
        return _k_loop(c, t, m, ev, loop, checked=False)
    with b.if_else(_interior(c, t, b, ev, starts), likely=True) as (inside, border):
        with inside:
            fast = _k_loop(c, t, m, ev, loop, checked=False)
            fast_end = b.block
        with border:
            slow = _k_loop(c, t, m, ev, loop, checked=True)
            slow_end = b.block
    merged = []
    for fast_row, slow_row in zip(fast, slow):
        merged.append([])
        for x, y in zip(fast_row, slow_row):
            phi = b.phi(x.type)
            phi.add_incoming(x, fast_end)
            phi.add_incoming(y, slow_end)
            merged[-1].append(phi)
    return merged


def _interior(c: RowConv, t: RowTile, b, ev, starts):
    """Whether every tap of the tile's rows reads inside the input along the padded
    leading axes (the last k's tap is the farthest)."""
    last_k = I64(_k_count(c) - 1)
    ok = []
    for a, start in enumerate(starts):
        if not c.padding[a]:
            continue
        reach = b.sext(b.load(b.gep(ev.ptrs[c.rows[a]], [last_k], source_etype=I32), typ=I32),
                       I64)
        if a == len(starts) - 1:
            reach = b.add(reach, I64((t.rows - 1) * c.stride[a]))
        ok += [b.icmp_signed(">=", start, I64(0)),
               b.icmp_signed("<", b.add(start, reach), I64(c.in_sp[a]))]
    return _all(b, ok)


def _k_loop(c: RowConv, t: RowTile, m: IR, ev, loop: dict, checked: bool) -> list:
    """The K loop (see _micro); `checked`: loads of tap rows outside the input along the
    leading axes are masked off."""
    b = m.b
    st = SCALAR[c.dtype]
    vt = ir.VectorType(st, t.width)
    taps, dil = c.w.shape[-1], c.dilation[-1]
    count = _k_count(c) // taps
    kk, accs, head, done = tile_loop_head(m, vt, t.mr, t.vectors, count, "rc", may_skip=False)
    k = b.mul(kk, I64(taps))  # the first tap's index in the tables

    def table(buf: Buffer):
        return b.sext(b.load(b.gep(ev.ptrs[buf], [k], source_etype=I32), typ=I32), I64)

    base = b.add(loop["x_base"], table(c.offsets))
    step = c.stride[-2] * c.in_sp[-1] if c.out_lead else 0
    row_at = [b.add(base, I64(q * step)) for q in range(t.rows)]
    inside = _rows_inside(c, t, b, loop, table) if checked else [None] * t.rows
    new = accs
    for tap in range(taps):
        bvec = [m.const(vt, 0.0)] * t.vectors
        for s, mask in zip(t.segments, loop["masks"]):
            at = b.add(row_at[s.row], I64(s.col - s.lane + tap * dil))
            addr = b.gep(ev.ptrs[c.x], [at], source_etype=st)
            bvec[s.vector] = m.intrinsic(
                "masked.load", vt, [addr, I32(ITEMSIZE[c.dtype]),
                                    _only_if(m, inside[s.row], mask[tap]), bvec[s.vector]],
                overload=[vt, addr.type])
        a_values = [b.load(b.gep(ev.ptrs[c.w], [b.add(w, b.add(k, I64(tap)))],
                                 source_etype=st), typ=st) for w in loop["w_rows"]]
        new = [[m.fma(m.splat(a, t.width), bv, acc) for bv, acc in zip(bvec, row)]
               for a, row in zip(a_values, new)]
    close_k_loop(m, kk, count, accs, new, head, done)
    return new


def _rows_inside(c: RowConv, t: RowTile, b, loop: dict, table) -> list:
    """Per tile row, whether the iteration's tap position is inside the input along every
    padded leading axis."""
    def inside(pos, size):
        return b.icmp_unsigned("<", pos, I64(size))  # 0 <= pos < size as one comparison

    starts = loop["starts"]
    last = len(starts) - 1
    firsts = {a: b.add(starts[a], table(c.rows[a])) for a in range(len(starts))
              if c.padding[a]}
    outer = _all(b, [inside(firsts[a], c.in_sp[a]) for a in firsts if a != last])
    if last not in firsts:
        return [outer] * t.rows
    return [_all(b, [outer, inside(b.add(firsts[last], I64(q * c.stride[last])),
                                   c.in_sp[last])]) for q in range(t.rows)]


def _masked_store_safe(g: Gemm) -> bool:
    """Whether the epilogue reads nothing along the row (a bias is per channel): then a
    segment is one masked store, with no load past the row's end."""
    return not any(isinstance(e, Load) and g.jvar in e.index.vars
                   for e in body_exprs([Let("v", g.value)]))


def _set_position(c: RowConv, b, ev, channel, first, row: int, col) -> None:
    """Binds the epilogue's variables: output channel (within the group), row, column."""
    g = c.gemm
    ev.vars[g.ivar] = channel
    ev.vars[g.jvar] = col
    if c.out_lead:
        ev.vars[g.batch[-1][0]] = b.add(first, I64(row))


def _only_if(m: IR, ok, mask):
    """mask where the scalar ok holds, no lanes elsewhere (ok None: always)."""
    if ok is None:
        return mask
    return m.b.select(ok, mask, ir.Constant(mask.type, [I1(0)] * mask.type.count))


def _store_vectors(c: RowConv, t: RowTile, m: IR, ev, accs, rows, i0, j0) -> None:
    """The epilogue on whole vectors and a masked store per segment; the column variable
    is bound at the vector's first lane, so that the segment's lanes have their own."""
    b = m.b
    g = c.gemm
    masks = [_only_if(m, _row_new(c, t, b, rows, s.row), _output_mask(c, t, m, s, j0))
             for s in t.segments]
    saved = (ev.vector_var, ev.lanes)

    def store_channel(r: int) -> None:
        for s, mask in zip(t.segments, masks):
            ev.push()
            _set_position(c, b, ev, b.add(i0, I64(r)), rows[0], s.row,
                          b.add(j0, I64(s.col - s.lane)))
            ev.vector_var, ev.lanes = g.jvar, t.width
            ev.refs[ACC] = accs[r][s.vector]
            value = m.splat(ev(g.value), t.width)
            addr = ev.address(g.out, ev(g.out_index, base=True))
            ev.vector_var, ev.lanes = saved
            ev.pop()
            m.intrinsic("masked.store", ir.VoidType(),
                        [value, addr, I32(ITEMSIZE[c.dtype]), mask],
                        overload=[value.type, addr.type])

    for r in range(t.mr):
        if c.cog % t.mr:
            with m.if_then(b.icmp_signed("<", b.add(i0, I64(r)), I64(c.cog))):
                store_channel(r)
        else:
            store_channel(r)


def _store_elements(c: RowConv, t: RowTile, m: IR, ev, accs, rows, i0, j0, spill) -> None:
    """Element stores from a copy of the tile on the stack: the epilogue reads along the
    row (a residual), so a vector of it would read past the row's end."""
    b = m.b
    g = c.gemm
    st = SCALAR[c.dtype]
    for r, row in enumerate(accs):
        for u, acc in enumerate(row):
            b.store(acc, b.gep(spill, [I64((r * t.vectors + u) * t.width)], source_etype=st),
                    align=ITEMSIZE[c.dtype])
    channels = _min(b, I64(t.mr), b.sub(I64(c.cog), i0))
    with m.loop(I64(0), channels, name="er") as r:
        for s in t.segments:
            col0 = b.add(j0, I64(s.col))
            count = _min(b, I64(s.count), b.sub(I64(c.out_width), col0))
            new = _row_new(c, t, b, rows, s.row)
            lane0 = b.add(b.mul(r, I64(t.vectors * t.width)), I64(s.vector * t.width + s.lane))
            with m.if_then(new if new is not None else ir.Constant(I1, 1)):
                with m.loop(I64(0), count, name="ec") as col:
                    ev.push()
                    _set_position(c, b, ev, b.add(i0, r), rows[0], s.row, b.add(col0, col))
                    ev.refs[ACC] = b.load(b.gep(spill, [b.add(lane0, col)], source_etype=st),
                                          typ=st)
                    ev.store(g.out, g.out_index, ev(g.value))
                    ev.pop()
