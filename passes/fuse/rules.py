"""When may a producer join its consumer's group? One function, `decide`, answers for one
edge with a reason code (passes/fuse/log.py REASONS).

Groups grow from their root (the node whose value leaves the group) towards producers, so
every member but the root is read only inside the group: a group has one output here
(passes/fuse/multi.py then merges groups into multi-output kernels). The rules, in the
order they are checked:

1. the producer must be able to live in a fused body (dlc.ir.groups.role);
2. a matmul/conv never takes its operands' producers (it reads each element many times);
3. a node with no inputs (full, arange) is recomputed in every kernel that reads it;
4. a graph output stays a kernel's output;
5. kinds: at most one contraction; a contraction joins only a pointwise group that keeps
   its shape and is elementwise on it (its epilogue); a reduction never joins an epilogue,
   nor a group that does not read its input when other kernels do (memory: it would keep
   that input alive until the whole group runs);
6. no cycle: if another reader of the producer leads back into the group, fusing would
   make the condensed graph cyclic;
7. every other reader of the producer must be in the group (else it is materialized).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dlc.ir.graph import Graph, Node, Value
from dlc.ir.groups import (CONTRACT, CONTRACTION_KIND, POINTWISE, POINTWISE_KIND, REDUCE,
                           REDUCTION_KIND, is_elementwise, role)


@dataclass(eq=False)
class Group:
    """A fused group being built: its root, its members, and nodes recomputed inside it.

    `extras` are members read outside the group too, in graph order: the extra outputs of
    a multi-output kernel (passes/fuse/multi.py); the root is always output 0."""
    root: Node
    members: set[Node] = field(default_factory=set)
    clones: list[Node] = field(default_factory=list)  # no-input nodes copied into the body
    contraction: Node | None = None
    reductions: int = 0
    extras: list[Node] = field(default_factory=list)

    def __post_init__(self):
        self.add(self.root)

    def add(self, node: Node) -> None:
        self.members.add(node)
        r = role(node)
        if r == CONTRACT:
            self.contraction = node
        elif r == REDUCE:
            self.reductions += 1

    def absorb(self, other: "Group") -> None:
        """Take `other`'s members and clones (its root and extras are members too)."""
        for m in other.members:
            self.add(m)
        self.clones = [c for c in dict.fromkeys(self.clones + other.clones)
                       if c not in self.members]

    @property
    def outputs(self) -> list[Node]:
        return [self.root] + self.extras

    @property
    def kind(self) -> str:
        if self.contraction is not None:
            return CONTRACTION_KIND
        return REDUCTION_KIND if self.reductions else POINTWISE_KIND


class Context:
    """What the rules need to know about the graph: readers, positions, outputs."""

    def __init__(self, graph: Graph):
        self.nodes = list(graph.nodes)
        self.pos = {node: i for i, node in enumerate(graph.nodes)}
        self.outputs = set(graph.outputs)
        self.users: dict[Value, list[Node]] = {}
        for node in graph.nodes:
            for v in dict.fromkeys(node.inputs):
                self.users.setdefault(v, []).append(node)

    def producers(self, node: Node) -> list[Node]:
        """The distinct node operands of `node` (graph inputs are not producers)."""
        return [v for v in dict.fromkeys(node.inputs) if v in self.pos]

    def name(self, node: Node) -> str:
        return f"%{self.pos[node]} {node.op.name}"

    def leads_into(self, start: Node, group: Group) -> Node | None:
        """A member of `group` reachable from `start` by following readers, or None."""
        limit = self.pos[group.root]
        seen, stack = {start}, [start]
        while stack:
            node = stack.pop()
            if node in group.members:
                return node
            for u in self.users.get(node, ()):
                if u not in seen and self.pos[u] <= limit:
                    seen.add(u)
                    stack.append(u)
        return None


