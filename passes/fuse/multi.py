"""Multi-output fusion: pointwise kernels that yield several values (passes.fuse.MULTI_OUTPUT).

It runs after the single-output groups are formed (grouping.py) and merges whole groups,
watching the condensed graph (one vertex per group, an edge where a group reads a value
of another) so that it stays acyclic. Two decisions, each a record in the fusion log:

- `multi_output`: a pointwise group G reads a value of a pointwise producer group P that
  is also read outside G (or is a graph output): an Adam update's m' and v' are step
  outputs and read by p'. P joins G and its value becomes an extra output of G's kernel,
  which then reads g, m, v and p once and writes p', m' and v'. Taken when every output
  of P has G's domain shape (the contract of a multi-output pointwise body) and no other
  path leads from P to G (through a third kernel, which would then both feed the merged
  kernel and read it: a cycle). Groups are visited consumers first, and a group keeps
  taking producers until none qualifies.
- `horizontal`: two pointwise groups of one domain shape, neither reading the other
  (directly or through other kernels), become one kernel when it pays: they read a common
  value of the domain's shape (read once instead of twice), or both domains are small
  (fewer than SMALL_DOMAIN elements: one launch instead of two) and the graph is compiled
  for a target where a launch costs (graph.meta["launches"] == "costly": a GPU; a CPU
  backend runs a small kernel as a plain call on one thread). Bounded so that it does
  not trade memory for launches: the outputs of the merged kernel lie at most
  HORIZONTAL_WINDOW nodes apart in the graph fusion works on, since the merged kernel runs
  once both groups' inputs are ready, which keeps the earlier group's inputs alive and
  brings its outputs forward by as much.

Either merge is refused once the kernel would have more than MAX_OUTPUTS outputs. A
refused multi_output candidate keeps its `multi_use` or `graph_output` record, with the
reason it did not join added to the detail; horizontal pairs that are not merged leave no
record (there are too many of them, and each group's own records explain it).
"""
from __future__ import annotations

import heapq

from dlc.ir.graph import Node, Value
from dlc.ir.groups import POINTWISE, role
from passes.fuse.log import FusionLog, FusionRecord
from passes.fuse.rules import Context, Group

MAX_OUTPUTS = 8
SMALL_DOMAIN = 32768      # elements: below this, a launch costs more than the work
HORIZONTAL_WINDOW = 32    # nodes between the outputs of a horizontally merged kernel


class Condensed:
    """The groups as a DAG, kept up to date as groups merge, with a topological order:
    ready groups go in the order of their last member in the graph (so with no merge, the
    order of their roots)."""

    def __init__(self, groups: list[Group], ctx: Context):
        self.ctx = ctx
        self.owner: dict[Node, Group] = {m: g for g in groups for m in g.members}
        self.succ: dict[Group, set[Group]] = {g: set() for g in groups}
        self.pred: dict[Group, set[Group]] = {g: set() for g in groups}
        for g in groups:
            for m in g.members:
                for q in ctx.producers(m):
                    source = self.owner.get(q)
                    if source is not None and source is not g:
                        self.succ[source].add(g)
                        self.pred[g].add(source)
        self.order: list[Group] = []
        self.index: dict[Group, int] = {}
        self.renumber()

    def last(self, g: Group) -> int:
        return max(self.ctx.pos[m] for m in g.members)

    def renumber(self) -> None:
        waiting = {g: len(ps) for g, ps in self.pred.items()}
        heap = [(self.last(g), id(g), g) for g, n in waiting.items() if n == 0]
        heapq.heapify(heap)
        order = []
        while heap:
            _, _, g = heapq.heappop(heap)
            order.append(g)
            for s in self.succ[g]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    heapq.heappush(heap, (self.last(s), id(s), s))
        if len(order) != len(self.pred):
            raise AssertionError("fusion: merging groups made the condensed graph cyclic")
        self.order, self.index = order, {g: i for i, g in enumerate(order)}

    def reaches(self, source: Group, target: Group, skip: Group | None = None) -> bool:
        """Is there a path source -> ... -> target whose first step is not to `skip`?"""
        bound = self.index[target]
        stack = [s for s in self.succ[source] if s is not skip and self.index[s] <= bound]
        seen = set(stack)
        while stack:
            g = stack.pop()
            if g is target:
                return True
            for s in self.succ[g]:
                if s not in seen and self.index[s] <= bound:
                    seen.add(s)
                    stack.append(s)
        return False

    def merge(self, keep: Group, gone: Group) -> None:
        """`keep` absorbs `gone`: its members, and its edges."""
        keep.absorb(gone)
        for m in gone.members:
            self.owner[m] = keep
        for p in self.pred.pop(gone):
            self.succ[p].discard(gone)
            if p is not keep:
                self.succ[p].add(keep)
                self.pred[keep].add(p)
        for s in self.succ.pop(gone):
            self.pred[s].discard(gone)
            if s is not keep:
                self.pred[s].add(keep)
                self.succ[keep].add(s)
        keep.extras = exits(keep, self.ctx)
        self.renumber()


