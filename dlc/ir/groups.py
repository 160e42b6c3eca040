"""Fused groups: the kinds of kernel a `fused` node's body forms, and what each body may hold.

A fused node's `kind` attribute tells a backend the shape of the kernel to generate; the
backends are written against the rules below, `dlc.verify` checks them, and `passes.fuse`
only builds groups that follow them. Bodies hold primitive ops only: composite ops (softmax,
layer_norm, losses, dropout, ...) are decomposed before fusion.

Roles of the ops a body may contain (`role(node)`):
- pointwise: an op of kind elementwise (NumPy broadcasting between its operands; one_hot,
  tril/triu, arange, full and random_uniform compute from the element's index), or an
  index map: `broadcast_to`, or a `reshape` that only inserts or removes size-1 dims.
- reduction: a primitive op of kind reduction (sum, mean, prod, max, min, var, argmax, argmin).
- contraction: matmul, conv, conv_transpose.

The kinds (`KINDS`):
- "pointwise": pointwise nodes only. The yielded value's shape is the kernel's domain: one
  loop over it, every body value read at the index broadcasting gives (values smaller than
  the domain are recomputed, never materialized).
- "reduction": pointwise nodes and at least one reduction. A reduction's result may feed
  pointwise nodes and further reductions: softmax is max, sub, exp, sum, div over the rows;
  layer_norm two row means; cross_entropy a row reduction followed by a reduction over the
  rows. A backend evaluates it stage by stage (rows in registers or in scratch memory).
- "contraction": the first body node is the one contraction, its operands block arguments;
  the rest is a pointwise epilogue (bias add, activation, residual add, scaling). Every node
  that depends on the contraction is elementwise (no index maps) and has the contraction's
  shape, so the epilogue runs on each output element as it leaves the accumulator; other
  nodes are pointwise side computations of block arguments (a scalar constant, a scaled
  bias). The yielded value depends on the contraction and has its shape.
- "opaque": any valid body, nested fused nodes included; a backend runs it op by op.

Outputs: a body yields k >= 1 values. The first is the fused node's own value; each other
one (index 1..k-1) is read through exactly one `result` node {index} that reads the fused
node and has the yielded value's type (`results_of`, checked by `dlc.verify`). Only
"pointwise" and "opaque" groups may yield several values; the values a "pointwise" body
yields share one shape, the kernel's domain (their dtypes may differ). A result node
computes nothing: its value is written when its fused node's kernel runs (`kernel_of`).

A memory plan may let an elementwise op or a "pointwise" group write an output over an
input of the same shape that dies there (`reads_elementwise`; dlc/ir/plan.py): such a
kernel reads element i of every input before it writes element i of any output. So each
output of a multi-output pointwise kernel may take the buffer of a different dying input.
Contraction and reduction kernels are never planned in place, so they may use their
output as scratch (a GEMM accumulating in C).
"""
from __future__ import annotations

from typing import Callable

from dlc.ir.graph import Graph, Node, Value
from dlc.ops.registry import CONTRACTION, ELEMENTWISE, REDUCTION

POINTWISE_KIND, REDUCTION_KIND = "pointwise", "reduction"
CONTRACTION_KIND, OPAQUE_KIND = "contraction", "opaque"
KINDS = (POINTWISE_KIND, REDUCTION_KIND, CONTRACTION_KIND, OPAQUE_KIND)

POINTWISE, REDUCE, CONTRACT = "pointwise", "reduction", "contraction"
# kinds whose kernel may yield several values
MULTI_OUTPUT_KINDS = (POINTWISE_KIND, OPAQUE_KIND)


