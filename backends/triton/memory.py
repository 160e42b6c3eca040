"""Where every intermediate lives: one arena per Executable, allocated once.

With a memory plan (graph.meta["memory_plan"], dlc/ir/plan.py) each planned node value sits
at the plan's offset. Values the plan does not place, and every value when there is no plan,
are placed by a small greedy planner of our own: buffers by decreasing size, each at the
lowest offset not overlapping a buffer alive at the same time (liveness over the kernel
order). Intermediates of one fused group that the kernel planner had to materialize share a
scratch region after that. Graph outputs get tensors of their own on every call (they are
handed to the caller), so they are not in the arena.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from dlc.errors import DlcError
from dlc.ir.graph import Graph
from backends.triton.program import Program

ALIGN = 64


class DeviceMemoryError(DlcError):
    """The device has too little free memory for the Executable's arena."""


@dataclass
class ArenaLayout:
    total_bytes: int
    offsets: dict[int, int] = field(default_factory=dict)  # node position -> byte offset
    scratch_base: int = 0
    planned_bytes: int = 0      # of which the memory plan placed
    own_bytes: int = 0          # of which our greedy planner placed


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def greedy_offsets(sizes: dict[int, int], live: dict[int, tuple[int, int]]) -> dict[int, int]:
    """Offsets for buffers (id -> bytes) alive over [first, last] kernel steps, no two
    overlapping in both time and space; the largest are placed first."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    out = {}
    for key in sorted(sizes, key=lambda k: (-sizes[k], k)):
        size, (first, last) = _align(sizes[key]), live[key]
        clashes = sorted((o, e) for o, e, f, l in placed if f <= last and first <= l)
        offset = 0
        for o, e in clashes:
            if offset + size <= o:
                break
            offset = max(offset, e)
        out[key] = offset
        placed.append((offset, offset + size, first, last))
    return out


def _liveness(kernels, outputs: set[int]) -> tuple[dict[int, int], dict[int, tuple[int, int]]]:
    sizes, live = {}, {}
    for step, kernel in enumerate(kernels):
        for ref in kernel.buffers():
            if ref.kind != "node" or ref.key in outputs:
                continue
            sizes[ref.key] = ref.nbytes
            first, _ = live.get(ref.key, (step, step))
            live[ref.key] = (first, step)
    return sizes, live


def layout(graph: Graph, program: Program, kernels: list, plan=None) -> ArenaLayout:
    """Arena offsets of every non-output node buffer the kernels use."""
    outputs = {k for k, n in enumerate(graph.nodes) if any(n is o for o in graph.outputs)}
    sizes, live = _liveness(kernels, outputs)
    offsets: dict[int, int] = {}
    base = 0
    if plan is not None:
        offsets = {p: off for p, off in plan.offsets.items() if p in sizes}
        base = _align(plan.arena_bytes)
    rest = {k: s for k, s in sizes.items() if k not in offsets}
    own = greedy_offsets(rest, live)
    own_bytes = max((own[k] + _align(rest[k]) for k in own), default=0)
    offsets.update({k: base + off for k, off in own.items()})
    scratch_base = base + own_bytes
    total = scratch_base + _align(program.scratch_bytes)
    return ArenaLayout(total, offsets, scratch_base, base, own_bytes)


def free_memory(device: str) -> int | None:
    """Free bytes on device (None if unknown). Tests replace this to fake a small device."""
    if device.startswith("cuda"):
        import torch
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(needed: int, device: str, what: str) -> None:
    free = free_memory(device)
    if free is not None and needed > free:
        raise DeviceMemoryError(
            f"triton: {what} needs {needed} bytes ({needed / 2 ** 20:.1f} MiB) of device "
            f"memory on {device}, but only {free} bytes ({free / 2 ** 20:.1f} MiB) are free")

