"""Building the fused graph: each group of more than one node becomes a `fused` node whose
body is a graph of copies of its members; a group of one node is copied as it is. A group
with extra outputs yields them after its root, and a `result` node for each follows its
fused node; readers of an extra output read that result node."""
from __future__ import annotations

from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Input, Node, Value
from dlc.ir.groups import REDUCE, kernel_count, role
from dlc.ops import OPS
from passes.fuse.log import FusionLog, GroupRecord
from passes.fuse.rules import Context, Group

_MAX_NAME_OPS = 3  # op names in a kernel's name: fused2_matmul_add_relu


def body_order(group: Group, ctx: Context) -> list[Node]:
    """Members in graph order, no-input clones first; a contraction body starts with the
    contraction (it reads only block arguments, so it can always go first)."""
    members = sorted(group.members, key=ctx.pos.get)
    if group.contraction is None:
        return list(group.clones) + members
    rest = [m for m in members if m is not group.contraction]
    return [group.contraction] + list(group.clones) + rest


def _copy(node: Node, inputs: tuple[Value, ...]) -> Node:
    # Node() directly: the type is known, and a fused node's extra attributes stay as they are
    return Node(node.op, inputs, node.attrs, node.type, node.loc, node.scope, node.body)


def make_body(group: Group, ctx: Context, env: dict[Value, Value]) -> tuple[Graph, list]:
    """The body graph of `group` and the outer values bound to its block arguments."""
    order = body_order(group, ctx)
    inside = set(order)
    args: dict[Value, Input] = {}
    local: dict[Value, Value] = {}
    nodes = []
    for node in order:
        ins = []
        for v in node.inputs:
            if v not in inside and v not in args:
                args[v] = Input(f"a{len(args)}", v.type)
            ins.append(local[v] if v in inside else args[v])
        local[node] = _copy(node, tuple(ins))
        nodes.append(local[node])
    body = Graph(list(args.values()), nodes, [local[o] for o in group.outputs], "bb")
    return body, [env[v] for v in args]


def _anchor(group: Group, ctx: Context) -> Node:
    """The node whose loc and layer a kernel reports: its matmul/conv, its first reduction,
    or its root."""
    if group.contraction is not None:
        return group.contraction
    reductions = [m for m in group.members if role(m) == REDUCE]
    return min(reductions, key=ctx.pos.get) if reductions else group.root


def _name(index: int, body: Graph) -> str:
    ops = []
    for node in body.nodes:
        if node.inputs and node.op.name not in ops:
            ops.append(node.op.name)
    return "_".join([f"fused{index}"] + ops[:_MAX_NAME_OPS])


def _free_indices(graph: Graph):
    """0, 1, 2, ... skipping the numbers of fused nodes the graph already has, so that
    kernel names stay unique when a fused graph is fused again."""
    used = set()
    for node in graph.nodes:
        name = node.attrs.get("name", "") if node.body is not None else ""
        head = name.split("_", 1)[0]
        if head.startswith("fused") and head[5:].isdigit():
            used.add(int(head[5:]))
    index = 0
    while True:
        if index not in used:
            yield index
        index += 1


def _result(b: Builder, fused: Node, index: int, value: Node) -> Node:
    """The result node that names output `index` of `fused`, which computes `value`."""
    node = Node(OPS["result"], (fused,), {"index": index}, value.type, value.loc, value.scope)
    b.nodes.append(node)
    return node


def emit_graph(graph: Graph, groups: list[Group], ctx: Context, log: FusionLog,
               meta: dict) -> Graph:
    b = Builder(graph.name)
    env: dict[Value, Value] = {v: b.add_input(v.name, v.type, v.role, v.data)
                               for v in graph.inputs}
    names: dict[int, str] = {}
    indices = _free_indices(graph)
    for group in groups:
        if len(group.members) == 1 and not group.clones:
            node = _copy(group.root, tuple(env[v] for v in group.root.inputs))
        else:
            body, operands = make_body(group, ctx, env)
            name = _name(next(indices), body)
            anchor = _anchor(group, ctx)
            node = Node(OPS["fused"], tuple(operands), {"name": name, "kind": group.kind},
                        group.root.type, anchor.loc, anchor.scope, body)
            names[id(group)] = name
            members = [m for m in body_order(group, ctx) if m in group.members]
            log.groups.append(GroupRecord(name, group.kind, [ctx.pos[m] for m in members],
                                          [m.op.name for m in members], anchor.loc,
                                          [ctx.pos[o] for o in group.outputs]))
        b.nodes.append(node)
        env[group.root] = node
        for index, extra in enumerate(group.extras, 1):
            env[extra] = _result(b, node, index, extra)
    for record in log.records:
        record.group = names.get(id(record.group))
    log.kernels_after = kernel_count(b.nodes)
    out = b.finish([env[v] for v in graph.outputs], graph.aliases)
    out.meta = meta
    return out
