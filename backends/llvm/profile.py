"""Where a compiled graph's time goes: every kernel timed inside the real call.

    rows = profile(graph, args, threads=2, calls=50)
    print(profile_table(rows))

A profiling build of the graph is the same program with a cycle counter read before and
after each kernel call in the entry function (codegen.build_module(profile=True)); the
counts accumulate in a global array across calls. Kernels run with their real neighbours'
data in cache and their real thread wake-ups, unlike a kernel timed on its own. Cycles are
converted to seconds with the counter's rate, measured against `time.perf_counter` over the
profiled calls. Profiling builds are never written to the compile cache.
"""
from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass

import numpy as np

from dlc.ir.graph import Graph
from backends.llvm.codegen import PROFILE_CLOCK, PROFILE_COUNTERS


@dataclass
class KernelTime:
    name: str          # k3.fused2_matmul_add
    origin: str        # the op or fused group and the user's file:line
    seconds: float     # per call
    share: float       # of the summed kernel time


def profiling_executable(graph: Graph, threads: int, params: dict | None = None):
    """An Executable of `graph` whose entry counts the cycles of every kernel."""
    from backends.llvm import lower_program
    from backends.llvm.codegen import build_module
    from backends.llvm.executable import LLVMExecutable
    from backends.llvm.jit import compile_ir
    program = lower_program(graph, threads)
    jit = compile_ir(str(build_module(program.spec, profile=True)), name=graph.name)
    return LLVMExecutable(graph, program, jit, threads, params)


def _counters(exe) -> np.ndarray:
    count = max(len(exe.program.spec.kernels), 1)
    address = exe.jit.engine.get_global_value_address(PROFILE_COUNTERS)
    return np.ctypeslib.as_array((ctypes.c_int64 * count).from_address(address))


def profile(graph: Graph, args: list, threads: int, calls: int = 50, warmup: int = 3,
            params: dict | None = None) -> list[KernelTime]:
    """Per-kernel time of one call of `graph` on `args`, averaged over `calls` calls."""
    exe = profiling_executable(graph, threads, params)
    clock = ctypes.CFUNCTYPE(ctypes.c_int64)(exe.jit.address(PROFILE_CLOCK))
    for _ in range(warmup):
        exe(*args)
    counters = _counters(exe)
    counters[:] = 0
    start_s, start_c = time.perf_counter(), clock()
    for _ in range(calls):
        exe(*args)
    rate = (clock() - start_c) / (time.perf_counter() - start_s)  # cycles per second
    cycles = counters.astype(np.float64)[:len(exe.program.spec.kernels)]
    total = max(cycles.sum(), 1.0)
    return [KernelTime(k.name, k.origin, c / calls / rate, c / total)
            for k, c in zip(exe.program.spec.kernels, cycles)]


def profile_table(rows: list[KernelTime], top: int | None = None) -> str:
    """Kernels by time, slowest first, with their share and the running share."""
    ordered = sorted(rows, key=lambda r: -r.seconds)[:top]
    total = sum(r.seconds for r in rows)
    width = max([len(r.name) for r in ordered] + [6])
    lines = [f"{'kernel':<{width}}  {'ms':>8}  {'share':>6}  {'cum':>6}  origin"]
    running = 0.0
    for r in ordered:
        running += r.share
        lines.append(f"{r.name:<{width}}  {r.seconds * 1e3:8.4f}  {r.share:6.1%}  "
                     f"{running:6.1%}  {r.origin}")
    lines.append(f"{'total':<{width}}  {total * 1e3:8.4f}  ({len(rows)} kernels)")
    return "\n".join(lines)
