"""Helpers shared by VJP rules (written with the Tensor API, so gradients are graphs)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from dlc.ir.builder import emit

if TYPE_CHECKING:
    from dlc.tensor import Tensor


def unbroadcast(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum `g` over the axes that broadcasting added or stretched, back to `shape`.

    Added leading axes are summed away, stretched ones summed with keepdims: no reshape, so
    the result is one or two reductions."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = emit("sum", g, axes=tuple(range(lead)), keepdims=False)
    stretched = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if stretched:
        g = emit("sum", g, axes=stretched, keepdims=True)
    return g


def zeros_like(x: Tensor) -> Tensor:
    return emit("full", shape=x.shape, value=0.0, dtype=x.dtype)


def zero(dtype: str) -> Tensor:
    """A 0-d zero of `dtype`: the 'else' branch of a masked gradient."""
    return emit("full", shape=(), value=0.0, dtype=dtype)


def keep_reduced(t: Tensor, shape: tuple[int, ...], axes: tuple[int, ...],
                 keepdims: bool) -> Tensor:
    """A reduction's output (or cotangent) with the reduced axes kept as size 1, so that it
    broadcasts against the reduction's input of `shape`."""
    if keepdims:
        return t
    return t.reshape(tuple(1 if i in axes else d for i, d in enumerate(shape)))


def expand_reduced(g: Tensor, shape: tuple[int, ...], axes: tuple[int, ...],
                   keepdims: bool) -> Tensor:
    """Broadcast a reduction's cotangent back over the reduced axes."""
    return keep_reduced(g, shape, axes, keepdims).broadcast_to(shape)
