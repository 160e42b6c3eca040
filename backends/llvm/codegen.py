"""Loop-nest kernels to one LLVM module with one entry function.

Each kernel becomes `void NAME(ptr buf..., ptr err, i64 lo, i64 hi, i64 thread)`: it runs
the iterations [lo, hi) of its parallel top-level loop (its whole body when it has none). A
parallel kernel also gets `NAME.omp(ptr ctx)`, the function libgomp's GOMP_parallel runs on
every thread: it picks the thread's share of the range and calls NAME.

The entry function `dlc_main(ptr inputs, ptr outputs, ptr params, ptr arena, ptr err)`
computes every buffer's address (arrays of pointers for the caller's arrays, fixed offsets
into the arena for the rest) and calls the kernels in order; it returns 0, or the error code
a kernel reported (its details in err[1..]), or NONFINITE when a training step's loss is not
finite (then no parameter was touched).

The statements inside a kernel are emitted by stmtgen.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import llvmlite.ir as ir

from dlc.errors import DlcError
from backends.llvm.exprgen import Eval
from backends.llvm.irutil import I32, I64, IR, ITEMSIZE, MEMORY, PTR, VOID
from backends.llvm.loops import (Buffer, Kernel, Load, Loop, Store, body_exprs, fingerprint,
                                 walk_stmts)
from backends.llvm.stmtgen import ERR_SLOTS, KernelGen, identity  # noqa: F401 (re-exported)

ENTRY = "dlc_main"
NONFINITE = 2
# a profiling build (profile=True) also has these: per-kernel cycle counters the entry adds
# to around each kernel call, and a function reading the cycle counter (for calibration)
PROFILE_COUNTERS = "dlc_profile_cycles"
PROFILE_CLOCK = "dlc_profile_clock"


# -- where buffers live --------------------------------------------------------------------
@dataclass
class Placement:
    """Where a buffer's address comes from: ("input"|"output"|"param", index) reads the
    caller's pointer array; ("arena", byte offset) is inside the arena; ("const", number)
    is a read-only table the lowering computed (`data`), a global of the module."""
    kind: str
    where: int
    data: object = field(default=None, compare=False, repr=False)


def _constant_global(module: ir.Module, name: str, data) -> ir.GlobalVariable:
    """A private, 64-byte aligned global holding a lowering's table (int32 or float)."""
    el = {"int32": I32, "int64": I64}.get(data.dtype.name) or MEMORY[data.dtype.name]
    ty = ir.ArrayType(el, max(data.size, 1))
    table = ir.GlobalVariable(module, ty, name)
    values = [int(v) for v in data.ravel()] if data.dtype.kind == "i" else \
        [float(v) for v in data.ravel()]
    table.initializer = ir.Constant(ty, values or [0])
    table.global_constant = True
    table.linkage = "private"
    table.align = 64
    return table


@dataclass
class ProgramSpec:
    """Everything the code generator needs: kernels in order and buffer placements."""
    name: str
    kernels: list
    placements: dict  # Buffer -> Placement
    threads: int
    # kernel index -> buffer holding the loss: stop with NONFINITE unless it is finite
    loss_checks: dict = field(default_factory=dict)
    scratch_offset: int = 0       # arena offset of the per-thread scratch area
    scratch_per_thread: int = 0


def kernel_buffers(k: Kernel) -> list[Buffer]:
    """The buffers a kernel touches, in first-use order."""
    seen: dict = {}
    for s in walk_stmts(k.body):
        if isinstance(s, Store):
            seen.setdefault(s.buf, None)
    for e in body_exprs(k.body):
        if isinstance(e, Load):
            seen.setdefault(e.buf, None)
    for buf in k.extra.get("buffers", ()):
        seen.setdefault(buf, None)
    return list(seen)


# -- kernel functions ----------------------------------------------------------------------
HEAVY_MATH = {"erf", "erfc", "gelu_erf", "pow", "sin", "cos"}
LIGHT_MATH = {"exp", "expm1", "log", "log1p", "tanh", "sigmoid", "gelu_tanh", "softplus"}


