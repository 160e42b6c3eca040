"""Common-subexpression elimination: one node per (op, inputs, attributes).

A node equal to an earlier one (same op, the same input values, equal attributes, where
-0.0 and 0.0 differ) is replaced by it, and so are `const` inputs with equal type and bytes.
Random ops are kept apart even with equal seeds and salts, and so are fused groups (so the
`result` nodes of distinct fused nodes never meet). The duplicates become dead; `dce`
removes them (and unused const inputs).
"""
from __future__ import annotations

import hashlib
from typing import Any

from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Node, Value
from passes.simplify.common import (attr_key, const_data, copy_inputs, copy_node, is_random,
                                    rebuild)


def cse(graph: Graph) -> Graph:
    """Merge equal nodes and equal constants (see the module docstring)."""
    seen: dict[Any, Value] = {}

    def rule(b: Builder, node: Node, inputs: list[Value]) -> Value:
        if node.body is not None or is_random(node):
            return copy_node(b, node, inputs)
        key = (node.op.name, tuple(inputs), attr_key(node.attrs))
        if key not in seen:
            seen[key] = copy_node(b, node, inputs)
        return seen[key]

    return rebuild(graph, rule, inputs=_merge_consts)


def _merge_consts(b: Builder, graph: Graph) -> dict[Value, Value]:
    """Copy the inputs; a const equal to an earlier one stands for it."""
    env = copy_inputs(b, graph)
    first: dict[tuple, Value] = {}
    for old in graph.inputs:
        data = const_data(old)
        if data is None:
            continue
        key = (old.type, hashlib.sha1(data.tobytes()).hexdigest())
        env[old] = first.setdefault(key, env[old])
    return env
