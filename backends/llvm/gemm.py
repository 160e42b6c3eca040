"""GEMM: C = A @ B (batched), packed, cache-blocked, register-tiled, with a fused epilogue.

Operands are expressions: A(i, k) and B(k, j) over the loop variables (plus batch
variables), so a transposed operand, an im2col window of a convolution (implicit GEMM) or
a broadcast batch is read by the packing routines directly, never materialized. The output
element is `value`, an expression of the accumulator (Ref ACC) and i, j: bias, activation and
residual epilogues run on the accumulator registers before the one store.

Blocking (BLIS order): a work item is (batch, column block of NC, row group); it packs B's
K x NC block into NR-wide panels, then per MC rows runs the micro-kernel on every MR x NR
tile: K steps of NRV vector loads of B, MR broadcasts of A and MR*NRV vector FMAs into
accumulators that stay in registers (AVX-512: 16 floats a vector, up to 28 accumulators).
A is read in place when it is contiguous along k (a row-major matrix, a conv weight: the
tile's MR rows are MR streams), or contiguous along k in runs that tile K (attention's heads
merged back into one row: a run per head), the K loop then being one loop per run; any
other A (transposed, computed) is first packed into MR-tall panels. Edge tiles pad the
packed panels with zeros and store element by element. Work items are shared between
threads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import llvmlite.ir as ir
import numpy as np

from backends.llvm.exprs import eval_index
from backends.llvm.irutil import I64, IR, ITEMSIZE, SCALAR
from backends.llvm.loops import (Buffer, Expr, Kernel, Let, Load, Store, Var, affine,
                                 body_exprs, stride_along, substitute)
from backends.llvm.views import imin

ACC = "gemm.acc"
VECTOR_BYTES = 64
# (MR, vectors per row): accumulators MR * NRV plus NRV B vectors fit in 32 registers
TILE_SHAPES = ((14, 2), (8, 3), (6, 4), (28, 1), (4, 6))
A_BLOCK_BYTES = 384 * 1024       # packed A block: stays in L2
B_BLOCK_BYTES = 2 * 1024 * 1024  # packed B block: stays in L3
# A read in place in runs along k: each run is one K loop (unrolled), so runs are few and
# long enough to amortize the per-run row pointers
MIN_RUN, MAX_RUNS = 8, 16
RUN_GRID_LIMIT = 1 << 22  # A's addresses are checked at every point of batch x M x K


@dataclass
class Gemm:
    """out[out_index] = value(acc = sum_k A(i, k) B(k, j)) for i < M, j < N, per batch."""
    name: str
    dtype: str
    M: int
    N: int
    K: int
    batch: list            # [(var, extent)] outermost first
    a: Expr                # over ivar, kvar and batch vars
    b: Expr                # over kvar, jvar and batch vars
    value: Expr            # over Ref(ACC), ivar, jvar and batch vars
    out: Buffer
    out_index: Expr        # over ivar, jvar and batch vars
    ivar: str
    jvar: str
    kvar: str
    origin: str = ""
    plan: dict = field(default_factory=dict)


def choose_tile(M: int, N: int, width: int) -> tuple[int, int]:
    """The register tile with the least padding of M x N (ties: the earlier shape)."""
    def waste(shape):
        mr, nrv = shape
        nr = nrv * width
        return (-(-M // mr) * mr) * (-(-N // nr) * nr)
    return min(TILE_SHAPES, key=waste)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def plan(g: Gemm, threads: int) -> dict:
    """Block sizes and the work split. Threads share column blocks first (each packs its
    own slice of B); only when there are too few columns do they split the rows, each then
    packing the same B block."""
    size = ITEMSIZE[g.dtype]
    width = VECTOR_BYTES // size
    mr, nrv = choose_tile(g.M, g.N, width)
    nr = nrv * width
    k = max(g.K, 1)
    mc = max(mr, min(_cdiv(g.M, mr) * mr, A_BLOCK_BYTES // (k * size) // mr * mr))
    nc = max(nr, min(_cdiv(g.N, nr) * nr, B_BLOCK_BYTES // (k * size) // nr * nr))
    batches = 1
    for _, e in g.batch:
        batches *= e
    col_blocks = _cdiv(g.N, nc)
    if threads > 1 and batches == 1 and col_blocks % threads:
        # as many column blocks as a multiple of the threads, when the columns allow it
        want = min(_cdiv(col_blocks, threads) * threads, _cdiv(g.N, nr) // threads * threads)
        if want >= threads:
            nc = _cdiv(_cdiv(g.N, want), nr) * nr
            col_blocks = _cdiv(g.N, nc)
    groups = 1
    if batches * col_blocks < threads:
        # too few column blocks to share: split the rows too (each thread packs B)
        wanted = min(_cdiv(threads, batches * col_blocks), _cdiv(g.M, mr))
        if wanted > 1:
            mc = min(mc, _cdiv(_cdiv(g.M, wanted), mr) * mr)
            groups = min(wanted, _cdiv(g.M, mc))
    row_blocks = _cdiv(g.M, mc)
    per_group = _cdiv(row_blocks, groups) * mc
    return dict(mr=mr, nrv=nrv, nr=nr, width=width, mc=mc, nc=nc, col_blocks=col_blocks,
                groups=groups, per_group=per_group, batches=batches,
                items=batches * col_blocks * groups,
                a_bytes=mc * k * size, b_bytes=nc * k * size)


def gemm_kernel(g: Gemm, blocking: dict, scratch: Buffer,
                prepacked: Buffer | None = None) -> Kernel:
    """A kernel running the GEMM with `blocking` = plan(g, threads); its parallel range is
    the work items. `prepacked`: a region of prepacked_bytes(g, blocking) that keeps B
    packed from call to call (B reads only weights that no call changes; the region reads
    zero until B is packed)."""
    p = dict(blocking, a_run=a_run(g), prepacked=prepacked is not None)
    g.plan = p
    k = Kernel(g.name, [], g.origin)
    k.extra.update(emit=lambda m, ev, err, lo, hi, tid, exit_block:
                   _emit(g, p, scratch, m, ev, lo, hi, tid, prepacked),
                   parallel_extent=p["items"], grain=1,
                   buffers=_buffers(g) + [scratch] + ([prepacked] if prepacked else []),
                   parallel=p["items"] > 1,
                   # what the generated code depends on, for sharing identical kernels
                   identity=([Let(g.ivar, Var(g.ivar)), Let(g.jvar, Var(g.jvar)),
                              Let(g.kvar, Var(g.kvar))] +
                             [Let(v, Var(v)) for v, _ in g.batch] +
                             [Let("a", g.a), Let("b", g.b),
                              Store(g.out, g.out_index, g.value)],
                             (g.dtype, g.M, g.N, g.K, tuple(e for _, e in g.batch),
                              tuple(sorted(p.items())))))
    k.scratch_bytes = p["a_bytes"] + p["b_bytes"]
    k.extra["plan"] = p
    return k


def _buffers(g: Gemm) -> list[Buffer]:
    found = []
    for e in body_exprs([Let("a", g.a), Let("b", g.b), Store(g.out, g.out_index, g.value)]):
        if isinstance(e, Load) and e.buf not in found:
            found.append(e.buf)
    if g.out not in found:
        found.append(g.out)
    return found


def may_prepack(p: dict) -> bool:
    """Whether a plan's B blocks can be kept packed between calls: one batch, and each
    column block packed by exactly one work item (no two threads write one block)."""
    return p["batches"] == 1 and p["groups"] == 1


def _flag_bytes(p: dict) -> int:
    """The prepacked region starts with an int32 flag per column block (1: packed),
    padded to whole cache lines."""
    return _cdiv(p["col_blocks"] * 4, VECTOR_BYTES) * VECTOR_BYTES


def _block_bytes(g: Gemm, p: dict) -> int:
    """The bytes of one packed column block of B: NC columns, a whole number of panels."""
    return p["nc"] * g.K * ITEMSIZE[g.dtype]


def prepacked_bytes(g: Gemm, p: dict) -> int:
    """The size of the region that keeps every column block of B packed: the flags, then
    the blocks."""
    return _flag_bytes(p) + p["col_blocks"] * _block_bytes(g, p)


# -- code --------------------------------------------------------------------------------------
def _emit(g: Gemm, p: dict, scratch: Buffer, m: IR, ev, lo, hi, tid,
          prepacked: Buffer | None = None) -> None:
    b = m.b
    t = SCALAR[g.dtype]
    mine = b.gep(ev.ptrs[scratch], [b.mul(tid, I64(p["a_bytes"] + p["b_bytes"]))],
                 source_etype=ir.IntType(8))
    a_pack = mine
    b_pack = b.gep(mine, [I64(p["a_bytes"])], source_etype=ir.IntType(8))
    tile = m.stack_array(t, p["mr"] * p["nr"], name="edge")
    per_item = p["col_blocks"] * p["groups"]
    with m.loop(lo, hi, name="item") as item:
        ev.push()
        batch = b.sdiv(item, I64(per_item))
        rest = b.srem(item, I64(per_item))
        jn = b.sdiv(rest, I64(p["groups"]))
        grp = b.srem(rest, I64(p["groups"]))
        _bind_batch(g, b, ev, batch)
        jc = b.mul(jn, I64(p["nc"]))
        nc = _min(b, I64(p["nc"]), b.sub(I64(g.N), jc))
        if prepacked is None:
            _pack_b(g, p, m, ev, b_pack, jc, nc)
            packed = b_pack
        else:
            packed = _prepacked_block(g, p, m, ev, prepacked, jn, jc, nc)
        ic_lo = b.mul(grp, I64(p["per_group"]))
        ic_hi = _min(b, b.add(ic_lo, I64(p["per_group"])), I64(g.M))
        run = p["a_run"]
        with m.loop(ic_lo, ic_hi, p["mc"], name="ic") as ic:
            mc = _min(b, I64(p["mc"]), b.sub(I64(g.M), ic))
            if not run:
                _pack_a(g, p, m, ev, a_pack, ic, mc)
            with m.loop(I64(0), nc, p["nr"], name="jr") as jr:
                bp = b.gep(packed, [b.mul(b.sdiv(jr, I64(p["nr"])), I64(g.K * p["nr"]))],
                           source_etype=t)
                with m.loop(I64(0), mc, p["mr"], name="ir") as ir_:
                    i0 = b.add(ic, ir_)
                    rows_at = (_direct_rows(g, p, m, ev, i0) if run else
                               _packed_rows(g, p, m, a_pack, ir_))
                    _micro(g, p, m, ev, rows_at, run or g.K, bp, i0, b.add(jc, jr), tile)
        ev.pop()


def _prepacked_block(g: Gemm, p: dict, m: IR, ev, region: Buffer, jn, jc, nc):
    """The pointer to column block jn of B in the prepacked region, packing it first when
    its flag is still zero (the first call, or the first after its weights changed). The
    flag is set with release order after the packing stores and read with acquire order."""
    b = m.b
    base = ev.ptrs[region]
    flag = b.gep(base, [jn], source_etype=ir.IntType(32))
    block = b.gep(base, [b.add(I64(_flag_bytes(p)), b.mul(jn, I64(_block_bytes(g, p))))],
                  source_etype=ir.IntType(8))
    done = b.load_atomic(flag, "acquire", 4, typ=ir.IntType(32))
    with m.if_then(b.icmp_signed("==", done, ir.Constant(ir.IntType(32), 0)), likely=False):
        _pack_b(g, p, m, ev, block, jc, nc)
        # a release exchange: llvmlite's atomic store needs typed pointers
        b.atomic_rmw("xchg", flag, ir.Constant(ir.IntType(32), 1), "release")
    return block


def a_run(g: Gemm) -> int:
    """How A is read: in place in runs of this many k's (K when A is contiguous along
    all of k: a row-major matrix, a convolution weight, rows gathered by a permute), or
    0 when it is packed. The micro-kernel then walks its MR rows from a pointer per row
    and run, and packing A would only copy it."""
    if not isinstance(g.a, Load):
        return 0
    if stride_along(g.a.index, g.kvar) == 1:
        return g.K
    return _longest_run(g)


def _run_lengths(K: int) -> list[int]:
    """The run lengths worth a loop each, longest first: divisors of K of at least
    MIN_RUN that leave at most MAX_RUNS runs."""
    return [n for n in range(K, MIN_RUN - 1, -1) if K % n == 0 and K // n <= MAX_RUNS]


def _longest_run(g: Gemm) -> int:
    """The longest run length L of _run_lengths such that A's address satisfies
    address(i, k) = address(i, k - k % L) + k % L at every batch index, i < M and k < K;
    0 when there is none or it cannot be proven. The proof is exhaustive: A's index is
    evaluated at every point of the grid, so it is exact for any index arithmetic."""
    lengths = _run_lengths(g.K)
    extents = [e for _, e in g.batch] + [g.M, g.K]
    if not lengths or g.a.index.vars - {g.ivar, g.kvar, *(v for v, _ in g.batch)} or \
            math.prod(extents) > RUN_GRID_LIMIT:
        return 0
    names = [v for v, _ in g.batch] + [g.ivar, g.kvar]
    env = {}
    for axis, (name, extent) in enumerate(zip(names, extents)):
        shape = [1] * len(extents)
        shape[axis] = extent
        env[name] = np.arange(extent, dtype=np.int64).reshape(shape)
    address = eval_index(g.a.index, env)
    if address is None:
        return 0
    address = np.broadcast_to(address, extents)
    # steps[k - 1]: A(., k) follows A(., k - 1) in memory at every batch index and row;
    # runs of L hold exactly when it does at every k that does not start a run
    steps = np.all(np.diff(address, axis=-1) == 1, axis=tuple(range(len(extents) - 1)))
    for length in lengths:
        inner = np.arange(1, g.K) % length != 0
        if steps[inner].all():
            return length
    return 0


def _a_rows(g: Gemm, p: dict, m: IR, ev, i0, k0: int) -> list:
    """(pointer to A(i, k0), stride 1, offset 0) for the tile's MR rows; rows past M
    read row M - 1 (their results are never stored)."""
    b = m.b
    rows = []
    for r in range(p["mr"]):
        ev.push()
        ev.vars[g.ivar] = _min(b, b.add(i0, I64(r)), I64(g.M - 1))
        ev.vars[g.kvar] = I64(k0)
        rows.append((ev.address(g.a.buf, ev(g.a.index)), 1, 0))
        ev.pop()
    return rows


def _direct_rows(g: Gemm, p: dict, m: IR, ev, i0):
    """rows_at (see _micro) for A read in place: the row pointers at k0, computed where
    the run's loop starts."""
    return lambda k0: _a_rows(g, p, m, ev, i0, k0)


