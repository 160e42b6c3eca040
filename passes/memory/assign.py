"""Placing buffers in one arena: greedy by size with best fit.

A buffer is a value of the arena, or a chain of values that take each other's bytes in
place; it lives from its first value's step to its last value's last reader. Buffers are
placed one at a time, each at the lowest offset of the smallest gap left by the buffers
already placed that are live at the same time (the end of them if no gap fits). The order
matters: biggest first is the known near-optimal heuristic; longest-lived first, earliest
first, largest size x lifetime first and biggest-latest first are tried too, and the
smallest arena wins.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from dlc.ir.plan import aligned, peak_of


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
    "area": lambda b: (-b.size * (b.end - b.start + 1), b.start),
    "size, last first": lambda b: (-b.size, -b.end),
}


# the shuffled orders tried when no heuristic order reaches the lower bound: placing n
# buffers costs about n^2 steps, and this many steps in all stay well under a second
SHUFFLE_BUDGET = 200_000
SHUFFLES_MAX = 64


def assign_offsets(buffers: list[Buffer]) -> tuple[int, str]:
    """Set every buffer's offset; returns (arena bytes, the order that won). When no
    heuristic order reaches the lower bound, a few seeded shuffles are tried too (small
    graphs with many tiny values are where the heuristics fall short)."""
    live = [b for b in buffers if b.size > 0]
    best = None
    for name, key in _ORDERS.items():
        arena = _place(live, sorted(live, key=key))
        if best is None or arena < best[0]:
            best = (arena, name, [b.offset for b in live])
    if best is None:
        return 0, "size"
    bound = lower_bound(live)
    rnd = random.Random(0)
    tries = min(SHUFFLES_MAX, SHUFFLE_BUDGET // max(len(live) ** 2, 1))
    for _ in range(tries):
        if best[0] <= bound:
            break
        order = list(live)
        rnd.shuffle(order)
        arena = _place(live, order)
        if arena < best[0]:
            best = (arena, "shuffled", [b.offset for b in live])
    for b, off in zip(live, best[2]):
        b.offset = off
    return best[0], best[1]


def lower_bound(buffers: list[Buffer]) -> int:
    """The peak of bytes live at one step: no placement can use fewer."""
    return peak_of((b.start, b.end, b.size) for b in buffers)
