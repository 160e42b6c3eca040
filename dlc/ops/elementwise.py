"""Elementwise ops: unary math, binary arithmetic with NumPy broadcasting, comparisons,
logical ops, where, cast, and the source ops full and arange.

Semantics where NumPy and PyTorch differ are chosen once here (see docs/ops.md).
"""
from __future__ import annotations

import numpy as np

from dlc.errors import ShapeError
from dlc.ir.types import FLOATS, INTS, TensorType
from dlc.ops.common import broadcast_shapes, require_dtype, same_dtype
from dlc.ops.registry import ELEMENTWISE, Attr, OpDef, register

NUMERIC = FLOATS + INTS
ALL = NUMERIC + ("bool",)


def unary(name: str, fn, dtypes=FLOATS, attrs=(), doc: str = "") -> OpDef:
    """Register a unary op whose output has the input's type."""
    def infer(types, attrs):
        require_dtype(types[0], dtypes)
        return types[0]

    def impl(x, **kw):
        return np.asarray(fn(x, **kw), dtype=x.dtype)

    return register(OpDef(name, ELEMENTWISE, infer, impl, attrs=tuple(attrs), arity=1,
                          doc=doc))


def binary(name: str, fn, dtypes=NUMERIC, result: str | None = None, doc: str = "") -> OpDef:
    """Register a broadcasting binary op; `result` fixes the output dtype (comparisons)."""
    def infer(types, attrs):
        dtype = same_dtype(types, name)
        require_dtype(types[0], dtypes)
        return TensorType(broadcast_shapes(types[0].shape, types[1].shape), result or dtype)

    def impl(a, b):
        with np.errstate(all="ignore"):
            return np.asarray(fn(a, b), dtype=result or a.dtype)

    return register(OpDef(name, ELEMENTWISE, infer, impl, arity=2, doc=doc))


# -- unary math ------------------------------------------------------------------------------
unary("neg", np.negative, NUMERIC)
unary("abs", np.abs, NUMERIC)
unary("exp", np.exp)
unary("relu", lambda x: np.maximum(x, np.zeros((), x.dtype)), NUMERIC)

# -- binary arithmetic -----------------------------------------------------------------------
binary("add", np.add)
binary("sub", np.subtract)
binary("mul", np.multiply)


# -- where, cast, sources --------------------------------------------------------------------
def _where_infer(types, attrs):
    cond, a, b = types
    if cond.dtype != "bool":
        raise ShapeError(f"where: condition must be bool, got {cond.dtype}")
    dtype = same_dtype([a, b], "where")
    return TensorType(broadcast_shapes(cond.shape, a.shape, b.shape), dtype)


register(OpDef("where", ELEMENTWISE, _where_infer, lambda c, a, b: np.where(c, a, b), arity=3,
               nondiff=(0,), doc="where(cond, a, b): a where cond is true, else b."))

register(OpDef(
    "cast", ELEMENTWISE, lambda types, attrs: types[0].with_dtype(attrs["dtype"]),
    lambda x, dtype: x.astype(dtype), attrs=(Attr("dtype", "dtype"),), arity=1,
    doc="Convert dtype. float->int truncates toward zero (C and PyTorch semantics)."))

register(OpDef(
    "full", ELEMENTWISE, lambda types, attrs: TensorType(attrs["shape"], attrs["dtype"]),
    lambda shape, value, dtype: np.full(shape, value, dtype=dtype),
    attrs=(Attr("shape", "ints"), Attr("value", "float"), Attr("dtype", "dtype", "float32")),
    arity=0, doc="A tensor filled with one value (zeros, ones and scalars are full)."))
