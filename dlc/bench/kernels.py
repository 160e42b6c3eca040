"""Per-kernel report (`dlc bench --kernels`): every top-level node of the compiled graph (a
fused group or a lone op) timed as one kernel on the backend and as its ops run one by one
in eager, with bytes moved, achieved rate, fraction of the floor, and its error against a
float64 run of the same ops."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import dlc
from dlc.bench.floors import Floors
from dlc.bench.timing import measure
from dlc.ir import parse
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Node
from dlc.ir.groups import is_result


@dataclass
class KernelResult:
    name: str
    ops: str
    loc: str
    fused_s: float | None
    eager_s: float | None
    nbytes: int
    flops: float
    rate: str               # achieved GB/s or GFLOP/s
    floor_fraction: float | None
    max_rel_err: float | None
    eager_rel_err: float | None
    flags: list[str]


def capture(graph: Graph, args: list[np.ndarray]) -> dict:
    """Every value of `graph` on `args`, computed by the eager interpreter (a result node's
    with its fused node)."""
    from backends.eager import run_graph
    env = dict(zip(graph.inputs, args))
    extra = {}
    for node in graph.nodes:
        if is_result(node):
            env[node] = extra[node.inputs[0]][node.attrs["index"]]
            continue
        values = run_graph(single_node_graph(node), [env[v] for v in node.inputs])
        env[node] = values[0]
        extra[node] = values
    return env


def single_node_graph(node: Node) -> Graph:
    """A graph holding just `node`, its inputs as graph inputs; every output of a
    multi-output fused node is an output of the graph."""
    with Builder(_kernel_name(node)) as b:
        ins = [b.add_input(f"in{i}", v.type) for i, v in enumerate(node.inputs)]
        out = b.emit(node.op.name, tuple(ins), dict(node.attrs), body=node.body, loc=node.loc)
        count = len(node.body.outputs) if node.body is not None else 1
        outs = [out] + [b.emit("result", (out,), {"index": i}) for i in range(1, count)]
    return b.finish(outs)


def _kernel_name(node: Node) -> str:
    return str(node.attrs.get("name", node.op.name)) if node.body is not None else node.op.name


def _ops(node: Node) -> list[str]:
    return [n.op.name for n in node.body.nodes] if node.body is not None else [node.op.name]


def _listed(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _flops(node: Node) -> float:
    nodes = node.body.nodes if node.body is not None else [node]
    total = 0.0
    for n in nodes:
        if n.op.name == "matmul":
            a = n.inputs[0].type.shape
            total += 2.0 * int(np.prod(n.type.shape)) * a[-1]
        elif n.op.name in ("conv", "conv_transpose"):
            w = n.inputs[1].type.shape
            total += 2.0 * int(np.prod(n.type.shape)) * int(np.prod(w[1:]))
        else:
            total += float(np.prod(n.type.shape))
    return total


def _float64(graph: Graph) -> Graph | None:
    """The same ops in float64 (the text form retyped), or None if that does not type."""
    try:
        return parse(str(graph).replace("f32", "f64"))
    except dlc.DlcError:
        return None


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """Max error relative to the largest reference value (normwise)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
    return float(np.abs(got - want).max(initial=0.0)) / scale


def kernel_report(exe, arrays: list, backend: str, floors: Floors | None, repeat: int,
                  threads: int) -> list[KernelResult]:
    from backends.eager import run_graph
    graph = exe.graph
    env = capture(graph, exe.bind(arrays))
    out = []
    for node in graph.nodes:
        if is_result(node):
            continue  # written by its fused node's kernel
        sub = single_node_graph(node)
        ins = [env[v] for v in node.inputs]
        flops = _flops(node)
        flags = []
        opts = {"threads": threads} if backend == "llvm" else {}
        kexe = dlc.compile(sub, backend=backend, **opts)
        got = _listed(kexe(*ins))
        nbytes = sum(a.nbytes for a in ins) + sum(np.asarray(a).nbytes for a in got)
        fused_s = measure(lambda: kexe(*ins), repeat=repeat, warmup=1).median
        body = node.body if node.body is not None else sub
        eager_exe = dlc.compile(body, backend="eager")
        eager_s = measure(lambda: eager_exe(*ins), repeat=repeat, warmup=1).median
        err = eager_err = None
        ref64 = _float64(body)
        if ref64 is not None and np.asarray(got[0]).dtype.kind == "f":
            ins64 = [a.astype(np.float64) if a.dtype == np.float32 else a for a in ins]
            want = run_graph(ref64, ins64)
            eager = _listed(eager_exe(*ins))
            floats = [i for i, w in enumerate(want) if w.dtype.kind == "f"]
            err = max(_rel_err(got[i], want[i]) for i in floats)
            eager_err = max(_rel_err(eager[i], want[i]) for i in floats)
            if err > max(10 * eager_err, 1e-5):
                flags.append("less accurate than eager")
        if backend != "eager" and fused_s > eager_s:
            flags.append("slower than eager")
        heavy = flops > 4 * nbytes
        rate = (f"{flops / fused_s / 1e9:.1f} GFLOP/s" if heavy
                else f"{nbytes / fused_s / 1e9:.1f} GB/s")
        frac = floors.seconds(flops if heavy else 0.0, nbytes) / fused_s if floors else None
        out.append(KernelResult(_kernel_name(node), " ".join(_ops(node)), node.loc or "",
                                fused_s, eager_s, nbytes, flops, rate, frac, err, eager_err,
                                flags))
    return out
