"""The llvm backend: each graph becomes one LLVM module with one entry function, compiled
for the host CPU (see docs/llvm-backend.md).

Pipeline: decompose composite ops -> lower every node to loop nests (lower*.py over the
loop-nest IR of loops.py) -> LLVM IR (codegen.py, exprgen.py, mathlib.py, gemm.py) -> the
new pass manager's O3 pipeline and MCJIT (jit.py) -> an LLVMExecutable (executable.py).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from dlc.errors import ArgumentError
from dlc.ir.graph import Graph
from backends.llvm.jit import default_threads

_CACHE: "OrderedDict[str, tuple]" = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.Lock()


def _key(graph: Graph, threads: int) -> str:
    plan = graph.meta.get("memory_plan")
    text = f"{graph}\n{threads}\n{plan!r}\n{sorted(graph.aliases.items())}"
    return hashlib.sha256(text.encode()).hexdigest()


def lower_program(graph: Graph, threads: int, prepack: bool = True):
    """The Program of a graph: decomposed and lowered to kernels (no machine code yet).
    `prepack=False` for code whose caller does not zero the arena (AOT bundles)."""
    from backends.llvm.lower import lower_graph
    from passes.decompose import decompose, has_decomposition
    flat = decompose(graph)
    # a memory plan addresses nodes by position: it is only valid for the graph it was
    # made for, so a graph that decomposition changed gets the backend's own plan
    plan = graph.meta.get("memory_plan") if not any(
        has_decomposition(n) for n in graph.nodes) else None
    return lower_graph(flat, threads, plan, prepack)


def lower_and_compile(graph: Graph, threads: int):
    """(Program, JitModule) for a graph; identical graphs compile once per process."""
    from backends.llvm.codegen import build_module
    key = _key(graph, threads)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    program = lower_program(graph, threads)
    # -- hook: the on-disk compile cache (cache.py) builds the LLVM IR only on a miss
    from backends.llvm.cache import compile_cached
    jit = compile_cached(graph, threads, lambda: str(build_module(program.spec)),
                         name=graph.name)
    # -- end of the hook
    with _CACHE_LOCK:
        _CACHE[key] = (program, jit)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return program, jit


def compile(graph: Graph, params: dict | None = None, on_nonfinite: str = "raise",
            threads: int | None = None):
    """Compile a graph for this CPU. `threads`: how many threads parallel loops use
    (default: every core this process may run on)."""
    from backends.llvm.executable import LLVMExecutable
    if threads is None:
        threads = default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ArgumentError(f"threads must be a positive int, got {threads!r}")
    program, jit = lower_and_compile(graph, threads)
    return LLVMExecutable(graph, program, jit, threads, params, on_nonfinite)
