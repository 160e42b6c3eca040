"""Views: index maps planned with no bytes of their own.

A permute, reshape, slice, broadcast_to or flip only rearranges its input's elements. When
every reader can read through the index map as fast as from a buffer of its own, the plan
makes it a view (MemoryPlan.views): its readers read its source's bytes, and the source
lives until they have run, so nothing is copied. Readers that qualify:
- a matmul operand (alone or at the head of a contraction group): the GEMM packs its
  operands anyway, so any strides are free;
- another index map that is itself a view;
- any other kernel, when every index map of the chain down to the bytes keeps the
  innermost axis contiguous (whole vectors still load).

The root of a view (the value whose bytes it reads) must keep them: a planned value, or a
graph input that no in-place update overwrites. Graph outputs are never views (the caller
gets an array of its own), nor roots.
"""
from __future__ import annotations

from dlc.ir.graph import Graph, Input, Node
from dlc.ir.plan import INDEX_MAPS, keeps_rows, matmul_operand


def choose_views(graph: Graph, inplace: dict[int, str]) -> set[Node]:
    """The index maps of `graph` to plan as views."""
    outputs = {id(v) for v in graph.outputs}
    updated = set(inplace.values())
    readers: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for v in dict.fromkeys(n.inputs):
            readers.setdefault(id(v), []).append(n)
    chosen: set[Node] = set()
    needs_rows: dict[int, bool] = {}  # a chosen view -> some reader needs contiguous rows
    for node in reversed(graph.nodes):  # readers are decided before their sources
        if node.op.name not in INDEX_MAPS or node.body is not None or id(node) in outputs:
            continue
        src = node.inputs[0]
        if id(src) in outputs or (isinstance(src, Input) and src.name in updated):
            continue
        rows = False
        for r in readers.get(id(node), ()):
            if r in chosen:
                rows = rows or needs_rows[id(r)]
            elif not matmul_operand(r, node):
                rows = True
        if rows and not keeps_rows(node):
            continue
        chosen.add(node)
        needs_rows[id(node)] = rows
    return chosen