def vector_shape(k: Kernel) -> tuple[int, int]:
    """(lanes per step, lanes of one vector) for a kernel: one 512-bit vector of its
    widest element, times an unroll that shrinks as the per-element math grows."""
    widest = 1
    heavy = light = 0
    for e in body_exprs(k.body):
        if isinstance(e, Load):
            widest = max(widest, ITEMSIZE[e.buf.dtype])
        elif hasattr(e, "op"):
            if e.dtype in ITEMSIZE and e.dtype.startswith("float"):
                widest = max(widest, ITEMSIZE[e.dtype])
            heavy += e.op in HEAVY_MATH
            light += e.op in LIGHT_MATH
    for s in walk_stmts(k.body):
        if isinstance(s, Store):
            widest = max(widest, ITEMSIZE[s.buf.dtype])
    width = max(4, min(16, 64 // widest))
    unroll = 1 if heavy or light > 2 else 2 if light else 4
    return width * unroll, width


def parallel_loop(k: Kernel) -> Loop | None:
    for s in k.body:
        if isinstance(s, Loop) and s.parallel:
            return s
    return None


def parallel_extent(k: Kernel) -> int | None:
    """How many iterations the kernel's threads share, or None for a serial kernel."""
    if "parallel_extent" in k.extra:
        return k.extra["parallel_extent"]
    loop = parallel_loop(k)
    return loop.extent if loop is not None else None


def grain(k: Kernel) -> int:
    """Thread shares start at multiples of this (whole vectors: no shared cache lines)."""
    if "grain" in k.extra:
        return k.extra["grain"]
    loop = parallel_loop(k)
    return vector_shape(k)[0] if loop is not None and loop.vector else 1


def emit_kernel(module: ir.Module, k: Kernel, bufs: list[Buffer]) -> ir.Function:
    fnty = ir.FunctionType(VOID, [PTR] * len(bufs) + [PTR, I64, I64, I64])
    fn = ir.Function(module, fnty, k.name)
    fn.linkage = "internal"
    # one function per kernel: named in profiles, and the entry stays a short list of calls
    fn.attributes.add("noinline")
    distinct = k.extra.get("noalias", set())
    for buf, arg in zip(bufs, fn.args):
        arg.name = buf.name
        if buf in distinct:
            arg.add_attribute("noalias")
    err, lo, hi, tid = fn.args[len(bufs):]
    err.name, lo.name, hi.name, tid.name = "err", "lo", "hi", "thread"
    entry = fn.append_basic_block("entry")
    exit_block = fn.append_basic_block("exit")
    b = ir.IRBuilder(exit_block)
    b.ret_void()
    b.position_at_end(entry)
    m = IR(module, b)
    ev = Eval(m, dict(zip(bufs, fn.args)))
    ev.stored = {s.buf for s in walk_stmts(k.body) if isinstance(s, Store)}
    custom = k.extra.get("emit")
    if custom is not None:
        custom(m, ev, err, lo, hi, tid, exit_block)
    else:
        lanes, width = vector_shape(k)
        gen = KernelGen(m, ev, err, exit_block, lanes, width)
        gen.stmts(k.body, lo, hi)
        if gen.streamed:  # non-temporal stores are ordered before the kernel returns
            fence = ir.IRBuilder(exit_block)
            fence.position_before(exit_block.terminator)
            IR(module, fence).intrinsic("x86.sse.sfence", VOID, [], overload=[])
    if b.block.terminator is None:
        b.branch(exit_block)
    return fn


def _runtime_function(module: ir.Module, name: str, ret, args) -> ir.Function:
    fn = module.globals.get(name)
    return fn if fn is not None else ir.Function(module, ir.FunctionType(ret, args), name)


# A parallel kernel's range is dealt out in pieces, about this many per thread, each taken
# by whichever thread is free: on a shared machine a thread that loses its core for a while
# then holds up the call by one piece, not by half the work.
PIECES_PER_THREAD = 4


def emit_omp_wrapper(module: ir.Module, k: Kernel, kernel_fn: ir.Function,
                     nbufs: int) -> ir.Function:
    """NAME.omp(ctx): take pieces [lo, hi) of the range from the shared counter in ctx (an
    atomic add) and run NAME on each, until the range is done."""
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR]), k.name + ".omp")
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ctx = fn.args[0]
    slots = [b.load(b.gep(ctx, [I64(i)], source_etype=PTR), typ=PTR) for i in range(nbufs + 2)]
    counter = b.gep(ctx, [I64(nbufs + 2)], source_etype=PTR)
    total = b.ptrtoint(slots[-1], I64)
    tid = b.sext(b.call(_runtime_function(module, "omp_get_thread_num", I32, []), []), I64)
    nt = b.sext(b.call(_runtime_function(module, "omp_get_num_threads", I32, []), []), I64)
    g = I64(grain(k))
    # a piece: total / (threads * PIECES_PER_THREAD), rounded up to whole grains
    share = b.sdiv(b.add(total, b.sub(b.mul(nt, I64(PIECES_PER_THREAD)), I64(1))),
                   b.mul(nt, I64(PIECES_PER_THREAD)))
    piece = b.mul(b.sdiv(b.add(share, b.sub(g, I64(1))), g), g)
    piece = b.select(b.icmp_signed("<", piece, g), g, piece)
    loop = fn.append_basic_block("take")
    work = fn.append_basic_block("run")
    done = fn.append_basic_block("done")
    b.branch(loop)
    b.position_at_end(loop)
    lo = b.atomic_rmw("add", counter, piece, "monotonic")
    b.cbranch(b.icmp_signed("<", lo, total), work, done)
    b.position_at_end(work)
    hi = b.add(lo, piece)
    hi = b.select(b.icmp_signed("<", hi, total), hi, total)
    b.call(kernel_fn, slots[:nbufs] + [slots[nbufs], lo, hi, tid])
    b.branch(loop)
    b.position_at_end(done)
    b.ret_void()
    return fn


