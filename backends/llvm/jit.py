"""LLVM setup: the host target machine, the O3 pipeline of the new pass manager, MCJIT,
and the OpenMP runtime (libgomp) that generated parallel loops call.

A compiled module stays alive as long as its `JitModule` (which owns the execution engine).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import threading
from dataclasses import dataclass

import llvmlite.binding as llvm

from dlc.errors import DlcError

_LOCK = threading.Lock()
_STATE: dict = {}


class LLVMBackendError(DlcError):
    """The llvm backend cannot run here (no libgomp, an LLVM failure)."""


def _initialize() -> None:
    if _STATE.get("init"):
        return
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    _STATE["init"] = True


# libgomp reads its wait policy when it loads. Its default spins idle workers for a long
# while, which on a busy machine starves whoever holds the other core (measured: an RNN
# training run 41 s spinning vs 9 s not); a passive policy costs a futex wake per parallel
# region (MLP batch 1: 0.14 ms vs 0.027 ms). A short spin keeps both cheap. The user's
# own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
SPIN_COUNT = "10000"


def find_libgomp() -> str:
    """Path of the OpenMP runtime that ships with gcc."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    name = ctypes.util.find_library("gomp")
    candidates = [name] if name else []
    candidates += sorted(glob.glob("/usr/lib/gcc/*/*/libgomp.so"))
    candidates += sorted(glob.glob("/usr/lib/*/libgomp.so*")) + sorted(
        glob.glob("/usr/lib64/libgomp.so*"))
    for path in candidates:
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return path
        except OSError:
            continue
    raise LLVMBackendError("the llvm backend needs libgomp (gcc's OpenMP runtime) for "
                           "parallel loops; install it (e.g. apt-get install libgomp1)")


def load_runtime() -> None:
    """Make libgomp's and libm's symbols visible to JIT-compiled code (once)."""
    with _LOCK:
        _initialize()
        if _STATE.get("gomp"):
            return
        path = find_libgomp()
        llvm.load_library_permanently(path)
        libm = ctypes.util.find_library("m")
        if libm:
            llvm.load_library_permanently(libm)
        _STATE["gomp"] = path


def host_cpu() -> tuple[str, str]:
    """(cpu name, feature string) of this machine."""
    _initialize()
    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


def target_machine(cpu: str | None = None, features: str | None = None):
    _initialize()
    host_name, host_features = host_cpu()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu or host_name,
                                        features=host_features if features is None
                                        else features,
                                        opt=3, codemodel="jitdefault")


def optimize(module: "llvm.ModuleRef", tm) -> None:
    """The new pass manager's default O3 pipeline for the target machine."""
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    # loops are vectorized by the code generator: LLVM's loop vectorizer would only
    # re-vectorize scalar remainders (and cost compile time)
    pto.loop_vectorization = False
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)


@dataclass
class JitModule:
    """A parsed, optimized and JIT-compiled module; keep it alive while calling into it."""
    engine: object
    module: object
    target: object
    text: str

    def address(self, name: str) -> int:
        addr = self.engine.get_function_address(name)
        if not addr:
            raise LLVMBackendError(f"internal: no function {name!r} in the compiled module")
        return addr

    def optimized_ir(self) -> str:
        return str(self.module)

    def assembly(self) -> str:
        return self.target.emit_assembly(self.module)


# -- hook for the compile cache and AOT bundles (cache.py, aot.py): the optimized module
# -- and its target machine, before any machine code is made
def optimized_module(text: str, name: str = "dlc", tm=None):
    """Parse LLVM IR text, verify it and optimize it at O3 for `tm` (default: the host's
    JIT target machine): (module, target machine)."""
    load_runtime()
    try:
        mod = llvm.parse_assembly(text)
        mod.name = name
        mod.verify()
    except RuntimeError as e:
        raise LLVMBackendError(f"internal: generated LLVM IR is invalid: {e}") from None
    tm = tm if tm is not None else target_machine()
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    optimize(mod, tm)
    return mod, tm
# -- end of the hook


def compile_ir(text: str, name: str = "dlc") -> JitModule:
    """Parse LLVM IR text, verify, optimize at O3 for the host, and JIT-compile it."""
    mod, tm = optimized_module(text, name)
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    return JitModule(engine, mod, tm, text)


def default_threads() -> int:
    """All cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
