"""The fusion log: one record per decision, the groups formed, and the report printed by
`explain_fusion` (`dlc dump --explain-fusion`).

Node numbers in the log (%N) are positions in the graph fusion worked on: the graph it was
given, after composite ops were decomposed into primitives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from dlc.ir.graph import Graph

LOG_KEY = "fusion_log"

# Why two nodes were (not) put in one kernel. Codes are stable: tests and tools match them.
REASONS = {
    # fused
    "pointwise_chain": "a pointwise producer joins its pointwise consumer's loop",
    "into_reduction": "a pointwise producer or consumer joins a reduction kernel",
    "reduction_consumer": "a reduction's result feeds pointwise work in the same kernel",
    "reduction_stages": "a reduction of a reduction's results, in one kernel",
    "contraction_epilogue": "pointwise work on a matmul/conv result runs as its epilogue",
    "epilogue_operand": "a pointwise computation of an epilogue operand joins the epilogue",
    "recompute": "a node with no inputs (a constant, an iota) is recomputed in the kernel",
    "multi_output": "a pointwise producer also needed outside a pointwise kernel joins it "
                    "as an extra output (passes.fuse.MULTI_OUTPUT)",
    "horizontal": "independent pointwise kernels of one domain shape become one kernel "
                  "with several outputs: they share an input, or both are small "
                  "(passes.fuse.MULTI_OUTPUT)",
    # not fused
    "not_fusible": "the producer cannot be part of a fused body",
    "consumer_not_fusible": "the consumer cannot be part of a fused body",
    "contraction_operand": "a matmul/conv reads each operand element many times: its "
                           "producers stay separate kernels",
    "two_contractions": "a kernel holds at most one matmul/conv",
    "contraction_into_reduction": "a reduction of a matmul/conv result needs the whole "
                                  "result: it stays a separate kernel",
    "reduction_in_epilogue": "a matmul/conv epilogue is pointwise: no reductions",
    "reduction_of_shared_input": "a reduction of a value other kernels read too, and nothing "
                                 "else in the group does: alone, it lets that value die early",
    "epilogue_shape": "an epilogue keeps the matmul/conv output's shape",
    "epilogue_not_elementwise": "an epilogue node must be elementwise on the output",
    "graph_output": "the producer's value is a graph output, so it must be materialized "
                    "(by its own kernel, unless it joins as an extra output: multi_output)",
    "multi_use": "the producer's value is also read outside the group, so it must be "
                 "materialized (by its own kernel, unless it joins as an extra output: "
                 "multi_output)",
    "cycle": "fusing would create a cycle through another kernel",
}


@dataclass
class FusionRecord:
    """One decision about the edge producer -> consumer (positions, see the module doc)."""
    fused: bool
    reason: str
    producer: int
    consumer: int
    producer_op: str
    consumer_op: str
    detail: str = ""
    group: str | None = None  # the fused node the consumer ended up in, if any

    def __str__(self) -> str:
        verdict = "fused    " if self.fused else "not fused"
        edge = f"%{self.producer} {self.producer_op} -> %{self.consumer} {self.consumer_op}"
        where = f" [{self.group}]" if self.group else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{verdict}  {edge:<40} {self.reason}{detail}{where}"


@dataclass
class GroupRecord:
    """A fused node of the result: its name, kind and members (positions, see module doc)."""
    name: str
    kind: str
    members: list[int]
    ops: list[str]
    loc: str | None = None
    outputs: list[int] = field(default_factory=list)  # the values it yields, output 0 first


@dataclass
class FusionLog:
    """What fusion did: `records` (every decision), `groups`, and kernel counts."""
    graph: str
    nodes_given: int = 0       # top-level nodes of the graph fuse was given
    kernels_before: int = 0    # after decomposition into primitives: one kernel each
    kernels_after: int = 0     # top-level nodes of the result, result nodes aside
    records: list[FusionRecord] = field(default_factory=list)
    groups: list[GroupRecord] = field(default_factory=list)
    node_text: dict[int, str] = field(default_factory=dict)  # position -> "add at m.py:3"

    def __iter__(self) -> Iterator[FusionRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def fused(self) -> list[FusionRecord]:
        return [r for r in self.records if r.fused]

    def not_fused(self, reason: str | None = None) -> list[FusionRecord]:
        return [r for r in self.records if not r.fused and reason in (None, r.reason)]

    def add(self, fused: bool, reason: str, producer: int, consumer: int, producer_op: str,
            consumer_op: str, detail: str = "") -> FusionRecord:
        assert reason in REASONS, reason
        record = FusionRecord(fused, reason, producer, consumer, producer_op, consumer_op,
                              detail)
        self.records.append(record)
        return record


def explain_fusion(graph: Graph) -> str:
    """The fusion report of a graph produced by passes.fuse: kernel counts, the groups and
    every decision with its reason."""
    log = graph.meta.get(LOG_KEY)
    if not isinstance(log, FusionLog):
        return (f"@{graph.name}: no fusion log (the graph did not come out of passes.fuse in "
                f"this process; a graph read from text keeps its fused groups, not the "
                f"decisions)")
    lines = [f"fusion of @{log.graph}: {log.kernels_before} kernels -> {log.kernels_after} "
             f"({len(log.groups)} fused groups; {log.nodes_given} nodes given, "
             f"{log.kernels_before} after decomposition into primitives)",
             "node numbers are positions in the graph fusion worked on (after decomposition)",
             "", "groups:"]
    for g in log.groups:
        members = ", ".join(f"%{m} {op}" for m, op in zip(g.members, g.ops))
        where = f"  at {g.loc}" if g.loc else ""
        yields = f", yields {', '.join(f'%{o}' for o in g.outputs)}" \
            if len(g.outputs) > 1 else ""
        lines.append(f"  {g.name} ({g.kind}{yields}): {members}{where}")
    if not log.groups:
        lines.append("  (none)")
    lines += ["", f"decisions ({len(log.fused())} fused, {len(log.not_fused())} not fused):"]
    lines += [f"  {r}" for r in sorted(log.records, key=lambda r: (r.consumer, r.producer))]
    used = sorted({r.reason for r in log.records})
    if used:
        lines += ["", "reasons:"] + [f"  {code}: {REASONS[code]}" for code in used]
    return "\n".join(lines)
