"""Code generation: a Graph to a Program of generated Triton kernels (source text only;
neither torch nor triton is imported, so sources can be generated and dumped anywhere)."""
from __future__ import annotations

from typing import Callable

from dlc.ir.graph import Graph, Value
from backends.triton.codegen.mathlib import HELPERS
from backends.triton.codegen.planner import plan_group
from backends.triton.groups import make_groups
from backends.triton.options import TritonOptions
from backends.triton.program import Program

ALIGN = 64


def storage_policy(graph: Graph, options: TritonOptions) -> Callable[[Value], str]:
    """Storage dtype of each value: its own, except float32 values under mixed precision,
    stored in float16/bfloat16. A training step keeps its parameters, optimizer state and
    outputs (new parameters, the loss) in float32: low-precision master weights would lose
    the small updates."""
    low = options.mixed_precision
    train = bool(graph.meta.get("train_step"))
    kept = {id(v) for v in graph.outputs} if train else set()
    if train:
        kept |= {id(v) for v in graph.inputs if v.role != "input"}

    def storage(v: Value) -> str:
        if low and v.dtype == "float32" and id(v) not in kept:
            return low
        return v.dtype
    return storage


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def generate_program(graph: Graph, options: TritonOptions) -> Program:
    storage = storage_policy(graph, options)
    sites: list = []
    kernels = []
    for group in make_groups(graph, storage):
        # empty outputs get no kernel; the launcher still allocates their buffers
        kernels += plan_group(group, options, sites, storage)
    # each group's scratch values side by side; groups run one after another, so they share
    offsets, per_group = {}, {}
    for k in kernels:
        for ref in k.buffers():
            if ref.kind == "scratch" and ref.key not in offsets:
                start = per_group.get(ref.key[0], 0)
                offsets[ref.key] = start
                per_group[ref.key[0]] = start + _align(ref.nbytes)
    return Program(graph.name, HELPERS, kernels, sites, max(per_group.values(), default=0),
                   offsets, [storage(v) for v in graph.inputs],
                   [storage(v) for v in graph.outputs])