def _packed_rows(g: Gemm, p: dict, m: IR, a_pack, ir_):
    """rows_at (see _micro) for the packed A panel of the tile at block row ir_:
    A(i0 + r, k) is at panel[k * MR + r]."""
    b = m.b
    mr = p["mr"]
    panel = b.gep(a_pack, [b.mul(b.sdiv(ir_, I64(mr)), I64(g.K * mr))],
                  source_etype=SCALAR[g.dtype])
    return lambda k0: [(panel, mr, k0 * mr + r) for r in range(mr)]


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _bind_batch(g: Gemm, b, ev, flat) -> None:
    rest = flat
    for var, extent in reversed(g.batch):
        ev.vars[var] = b.srem(rest, I64(extent))
        rest = b.sdiv(rest, I64(extent))


def _pack_b(g: Gemm, p: dict, m: IR, ev, dst, jc, nc) -> None:
    """dst[panel][k][c] = B(k, jc + panel*NR + c), zero past column N. Every panel is
    packed a vector at a time; the last, partial one reads column N - 1 for the columns
    past N (so that no lane reads outside B) and zeroes them."""
    b = m.b
    nr = p["nr"]
    full = b.mul(b.sdiv(nc, I64(nr)), I64(nr))
    transposed = _k_contiguous(g)
    with m.loop(I64(0), full, nr, name="pb") as jr:
        if transposed:
            _pack_panel_transposed(g, p, m, ev, dst, jr, b.add(jc, jr))
        else:
            _pack_panel(g, p, m, ev, dst, jr, b.add(jc, jr), g.b, masked=False)
    with m.if_then(b.icmp_signed("<", full, nc)):
        inside_b = substitute(g.b, {g.jvar: imin(Var(g.jvar), g.N - 1)})
        _pack_panel(g, p, m, ev, dst, full, b.add(jc, full), inside_b, masked=True)