def exits(group: Group, ctx: Context) -> list[Node]:
    """The members other than the root whose value is needed outside the group."""
    return sorted((m for m in group.members if m is not group.root and (
        m in ctx.outputs or any(u not in group.members for u in ctx.users.get(m, ())))),
        key=ctx.pos.get)


def is_pointwise(group: Group) -> bool:
    return all(role(m) == POINTWISE for m in group.members)


def _outside_readers(ctx: Context, value: Node, group: Group) -> str:
    readers = [ctx.name(u) for u in ctx.users.get(value, ()) if u not in group.members]
    where = ["a graph output"] if value in ctx.outputs else []
    if readers:
        where.append("read by " + ", ".join(readers[:3]) + (" ..." if len(readers) > 3
                                                             else ""))
    return " and ".join(where)


# -- multi_output ----------------------------------------------------------------------------
def _extra_output_problem(cond: Condensed, p: Group, g: Group) -> str | None:
    """Why producer group `p` may not join `g` with its values as extra outputs, or None."""
    domain = g.root.type.shape
    for o in p.outputs:
        if o.type.shape != domain:
            return (f"{cond.ctx.name(o)} gives {o.type}, not the kernel's domain "
                    f"{list(domain)}")
    count = len(g.outputs) + len(p.outputs)
    if count > MAX_OUTPUTS:
        return f"the kernel would have {count} outputs, at most {MAX_OUTPUTS}"
    if cond.reaches(p, g, skip=g):
        return "another kernel reads it and leads into the group: a cycle"
    return None


def _edge_records(log: FusionLog, cond: Condensed, p: Group, g: Group) -> list[FusionRecord]:
    """The records of the edges from `p`'s outputs into `g` that were not fused."""
    outputs = {cond.ctx.pos[o] for o in p.outputs}
    inside = {cond.ctx.pos[m] for m in g.members}
    return [r for r in log.records if not r.fused and r.producer in outputs
            and r.consumer in inside]


def _join(cond: Condensed, log: FusionLog, p: Group, g: Group) -> None:
    """Merge `p` into `g`; the records of the edges between them say multi_output."""
    ctx = cond.ctx
    records = _edge_records(log, cond, p, g)
    if not records:  # the edge was decided for another group: record it here
        o = next(o for o in p.outputs if any(u in g.members for u in ctx.users[o]))
        c = min((u for u in ctx.users[o] if u in g.members), key=ctx.pos.get)
        records = [log.add(False, "multi_use", ctx.pos[o], ctx.pos[c], o.op.name, c.op.name)]
    cond.merge(g, p)
    for r in records:
        where = _outside_readers(ctx, ctx.nodes[r.producer], g)
        r.fused, r.reason, r.group = True, "multi_output", g
        r.detail = f"an extra output of the kernel, {where}" if where else \
            "every reader is in the kernel now (their kernels merged)"
    _regroup(log, p, g)


def _regroup(log: FusionLog, gone: Group, keep: Group) -> None:
    """Records of the group `gone` now belong to `keep`, which absorbed it."""
    for r in log.records:
        if r.group is gone:
            r.group = keep


