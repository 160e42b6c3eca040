"""VJP rules of the contraction and window ops, and the gradient ops they are built from.

Every rule is written with `emit`, so a gradient is a graph that can be differentiated
again, and the ops it uses are closed under differentiation:

- matmul: two matmuls (and a sum over broadcast batch dims).
- conv: dx is conv_transpose(g, w) (output_padding restores input positions past the last
  window); dw is conv_weight_grad(x, g), a primitive whose VJP is a conv and a
  conv_transpose. conv_transpose: dx is conv(g, w), dw is conv_weight_grad(g, x).
- max_pool: the gradient goes to one element per window, the first maximum in row-major
  tap order (torch's rule); max_pool_argmax finds it, scatter_add places g there. Where
  windows overlap, an element that is the chosen maximum of several windows gets the sum.
- avg_pool and adaptive_avg_pool are linear: their gradient ops (avg_pool_grad,
  adaptive_avg_pool_grad) apply the transposed map, and the VJP of each gradient op is the
  forward pool again.
"""
from __future__ import annotations

import math

import numpy as np

from dlc.errors import ShapeError
from dlc.ir.builder import emit
from dlc.ir.types import FLOATS, TensorType
from dlc.ops import window as win
from dlc.ops.common import require_dtype
from dlc.ops.registry import CONTRACTION, OPAQUE, Attr, OpDef, register
from dlc.ops.vjp_utils import unbroadcast
from dlc.tensor import Tensor, where

CONV_KEYS = ("stride", "padding", "dilation", "groups")


def _conv_attrs(attrs: dict) -> dict:
    """The conv attributes of a conv-family node (drops kernel, output_padding)."""
    return {k: attrs[k] for k in CONV_KEYS}


# -- VJP rules ---------------------------------------------------------------------------------
def matmul_vjp(g: Tensor, out: Tensor, inputs: list[Tensor], attrs: dict) -> list[Tensor]:
    a, b = inputs
    if a.ndim > 2 and b.ndim == 2:
        # b is shared by every batch row (a Linear layer): one matmul over all the rows
        # instead of a batched matmul and a sum over the batch
        k, n = b.shape
        gb = emit("matmul", a.reshape(-1, k).mT, g.reshape(-1, n))
        return [emit("matmul", g, b.mT), gb]
    return [unbroadcast(emit("matmul", g, b.mT), a.shape),
            unbroadcast(emit("matmul", a.mT, g), b.shape)]


def conv_input_grad(g: Tensor, w: Tensor, x_shape: tuple[int, ...], attrs: dict) -> Tensor:
    """d conv(x, w) / dx applied to g: the transposed conv of g with the same w.

    Where the stride does not divide the padded input evenly, the last input positions are
    in no window; output_padding gives them back (with a zero gradient)."""
    extra = [(i + 2 * p - win.span(k, d)) % s for i, k, s, p, d in
             zip(x_shape[2:], w.shape[2:], attrs["stride"], attrs["padding"],
                 attrs["dilation"])]
    return emit("conv_transpose", g, w, output_padding=extra, **_conv_attrs(attrs))


def conv_vjp(g: Tensor, out: Tensor, inputs: list[Tensor], attrs: dict) -> list[Tensor]:
    x, w = inputs
    return [conv_input_grad(g, w, x.shape, attrs),
            emit("conv_weight_grad", x, g, kernel=w.shape[2:], **_conv_attrs(attrs))]


def conv_t_vjp(g: Tensor, out: Tensor, inputs: list[Tensor], attrs: dict) -> list[Tensor]:
    """conv_transpose(x, w) is the adjoint of conv(., w): its VJP is that conv.

    Where output_padding >= stride (allowed while it is below the dilation) the conv of g
    has more positions than x: dx drops them, and the weight gradient sees x zero-padded
    to match."""
    x, w = inputs
    conv_attrs = _conv_attrs(attrs)
    dx = emit("conv", g, w, **conv_attrs)
    if dx.shape == x.shape:
        return [dx, emit("conv_weight_grad", g, x, kernel=w.shape[2:], **conv_attrs)]
    longer = [a - b for a, b in zip(dx.shape, x.shape)]
    x_long = emit("pad", x, pads=[v for extra in longer for v in (0, extra)])
    dw = emit("conv_weight_grad", g, x_long, kernel=w.shape[2:], **conv_attrs)
    dx = emit("slice", dx, starts=[0] * x.ndim, stops=x.shape, steps=[1] * x.ndim)
    return [dx, dw]


