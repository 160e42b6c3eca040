"""Timing: warm up, then repeat; a sample is the mean of enough back-to-back calls to last
about a millisecond, so that timer resolution does not blur microsecond kernels."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Samples:
    seconds: list[float] = field(default_factory=list)  # per call, one entry per sample

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)


def calls_per_sample(fn: Callable[[], object], target: float = 1e-3) -> int:
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return max(1, min(10_000, int(target / max(once, 1e-9))))


def measure(fn: Callable[[], object], repeat: int = 10, warmup: int = 2,
            inner: int | None = None) -> Samples:
    """Per-call times of `fn()` over `repeat` samples after `warmup` calls; a sample is
    `inner` back-to-back calls (by default as many as last about a millisecond)."""
    for _ in range(warmup):
        fn()
    if inner is None:
        inner = calls_per_sample(fn)
    out = Samples()
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        out.seconds.append((time.perf_counter() - start) / inner)
    return out
