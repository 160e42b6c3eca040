"""The triton backend: each fused group (or top-level node) becomes a generated
@triton.jit kernel, launched on torch tensors that view one arena.

    exe = dlc.compile(graph, backend="triton")              # a GPU, or the interpreter
    exe = dlc.compile(graph, backend="triton", interpret=True, mixed_precision="bfloat16")
    sources = kernel_sources(graph)                         # {kernel name: source}

Stages, one module each: groups.py (top-level nodes to kernel groups), codegen/ (planner,
pointwise, row-reduction, GEMM and scatter generators, the op lowering table, math
helpers), source.py (module file in the cache dir), memory.py (the arena), launcher.py,
executable.py. Options: options.py. docs/triton-backend.md describes the design.
"""
from __future__ import annotations

from dlc.ir.graph import Graph


def compile(graph: Graph, params: dict | None = None, on_nonfinite: str = "raise",
            **options):
    """The Executable of `graph` on the triton backend (see options.TritonOptions)."""
    from backends.triton.executable import TritonExecutable
    from backends.triton.options import resolve_options
    return TritonExecutable(graph, params, on_nonfinite, resolve_options(**options))


def kernel_sources(graph: Graph, **options) -> dict[str, str]:
    """Generated source of every kernel of `graph`, by kernel name, in launch order.

    The first entry, 'dlc_helpers', holds the math helpers the kernels call; each other
    entry is one kernel's header comment (group, ops, file:line) and @triton.jit function.
    Needs neither torch nor triton nor a GPU; options as for compile (interpret=True gives
    the interpreter's tile sizes, the default the GPU's)."""
    from backends.triton.codegen import generate_program
    from backends.triton.options import resolve_options
    return generate_program(graph, resolve_options(**options)).sources()


def module_source(graph: Graph, **options) -> str:
    """The whole generated module (what the backend writes to the cache dir and imports)."""
    from backends.triton.codegen import generate_program
    from backends.triton.options import resolve_options
    return generate_program(graph, resolve_options(**options)).module_source()