def conv_weight_grad_vjp(h: Tensor, out: Tensor, inputs: list[Tensor], attrs: dict) -> list[Tensor]:
    # <h, conv_weight_grad(x, g)> = <g, conv(x, h)>, bilinear in x and g
    x, g = inputs
    return [conv_input_grad(g, h, x.shape, attrs), emit("conv", x, h, **_conv_attrs(attrs))]


def max_pool_vjp(g: Tensor, out: Tensor, inputs: list[Tensor], attrs: dict) -> list[Tensor]:
    x = inputs[0]
    n, c = x.shape[:2]
    size_in, size_out = math.prod(x.shape[2:]), math.prod(g.shape[2:])
    index = emit("max_pool_argmax", x, **attrs)
    if win.has_empty_windows(x.shape[2:], g.shape[2:], attrs):
        # a window without an element of x is a constant -inf (its index is -1)
        g = where(index >= 0, g, 0.0)
    index = index.reshape(n, c, size_out)
    zeros = emit("full", shape=(n, c, size_in), value=0.0, dtype=x.dtype)
    dx = emit("scatter_add", zeros, index, g.reshape(n, c, size_out), axis=2)
    return [dx.reshape(x.shape)]


def avg_pool_vjp(g: Tensor, out: Tensor, inputs: list[Tensor], attrs: dict) -> list[Tensor]:
    return [emit("avg_pool_grad", g, input_size=inputs[0].shape[2:], **attrs)]


def avg_pool_grad_vjp(h: Tensor, out: Tensor, inputs: list[Tensor], attrs: dict) -> list[Tensor]:
    attrs = {k: v for k, v in attrs.items() if k != "input_size"}
    return [emit("avg_pool", h, **attrs)]


def adaptive_avg_pool_vjp(g: Tensor, out: Tensor, inputs: list[Tensor],
                          attrs: dict) -> list[Tensor]:
    return [emit("adaptive_avg_pool_grad", g, input_size=inputs[0].shape[2:])]


def adaptive_avg_pool_grad_vjp(h: Tensor, out: Tensor, inputs: list[Tensor],
                               attrs: dict) -> list[Tensor]:
    return [emit("adaptive_avg_pool", h, output_size=inputs[0].shape[2:])]


# -- conv_weight_grad --------------------------------------------------------------------------
def _cwg_normalize(types: list[TensorType], attrs: dict) -> dict:
    return win.per_axis(attrs, ("kernel",) + win.CONV_AXES, win.spatial_rank(types[0]))


