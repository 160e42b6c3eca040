"""Argument helpers shared by the functional forms."""
from __future__ import annotations

import builtins

import numpy as np

from dlc.errors import ShapeError
from dlc.ir import builder as _b
from dlc.tensor import Tensor, to_tensor


_REDUCTIONS = ("none", "mean", "sum")


# -- argument helpers ------------------------------------------------------------------------
def _fail(fn: str, message: str) -> ShapeError:
    """A ShapeError naming the function, the layer and the user's line, as `emit` does."""
    try:
        scopes = _b.current().scopes
    except ShapeError:  # called outside a trace: no layer to name
        scopes = []
    where = [f"in layer {scopes[-1]}"] if scopes else []
    loc = _b.user_loc()
    where += [f"at {loc}"] if loc else []
    return ShapeError(" ".join([fn] + where) + f": {message}")


def _t(x, like: str = "float32") -> Tensor:
    """A Tensor from a Tensor, a numpy array (a graph const) or a Python number."""
    return to_tensor(x, like)


def _dim(dim, axis, fn: str, default=None):
    """PyTorch's `dim` or NumPy's `axis` (not both)."""
    if dim is not None and axis is not None:
        raise _fail(fn, f"pass dim or axis, not both (dim={dim}, axis={axis})")
    return default if dim is None and axis is None else (dim if dim is not None else axis)


def _ntuple(value, n: int, name: str, fn: str) -> tuple[int, ...]:
    """An int or a length-n sequence of ints, as a length-n tuple."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise _fail(fn, f"{name}={list(value)} needs 1 or {n} values")
    return values


def _batched(x: Tensor, nsp: int, fn: str) -> tuple[Tensor, bool]:
    """Accept (C, *spatial) as torch does by adding a batch axis; returns (x, was_unbatched)."""
    if x.ndim == nsp + 1:
        return x.unsqueeze(0), True
    if x.ndim != nsp + 2:
        raise _fail(fn, f"expected a {nsp + 1}-D (unbatched) or {nsp + 2}-D (batched) input, "
                        f"got shape {x.shape}")
    return x, False


def _unbatch(y: Tensor, unbatched: bool) -> Tensor:
    return y.reshape(y.shape[1:]) if unbatched else y


def _channel_bias(y: Tensor, bias) -> Tensor:
    """Add a per-channel (axis 1) bias; a separate add so it can fuse as an epilogue."""
    if bias is None:
        return y
    b = _t(bias, y.dtype)
    return y + b.reshape((b.shape[0],) + (1,) * (y.ndim - 2))


def _canon_axis(axis: int, ndim: int, fn: str) -> int:
    if not -builtins.max(ndim, 1) <= axis < builtins.max(ndim, 1):
        raise _fail(fn, f"dim {axis} is out of range for a tensor of rank {ndim}")
    return axis % builtins.max(ndim, 1)
