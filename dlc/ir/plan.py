"""The memory plan: where each intermediate value lives in one arena.

`passes.memory.plan_memory` computes it and stores it in `graph.meta["memory_plan"]`; the
text form prints it (a `memory {...}` header clause and `offset(N)` on each planned node),
and the llvm and triton backends allocate the arena once per Executable and place every
planned value at its offset.

Only values produced by top-level nodes are planned. Graph inputs live in the caller's (or
the Executable's) arrays. A graph output gets its own array unless `inplace` names it: then
it is written into the buffer of the input it aliases (a training step's parameter update).
A `result` node's value (an extra output of a multi-output fused kernel) is planned like
any other, but it is written when its fused node runs: it is live from that step on.

An index map (permute, reshape, slice, broadcast_to, flip) listed in `views` has no bytes of
its own: its readers read its source's bytes through it, so nothing is copied. Its root (the
first value up the chain of views that is not one: a planned value or a graph input that is
not updated in place) then lives until the last reader of any view of it.

Two values may share bytes while both are live in one case only: a node that reads an
input elementwise (an elementwise op or a "pointwise" fused group, the input of the
output's shape) and takes that input's buffer at the input's last use (`inplace_reuse`
lists these pairs). The same holds for `inplace` updates. A kernel that writes in place
reads each element of the overwritten input before it writes the output element at the
same index, and never uses its output as scratch. The planner never puts a contraction or
reduction kernel in place (a GEMM may accumulate in its output), and `dlc.verify` checks
every plan (dlc/ir/plan_check.py). `passes.memory.run_with_plan` executes a plan the way
a compiled backend does, as the reference of these semantics. An empty `schedule` means
the order of graph.nodes; the planner itself emits its nodes in schedule order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from dlc.ir.groups import is_result, kernel_of

ALIGNMENT = 64  # bytes: one cache line, and a whole AVX-512 vector


@dataclass
class MemoryPlan:
    arena_bytes: int
    # position of a top-level node in graph.nodes -> byte offset of its value in the arena
    offsets: dict[int, int] = field(default_factory=dict)
    # graph output index -> name of the param/state input whose buffer it overwrites in place
    inplace: dict[int, str] = field(default_factory=dict)
    # the execution order the offsets were planned for (positions in graph.nodes)
    schedule: list[int] = field(default_factory=list)
    alignment: int = ALIGNMENT
    # reporting only: naive bytes (every value its own buffer) and the peak of live bytes
    naive_bytes: int = 0
    lower_bound_bytes: int = 0
    # positions of index maps read through their source (no offset, no bytes of their own)
    views: list[int] = field(default_factory=list)


# ops whose value is its input's elements rearranged: a plan may make them views
INDEX_MAPS = frozenset({"permute", "reshape", "slice", "broadcast_to", "flip"})


# -- shared by the planner (passes/memory), the verifier (dlc/ir/plan_check.py) and reports --
def aligned(nbytes: int, alignment: int = ALIGNMENT) -> int:
    """`nbytes` rounded up to a multiple of `alignment`."""
    return -(-nbytes // alignment) * alignment


def keeps_rows(view) -> bool:
    """An index map that keeps the innermost axis contiguous (a reshape, a unit-step slice,
    a permute that leaves the last axis last, a broadcast): a kernel reading through it
    still loads whole vectors."""
    name = view.op.name
    if name in ("reshape", "broadcast_to"):
        return True
    if name == "slice":
        return view.type.ndim == 0 or view.attrs["steps"][-1] == 1
    if name == "permute":
        perm = view.attrs["perm"]
        return not perm or perm[-1] == len(perm) - 1
    return False


def matmul_operand(reader, value) -> bool:
    """Whether `reader` reads `value` only as an operand of a matmul (alone or at the head
    of a contraction group): a GEMM packs its operands, so any strides are free there."""
    if reader.body is None:
        return reader.op.name == "matmul"
    if reader.attrs.get("kind") != "contraction" or reader.body.nodes[0].op.name != "matmul":
        return False
    args = {a for a, v in zip(reader.body.inputs, reader.inputs) if v is value}
    head = reader.body.nodes[0]
    return all(n is head for n in reader.body.nodes if args & set(n.inputs))


def reads_in_place(reader, view) -> bool:
    """Whether a kernel reads `view` through its index map as fast as from its own buffer."""
    return keeps_rows(view) or matmul_operand(reader, view)


def planned_positions(graph, views: Iterable[int] = ()) -> list[int]:
    """Positions of the top-level nodes whose values live in the arena: all but outputs
    (and views, which live in their source's bytes)."""
    outputs = {id(v) for v in graph.outputs}
    skip = set(views)
    return [i for i, node in enumerate(graph.nodes) if id(node) not in outputs
            and i not in skip]


def view_roots(graph, views: Iterable[int]) -> dict[int, object]:
    """view position -> its root: the position of the value whose bytes it reads, or the
    graph Input. Views are index maps of one input, so each chain ends at one root."""
    index = {id(node): pos for pos, node in enumerate(graph.nodes)}
    chosen = set(views)
    roots: dict[int, object] = {}
    for pos in sorted(chosen):  # a view's source comes before it in graph.nodes
        src = graph.nodes[pos].inputs[0]
        at = index.get(id(src))
        roots[pos] = src if at is None else roots.get(at, at) if at in chosen else at
    return roots


def roots_read_through_views(kernel, index: dict, roots: dict[int, object]) -> set:
    """The roots whose bytes `kernel` reads through a view (index: value -> position).
    Such a kernel reads those bytes at other elements than it writes, so it may not take
    them in place."""
    return {roots[index[v]] for v in kernel.inputs if index.get(v) in roots}


def execution_order(graph, plan: MemoryPlan) -> list[int]:
    """The plan's schedule; an empty schedule means the order of graph.nodes."""
    return list(plan.schedule) if plan.schedule else list(range(len(graph.nodes)))


def live_ranges(graph, order: list[int], views: Iterable[int] = ()) -> dict[int, tuple[int, int]]:
    """node position -> (step that computes it, last step that reads it), both inclusive.

    A value nobody reads lives only at its own step. Steps are indices into `order`. A
    `result` node's value is written by its fused node's kernel, so it is live from that
    step on; and a result node reads nothing (it names an output of its fused node). A
    reader of a view reads its root too: the root lives until then."""
    step = {pos: s for s, pos in enumerate(order)}
    index = {id(node): pos for pos, node in enumerate(graph.nodes)}
    writer = {pos: index[id(kernel_of(node))] for pos, node in enumerate(graph.nodes)}
    ranges = {pos: (step[writer[pos]], step[writer[pos]]) for pos in range(len(graph.nodes))}
    roots = view_roots(graph, views)

    def read(src: int, at: int) -> None:
        first, last = ranges[src]
        ranges[src] = (first, max(last, at))

    for pos, node in enumerate(graph.nodes):
        if is_result(node):
            continue
        for v in node.inputs:
            src = index.get(id(v))
            if src is not None:
                read(src, step[pos])
                root = roots.get(src)
                if isinstance(root, int):
                    read(root, step[pos])
    return ranges


def peak_of(intervals: Iterable[tuple[int, int, int]]) -> int:
    """The most bytes live at one step, for values live over (first, last, size): first to
    last inclusive."""
    events: dict[int, int] = {}
    for first, last, size in intervals:
        events[first] = events.get(first, 0) + size
        events[last + 1] = events.get(last + 1, 0) - size
    live = peak = 0
    for step in sorted(events):
        live += events[step]
        peak = max(peak, live)
    return peak


def inplace_reuse(graph, plan: MemoryPlan) -> dict[int, int]:
    """node position -> position of the input whose buffer it overwrites in place.

    Derived from the offsets: the two values share offset and size, and the input's last
    reader is the kernel that writes this node (its fused node, for a result node).
    Backends must not assume such an output and input are distinct."""
    order = execution_order(graph, plan)
    ranges = live_ranges(graph, order, plan.views)
    index = {id(node): pos for pos, node in enumerate(graph.nodes)}
    out = {}
    for pos, node in enumerate(graph.nodes):
        if pos not in plan.offsets:
            continue
        for v in kernel_of(node).inputs:
            src = index.get(id(v))
            if (src is not None and src in plan.offsets and src != pos
                    and plan.offsets[src] == plan.offsets[pos]
                    and v.type.nbytes == node.type.nbytes and node.type.nbytes > 0
                    and ranges[src][1] == ranges[pos][0]):
                out[pos] = src
                break
    return out
