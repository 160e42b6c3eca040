"""The op test matrix (tests/ops/harness.CASES) as a few big graphs for the llvm backend.

Compiling one graph per case would spend most of the suite's time in LLVM, so the cases are
grouped by op kind and dtype: each group becomes one graph (every case's node with its own
inputs, every node an output), compiled once. A group whose graph fails to compile falls
back to one graph per case, so a broken op fails only its own cases.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass, field

import numpy as np

from dlc.ir.builder import Builder
from dlc.ir.types import TensorType
from dlc.ops import OPS
from tests.ops import harness
from tests.ops.harness import CASES


def load_cases() -> list:
    for m in pkgutil.iter_modules([os.path.dirname(harness.__file__)]):
        if m.name.startswith("cases_"):
            importlib.import_module(f"tests.ops.{m.name}")
    return CASES


@dataclass
class Result:
    arrays: list
    output: np.ndarray | None = None
    error: BaseException | None = None


@dataclass
class Group:
    cases: list
    dtype: str
    results: dict = field(default_factory=dict)


def case_key(c, dtype: str) -> str:
    return f"{c.id}-{dtype}"


def build_group(items: list, name: str):
    """One graph: each (case, arrays) gets its inputs and its node as an output."""
    with Builder(name) as b:
        outs = []
        for n, (c, arrays) in enumerate(items):
            ins = [b.add_input(f"c{n}_a{i}", TensorType(a.shape, a.dtype.name))
                   for i, a in enumerate(arrays)]
            outs.append(b.emit(c.op, tuple(ins), dict(c.attrs)))
    return b.finish(outs)


def run_groups(rng: np.random.Generator, compile_fn) -> dict:
    """case key -> Result (the llvm output, or the error that stopped it)."""
    groups: dict = {}
    for c in load_cases():
        for dt in c.dtypes:
            key = (OPS[c.op].kind.value, dt)
            groups.setdefault(key, []).append((c, c.make_inputs(rng, dt)))
    results = {}
    for (kind, dt), items in groups.items():
        try:
            outs = _run(compile_fn, items, f"{kind}_{dt}")
            for (c, arrays), out in zip(items, outs):
                results[case_key(c, dt)] = Result(arrays, out)
        except Exception:
            for c, arrays in items:
                try:
                    out = _run(compile_fn, [(c, arrays)], c.op)[0]
                    results[case_key(c, dt)] = Result(arrays, out)
                except Exception as e:  # reported by that case's test
                    results[case_key(c, dt)] = Result(arrays, None, e)
    return results


def _run(compile_fn, items: list, name: str) -> list:
    graph = build_group(items, name)
    exe = compile_fn(graph)
    outs = exe(*[a for _, arrays in items for a in arrays])
    return list(outs) if isinstance(outs, tuple) else [outs]
