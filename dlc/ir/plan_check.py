"""The memory plan's verifier: the rules a MemoryPlan (dlc/ir/plan.py) must keep.

- schedule: empty (graph order) or a permutation of the node positions that runs every node
  after the nodes it reads;
- offsets: exactly the planned values (top-level nodes that are not graph outputs) have one,
  a multiple of the plan's alignment (a power of two);
- fit: offset + size <= arena_bytes for every planned value;
- no overlap: two values live at the same step occupy disjoint bytes, except an in-place
  pair: a node that reads its input elementwise overwrites that input's buffer (same offset,
  same size) at the input's last step;
- in-place updates (plan.inplace): name the alias of a node-valued output, and the node that
  writes runs after every other reader of the old value, reading it elementwise if at all;
- views (plan.views): index maps that are not graph outputs, with no offset; each reads,
  down its chain of views, a planned value or a graph input no in-place update overwrites.
  A reader of a view reads that root (its liveness counts it), and a node may not take in
  place the bytes of a value it also reads through a view.

A `result` node's value is written by its fused node's kernel (dlc/ir/groups.py
kernel_of): it is live from that kernel's step, may take the buffer of an input of that
kernel, and an in-place update through it is checked against that kernel.

Violations raise VerifyError naming the rule; for parsed text, with line:col.
"""
from __future__ import annotations

from dlc.errors import VerifyError
from dlc.ir.graph import Graph, Input, Node
from dlc.ir.groups import kernel_of, reads_elementwise
from dlc.ir.plan import (INDEX_MAPS, MemoryPlan, execution_order, live_ranges,
                         planned_positions, roots_read_through_views, view_roots)
from dlc.ir.verify import SOURCE_KEY, SourceMap, positioned_error


