"""A benchmark workload: a dlc computation, its sizes, its cost model and the same
computation written for each peer.

`build(**size)` returns what a model file's factory returns, `(model_or_function_or_graph,
[specs])`. A peer is a function `make(target, size) -> callable` that takes the same numpy
input arrays as the dlc Executable and returns the same output(s), so the harness can check
agreement before timing. `flops` and `bytes` give the compulsory work for the floors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

PeerFactory = Callable[[Any, dict], Callable[..., Any]]


@dataclass
class Workload:
    name: str
    build: Callable[..., tuple]
    size: dict                       # the standard sizes
    tiny: dict                       # sizes for the harness's own tests
    flops: Callable[[dict], float] = lambda size: 0.0
    bytes: Callable[[dict], float] = lambda size: 0.0
    peers: dict[str, PeerFactory] = field(default_factory=dict)
    # peers that have no sensible version of this workload, with the reason shown in the
    # table instead of a time
    unavailable: dict[str, str] = field(default_factory=dict)
    # outputs of a peer are compared to dlc's with these tolerances (float32 math differs in
    # summation order and in transcendental implementations)
    rtol: float = 1e-4
    atol: float = 1e-5
    # a training step returns its loss and updates state: peers are compared on the loss of
    # the first step only
    training: bool = False
    # integer inputs (labels, indices) are drawn from [0, int_high)
    int_high: int = 2
    doc: str = ""
