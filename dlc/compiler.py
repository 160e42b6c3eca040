"""`dlc.compile`: trace if needed, then hand the graph to a backend."""
from __future__ import annotations

from dlc.errors import ArgumentError
from dlc.ir.graph import Graph
from dlc.ir.verify import verify


def compile(model, *specs, backend: str = "eager", params: dict | None = None,
            module=None, **options):
    """Compile a Module, a function (with input specs) or a Graph into an Executable.

    `exe(*numpy_arrays)` returns one array or a tuple. `params` supplies values for
    param/state inputs (needed for a graph parsed from text, which carries no weights).
    `module` is passed to the tracer when `model` is a function that reads a Module's weights.
    """
    from backends.registry import compile_graph
    if isinstance(model, Graph):
        if specs:
            raise ArgumentError("dlc.compile(graph) takes no input specs: the graph has its types")
        graph = model
    else:
        from frontend.tracer import trace
        graph = trace(model, *specs, module=module)
    verify(graph)
    return compile_graph(graph, backend, params=params, **options)
