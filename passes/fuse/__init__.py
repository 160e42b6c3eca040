"""fuse: group primitive nodes into fused kernels (`fused` nodes with a body region).

    fused = fuse(graph)
    print(explain_fusion(fused))          # kernel counts, groups, every decision
    fused.meta["fusion_log"].not_fused("multi_use")

What it fuses (the kinds of group and what their bodies hold: dlc/ir/groups.py):
- pointwise chains, with broadcasting, into one loop ("pointwise");
- reductions with their pointwise producers and consumers ("reduction"): softmax,
  log_softmax, layer_norm, rms_norm and cross_entropy each become one kernel;
- pointwise epilogues (bias, activation, residual add, scaling) into the matmul/conv whose
  result they read ("contraction");
- nodes with no inputs (scalar constants, iotas) are recomputed inside every kernel that
  reads them instead of being kernels of their own.

A group grows from one root, so a value read outside its group is materialized by its own
kernel ("multi_use"). Pointwise kernels then yield several values (passes/fuse/multi.py):
a pointwise producer also needed outside a pointwise kernel joins it as an extra output
("multi_output": an Adam update becomes one kernel writing p', m' and v'), and independent
pointwise kernels of one shape that share an input or are small merge into one
("horizontal"). MULTI_OUTPUT = False turns both off (one output per kernel).

Composite ops are first decomposed into primitives (passes.decompose). Rules and reason
codes: passes/fuse/rules.py, multi.py and log.py; the groups' graph is checked to be
acyclic before it is built.
"""
from __future__ import annotations

from dlc.ir.graph import Graph
from dlc.ir.groups import kernel_count
from passes.decompose import decompose
from passes.fuse.emit import emit_graph
from passes.fuse.grouping import build_groups, check_acyclic
from passes.fuse.log import LOG_KEY, REASONS, FusionLog, FusionRecord, explain_fusion  # noqa: F401
from passes.fuse.multi import merge_groups
from passes.fuse.rules import Context

# graph.meta entries that name node positions or parsed text positions: stale after a rebuild
POSITIONAL_META = ("memory_plan", "source_map")

# Multi-output pointwise kernels (the multi_output and horizontal decisions), read by `fuse`
# at each call.
MULTI_OUTPUT = True


def fuse(graph: Graph) -> Graph:
    """A new graph in which groups of nodes are `fused` nodes; the log of every decision
    is in `graph.meta["fusion_log"]` (a FusionLog; `explain_fusion` prints it)."""
    meta = {k: v for k, v in graph.meta.items() if k not in POSITIONAL_META}
    nodes_given = len(graph.nodes)
    graph = decompose(graph)
    log = FusionLog(graph.name, nodes_given=nodes_given,
                    kernels_before=kernel_count(graph.nodes))
    ctx = Context(graph)
    log.node_text = {i: _describe(n) for i, n in enumerate(graph.nodes)}
    groups = build_groups(graph, log)
    if MULTI_OUTPUT:
        # small independent kernels merge only where a launch costs (dlc/compiler.py)
        merge_small = graph.meta.get("launches") == "costly"
        groups = merge_groups(groups, ctx, log, merge_small)
        check_acyclic(graph, groups, ctx)
    meta[LOG_KEY] = log
    return emit_graph(graph, groups, ctx, log, meta)


def _describe(node) -> str:
    return f"{node.op.name} at {node.loc}" if node.loc else node.op.name
