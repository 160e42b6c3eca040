"""Printing the text form (grammar in docs/ir-grammar.md).

Printing is canonical: node values are numbered %0, %1, ... in node order, every attribute is
printed in its op's order, floats print so they read back to the identical float. Hence
`str(parse(str(g))) == str(g)`. A memory plan (graph.meta["memory_plan"]) prints as the
header's `memory {...}` clause, an `offset(N)` on every planned node and `view` on every
index map read through its source.
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Callable

import numpy as np

from dlc.ir.graph import Graph, Input, Node, Value
from dlc.ir.plan import MemoryPlan
from dlc.ir.types import SHORT

# graph.meta[META_KEY] is a dict of simple values (numbers, strings, bools, none, lists,
# dicts) that passes may fill; it prints as the header's `attributes {...}` and parses back.
# graph.meta[PLAN_KEY], a MemoryPlan, prints as `memory {...}` and per-node `offset(N)`.
# Nothing else in graph.meta is printed.
META_KEY = "attributes"
PLAN_KEY = "memory_plan"

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
NAME = re.compile(r"[A-Za-z0-9_.]+")  # after a sigil: %0.weight is a name, %0 a node number
_LOC = re.compile(r"(.*):(0|[1-9][0-9]*)", re.DOTALL)
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_HIDDEN = ("Cc", "Cs", "Zl", "Zp")  # control, surrogate and line-break characters
_WIDTH = 100  # a header longer than this prints one argument per line


def quote(text: str) -> str:
    """A double-quoted string literal that the lexer reads back to exactly `text`."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in _HIDDEN:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def symbol(name: str) -> str:
    """A name as it follows a sigil (%, @, ^): bare when made of letters, digits, '_' and
    '.' but not all digits, else quoted. Quoting keeps an input named "0" (`%"0"`) apart
    from the node value `%0`."""
    return name if NAME.fullmatch(name) and not name.isdigit() else quote(name)


def value_names(graph: Graph) -> dict[Value, str]:
    """The printed name of every value of `graph`: `%name` for inputs, `%N` for nodes."""
    names: dict[Value, str] = {v: "%" + symbol(v.name) for v in graph.inputs}
    names.update({n: f"%{i}" for i, n in enumerate(graph.nodes)})
    return names


def format_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))  # repr is the shortest text that reads back to the same float


def _format_key(key: Any) -> str:
    if isinstance(key, str):
        return key if IDENT.fullmatch(key) else quote(key)
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return str(int(key))
    raise TypeError(f"cannot print attribute key {key!r}: keys are strings or ints")


def _format_seq(values) -> str:
    return "[" + ", ".join(format_attr(v) for v in values) + "]"


def _format_dict(values: dict) -> str:
    return "{" + ", ".join(f"{_format_key(k)} = {format_attr(v)}"
                           for k, v in values.items()) + "}"


# Checked in order: bool before int, since bool is an int in Python.
_FORMATTERS: list[tuple[type | tuple, Callable[[Any], str]]] = [
    (type(None), lambda v: "none"),
    ((bool, np.bool_), lambda v: "true" if v else "false"),
    ((int, np.integer), lambda v: str(int(v))),
    ((float, np.floating), format_float),
    (str, quote),
    ((list, tuple), _format_seq),
    (dict, _format_dict),
]


def format_attr(value: Any) -> str:
    """An attribute value in the text form (dtype attributes go through `_node_attrs`)."""
    for types, fmt in _FORMATTERS:
        if isinstance(value, types):
            return fmt(value)
    raise TypeError(f"cannot print attribute value {value!r} of type {type(value).__name__}; "
                    f"use numbers, strings, bools, none, lists or dicts")


def _node_attrs(node: Node) -> str:
    schema = node.op.attr_map
    order = [a.name for a in node.op.attrs if a.name in node.attrs]
    order += [k for k in node.attrs if k not in schema]  # only in graphs verify rejects
    parts = []
    for k in order:
        value = node.attrs[k]
        is_dtype = k in schema and schema[k].kind == "dtype" and value in SHORT
        parts.append(f"{_format_key(k)} = {SHORT[value] if is_dtype else format_attr(value)}")
    return " {" + ", ".join(parts) + "}" if parts else ""


def _format_loc(loc: str) -> str:
    m = _LOC.fullmatch(loc)
    return f"loc({quote(m.group(1))}:{m.group(2)})" if m else f"loc({quote(loc)})"


def _ref(names: dict[Value, str], v: Value) -> str:
    # A value from outside the graph (a graph verify rejects) still prints, unparseably.
    return names.get(v) or "%" + quote(f"<not in this graph: {v.type}>")