def _cycle_counter(m: IR) -> ir.Value:
    return m.intrinsic("readcyclecounter", I64, [], overload=[])


def emit_profile_clock(module: ir.Module) -> None:
    fn = ir.Function(module, ir.FunctionType(I64, []), PROFILE_CLOCK)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(_cycle_counter(IR(module, b)))


def profile_counters(module: ir.Module, count: int) -> ir.GlobalVariable:
    counters = ir.GlobalVariable(module, ir.ArrayType(I64, max(count, 1)), PROFILE_COUNTERS)
    counters.initializer = ir.Constant(counters.value_type, None)
    return counters


def emit_entry(module: ir.Module, spec: ProgramSpec, fns: list,
               profile: bool = False) -> ir.Function:
    fnty = ir.FunctionType(I32, [PTR] * 5)
    main = ir.Function(module, fnty, ENTRY)
    inputs, outputs, params, arena, err = main.args
    for a, n in zip(main.args, ("inputs", "outputs", "params", "arena", "err")):
        a.name = n
    b = ir.IRBuilder(main.append_basic_block("entry"))
    m = IR(module, b)
    tables = {"input": inputs, "output": outputs, "param": params}
    cache: dict = {}

    def address(buf: Buffer) -> ir.Value:
        if buf in cache:
            return cache[buf]
        p = spec.placements.get(buf)
        if p is None:
            raise DlcError(f"internal: buffer {buf.name} has no placement")
        if p.kind == "arena":
            v = b.gep(arena, [I64(p.where)], source_etype=ir.IntType(8))
        elif p.kind == "const":
            table = _constant_global(module, module.get_unique_name(f"table.{buf.name}"),
                                     p.data)
            v = b.inttoptr(b.ptrtoint(table, I64), PTR)
        else:
            v = b.load(b.gep(tables[p.kind], [I64(p.where)], source_etype=PTR), typ=PTR)
        cache[buf] = v
        return v

    gomp = _runtime_function(module, "GOMP_parallel", VOID, [PTR, PTR, I32, I32])
    width = max((len(bufs) for _, _, bufs in fns), default=0) + 3
    ctx = m.stack_array(PTR, width, name="ctx")
    counters = profile_counters(module, len(spec.kernels)) if profile else None
    for index, (k, (kernel_fn, wrapper, bufs)) in enumerate(zip(spec.kernels, fns)):
        args = [address(buf) for buf in bufs]
        extent = parallel_extent(k)
        started = _cycle_counter(m) if profile else None
        if k.can_fail:  # which kernel failed, for the message
            b.store(I64(index), b.gep(err, [I64(ERR_SLOTS - 1)], source_etype=I64))
        if wrapper is not None:
            for i, a in enumerate(args + [err, b.inttoptr(I64(extent), PTR)]):
                b.store(a, b.gep(ctx, [I64(i)], source_etype=PTR))
            # the counter the threads take pieces from (emit_omp_wrapper)
            b.store(I64(0), b.gep(ctx, [I64(len(args) + 2)], source_etype=PTR))
            b.call(gomp, [wrapper, ctx, I32(spec.threads), I32(0)])
        else:
            b.call(kernel_fn, args + [err, I64(0), I64(extent or 0), I64(0)])
        if profile:
            base = b.inttoptr(b.ptrtoint(counters, I64), PTR)  # an opaque pointer
            slot = b.gep(base, [I64(index)], source_etype=I64)
            spent = b.sub(_cycle_counter(m), started)
            b.store(b.add(b.load(slot, typ=I64), spent), slot)
        if k.can_fail:
            code = b.load(b.gep(err, [I64(0)], source_etype=I64), typ=I64)
            with b.if_then(b.icmp_signed("!=", code, I64(0)), likely=False):
                b.ret(b.trunc(code, I32))
        loss = spec.loss_checks.get(index)
        if loss is not None:
            _stop_unless_finite(m, address(loss), loss.dtype)
    b.ret(I32(0))
    return main


