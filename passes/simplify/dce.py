"""Dead-code elimination: keep what the outputs need.

Outputs include the aliased ones (a training step's updated parameters and optimizer state),
so updates survive. `input`, `param` and `state` inputs are the graph's interface and stay
even when unused; `const` inputs nothing reads are dropped.

A fused node stays while anything reads it or one of its `result` nodes. A result node
nothing reads is dropped together with the value its fused body yields for it (and the body
nodes only that value needed); the remaining result nodes are renumbered, so every extra
output keeps exactly one result node.
"""
from __future__ import annotations

from dlc.ir.graph import Graph, Node, Value
from dlc.ir.groups import is_result, results_of
from passes.simplify.common import carry_meta


def live_values(graph: Graph) -> set[Value]:
    """Every value an output depends on, the outputs included."""
    live: set[Value] = set(graph.outputs)
    for node in reversed(graph.nodes):
        if node in live:
            live.update(node.inputs)
    return live


def _kept_outputs(graph: Graph, live: set[Value]) -> dict[Node, list[int]]:
    """fused node -> the indices of its body outputs to keep, for the live fused nodes that
    yield a value no live result node reads (output 0, the node's own value, always stays)."""
    out = {}
    for node, results in results_of(graph.nodes).items():
        if node not in live:
            continue
        read = sorted(r.attrs["index"] for r in results if r in live)
        if len(read) + 1 < len(node.body.outputs):
            out[node] = [0] + read
    return out


def _trimmed_body(body: Graph, kept: list[int]) -> Graph:
    trimmed = Graph(body.inputs, body.nodes, [body.outputs[k] for k in kept], body.name,
                    body.aliases, carry_meta(body))
    live = live_values(trimmed)
    trimmed.nodes = [n for n in body.nodes if n in live]
    return trimmed


def _rebuild(graph: Graph, live: set[Value], inputs: list, kept: dict[Node, list[int]]) -> Graph:
    """The live nodes, copied; fused nodes in `kept` yield only those outputs."""
    env: dict[Value, Value] = {v: v for v in inputs}
    nodes = []
    for node in graph.nodes:
        if node not in live:
            continue
        attrs, body = node.attrs, node.body
        if node in kept:
            body = _trimmed_body(body, kept[node])
        if is_result(node) and node.inputs[0] in kept:
            attrs = {**attrs, "index": kept[node.inputs[0]].index(attrs["index"])}
        copy = Node(node.op, tuple(env[v] for v in node.inputs), attrs, node.type, node.loc,
                    node.scope, body)
        env[node] = copy
        nodes.append(copy)
    return Graph(inputs, nodes, [env[v] for v in graph.outputs], graph.name, graph.aliases,
                 carry_meta(graph))


def dce(graph: Graph) -> Graph:
    """The graph without dead nodes and unused const inputs (the same graph if none)."""
    live = live_values(graph)
    inputs = [v for v in graph.inputs if v.role != "const" or v in live]
    kept = _kept_outputs(graph, live)
    if kept:
        return _rebuild(graph, live, inputs, kept)
    nodes = [n for n in graph.nodes if n in live]
    if len(nodes) == len(graph.nodes) and len(inputs) == len(graph.inputs):
        return graph
    # Nodes are never mutated, so the new graph can share the live ones.
    return Graph(inputs, nodes, graph.outputs, graph.name, graph.aliases, carry_meta(graph))