def _k_contiguous(g: Gemm) -> bool:
    """B is a load contiguous along k and strided along j: a transposed matrix (a Linear
    layer's weight read as W^T). Its panels are packed by register transposes."""
    return isinstance(g.b, Load) and affine(g.b.index) is not None and \
        stride_along(g.b.index, g.kvar) == 1 and stride_along(g.b.index, g.jvar) not in (0, 1)


def _transpose(m: IR, rows: list) -> list:
    """The transpose of a square block held as `len(rows)` vectors of as many lanes: at
    each distance d (n/2, ..., 1) the off-diagonal d x d blocks of every 2d x 2d block
    trade places, one shuffle per output vector."""
    n = len(rows)
    rows = list(rows)
    d = n // 2
    while d:
        low = [lane if not lane & d else n + lane - d for lane in range(n)]
        high = [lane + d if not lane & d else n + lane for lane in range(n)]
        for i in range(n):
            if i & d:
                continue
            a, c = rows[i], rows[i + d]
            rows[i] = m.b.shuffle_vector(a, c, ir.Constant(ir.VectorType(ir.IntType(32), n),
                                                           low))
            rows[i + d] = m.b.shuffle_vector(a, c, ir.Constant(
                ir.VectorType(ir.IntType(32), n), high))
        d //= 2
    return rows


