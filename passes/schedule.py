"""schedule: order the nodes so fewer bytes are live at once.

The order of `graph.nodes` is the execution order every backend and the memory planner
follow. Tracing gives the order the user's code ran in, which can keep a big value alive
while unrelated work runs. This pass is a greedy list scheduler: among the nodes whose
inputs are ready, run the one that adds the fewest live bytes (its output size minus the
inputs it is the last reader of), ties going to the earlier node in the current order. It
keeps the new order only when its peak of live bytes is lower than the current order's,
so it never makes the peak worse.

Live bytes count the values of top-level nodes from the node that computes them to their
last reader; graph outputs stay live to the end. Inputs live in the caller's arrays. A
multi-output fused node computes the values of its `result` nodes too: they count from its
step, and its result nodes run right after it.
"""
from __future__ import annotations

import heapq

from dlc.ir.graph import Graph, Node, Value
from dlc.ir.groups import results_of
from dlc.ir.plan import live_ranges, peak_of
from passes.simplify.common import carry_meta


def peak_live_bytes(graph: Graph, order: list[Node] | None = None) -> int:
    """The most bytes of node values live at once when the nodes run in `order`."""
    order = graph.nodes if order is None else order
    position = {n: i for i, n in enumerate(graph.nodes)}
    ranges = live_ranges(graph, [position[n] for n in order])
    outputs, end = set(graph.outputs), len(order) - 1
    return peak_of((first, end if graph.nodes[pos] in outputs else last,
                    graph.nodes[pos].type.nbytes) for pos, (first, last) in ranges.items())


def _greedy_order(graph: Graph) -> list[Node]:
    position = {n: i for i, n in enumerate(graph.nodes)}
    outputs = set(graph.outputs)
    results = results_of(graph.nodes)
    attached = {r for rs in results.values() for r in rs}  # run right after their fused node
    users: dict[Value, list[Node]] = graph.users()
    remaining = {v: len({u for u in us if u not in attached})  # readers not yet run
                 for v, us in users.items()}
    waiting = {n: len({v for v in n.inputs if v in position}) for n in graph.nodes}
    done: set[Node] = set()

    def delta(n: Node) -> int:
        written = sum(v.type.nbytes for v in [n] + results.get(n, []))
        freed = sum(v.type.nbytes for v in set(n.inputs)
                    if v in position and v not in outputs and remaining[v] == 1)
        return written - freed

    heap = [(delta(n), position[n], n) for n in graph.nodes if waiting[n] == 0]
    heapq.heapify(heap)
    order: list[Node] = []

    def run(n: Node) -> None:
        done.add(n)
        order.append(n)
        for v in set(n.inputs) if n not in attached else ():
            remaining[v] -= 1
            if remaining[v] == 1:  # its last reader may now free it: re-rank that reader
                for u in users[v]:
                    if u not in done and waiting[u] == 0 and u not in attached:
                        heapq.heappush(heap, (delta(u), position[u], u))
        for u in set(users.get(n, ())):
            waiting[u] -= 1
            if waiting[u] == 0 and u not in attached:
                heapq.heappush(heap, (delta(u), position[u], u))

    while heap:
        d, pos, n = heapq.heappop(heap)
        if n in done:
            continue
        if d != delta(n):  # stale: its inputs' other readers have run since
            heapq.heappush(heap, (delta(n), pos, n))
            continue
        for m in [n] + results.get(n, []):
            run(m)
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
