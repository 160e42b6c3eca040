"""Build-new graph rewriting: copy a graph's inputs into a Builder and replay its nodes.

Passes never mutate a graph. They map old values to new ones while emitting into a fresh
Builder; whatever is not replayed is gone (dead code), and whatever is replayed through the
same mapping is shared.
"""
from __future__ import annotations

from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Node, Value


def copy_inputs(builder: Builder, graph: Graph) -> dict[Value, Value]:
    """Add the graph's inputs (same names, roles, data) to `builder`; return old -> new."""
    return {v: builder.add_input(v.name, v.type, v.role, v.data) for v in graph.inputs}


def replay(builder: Builder, node: Node, env: dict[Value, Value]) -> Node:
    """Emit a copy of `node` with its inputs mapped through `env` (loc and scope kept; a
    node without a loc stays without one rather than taking the caller's line)."""
    inputs = tuple(env[v] for v in node.inputs)
    with builder.at(node.loc):
        return builder.emit(node.op, inputs, node.attrs, body=node.body, scope=node.scope)


def inline(builder: Builder, graph: Graph, args: list[Value]) -> list[Value]:
    """Emit `graph`'s nodes into `builder` with its inputs bound to `args`; return outputs."""
    env: dict[Value, Value] = dict(zip(graph.inputs, args))
    for node in graph.nodes:
        env[node] = replay(builder, node, env)
    return [env[v] for v in graph.outputs]