def _non_unit(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _is_unit_reshape(node: Node) -> bool:
    """A reshape that keeps the non-unit dims in order moves no element: an index map."""
    return _non_unit(node.inputs[0].shape) == _non_unit(node.type.shape)


# Movement ops that a fused loop evaluates as index arithmetic, keyed by op name (a lowering
# table, like a backend's): each says whether this node of the op is such an index map.
INDEX_MAPS: dict[str, Callable[[Node], bool]] = {
    "broadcast_to": lambda node: True,
    "reshape": _is_unit_reshape,
}


def role(node: Node) -> str | None:
    """pointwise, reduction, contraction, or None for a node no fused body may hold."""
    if node.body is not None or node.op.decompose is not None:
        return None  # a fused node, or a composite op that is decomposed before fusion
    kind = node.op.kind
    if kind is ELEMENTWISE:
        return POINTWISE
    if kind is REDUCTION:
        return REDUCE
    if kind is CONTRACTION:
        return CONTRACT
    index_map = INDEX_MAPS.get(node.op.name)
    return POINTWISE if index_map is not None and index_map(node) else None


def is_elementwise(node: Node) -> bool:
    """An elementwise op proper (no index map): out[i] reads each operand at i (broadcast)."""
    return node.body is None and node.op.kind is ELEMENTWISE and node.op.decompose is None


def dependents(body: Graph, source: Value) -> set[Node]:
    """The body nodes whose value depends on `source`."""
    reach: set = {source}
    for node in body.nodes:
        if any(v in reach for v in node.inputs):
            reach.add(node)
    reach.discard(source)
    return reach


def _describe(node: Node, index: int) -> str:
    return f"node {index} ({node.op.name})"


def _check_roles(body: Graph, allowed: tuple[str, ...], kind: str) -> str | None:
    for i, node in enumerate(body.nodes):
        r = role(node)
        if r not in allowed:
            what = "a composite or fused op" if r is None and (
                node.body is not None or node.op.decompose is not None) else \
                f"a {r} op" if r else f"a {node.op.kind.value} op that is not an index map"
            return (f"a {kind} body may hold only {' and '.join(allowed)} ops; "
                    f"{_describe(node, i)} is {what}")
    return None


def _check_pointwise(body: Graph) -> str | None:
    return _check_roles(body, (POINTWISE,), POINTWISE_KIND)


def _check_reduction(body: Graph) -> str | None:
    problem = _check_roles(body, (POINTWISE, REDUCE), REDUCTION_KIND)
    if problem is None and not any(role(n) == REDUCE for n in body.nodes):
        return "a reduction body holds at least one reduction; this one has none"
    return problem


def _check_contraction(body: Graph) -> str | None:
    problem = _check_roles(body, (POINTWISE, CONTRACT), CONTRACTION_KIND)
    if problem is not None:
        return problem
    if not body.nodes or role(body.nodes[0]) != CONTRACT:
        return "a contraction body starts with its matmul/conv node"
    head = body.nodes[0]
    if sum(role(n) == CONTRACT for n in body.nodes) != 1:
        return "a contraction body holds exactly one matmul/conv"
    if any(v not in body.inputs for v in head.inputs):
        return "the contraction's operands must be block arguments"
    epilogue = dependents(body, head)
    for i, node in enumerate(body.nodes):
        if node in epilogue and not (is_elementwise(node) and node.type.shape == head.shape):
            return (f"epilogue {_describe(node, i)} must be elementwise with the "
                    f"contraction's shape {list(head.shape)}; it gives {node.type}")
    out = body.outputs[0]
    if out is not head and out not in epilogue:
        return "a contraction body yields the contraction or a value of its epilogue"
    return None


_CHECKS: dict[str, Callable[[Graph], str | None]] = {
    POINTWISE_KIND: _check_pointwise,
    REDUCTION_KIND: _check_reduction,
    CONTRACTION_KIND: _check_contraction,
    OPAQUE_KIND: lambda body: None,
}


def _check_outputs(kind: str, body: Graph) -> str | None:
    outputs = body.outputs
    if not outputs:
        return "a body yields at least one value"
    if len(outputs) == 1:
        return None
    if kind not in MULTI_OUTPUT_KINDS:
        return (f"a {kind} body yields one value, this one yields {len(outputs)} (only "
                f"{' and '.join(MULTI_OUTPUT_KINDS)} groups have several outputs)")
    if kind == POINTWISE_KIND:
        for i, v in enumerate(outputs[1:], 1):
            if v.type.shape != outputs[0].type.shape:
                return (f"the values a pointwise body yields share one shape, the kernel's "
                        f"domain: output {i} is {v.type}, output 0 is {outputs[0].type}")
    return None


def check_body(kind: str, body: Graph) -> str | None:
    """What breaks the rules of `kind` in `body` (a message), or None if it follows them."""
    check = _CHECKS.get(kind)
    if check is None:
        return f"unknown fused kind {kind!r}; the kinds are {', '.join(KINDS)}"
    return _check_outputs(kind, body) or check(body)


# -- several outputs -------------------------------------------------------------------------
def is_result(value: Value) -> bool:
    """A `result` node: an extra output of the fused node it reads."""
    return isinstance(value, Node) and value.body is None and value.op.name == "result"


def kernel_of(node: Node) -> Node:
    """The node whose kernel writes `node`'s value: a result's fused node, else the node."""
    return node.inputs[0] if is_result(node) else node


def kernel_count(nodes: list[Node]) -> int:
    """The kernels among top-level `nodes`: all but result nodes, which compute nothing."""
    return sum(1 for n in nodes if not is_result(n))


def results_of(nodes: list[Node]) -> dict[Node, list[Node]]:
    """fused node -> its result nodes among `nodes`, in the order they come."""
    out: dict[Node, list[Node]] = {}
    for node in nodes:
        if is_result(node):
            out.setdefault(node.inputs[0], []).append(node)
    return out


def reads_elementwise(node: Node, value: Value) -> bool:
    """True when the kernel that writes `node`'s value reads element i of `value` only to
    write element i of its outputs, so `node` may overwrite `value`'s buffer in place: an
    elementwise op or a pointwise group (`node` its fused node or one of its result nodes),
    with `value` of `node`'s shape and item size (nothing broadcast)."""
    if value.type.shape != node.type.shape or value.type.itemsize != node.type.itemsize:
        return False
    kernel = kernel_of(node)
    if kernel.body is None:
        return is_elementwise(kernel)
    if kernel.attrs.get("kind") != POINTWISE_KIND or check_body(POINTWISE_KIND, kernel.body):
        return False
    # In a pointwise body values never shrink, so every value derived from an argument of
    # the output's size has that size and is read at the same linear index.
    return True
