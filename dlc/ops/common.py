"""Shape and dtype rules shared by op records."""
from __future__ import annotations

from typing import Sequence

from dlc.errors import ShapeError
from dlc.ir.types import FLOATS, TensorType


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """NumPy broadcasting; raises ShapeError naming both shapes."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        dims = {s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ShapeError("shapes " + " and ".join(str(tuple(s)) for s in shapes) +
                             " do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def same_dtype(types: list[TensorType], op: str) -> str:
    dtypes = {t.dtype for t in types}
    if len(dtypes) > 1:
        raise ShapeError(f"dtype mismatch: {', '.join(t.dtype for t in types)}")
    return types[0].dtype


def require_dtype(t: TensorType, allowed: Sequence[str], what: str = "input") -> None:
    if t.dtype not in allowed:
        raise ShapeError(f"unsupported dtype {t.dtype} for {what}; expected one of "
                         f"{', '.join(allowed)}")


def require_float(t: TensorType, what: str = "input") -> None:
    require_dtype(t, FLOATS, what)


def normalize_axes(axes: Sequence[int], ndim: int) -> tuple[int, ...]:
    """Negative axes to positive, sorted, unique; raises on out-of-range."""
    out = set()
    for a in axes:
        if not -max(ndim, 1) <= a < max(ndim, 1):
            raise ShapeError(f"axis {a} is out of range for rank {ndim}")
        out.add(a % max(ndim, 1))
    return tuple(sorted(out))


def normalize_axis(axis: int, ndim: int) -> int:
    if not -max(ndim, 1) <= axis < max(ndim, 1):
        raise ShapeError(f"axis {axis} is out of range for rank {ndim}")
    return axis % max(ndim, 1)


def reduced_shape(shape: Sequence[int], axes: Sequence[int], keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)
