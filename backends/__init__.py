"""Backends: each turns a Graph into an Executable. See `backends.registry`."""
from backends.registry import BACKENDS, compile_graph  # noqa: F401
