"""Statements of the loop-nest IR to LLVM IR, inside one kernel function.

`KernelGen` emits loops (serial; vector loops in stages: several vectors per step, then
one vector, then a leftover of known length in straight-line pieces of 8, 4, 2, 1 lanes;
large contiguous outputs streamed with non-temporal stores), stores, lets, reductions
(vector accumulators, long float sums in blocks) and runtime checks, which report an error
through the kernel's error record and leave the kernel.
"""
from __future__ import annotations

import llvmlite.ir as ir

from dlc.errors import DlcError
from backends.llvm.exprgen import Eval, cast
from backends.llvm.irutil import I1, I32, I64, IR, ITEMSIZE, SCALAR, lanes_of, with_lanes
from backends.llvm.loops import Check, Let, Loop, Reduce, Store, affine, loads, stride_along

ERR_SLOTS = 8  # err[0] = code, err[1..] = details; err[ERR_SLOTS - 1] = the kernel index


# -- statements ----------------------------------------------------------------------------
IDENTITY = {"sum": 0, "prod": 1}


def identity(op: str, dtype: str):
    if op in IDENTITY:
        return IDENTITY[op]
    big = op in ("max", "max_nan_free")
    if dtype.startswith("float"):
        return -float("inf") if big else float("inf")
    if dtype == "bool":
        return 0 if big else 1
    bits = 8 * ITEMSIZE[dtype]
    return -(1 << (bits - 1)) if big else (1 << (bits - 1)) - 1


def combine(m: IR, op: str, dtype: str, acc, x):
    b = m.b
    f = dtype.startswith("float")
    if op == "sum":
        return b.fadd(acc, x) if f else b.add(acc, x)
    if op == "prod":
        return b.fmul(acc, x) if f else b.mul(acc, x)
    if op == "max_nan_free":  # a max whose NaN handling does not matter (softmax's shift)
        return m.intrinsic("maxnum", acc.type, [acc, x])
    if op in ("max", "min"):
        if f:
            return m.fmax_nan(acc, x) if op == "max" else m.fmin_nan(acc, x)
        if dtype == "bool":
            return b.or_(acc, x) if op == "max" else b.and_(acc, x)
        return b.select(b.icmp_signed(">" if op == "max" else "<", x, acc), x, acc)
    raise DlcError(f"internal: unknown reduction {op}")


def horizontal(m: IR, op: str, dtype: str, v):
    """Combine the lanes of a vector into one value (a tree of halves)."""
    b = m.b
    n = lanes_of(v.type)
    while n > 1:
        half = n // 2
        lo = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, half),
                                                [I32(i) for i in range(half)]))
        hi = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, half),
                                                [I32(i) for i in range(half, n)]))
        v = combine(m, op, dtype, lo, hi)
        n = half
    return b.extract_element(v, I32(0)) if lanes_of(v.type) == 1 and isinstance(
        v.type, ir.VectorType) else v


def static_stages(extent: int, lanes: int) -> tuple[int, list]:
    """How a vector loop of a known extent runs: whole steps of `lanes` up to `main`, then
    straight-line chunks of decreasing powers of two (no scalar loop to unroll)."""
    main = extent // lanes * lanes if extent >= lanes else 0
    chunks, offset, rest = [], main, extent - main
    size = lanes // 2 if main else 1 << max(rest.bit_length() - 1, 0)
    while rest and size:
        if rest >= size:
            chunks.append((offset, size))
            offset += size
            rest -= size
        size //= 2
    return main, chunks


# outputs larger than this are written with non-temporal stores: they do not fit in the
# caches anyway, and streaming them saves reading each line before overwriting it
STREAM_MIN_BYTES = 16 << 20


def _streamed_store(s: Loop) -> Store | None:
    """The one store of a vector loop, if it streams a large output contiguously along the
    loop (unit stride in its variable; outer variables fix where the run starts: a flat
    loop, or a row of a row kernel), more than STREAM_MIN_BYTES in all."""
    if len(s.body) != 1 or not isinstance(s.body[0], Store):
        return None
    store = s.body[0]
    a = affine(store.index)
    if a is None or dict(a[1]).get(s.var) != 1:
        return None
    if store.buf.size * ITEMSIZE[store.buf.dtype] <= STREAM_MIN_BYTES:
        return None
    if any(ld.buf is store.buf for ld in loads([Let("_", store.value)])):
        return None  # it rewrites values it just read (a stash): the lines are in cache
    return store


# float sums longer than this many steps (of one lane group) add block sums of this length
SUM_BLOCK = 64


def _blocked(s: Reduce) -> bool:
    return s.op == "sum" and s.dtype.startswith("float") and s.loops[-1][1] > 2 * SUM_BLOCK