def _cwg_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, g = types
    groups, kernel = attrs["groups"], attrs["kernel"]
    win.check_conv_weight(x, g, groups, what="g")
    win.require_at_least(attrs, "kernel", 1)
    if g.shape[0] != x.shape[0] or g.shape[1] % groups:
        raise ShapeError(f"g of shape {g.shape} must be (N={x.shape[0]}, C_out, *out) with "
                         f"C_out divisible by groups={groups} (x: {x.shape})")
    w = TensorType((g.shape[1], x.shape[1] // groups) + tuple(kernel), x.dtype)
    y = win.conv_type(x, w, attrs)
    if y.shape != g.shape:
        raise ShapeError(f"g of shape {g.shape} is not the shape {y.shape} of conv(x, w) "
                         f"for x {x.shape} and w {w.shape}")
    return w


def _cwg_impl(x: np.ndarray, g: np.ndarray, kernel, stride, padding, dilation,
              groups: int) -> np.ndarray:
    nsp = x.ndim - 2
    n, c_out = g.shape[:2]
    windows = win.conv_windows(x, kernel, stride, padding, dilation, groups)
    c_in_g, pixels = windows.shape[2], n * math.prod(g.shape[2:])
    # dw[o, c, t] = sum over samples and output pixels of g[n, o, p] * window[n, c, p, t]:
    # one matmul per group over (N * P), the im2col copy laid out for it
    out_axes = tuple(range(3, 3 + nsp))
    kernel_axes = tuple(range(3 + nsp, 3 + 2 * nsp))
    cols = windows.transpose((1, 2) + kernel_axes + (0,) + out_axes)
    cols = cols.reshape(groups, c_in_g * math.prod(kernel), pixels)
    gmat = g.reshape(n, groups, c_out // groups, -1).transpose(1, 2, 0, 3)
    gmat = gmat.reshape(groups, c_out // groups, pixels)
    dw = np.matmul(gmat, cols.transpose(0, 2, 1))          # (G, C_out/G, C_in/G * K)
    return dw.reshape((c_out, c_in_g) + tuple(kernel))


def _cwg_decompose(inputs: list[Tensor], attrs: dict) -> Tensor:
    """conv_weight_grad as one conv, for backends that lower conv only: the channels of x
    become its batch and its samples channels; g is the weight, its output pixels the
    kernel taps; stride and dilation trade places. The result is cropped to the kernel."""
    x, g = inputs
    groups, kernel, nsp = attrs["groups"], attrs["kernel"], x.ndim - 2
    n, c_in = x.shape[:2]
    spatial = tuple(range(3, 3 + nsp))
    # (N, G, C_in/G, *sp) -> (C_in/G, G * N, *sp): group j reads channels j*N .. j*N + N-1
    xt = x.reshape((n, groups, c_in // groups) + x.shape[2:]).permute((2, 1, 0) + spatial)
    xt = xt.reshape((c_in // groups, groups * n) + x.shape[2:])
    gt = g.permute((1, 0) + tuple(range(2, 2 + nsp)))            # (C_out, N, *out)
    y = emit("conv", xt, gt, stride=attrs["dilation"], padding=attrs["padding"],
             dilation=attrs["stride"], groups=groups)            # (C_in/G, C_out, >= kernel)
    if y.shape[2:] != tuple(kernel):
        y = emit("slice", y, starts=[0] * y.ndim, stops=y.shape[:2] + tuple(kernel),
                 steps=[1] * y.ndim)
    return y.permute((1, 0) + tuple(range(2, 2 + nsp)))


register(OpDef(
    "conv_weight_grad", CONTRACTION, _cwg_infer, _cwg_impl, arity=2,
    attrs=(Attr("kernel", "ints"),) + win.CONV_ATTRS, normalize=_cwg_normalize,
    vjp=conv_weight_grad_vjp, decompose=_cwg_decompose,
    doc="The gradient of conv(x, w) with respect to w (C_out, C_in/groups, *kernel) for "
        "the output cotangent g (N, C_out, *out); g must have conv(x, w)'s shape."))


# -- max_pool_argmax ---------------------------------------------------------------------------
def _argmax_infer(types: list[TensorType], attrs: dict) -> TensorType:
    return win.pool_type(types[0], attrs).with_dtype("int64")


def _max_pool_argmax_impl(x: np.ndarray, **attrs) -> np.ndarray:
    """Scan each window's taps in row-major order and keep the first maximum, skipping
    padding; like torch, a NaN always takes over (so the last NaN wins). A window with no
    element of x keeps -1."""
    in_sizes = x.shape[2:]
    out = win.pool_sizes(in_sizes, attrs)
    nsp = len(out)
    xp = win.pool_padded(x, attrs, out, -np.inf)
    flat_step = [math.prod(in_sizes[a + 1:]) for a in range(nsp)]
    best = np.full(x.shape[:2] + tuple(out), -np.inf, dtype=x.dtype)
    index = np.full(best.shape, -1, dtype=np.int64)
    for offsets in win.taps(attrs["kernel"], attrs["dilation"]):
        valid, flat = np.ones((), dtype=bool), np.zeros((), dtype=np.int64)
        for a, (o, s, p, off) in enumerate(zip(out, attrs["stride"], attrs["padding"],
                                               offsets)):
            pos = np.arange(o) * s + off - p          # input position along axis a
            valid = valid & win.along((pos >= 0) & (pos < in_sizes[a]), a, nsp)
            flat = flat + win.along(pos * flat_step[a], a, nsp)
        block = xp[win.strided(offsets, out, attrs["stride"])]
        take = valid & ((block > best) | np.isnan(block) | (index < 0))
        np.copyto(best, block, where=take)
        np.copyto(index, flat, where=take)
    return index


register(OpDef(
    "max_pool_argmax", OPAQUE, _argmax_infer, _max_pool_argmax_impl, arity=1,
    attrs=win.MAX_POOL_ATTRS, normalize=win.pool_normalize(win.MAX_POOL_AXES), nondiff=(0,),
    doc="int64 (N, C, *out): for each max_pool window, the flat row-major index into x's "
        "spatial axes of its first maximum in tap order (torch's return_indices); -1 for "
        "a window that holds no element of x."))


# -- avg_pool_grad -----------------------------------------------------------------------------
def _avg_grad_infer(types: list[TensorType], attrs: dict) -> TensorType:
    g, size = types[0], attrs["input_size"]
    if any(i < 1 for i in size):
        raise ShapeError(f"input_size {list(size)} must be positive")
    x = g.with_shape(g.shape[:2] + tuple(size))
    y = win.pool_type(x, attrs)
    if y.shape != g.shape:
        raise ShapeError(f"g of shape {g.shape} is not the shape {y.shape} of avg_pool "
                         f"of an input {x.shape}")
    return x


def _avg_pool_grad_impl(g: np.ndarray, input_size, **attrs) -> np.ndarray:
    out = g.shape[2:]
    share = g / win.avg_divisor(input_size, out, attrs, g.dtype)
    high = win.pool_high_padding(input_size, out, attrs)
    full = [p + i + h for p, i, h in zip(attrs["padding"], input_size, high)]
    xp = np.zeros(g.shape[:2] + tuple(full), dtype=g.dtype)
    for offsets in win.taps(attrs["kernel"], (1,) * len(out)):
        xp[win.strided(offsets, out, attrs["stride"])] += share
    crop = tuple(slice(p, p + i) for p, i in zip(attrs["padding"], input_size))
    return np.ascontiguousarray(xp[(slice(None), slice(None)) + crop])


register(OpDef(
    "avg_pool_grad", OPAQUE, _avg_grad_infer, _avg_pool_grad_impl, arity=1,
    attrs=win.AVG_POOL_ATTRS + (Attr("input_size", "ints"),),
    normalize=win.pool_normalize(win.AVG_POOL_AXES + ("input_size",), "g"),
    vjp=avg_pool_grad_vjp,
    doc="The gradient of avg_pool for the output cotangent g (N, C, *out): each window's "
        "g / divisor added to its input elements; output (N, C, *input_size)."))


# -- adaptive_avg_pool_grad --------------------------------------------------------------------
def _adaptive_grad_normalize(types: list[TensorType], attrs: dict) -> dict:
    return win.per_axis(attrs, ("input_size",), win.spatial_rank(types[0], "g"))


def _adaptive_grad_infer(types: list[TensorType], attrs: dict) -> TensorType:
    g, size = types[0], attrs["input_size"]
    require_dtype(g, FLOATS)
    if any(i < 1 for i in size):
        raise ShapeError(f"input_size {list(size)} must be positive")
    return g.with_shape(g.shape[:2] + tuple(size))


def _adaptive_avg_pool_grad_impl(g: np.ndarray, input_size) -> np.ndarray:
    # separable, as the forward: spread one spatial axis at a time
    y = g / win.adaptive_divisor(input_size, g.shape[2:], g.dtype)
    for axis, size in enumerate(input_size):
        ax = 2 + axis
        start, end = win.adaptive_windows(size, y.shape[ax])
        spread = np.zeros(y.shape[:ax] + (size,) + y.shape[ax + 1:], dtype=g.dtype)
        lead = (slice(None),) * ax
        for j, (a, b) in enumerate(zip(start, end)):
            spread[lead + (slice(a, b),)] += y[lead + (slice(j, j + 1),)]
        y = spread
    return y


register(OpDef(
    "adaptive_avg_pool_grad", OPAQUE, _adaptive_grad_infer, _adaptive_avg_pool_grad_impl,
    arity=1, attrs=(Attr("input_size", "ints"),), normalize=_adaptive_grad_normalize,
    vjp=adaptive_avg_pool_grad_vjp,
    doc="The gradient of adaptive_avg_pool for the output cotangent g (N, C, *out): each "
        "window's g / size added to its input elements; output (N, C, *input_size)."))