def _pack_panel_transposed(g: Gemm, p: dict, m: IR, ev, dst, jr, j0) -> None:
    """A full panel of a k-contiguous B: per block of `width` k's and vector of `width`
    columns, `width` contiguous loads (one per column), a register transpose, and `width`
    stores (one per k). The k's past the last whole block go a vector at a time."""
    b = m.b
    t = SCALAR[g.dtype]
    nr, width = p["nr"], p["width"]
    base = b.mul(b.sdiv(jr, I64(nr)), I64(g.K * nr))
    whole = g.K // width * width
    saved = (ev.vector_var, ev.lanes)
    if whole:
        ev.vector_var, ev.lanes = g.kvar, width
        with m.loop(I64(0), I64(whole), width, name="pbt") as k0:
            for v in range(p["nrv"]):
                loads = []
                for c in range(width):
                    ev.push()
                    ev.vars[g.kvar] = k0
                    ev.vars[g.jvar] = b.add(j0, I64(v * width + c))
                    loads.append(ev(g.b))
                    ev.pop()
                for kk, vec in enumerate(_transpose(m, loads)):
                    row = b.add(base, b.mul(b.add(k0, I64(kk)), I64(nr)))
                    b.store(vec, b.gep(dst, [b.add(row, I64(v * width))], source_etype=t),
                            align=ITEMSIZE[g.dtype])
    ev.vector_var, ev.lanes = saved
    if whole < g.K:
        _pack_panel(g, p, m, ev, dst, jr, j0, g.b, masked=False, k_from=whole)