def _arg(v: Input, always_role: bool) -> str:
    role = f" {v.role}" if always_role or v.role != "input" else ""
    return f"%{symbol(v.name)}: {v.type}{role}"


def _args(head: str, args: list[str], tail: str, indent: str) -> list[str]:
    one_line = head + "(" + ", ".join(args) + ")" + tail
    if len(indent) + len(one_line) <= _WIDTH or not args:
        return [indent + one_line]
    inner = [f"{indent}    {a}," for a in args]
    inner[-1] = inner[-1][:-1]
    return [indent + head + "("] + inner + [indent + ")" + tail]


def _meta_attrs(graph: Graph) -> str:
    attrs = graph.meta.get(META_KEY)
    return f" attributes {_format_dict(attrs)}" if attrs else ""


def _outputs(graph: Graph, names: dict[Value, str]) -> str:
    text = ", ".join(_ref(names, v) for v in graph.outputs)
    if graph.aliases:
        pairs = ", ".join(f"{i} = %{symbol(name)}" for i, name in sorted(graph.aliases.items()))
        text += f" {{aliases = {{{pairs}}}}}"
    return text


VIEW = "view"  # a planned node with no bytes of its own (MemoryPlan.views)


def _node_lines(node: Node, index: int, names: dict[Value, str], indent: str,
                offset: int | str | None = None) -> list[str]:
    operands = ", ".join(_ref(names, v) for v in node.inputs)
    line = f"{indent}%{index}: {node.type} = {node.op.name}({operands}){_node_attrs(node)}"
    if offset == VIEW:
        line += " view"
    elif offset is not None:
        line += f" offset({offset})"
    if node.loc is not None:
        line += " " + _format_loc(node.loc)
    if node.scope is not None:
        line += f" scope({quote(node.scope)})"
    if node.body is None:
        return [line]
    return [line + " {"] + _body_lines(node.body, indent + "  ") + [indent + "}"]


def _statements(graph: Graph, indent: str,
                offsets: dict[int, int | str] | None = None) -> tuple[list[str], dict[Value, str]]:
    names = value_names(graph)
    offsets = offsets or {}
    lines = []
    for i, node in enumerate(graph.nodes):
        lines += _node_lines(node, i, names, indent, offsets.get(i))
    return lines, names


def _body_lines(body: Graph, indent: str) -> list[str]:
    args = [_arg(v, always_role=False) for v in body.inputs]
    lines = _args(f"^{symbol(body.name)}", args, _meta_attrs(body) + ":", indent)
    statements, names = _statements(body, indent + "  ")
    return lines + statements + [f"{indent}  yield {_outputs(body, names)}".rstrip()]


def _memory_clause(graph: Graph) -> str:
    """` memory {...}`: the plan's arena and report numbers, its in-place updates, and its
    schedule when it is not the order of the nodes (offsets print on the nodes)."""
    plan = graph.meta.get(PLAN_KEY)
    if not isinstance(plan, MemoryPlan):
        return ""
    fields = {"arena_bytes": plan.arena_bytes, "alignment": plan.alignment,
              "naive_bytes": plan.naive_bytes, "lower_bound_bytes": plan.lower_bound_bytes}
    text = ", ".join(f"{k} = {format_attr(v)}" for k, v in fields.items())
    if plan.inplace:
        pairs = ", ".join(f"{i} = %{symbol(name)}" for i, name in sorted(plan.inplace.items()))
        text += f", inplace = {{{pairs}}}"
    if plan.schedule and list(plan.schedule) != list(range(len(graph.nodes))):
        text += f", schedule = {format_attr(list(plan.schedule))}"
    return f" memory {{{text}}}"


def print_graph(graph: Graph) -> str:
    """The graph in the text form (no trailing newline). Parameter data is not printed."""
    args = [_arg(v, always_role=True) for v in graph.inputs]
    tail = _meta_attrs(graph) + _memory_clause(graph) + " {"
    lines = _args(f"graph @{symbol(graph.name)}", args, tail, "")
    plan = graph.meta.get(PLAN_KEY)
    offsets = None
    if isinstance(plan, MemoryPlan):
        offsets = dict(plan.offsets)
        offsets.update({pos: VIEW for pos in plan.views})
    statements, names = _statements(graph, "  ", offsets)
    ret = f"  return {_outputs(graph, names)}".rstrip()  # a graph may return nothing
    return "\n".join(lines + statements + [ret, "}"])
