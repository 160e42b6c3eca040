"""Backend name -> compile function. Backends are imported lazily so `import dlc` stays
light (no torch, no triton, no llvmlite until asked for)."""
from __future__ import annotations

import importlib

from dlc.errors import DlcError
from dlc.ir.graph import Graph

BACKENDS = {"eager": "backends.eager", "triton": "backends.triton", "llvm": "backends.llvm"}


def compile_graph(graph: Graph, backend: str = "eager", **options):
    if backend not in BACKENDS:
        raise DlcError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    module = importlib.import_module(BACKENDS[backend])
    return module.compile(graph, **options)
