"""The memory plan: where each intermediate value lives in one arena.

`passes.memory.plan_memory` computes it and stores it in `graph.meta["memory_plan"]`; the
text form prints it (offsets as node attributes in the dump), and the llvm and triton
backends allocate the arena once per Executable and place every planned value at its offset.

Only values produced by top-level nodes are planned. Graph inputs live in the caller's (or
the Executable's) arrays. A graph output gets its own array unless `inplace` names it: then
it is written into the buffer of the input it aliases (a training step's parameter update).
"""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGNMENT = 64  # bytes: one cache line, and a whole AVX-512 vector


@dataclass
class MemoryPlan:
    arena_bytes: int
    # position of a top-level node in graph.nodes -> byte offset of its value in the arena
    offsets: dict[int, int] = field(default_factory=dict)
    # graph output index -> name of the param/state input whose buffer it overwrites in place
    inplace: dict[int, str] = field(default_factory=dict)
    # the execution order the offsets were planned for (positions in graph.nodes)
    schedule: list[int] = field(default_factory=list)
    alignment: int = ALIGNMENT
    # reporting only: naive bytes (every value its own buffer) and the peak of live bytes
    naive_bytes: int = 0
    lower_bound_bytes: int = 0
