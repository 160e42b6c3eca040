"""Algebraic identities that hold for every input, Inf, NaN and signed zeros included.

    x * 1, 1 * x, x / 1          -> x
    x + (-0.0), (-0.0) + x       -> x      (integers: x + 0, 0 + x)
    x - (+0.0)                   -> x      (integers: x - 0)
    neg(neg(x))                  -> x
    permute(permute(x, p), q)    -> permute(x, p[q])    (dropped when that is the identity)
    reshape(reshape(x))          -> reshape(x)          (dropped when the shape is x's)
    broadcast_to(x) of x's shape -> x;  broadcast_to(broadcast_to(x)) -> broadcast_to(x)
    cast(x) to x's dtype         -> x
    f(reshape(x), scalars...)    -> reshape(f(x, scalars...))     (f elementwise, the reshape
                                    read only there: an activation after a Linear layer on
                                    3-D input then joins the matmul's epilogue)
    transpose(a @ b)             -> transpose(b) @ transpose(a)   (when the product has no
                                    other reader: a weight gradient then comes out of its
                                    matmul in the layout it is used in, and the transposes
                                    of the operands cancel or are read in place by the GEMM)
    cast(cast(x, B), C)          -> cast(x, C) where x -> B is exact (C a float or bool
                                    type, or C the dtype of x: then just x)

Signed zeros: x + 0.0 is NOT rewritten for floats, because (-0.0) + 0.0 is +0.0 while x is
-0.0; x + (-0.0) is x for every x, and so is x - 0.0. Both differ from x only in the sign
of a zero, but this pass promises bit-identical results, so it keeps them.

Not rewritten, because they are false for some inputs: x - x -> 0 and x * 0 -> 0 (Inf and
NaN give NaN), x / x -> 1, and cast chains that narrow in the middle (f32 -> f16 -> f32
rounds). A replacement must have the node's exact type: x * ones of a larger shape stays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Node, Value
from dlc.ir.types import FLOATS, INTS
from dlc.ops.registry import ELEMENTWISE
from passes.simplify.common import copy_node, emit_like, rebuild, splat_value


@dataclass
class Emit:
    """A rule's answer: emit `op` on `inputs` (at the node's loc) instead of the node."""
    op: str
    inputs: list[Value]
    attrs: dict[str, Any] = field(default_factory=dict)


# A rule looks at a node and its (already simplified) new inputs; it returns a value that
# replaces the node, an Emit, or None to keep the node.
Rule = Callable[[Node, list[Value]], "Value | Emit | None"]


def _number(v: Value) -> float | None:
    """The value of every element of a numeric constant `v`, or None."""
    if v.dtype not in FLOATS + INTS:
        return None
    value = splat_value(v)
    return None if value is None else float(value)


def _is_one(v: Value) -> bool:
    return _number(v) == 1.0


def _is_zero(v: Value, negative: bool) -> bool:
    """An additive zero: any zero of an integer type; of a float type, the zero whose sign
    is `negative` (see the module docstring on signed zeros)."""
    value = _number(v)
    if value != 0.0:
        return False
    return v.dtype in INTS or (math.copysign(1.0, value) < 0) == negative


def _same_type(candidate: Value, node: Node) -> Value | None:
    return candidate if candidate.type == node.type else None


def _of(v: Value, op: str) -> bool:
    """Is `v` a plain (not fused) `op` node?"""
    return isinstance(v, Node) and v.op.name == op and v.body is None


def _mul(node: Node, ins: list[Value]) -> Value | None:
    a, b = ins
    if _is_one(b) and _same_type(a, node):
        return a
    if _is_one(a) and _same_type(b, node):
        return b
    return None


def _add(node: Node, ins: list[Value]) -> Value | None:
    a, b = ins
    if _is_zero(b, negative=True) and _same_type(a, node):
        return a
    if _is_zero(a, negative=True) and _same_type(b, node):
        return b
    return None


def _sub(node: Node, ins: list[Value]) -> Value | None:
    a, b = ins
    return a if _is_zero(b, negative=False) and _same_type(a, node) else None


def _div(node: Node, ins: list[Value]) -> Value | None:
    a, b = ins
    return a if _is_one(b) and _same_type(a, node) else None


def _neg(node: Node, ins: list[Value]) -> Value | None:
    (x,) = ins
    return x.inputs[0] if _of(x, "neg") else None


def _permute(node: Node, ins: list[Value]) -> Value | Emit | None:
    (x,) = ins
    perm = tuple(node.attrs["perm"])
    if _of(x, "permute"):
        inner = x.attrs["perm"]
        perm, x = tuple(inner[p] for p in perm), x.inputs[0]
    if perm == tuple(range(len(perm))):
        return x
    return Emit("permute", [x], {"perm": perm}) if x is not ins[0] else None


def _reshape(node: Node, ins: list[Value]) -> Value | Emit | None:
    (x,) = ins
    if _of(x, "reshape"):
        x = x.inputs[0]
    if x.type.shape == node.type.shape:
        return x
    return Emit("reshape", [x], {"shape": node.type.shape}) if x is not ins[0] else None


def _broadcast_to(node: Node, ins: list[Value]) -> Value | Emit | None:
    (x,) = ins
    if _of(x, "broadcast_to"):
        x = x.inputs[0]
    if x.type.shape == node.type.shape:
        return x
    return Emit("broadcast_to", [x], {"shape": node.type.shape}) if x is not ins[0] else None


# dtype -> the dtypes that hold each of its values exactly (so a cast there and back is x)
EXACT_WIDENING: dict[str, tuple[str, ...]] = {
    "bool": ("float16", "float32", "float64", "int32", "int64"),
    "int32": ("int64", "float64"),
    "int64": (),
    "float16": ("float32", "float64"),
    "float32": ("float64",),
    "float64": (),
}


def _cast(node: Node, ins: list[Value]) -> Value | Emit | None:
    (x,) = ins
    target = node.attrs["dtype"]
    if x.dtype == target:
        return x
    if not _of(x, "cast"):
        return None
    inner = x.inputs[0]
    if x.dtype not in EXACT_WIDENING[inner.dtype]:
        return None  # the middle cast rounds or wraps: the chain is not one cast
    if inner.dtype == target:
        return inner
    # float -> int of an out-of-range value is undefined, and may differ by source width
    return Emit("cast", [inner], {"dtype": target}) if target in FLOATS + ("bool",) else None


RULES: dict[str, Rule] = {
    "mul": _mul, "add": _add, "sub": _sub, "div": _div, "neg": _neg,
    "permute": _permute, "reshape": _reshape, "broadcast_to": _broadcast_to, "cast": _cast,
}


# elementwise ops whose value depends on the element's index, not only on its operands
INDEXED = frozenset({"arange", "full", "one_hot", "random_uniform", "tril", "triu"})


def _elementwise_before_reshape(b: Builder, node: Node, inputs: list[Value],
                                readers: dict) -> Value | None:
    """f(reshape(x), scalars) as reshape(f(x, scalars)) when the reshape is read only by f
    and f has its shape (nothing broadcast)."""
    if node.op.kind is not ELEMENTWISE or node.op.name in INDEXED or not inputs:
        return None
    moved = [i for i, v in enumerate(inputs) if v.type.ndim > 0]
    if len(moved) != 1:
        return None
    (k,) = moved
    x = inputs[k]
    if not (_of(x, "reshape") and readers.get(node.inputs[k]) == 1
            and x.type.shape == node.type.shape):
        return None
    source = x.inputs[0]
    applied = emit_like(b, node, inputs[:k] + [source] + inputs[k + 1:])
    return emit_like(b, x, [applied], op=x.op, attrs={"shape": node.type.shape})


def _swaps_last_two(node: Node) -> bool:
    perm = list(node.attrs["perm"])
    n = len(perm)
    return n >= 2 and perm == list(range(n - 2)) + [n - 1, n - 2]


def _transpose_product(b: Builder, node: Node, inputs: list[Value],
                       readers: dict) -> Value | None:
    """transpose(a @ b) as transpose(b) @ transpose(a), when the product is read only here
    (else it would be computed twice)."""
    (x,) = inputs
    old = node.inputs[0]
    if not (_of(x, "matmul") and _swaps_last_two(node) and readers.get(old) == 1
            and min(v.type.ndim for v in x.inputs) >= 2):
        return None
    a, c = x.inputs
    operands = []
    for v in (c, a):
        n = v.type.ndim
        perm = list(range(n - 2)) + [n - 1, n - 2]
        moved = Node(node.op, (v,), {"perm": perm}, node.type, node.loc, node.scope)
        operands.append(_permute(moved, [v]) or emit_like(b, node, [v], attrs={"perm": perm}))
    operands = [emit_like(b, node, e.inputs, op=e.op, attrs=e.attrs) if isinstance(e, Emit)
                else e for e in operands]
    return emit_like(b, x, operands, op=x.op, attrs=x.attrs)


def algebra(graph: Graph) -> Graph:
    """Apply the identities of the module docstring, in one walk over the graph (a rewritten
    node's users see the rewrite, so chains like neg(neg(neg(neg(x)))) collapse)."""
    readers: dict = {}
    for n in graph.nodes:
        for v in n.inputs:
            readers[v] = readers.get(v, 0) + 1
    for v in graph.outputs:
        readers[v] = readers.get(v, 0) + 1

    def rule(b: Builder, node: Node, inputs: list[Value]) -> Value:
        if node.op.name == "permute" and node.body is None:
            product = _transpose_product(b, node, inputs, readers)
            if product is not None:
                return product
        if node.body is None:
            moved = _elementwise_before_reshape(b, node, inputs, readers)
            if moved is not None:
                return moved
        simplify = RULES.get(node.op.name) if node.body is None else None
        result = simplify(node, inputs) if simplify is not None else None
        if result is None:
            return copy_node(b, node, inputs)
        if isinstance(result, Emit):
            return emit_like(b, node, result.inputs, op=result.op, attrs=result.attrs)
        return result

    return rebuild(graph, rule)
