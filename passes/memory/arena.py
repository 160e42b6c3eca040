"""run_with_plan: execute a planned graph the way a compiled backend does, through its arena.

The reference semantics of a MemoryPlan: nodes run in the plan's schedule; each planned
value is written into the arena at its offset and read back from there; an output updated
in place is written into its input's buffer, so a reader of the old value that runs after
the update sees the new one. A plan that lets live values overlap therefore computes wrong
numbers here. The arena starts filled with 0xFF bytes (NaN for floats), so reading a value
never written shows too.

With check=True every read is compared with what was written (or given): the first value
clobbered by another is reported by name, so one run checks a plan completely (each node
then computes from exactly the values the eager interpreter would give it).

A multi-output fused node writes every value its body yields at its own step: its own
value and those of its `result` nodes, each into that node's place (so an extra output
that takes a dying input's buffer overwrites it then). A result node's step does nothing.

A view (plan.views) computes nothing at its step: each reader applies its chain of index
maps to the root's bytes as they are when it runs (and, with check=True, the root's bytes
are compared then), so a plan that lets the root be overwritten too early shows.
"""
from __future__ import annotations

import numpy as np

from dlc.errors import DlcError
from dlc.ir.graph import Graph, Node, Value
from dlc.ir.groups import is_result, results_of
from dlc.ir.plan import MemoryPlan, execution_order


def _view(arena: np.ndarray, offset: int, node: Node) -> np.ndarray:
    t = node.type
    return arena[offset:offset + t.nbytes].view(t.dtype).reshape(t.shape)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


class _Reads:
    """What each value was when it was written, to compare every later read against."""

    def __init__(self, graph: Graph, plan: MemoryPlan):
        self.graph, self.plan = graph, plan
        self.saved: dict[Value, np.ndarray] = {}
        self.writer: dict[Value, int] = {}

    def keep(self, value: Value, array: np.ndarray, step: int) -> None:
        self.saved[value] = np.array(array, copy=True)
        self.writer[value] = step

    def check(self, reader: Node | None, step: int, value: Value, array: np.ndarray) -> None:
        if value in self.saved and not _same(self.saved[value], array):
            name = getattr(value, "name", None)
            what = f"input %{name}" if name is not None else \
                f"%{self.graph.nodes.index(value)} ({value.op.name})"
            who = f"step {step} ({reader.op.name})" if step < len(self.graph.nodes) else \
                "the graph's return"
            raise DlcError(f"@{self.graph.name}: {who} reads {what}, "
                           f"but its bytes were overwritten after step "
                           f"{self.writer[value]} wrote it: the plan let another value take "
                           f"them while it was live")


def run_with_plan(graph: Graph, args: list[np.ndarray], check: bool = False) -> list[np.ndarray]:
    """Outputs of `graph` on `args` (one array per graph input, params included)."""
    from backends.eager import run_graph
    plan = graph.meta.get("memory_plan")
    if not isinstance(plan, MemoryPlan):
        raise DlcError(f"@{graph.name} has no memory plan; run passes.memory.plan_memory")
    arena = np.full(plan.arena_bytes, 0xFF, np.uint8)
    buffers = {v: np.array(a, copy=True) for v, a in zip(graph.inputs, args)}
    env: dict[Value, np.ndarray] = dict(buffers)
    reads = _Reads(graph, plan) if check else None
    if reads is not None:
        for v, a in buffers.items():
            reads.keep(v, a, -1)
    inplace = {id(graph.outputs[i]): graph.input(name) for i, name in plan.inplace.items()}
    index = {id(node): pos for pos, node in enumerate(graph.nodes)}
    results = results_of(graph.nodes)

    def target(node: Node) -> np.ndarray:
        pos = index[id(node)]
        if pos in plan.offsets:
            return _view(arena, plan.offsets[pos], node)
        if id(node) in inplace:
            return buffers[inplace[id(node)]]  # the old value's own array
        return np.empty(node.type.shape, node.type.dtype)

    views = {id(graph.nodes[p]) for p in plan.views}

    def read(reader: Node | None, step: int, v: Value) -> np.ndarray:
        """v's elements as `reader` sees them now (a view: through its root's bytes)."""
        if id(v) not in views:
            if reads is not None:
                reads.check(reader, step, v, env[v])
            return env[v]
        src = read(reader, step, v.inputs[0])
        return np.asarray(v.op.impl(src, **v.attrs))

    for step, pos in enumerate(execution_order(graph, plan)):
        node = graph.nodes[pos]
        if is_result(node) or id(node) in views:
            continue  # written by its fused node; read through when used
        ins = [read(node, step, v) for v in node.inputs]
        outs = run_graph(node.body, ins) if node.body is not None else \
            [np.asarray(node.op.impl(*ins, **node.attrs))]
        # copies: a body may yield a block argument, whose bytes an output may overwrite
        written = [(node, outs[0])] + [(r, np.array(outs[r.attrs["index"]], copy=True))
                                       for r in results.get(node, [])]
        for value, out in written:
            env[value] = target(value)
            env[value][...] = out
            if reads is not None:
                reads.keep(value, env[value], step)
    end = graph.nodes[-1] if graph.nodes else None
    return [np.array(read(end, len(graph.nodes), v), copy=True) for v in graph.outputs]