def _note_refusal(log: FusionLog, cond: Condensed, p: Group, g: Group, why: str) -> None:
    for r in _edge_records(log, cond, p, g):
        if "not an extra output" not in r.detail:
            r.detail += ("; " if r.detail else "") + f"not an extra output: {why}"


def _take_producers(cond: Condensed, log: FusionLog, g: Group) -> None:
    """Merge into `g` every producer group that qualifies, the latest first."""
    while True:
        refused = []
        for p in sorted(cond.pred[g], key=cond.last, reverse=True):
            if not is_pointwise(p):
                continue
            why = _extra_output_problem(cond, p, g)
            if why is None:
                _join(cond, log, p, g)
                break
            refused.append((p, why))
        else:
            for p, why in refused:
                _note_refusal(log, cond, p, g, why)
            return


# -- horizontal ------------------------------------------------------------------------------
def _reads(group: Group) -> set[Value]:
    """The values a group reads from outside (no-input nodes it recomputes aside)."""
    return {v for m in group.members for v in m.inputs
            if v not in group.members and v not in group.clones}


def _span(cond: Condensed, groups: list[Group]) -> int:
    positions = [cond.ctx.pos[o] for g in groups for o in g.outputs]
    return max(positions) - min(positions)


def _horizontal_gain(cond: Condensed, a: Group, b: Group, merge_small: bool) -> str | None:
    """Why merging `a` and `b` pays (the log's detail), or None if it does not or may not."""
    if len(a.outputs) + len(b.outputs) > MAX_OUTPUTS or \
            _span(cond, [a, b]) > HORIZONTAL_WINDOW:
        return None
    domain = a.root.type.shape
    shared = [v for v in _reads(a) & _reads(b) if v.type.shape == domain]
    size = a.root.type.size
    if shared:
        gain = "both read " + ", ".join(sorted(_value_name(cond.ctx, v) for v in shared))
    elif merge_small and size < SMALL_DOMAIN:
        gain = f"both small ({size} elements): one launch instead of two"
    else:
        return None
    if cond.reaches(a, b) or cond.reaches(b, a):
        return None
    return gain


def _value_name(ctx: Context, v: Value) -> str:
    return ctx.name(v) if v in ctx.pos else f"%{v.name}"


def _merge_horizontally(cond: Condensed, log: FusionLog, groups: list[Group],
                        merge_small: bool) -> None:
    """Within groups of one domain shape, in graph order, each absorbs the later ones that
    pay and may merge."""
    alive = set(groups)
    first = {g: min(cond.ctx.pos[o] for o in g.outputs) for g in groups}
    for i, a in enumerate(groups):
        if a not in alive:
            continue
        for b in groups[i + 1:]:
            if first[b] - first[a] > HORIZONTAL_WINDOW:
                break  # and so are the later ones
            if b not in alive:
                continue
            gain = _horizontal_gain(cond, a, b, merge_small)
            if gain is None:
                continue
            one, two = sorted((a.root, b.root), key=cond.ctx.pos.get)
            cond.merge(a, b)
            alive.discard(b)
            record = log.add(True, "horizontal", cond.ctx.pos[one], cond.ctx.pos[two],
                             one.op.name, two.op.name, gain)
            record.group = a
            _regroup(log, b, a)


# -- the phase -------------------------------------------------------------------------------
def merge_groups(groups: list[Group], ctx: Context, log: FusionLog,
                 merge_small: bool = True) -> list[Group]:
    """The groups after the multi_output and horizontal merges, in a topological order.
    `merge_small`: merge small independent kernels that share no input (where a kernel
    launch costs more than their work)."""
    cond = Condensed(groups, ctx)
    for g in sorted(groups, key=cond.last, reverse=True):
        if g in cond.pred and is_pointwise(g):
            _take_producers(cond, log, g)
    by_domain: dict[tuple, list[Group]] = {}
    for g in cond.order:
        if is_pointwise(g):
            by_domain.setdefault(g.root.type.shape, []).append(g)
    for same in by_domain.values():
        same.sort(key=lambda g: min(ctx.pos[o] for o in g.outputs))  # as the window needs
        _merge_horizontally(cond, log, same, merge_small)
    return cond.order
