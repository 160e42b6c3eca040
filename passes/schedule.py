"""schedule: order the nodes so fewer bytes are live at once.

The order of `graph.nodes` is the execution order every backend and the memory planner
follow. Tracing gives the order the user's code ran in, which can keep a big value alive
while unrelated work runs. This pass is a greedy list scheduler: among the nodes whose
inputs are ready, run the one that adds the fewest live bytes (its output size minus the
inputs it is the last reader of), ties going to the earlier node in the current order. It
keeps the new order only when its peak of live bytes is lower than the current order's,
so it never makes the peak worse.

Live bytes count the values of top-level nodes from the node that computes them to their
last reader; graph outputs stay live to the end. Inputs live in the caller's arrays.
"""
from __future__ import annotations

import heapq

from dlc.ir.graph import Graph, Node, Value
from passes.simplify.common import carry_meta


def peak_live_bytes(graph: Graph, order: list[Node] | None = None) -> int:
    """The most bytes of node values live at once when the nodes run in `order`."""
    order = graph.nodes if order is None else order
    last_use: dict[Value, int] = {}
    for step, node in enumerate(order):
        for v in node.inputs:
            last_use[v] = step
    outputs = set(graph.outputs)
    live = peak = 0
    dying: dict[int, int] = {}
    for step, node in enumerate(order):
        live += node.type.nbytes
        peak = max(peak, live)
        if node not in outputs and node not in last_use:
            live -= node.type.nbytes  # computed and never read: dead at once
        elif node not in outputs:
            dying[last_use[node]] = dying.get(last_use[node], 0) + node.type.nbytes
        live -= dying.pop(step, 0)
    return peak


def _greedy_order(graph: Graph) -> list[Node]:
    position = {n: i for i, n in enumerate(graph.nodes)}
    users: dict[Value, list[Node]] = graph.users()
    outputs = set(graph.outputs)
    remaining = {v: len(set(us)) for v, us in users.items()}  # readers not yet run
    waiting = {n: len({v for v in n.inputs if v in position}) for n in graph.nodes}
    done: set[Node] = set()

    def delta(n: Node) -> int:
        freed = sum(v.type.nbytes for v in set(n.inputs)
                    if v in position and v not in outputs and remaining[v] == 1)
        return n.type.nbytes - freed

    heap = [(delta(n), position[n], n) for n in graph.nodes if waiting[n] == 0]
    heapq.heapify(heap)
    order: list[Node] = []
    while heap:
        d, pos, n = heapq.heappop(heap)
        if n in done:
            continue
        if d != delta(n):  # stale: its inputs' other readers have run since
            heapq.heappush(heap, (delta(n), pos, n))
            continue
        done.add(n)
        order.append(n)
        for v in set(n.inputs):
            remaining[v] -= 1
            if remaining[v] == 1:  # its last reader may now free it: re-rank that reader
                for u in users[v]:
                    if u not in done and waiting[u] == 0:
                        heapq.heappush(heap, (delta(u), position[u], u))
        for u in set(users.get(n, ())):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(heap, (delta(u), position[u], u))
    return order


def schedule(graph: Graph) -> Graph:
    """The graph with its nodes in a lower-peak order (the same graph if none is found)."""
    order = _greedy_order(graph)
    if len(order) != len(graph.nodes):
        raise AssertionError(f"internal: schedule ordered {len(order)} of "
                             f"{len(graph.nodes)} nodes of @{graph.name}")
    if order == graph.nodes or peak_live_bytes(graph, order) >= peak_live_bytes(graph):
        return graph
    # Nodes are never mutated, so the reordered graph shares them.
    return Graph(graph.inputs, order, graph.outputs, graph.name, graph.aliases,
                 carry_meta(graph))
