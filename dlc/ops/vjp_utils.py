"""Helpers shared by VJP rules (written with the Tensor API, so gradients are graphs)."""
from __future__ import annotations

from dlc.ir.builder import emit


def unbroadcast(g, shape: tuple[int, ...]):
    """Sum `g` over the axes that broadcasting added or stretched, back to `shape`."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape)
                                      if d == 1 and g.shape[lead + i] != 1)
    if axes:
        g = emit("sum", g, axes=axes, keepdims=False)
    return g.reshape(shape)


def zeros_like(x):
    return emit("full", shape=x.shape, value=0.0, dtype=x.dtype)


def expand_reduced(g, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool):
    """Broadcast a reduction's cotangent back over the reduced axes."""
    if not keepdims:
        kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
        g = g.reshape(kept)
    return g.broadcast_to(shape)
