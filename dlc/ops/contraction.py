"""Contraction and window ops: matmul, conv, conv_transpose, max_pool, avg_pool,
adaptive_avg_pool.

Window ops take x as (N, C, *spatial) with any number >= 1 of spatial axes (shape rules and
numpy building blocks in window.py). Output sizes and edge rules follow PyTorch's
torch.nn.functional exactly (see docs/ops.md). The VJP rules and the gradient ops they use
(conv_weight_grad, max_pool_argmax, avg_pool_grad, adaptive_avg_pool_grad) are in
contraction_grad.py.

The numpy references are the eager baseline, so they avoid Python loops over output pixels:
conv is im2col (a strided window view, one copy) and one matmul per sample and group;
conv_transpose is the adjoint of conv (one matmul, then a scatter-add per kernel offset);
the pools take a max or sum over strided slices, one slice per kernel offset.
"""
from __future__ import annotations

import math

import numpy as np

from dlc.errors import ShapeError
from dlc.ir.types import FLOATS, INTS, TensorType
from dlc.ops import window as win
from dlc.ops.common import broadcast_shapes, require_dtype, same_dtype
from dlc.ops.contraction_grad import (adaptive_avg_pool_vjp, avg_pool_vjp, conv_t_vjp,
                                      conv_vjp, matmul_vjp, max_pool_vjp)
from dlc.ops.registry import CONTRACTION, OPAQUE, Attr, OpDef, register


# -- matmul ------------------------------------------------------------------------------------
def _matmul_infer(types: list[TensorType], attrs: dict) -> TensorType:
    a, b = types
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError(f"needs rank >= 2 operands, got {a.shape} @ {b.shape} "
                         f"(1-D operands are reshaped by the frontend)")
    dtype = same_dtype(types, "matmul")
    require_dtype(a, FLOATS + INTS)
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"inner dimensions differ: {a.shape} @ {b.shape} "
                         f"({a.shape[-1]} != {b.shape[-2]})")
    try:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"batch dimensions {a.shape[:-2]} and {b.shape[:-2]} do not "
                         f"broadcast ({a.shape} @ {b.shape})") from None
    return TensorType(batch + (a.shape[-2], b.shape[-1]), dtype)


def _matmul_impl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a, b)


register(OpDef(
    "matmul", CONTRACTION, _matmul_infer, _matmul_impl, arity=2, vjp=matmul_vjp,
    doc="a (..., m, k) @ b (..., k, n) with NumPy batch broadcasting; rank >= 2 each."))


# -- conv --------------------------------------------------------------------------------------
def _conv_normalize(types: list[TensorType], attrs: dict) -> dict:
    return win.per_axis(attrs, win.CONV_AXES, win.spatial_rank(types[0]))


def _conv_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, w = types
    return win.conv_type(x, w, attrs)


