"""What the simplification passes share: rebuilding a graph node by node, and recognising
constants and random ops.

Every pass here builds a new graph (STYLE 6): `rebuild` copies the inputs into a fresh
Builder and asks a rule for the new value of each old node, in order. A rule may return an
existing value (the node is replaced), emit one or more nodes, or copy the node as it is.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Input, Node, Value

# graph.meta entries that name node positions (a memory plan) or text positions (a parsed
# graph's source map): stale once nodes are rebuilt.
POSITIONAL_META = ("memory_plan", "source_map")

NodeRule = Callable[[Builder, Node, list[Value]], Value]
InputRule = Callable[[Builder, Graph], dict[Value, Value]]


def copy_inputs(b: Builder, graph: Graph) -> dict[Value, Value]:
    """Add the graph's inputs (name, type, role, data) to `b`; return old -> new."""
    return {v: b.add_input(v.name, v.type, v.role, v.data) for v in graph.inputs}


def carry_meta(graph: Graph) -> dict[str, Any]:
    """The meta a rebuilt graph keeps: everything but what names node positions."""
    return {k: v for k, v in graph.meta.items() if k not in POSITIONAL_META}


def emit_like(b: Builder, node: Node, inputs: list[Value], op: Any = None,
              attrs: dict | None = None) -> Node:
    """Emit a node at `node`'s loc and layer scope, by default a copy of it.

    `b.at` pins the loc even when it is None: a graph parsed from text has no locs, and a
    rewritten node must not pick up the pass's own caller as its location."""
    with b.at(node.loc):
        return b.emit(op or node.op, tuple(inputs), node.attrs if attrs is None else attrs,
                      body=node.body if op is None else None, loc=node.loc,
                      scope=node.scope)


def copy_node(b: Builder, node: Node, inputs: list[Value]) -> Value:
    """The rule of a pass that leaves `node` alone.

    A fused group is copied as it is: its attributes may go beyond the op's schema (a pass
    may note its ops or an offset there), which `emit` would reject."""
    if node.body is not None:
        copy = Node(node.op, tuple(inputs), node.attrs, node.type, node.loc, node.scope,
                    node.body)
        b.nodes.append(copy)
        return copy
    return emit_like(b, node, inputs)


def rebuild(graph: Graph, rule: NodeRule, inputs: InputRule = copy_inputs) -> Graph:
    """A new graph whose node values are `rule(builder, old_node, new_inputs)`."""
    with Builder(graph.name) as b:
        env = inputs(b, graph)
        for node in graph.nodes:
            new = rule(b, node, [env[v] for v in node.inputs])
            if new.type != node.type:
                raise AssertionError(f"internal: a rewrite of {node.op.name} "
                                     f"{node.where()} gave {new.type}, not {node.type}")
            env[node] = new
        out = b.finish([env[v] for v in graph.outputs], graph.aliases)
    out.meta = carry_meta(graph)
    return out


# -- random ops ----------------------------------------------------------------------------
# Every random op of the table (random_uniform, random_normal, dropout) draws its stream from
# a `salt` attribute and a seed input (dlc/ops/random.py); that attribute is how passes tell them.
RANDOM_ATTR = "salt"


def is_random(node: Node) -> bool:
    """Random ops are never folded or merged, even where their inputs are equal."""
    return RANDOM_ATTR in node.op.attr_map


# -- constants ------------------------------------------------------------------------------
def full_value(v: Value) -> float | None:
    """The fill value of a `full` node, else None."""
    if isinstance(v, Node) and v.op.name == "full" and v.body is None:
        return v.attrs["value"]
    return None


def const_data(v: Value) -> np.ndarray | None:
    """The data of a `const` input that carries it, else None (params can change)."""
    if isinstance(v, Input) and v.role == "const" and v.data is not None:
        return np.asarray(v.data)
    return None


def bits(a: np.ndarray) -> np.ndarray:
    """The array's elements as unsigned integers of the same width: equality of bits tells
    -0.0 from 0.0 and a NaN from itself."""
    return np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")


def splat(a: np.ndarray) -> Any | None:
    """The single value of a non-empty array whose elements are bitwise equal, else None."""
    if a.size == 0:
        return None
    flat = bits(a).reshape(-1)
    return a.reshape(-1)[0].item() if bool((flat == flat[0]).all()) else None


def splat_value(v: Value) -> Any | None:
    """The value every element of `v` is known to hold (a `full` node or a uniform const)."""
    value = full_value(v)
    if value is not None:
        return value
    data = const_data(v)
    return None if data is None else splat(data)


def attr_key(value: Any) -> Any:
    """A hashable key for attribute values that keeps -0.0 apart from 0.0 (== would not)."""
    if isinstance(value, dict):
        return tuple((k, attr_key(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(attr_key(v) for v in value)
    if isinstance(value, float):
        return ("float", repr(value))
    return value
