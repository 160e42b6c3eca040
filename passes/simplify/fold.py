"""Constant folding: a node whose inputs are all constants is computed at compile time.

Constants are `const` inputs that carry data, nodes computed from no inputs (`full`,
`arange`) and values folded earlier. Parameters are not: their values change between calls
and training steps. A value is computed by the op's own numpy reference, so folding
changes nothing in the result.

A folded value whose elements are all equal becomes a `full` node (no storage, and the text
form shows its value); any other becomes a new `const` input named `fold.<hash of its
bytes>`, so equal arrays get one name and a dump's weights file can hold every stage's.

Not folded: random ops (their stream is part of the program), nodes without inputs (a
`full` or an `arange` is as cheap as a constant), fused groups, arrays past
`MAX_ELEMENTS`, and non-uniform results that would grow past `MAX_GROWTH` times their
constant inputs (a broadcast of a small table stays a broadcast, not a big array).
"""
from __future__ import annotations

import hashlib

import numpy as np

from dlc.errors import DlcError
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Node, Value
from dlc.ir.types import TensorType
from passes.simplify.common import (bits, const_data, copy_node, emit_like, is_random,
                                    rebuild, splat)

MAX_ELEMENTS = 1 << 22   # inputs and results folded at most this big
MAX_GROWTH = 4           # a non-uniform result may be this many times its inputs' size...
SMALL = 4096             # ...or this many elements, whichever is more


def fold(graph: Graph) -> Graph:
    """Fold every node whose inputs are all constants (see the module docstring)."""
    known: dict[Value, np.ndarray] = {}

    def value_of(v: Value) -> np.ndarray | None:
        if v not in known:
            data = const_data(v)
            if data is None and _is_source(v):
                data = _evaluate(v, [])
            if data is None:
                return None
            known[v] = data
        return known[v]

    def rule(b: Builder, node: Node, inputs: list[Value]) -> Value:
        if not _foldable(node):
            return copy_node(b, node, inputs)
        arrays = [value_of(v) for v in inputs]
        if any(a is None or a.size > MAX_ELEMENTS for a in arrays):
            return copy_node(b, node, inputs)
        result = _evaluate(node, arrays)
        if result is None or not _worth_storing(result, arrays):
            return copy_node(b, node, inputs)
        new = _materialize(b, node, result)
        known[new] = result
        return new

    return rebuild(graph, rule)


def _is_source(v: Value) -> bool:
    """A node computed from nothing (full, arange): a constant, unless it is random."""
    return isinstance(v, Node) and not v.inputs and v.body is None and not is_random(v) \
        and v.type.size <= MAX_ELEMENTS


def _foldable(node: Node) -> bool:
    return bool(node.inputs) and node.body is None and not is_random(node) \
        and node.type.size <= MAX_ELEMENTS


def _evaluate(node: Node, arrays: list[np.ndarray]) -> np.ndarray | None:
    """The node's value by its numpy reference; None where the op rejects the data (the
    error then surfaces when the program runs, as it would without folding)."""
    try:
        with np.errstate(all="ignore"):  # 1/0 folds to inf, as it computes at run time
            result = np.asarray(node.op.impl(*arrays, **node.attrs))
    except DlcError:
        return None
    if result.shape != node.type.shape or result.dtype.name != node.type.dtype:
        raise AssertionError(f"internal: {node.op.name} {node.where()} computed "
                             f"{result.dtype.name}{list(result.shape)}, its type is "
                             f"{node.type}")
    return result


def _worth_storing(result: np.ndarray, arrays: list[np.ndarray]) -> bool:
    if _fill_value(result) is not None:
        return True
    return result.size <= max(MAX_GROWTH * sum(a.size for a in arrays), SMALL)


def _fill_value(result: np.ndarray) -> float | None:
    """The `value` attribute of a `full` node equal to `result`, if there is one."""
    if result.size == 0:
        return 0.0
    if splat(result) is None:
        return None
    first = result.reshape(-1)[:1]
    as_float = float(first[0])
    back = np.array([as_float]).astype(result.dtype)  # an int64 past 2**53 does not survive
    return as_float if bits(back)[0] == bits(first)[0] else None


def _materialize(b: Builder, node: Node, result: np.ndarray) -> Value:
    value = _fill_value(result)
    if value is not None:
        attrs = {"shape": result.shape, "value": value, "dtype": result.dtype.name}
        return emit_like(b, node, [], op="full", attrs=attrs)
    name = "fold." + hashlib.sha1(result.dtype.name.encode() + str(result.shape).encode()
                                  + np.ascontiguousarray(result).tobytes()).hexdigest()[:10]
    existing = next((v for v in b.inputs if v.name == name), None)
    if existing is not None:  # the same bytes folded twice: one input
        return existing
    return b.add_input(name, TensorType(result.shape, result.dtype.name), "const", result)
