"""Placing buffers in one arena: greedy by size with best fit.

A buffer is a value of the arena, or a chain of values that take each other's bytes in
place; it lives from its first value's step to its last value's last reader. Buffers are
placed one at a time, each at the lowest offset of the smallest gap left by the buffers
already placed that are live at the same time (the end of them if no gap fits). The order
matters: biggest first is the known near-optimal heuristic; longest-lived first and
earliest first are tried too, and the smallest arena wins.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlc.ir.plan import aligned


@dataclass
class Buffer:
    values: list[int]  # node positions sharing these bytes, in order
    size: int          # aligned bytes
    start: int         # first step it is live
    end: int           # last step it is live (inclusive)
    offset: int = 0

    def meets(self, other: "Buffer") -> bool:
        return self.start <= other.end and other.start <= self.end


def make_buffers(planned: list[int], ranges: dict[int, tuple[int, int]],
                 pairs: dict[int, int], nbytes: dict[int, int], alignment: int) -> list[Buffer]:
    """One buffer per in-place chain (pairs: value -> the input whose bytes it takes)."""
    head = {}
    for pos in sorted(planned, key=lambda p: ranges[p][0]):
        head[pos] = head[pairs[pos]] if pos in pairs else pos
    chains: dict[int, list[int]] = {}
    for pos in sorted(planned, key=lambda p: ranges[p][0]):
        chains.setdefault(head[pos], []).append(pos)
    return [Buffer(vals, aligned(nbytes[vals[0]], alignment), ranges[vals[0]][0],
                   max(ranges[v][1] for v in vals)) for vals in chains.values()]


def _place(buffers: list[Buffer], order: list[Buffer]) -> int:
    placed: list[Buffer] = []
    for buf in order:
        busy = sorted((p.offset, p.offset + p.size) for p in placed if p.meets(buf))
        best, top = None, 0
        for lo, hi in busy:
            gap = lo - top
            if gap >= buf.size and (best is None or gap < best[0]):
                best = (gap, top)
            top = max(top, hi)
        buf.offset = best[1] if best is not None else top
        placed.append(buf)
    return max((b.offset + b.size for b in buffers), default=0)


_ORDERS = {
    "size": lambda b: (-b.size, b.start),
    "lifetime": lambda b: (-(b.end - b.start), -b.size, b.start),
    "start": lambda b: (b.start, -b.size),
}


def assign_offsets(buffers: list[Buffer]) -> tuple[int, str]:
    """Set every buffer's offset; returns (arena bytes, the order that won)."""
    live = [b for b in buffers if b.size > 0]
    best = None
    for name, key in _ORDERS.items():
        arena = _place(live, sorted(live, key=key))
        if best is None or arena < best[0]:
            best = (arena, name, [b.offset for b in live])
    if best is None:
        return 0, "size"
    for b, off in zip(live, best[2]):
        b.offset = off
    return best[0], best[1]


def lower_bound(buffers: list[Buffer]) -> int:
    """The peak of bytes live at one step: no placement can use fewer."""
    events: dict[int, int] = {}
    for b in buffers:
        events[b.start] = events.get(b.start, 0) + b.size
        events[b.end + 1] = events.get(b.end + 1, 0) - b.size
    live = peak = 0
    for step in sorted(events):
        live += events[step]
        peak = max(peak, live)
    return peak
