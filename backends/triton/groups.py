"""Kernel groups: each top-level node of the graph, with the body code generation sees.

A fused node (from passes.fuse) brings its body; any other node becomes a one-node body. A
body may yield several values: output 0 goes to the fused node's own buffer, output i to
that of its `result` node {index=i}, which is no group of its own (it launches nothing).
Bodies are then lowered to the primitives the generators know: composite ops replaced by
their op-table decomposition (so an unfused softmax still becomes one row kernel), var by
mean/sub/mul/sum/div, nested fused nodes inlined (their result nodes then read the inlined
yields). The top-level graph itself is left as it is, so positions in graph.nodes (and a
memory plan keyed by them) stay valid.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Callable

from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Input, Node, Value
from dlc.ir.groups import is_result, results_of
from passes.decompose import decompose
from passes.rewrite import copy_inputs, inline, replay
from backends.triton.codegen.common import identifier
from backends.triton.program import BufferRef


@dataclass
class Group:
    name: str
    position: int                # in graph.nodes
    node: Node
    body: Graph                  # primitives; body.inputs[k] is bound to node.inputs[k]
    input_refs: list[BufferRef]
    input_names: list[str]       # kernel parameter names of the body inputs
    # the buffer of each body output: the node's own, then its result nodes' (None for an
    # extra output no result node reads: nothing stores it)
    out_refs: list[BufferRef | None]

    @property
    def out_ref(self) -> BufferRef:
        return self.out_refs[0]


def ref_of(graph: Graph, v: Value, positions: dict[int, int],
           storage: Callable[[Value], str]) -> BufferRef:
    """The buffer holding top-level value v."""
    if isinstance(v, Input):
        return BufferRef("input", graph.inputs.index(v), storage(v), v.shape)
    return BufferRef("node", positions[id(v)], storage(v), v.shape)


def _one_node_body(node: Node, name: str) -> Graph:
    with Builder(name) as b:
        ins = [b.add_input(f"a{k}", v.type) for k, v in enumerate(node.inputs)]
        out = b.emit(node.op, tuple(ins), node.attrs, loc=node.loc, scope=node.scope)
    return b.finish([out])


def _rewrite(graph: Graph, select: Callable[[Node], bool], expand) -> Graph:
    """Replace each selected node by what expand(builder, node, env) emits."""
    if not any(select(n) for n in graph.nodes):
        return graph
    with Builder(graph.name) as b:
        env = copy_inputs(b, graph)
        for node in graph.nodes:
            if select(node):
                with b.at(node.loc), b.scope(node.scope):
                    env[node] = expand(b, node, env)
            else:
                env[node] = replay(b, node, env)
        return b.finish([env[v] for v in graph.outputs], graph.aliases)


def _inline_fused(b: Builder, node: Node, env) -> Value:
    """A nested fused node's body in place; every yield is kept in env under (node, i) for
    the result nodes that read it."""
    outs = inline(b, node.body, [env[v] for v in node.inputs])
    env.update(((node, i), v) for i, v in enumerate(outs))
    return outs[0]


def _inline_result(b: Builder, node: Node, env) -> Value:
    return env[(node.inputs[0], node.attrs["index"])]


def _inline_nested(b: Builder, node: Node, env) -> Value:
    return (_inline_result if is_result(node) else _inline_fused)(b, node, env)


def _expand_var(b: Builder, node: Node, env) -> Value:
    """var = sum((x - mean(x))^2) / max(N - correction, 0): two same-space reductions."""
    x = env[node.inputs[0]]
    axes, keep = node.attrs["axes"], node.attrs["keepdims"]
    count = prod(x.shape[a] for a in axes)
    mean = b.emit("mean", (x,), {"axes": axes, "keepdims": True})
    dev = b.emit("sub", (x, mean), {})
    total = b.emit("sum", (b.emit("mul", (dev, dev), {}),), {"axes": axes, "keepdims": keep})
    denom = b.emit("full", (), {"shape": (), "value": float(max(count - node.attrs["correction"],
                                                                   0)), "dtype": x.dtype})
    return b.emit("div", (total, denom), {})


def lower_body(body: Graph) -> Graph:
    """The body in the primitives the generators handle."""
    body = _rewrite(body, lambda n: n.body is not None or is_result(n), _inline_nested)
    body = decompose(body)
    return _rewrite(body, lambda n: n.op.name == "var" and n.body is None, _expand_var)


def out_refs(graph: Graph, node: Node, results: list[Node], positions: dict[int, int],
             storage: Callable[[Value], str]) -> list[BufferRef | None]:
    """The buffer of each value node's kernel yields: its own, then its result nodes'."""
    refs: list[BufferRef | None] = [ref_of(graph, node, positions, storage)]
    if node.body is not None:
        refs += [None] * (len(node.body.outputs) - 1)
    for r in results:
        refs[r.attrs["index"]] = ref_of(graph, r, positions, storage)
    return refs


def make_groups(graph: Graph, storage: Callable[[Value], str]) -> list[Group]:
    """One group per top-level node that launches kernels (every node but `result`s)."""
    positions = {id(n): k for k, n in enumerate(graph.nodes)}
    results = results_of(graph.nodes)
    groups, names = [], set()
    for pos, node in enumerate(graph.nodes):
        if is_result(node):
            continue  # its buffer is an output of its fused node's group
        if node.body is not None:
            base = identifier(str(node.attrs.get("name") or f"fused_{pos}"))
        else:
            base = identifier(f"{node.scope}_{node.op.name}" if node.scope else node.op.name)
        name = base if base not in names and node.body is not None else f"{base}_{pos}"
        names.add(name)
        body = node.body if node.body is not None else _one_node_body(node, name)
        refs = [ref_of(graph, v, positions, storage) for v in node.inputs]
        arg_names = [identifier(f"in_{v.name}") if isinstance(v, Input) else f"in_t{r.key}"
                     for v, r in zip(node.inputs, refs)]
        arg_names = [n if arg_names.count(n) == 1 else f"{n}_{k}"
                     for k, n in enumerate(arg_names)]
        groups.append(Group(name, pos, node, lower_body(body), refs, arg_names,
                            out_refs(graph, node, results.get(node, []), positions, storage)))
    return groups
