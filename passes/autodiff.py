"""Reverse-mode autodiff as a graph transformation.

`grad(graph, wrt)` returns a new Graph that recomputes the forward pass and then applies the
op table's VJP rules in reverse order. The VJP rules build graph nodes with the same Tensor
API as user code, so the result is an ordinary graph: it can be fused, planned, compiled —
and differentiated again (second derivatives through `dlc.call`).

Gradients flow along float values only, and only through the inputs an op does not list in
`nondiff` (labels, indices, seeds, stop_gradient). Composite ops without a VJP of their own
are differentiated through their decomposition. Nodes the result does not need (gradients
of inputs nobody asked for, forward values no VJP reads) are left out.
"""
from __future__ import annotations

import os
import sys
import warnings

from dlc.errors import DlcError
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Input, Node, Value
from dlc.ir.types import is_float
from passes.decompose import decompose, needs_decomposition_for_grad
from passes.rewrite import copy_inputs, replay


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INTERNAL = tuple(os.path.join(_ROOT, p) + os.sep
                  for p in ("dlc", "frontend", "passes", "backends"))


def _user_stacklevel() -> int:
    """The stacklevel of the innermost caller outside dlc, so a warning names user code."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    return level


def _describe(v: Value) -> str:
    """'input 'x'' or 'the result of mul at model.py:3', for error messages."""
    if isinstance(v, Input):
        return f"input {v.name!r}"
    assert isinstance(v, Node)
    return f"the result of {v.op.name} {v.where()}"


def _check_output(graph: Graph, output: int) -> Value:
    if not 0 <= output < len(graph.outputs):
        raise DlcError(f"grad: @{graph.name} has {len(graph.outputs)} outputs, no output "
                       f"{output}")
    y = graph.outputs[output]
    if y.type.shape != () or not is_float(y.dtype):
        raise DlcError(f"grad: the differentiated output must be a float scalar; output "
                       f"{output} of @{graph.name} ({_describe(y)}) is {y.type}. Reduce it "
                       f"first, e.g. .sum() or .mean()")
    return y


def _check_wrt(graph: Graph, wrt: list[str] | str | None) -> list[str]:
    """The names to differentiate by: each a float input of the graph."""
    floats = [v.name for v in graph.inputs if is_float(v.dtype)]
    if wrt is None:
        return [v.name for v in graph.inputs if v.role in ("input", "param")
                and is_float(v.dtype)]
    if isinstance(wrt, str):
        wrt = [wrt]
    names = {v.name: v for v in graph.inputs}
    for w in wrt:
        if w not in names:
            raise DlcError(f"grad: wrt name {w!r} is not an input of @{graph.name}; "
                           f"differentiable inputs: {', '.join(floats) or 'none'}")
        if not is_float(names[w].dtype):
            raise DlcError(f"grad: input {w!r} of @{graph.name} has dtype {names[w].dtype} "
                           f"and is not differentiable (labels, indices and seeds are not); "
                           f"differentiable inputs: {', '.join(floats) or 'none'}")
    return list(wrt)


def _on_gradient_path(graph: Graph, sources: set[Value]) -> set[Value]:
    """Values a gradient can reach from `sources`: float values computed from them through
    inputs that are not `nondiff`."""
    reach = set(sources)
    for node in graph.nodes:
        if is_float(node.dtype) and any(
                v in reach for k, v in enumerate(node.inputs) if k not in node.op.nondiff):
            reach.add(node)
    return reach


def _live_nodes(nodes: list[Node], outputs: list[Value]) -> list[Node]:
    """The nodes the outputs depend on, in their order."""
    live = set(outputs)
    for node in reversed(nodes):
        if node in live:
            live.update(node.inputs)
    return [n for n in nodes if n in live]


def grad(graph: Graph, wrt: list[str] | str | None = None, *, output: int = 0,
         with_value: bool = False, keep_outputs: bool = False) -> Graph:
    """Gradients of scalar output `output` with respect to the inputs named in `wrt`.

    Outputs: [value] if with_value, then one gradient per `wrt` name in order; with
    keep_outputs, the other forward outputs (and their aliases) follow. An output that no
    `wrt` input reaches gets zero gradients and a warning."""
    _check_output(graph, output)
    wrt = _check_wrt(graph, wrt)
    graph = decompose(graph, needs_decomposition_for_grad)
    y_old = graph.outputs[output]
    wrt_old = [graph.input(w) for w in wrt]
    relevant = _on_gradient_path(graph, set(wrt_old))
    if wrt and y_old not in relevant:
        warnings.warn(f"grad: output {output} of @{graph.name} has no differentiable path "
                      f"from {', '.join(wrt)}; the gradients are zero",
                      stacklevel=_user_stacklevel())

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
            with b.at(node.loc), b.scope(node.scope):
                _backward(node, g, env, relevant, cot)
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
    return Graph(b.inputs, _live_nodes(b.nodes, outs), outs, b.name, aliases)


def _backward(node: Node, g, env: dict, relevant: set[Value], cot: dict) -> None:
    """Apply `node`'s VJP to its cotangent `g`; add the results to its inputs' cotangents."""
    from dlc.tensor import Tensor
    if node.op.vjp is None:
        raise DlcError(f"grad: op {node.op.name} {node.where()} has no VJP rule")
    ins = [Tensor(env[v]) for v in node.inputs]
    grads = node.op.vjp(g, Tensor(env[node]), ins, dict(node.attrs))
    if len(grads) != len(ins):
        raise DlcError(f"internal: VJP of {node.op.name} {node.where()} gave {len(grads)} "
                       f"gradients for {len(ins)} inputs")
    for k, (old_in, gi) in enumerate(zip(node.inputs, grads)):
        if gi is None or k in node.op.nondiff or old_in not in relevant:
            continue
        if gi.type != old_in.type:
            raise DlcError(f"internal: VJP of {node.op.name} {node.where()} gave "
                           f"{gi.type} for input {k} of type {old_in.type}")
        key = env[old_in]
        cot[key] = cot[key] + gi if key in cot else gi


def value_and_grad(graph: Graph, wrt: list[str] | str | None = None, *,
                   output: int = 0) -> Graph:
    """Like grad, with the differentiated value as the first output."""
    return grad(graph, wrt, output=output, with_value=True)