def why_not_fusible(node: Node) -> str:
    if node.body is not None:
        return f"{node.op.name} is already a fused group"
    if node.op.decompose is not None:
        return f"{node.op.name} is a composite op (decompose it first)"
    kind = node.op.kind.value
    return f"{node.op.name} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} op"


def _epilogue_problem(ctx: Context, group: Group, head: Node) -> str | None:
    """Why the members that read `head`'s value are not an epilogue of it, if they are not."""
    reach, stack = {head}, [head]
    while stack:
        for u in ctx.users.get(stack.pop(), ()):
            if u in group.members and u not in reach:
                reach.add(u)
                stack.append(u)
                if not (is_elementwise(u) and u.type.shape == head.type.shape):
                    return f"{ctx.name(u)} gives {u.type} from the {head.type} result"
    return None


def _shared_input(ctx: Context, p: Node, group: Group) -> str:
    """Why reduction `p` should stay a kernel of its own, or "": its input is materialized
    for other kernels anyway and nothing else in the group reads it. Fused, the reduction
    would keep that input alive until the whole group can run (a training step's loss
    that also sums every gradient would hold all gradients to the end); alone, it runs as
    soon as its input is ready and lets it die."""
    v = p.inputs[0]
    if v not in ctx.pos or role(v) == POINTWISE:
        return ""  # a graph input (never in the arena), or a producer that may join too
    readers = ctx.users[v]
    if any(u in group.members for u in readers):
        return ""
    others = [u for u in readers if u is not p]
    if not others:
        return ""
    return (f"its input {ctx.name(v)} is also read by " + ", ".join(ctx.name(u) for u in
                                                                    others[:3])
            + (" ..." if len(others) > 3 else ""))


def _kind_rule(ctx: Context, p: Node, r: str, group: Group) -> tuple[bool, str, str]:
    """Rule 5: may a node of role `r` join `group`? (ok, reason, detail)"""
    if r == CONTRACT:
        if group.contraction is not None:
            return False, "two_contractions", f"the group has {ctx.name(group.contraction)}"
        if group.reductions:
            return False, "contraction_into_reduction", ""
        if group.root.type.shape != p.type.shape:
            return False, "epilogue_shape", (f"the group gives {group.root.type}, the "
                                             f"{p.op.name} {p.type}")
        problem = _epilogue_problem(ctx, group, p)
        if problem:
            return False, "epilogue_not_elementwise", problem
        return True, "contraction_epilogue", ""
    if r == REDUCE:
        if group.contraction is not None:
            return False, "reduction_in_epilogue", ""
        shared = _shared_input(ctx, p, group)
        if shared:
            return False, "reduction_of_shared_input", shared
        return True, ("reduction_stages" if group.reductions else "reduction_consumer"), ""
    if group.contraction is not None:
        return True, "epilogue_operand", ""
    return True, ("into_reduction" if group.reductions else "pointwise_chain"), ""


def decide(ctx: Context, p: Node, group: Group) -> tuple[bool, str, str]:
    """May producer `p` join `group`? Returns (ok, reason code, detail)."""
    r = role(p)
    if r is None:
        return False, "not_fusible", why_not_fusible(p)
    if group.contraction is not None and group.contraction in ctx.users[p]:
        return False, "contraction_operand", ""
    if r == POINTWISE and not p.inputs:
        return True, "recompute", ""
    if p in ctx.outputs:
        return False, "graph_output", ""
    ok, reason, detail = _kind_rule(ctx, p, r, group)
    if not ok:
        return ok, reason, detail
    outside = [u for u in ctx.users[p] if u not in group.members]
    for u in outside:
        back = ctx.leads_into(u, group)
        if back is not None:
            return False, "cycle", (f"{ctx.name(u)} reads it and leads to {ctx.name(back)} "
                                    f"in the group")
    if outside:
        return False, "multi_use", "also read by " + ", ".join(ctx.name(u) for u in outside)
    return True, reason, detail