class _Checker:
    def __init__(self, graph: Graph, plan: MemoryPlan):
        self.graph, self.plan = graph, plan
        self.index = {node: pos for pos, node in enumerate(graph.nodes)}
        self.roots: dict[int, object] = {}

    def fail(self, message: str, rule: str, node: Node | None = None,
             inplace: int | None = None) -> VerifyError:
        def pos_of(smap):
            if node is not None:
                return smap.offsets.get(node) or smap.nodes.get(node) or smap.plan
            if inplace is not None:
                return smap.inplace.get(inplace) or smap.plan
            return smap.plan
        return positioned_error(self.graph, pos_of, f"@{self.graph.name} memory plan: "
                                                    f"{message} (rule: {rule})")

    def name(self, pos: int) -> str:
        """%N (the printed name), or the name the parsed text gave the node."""
        node = self.graph.nodes[pos]
        smap = self.graph.meta.get(SOURCE_KEY)
        written = smap.names.get(node) if isinstance(smap, SourceMap) else None
        return f"{written or f'%{pos}'} ({node.op.name} {node.type})"

    # -- the rules --------------------------------------------------------------------------
    def header(self) -> None:
        p = self.plan
        if not isinstance(p.alignment, int) or p.alignment <= 0 or \
                p.alignment & (p.alignment - 1):
            raise self.fail(f"alignment {p.alignment} is not a power of two", "alignment")
        if not isinstance(p.arena_bytes, int) or p.arena_bytes < 0:
            raise self.fail(f"arena_bytes {p.arena_bytes} is not a byte count >= 0",
                            "arena size")

    def schedule(self) -> list[int]:
        n = len(self.graph.nodes)
        order = execution_order(self.graph, self.plan)
        if sorted(order) != list(range(n)):
            raise self.fail(f"the schedule {order} is not an ordering of the {n} nodes",
                            "the schedule runs every node once")
        step = {pos: s for s, pos in enumerate(order)}
        index = self.index
        for pos, node in enumerate(self.graph.nodes):
            for v in node.inputs:
                if v in index and step[index[v]] > step[pos]:
                    raise self.fail(f"{self.name(pos)} is scheduled before its input "
                                    f"{self.name(index[v])}",
                                    "the schedule runs a node after its inputs", node)
        return order

    def offsets(self, planned: list[int]) -> None:
        wanted = set(planned)
        for pos in self.plan.offsets:
            if not isinstance(pos, int) or not 0 <= pos < len(self.graph.nodes):
                raise self.fail(f"an offset for node position {pos}, which does not exist",
                                "offsets name planned nodes")
            if pos not in wanted:
                raise self.fail(f"{self.name(pos)} is a graph output, which gets its own "
                                f"array, yet has an arena offset",
                                "offsets name planned nodes (not outputs)", self.graph.nodes[pos])
        for pos in planned:
            node = self.graph.nodes[pos]
            if pos not in self.plan.offsets:
                raise self.fail(f"{self.name(pos)} has no offset",
                                "every planned value has an offset", node)
            off = self.plan.offsets[pos]
            if not isinstance(off, int) or off < 0 or off % self.plan.alignment:
                raise self.fail(f"offset {off} of {self.name(pos)} is not a multiple of the "
                                f"alignment {self.plan.alignment}", "alignment", node)
            end = off + node.type.nbytes
            if end > self.plan.arena_bytes:
                raise self.fail(f"{self.name(pos)} at offset {off} needs bytes up to {end}, "
                                f"past the arena of {self.plan.arena_bytes} bytes",
                                "every buffer fits in the arena", node)

    def overlaps(self, planned: list[int], ranges: dict[int, tuple[int, int]]) -> None:
        nodes, offs = self.graph.nodes, self.plan.offsets
        buffers = sorted((ranges[p][0], p) for p in planned if nodes[p].type.nbytes > 0)
        active: list[int] = []
        for start, b in buffers:
            active = [a for a in active if ranges[a][1] >= start]
            lo, hi = offs[b], offs[b] + nodes[b].type.nbytes
            for a in active:
                a_lo, a_hi = offs[a], offs[a] + nodes[a].type.nbytes
                if a_lo < hi and lo < a_hi and not self.in_place(a, b, ranges):
                    raise self.fail(
                        f"{self.name(b)} at bytes [{lo}, {hi}) live at steps "
                        f"{ranges[b][0]}..{ranges[b][1]} overlaps {self.name(a)} at bytes "
                        f"[{a_lo}, {a_hi}) live at steps {ranges[a][0]}..{ranges[a][1]}",
                        "values live at the same step must not overlap", nodes[b])
            active.append(b)

    def in_place(self, a: int, b: int, ranges) -> bool:
        """b overwrites a in place: same bytes, a dies at b's step, b reads a elementwise
        (and not also through a view)."""
        nodes, offs = self.graph.nodes, self.plan.offsets
        kernel = kernel_of(nodes[b])
        return (offs[a] == offs[b] and nodes[a].type.nbytes == nodes[b].type.nbytes
                and ranges[a][1] == ranges[b][0] and nodes[a] in kernel.inputs
                and reads_elementwise(nodes[b], nodes[a])
                and a not in roots_read_through_views(kernel, self.index, self.roots))

    def views(self) -> None:
        """Every view is an index map, not an output, without an offset, rooted in bytes
        that stay: a planned value or an input that is not updated in place."""
        nodes = self.graph.nodes
        outputs = {id(v) for v in self.graph.outputs}
        updated = set(self.plan.inplace.values())
        for pos in self.plan.views:
            if not isinstance(pos, int) or not 0 <= pos < len(nodes):
                raise self.fail(f"a view at node position {pos}, which does not exist",
                                "views name index maps")
            node = nodes[pos]
            if node.op.name not in INDEX_MAPS or node.body is not None:
                raise self.fail(f"{self.name(pos)} is planned as a view, but only an index "
                                f"map ({', '.join(sorted(INDEX_MAPS))}) reads its input's bytes "
                                f"in place", "views name index maps", node)
            if id(node) in outputs:
                raise self.fail(f"{self.name(pos)} is a graph output, which gets its own "
                                f"array, yet is planned as a view", "outputs are not views",
                                node)
            if pos in self.plan.offsets:
                raise self.fail(f"{self.name(pos)} is a view and has an offset too",
                                "a view has no bytes of its own", node)
        self.roots = view_roots(self.graph, self.plan.views)
        for pos, root in self.roots.items():
            if isinstance(root, Input):
                if root.name in updated:
                    raise self.fail(f"{self.name(pos)} is a view of %{root.name}, which an "
                                    f"in-place update overwrites", "a view's bytes stay",
                                    nodes[pos])
            elif id(nodes[root]) in outputs:
                raise self.fail(f"{self.name(pos)} is a view of the graph output "
                                f"{self.name(root)}", "a view's bytes stay", nodes[pos])

    def inplace(self, order: list[int]) -> None:
        step = {pos: s for s, pos in enumerate(order)}
        index = self.index
        seen: dict[str, int] = {}
        for i, name in self.plan.inplace.items():
            if self.graph.aliases.get(i) != name:
                raise self.fail(f"inplace output {i} -> %{name}, but output {i} is not an "
                                f"alias of %{name}", "in-place updates follow aliases",
                                inplace=i)
            if name in seen:
                raise self.fail(f"outputs {seen[name]} and {i} both overwrite %{name} in place",
                                "one in-place writer per input", inplace=i)
            seen[name] = i
            writer = self.graph.outputs[i]
            if writer not in index:
                raise self.fail(f"output {i} is not computed by a node, so nothing writes "
                                f"%{name} in place", "in-place updates are node values",
                                inplace=i)
            self.readers_first(i, name, writer, index[kernel_of(writer)], step)

    def readers_first(self, i: int, name: str, value: Node, w: int, step) -> None:
        """`value` (output i) overwrites %name; the kernel at position `w` writes it."""
        old = self.graph.input(name)
        writer = self.graph.nodes[w]
        if old in writer.inputs and not reads_elementwise(value, old):
            raise self.fail(f"output {i} is written into %{name} by {self.name(w)}, which "
                            f"reads the old %{name} other than elementwise",
                            "an in-place writer reads the old value only at the element it "
                            "writes", inplace=i)
        for pos, node in enumerate(self.graph.nodes):
            if pos != w and old in node.inputs and step[pos] > step[w]:
                raise self.fail(f"output {i} overwrites %{name} at step {step[w]} "
                                f"({self.name(w)}), but {self.name(pos)} reads the old "
                                f"%{name} later, at step {step[pos]}",
                                "an in-place update runs after every reader of the old "
                                "value", inplace=i)


def verify_plan(graph: Graph) -> None:
    """Raise VerifyError if graph.meta["memory_plan"] breaks a rule (see the module doc)."""
    plan = graph.meta["memory_plan"]
    if not isinstance(plan, MemoryPlan):
        raise VerifyError(f"@{graph.name}: meta['memory_plan'] is a {type(plan).__name__}, "
                          f"not a MemoryPlan")
    check = _Checker(graph, plan)
    check.header()
    order = check.schedule()
    check.views()
    planned = planned_positions(graph, plan.views)
    check.offsets(planned)
    check.overlaps(planned, live_ranges(graph, order, plan.views))
    check.inplace(order)
