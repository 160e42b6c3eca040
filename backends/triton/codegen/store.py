"""The one way generated kernels write a result: converted to the buffer's storage dtype."""
from __future__ import annotations

from backends.triton.codegen.builder import TL, KernelBuilder, Param, reg_dtype


def store(kb: KernelBuilder, param: Param, offset: str, val: str, dtype: str,
          mask: str | None) -> None:
    """tl.store of `val` (a value of graph dtype `dtype`) at param + offset."""
    if param.dtype != reg_dtype(dtype):
        val = f"{val}.to({TL[param.dtype]})"
    kb.store(param.name if offset == "0" else f"{param.name} + {offset}", val, mask)
