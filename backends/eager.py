"""The eager backend: the numpy interpreter over the op table, one op at a time.

It is the numerical reference every other backend is compared with, and the "eager"
baseline of `dlc bench`. Fused nodes are run by interpreting their body.
"""
from __future__ import annotations

import numpy as np

from dlc.errors import DlcError
from dlc.ir.graph import Graph
from backends.executable import Executable


def run_graph(graph: Graph, args: list[np.ndarray]) -> list[np.ndarray]:
    env = dict(zip(graph.inputs, args))
    for node in graph.nodes:
        ins = [env[v] for v in node.inputs]
        if node.body is not None:
            out = run_graph(node.body, ins)[0]
        else:
            try:
                out = np.asarray(node.op.impl(*ins, **node.attrs))
            except DlcError as e:
                e.args = (f"{node.op.name} {node.where()}: {e}",) + e.args[1:]
                raise
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
