"""Choosing the execution order: a topological order of the nodes, under extra "run before"
edges (every reader of a parameter before its in-place update), with a low peak of live
arena bytes.

The greedy list scheduler runs, among the ready nodes, the one that adds the fewest live
bytes (its value's size, if it lives in the arena, minus the values it is the last reader
of), ties to the earlier node. The planner plans both the given order and the greedy one
and keeps the smaller arena.

A multi-output fused node writes the values of its `result` nodes too: they count with it,
and its result nodes run right after it (they compute nothing).
"""
from __future__ import annotations

from dlc.ir.graph import Graph, Node
from dlc.ir.groups import results_of
from dlc.ir.plan import aligned, live_ranges, peak_of

Edges = dict[Node, set[Node]]  # node -> nodes that must run before it (beyond its inputs)


def predecessors(graph: Graph, extra: Edges) -> dict[Node, set[Node]]:
    index = set(graph.nodes)
    return {n: {v for v in n.inputs if v in index} | extra.get(n, set()) for n in graph.nodes}


def respects(order: list[Node], preds: dict[Node, set[Node]]) -> bool:
    step = {n: s for s, n in enumerate(order)}
    return all(step[p] < step[n] for n in order for p in preds[n])


def peak_bytes(graph: Graph, order: list[Node], alignment: int) -> int:
    """The most aligned bytes of arena values (non-output node values) live at one step."""
    position = {n: i for i, n in enumerate(graph.nodes)}
    ranges = live_ranges(graph, [position[n] for n in order])
    outputs = set(graph.outputs)
    return peak_of((first, last, aligned(graph.nodes[pos].type.nbytes, alignment))
                   for pos, (first, last) in ranges.items() if graph.nodes[pos] not in outputs)


def greedy_order(graph: Graph, preds: dict[Node, set[Node]], alignment: int) -> list[Node]:
    position = {n: i for i, n in enumerate(graph.nodes)}
    outputs = set(graph.outputs)
    results = results_of(graph.nodes)
    attached = {r for rs in results.values() for r in rs}  # placed with their fused node
    readers: dict[Node, set[Node]] = {n: set() for n in graph.nodes}
    for n in graph.nodes:
        for v in n.inputs:
            if v in readers and n not in attached:
                readers[v].add(n)
    pending = {n: len(readers[n]) for n in graph.nodes}  # readers not yet run
    waiting = {n: len(preds[n]) for n in graph.nodes}
    after: dict[Node, list[Node]] = {n: [] for n in graph.nodes}
    for n, ps in preds.items():
        for p in ps:
            after[p].append(n)
    ready = [n for n in graph.nodes if waiting[n] == 0 and n not in attached]
    order: list[Node] = []

    def growth(n: Node) -> int:
        size = sum(aligned(v.type.nbytes, alignment) for v in [n] + results.get(n, [])
                   if v not in outputs)
        freed = sum(aligned(v.type.nbytes, alignment) for v in set(n.inputs)
                    if v in pending and v not in outputs and pending[v] == 1)
        return size - freed

    def run(node: Node) -> None:
        order.append(node)
        if node not in attached:
            for v in set(node.inputs):
                if v in pending:
                    pending[v] -= 1
        for n in after[node]:
            waiting[n] -= 1
            if waiting[n] == 0 and n not in attached:
                ready.append(n)

    while ready:
        best = min(ready, key=lambda n: (growth(n), position[n]))
        ready.remove(best)
        for node in [best] + results.get(best, []):
            run(node)
    if len(order) != len(graph.nodes):
        raise AssertionError(f"schedule of @{graph.name}: the ordering constraints are cyclic")
    return order


def candidate_orders(graph: Graph, extra: Edges, alignment: int) -> list[list[Node]]:
    """The orders worth planning: the given order when it respects `extra`, and the greedy
    order when it differs (the planner keeps whichever places into the smaller arena)."""
    preds = predecessors(graph, extra)
    greedy = greedy_order(graph, preds, alignment)
    given = list(graph.nodes)
    if not respects(given, preds):
        return [greedy]
    return [given] if greedy == given else [given, greedy]
