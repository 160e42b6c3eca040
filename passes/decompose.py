"""decompose: replace composite ops (softmax, layer_norm, losses, ...) by the primitives of
their `decompose` rule, so that fusion sees only primitives and autodiff needs no VJP of its
own for them. Repeats until no selected node is left."""
from __future__ import annotations

from typing import Callable

from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Node
from passes.rewrite import copy_inputs, replay


def has_decomposition(node: Node) -> bool:
    return node.op.decompose is not None and node.body is None


def needs_decomposition_for_grad(node: Node) -> bool:
    """Composite ops without a VJP of their own are differentiated through primitives."""
    return node.op.vjp is None and has_decomposition(node)


def decompose(graph: Graph, select: Callable[[Node], bool] = has_decomposition) -> Graph:
    """Expand every node for which `select` is true; nodes keep their loc and layer scope."""
    from dlc.tensor import Tensor
    meta = dict(graph.meta)
    while any(select(n) for n in graph.nodes):
        with Builder(graph.name) as b:
            env = copy_inputs(b, graph)
            for node in graph.nodes:
                if not select(node):
                    env[node] = replay(b, node, env)
                    continue
                with b.at(node.loc), b.scope(node.scope):
                    out = node.op.decompose([Tensor(env[v]) for v in node.inputs],
                                            dict(node.attrs))
                if out.type != node.type:
                    raise AssertionError(f"decomposition of {node.op.name} gives {out.type}, "
                                         f"the op gives {node.type}")
                env[node] = out.value
            graph = b.finish([env[v] for v in graph.outputs], graph.aliases)
            graph.meta = dict(meta)
    return graph
