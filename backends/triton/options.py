"""The options of the triton backend, resolved once at compile time.

Every knob of the backend is a field here; `resolve_options` maps the keyword arguments of
`dlc.compile(..., backend="triton", **options)` and the two environment variables the backend
honours (TRITON_INTERPRET, DLC_CACHE_DIR) onto it, so no code deeper down reads the
environment.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields, replace

from dlc.errors import ArgumentError, DlcError

LOW_PRECISION = ("float16", "bfloat16")


@dataclass(frozen=True)
class TritonOptions:
    # run the kernels in Triton's interpreter on torch CPU tensors (no GPU needed)
    interpret: bool = False
    # torch device of the arena and the kernels' tensors: "cuda", "cuda:1"; "cpu" interpreting
    device: str = "cuda"
    # None, "float16" or "bfloat16": storage dtype of float32 intermediates and the input
    # dtype of matmul/conv tiles; arithmetic, reductions and accumulators stay float32
    mixed_precision: str | None = None
    # let float32 tl.dot use TF32 tensor cores (faster, ~1e-3 relative error)
    allow_tf32: bool = False
    # wrap kernels in triton.autotune (only on a real GPU; the interpreter runs one config)
    autotune: bool = True
    # where generated kernel modules are written
    cache_dir: str = ""
    # kernels flag out-of-range take/gather/scatter indices; the run then raises DlcError
    check_indices: bool = True
    # largest tile (elements per program) of pointwise and row kernels
    max_tile: int = 4096

    @property
    def target(self) -> str:
        return "interpreter" if self.interpret else "cuda"


def _default_cache_dir() -> str:
    base = os.environ.get("DLC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dlc")
    return os.path.join(base, "triton")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # no torch: sources can still be generated for a GPU
        return False
    return bool(torch.cuda.is_available())


def _mixed(value) -> str | None:
    if value in (None, False):
        return None
    if value is True:
        return "float16"
    if value in LOW_PRECISION:
        return value
    raise ArgumentError(f"triton: mixed_precision must be False, True, 'float16' or "
                        f"'bfloat16', got {value!r}")


def enable_interpreter() -> None:
    """Make Triton interpret kernels in this process.

    triton.language's own jit functions (tl.sum, tl.max, ...) are made interpreted or
    compiled once, when triton is imported, from TRITON_INTERPRET: set it if triton is not
    imported yet, and refuse clearly if it was imported for compiling."""
    if "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"
    from triton.language import standard
    from triton.runtime.jit import JITFunction
    if isinstance(standard.sum, JITFunction):
        raise DlcError("triton: interpret=True, but this process imported triton for "
                       "compiling kernels (without TRITON_INTERPRET=1), so triton's own "
                       "functions cannot be interpreted; set TRITON_INTERPRET=1 before "
                       "anything imports triton")


def require_compiler() -> None:
    """The counterpart of enable_interpreter: compiled kernels need triton imported without
    TRITON_INTERPRET=1 (else its own jit functions are interpreted ones for good)."""
    from triton.language import standard
    from triton.runtime.jit import JITFunction
    if not isinstance(standard.sum, JITFunction):
        raise DlcError("triton: compiling kernels (interpret=False) in a process that "
                       "imported triton with TRITON_INTERPRET=1, whose own functions are "
                       "interpreted for good; compile in a process without it")


def resolve_options(**kw) -> TritonOptions:
    """TritonOptions from compile keywords; unset ones from the environment and the machine.

    interpret defaults to TRITON_INTERPRET=1, else to "no CUDA device"; the interpreter uses
    larger tiles (fewer programs to step through) and never autotunes."""
    known = {f.name for f in fields(TritonOptions)}
    unknown = set(kw) - known
    if unknown:
        raise ArgumentError(f"triton: unknown option(s) {sorted(unknown)}; options: "
                            f"{', '.join(sorted(known))}")
    interpret = kw.pop("interpret", None)
    if interpret is None:
        env = os.environ.get("TRITON_INTERPRET", "")
        interpret = env == "1" or (env != "0" and not _cuda_available())
    opts = TritonOptions(interpret=bool(interpret), device="cpu" if interpret else "cuda",
                         max_tile=16384 if interpret else 4096)
    if "mixed_precision" in kw:
        kw["mixed_precision"] = _mixed(kw["mixed_precision"])
    opts = replace(opts, **kw)
    if opts.interpret:  # one config: autotuning measures nothing meaningful on the CPU
        opts = replace(opts, autotune=False)
    if opts.interpret and opts.device != "cpu":
        raise ArgumentError(f"triton: the interpreter runs on torch CPU tensors; device "
                            f"{opts.device!r} needs interpret=False")
    if opts.max_tile < 16 or opts.max_tile & (opts.max_tile - 1):
        raise ArgumentError(f"triton: max_tile must be a power of two >= 16, got "
                            f"{opts.max_tile}")
    if not opts.cache_dir:
        opts = replace(opts, cache_dir=_default_cache_dir())
    return opts
