"""decompose-where-free: expand composite ops whose decomposition fusion makes free.

A composite op (softmax, layer_norm, the losses, dropout, ...) is expanded into the
primitives of its `decompose` rule when every primitive it produces is of a kind fusion
merges into one kernel (elementwise, reduction, movement): then the expansion costs nothing
at run time after fusion, and fusion, CSE and the other passes see through it. A
decomposition that would bring a contraction or an opaque op stays one node.

The expansion of each (op, attributes, input types) is tried once on a scratch graph.
"""
from __future__ import annotations

from typing import Any

from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Node, Value
from dlc.ops.registry import ELEMENTWISE, MOVEMENT, REDUCTION, Kind
from passes.simplify.common import attr_key, copy_node, rebuild

FREE_KINDS: frozenset[Kind] = frozenset({ELEMENTWISE, REDUCTION, MOVEMENT})

_FREE: dict[Any, bool] = {}  # (op, attrs, input types) -> is its decomposition free?


def _expand(b: Builder, node: Node, inputs: list[Value]) -> Value:
    """Emit the node's decomposition into `b` (which must be current) at its loc."""
    from dlc.tensor import Tensor
    with b.at(node.loc), b.scope(node.scope):
        out = node.op.decompose([Tensor(v) for v in inputs], dict(node.attrs))
    return out.value


def is_free(node: Node) -> bool:
    """Whether `node` has a decomposition made only of FREE_KINDS ops."""
    if node.op.decompose is None or node.body is not None:
        return False
    key = (node.op.name, attr_key(node.attrs), tuple(v.type for v in node.inputs))
    if key not in _FREE:
        with Builder("trial") as scratch:
            args = [scratch.add_input(f"a{i}", v.type) for i, v in enumerate(node.inputs)]
            _expand(scratch, node, args)
        _FREE[key] = all(n.op.kind in FREE_KINDS for n in scratch.nodes)
    return _FREE[key]


def decompose_free(graph: Graph) -> Graph:
    """Expand every composite node whose decomposition is free (see the module docstring),
    repeating while an expansion brings composite ops of its own."""
    def rule(b: Builder, node: Node, inputs: list[Value]) -> Value:
        return _expand(b, node, inputs) if is_free(node) else copy_node(b, node, inputs)

    while any(is_free(n) for n in graph.nodes):
        graph = rebuild(graph, rule)
    return graph