def _conv_impl(x: np.ndarray, w: np.ndarray, stride, padding, dilation,
               groups: int) -> np.ndarray:
    nsp = x.ndim - 2
    n, c_out, kernel = x.shape[0], w.shape[0], w.shape[2:]
    windows = win.conv_windows(x, kernel, stride, padding, dilation, groups)
    out, c_in_g = windows.shape[3:3 + nsp], windows.shape[2]
    # im2col, the one copy of the input: (N, G, C_in/G * prod(kernel), prod(out)); output
    # pixels innermost keeps the copy's inner loop contiguous and makes the matmul's result
    # the (N, C_out, *out) layout directly
    out_axes = tuple(range(3, 3 + nsp))
    kernel_axes = tuple(range(3 + nsp, 3 + 2 * nsp))
    cols = windows.transpose((0, 1, 2) + kernel_axes + out_axes)
    cols = cols.reshape(n, groups, c_in_g * math.prod(kernel), math.prod(out))
    y = np.matmul(w.reshape(groups, c_out // groups, -1), cols)   # (N, G, C_out/G, P)
    return y.reshape((n, c_out) + tuple(out))


register(OpDef(
    "conv", CONTRACTION, _conv_infer, _conv_impl, arity=2, attrs=win.CONV_ATTRS,
    normalize=_conv_normalize, vjp=conv_vjp,
    doc="Cross-correlation of x (N, C_in, *spatial) with w (C_out, C_in/groups, *kernel), "
        "symmetric zero padding; torch.nn.functional.conv1d/2d/3d without bias."))


# -- conv_transpose ----------------------------------------------------------------------------
CONV_T_AXES = ("stride", "padding", "output_padding", "dilation")


def _conv_t_normalize(types: list[TensorType], attrs: dict) -> dict:
    return win.per_axis(attrs, CONV_T_AXES, win.spatial_rank(types[0]))


def _conv_t_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, w = types
    groups = attrs["groups"]
    win.check_conv_weight(x, w, groups)
    if w.shape[0] != x.shape[1]:
        raise ShapeError(f"x has C_in={x.shape[1]} channels but w of shape {w.shape} "
                         f"is (C_in={w.shape[0]}, C_out/groups, *kernel) (x: {x.shape})")
    win.require_at_least(attrs, "stride", 1)
    win.require_at_least(attrs, "dilation", 1)
    win.require_at_least(attrs, "padding", 0)
    win.require_at_least(attrs, "output_padding", 0)
    for op_pad, s, d in zip(attrs["output_padding"], attrs["stride"], attrs["dilation"]):
        if op_pad >= s and op_pad >= d:
            raise ShapeError(f"output_padding {list(attrs['output_padding'])} must be "
                             f"smaller than either stride {list(attrs['stride'])} or "
                             f"dilation {list(attrs['dilation'])}")
    out = win.conv_t_sizes(x.shape[2:], w.shape[2:], *(attrs[a] for a in CONV_T_AXES))
    win.require_output(x, out, f"w {w.shape}, padding {list(attrs['padding'])}")
    return TensorType((x.shape[0], w.shape[1] * groups) + tuple(out), x.dtype)


def _conv_t_impl(x: np.ndarray, w: np.ndarray, stride, padding, output_padding, dilation,
                 groups: int) -> np.ndarray:
    n, c_in, in_sizes = x.shape[0], x.shape[1], x.shape[2:]
    c_out_g, kernel = w.shape[1], w.shape[2:]
    c_in_g, taps = c_in // groups, math.prod(kernel)
    # every kernel tap times every input pixel, one matmul per sample and group:
    # (G, C_out/G * K, C_in/G) @ (N, G, C_in/G, P) -> (N, G, C_out/G, *kernel, *in)
    wmat = w.reshape(groups, c_in_g, c_out_g * taps).transpose(0, 2, 1)
    prod = np.matmul(wmat, x.reshape(n, groups, c_in_g, math.prod(in_sizes)))
    prod = prod.reshape((n, groups, c_out_g) + kernel + in_sizes)
    # scatter each tap into the uncropped output; output_padding extends the high end
    full = [(i - 1) * s + win.span(k, d) + extra for i, k, s, d, extra in
            zip(in_sizes, kernel, stride, dilation, output_padding)]
    y = np.zeros((n, groups, c_out_g) + tuple(full), dtype=x.dtype)
    for tap in np.ndindex(*kernel):
        offsets = [t * d for t, d in zip(tap, dilation)]
        dst = (slice(None),) + win.strided(offsets, in_sizes, stride)
        y[dst] += prod[(slice(None),) * 3 + tap]
    out = win.conv_t_sizes(in_sizes, kernel, stride, padding, output_padding, dilation)
    y = y[(Ellipsis,) + tuple(slice(p, p + o) for p, o in zip(padding, out))]
    return np.ascontiguousarray(y).reshape((n, groups * c_out_g) + tuple(out))


register(OpDef(
    "conv_transpose", CONTRACTION, _conv_t_infer, _conv_t_impl, arity=2,
    attrs=win.CONV_ATTRS[:2] + (Attr("output_padding", "ints", (0,)),) + win.CONV_ATTRS[2:],
    normalize=_conv_t_normalize, vjp=conv_t_vjp,
    doc="Transposed convolution, x (N, C_in, *spatial), w (C_in, C_out/groups, *kernel): "
        "torch.nn.functional.conv_transpose1d/2d/3d without bias."))


# -- max_pool and avg_pool ---------------------------------------------------------------------
def _pool_infer(types: list[TensorType], attrs: dict) -> TensorType:
    return win.pool_type(types[0], attrs)


def _max_pool_impl(x: np.ndarray, **attrs) -> np.ndarray:
    out = win.pool_sizes(x.shape[2:], attrs)
    xp = win.pool_padded(x, attrs, out, -np.inf)
    result = None
    for offsets in win.taps(attrs["kernel"], attrs["dilation"]):
        block = xp[win.strided(offsets, out, attrs["stride"])]
        # np.maximum propagates NaN, as torch's max_pool does
        result = block.copy() if result is None else np.maximum(result, block, out=result)
    return result


def _avg_pool_impl(x: np.ndarray, **attrs) -> np.ndarray:
    out = win.pool_sizes(x.shape[2:], attrs)
    xp = win.pool_padded(x, attrs, out, 0)
    result = None
    for offsets in win.taps(attrs["kernel"], (1,) * len(out)):
        block = xp[win.strided(offsets, out, attrs["stride"])]
        result = block.copy() if result is None else np.add(result, block, out=result)
    return result / win.avg_divisor(x.shape[2:], out, attrs, x.dtype)


register(OpDef(
    "max_pool", OPAQUE, _pool_infer, _max_pool_impl, arity=1, attrs=win.MAX_POOL_ATTRS,
    normalize=win.pool_normalize(win.MAX_POOL_AXES), vjp=max_pool_vjp,
    doc="Max over windows of x (N, C, *spatial); padding is -inf; stride defaults to the "
        "kernel; torch.nn.functional.max_pool1d/2d/3d. The gradient goes to the first "
        "maximum of each window in row-major tap order (torch's rule)."))

register(OpDef(
    "avg_pool", OPAQUE, _pool_infer, _avg_pool_impl, arity=1, attrs=win.AVG_POOL_ATTRS,
    normalize=win.pool_normalize(win.AVG_POOL_AXES), vjp=avg_pool_vjp,
    doc="Mean over windows of x (N, C, *spatial) with torch's divisor rules; stride "
        "defaults to the kernel; torch.nn.functional.avg_pool1d/2d/3d."))


# -- adaptive_avg_pool -------------------------------------------------------------------------
def _adaptive_normalize(types: list[TensorType], attrs: dict) -> dict:
    return win.per_axis(attrs, ("output_size",), win.spatial_rank(types[0]))


def _adaptive_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    require_dtype(x, FLOATS)
    size = attrs["output_size"]
    if any(o < 1 for o in size):
        raise ShapeError(f"output_size {list(size)} must be positive")
    if any(i < 1 for i in x.shape[2:]):
        raise ShapeError(f"x {x.shape} has an empty spatial axis")
    return x.with_shape(x.shape[:2] + tuple(size))


def _adaptive_avg_pool_impl(x: np.ndarray, output_size) -> np.ndarray:
    # windows are separable: sum along one spatial axis at a time (a loop over that axis's
    # output positions, not over output pixels), then divide once by the window sizes.
    # Slice sums, unlike a matmul with a 0/1 matrix, keep a NaN or inf inside its windows.
    y = x
    for axis, out in enumerate(output_size):
        start, end = win.adaptive_windows(x.shape[2 + axis], out)
        lead = (slice(None),) * (2 + axis)
        y = np.concatenate([y[lead + (slice(a, b),)].sum(axis=2 + axis, keepdims=True)
                            for a, b in zip(start, end)], axis=2 + axis)
    return np.ascontiguousarray(y / win.adaptive_divisor(x.shape[2:], output_size, x.dtype))


register(OpDef(
    "adaptive_avg_pool", OPAQUE, _adaptive_infer, _adaptive_avg_pool_impl, arity=1,
    attrs=(Attr("output_size", "ints"),), normalize=_adaptive_normalize,
    vjp=adaptive_avg_pool_vjp,
    doc="Mean over torch's adaptive windows of x (N, C, *spatial) to output_size; "
        "torch.nn.functional.adaptive_avg_pool1d/2d/3d."))