def _stop_unless_finite(m: IR, ptr: ir.Value, dtype: str) -> None:
    b = m.b
    v = b.load(ptr, typ=MEMORY[dtype])
    finite = b.fcmp_ordered("<", m.fabs(v), m.like(v, float("inf")))
    with b.if_then(b.not_(finite), likely=False):
        b.ret(I32(NONFINITE))


def build_module(spec: ProgramSpec, profile: bool = False) -> ir.Module:
    """The LLVM module of a program: one function per distinct kernel (kernels that differ
    only in the arrays they touch share one), the OpenMP wrappers, the entry function.
    `profile` adds cycle counters around every kernel call (backends/llvm/profile.py)."""
    module = ir.Module(name=spec.name)
    fns = []
    shared: dict = {}
    for k in spec.kernels:
        bufs = kernel_buffers(k)
        distinct = k.extra.get("noalias", set())
        flags = (tuple(b in distinct for b in bufs), k.can_fail, grain(k))
        if "emit" not in k.extra:
            key = fingerprint(k.body, bufs, flags)
        elif "identity" in k.extra:
            body, extra = k.extra["identity"]
            key = fingerprint(body, bufs, flags + extra)
        else:
            key = None
        if key is not None and key in shared:
            fn, wrapper = shared[key]
            fns.append((fn, wrapper, bufs))
            continue
        fn = emit_kernel(module, k, bufs)
        wrapper = None
        extent = parallel_extent(k)
        if spec.threads > 1 and extent is not None and extent > 1 and k.extra.get(
                "parallel", True):
            wrapper = emit_omp_wrapper(module, k, fn, len(bufs))
        if key is not None:
            shared[key] = (fn, wrapper)
        fns.append((fn, wrapper, bufs))
    emit_entry(module, spec, fns, profile)
    if profile:
        emit_profile_clock(module)
    return module
