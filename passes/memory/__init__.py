"""plan_memory: the execution order and a place in one arena for every intermediate value.

    planned = plan_memory(graph)
    plan = planned.meta["memory_plan"]     # a dlc.ir.plan.MemoryPlan
    print(memory_table(planned))           # every buffer: size, offset, lifetime, reuse
    plot_memory(planned, "memory.png")     # offset x step, one box per buffer

Steps (each a small module):
1. in-place updates (inplace.py): aliased outputs of a training step are written into
   their input's buffer when every other reader of the old value can run first;
2. schedule (schedule.py): a topological order, under those "readers first" edges: the
   given order and a greedy low-peak order are both planned; the nodes of the result are
   in the chosen order (plan.schedule is the identity), so a dump reads in execution order;
3. liveness: each value lives from its node's step to its last reader's (dlc/ir/plan.py);
4. reuse (inplace.py): a node that reads a dying input elementwise takes its buffer;
5. views (views.py): index maps every reader can read through take no bytes; their
   source lives until those readers have run;
6. offsets (assign.py): greedy by size with best fit, and two other orders; the smallest
   arena over orders and reuse on/off wins. The plan records naive bytes (every value its
   own buffer) and the lower bound (the peak of live bytes of the chosen order and buffers),
   and passes the plan verifier (dlc/ir/plan_check.py).

Graph outputs get their own arrays (or their input's buffer, when updated in place); graph
inputs live in the caller's arrays; only values of top-level nodes are planned. The values
of a multi-output kernel's `result` nodes are written when the kernel runs: they live from
its step, and each may take the buffer of a different input dying there.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlc.ir.graph import Graph, Node, Value
from dlc.ir.plan import ALIGNMENT, MemoryPlan, aligned, live_ranges, planned_positions
from passes.memory.arena import run_with_plan  # noqa: F401
from passes.memory.assign import assign_offsets, lower_bound, make_buffers
from passes.memory.inplace import plan_reuse, plan_updates
from passes.memory.report import memory_table, plot_memory  # noqa: F401
from passes.memory.schedule import candidate_orders
from passes.memory.views import choose_views

# index maps whose readers can read through them become views (passes/memory/views.py)
VIEWS = True

PLAN_KEY = "memory_plan"
# graph.meta entries that name node positions or parsed text positions: stale after a rebuild
POSITIONAL_META = (PLAN_KEY, "source_map")


def reordered(graph: Graph, order: list[Node]) -> Graph:
    """A copy of `graph` whose nodes run in `order` (bodies shared, meta carried)."""
    env: dict[Value, Value] = {v: v for v in graph.inputs}
    nodes = []
    for node in order:
        copy = Node(node.op, tuple(env[v] for v in node.inputs), node.attrs, node.type,
                    node.loc, node.scope, node.body)
        env[node] = copy
        nodes.append(copy)
    meta = {k: v for k, v in graph.meta.items() if k not in POSITIONAL_META}
    return Graph(list(graph.inputs), nodes, [env[v] for v in graph.outputs], graph.name,
                 graph.aliases, meta)


@dataclass
class _Attempt:
    graph: Graph
    buffers: list
    arena: int
    bound: int
    reuse: bool
    views: list[int]


def _attempt(graph: Graph, order: list[Node], reuse: bool, alignment: int,
             views: set[Node]) -> _Attempt:
    """Plan `graph` run in `order`, with or without in-place reuse of dying inputs."""
    out = reordered(graph, order)
    view_pos = [i for i, n in enumerate(order) if n in views]
    planned = planned_positions(out, view_pos)
    ranges = live_ranges(out, list(range(len(out.nodes))), view_pos)
    pairs = plan_reuse(out, planned, ranges, view_pos)[0] if reuse else {}
    nbytes = {p: out.nodes[p].type.nbytes for p in planned}
    buffers = make_buffers(planned, ranges, pairs, nbytes, alignment)
    arena, _ = assign_offsets(buffers)
    return _Attempt(out, buffers, arena, lower_bound(buffers), reuse, view_pos)


def plan_memory(graph: Graph, alignment: int = ALIGNMENT) -> Graph:
    """A new graph, its nodes in the planned order, with graph.meta["memory_plan"].

    It plans the given order and the greedy low-peak order, each with and without in-place
    reuse (a chain of in-place values is one long-lived buffer, which can fragment the
    arena), and keeps the smallest arena (ties: the lower bound, then reuse)."""
    from dlc.ir.plan_check import verify_plan
    updates = plan_updates(graph)
    views = choose_views(graph, updates.inplace) if VIEWS else set()
    attempts = [_attempt(graph, order, reuse, alignment, views)
                for order in candidate_orders(graph, updates.edges, alignment)
                for reuse in (True, False)]
    best = min(attempts, key=lambda a: (a.arena, a.bound, not a.reuse))
    out = best.graph
    nbytes = [out.nodes[p].type.nbytes for p in planned_positions(out)]
    out.meta[PLAN_KEY] = MemoryPlan(
        arena_bytes=best.arena, offsets={p: b.offset for b in best.buffers for p in b.values},
        inplace=updates.inplace, schedule=list(range(len(out.nodes))), alignment=alignment,
        naive_bytes=sum(aligned(n, alignment) for n in nbytes), lower_bound_bytes=best.bound,
        views=best.views)
    verify_plan(out)  # the planner's own plan must pass the plan verifier
    return out