def _pack_panel(g: Gemm, p: dict, m: IR, ev, dst, jr, j0, expr: Expr, masked: bool,
                k_from: int = 0) -> None:
    """One NR-wide panel of B's columns j0.. at panel offset jr: NRV vectors per k (from
    k_from on)."""
    b = m.b
    t = SCALAR[g.dtype]
    nr, width = p["nr"], p["width"]
    base = b.mul(b.sdiv(jr, I64(nr)), I64(g.K * nr))
    saved = (ev.vector_var, ev.lanes)
    ev.vector_var, ev.lanes = g.jvar, width
    columns = [b.add(j0, I64(v * width)) for v in range(p["nrv"])]
    zero = m.const(ir.VectorType(t, width), 0.0)
    lane = m.iota(I64, width)
    inside = [b.icmp_signed("<", b.add(m.splat(col, width), lane),
                            m.const(ir.VectorType(I64, width), g.N))
              for col in columns] if masked else None
    with m.loop(I64(k_from), I64(g.K), name="pbk") as k:
        ev.push()
        ev.vars[g.kvar] = k
        row = b.add(base, b.mul(k, I64(nr)))
        for v, col in enumerate(columns):
            ev.push()
            ev.vars[g.jvar] = col
            val = m.splat(ev(expr), width)
            if masked:
                val = b.select(inside[v], val, zero)
            b.store(val, b.gep(dst, [b.add(row, I64(v * width))], source_etype=t),
                    align=ITEMSIZE[g.dtype])
            ev.pop()
        ev.pop()
    ev.vector_var, ev.lanes = saved


