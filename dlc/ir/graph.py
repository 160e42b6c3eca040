"""The SSA graph: values, nodes and graphs.

A Graph has named inputs (each with a role), nodes in a valid topological order, and outputs.
Every node produces exactly one tensor value. Graph inputs with role param/state/const carry
their numpy data (like ONNX initializers); the text form prints only their name and type.
Fused groups are nodes whose `body` is a nested Graph.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from dlc.errors import InputNameError, VerifyError
from dlc.ir.types import TensorType

if TYPE_CHECKING:
    from dlc.ops.registry import OpDef

ROLES = ("input", "param", "state", "const")


class Value:
    """Something with a tensor type that nodes can consume."""

    __slots__ = ("type",)

    def __init__(self, type: TensorType):
        self.type = type

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype


class Input(Value):
    """A graph input: a user input, a parameter, optimizer/norm state, or a constant."""

    __slots__ = ("name", "role", "data")

    def __init__(self, name: str, type: TensorType, role: str = "input",
                 data: np.ndarray | None = None):
        if role not in ROLES:
            raise VerifyError(f"input {name!r}: role must be one of {ROLES}, got {role!r}")
        super().__init__(type)
        self.name, self.role, self.data = name, role, data

    def __repr__(self) -> str:
        return f"Input({self.name}: {self.type} {self.role})"


class Node(Value):
    """One op application. `loc` is the user's file:line, `scope` the layer path."""

    __slots__ = ("op", "inputs", "attrs", "loc", "scope", "body")

    def __init__(self, op: "OpDef", inputs: tuple[Value, ...], attrs: dict[str, Any],
                 type: TensorType, loc: str | None = None, scope: str | None = None,
                 body: "Graph | None" = None):
        super().__init__(type)
        self.op, self.inputs, self.attrs = op, tuple(inputs), dict(attrs)
        self.loc, self.scope, self.body = loc, scope, body

    def where(self) -> str:
        """'layer fc1 (Linear) at model.py:12' — for error messages."""
        parts = []
        if self.scope:
            parts.append(f"layer {self.scope}")
        if self.loc:
            parts.append(f"at {self.loc}")
        return " ".join(parts) or "at an unknown location"

    def __repr__(self) -> str:
        return f"Node({self.op.name}: {self.type})"


class Graph:
    """inputs (Input values), nodes (topologically ordered), outputs (values).

    `aliases` maps an output index to the name of the input it updates in place (a training
    step's new params and optimizer state); `meta` holds pass results (e.g. a memory plan).
    """

    def __init__(self, inputs: list[Input], nodes: list[Node], outputs: list[Value],
                 name: str = "main", aliases: dict[int, str] | None = None,
                 meta: dict[str, Any] | None = None):
        self.inputs, self.nodes, self.outputs = list(inputs), list(nodes), list(outputs)
        self.name = name
        self.aliases = dict(aliases or {})
        self.meta = dict(meta or {})

    # -- views ---------------------------------------------------------------------------
    def input(self, name: str) -> Input:
        for v in self.inputs:
            if v.name == name:
                return v
        raise InputNameError(f"graph @{self.name} has no input named {name!r}; inputs: "
                       f"{', '.join(v.name for v in self.inputs)}")

    def inputs_with_role(self, *roles: str) -> list[Input]:
        return [v for v in self.inputs if v.role in roles]

    @property
    def user_inputs(self) -> list[Input]:
        return self.inputs_with_role("input")

    @property
    def params(self) -> dict[str, np.ndarray | None]:
        """Data of param/state/const inputs, by name."""
        return {v.name: v.data for v in self.inputs if v.role != "input"}

    def users(self) -> dict[Value, list[Node]]:
        out: dict[Value, list[Node]] = {v: [] for v in self.inputs}
        for n in self.nodes:
            out.setdefault(n, [])
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def walk(self) -> Iterator[Node]:
        """Every node, including those inside fused bodies."""
        for n in self.nodes:
            yield n
            if n.body is not None:
                yield from n.body.walk()

    def __str__(self) -> str:
        from dlc.ir.text import print_graph
        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph @{self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes>"

    def to_dot(self) -> str:
        from dlc.ir.views import to_dot
        return to_dot(self)

    def to_networkx(self):
        from dlc.ir.views import to_networkx
        return to_networkx(self)