class KernelGen:
    """Emits the statements of one kernel into the function being built."""

    def __init__(self, m: IR, ev: Eval, err: ir.Value, exit_block: ir.Block, lanes: int,
                 width: int):
        self.m, self.b, self.ev = m, m.b, ev
        self.err, self.exit_block = err, exit_block
        self.lanes, self.width = lanes, width
        self.streamed = False  # whether some loop made non-temporal stores

    # -- statements -------------------------------------------------------------------------
    def stmts(self, body: list, lo=None, hi=None) -> None:
        for s in body:
            self.stmt(s, lo, hi)

    def stmt(self, s, lo=None, hi=None) -> None:
        if isinstance(s, Loop):
            self.loop(s, lo, hi)
        elif isinstance(s, Store):
            self.ev.store(s.buf, s.index, self.ev(s.value),
                          nontemporal=getattr(s, "nontemporal", False))
        elif isinstance(s, Let):
            self.ev.refs[s.name] = self.ev(s.value)
        elif isinstance(s, Reduce):
            self.reduce(s)
        elif isinstance(s, Check):
            self.check(s)
        else:
            raise DlcError(f"internal: unknown statement {s!r}")

    def loop(self, s: Loop, lo=None, hi=None) -> None:
        if s.parallel and lo is not None:
            self._runtime_vector_loop(s, lo, hi) if s.vector and self.ev.vector_var is None \
                else self._serial(s, lo, hi, 1)
            return
        if not s.vector or self.ev.vector_var is not None:
            self._serial(s, I64(0), I64(s.extent), 1)
            return
        if _streamed_store(s) is not None:
            self._runtime_vector_loop(s, I64(0), I64(s.extent))
            return
        main, chunks = static_stages(s.extent, self.lanes)
        if main:
            self._serial(s, I64(0), I64(main), self.lanes)
        for offset, lanes in chunks:
            self._chunk(s, offset, lanes)

    def _runtime_vector_loop(self, s: Loop, start, stop) -> None:
        """A vector loop over [start, stop) known at run time: whole steps of `lanes`,
        then of one vector, then single elements. A large contiguous output is written
        with non-temporal stores (no read of the lines it overwrites), from the first
        element whose address is a multiple of 64."""
        target = _streamed_store(s)
        if target is not None:
            start = self._stream(s, target, start, stop)
        for lanes in sorted({self.lanes, self.width, 1}, reverse=True):
            if lanes == 1:
                end = stop
            else:
                count = self.b.sub(stop, start)
                end = self.b.add(start, self.b.mul(self.b.sdiv(count, I64(lanes)),
                                                   I64(lanes)))
            self._serial(s, start, end, lanes)
            start = end

    def _stream(self, s: Loop, store: Store, start, stop):
        """Elements up to the first 64-byte aligned one, then whole steps of `lanes` with
        aligned non-temporal stores; returns where the rest starts. The store fence that
        orders them before whatever reads the output comes once, as the kernel returns."""
        b, m = self.b, self.m
        size = ITEMSIZE[store.buf.dtype]
        self.ev.push()
        self.ev.vars[s.var] = start
        first = self.ev(store.index)  # the element at the run's start
        self.ev.pop()
        addr = b.add(b.ptrtoint(self.ev.ptrs[store.buf], I64), b.mul(first, I64(size)))
        peel = b.udiv(b.and_(b.sub(I64(64), b.and_(addr, I64(63))), I64(63)), I64(size))
        aligned = b.add(start, peel)
        aligned = b.select(b.icmp_signed("<", aligned, stop), aligned, stop)
        self._serial(s, start, aligned, 1)
        whole = b.mul(b.sdiv(b.sub(stop, aligned), I64(self.lanes)), I64(self.lanes))
        end = b.add(aligned, whole)
        store.nontemporal = True
        self._serial(s, aligned, end, self.lanes)
        store.nontemporal = False
        self.streamed = True  # one store fence as the kernel returns (emit_kernel)
        return end

    def _chunk(self, s: Loop, offset: int, lanes: int) -> None:
        """The body once, for `lanes` consecutive values of the variable from offset."""
        ev = self.ev
        saved = (ev.vector_var, ev.lanes)
        ev.vars[s.var] = I64(offset)
        if lanes > 1:
            ev.vector_var, ev.lanes = s.var, lanes
        ev.push()
        self.stmts(s.body)
        ev.pop()
        ev.vector_var, ev.lanes = saved

    def _serial(self, s: Loop, start, stop, lanes: int) -> None:
        """The loop over [start, stop) in steps of `lanes` (vector mode when > 1)."""
        ev = self.ev
        saved = (ev.vector_var, ev.lanes)
        with self.m.loop(start, stop, lanes, name=s.var) as i:
            ev.vars[s.var] = i
            if lanes > 1:
                ev.vector_var, ev.lanes = s.var, lanes
            ev.push()
            self.stmts(s.body)
            ev.pop()
            ev.vector_var, ev.lanes = saved

    # -- reductions -------------------------------------------------------------------------
    def reduce(self, s: Reduce) -> None:
        if s.op in ("argmax", "argmin", "pool_argmax"):
            self._arg_reduce(s)
            return
        ev = self.ev
        if ev.vector_var is None and self._vectorizable(s):
            self._vector_reduce(s)
            return
        lanes = ev.lanes if ev.vector_var is not None else 1
        t = with_lanes(SCALAR[s.dtype], lanes)
        init = self.m.const(t, identity(s.op, s.dtype))

        def step(accs):
            return [combine(self.m, s.op, s.dtype, accs[0], self._lanes(self._value(s), lanes))]

        if len(s.loops) == 1 and _blocked(s):
            (var, extent), = s.loops
            acc = self._blocked(s, var, 0, extent, 1, init, step)
        else:
            acc = self._nest(s.loops, [init], step)[0]
        ev.refs[s.name] = acc

    def _blocked(self, s: Reduce, var: str, start: int, stop: int, stride: int, acc, step):
        """A long float sum as a sum of block sums (each block from zero): the rounding
        error grows with the block length plus the number of blocks, not the length."""
        block = SUM_BLOCK * stride
        blocks = (stop - start) // block
        ident = self.m.const(acc.type, identity(s.op, s.dtype))
        if blocks:
            bvar = var + ".blk"

            def one_block(outer):
                base = self.b.add(I64(start), self.b.mul(self.ev.vars[bvar], I64(block)))
                part = self._carried(var, base, self.b.add(base, I64(block)), stride,
                                     [ident], step)[0]
                return [combine(self.m, s.op, s.dtype, outer[0], part)]

            acc = self._carried(bvar, I64(0), I64(blocks), 1, [acc], one_block)[0]
        rest = start + blocks * block
        if rest < stop:
            acc = self._carried(var, I64(rest), I64(stop), stride, [acc], step)[0]
        return acc

    def _value(self, s: Reduce):
        """The reduced value at the current point, stored to the stash if there is one."""
        v = self.ev(s.value)
        if s.stash is not None:
            buf, index = s.stash
            self.ev.store(buf, index, v)
        return v

    def _lanes(self, v, lanes):
        return self.m.splat(v, lanes) if lanes > 1 else v

    def _vectorizable(self, s: Reduce) -> bool:
        var, extent = s.loops[-1]
        if extent < self.width:
            return False
        return any(stride_along(ld.index, var) == 1 for ld in loads([Let("_", s.value)]))

    def _nest(self, loops: list, accs: list, step, inner=None) -> list:
        """Run `step(accs) -> accs` over nested loops, carrying the accumulators in phis."""
        if not loops:
            return step(accs)
        var, extent = loops[0]
        return self._carried(var, I64(0), I64(extent), 1, accs,
                             lambda a: self._nest(loops[1:], a, step))

    def _carried(self, var: str, start, stop, stride: int, accs: list, body) -> list:
        """for var in range(start, stop, stride) with loop-carried accumulators."""
        b, ev = self.b, self.ev
        pre = b.block
        head = b.append_basic_block(f"{var}.head")
        done = b.append_basic_block(f"{var}.done")
        b.cbranch(b.icmp_signed("<", start, stop), head, done)
        b.position_at_end(head)
        i = b.phi(I64, name=var)
        i.add_incoming(start, pre)
        phis = []
        for a in accs:
            p = b.phi(a.type)
            p.add_incoming(a, pre)
            phis.append(p)
        ev.vars[var] = i
        ev.push()
        new = body(phis)
        ev.pop()
        nxt = b.add(i, I64(stride))
        latch = b.block
        i.add_incoming(nxt, latch)
        for p, v in zip(phis, new):
            p.add_incoming(v, latch)
        b.cbranch(b.icmp_signed("<", nxt, stop), head, done)
        b.position_at_end(done)
        outs = []
        for a, v in zip(accs, new):
            phi = b.phi(a.type)
            phi.add_incoming(a, pre)
            phi.add_incoming(v, latch)
            outs.append(phi)
        return outs

    def _vector_reduce(self, s: Reduce) -> None:
        """Scalar context, innermost reduce loop vectorized: a vector accumulator for the
        whole steps, the leftover chunks folded into a scalar one, combined at the end."""
        ev, m = self.ev, self.m
        var, extent = s.loops[-1]
        main, chunks = static_stages(extent, self.lanes)
        el = SCALAR[s.dtype]
        init = [m.const(with_lanes(el, self.lanes), identity(s.op, s.dtype)),
                m.const(el, identity(s.op, s.dtype))]

        def value(lanes: int):
            saved = (ev.vector_var, ev.lanes)
            if lanes > 1:
                ev.vector_var, ev.lanes = var, lanes
            v = self._lanes(self._value(s), lanes)
            ev.vector_var, ev.lanes = saved
            return v

        def inner(accs):
            vec, one = accs
            if main:
                def step(a):
                    return [combine(m, s.op, s.dtype, a[0], value(self.lanes))]
                if _blocked(s):
                    vec = self._blocked(s, var, 0, main, self.lanes, vec, step)
                else:
                    vec = self._carried(var, I64(0), I64(main), self.lanes, [vec], step)[0]
            for offset, lanes in chunks:
                ev.vars[var] = I64(offset)
                ev.push()
                part = value(lanes)
                ev.pop()
                if lanes > 1:
                    part = horizontal(m, s.op, s.dtype, part)
                one = combine(m, s.op, s.dtype, one, part)
            return [vec, one]

        vec, one = self._nest(s.loops[:-1], init, inner)
        ev.refs[s.name] = combine(m, s.op, s.dtype, horizontal(m, s.op, s.dtype, vec), one) \
            if main else one

    def _arg_reduce(self, s: Reduce) -> None:
        """argmax/argmin: the first extreme along the loop, a NaN counting as extreme;
        pool_argmax: `index` of the first maximum where `valid` (a NaN always takes over)."""
        ev, m, b = self.ev, self.m, self.b
        lanes = ev.lanes if ev.vector_var is not None else 1
        vt = with_lanes(SCALAR[s.value.dtype], lanes)
        it = with_lanes(I64, lanes)
        big = s.op != "argmin"
        pool = s.op == "pool_argmax"
        init = [m.const(vt, identity("max" if big else "min", s.value.dtype)),
                m.const(it, -1 if pool else 0)]
        is_float = s.value.dtype.startswith("float")

        def step(accs):
            best, where = accs
            x = self._lanes(ev(s.value), lanes)
            if is_float:
                better = b.fcmp_ordered(">" if big else "<", x, best)
                nan = m.isnan(x)
                better = b.or_(better, nan if pool else b.and_(nan, b.not_(m.isnan(best))))
            else:
                better = b.icmp_signed(">" if big else "<", x, best)
            if pool:
                first = b.icmp_signed("<", where, m.const(it, 0))
                better = b.and_(self._lanes(ev(s.valid), lanes), b.or_(better, first))
                pos = self._lanes(ev(s.index), lanes)
            else:
                pos = self._lanes(ev.vars[s.loops[0][0]], lanes)
            return [b.select(better, x, best), b.select(better, pos, where)]

        accs = self._nest(list(s.loops), init, step)
        ev.refs[s.name] = accs[1]

    # -- runtime checks ---------------------------------------------------------------------
    def check(self, s: Check) -> None:
        ev, b, m = self.ev, self.b, self.m
        ok = ev(s.cond)
        args = [ev(a) for a in s.args]
        if isinstance(ok.type, ir.VectorType):
            n = ok.type.count
            bad_mask = b.bitcast(b.not_(ok), ir.IntType(n))
            failed = b.icmp_unsigned("!=", bad_mask, ir.Constant(ir.IntType(n), 0))
        else:
            failed = b.not_(ok)
        with b.if_then(failed, likely=False):
            if isinstance(ok.type, ir.VectorType):
                lane = m.intrinsic("cttz", ir.IntType(n), [bad_mask, I1(0)])
                lane = b.trunc(lane, I32) if n > 32 else b.zext(lane, I32) if n < 32 else lane
                args = [b.extract_element(a, lane) if isinstance(a.type, ir.VectorType)
                        else a for a in args]
            report_error(m, self.err, s.code, args)
            b.branch(self.exit_block)


def report_error(m: IR, err: ir.Value, code: int, args: list) -> None:
    """err[0] = code (the first error wins, across threads), err[1..] = args."""
    b = m.b
    slot = b.gep(err, [I64(0)], source_etype=I64)
    old = b.cmpxchg(slot, I64(0), I64(code), "seq_cst", "seq_cst")
    won = b.extract_value(old, 1)
    with b.if_then(won):
        for i, a in enumerate(args[:ERR_SLOTS - 1]):
            v = a if a.type == I64 else cast(m, a, "int32" if a.type == I32 else "bool",
                                             "int64")
            b.store(v, b.gep(err, [I64(i + 1)], source_etype=I64))