def _pack_a(g: Gemm, p: dict, m: IR, ev, dst, ic, mc) -> None:
    """dst[panel][k][r] = A(ic + panel*MR + r, k), zero past row M."""
    b = m.b
    t = SCALAR[g.dtype]
    mr = p["mr"]
    with m.loop(I64(0), mc, mr, name="pa") as ir_:
        base = b.mul(b.sdiv(ir_, I64(mr)), I64(g.K * mr))
        rows = []
        for r in range(mr):
            i = b.add(b.add(ic, ir_), I64(r))
            rows.append((b.icmp_signed("<", i, I64(g.M)), _min(b, i, I64(g.M - 1))))
        with m.loop(I64(0), I64(g.K), name="pak") as k:
            dst_k = b.add(base, b.mul(k, I64(mr)))
            for r, (inside, i) in enumerate(rows):
                ev.push()
                ev.vars[g.kvar] = k
                ev.vars[g.ivar] = i
                val = b.select(inside, ev(g.a), m.const(t, 0.0))
                ev.pop()
                b.store(val, b.gep(dst, [b.add(dst_k, I64(r))], source_etype=t))


def _micro(g: Gemm, p: dict, m: IR, ev, rows_at, run: int, bp, i0, j0, tile) -> None:
    """One MR x NR tile: accumulate over K in registers, a loop per run of `run` k's
    (one loop unless A is read in place in runs), then the epilogue and store.
    rows_at(k0)[r] = (base, step, offset): A(i0 + r, k0 + kk) is at base[kk * step +
    offset] for kk < run; it is called before each run's loop."""
    b = m.b
    t = SCALAR[g.dtype]
    mr, nr = p["mr"], p["nr"]
    final = None
    # an empty sum (K = 0) is one loop that never runs: the accumulators stay zero
    starts = range(0, g.K, run) if g.K else (0,)
    for n, k0 in enumerate(starts):
        b_run = b.gep(bp, [I64(k0 * nr)], source_etype=t)
        final = _k_loop(g, p, m, rows_at(k0), b_run, run, final, f"mk{n}")
    if not _full_tiles_possible(g, p):
        _store_edge(g, p, m, ev, final, i0, j0, tile)
        return
    full = b.and_(b.icmp_signed("<=", b.add(i0, I64(mr)), I64(g.M)),
                  b.icmp_signed("<=", b.add(j0, I64(nr)), I64(g.N)))
    with b.if_else(full, likely=True) as (then, otherwise):
        with then:
            _store_full(g, p, m, ev, final, i0, j0)
        with otherwise:
            _store_edge(g, p, m, ev, final, i0, j0, tile)


def _k_loop(g: Gemm, p: dict, m: IR, rows: list, bp, steps: int, init: list | None,
            name: str) -> list:
    """`steps` rank-1 updates of the tile's accumulators from `init` (zeros when None):
    A(i0 + r, kk) at rows[r], B's packed row kk at bp + kk * NR. Returns the accumulators
    after the loop."""
    b = m.b
    t = SCALAR[g.dtype]
    mr, nrv, width, nr = p["mr"], p["nrv"], p["width"], p["nr"]
    vt = ir.VectorType(t, width)
    pre = b.block
    k, accs, head, done = tile_loop_head(m, vt, mr, nrv, steps, name, init=init)
    bvec = [b.load(b.gep(bp, [b.add(b.mul(k, I64(nr)), I64(v * width))], source_etype=t),
                   typ=vt, align=ITEMSIZE[g.dtype]) for v in range(nrv)]
    a_values = [b.load(b.gep(base, [b.add(b.mul(k, I64(step)), I64(offset))],
                             source_etype=t), typ=t) for base, step, offset in rows]
    new, latch = rank1_update(m, k, steps, accs, a_values, bvec, head, done)
    start = _initial(m, vt, mr, nrv, init)
    final = []
    for r in range(mr):
        row = []
        for v in range(nrv):
            phi = b.phi(vt)
            phi.add_incoming(start[r][v], pre)
            phi.add_incoming(new[r][v], latch)
            row.append(phi)
        final.append(row)
    return final


def _initial(m: IR, vt, mr: int, nrv: int, init: list | None) -> list:
    """The accumulators a K loop starts from: `init`, or zeros."""
    if init is not None:
        return init
    zero = m.const(vt, 0.0)
    return [[zero] * nrv for _ in range(mr)]


