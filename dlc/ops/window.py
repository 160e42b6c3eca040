"""Shape rules and numpy building blocks shared by the window ops (conv, conv_transpose,
the pools: dlc/ops/contraction.py) and their gradient ops (dlc/ops/contraction_grad.py).

Window ops take x as (N, C, *spatial) with any number >= 1 of spatial axes; their per-axis
int-list attributes (stride, padding, ...) are stored one per spatial axis, and a single int
is broadcast to every axis by `per_axis`. Sizes and edge rules follow PyTorch's
torch.nn.functional exactly (see docs/ops.md).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dlc.errors import ShapeError
from dlc.ir.types import FLOATS, TensorType
from dlc.ops.common import require_dtype, same_dtype
from dlc.ops.registry import REQUIRED, Attr

CONV_AXES = ("stride", "padding", "dilation")
CONV_ATTRS = (Attr("stride", "ints", (1,)), Attr("padding", "ints", (0,)),
              Attr("dilation", "ints", (1,)), Attr("groups", "int", 1))
# stride None (or empty) means the kernel, as in torch; normalize stores it explicitly
POOL_COMMON = (Attr("kernel", "ints", REQUIRED), Attr("stride", "ints", None),
               Attr("padding", "ints", (0,)))
MAX_POOL_ATTRS = POOL_COMMON + (Attr("dilation", "ints", (1,)),
                                Attr("ceil_mode", "bool", False))
MAX_POOL_AXES = ("kernel", "stride", "padding", "dilation")
AVG_POOL_ATTRS = POOL_COMMON + (Attr("ceil_mode", "bool", False),
                                Attr("count_include_pad", "bool", True))
AVG_POOL_AXES = ("kernel", "stride", "padding")


# -- attributes --------------------------------------------------------------------------------
def spatial_rank(x: TensorType, what: str = "x") -> int:
    """Number of spatial axes of an (N, C, *spatial) input; at least one."""
    if x.ndim < 3:
        raise ShapeError(f"{what} must be (N, C, *spatial) with at least one spatial axis, "
                         f"got shape {x.shape}")
    return x.ndim - 2


def per_axis(attrs: dict, names: Sequence[str], nsp: int) -> dict:
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


def require_at_least(attrs: dict, name: str, lowest: int) -> None:
    """Every value of attribute `name` must be >= lowest."""
    if any(v < lowest for v in attrs[name]):
        bound = "positive" if lowest == 1 else "non-negative"
        raise ShapeError(f"{name} must be {bound}, got {list(attrs[name])}")


def require_output(x: TensorType, out: Sequence[int], detail: str) -> None:
    if any(o < 1 for o in out):
        raise ShapeError(f"output spatial size {tuple(out)} is not positive for input "
                         f"{x.shape} ({detail})")


def span(kernel: int, dilation: int) -> int:
    """Extent of a dilated kernel along one axis."""
    return dilation * (kernel - 1) + 1


# -- numpy indexing helpers --------------------------------------------------------------------
def pad_spatial(x: np.ndarray, lo: Sequence[int], hi: Sequence[int], value) -> np.ndarray:
    if not any(lo) and not any(hi):
        return x
    widths = [(0, 0), (0, 0)] + [(a, b) for a, b in zip(lo, hi)]
    return np.pad(x, widths, mode="constant", constant_values=value)


def strided(offsets: Sequence[int], counts: Sequence[int], steps: Sequence[int]) -> tuple:
    """Index of `count` elements every `step` from `offset`, per spatial axis (N, C kept)."""
    return (slice(None), slice(None)) + tuple(
        slice(o, o + s * (c - 1) + 1, s) for o, c, s in zip(offsets, counts, steps))


def taps(kernel: Sequence[int], dilation: Sequence[int]) -> Iterator[list[int]]:
    """Per kernel tap, in row-major order: its offset along each spatial axis."""
    for tap in np.ndindex(*kernel):
        yield [t * d for t, d in zip(tap, dilation)]


# -- conv --------------------------------------------------------------------------------------
def check_conv_weight(x: TensorType, w: TensorType, groups: int, what: str = "w") -> None:
    """Rank, dtype and groups checks shared by conv, conv_transpose and conv_weight_grad."""
    if w.ndim != x.ndim:
        raise ShapeError(f"{what} of shape {w.shape} must have rank {x.ndim} to match "
                         f"x of shape {x.shape}")
    same_dtype([x, w], "conv")
    require_dtype(x, FLOATS)
    if groups < 1:
        raise ShapeError(f"groups must be positive, got {groups}")
    if x.shape[1] % groups:
        raise ShapeError(f"groups={groups} does not divide C_in={x.shape[1]} of x "
                         f"{x.shape}")


def conv_type(x: TensorType, w: TensorType, attrs: dict) -> TensorType:
    """The type of conv(x, w) under canonical attrs (stride, padding, dilation, groups)."""
    groups = attrs["groups"]
    check_conv_weight(x, w, groups)
    c_in, c_out = x.shape[1], w.shape[0]
    if w.shape[1] * groups != c_in:
        raise ShapeError(f"x has C_in={c_in} channels but w of shape {w.shape} takes "
                         f"C_in/groups={w.shape[1]} with groups={groups}, i.e. "
                         f"{w.shape[1] * groups} channels (x: {x.shape})")
    if c_out % groups:
        raise ShapeError(f"groups={groups} does not divide C_out={c_out} of w "
                         f"{w.shape}")
    require_at_least(attrs, "stride", 1)
    require_at_least(attrs, "dilation", 1)
    require_at_least(attrs, "padding", 0)
    out = []
    for size, k, s, p, d in zip(x.shape[2:], w.shape[2:], attrs["stride"], attrs["padding"],
                                attrs["dilation"]):
        if size + 2 * p < span(k, d):
            raise ShapeError(f"kernel {w.shape[2:]} (dilation {list(attrs['dilation'])})"
                             f" is larger than the padded input: x {x.shape} with padding "
                             f"{list(attrs['padding'])}")
        out.append((size + 2 * p - span(k, d)) // s + 1)
    return TensorType((x.shape[0], c_out) + tuple(out), x.dtype)


def conv_windows(x: np.ndarray, kernel: Sequence[int], stride, padding, dilation,
                 groups: int) -> np.ndarray:
    """(N, G, C_in/G, *out, *kernel): the window of every output pixel, a strided view into
    the zero-padded x (no copy yet; each caller copies it once in the layout it needs)."""
    nsp = x.ndim - 2
    xp = pad_spatial(x, padding, padding, 0)
    spans = [span(k, d) for k, d in zip(kernel, dilation)]
    out = [(size - sp) // s + 1 for size, sp, s in zip(xp.shape[2:], spans, stride)]
    windows = sliding_window_view(xp, spans, axis=tuple(range(2, 2 + nsp)))
    windows = windows[strided([0] * nsp, out, stride) + tuple(slice(None, None, d)
                                                              for d in dilation)]
    n, c_in = x.shape[:2]
    return windows.reshape((n, groups, c_in // groups) + windows.shape[2:])


def conv_t_sizes(in_sizes, kernel, stride, padding, output_padding, dilation) -> list[int]:
    """Output spatial sizes of conv_transpose (torch's formula)."""
    return [(i - 1) * s - 2 * p + span(k, d) + extra for i, k, s, p, extra, d in
            zip(in_sizes, kernel, stride, padding, output_padding, dilation)]


# -- pools -------------------------------------------------------------------------------------
def pool_normalize(names: Sequence[str], what: str = "x"):
    """normalize for a pool (or pool gradient) whose per-axis attributes are `names`."""
    def normalize(types: list[TensorType], attrs: dict) -> dict:
        nsp = spatial_rank(types[0], what)
        attrs = dict(attrs)
        if not attrs["stride"]:
            attrs["stride"] = attrs["kernel"]
        return per_axis(attrs, names, nsp)
    return normalize


def pool_out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling output size: the last window must start inside input + left pad."""
    extent = size + 2 * p - span(k, d) + (s - 1 if ceil_mode else 0)
    out = extent // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool_sizes(in_sizes, attrs: dict) -> list[int]:
    dilation = attrs.get("dilation", (1,) * len(in_sizes))
    return [pool_out_size(i, k, s, p, d, attrs["ceil_mode"]) for i, k, s, p, d in
            zip(in_sizes, attrs["kernel"], attrs["stride"], attrs["padding"], dilation)]


def pool_type(x: TensorType, attrs: dict) -> TensorType:
    """The type of a pool of x under canonical attrs (max_pool's or avg_pool's)."""
    require_dtype(x, FLOATS)
    for name, lowest in (("kernel", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
        if name in attrs:
            require_at_least(attrs, name, lowest)
    kernel, padding = attrs["kernel"], attrs["padding"]
    # torch's rule (it bounds how much of a window can be padding)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ShapeError(f"padding {list(padding)} must be at most half the kernel "
                         f"{list(kernel)}")
    out = pool_sizes(x.shape[2:], attrs)
    require_output(x, out, f"kernel {list(kernel)}, stride {list(attrs['stride'])}, "
                           f"padding {list(padding)}")
    return x.with_shape(x.shape[:2] + tuple(out))


def pool_high_padding(in_sizes, out, attrs: dict) -> list[int]:
    """Padding past the high end so that every (ceil_mode) window fits."""
    dilation = attrs.get("dilation", (1,) * len(out))
    return [max(0, (o - 1) * s + span(k, d) - (i + p)) for i, o, k, s, p, d in
            zip(in_sizes, out, attrs["kernel"], attrs["stride"], attrs["padding"],
                dilation)]


def pool_padded(x: np.ndarray, attrs: dict, out: Sequence[int], value) -> np.ndarray:
    """Pad low by `padding`, high far enough for every (ceil_mode) window to fit."""
    high = pool_high_padding(x.shape[2:], out, attrs)
    return pad_spatial(x, attrs["padding"], high, value)


def has_empty_windows(in_sizes, out, attrs: dict) -> bool:
    """Whether a (dilated) window holds no element of x: all its taps are padding or
    skipped over by the dilation (possible only with dilation > 1)."""
    for size, o, k, s, p, d in zip(in_sizes, out, attrs["kernel"], attrs["stride"],
                                   attrs["padding"], attrs["dilation"]):
        pos = (np.arange(o) * s - p)[:, None] + np.arange(k)[None, :] * d
        if not ((pos >= 0) & (pos < size)).any(axis=1).all():
            return True
    return False


def avg_divisor(in_sizes, out, attrs: dict, dtype) -> np.ndarray:
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
        total = total * along(counts, axis, len(out))
    return total.astype(dtype)


def along(values: np.ndarray, axis: int, nsp: int) -> np.ndarray:
    """A 1-D array shaped to broadcast along spatial axis `axis` of `nsp`."""
    shape = [1] * nsp
    shape[axis] = values.size
    return values.reshape(shape)


def adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's rule: window i is [floor(i*size/out), ceil((i+1)*size/out))."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def adaptive_divisor(in_sizes, out_sizes, dtype) -> np.ndarray:
    """Element count of every adaptive window, shaped (*out_sizes)."""
    total = np.ones((), dtype=np.int64)
    for axis, (size, out) in enumerate(zip(in_sizes, out_sizes)):
        start, end = adaptive_windows(size, out)
        total = total * along(end - start, axis, len(out_sizes))
    return total.astype(dtype)
