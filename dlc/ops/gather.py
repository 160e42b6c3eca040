"""Indexing ops: take, gather and scatter_add (numpy.take, torch.gather, torch.scatter_add).

Indices are int32/int64 in [-n, n); an index out of range is the user's error, raised by
the reference implementation with the axis and the offending value."""
from __future__ import annotations

import numpy as np

from dlc.errors import ShapeError
from dlc.ir.builder import emit
from dlc.ir.types import FLOATS, INTS, TensorType
from dlc.ops.common import require_dtype, same_dtype
from dlc.ops.movement import (_axis, _checked_index, _pad_axis, _prefix, _require_index,
                              _require_rank)
from dlc.ops.registry import MOVEMENT, OPAQUE, Attr, OpDef, register
from dlc.ops.vjp_utils import zeros_like


# -- take --------------------------------------------------------------------------------------
def _axis_normalize(op: str):
    """normalize for ops with one `axis` of their first input, which needs rank >= 1."""
    def normalize(types: list[TensorType], attrs: dict) -> dict:
        _require_rank(op, types[0], 1)
        return {**attrs, "axis": _axis(op, attrs["axis"], types[0].shape)}
    return normalize


def _take_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, idx = types
    _require_index("take", idx)
    axis = attrs["axis"]
    return x.with_shape(x.shape[:axis] + idx.shape + x.shape[axis + 1:])


def _take_impl(x: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    return np.take(x, _checked_index("take", idx, x.shape[axis], axis), axis=axis)


def _take_vjp(g, out, inputs, attrs):
    """Scatter-add g back into zeros: with idx flattened to k entries, take is a gather of
    the index broadcast over the other axes, (lead, k, tail)."""
    x, idx = inputs
    axis = attrs["axis"]
    lead, tail = x.shape[:axis], x.shape[axis + 1:]
    k = idx.type.size
    g = g.reshape(lead + (k,) + tail)
    idx = idx.reshape((1,) * len(lead) + (k,) + (1,) * len(tail)).broadcast_to(g.shape)
    return [emit("scatter_add", zeros_like(x), idx, g, axis=axis), None]


register(OpDef(
    "take", MOVEMENT, _take_infer, _take_impl, attrs=(Attr("axis", "int"),), arity=2,
    normalize=_axis_normalize("take"), nondiff=(1,), vjp=_take_vjp,
    doc="numpy.take along `axis`: out shape x.shape[:axis] + idx.shape + "
        "x.shape[axis+1:]; indices in [-n, n)."))


# -- gather ------------------------------------------------------------------------------------
def _check_region(op: str, idx: TensorType, x: TensorType, axis: int | None,
                  what: str) -> None:
    """idx must fit inside x on every axis but `axis` (torch's gather/scatter rule)."""
    if idx.ndim != x.ndim:
        raise ShapeError(f"{op}: idx {idx.shape} and {what} {x.shape} must have the same rank")
    if any(i > s for d, (i, s) in enumerate(zip(idx.shape, x.shape)) if d != axis):
        skip = "" if axis is None else f" outside axis {axis}"
        raise ShapeError(f"{op}: idx {idx.shape} is larger than {what} {x.shape}{skip}")


def _gather_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, idx = types
    _require_index("gather", idx)
    _check_region("gather", idx, x, attrs["axis"], "x")
    return x.with_shape(idx.shape)


def _gather_impl(x: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    idx = _checked_index("gather", idx, x.shape[axis], axis)
    region = list(_prefix(idx.shape))
    region[axis] = slice(None)
    return np.take_along_axis(x[tuple(region)], idx, axis=axis)


def _gather_vjp(g, out, inputs, attrs):
    x, idx = inputs  # repeated indices read one element several times: scatter_add sums them
    return [emit("scatter_add", zeros_like(x), idx, g, axis=attrs["axis"]), None]


register(OpDef(
    "gather", MOVEMENT, _gather_infer, _gather_impl, attrs=(Attr("axis", "int"),), arity=2,
    normalize=_axis_normalize("gather"), nondiff=(1,), vjp=_gather_vjp,
    doc="out[..i..] = x[..idx[..i..] at axis..] (torch.gather); idx has x's rank and fits "
        "inside x outside `axis`; out shape idx.shape; indices in [-n, n)."))


# -- scatter_add -------------------------------------------------------------------------------
def _scatter_add_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, idx, src = types
    _require_index("scatter_add", idx)
    require_dtype(x, FLOATS + INTS, "x")
    same_dtype([x, src], "scatter_add")
    _check_region("scatter_add", idx, src, None, "src")
    _check_region("scatter_add", idx, x, attrs["axis"], "x")
    return x


def _scatter_add_impl(x: np.ndarray, idx: np.ndarray, src: np.ndarray,
                      axis: int) -> np.ndarray:
    idx = _checked_index("scatter_add", idx, x.shape[axis], axis)
    where = list(np.indices(idx.shape, sparse=True))
    where[axis] = idx
    out = x.copy()
    np.add.at(out, tuple(where), src[_prefix(idx.shape)])  # repeated indices accumulate
    return out


def _scatter_add_vjp(g, out, inputs, attrs):
    """x passes through; src[..i..] was added at one place, so it reads g back from there.
    Entries of src outside idx's region are never read and get zeros."""
    x, idx, src = inputs
    g_src = emit("gather", g, idx, axis=attrs["axis"])
    for axis, (have, want) in enumerate(zip(idx.shape, src.shape)):
        g_src = _pad_axis(g_src, axis, 0, want - have)
    return [g, None, g_src]


register(OpDef(
    "scatter_add", OPAQUE, _scatter_add_infer, _scatter_add_impl, attrs=(Attr("axis", "int"),),
    arity=3, normalize=_axis_normalize("scatter_add"), nondiff=(1,), vjp=_scatter_add_vjp,
    doc="x with src[..i..] added at x[..idx[..i..] at axis..] (torch.scatter_add); "
        "repeated indices accumulate; indices in [-n, n)."))