def tile_loop_head(m: IR, vt, mr: int, nrv: int, K: int, name: str, may_skip: bool = True,
                   init: list | None = None):
    """The head of a micro-kernel's K loop: the counter k and MR x NRV vector accumulators
    (phis starting at `init`, an MR x NRV list of vectors, or at zero when None). With
    `may_skip` the loop is entered only when K > 0 (`done` then has the current block as
    a predecessor too); else always. Returns (k, accs, head, done); the builder is left in
    the head, for the loads and rank1_update."""
    b = m.b
    pre = b.block
    head = b.append_basic_block(f"{name}.head")
    done = b.append_basic_block(f"{name}.done")
    if may_skip:
        b.cbranch(b.icmp_signed("<", I64(0), I64(K)), head, done)
    else:
        b.branch(head)
    b.position_at_end(head)
    k = b.phi(I64, name="k")
    k.add_incoming(I64(0), pre)
    start = _initial(m, vt, mr, nrv, init)
    accs = [[b.phi(vt) for _ in range(nrv)] for _ in range(mr)]
    for row, values in zip(accs, start):
        for acc, value in zip(row, values):
            acc.add_incoming(value, pre)
    return k, accs, head, done


def rank1_update(m: IR, k, K: int, accs: list, a_values: list, bvec: list, head,
                 done) -> tuple[list, ir.Block]:
    """The body of a micro-kernel's K loop after its loads: accs[r][v] += a[r] * b[v],
    then the back edge to `head` while k < K. Returns the updated accumulators and the
    latch block (for the phis after the loop); the builder is left at `done`."""
    width = bvec[0].type.count
    new = [[m.fma(m.splat(a, width), bv, acc) for bv, acc in zip(bvec, row)]
           for a, row in zip(a_values, accs)]
    return new, close_k_loop(m, k, K, accs, new, head, done)


def close_k_loop(m: IR, k, K: int, accs: list, new: list, head, done) -> ir.Block:
    """The back edge of a K loop that tile_loop_head began: k steps by one, the accumulator
    phis take `new`, and the loop repeats while k < K. Returns the latch block; the
    builder is left at `done`."""
    b = m.b
    nxt = b.add(k, I64(1))
    latch = b.block
    k.add_incoming(nxt, latch)
    for row, updated in zip(accs, new):
        for acc, value in zip(row, updated):
            acc.add_incoming(value, latch)
    b.cbranch(b.icmp_signed("<", nxt, I64(K)), head, done)
    b.position_at_end(done)
    return latch


def _full_tiles_possible(g: Gemm, p: dict) -> bool:
    """Whether some tile lies wholly inside the output. When none can (fewer than MR rows
    or NR columns), only the edge store is generated: the vector store of a full tile
    would never run, and a one-column output's index does not depend on the column, so
    it could not be written as a vector anyway."""
    return g.M >= p["mr"] and g.N >= p["nr"] and g.jvar in g.out_index.vars


def _store_full(g: Gemm, p: dict, m: IR, ev, accs, i0, j0) -> None:
    b = m.b
    width = p["width"]
    saved = (ev.vector_var, ev.lanes)
    for r, row in enumerate(accs):
        for v, acc in enumerate(row):
            ev.push()
            ev.vars[g.ivar] = b.add(i0, I64(r))
            ev.vars[g.jvar] = b.add(j0, I64(v * width))
            ev.vector_var, ev.lanes = g.jvar, width
            ev.refs[ACC] = acc
            ev.store(g.out, g.out_index, ev(g.value))
            ev.vector_var, ev.lanes = saved
            ev.pop()


def _store_edge(g: Gemm, p: dict, m: IR, ev, accs, i0, j0, tile) -> None:
    b = m.b
    t = SCALAR[g.dtype]
    mr, nr, width = p["mr"], p["nr"], p["width"]
    for r, row in enumerate(accs):
        for v, acc in enumerate(row):
            b.store(acc, b.gep(tile, [I64(r * nr + v * width)], source_etype=t),
                    align=ITEMSIZE[g.dtype])
    rows = _min(b, I64(mr), b.sub(I64(g.M), i0))
    cols = _min(b, I64(nr), b.sub(I64(g.N), j0))
    with m.loop(I64(0), rows, name="er") as r:
        with m.loop(I64(0), cols, name="ec") as c:
            ev.push()
            ev.vars[g.ivar] = b.add(i0, r)
            ev.vars[g.jvar] = b.add(j0, c)
            ev.refs[ACC] = b.load(b.gep(tile, [b.add(b.mul(r, I64(nr)), c)], source_etype=t),
                                  typ=t)
            ev.store(g.out, g.out_index, ev(g.value))
            ev.pop()

