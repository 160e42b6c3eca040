"""Forming the groups: every node, from the last to the first, roots a group unless an
earlier root took it; a group grows towards its producers, the latest first, as long as
`rules.decide` agrees. Taking the latest producer first means that when a producer comes up,
every reader of it that could join already has.
"""
from __future__ import annotations

import heapq

from dlc.ir.graph import Graph, Node
from dlc.ir.groups import role
from passes.fuse.log import FusionLog
from passes.fuse.rules import Context, Group, decide, why_not_fusible


def _record(log: FusionLog, ctx: Context, ok: bool, reason: str, p: Node, c: Node,
            detail: str, group: Group) -> None:
    record = log.add(ok, reason, ctx.pos[p], ctx.pos[c], p.op.name, c.op.name, detail)
    record.group = group  # replaced by the fused node's name once the groups are emitted


def _grow(group: Group, ctx: Context, taken: dict[Node, Group], log: FusionLog) -> None:
    heap = [(-ctx.pos[p], p) for p in ctx.producers(group.root)]
    heapq.heapify(heap)
    seen: set[Node] = set()
    while heap:
        _, p = heapq.heappop(heap)
        if p in seen or p in taken:
            continue
        seen.add(p)
        consumer = min((u for u in ctx.users[p] if u in group.members), key=ctx.pos.get)
        ok, reason, detail = decide(ctx, p, group)
        _record(log, ctx, ok, reason, p, consumer, detail, group)
        if not ok:
            continue
        if reason == "recompute":
            group.clones.append(p)
            continue
        group.add(p)
        taken[p] = group
        for q in ctx.producers(p):
            heapq.heappush(heap, (-ctx.pos[q], q))


def _needed_alone(node: Node, ctx: Context, taken: dict[Node, Group]) -> bool:
    """A no-input node stays a kernel of its own if a reader did not recompute it."""
    if node in ctx.outputs:
        return True
    return any(node not in taken[u].clones for u in ctx.users.get(node, ()))


def build_groups(graph: Graph, log: FusionLog) -> list[Group]:
    """The groups of `graph`, roots in graph order. No-input nodes that every reader
    recomputes are in no group: they disappear."""
    ctx = Context(graph)
    taken: dict[Node, Group] = {}
    groups: list[Group] = []
    for node in reversed(graph.nodes):
        if node in taken:
            continue
        if not node.inputs and role(node) is not None and node in ctx.users \
                and not _needed_alone(node, ctx, taken):
            continue
        group = Group(node)
        taken[node] = group
        groups.append(group)
        if role(node) is None:
            for p in ctx.producers(node):
                _record(log, ctx, False, "consumer_not_fusible", p, node,
                        why_not_fusible(node), group)
            continue
        _grow(group, ctx, taken, log)
    groups.reverse()
    check_acyclic(graph, groups, ctx)
    return groups


def check_acyclic(graph: Graph, groups: list[Group], ctx: Context) -> None:
    """The condensed graph (one vertex per group, an edge where a group reads another's
    value) must be acyclic. Groups are listed in the order they will be emitted (by root
    position, or the order multi-output merging computed); if every edge runs from an
    earlier group to a later one, that order is topological and no cycle can exist. An edge
    against the order is a bug of the rules, caught here before a graph is built."""
    owner: dict[Node, int] = {}
    for i, g in enumerate(groups):
        for m in g.members:
            owner[m] = i
    for i, g in enumerate(groups):
        for m in list(g.members) + g.clones:
            for p in ctx.producers(m):
                j = owner.get(p)
                if j is not None and j > i:
                    raise AssertionError(
                        f"fusion of @{graph.name}: group of {ctx.name(groups[i].root)} reads "
                        f"{ctx.name(p)} of the later group of {ctx.name(groups[j].root)}: the "
                        f"groups would form a cycle")
