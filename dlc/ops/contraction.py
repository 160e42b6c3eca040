"""Contraction and window ops: matmul, conv, conv_transpose, max_pool, avg_pool,
adaptive_avg_pool.

Window ops take x as (N, C, *spatial) with any number >= 1 of spatial axes; their per-axis
int-list attributes (stride, padding, ...) are stored one per spatial axis, and a single int
is broadcast to every axis by `normalize`. Output sizes and edge rules follow PyTorch's
torch.nn.functional exactly (see docs/ops.md).

The numpy references are the eager baseline, so they avoid Python loops over output pixels:
conv is im2col (a strided window view, one copy) and one matmul per sample and group;
conv_transpose is the adjoint of conv (one matmul, then a scatter-add per kernel offset);
the pools take a max or sum over strided slices, one slice per kernel offset.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dlc.errors import ShapeError
from dlc.ir.types import FLOATS, INTS, TensorType
from dlc.ops.common import broadcast_shapes, require_dtype, same_dtype
from dlc.ops.registry import CONTRACTION, OPAQUE, REQUIRED, Attr, OpDef, register


# -- shared shape helpers ----------------------------------------------------------------------
def _spatial_rank(x: TensorType) -> int:
    """Number of spatial axes of an (N, C, *spatial) input; at least one."""
    if x.ndim < 3:
        raise ShapeError(f"x must be (N, C, *spatial) with at least one spatial axis, "
                         f"got shape {x.shape}")
    return x.ndim - 2


def _per_axis(attrs: dict, names: Sequence[str], nsp: int) -> dict:
    """Broadcast each named int-list attribute to one value per spatial axis."""
    out = dict(attrs)
    for name in names:
        values = tuple(out[name])
        if len(values) == 1:
            values = values * nsp
        if len(values) != nsp:
            raise ShapeError(f"{name}={list(attrs[name])} needs 1 or {nsp} values "
                             f"for {nsp} spatial axes")
        out[name] = values
    return out


def _require(attrs: dict, name: str, lowest: int) -> None:
    """Every value of attribute `name` must be >= lowest."""
    if any(v < lowest for v in attrs[name]):
        bound = "positive" if lowest == 1 else "non-negative"
        raise ShapeError(f"{name} must be {bound}, got {list(attrs[name])}")


def _require_output(x: TensorType, out: Sequence[int], detail: str) -> None:
    if any(o < 1 for o in out):
        raise ShapeError(f"output spatial size {tuple(out)} is not positive for input "
                         f"{x.shape} ({detail})")


def _span(kernel: int, dilation: int) -> int:
    """Extent of a dilated kernel along one axis."""
    return dilation * (kernel - 1) + 1


def _pad_spatial(x: np.ndarray, lo: Sequence[int], hi: Sequence[int], value) -> np.ndarray:
    if not any(lo) and not any(hi):
        return x
    widths = [(0, 0), (0, 0)] + [(a, b) for a, b in zip(lo, hi)]
    return np.pad(x, widths, mode="constant", constant_values=value)


def _strided(offsets: Sequence[int], counts: Sequence[int], steps: Sequence[int]) -> tuple:
    """Index of `count` elements every `step` from `offset`, per spatial axis (N, C kept)."""
    return (slice(None), slice(None)) + tuple(
        slice(o, o + s * (c - 1) + 1, s) for o, c, s in zip(offsets, counts, steps))


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
    "matmul", CONTRACTION, _matmul_infer, _matmul_impl, arity=2,
    doc="a (..., m, k) @ b (..., k, n) with NumPy batch broadcasting; rank >= 2 each."))


# -- conv --------------------------------------------------------------------------------------
CONV_AXES = ("stride", "padding", "dilation")


def _conv_normalize(types: list[TensorType], attrs: dict) -> dict:
    nsp = _spatial_rank(types[0])
    return _per_axis(attrs, CONV_AXES, nsp)


def _check_weight(x: TensorType, w: TensorType, groups: int) -> None:
    """Rank, dtype and groups checks shared by conv and conv_transpose."""
    if w.ndim != x.ndim:
        raise ShapeError(f"w of shape {w.shape} must have rank {x.ndim} to match "
                         f"x of shape {x.shape}")
    same_dtype([x, w], "conv")
    require_dtype(x, FLOATS)
    if groups < 1:
        raise ShapeError(f"groups must be positive, got {groups}")
    if x.shape[1] % groups:
        raise ShapeError(f"groups={groups} does not divide C_in={x.shape[1]} of x "
                         f"{x.shape}")


def _conv_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, w = types
    groups = attrs["groups"]
    _check_weight(x, w, groups)
    c_in, c_out = x.shape[1], w.shape[0]
    if w.shape[1] * groups != c_in:
        raise ShapeError(f"x has C_in={c_in} channels but w of shape {w.shape} takes "
                         f"C_in/groups={w.shape[1]} with groups={groups}, i.e. "
                         f"{w.shape[1] * groups} channels (x: {x.shape})")
    if c_out % groups:
        raise ShapeError(f"groups={groups} does not divide C_out={c_out} of w "
                         f"{w.shape}")
    _require(attrs, "stride", 1)
    _require(attrs, "dilation", 1)
    _require(attrs, "padding", 0)
    out = []
    for size, k, s, p, d in zip(x.shape[2:], w.shape[2:], attrs["stride"], attrs["padding"],
                                attrs["dilation"]):
        if size + 2 * p < _span(k, d):
            raise ShapeError(f"kernel {w.shape[2:]} (dilation {list(attrs['dilation'])})"
                             f" is larger than the padded input: x {x.shape} with padding "
                             f"{list(attrs['padding'])}")
        out.append((size + 2 * p - _span(k, d)) // s + 1)
    return TensorType((x.shape[0], c_out) + tuple(out), x.dtype)


def _conv_impl(x: np.ndarray, w: np.ndarray, stride, padding, dilation,
               groups: int) -> np.ndarray:
    nsp = x.ndim - 2
    n, c_in = x.shape[:2]
    c_out, kernel = w.shape[0], w.shape[2:]
    xp = _pad_spatial(x, padding, padding, 0)
    spans = [_span(k, d) for k, d in zip(kernel, dilation)]
    out = [(size - span) // s + 1 for size, span, s in zip(xp.shape[2:], spans, stride)]
    # (N, C, *out, *kernel) as a strided view into xp: no copy yet
    windows = sliding_window_view(xp, spans, axis=tuple(range(2, 2 + nsp)))
    windows = windows[_strided([0] * nsp, out, stride) + tuple(slice(None, None, d)
                                                               for d in dilation)]
    c_in_g, c_out_g, taps = c_in // groups, c_out // groups, math.prod(kernel)
    windows = windows.reshape((n, groups, c_in_g) + windows.shape[2:])
    # im2col, the one copy of the input: (N, G, C_in/G * prod(kernel), prod(out)); output
    # pixels innermost keeps the copy's inner loop contiguous and makes the matmul's result
    # the (N, C_out, *out) layout directly
    out_axes = tuple(range(3, 3 + nsp))
    kernel_axes = tuple(range(3 + nsp, 3 + 2 * nsp))
    cols = windows.transpose((0, 1, 2) + kernel_axes + out_axes)
    cols = cols.reshape(n, groups, c_in_g * taps, math.prod(out))
    y = np.matmul(w.reshape(groups, c_out_g, c_in_g * taps), cols)   # (N, G, C_out/G, P)
    return y.reshape((n, c_out) + tuple(out))


register(OpDef(
    "conv", CONTRACTION, _conv_infer, _conv_impl, arity=2,
    attrs=(Attr("stride", "ints", (1,)), Attr("padding", "ints", (0,)),
           Attr("dilation", "ints", (1,)), Attr("groups", "int", 1)),
    normalize=_conv_normalize,
    doc="Cross-correlation of x (N, C_in, *spatial) with w (C_out, C_in/groups, *kernel), "
        "symmetric zero padding; torch.nn.functional.conv1d/2d/3d without bias."))


# -- conv_transpose ----------------------------------------------------------------------------
CONV_T_AXES = ("stride", "padding", "output_padding", "dilation")


def _conv_t_normalize(types: list[TensorType], attrs: dict) -> dict:
    nsp = _spatial_rank(types[0])
    return _per_axis(attrs, CONV_T_AXES, nsp)


def _conv_t_sizes(in_sizes, kernel, stride, padding, output_padding, dilation) -> list[int]:
    """Output spatial sizes of conv_transpose (torch's formula)."""
    return [(i - 1) * s - 2 * p + _span(k, d) + extra for i, k, s, p, extra, d in
            zip(in_sizes, kernel, stride, padding, output_padding, dilation)]


def _conv_t_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, w = types
    groups = attrs["groups"]
    _check_weight(x, w, groups)
    if w.shape[0] != x.shape[1]:
        raise ShapeError(f"x has C_in={x.shape[1]} channels but w of shape {w.shape} "
                         f"is (C_in={w.shape[0]}, C_out/groups, *kernel) (x: {x.shape})")
    _require(attrs, "stride", 1)
    _require(attrs, "dilation", 1)
    _require(attrs, "padding", 0)
    _require(attrs, "output_padding", 0)
    for op_pad, s, d in zip(attrs["output_padding"], attrs["stride"], attrs["dilation"]):
        if op_pad >= s and op_pad >= d:
            raise ShapeError(f"output_padding {list(attrs['output_padding'])} must be "
                             f"smaller than either stride {list(attrs['stride'])} or "
                             f"dilation {list(attrs['dilation'])}")
    out = _conv_t_sizes(x.shape[2:], w.shape[2:], *(attrs[a] for a in CONV_T_AXES))
    _require_output(x, out, f"w {w.shape}, padding {list(attrs['padding'])}")
    return TensorType((x.shape[0], w.shape[1] * groups) + tuple(out), x.dtype)


def _conv_t_impl(x: np.ndarray, w: np.ndarray, stride, padding, output_padding, dilation,
                 groups: int) -> np.ndarray:
    nsp = x.ndim - 2
    n, c_in, in_sizes = x.shape[0], x.shape[1], x.shape[2:]
    c_out_g, kernel = w.shape[1], w.shape[2:]
    c_in_g, taps = c_in // groups, math.prod(kernel)
    # every kernel tap times every input pixel, one matmul per sample and group:
    # (G, C_out/G * K, C_in/G) @ (N, G, C_in/G, P) -> (N, G, C_out/G, *kernel, *in)
    wmat = w.reshape(groups, c_in_g, c_out_g * taps).transpose(0, 2, 1)
    prod = np.matmul(wmat, x.reshape(n, groups, c_in_g, math.prod(in_sizes)))
    prod = prod.reshape((n, groups, c_out_g) + kernel + in_sizes)
    # scatter each tap into the uncropped output; output_padding extends the high end
    full = [(i - 1) * s + _span(k, d) + extra for i, k, s, d, extra in
            zip(in_sizes, kernel, stride, dilation, output_padding)]
    y = np.zeros((n, groups, c_out_g) + tuple(full), dtype=x.dtype)
    for tap in np.ndindex(*kernel):
        offsets = [t * d for t, d in zip(tap, dilation)]
        dst = (slice(None),) + _strided(offsets, in_sizes, stride)
        y[dst] += prod[(slice(None),) * 3 + tap]
    out = _conv_t_sizes(in_sizes, kernel, stride, padding, output_padding, dilation)
    y = y[(Ellipsis,) + tuple(slice(p, p + o) for p, o in zip(padding, out))]
    return np.ascontiguousarray(y).reshape((n, groups * c_out_g) + tuple(out))


register(OpDef(
    "conv_transpose", CONTRACTION, _conv_t_infer, _conv_t_impl, arity=2,
    attrs=(Attr("stride", "ints", (1,)), Attr("padding", "ints", (0,)),
           Attr("output_padding", "ints", (0,)), Attr("dilation", "ints", (1,)),
           Attr("groups", "int", 1)),
    normalize=_conv_t_normalize,
    doc="Transposed convolution, x (N, C_in, *spatial), w (C_in, C_out/groups, *kernel): "
        "torch.nn.functional.conv_transpose1d/2d/3d without bias."))


# -- max_pool and avg_pool ---------------------------------------------------------------------
def _pool_normalize(names: Sequence[str]):
    """normalize for a pool whose per-axis attributes are `names`."""
    def normalize(types: list[TensorType], attrs: dict) -> dict:
        nsp = _spatial_rank(types[0])
        attrs = dict(attrs)
        if not attrs["stride"]:
            attrs["stride"] = attrs["kernel"]
        return _per_axis(attrs, names, nsp)
    return normalize


def _pool_out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling output size: the last window must start inside input + left pad."""
    extent = size + 2 * p - _span(k, d) + (s - 1 if ceil_mode else 0)
    out = extent // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    require_dtype(x, FLOATS)
    for name, lowest in (("kernel", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
        if name in attrs:
            _require(attrs, name, lowest)
    kernel, padding = attrs["kernel"], attrs["padding"]
    # torch's rule (it bounds how much of a window can be padding)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ShapeError(f"padding {list(padding)} must be at most half the kernel "
                         f"{list(kernel)}")
    out = _pool_sizes(x.shape[2:], attrs)
    _require_output(x, out, f"kernel {list(kernel)}, stride {list(attrs['stride'])}, "
                            f"padding {list(padding)}")
    return x.with_shape(x.shape[:2] + tuple(out))


def _pool_sizes(in_sizes, attrs: dict) -> list[int]:
    dilation = attrs.get("dilation", (1,) * len(in_sizes))
    return [_pool_out_size(i, k, s, p, d, attrs["ceil_mode"]) for i, k, s, p, d in
            zip(in_sizes, attrs["kernel"], attrs["stride"], attrs["padding"], dilation)]


def _pool_padded(x: np.ndarray, attrs: dict, out: Sequence[int], value) -> np.ndarray:
    """Pad low by `padding`, high far enough for every (ceil_mode) window to fit."""
    dilation = attrs.get("dilation", (1,) * len(out))
    high = [max(0, (o - 1) * s + _span(k, d) - (i + p)) for i, o, k, s, p, d in
            zip(x.shape[2:], out, attrs["kernel"], attrs["stride"], attrs["padding"],
                dilation)]
    return _pad_spatial(x, attrs["padding"], high, value)


def _taps(kernel: Sequence[int], dilation: Sequence[int]):
    """Per kernel tap: its offset in the padded input along each spatial axis."""
    for tap in np.ndindex(*kernel):
        yield [t * d for t, d in zip(tap, dilation)]


def _max_pool_impl(x: np.ndarray, **attrs) -> np.ndarray:
    out = _pool_sizes(x.shape[2:], attrs)
    xp = _pool_padded(x, attrs, out, -np.inf)
    result = None
    for offsets in _taps(attrs["kernel"], attrs["dilation"]):
        block = xp[_strided(offsets, out, attrs["stride"])]
        # np.maximum propagates NaN, as torch's max_pool does
        result = block.copy() if result is None else np.maximum(result, block, out=result)
    return result


def _avg_divisor(in_sizes, out, attrs: dict, dtype) -> np.ndarray:
    """Per-window element count, the product of per-axis counts (torch's rules).

    count_include_pad counts padding but not the overhang of a ceil_mode window past the
    padded input; otherwise only real input elements count."""
    total = np.ones((), dtype=np.int64)
    for axis, (size, o, k, s, p) in enumerate(zip(in_sizes, out, attrs["kernel"],
                                                   attrs["stride"], attrs["padding"])):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, size + p)
        if not attrs["count_include_pad"]:
            start, end = np.maximum(start, 0), np.minimum(end, size)
        counts = np.maximum(end - start, 1)       # never 0 under torch's padding rule
        shape = [1] * len(out)
        shape[axis] = o
        total = total * counts.reshape(shape)
    return total.astype(dtype)


def _avg_pool_impl(x: np.ndarray, **attrs) -> np.ndarray:
    out = _pool_sizes(x.shape[2:], attrs)
    xp = _pool_padded(x, attrs, out, 0)
    result = None
    for offsets in _taps(attrs["kernel"], (1,) * len(out)):
        block = xp[_strided(offsets, out, attrs["stride"])]
        result = block.copy() if result is None else np.add(result, block, out=result)
    return result / _avg_divisor(x.shape[2:], out, attrs, x.dtype)


# stride None (or empty) means the kernel, as in torch; normalize stores it explicitly
POOL_COMMON = (Attr("kernel", "ints", REQUIRED), Attr("stride", "ints", None),
               Attr("padding", "ints", (0,)))

register(OpDef(
    "max_pool", OPAQUE, _pool_infer, _max_pool_impl, arity=1,
    attrs=POOL_COMMON + (Attr("dilation", "ints", (1,)), Attr("ceil_mode", "bool", False)),
    normalize=_pool_normalize(("kernel", "stride", "padding", "dilation")),
    doc="Max over windows of x (N, C, *spatial); padding is -inf; stride defaults to the "
        "kernel; torch.nn.functional.max_pool1d/2d/3d."))

register(OpDef(
    "avg_pool", OPAQUE, _pool_infer, _avg_pool_impl, arity=1,
    attrs=POOL_COMMON + (Attr("ceil_mode", "bool", False),
                         Attr("count_include_pad", "bool", True)),
    normalize=_pool_normalize(("kernel", "stride", "padding")),
    doc="Mean over windows of x (N, C, *spatial) with torch's divisor rules; stride "
        "defaults to the kernel; torch.nn.functional.avg_pool1d/2d/3d."))


# -- adaptive_avg_pool -------------------------------------------------------------------------
def _adaptive_normalize(types: list[TensorType], attrs: dict) -> dict:
    nsp = _spatial_rank(types[0])
    return _per_axis(attrs, ("output_size",), nsp)


def _adaptive_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    require_dtype(x, FLOATS)
    size = attrs["output_size"]
    if any(o < 1 for o in size):
        raise ShapeError(f"output_size {list(size)} must be positive")
    if any(i < 1 for i in x.shape[2:]):
        raise ShapeError(f"x {x.shape} has an empty spatial axis")
    return x.with_shape(x.shape[:2] + tuple(size))


def _adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's rule: window i is [floor(i*size/out), ceil((i+1)*size/out))."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _adaptive_avg_pool_impl(x: np.ndarray, output_size) -> np.ndarray:
    # windows are separable: sum along one spatial axis at a time (a loop over that axis's
    # output positions, not over output pixels), then divide once by the window sizes.
    # Slice sums, unlike a matmul with a 0/1 matrix, keep a NaN or inf inside its windows.
    y, total = x, np.ones((), dtype=np.int64)
    for axis, out in enumerate(output_size):
        start, end = _adaptive_windows(x.shape[2 + axis], out)
        lead = (slice(None),) * (2 + axis)
        y = np.concatenate([y[lead + (slice(a, b),)].sum(axis=2 + axis, keepdims=True)
                            for a, b in zip(start, end)], axis=2 + axis)
        shape = [1] * len(output_size)
        shape[axis] = out
        total = total * (end - start).reshape(shape)
    return np.ascontiguousarray(y / total.astype(x.dtype))


register(OpDef(
    "adaptive_avg_pool", OPAQUE, _adaptive_infer, _adaptive_avg_pool_impl, arity=1,
    attrs=(Attr("output_size", "ints", REQUIRED),), normalize=_adaptive_normalize,
    doc="Mean over torch's adaptive windows of x (N, C, *spatial) to output_size; "
        "torch.nn.functional.adaptive_avg_pool1d/2d/3d."))
