"""`dlc dump MODEL --llvm | --asm`: every kernel's optimized LLVM IR or assembly, each
headed by the op or fused group it computes and the user's file:line.

The module is the one `backend="llvm"` compiles, optimized at O3 for this machine, except
that kernels are kept out of line (noinline) so that each has a listing of its own.
Kernels with the same loop nest share one function; the later ones say whose code they run.
"""
from __future__ import annotations

import re

from dlc.ir.graph import Graph
from backends.llvm.codegen import ENTRY, build_module, grain, kernel_buffers
from backends.llvm.jit import default_threads, optimized_module
from backends.llvm.loops import fingerprint

KINDS = {"llvm": ";", "asm": "#"}  # listing kind -> its comment marker
_KERNEL = re.compile(r"k[0-9]+\.")  # kernel functions (and their .omp wrappers)
_ASM_TYPE = re.compile(r'^\s*\.type\s+"?([^",]+)"?,\s*@function', re.M)


def _code_key(k) -> tuple | None:
    """What build_module uses to share one function between kernels (None: never)."""
    if "emit" in k.extra:
        return None
    bufs = kernel_buffers(k)
    distinct = k.extra.get("noalias", set())
    return fingerprint(k.body, bufs, (tuple(b in distinct for b in bufs), k.can_fail,
                                      grain(k)))


def _owners(kernels: list) -> dict:
    """kernel name -> name of the function that holds its code."""
    first: dict = {}
    owners = {}
    for k in kernels:
        key = _code_key(k)
        owner = first.setdefault(key, k.name) if key is not None else k.name
        owners[k.name] = owner
    return owners


def kernel_listing(graph: Graph, kind: str = "llvm", threads: int | None = None) -> str:
    """The listing of every kernel of `graph` (after the pass pipeline)."""
    from backends.llvm import lower_program
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    threads = threads or default_threads()
    program = lower_program(graph, threads)
    module = build_module(program.spec)
    for fn in module.functions:
        if _KERNEL.match(fn.name) and not fn.is_declaration:
            fn.attributes.add("noinline")
    mod, tm = optimized_module(str(module), graph.name)
    bodies = _asm_functions(tm.emit_assembly(mod)) if kind == "asm" else {
        f.name: str(f) for f in mod.functions if not f.is_declaration}
    mark = KINDS[kind]
    owners = _owners(program.spec.kernels)
    out = [f"{mark} @{graph.name}: {len(program.spec.kernels)} kernel(s), {threads} "
           f"thread(s), {kind} for this machine at O3 (kernels kept out of line)"]
    for k in program.spec.kernels:
        out.append(f"\n{mark} ==== kernel {k.name}: {k.origin}")
        owner = owners[k.name]
        if owner != k.name:
            out.append(f"{mark} same code as {owner}")
            continue
        parts = [bodies.get(k.name, f"{mark} (inlined by LLVM)")]
        if k.name + ".omp" in bodies:
            parts.append(f"{mark} its share of the threads (called by GOMP_parallel):\n"
                         + bodies[k.name + ".omp"])
        out.extend(p.rstrip("\n") for p in parts)
    out.append(f"\n{mark} ==== entry {ENTRY}: calls the kernels in order")
    out.append(bodies.get(ENTRY, "").rstrip("\n"))
    return "\n".join(out) + "\n"


def _asm_functions(text: str) -> dict[str, str]:
    """function name -> its assembly, from `.type NAME,@function` to its `.size` line."""
    out = {}
    for m in _ASM_TYPE.finditer(text):
        name = m.group(1)
        end = re.compile(r'^\s*\.size\s+"?' + re.escape(name) + r'"?,.*$', re.M)
        stop = end.search(text, m.end())
        out[name] = text[m.start():stop.end() if stop else len(text)]
    return out
