"""Resampling (interpolate) and padding."""
from __future__ import annotations

import builtins
import math
from typing import Sequence

import numpy as np

from dlc.ir.builder import emit
from dlc.tensor import Tensor
from frontend.functional._common import _fail, _ntuple, _t
from frontend.functional.tensors import _narrow


# -- resampling and padding ----------------------------------------------------------------------
def _nearest_sources(n_in: int, n_out: int, scale: float, exact: bool) -> np.ndarray:
    """Source index of each output position, computed in float32 as torch does."""
    pos = np.arange(n_out, dtype=np.float32) + np.float32(0.5 if exact else 0.0)
    src = np.floor(pos * np.float32(scale)).astype(np.int64)
    return np.minimum(src, n_in - 1)


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest",
                align_corners=None, recompute_scale_factor=None,
                antialias: bool = False) -> Tensor:
    """Resize the spatial axes of (N, C, *spatial): modes "nearest" and "nearest-exact"."""
    fn = "interpolate"
    if mode not in ("nearest", "nearest-exact"):
        raise _fail(fn, f"mode {mode!r} is not supported (nearest, nearest-exact)")
    if align_corners is not None or antialias:
        raise _fail(fn, "align_corners and antialias do not apply to nearest modes")
    x = _t(input)
    nsp = x.ndim - 2
    if nsp < 1:
        raise _fail(fn, f"expected (N, C, *spatial), got shape {x.shape}")
    if (size is None) == (scale_factor is None):
        raise _fail(fn, "give exactly one of size and scale_factor")
    ins = x.shape[2:]
    if size is not None:
        outs = _ntuple(size, nsp, "size", fn)
        scales = [i / o for i, o in zip(ins, outs)]
    else:
        factors = [float(s) for s in (scale_factor if isinstance(scale_factor, (tuple, list))
                                      else [scale_factor] * nsp)]
        if len(factors) != nsp:
            raise _fail(fn, f"scale_factor={scale_factor} needs {nsp} values")
        outs = tuple(int(math.floor(i * f)) for i, f in zip(ins, factors))
        scales = [i / o if recompute_scale_factor else 1.0 / f
                  for i, o, f in zip(ins, outs, factors)]
    if any(o < 1 for o in outs):
        raise _fail(fn, f"output size {outs} is not positive for input {x.shape}")
    sources = [_nearest_sources(i, o, s, mode == "nearest-exact")
               for i, o, s in zip(ins, outs, scales)]
    ratios = [o // i if o % i == 0 else 0 for i, o in zip(ins, outs)]
    if all(r > 0 and np.array_equal(src, np.arange(o) // r)
           for r, src, o in zip(ratios, sources, outs)):
        return emit("upsample_nearest", x, scale=tuple(ratios))
    for axis, src in enumerate(sources):  # general sizes: gather rows along each axis
        if not np.array_equal(src, np.arange(ins[axis])):
            x = emit("take", x, src, axis=2 + axis)
    return x


def _pad_pairs(pad: Sequence[int], ndim: int, fn: str) -> list[tuple[int, int]]:
    """torch's pad list (last axis first, (lo, hi) pairs) as one (lo, hi) per axis."""
    pad = [int(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > ndim:
        raise _fail(fn, f"pad {pad} must have an even length of at most 2 * rank ({2 * ndim})")
    pairs = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        pairs[ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return pairs


def _edge_pad(x: Tensor, pairs: list[tuple[int, int]], mode: str) -> Tensor:
    """replicate / circular padding from slices and concats, one axis at a time."""
    for axis, (lo, hi) in enumerate(pairs):
        if lo == hi == 0:
            continue
        n = x.shape[axis]
        if lo < 0 or hi < 0 or (mode == "circular" and builtins.max(lo, hi) > n):
            raise _fail("pad", f"{mode} padding {lo, hi} is out of range for axis {axis} "
                               f"of size {n}")
        parts = []
        if mode == "replicate":
            first, last = _narrow(x, axis, 0, 1), _narrow(x, axis, n - 1, n)
            shape = list(x.shape)
            if lo:
                parts.append(first.broadcast_to(shape[:axis] + [lo] + shape[axis + 1:]))
            parts.append(x)
            if hi:
                parts.append(last.broadcast_to(shape[:axis] + [hi] + shape[axis + 1:]))
        else:
            parts = ([_narrow(x, axis, n - lo, n)] if lo else []) + [x] + \
                ([_narrow(x, axis, 0, hi)] if hi else [])
        x = emit("concat", *parts, axis=axis)
    return x


def pad(input, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad (or crop, with negative amounts) in torch's order: last axis first."""
    x = _t(input)
    pairs = _pad_pairs(pad, x.ndim, "pad")
    if mode in ("replicate", "circular"):
        return _edge_pad(x, pairs, mode)
    if mode not in ("constant", "reflect"):
        raise _fail("pad", f"mode must be constant, reflect, replicate or circular, "
                           f"got {mode!r}")
    if mode == "reflect" and value:
        raise _fail("pad", "value applies to mode='constant' only")
    flat = tuple(v for pair in pairs for v in pair)
    return emit("pad", x, pads=flat, mode=mode, value=0.0 if value is None else value)
