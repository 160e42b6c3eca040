"""Reverse-mode autodiff as a graph transformation.

`grad(graph, wrt)` returns a new Graph that recomputes the forward pass and then applies the
op table's VJP rules in reverse order. The VJP rules build graph nodes with the same Tensor
API as user code, so the result is an ordinary graph: it can be fused, planned, compiled —
and differentiated again (second derivatives through `dlc.call`).
"""
from __future__ import annotations

import warnings

from dlc.errors import DlcError
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Value
from dlc.ir.types import is_float
from passes.decompose import decompose, needs_decomposition_for_grad
from passes.rewrite import copy_inputs, replay


def _check_wrt(graph: Graph, wrt: list[str] | None) -> list[str]:
    if wrt is None:
        return [v.name for v in graph.inputs if v.role in ("input", "param")
                and is_float(v.dtype)]
    names = {v.name: v for v in graph.inputs}
    for w in wrt:
        if w not in names:
            raise DlcError(f"grad: wrt name {w!r} is not an input of @{graph.name}; inputs: "
                           f"{', '.join(names)}")
        if not is_float(names[w].dtype):
            raise DlcError(f"grad: input {w!r} has dtype {names[w].dtype} and is not "
                           f"differentiable (labels, indices and seeds are not)")
    return list(wrt)


def _dependents(graph: Graph, sources: set[Value]) -> set[Value]:
    """Values whose computation depends on any of `sources`."""
    reach = set(sources)
    for node in graph.nodes:
        if any(v in reach for v in node.inputs):
            reach.add(node)
    return reach


def grad(graph: Graph, wrt: list[str] | None = None, *, output: int = 0,
         with_value: bool = False, keep_outputs: bool = False) -> Graph:
    """Gradients of scalar output `output` with respect to the inputs named in `wrt`.

    Outputs: [value] if with_value, then one gradient per `wrt` name in order; with
    keep_outputs, the other forward outputs (and their aliases) follow."""
    if not 0 <= output < len(graph.outputs):
        raise DlcError(f"grad: @{graph.name} has {len(graph.outputs)} outputs, no output "
                       f"{output}")
    y_old = graph.outputs[output]
    if y_old.type.shape != () or not is_float(y_old.dtype):
        raise DlcError(f"grad: the differentiated output must be a float scalar; output "
                       f"{output} of @{graph.name} is {y_old.type}. Reduce it first, e.g. "
                       f".sum() or .mean()")
    wrt = _check_wrt(graph, wrt)
    graph = decompose(graph, needs_decomposition_for_grad)
    y_old = graph.outputs[output]
    wrt_old = [graph.input(w) for w in wrt]
    relevant = _dependents(graph, set(wrt_old))
    if y_old not in relevant:
        warnings.warn(f"grad: output {output} of @{graph.name} does not depend on "
                      f"{', '.join(wrt)}; the gradients are zero", stacklevel=2)

    from dlc.tensor import Tensor
    with Builder(graph.name + "_grad") as b:
        env = copy_inputs(b, graph)
        for node in graph.nodes:
            env[node] = replay(b, node, env)
        y = env[y_old]
        cot: dict[Value, Tensor] = {}
        if y_old in relevant:
            cot[y] = Tensor(b.emit("full", (), {"shape": (), "value": 1.0, "dtype": y.dtype}))
        for node in reversed(graph.nodes):
            g = cot.pop(env[node], None)
            if g is None:
                continue
            if node.op.vjp is None:
                raise DlcError(f"grad: op {node.op.name} {node.where()} has no VJP rule")
            with b.at(node.loc), b.scope(node.scope):
                ins = [Tensor(env[v]) for v in node.inputs]
                grads = node.op.vjp(g, Tensor(env[node]), ins, dict(node.attrs))
                for k, (old_in, gi) in enumerate(zip(node.inputs, grads)):
                    if gi is None or k in node.op.nondiff or old_in not in relevant:
                        continue
                    if gi.type != old_in.type:
                        raise DlcError(f"internal: VJP of {node.op.name} {node.where()} gave "
                                       f"{gi.type} for input {k} of type {old_in.type}")
                    key = env[old_in]
                    cot[key] = cot[key] + gi if key in cot else gi
        outs: list[Value] = [y] if with_value else []
        for w in wrt_old:
            g = cot.get(env[w])
            if g is None:
                g = Tensor(b.emit("full", (), {"shape": w.type.shape, "value": 0.0,
                                               "dtype": w.dtype}))
            outs.append(g.value)
        aliases = {}
        if keep_outputs:
            for i, v in enumerate(graph.outputs):
                if i == output:
                    continue
                if i in graph.aliases:
                    aliases[len(outs)] = graph.aliases[i]
                outs.append(env[v])
        return b.finish(outs, aliases)


def value_and_grad(graph: Graph, wrt: list[str] | None = None, *, output: int = 0) -> Graph:
    """Like grad, with the differentiated value as the first output."""
    return grad(graph, wrt, output=output, with_value=True)
