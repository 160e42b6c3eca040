"""Dead-code elimination: keep what the outputs need.

Outputs include the aliased ones (a training step's updated parameters and optimizer state),
so updates survive. `input`, `param` and `state` inputs are the graph's interface and stay
even when unused; `const` inputs nothing reads are dropped.
"""
from __future__ import annotations

from dlc.ir.graph import Graph, Value
from passes.simplify.common import carry_meta


def live_values(graph: Graph) -> set[Value]:
    """Every value an output depends on, the outputs included."""
    live: set[Value] = set(graph.outputs)
    for node in reversed(graph.nodes):
        if node in live:
            live.update(node.inputs)
    return live


def dce(graph: Graph) -> Graph:
    """The graph without dead nodes and unused const inputs (the same graph if none)."""
    live = live_values(graph)
    inputs = [v for v in graph.inputs if v.role != "const" or v in live]
    nodes = [n for n in graph.nodes if n in live]
    if len(nodes) == len(graph.nodes) and len(inputs) == len(graph.inputs):
        return graph
    # Nodes are never mutated, so the new graph can share the live ones.
    return Graph(inputs, nodes, graph.outputs, graph.name, graph.aliases, carry_meta(graph))
