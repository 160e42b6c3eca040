"""In-place decisions, each with its reason when it is not taken.

Two kinds:
- updates: a training step's aliased output (a new parameter or optimizer moment) is
  written straight into its input's buffer (MemoryPlan.inplace). Safe when every other
  reader of the old value runs before the writer, and the writer reads the old value only
  at the element it writes; the schedule is then constrained to run those readers first.
- reuse: a node that reads an input elementwise takes that input's arena buffer when the
  input dies at this node (same shape and item size), so the two share their bytes.

The extra outputs of a multi-output pointwise kernel (its `result` nodes) take part like
its own value: the kernel (kernel_of) is what reads and writes, so each of its outputs may
take a different dying input, and an aliased output that is a result node is an update
written by that kernel, after every other reader of the old value.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dlc.ir.graph import Graph, Input, Node
from dlc.ir.groups import kernel_of, reads_elementwise
from dlc.ir.plan import roots_read_through_views, view_roots
from passes.memory.schedule import Edges


@dataclass
class Updates:
    """Aliased outputs written in place, the schedule edges that make it safe, and why the
    others are not."""
    inplace: dict[int, str] = field(default_factory=dict)
    edges: Edges = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)


def _reach(start: Node, readers: dict[Node, list[Node]], edges: Edges) -> set[Node]:
    """Nodes that must run after `start`: its readers, transitively, and the writers that
    accepted updates order after their readers."""
    after: dict[Node, set[Node]] = {}
    for writer, before in edges.items():
        for b in before:
            after.setdefault(b, set()).add(writer)
    seen, stack = set(), [start]
    while stack:
        n = stack.pop()
        for m in list(readers.get(n, ())) + list(after.get(n, ())):
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return seen


def _update_problem(graph: Graph, i: int, name: str, claimed: set,
                    readers: dict[Node, list[Node]], edges: Edges) -> str | None:
    value = graph.outputs[i]
    if isinstance(value, Input):
        return f"output {i} is the input %{value.name} itself: nothing is computed to write"
    others = [k for k, v in enumerate(graph.outputs) if v is value and k != i]
    if others:
        return f"the same value is also output {others[0]}, so it needs its own array"
    if value in claimed:
        return "its value is already written in place into another input"
    old = graph.input(name)
    writer = kernel_of(value)
    if old in writer.inputs and not reads_elementwise(value, old):
        return (f"its writer ({_kernel_text(writer)}) reads the old %{name}, and only an "
                f"elementwise op or a pointwise group may overwrite what it reads (a GEMM or "
                f"a reduction kernel may use its output as scratch)")
    later = _reach(writer, readers, edges)
    for reader in readers.get(old, ()):
        if reader is not writer and reader in later:
            return (f"{reader.op.name} reads the old %{name} but must run after the update "
                    f"(it depends on the new value, or on another in-place update)")
    return None


def plan_updates(graph: Graph) -> Updates:
    """Which aliased outputs to write in place (every one that is safe, in output order)."""
    out = Updates()
    claimed: set[Node] = set()
    readers: dict[Node, list[Node]] = {}
    for n in graph.nodes:
        for v in dict.fromkeys(n.inputs):
            readers.setdefault(v, []).append(n)
    for i, name in sorted(graph.aliases.items()):
        problem = _update_problem(graph, i, name, claimed, readers, out.edges)
        if problem is not None:
            out.refused[i] = problem
            continue
        claimed.add(graph.outputs[i])
        writer = kernel_of(graph.outputs[i])
        out.inplace[i] = name
        before = {n for n in readers.get(graph.input(name), ()) if n is not writer}
        loss = _loss_kernel(graph)
        if loss is not None and loss is not writer and loss not in _reach(writer, readers,
                                                                            out.edges):
            # a step whose loss is not finite must leave the parameters alone, so a backend
            # checks the loss before the first in-place write: compute it first
            before.add(loss)
        out.edges.setdefault(writer, set()).update(before)
    return out


def _loss_kernel(graph: Graph) -> Node | None:
    """A training step's loss (its output 0) as the kernel that computes it."""
    if not graph.meta.get("train_step") or not graph.outputs:
        return None
    loss = graph.outputs[0]
    return kernel_of(loss) if isinstance(loss, Node) else None


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _kernel_text(node: Node) -> str:
    if node.body is not None:
        return f"{node.attrs.get('name')}, a {node.attrs.get('kind')} group"
    return node.op.name


def reuse_problem(graph: Graph, pos: int, ranges: dict[int, tuple[int, int]],
                  index: dict[Node, int], taken: set[int],
                  roots: dict[int, object] | None = None) -> tuple[int | None, str]:
    """(the input position whose buffer node `pos` takes in place, or None; why not).
    `roots`: the plan's views and their roots (a view has no buffer to take, and a value
    its kernel also reads through a view is read at other elements than it writes)."""
    roots = roots or {}
    node = graph.nodes[pos]
    kernel = kernel_of(node)
    step = ranges[pos][0]
    shaped = [v for v in dict.fromkeys(kernel.inputs) if v.type.shape == node.type.shape
              and v.type.itemsize == node.type.itemsize]
    if not kernel.inputs or not any(reads_elementwise(node, v) for v in shaped):
        what = _kernel_text(kernel) if kernel.body is not None else \
            f"{kernel.op.name}, {_a(kernel.op.kind.value)} op"
        return None, f"{what}, does not read an input of its own shape elementwise"
    why = []
    viewed = roots_read_through_views(kernel, index, roots)
    for v in shaped:
        src = index.get(v)
        if src is None:
            why.append(f"%{v.name} is a graph input (not in the arena)")
        elif src in roots:
            why.append(f"%{src} is a view (no bytes of its own)")
        elif src in viewed:
            why.append(f"%{src} is also read through a view")
        elif src not in ranges:
            why.append(f"%{src} is a graph output (its own array)")
        elif ranges[src][1] != step:
            why.append(f"%{src} is read later (until step {ranges[src][1]})")
        elif src in taken:
            why.append(f"%{src}'s buffer is already taken")
        elif reads_elementwise(node, v):
            return src, ""
    return None, "no input dies here: " + "; ".join(why)


def plan_reuse(graph: Graph, planned: list[int], ranges: dict[int, tuple[int, int]],
               views: list[int] = ()) -> tuple[dict[int, int], dict[int, str]]:
    """node position -> input position it overwrites in place; and, for the others, why."""
    index = {node: pos for pos, node in enumerate(graph.nodes)}
    roots = view_roots(graph, views)
    arena = {p: ranges[p] for p in planned}
    pairs, refused, taken = {}, {}, set()
    for pos in sorted(planned, key=lambda p: ranges[p][0]):
        if graph.nodes[pos].type.nbytes == 0:
            refused[pos] = "empty: takes no bytes"
            continue
        src, why = reuse_problem(graph, pos, arena, index, taken, roots)
        if src is None:
            refused[pos] = why
        else:
            pairs[pos] = src
            taken.add(src)
    return pairs, refused
