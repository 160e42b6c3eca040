"""The eager backend: the numpy interpreter over the op table, one op at a time.

It is the numerical reference every other backend is compared with, and the "eager"
baseline of `dlc bench`. Fused nodes are run by interpreting their body once; a body that
yields several values binds the extra ones to the fused node's `result` nodes.
"""
from __future__ import annotations

import numpy as np

from dlc.errors import DlcError
from dlc.ir.graph import Graph, Node
from dlc.ir.groups import is_result
from backends.executable import Executable


def _run_node(node: Node, ins: list[np.ndarray],
              extras: dict[Node, list[np.ndarray]]) -> np.ndarray:
    """The value of one node; a fused node's other yielded values go to `extras`."""
    if node.body is not None:
        outs = run_graph(node.body, ins)
        if len(outs) > 1:
            extras[node] = outs
        return outs[0]
    if is_result(node):
        return extras[node.inputs[0]][node.attrs["index"]]
    try:
        return np.asarray(node.op.impl(*ins, **node.attrs))
    except DlcError as e:
        e.args = (f"{node.op.name} {node.where()}: {e}",) + e.args[1:]
        raise


def run_graph(graph: Graph, args: list[np.ndarray]) -> list[np.ndarray]:
    env = dict(zip(graph.inputs, args))
    extras: dict[Node, list[np.ndarray]] = {}
    for node in graph.nodes:
        out = _run_node(node, [env[v] for v in node.inputs], extras)
        if out.shape != node.type.shape or out.dtype.name != node.type.dtype:
            raise DlcError(f"internal: {node.op.name} {node.where()} produced "
                           f"{out.dtype.name}{list(out.shape)}, its type says {node.type}")
        env[node] = out
    return [env[v] for v in graph.outputs]


class EagerExecutable(Executable):
    backend = "eager"

    def run(self, inputs):
        return run_graph(self.graph, inputs)


def compile(graph: Graph, params=None, on_nonfinite: str = "raise") -> EagerExecutable:
    return EagerExecutable(graph, params, on_nonfinite)
