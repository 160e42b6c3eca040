"""The graph-building API: a Builder collects inputs and nodes; `emit` adds one node.

The tracer, the VJP rules and the passes all build graphs through `emit`, so every node gets
its type from the op table's rule and its `loc` (the user's file:line) in one place.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from dlc.errors import ShapeError
from dlc.ir.graph import Graph, Input, Node, Value
from dlc.ir.types import TensorType, canonical_dtype

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_INTERNAL = tuple(os.path.join(_ROOT, p) + os.sep
                  for p in ("dlc", "frontend", "passes", "backends"))
# Entry points that run user code: a walk that reaches one has left the user's code behind,
# so the frames above it (the console script, runpy) are not a useful location.
_BOUNDARIES = tuple(os.path.join(_ROOT, "dlc", f) for f in ("cli.py", "__main__.py"))
_STACK: list["Builder"] = []


def user_loc(stop=None) -> str | None:
    """file:line of the innermost caller outside dlc's own packages, looking no further out
    than the frame `stop` (a trace's own frame: what called the trace is not the model)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame is stop:
            return None
        fname = frame.f_code.co_filename
        if fname in _BOUNDARIES:
            return None
        if not fname.startswith(_INTERNAL) and not fname.startswith("<frozen"):
            try:
                rel = os.path.relpath(fname)
                fname = rel if not rel.startswith("..") else fname
            except ValueError:
                pass
            return f"{fname}:{frame.f_lineno}"
        frame = frame.f_back
    return None


class Builder:
    """Collects graph inputs and nodes. Use as a context manager to make it current."""

    def __init__(self, name: str = "main"):
        self.name = name
        self.inputs: list[Input] = []
        self.nodes: list[Node] = []
        self.scopes: list[str] = []
        self.loc_override: list[str | None] = []
        # where the layers being called were built: the loc of nodes whose code is all dlc's
        # own (a Sequential of library layers), found by no frame of the user's
        self.layer_locs: list[str | None] = []
        self.entry_frame = None  # set by the tracer to its own frame
        self._const_cache: dict[int, Input] = {}

    def __enter__(self) -> "Builder":
        _STACK.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _STACK.pop()

    # -- inputs ----------------------------------------------------------------------------
    def add_input(self, name: str, type: TensorType, role: str = "input",
                  data: np.ndarray | None = None) -> Input:
        if any(v.name == name for v in self.inputs):
            raise ShapeError(f"duplicate graph input name {name!r}")
        v = Input(name, type, role, data)
        self.inputs.append(v)
        return v

    def const(self, array: np.ndarray) -> Input:
        """A numpy array captured by the traced code becomes a `const` input."""
        key = id(array)
        if key in self._const_cache and self._const_cache[key].data is array:
            return self._const_cache[key]
        array = np.asarray(array)
        v = self.add_input(f"const{len(self._const_cache)}",
                           TensorType(array.shape, canonical_dtype(array.dtype)),
                           "const", array)
        self._const_cache[key] = v
        return v

    # -- nodes -----------------------------------------------------------------------------
    def emit(self, op: str, inputs: tuple[Value, ...], attrs: dict[str, Any],
             body: Graph | None = None, loc: str | None = None,
             scope: str | None = None) -> Node:
        from dlc.ops.registry import get_op
        opdef = get_op(op) if isinstance(op, str) else op
        op = opdef.name
        if loc is None:
            if self.loc_override:
                loc = self.loc_override[-1]
            else:
                # the user's line inside the trace, else the line that built the layer being
                # called, else the user's line that started the trace (a loss around a model)
                loc = user_loc(self.entry_frame) or next(
                    (where for where in reversed(self.layer_locs) if where), None) or \
                    user_loc()
        if scope is None:
            scope = self.scopes[-1] if self.scopes else None
        types = [v.type for v in inputs]
        try:
            opdef.check_arity(len(inputs))
            canon = opdef.canonical_attrs(types, attrs)
            if body is not None:  # a fused group takes its type from its body's output 0
                out_type = body.outputs[0].type
            else:
                out_type = opdef.infer_for(inputs, canon)
        except ShapeError as e:
            where = " ".join(p for p in (f"in layer {scope}" if scope else "",
                                         f"at {loc}" if loc else "") if p)
            shapes = ", ".join(str(t) for t in types)
            raise ShapeError(f"{op} {where}: {e} (inputs: {shapes})".replace("  ", " ")) \
                from None
        node = Node(opdef, tuple(inputs), canon, out_type, loc, scope, body)
        self.nodes.append(node)
        return node

    @contextmanager
    def scope(self, name: str | None) -> Iterator[None]:
        if name is None:
            yield
            return
        self.scopes.append(name)
        try:
            yield
        finally:
            self.scopes.pop()

    @contextmanager
    def at(self, loc: str | None) -> Iterator[None]:
        """Give every node emitted inside the block this loc (VJPs use the forward loc)."""
        self.loc_override.append(loc)
        try:
            yield
        finally:
            self.loc_override.pop()

    def finish(self, outputs: list[Value], aliases: dict[int, str] | None = None) -> Graph:
        return Graph(self.inputs, self.nodes, outputs, self.name, aliases)


def current() -> Builder:
    if not _STACK:
        raise ShapeError("no graph is being built: call ops inside dlc.trace(...) or a "
                         "`with Builder():` block")
    return _STACK[-1]


def emit(op: str, *inputs, **attrs):
    """Add one node to the current graph; returns a Tensor. Inputs are Tensors or Values."""
    from dlc.tensor import Tensor, as_value
    b = current()
    values = tuple(as_value(x) for x in inputs)
    return Tensor(b.emit(op, values, attrs))
