"""`dlc.compile`: trace if needed, run the pass pipeline of the optimization level, then
hand the graph to a backend."""
from __future__ import annotations

import os

from dlc.errors import ArgumentError
from dlc.ir.graph import Graph
from dlc.ir.verify import verify as verify_graph


def compile(model, *specs, backend: str = "eager", params: dict | None = None,
            module=None, opt_level: str = "O2", dump_dir: str | os.PathLike | None = None,
            verify: bool | None = None, **options):
    """Compile a Module, a function (with input specs) or a Graph into an Executable.

    `exe(*numpy_arrays)` returns one array or a tuple. `params` supplies values for
    param/state/const inputs (needed for a graph parsed from text, which carries no
    weights). `module` is passed to the tracer when `model` is a function that reads a
    Module's weights. `opt_level` picks the pass pipeline (O0 none, O1 simplify, O2 adds
    fusion, scheduling and memory planning; see passes/manager.py); `dump_dir` writes the
    graph after every pass there; `verify` verifies after every pass (default: only
    under pytest). Other options go to the backend.
    """
    from backends.registry import compile_graph
    graph = optimized_graph(model, *specs, params=params, module=module,
                            opt_level=opt_level, dump_dir=dump_dir, verify=verify,
                            launches=LAUNCHES.get(backend, "cheap"))
    if params:  # the passes may have dropped consts that fold and dce made unused
        kept = {v.name for v in graph.inputs}
        params = {k: v for k, v in params.items() if k in kept}
    return compile_graph(graph, backend, params=params, **options)


# What a kernel launch costs on a backend's device, as the fusion pass weighs it: on a GPU
# every kernel is a launch of a few microseconds, so merging small independent kernels
# pays; a CPU backend calls a small kernel as a function on one thread, and merging buys
# nothing (measured: the char_rnn example 4% slower on llvm with its small kernels merged).
LAUNCHES = {"triton": "costly"}
LAUNCHES_KEY = "launches"


def optimized_graph(model, *specs, params: dict | None = None, module=None,
                    opt_level: str = "O2", dump_dir: str | os.PathLike | None = None,
                    verify: bool | None = None, launches: str = "cheap") -> Graph:
    """What every compile path does before a backend: trace unless `model` is a Graph,
    verify, rebind consts that `params` overrides, run the pipeline of `opt_level`.
    `launches` ("cheap" or "costly") is what a kernel launch costs on the target
    (graph.meta["launches"], read by the fusion pass)."""
    from passes.manager import pipeline, run_pipeline
    pipeline(opt_level)  # an unknown level fails before tracing
    if isinstance(model, Graph):
        if specs:
            raise ArgumentError("dlc.compile(graph) takes no input specs: the graph has its types")
        graph = model
    else:
        from frontend.tracer import trace
        graph = trace(model, *specs, module=module)
    verify_graph(graph)
    if params:
        check_param_names(graph, params)
        graph = rebind_consts(graph, params)
    if launches not in ("cheap", "costly"):
        raise ArgumentError(f"launches must be 'cheap' or 'costly', got {launches!r}")
    graph = Graph(graph.inputs, graph.nodes, graph.outputs, graph.name, graph.aliases,
                  {**graph.meta, LAUNCHES_KEY: launches})
    return run_pipeline(graph, opt_level, verify=verify, dump_dir=dump_dir).graph


def check_param_names(graph: Graph, params: dict) -> None:
    """Every name in `params` is a param/state/const input of `graph`."""
    roles = {v.name: v.role for v in graph.inputs}
    unknown = sorted(k for k in params if k not in roles)
    if unknown:
        raise ArgumentError(f"params for unknown inputs: {', '.join(unknown)}; the graph's "
                            f"inputs: {', '.join(roles)}")
    users = sorted(k for k in params if roles[k] == "input")
    if users:
        raise ArgumentError(f"params names user input(s) {', '.join(users)}: pass their "
                            f"arrays when calling the executable")


def rebind_consts(graph: Graph, params: dict) -> Graph:
    """A copy of `graph` whose consts that `params` overrides carry the new data, so that
    constant folding does not use the old. Params and data-less consts (a parsed graph's)
    are bound by the backend instead, which keeps the graph (and the positions a parsed
    graph's meta holds) as it is."""
    stale = {v.name for v in graph.inputs
             if v.role == "const" and v.data is not None and v.name in params}
    if not stale:
        return graph
    from passes.simplify.common import copy_node, rebuild

    def inputs(b, old: Graph) -> dict:
        return {v: b.add_input(v.name, v.type, v.role,
                               params[v.name] if v.name in stale else v.data)
                for v in old.inputs}

    return rebuild(graph, copy_node, inputs=inputs)
