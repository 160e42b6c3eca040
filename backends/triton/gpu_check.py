"""Compile a graph's generated kernels for a CUDA architecture, without a GPU.

Triton's compiler runs on the CPU down to PTX and a cubin (ptxas ships with triton), so a
machine without a GPU can still check that every kernel it generates is one a GPU accepts:
the interpreter is more lenient (it runs tl.arange of any length, broadcasts freely), the
compiler is not. Used by tests/backends/test_triton_gpu_compile.py, and by hand:

    python -m backends.triton.gpu_check examples/mlp.py        # sm_90 by default

A process that imported triton with TRITON_INTERPRET=1 cannot compile (triton's own
helpers are interpreted for good), so an interpreting process runs its checks in a fresh
one: `run_compiling(script, cache_dir)`.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass

from dlc.ir.graph import Graph
from backends.triton.program import BufferRef

SIGNATURE = {"float16": "*fp16", "bfloat16": "*bf16", "float32": "*fp32", "float64": "*fp64",
             "int32": "*i32", "int64": "*i64", "bool": "*i1"}


@dataclass
class CompiledKernel:
    name: str
    ptx_bytes: int
    registers: int | None


def run_compiling(script: str, cache_dir: str, cwd: str = ".", timeout: float = 600
                  ) -> subprocess.CompletedProcess:
    """Run the Python `script` in a fresh process without TRITON_INTERPRET (so it may call
    compile_for_gpu), importing from `cwd`, generated modules under `cache_dir`."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=os.path.abspath(cwd), DLC_CACHE_DIR=str(cache_dir))
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def print_compiled(cases, arch: int = 90) -> None:
    """For each (label, graph, compile_for_gpu options): compile it, check every kernel
    produced PTX, and print `label name name ...` (read back by compiled_names)."""
    for label, graph, options in cases:
        kernels = compile_for_gpu(graph, arch, **options)
        if not all(k.ptx_bytes > 0 for k in kernels):
            raise AssertionError(f"{label}: a kernel compiled to no PTX")
        print(label, " ".join(k.name for k in kernels))


def compiled_names(script: str, cache_dir: str, cwd: str = ".") -> dict[str, list[str]]:
    """Run a script that calls print_compiled (run_compiling): label -> kernel names.
    Fails with the script's stderr if it failed."""
    run = run_compiling(script, cache_dir, cwd)
    if run.returncode != 0:
        raise AssertionError(run.stderr[-4000:])
    return {label: names.split() for label, names in
            (line.split(" ", 1) for line in run.stdout.splitlines())}


def _jit_function(fn):
    """The JITFunction under an autotuner (configs are tried by compiling each below)."""
    return fn.fn if hasattr(fn, "configs") else fn


def compile_for_gpu(graph: Graph, arch: int = 90, opt_level: str = "O2",
                    **options) -> list[CompiledKernel]:
    """Run the pass pipeline of opt_level, generate graph's kernels for a GPU and compile
    each launch's function for sm_<arch>. Raises the Triton compiler's error (with the
    generated file's line) for a bad kernel."""
    from passes.manager import run_pipeline
    from triton.backends.compiler import GPUTarget
    from backends.triton.codegen import generate_program
    from backends.triton.options import require_compiler, resolve_options
    from backends.triton.source import import_module, jit_mode, write_module

    require_compiler()
    graph = run_pipeline(graph, opt_level).graph
    opts = resolve_options(interpret=False, device="cuda", autotune=False, **options)
    program = generate_program(graph, opts)
    path = write_module(opts.cache_dir, graph.name, program.module_source(), "cuda-check")
    with jit_mode(False):  # also while compiling: the frontend reads the same knob
        module = import_module(path)
        return _compile_all(program, module, GPUTarget("cuda", arch, 32))


def _compile_all(program, module, target) -> list[CompiledKernel]:
    import triton
    from triton.compiler import ASTSource
    done, out = set(), []
    for kernel in program.kernels:
        for launch in kernel.launches:
            if launch.fn in done:
                continue
            done.add(launch.fn)
            fn = _jit_function(getattr(module, launch.fn))
            pointers = [n for n in fn.arg_names if n not in launch.meta]
            signature = {n: _sig(ref) for n, ref in zip(pointers, launch.args)}
            signature.update({m: "constexpr" for m in launch.meta})
            src = ASTSource(fn=fn, signature=signature, constexprs=dict(launch.meta))
            compiled = triton.compile(src, target=target,
                                      options={"num_warps": launch.num_warps})
            out.append(CompiledKernel(launch.fn, len(compiled.asm["ptx"]),
                                      getattr(compiled, "n_regs", None)))
    return out


def _sig(ref: BufferRef) -> str:
    return SIGNATURE[ref.dtype]


def main(argv: list[str] | None = None) -> int:
    from dlc.cli import load_model, trace_model
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="FILE.py[:NAME], as for `dlc dump`")
    p.add_argument("--arch", type=int, default=90, help="CUDA compute capability (90)")
    args = p.parse_args(argv)
    graph = trace_model(load_model(args.model))
    for k in compile_for_gpu(graph, args.arch):
        print(f"{k.name}: {k.ptx_bytes} bytes of PTX")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
