"""Movement ops: reshape, permute, broadcast_to, slice, pad, concat, flip and
upsample_nearest; the indexing ops take, gather and scatter_add live in gather.py and share
the helpers here.

They move or select elements without arithmetic (scatter_add, which adds, is opaque). Every
op takes any dtype unless noted. Attributes are stored canonical: axes non-negative (sorted
where order carries no meaning), slice bounds tight, one value per spatial axis.

The numpy references return arrays they own (a copy where numpy would return a view), so an
output never aliases an input or a caller's array.

Integer index inputs (take, gather, scatter_add) accept NumPy's range [-n, n): negative
indices count from the end. Anything outside raises a DlcError at run time naming the op,
the axis, the bad index and the valid range; indices never wrap silently.

Each op's VJP sits next to it, built only from ops of this module, `sum`, `add` and `full`
(zeros), so a gradient graph is differentiable again: a selection's adjoint is a placement
into zeros (zero `pad`, `scatter_add`), a placement's adjoint is a selection (`slice`,
`gather`), a broadcast's adjoint is a `sum`. docs/ops.md spells out each rule.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dlc.errors import DlcError, ShapeError
from dlc.ir.builder import emit
from dlc.ir.types import INTS, TensorType
from dlc.ops.common import same_dtype
from dlc.ops.registry import MOVEMENT, Attr, OpDef, register
from dlc.ops.vjp_utils import unbroadcast


# -- shared helpers ----------------------------------------------------------------------------
def _axis(op: str, axis: int, shape: Sequence[int], what: str = "x") -> int:
    """A non-negative axis of `shape`; negative axes count from the end."""
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{op}: axis {axis} is out of range for {what} of shape "
                         f"{tuple(shape)} (rank {ndim})")
    return axis % ndim


def _axes(op: str, axes: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """Non-negative, sorted, each axis at most once."""
    out = [_axis(op, a, shape) for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: axes {list(axes)} name an axis twice (shape {tuple(shape)})")
    return tuple(sorted(out))


def _require_index(op: str, idx: TensorType) -> None:
    if idx.dtype not in INTS:
        raise ShapeError(f"{op}: the index must be an integer tensor ({', '.join(INTS)}), "
                         f"got {idx.dtype}")


def _require_rank(op: str, x: TensorType, lowest: int, what: str = "x") -> None:
    if x.ndim < lowest:
        raise ShapeError(f"{op}: {what} must have rank >= {lowest}, got shape {x.shape}")


def _checked_index(op: str, idx: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Indices in [0, size): negatives count from the end; anything else is an error."""
    bad = (idx < -size) | (idx >= size)
    if bad.any():
        valid = f"{-size}..{size - 1}" if size else "none: the axis is empty"
        raise DlcError(f"{op}: index {int(idx[bad].flat[0])} is out of range for axis {axis} "
                       f"of size {size} (valid: {valid})")
    return np.where(idx < 0, idx + size, idx)


def _prefix(shape: Sequence[int]) -> tuple[slice, ...]:
    """The index of the leading block of that shape (torch's gather/scatter regions)."""
    return tuple(slice(0, k) for k in shape)


# -- graph-building helpers of the VJP rules (Tensor in, Tensor out) ---------------------------
def _pad_axis(g, axis: int, lo: int, hi: int):
    """Zeros before (lo) and after (hi) `g` along one axis; a negative amount crops."""
    if lo == hi == 0:
        return g
    pads = [0] * (2 * g.ndim)
    pads[2 * axis:2 * axis + 2] = lo, hi
    return emit("pad", g, pads=pads)


def _slice_axis(g, axis: int, start: int, stop: int):
    """g's elements [start, stop) along one axis (0 <= start <= stop <= size)."""
    if (start, stop) == (0, g.shape[axis]):
        return g
    starts, stops = [0] * g.ndim, list(g.shape)
    starts[axis], stops[axis] = start, stop
    return emit("slice", g, starts=starts, stops=stops, steps=[1] * g.ndim)


def _flip_axis(g, axis: int):
    return g if g.shape[axis] <= 1 else emit("flip", g, axes=(axis,))


# -- reshape -----------------------------------------------------------------------------------
def _reshape_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, shape = types[0], attrs["shape"]
    if any(d < 0 for d in shape):
        raise ShapeError(f"reshape: target shape {shape} has a negative dimension (the op "
                         f"takes no -1; Tensor.reshape resolves it)")
    size = int(np.prod(shape, dtype=np.int64))
    if size != x.size:
        raise ShapeError(f"reshape: cannot reshape {x.shape} ({x.size} elements) to {shape} "
                         f"({size} elements)")
    return x.with_shape(shape)


def _reshape_impl(x: np.ndarray, shape) -> np.ndarray:
    return x.reshape(shape).copy()


def _reshape_vjp(g, out, inputs, attrs):
    return [g.reshape(inputs[0].shape)]


register(OpDef(
    "reshape", MOVEMENT, _reshape_infer, _reshape_impl, attrs=(Attr("shape", "ints"),),
    vjp=_reshape_vjp,
    doc="Same elements in row-major order, new shape; the element count must match."))


# -- permute -----------------------------------------------------------------------------------
def _permute_normalize(types: list[TensorType], attrs: dict) -> dict:
    x, perm = types[0], attrs["perm"]
    if len(perm) != x.ndim:
        raise ShapeError(f"permute: perm {list(perm)} has {len(perm)} entries for x of shape "
                         f"{x.shape} (rank {x.ndim})")
    canon = tuple(_axis("permute", p, x.shape) for p in perm)
    if sorted(canon) != list(range(x.ndim)):
        raise ShapeError(f"permute: perm {list(perm)} is not a permutation of the axes of "
                         f"shape {x.shape}")
    return {**attrs, "perm": canon}


def _permute_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    return x.with_shape(tuple(x.shape[p] for p in attrs["perm"]))


def _permute_impl(x: np.ndarray, perm) -> np.ndarray:
    return np.transpose(x, perm).copy()


def _permute_vjp(g, out, inputs, attrs):
    # output axis i is input axis perm[i], so input axis perm[i] is output axis i
    return [g.permute(tuple(int(i) for i in np.argsort(attrs["perm"])))]


register(OpDef(
    "permute", MOVEMENT, _permute_infer, _permute_impl, attrs=(Attr("perm", "ints"),),
    normalize=_permute_normalize, vjp=_permute_vjp,
    doc="Reorder axes: output axis i is input axis perm[i] (numpy.transpose)."))


# -- broadcast_to ------------------------------------------------------------------------------
def _broadcast_to_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, shape = types[0], attrs["shape"]

    def refuse(why: str):
        raise ShapeError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}: {why}")

    if any(d < 0 for d in shape):
        refuse("the target has a negative dimension")
    if len(shape) < x.ndim:
        refuse(f"the target has fewer dimensions ({len(shape)} < {x.ndim})")
    for axis, (have, want) in enumerate(zip(x.shape, shape[len(shape) - x.ndim:])):
        if have not in (1, want):
            refuse(f"axis {axis} has size {have}, which is neither 1 nor {want}")
    return x.with_shape(shape)


def _broadcast_to_impl(x: np.ndarray, shape) -> np.ndarray:
    return np.broadcast_to(x, shape).copy()


def _broadcast_to_vjp(g, out, inputs, attrs):
    return [unbroadcast(g, inputs[0].shape)]


register(OpDef(
    "broadcast_to", MOVEMENT, _broadcast_to_infer, _broadcast_to_impl,
    attrs=(Attr("shape", "ints"),), vjp=_broadcast_to_vjp,
    doc="Repeat size-1 axes and prepend axes to reach `shape` (NumPy broadcasting)."))


# -- slice -------------------------------------------------------------------------------------
def _canonical_range(axis: int, size: int, start: int, stop: int, step: int) -> tuple:
    """Check one axis's bounds are in slice.indices form; return the tightest equal range.

    slice.indices gives 0 <= start, stop <= size for a positive step and -1 <= start, stop
    <= size - 1 for a negative one (stop -1: through index 0). The canonical form ends just
    past the last element taken, uses step 1 for a single element and (0, 0, 1) for none,
    so equal slices get equal attributes."""
    if step == 0:
        raise ShapeError(f"slice: step of axis {axis} is 0")
    lo, hi = (0, size) if step > 0 else (-1, size - 1)
    if not (lo <= start <= hi and lo <= stop <= hi):
        raise ShapeError(f"slice: axis {axis} of size {size}: start {start}, stop {stop}, "
                         f"step {step} are not in slice.indices form (both must lie in "
                         f"[{lo}, {hi}] for a {'positive' if step > 0 else 'negative'} step)")
    count = len(range(start, stop, step))
    if count == 0:
        return 0, 0, 1
    if count == 1:
        return start, start + 1, 1
    last = start + step * (count - 1)
    return start, last + (1 if step > 0 else -1), step


def _slice_normalize(types: list[TensorType], attrs: dict) -> dict:
    x = types[0]
    starts, stops, steps = attrs["starts"], attrs["stops"], attrs["steps"]
    if not len(starts) == len(stops) == len(steps) == x.ndim:
        raise ShapeError(f"slice: starts {list(starts)}, stops {list(stops)} and steps "
                         f"{list(steps)} need one entry per axis of x {x.shape}")
    ranges = [_canonical_range(axis, *args)
              for axis, args in enumerate(zip(x.shape, starts, stops, steps))]
    return {"starts": tuple(r[0] for r in ranges), "stops": tuple(r[1] for r in ranges),
            "steps": tuple(r[2] for r in ranges)}


def _slice_infer(types: list[TensorType], attrs: dict) -> TensorType:
    bounds = zip(attrs["starts"], attrs["stops"], attrs["steps"])
    return types[0].with_shape(tuple(len(range(*b)) for b in bounds))


def _slice_impl(x: np.ndarray, starts, stops, steps) -> np.ndarray:
    # with a negative step, stop -1 means "through index 0", which Python spells None
    index = tuple(slice(start, None if stop < 0 else stop, step)
                  for start, stop, step in zip(starts, stops, steps))
    return x[index].copy()


def _place_strided(g, axis: int, size: int, start: int, step: int):
    """The adjoint of taking range(start, ..., step) (step > 0) from an axis of `size`:
    g's entries go to those positions, zeros elsewhere. Dilation is a reshape that gives
    each entry its own axis of length 1, zero-padded to `step` and flattened back."""
    count = g.shape[axis]
    if step > 1:
        shape = g.shape
        g = g.reshape(shape[:axis + 1] + (1,) + shape[axis + 1:])
        g = _pad_axis(g, axis + 1, 0, step - 1)
        g = g.reshape(shape[:axis] + (count * step,) + shape[axis + 1:])
    # the dilation may overshoot the end by up to step - 1 zeros: a negative pad crops them
    return _pad_axis(g, axis, start, size - start - g.shape[axis])


def _slice_vjp(g, out, inputs, attrs):
    bounds = zip(inputs[0].shape, attrs["starts"], attrs["steps"])
    for axis, (size, start, step) in enumerate(bounds):
        if step < 0:  # the same positions read upwards from the last one taken
            g = _flip_axis(g, axis)
            start, step = start + step * (g.shape[axis] - 1), -step
        g = _place_strided(g, axis, size, start, step)
    return [g]


register(OpDef(
    "slice", MOVEMENT, _slice_infer, _slice_impl,
    attrs=(Attr("starts", "ints"), Attr("stops", "ints"), Attr("steps", "ints")),
    normalize=_slice_normalize, vjp=_slice_vjp,
    doc="range(start, stop, step) along every axis, bounds in slice.indices form."))


# -- pad ---------------------------------------------------------------------------------------
def _pairs(pads: Sequence[int]) -> list[tuple[int, int]]:
    return list(zip(pads[0::2], pads[1::2]))


def _pad_normalize(types: list[TensorType], attrs: dict) -> dict:
    x, pads, mode = types[0], attrs["pads"], attrs["mode"]
    if len(pads) != 2 * x.ndim:
        raise ShapeError(f"pad: pads {list(pads)} need one (lo, hi) pair per axis of x "
                         f"{x.shape} ({2 * x.ndim} values)")
    if mode not in _PAD_IMPLS:
        raise ShapeError(f"pad: mode {mode!r} is not one of {sorted(_PAD_IMPLS)}")
    # only constant reads the fill value: store one value so equal pads have equal attributes
    return {**attrs, "value": attrs["value"] if mode == "constant" else 0.0}


def _pad_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, mode = types[0], attrs["mode"]
    shape = []
    for axis, (size, (lo, hi)) in enumerate(zip(x.shape, _pairs(attrs["pads"]))):
        where = f"axis {axis} of x {x.shape}"
        if min(lo, hi) < -size or size + lo + hi < 0:
            raise ShapeError(f"pad: pads ({lo}, {hi}) crop more than the {size} elements of "
                             f"{where}")
        if mode == "reflect" and max(lo, hi) > size - 1:
            raise ShapeError(f"pad: reflect pads ({lo}, {hi}) must be smaller than the size "
                             f"{size} of {where}")
        if mode == "replicate" and size == 0 and max(lo, hi) > 0:
            raise ShapeError(f"pad: replicate pads ({lo}, {hi}) have no edge to repeat on the "
                             f"empty {where}")
        shape.append(size + lo + hi)
    return x.with_shape(tuple(shape))


def _pad_constant(x: np.ndarray, pairs: list, value: float) -> np.ndarray:
    crop = tuple(slice(max(-lo, 0), size - max(-hi, 0))
                 for size, (lo, hi) in zip(x.shape, pairs))
    widths = [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
    return np.pad(x[crop], widths, mode="constant", constant_values=value)


def _reflect_index(size: int, lo: int, hi: int) -> np.ndarray:
    """Source index of each output position: mirrored at both ends, edges not repeated."""
    i = np.abs(np.arange(-lo, size + hi))
    return np.where(i >= size, 2 * (size - 1) - i, i)


def _replicate_index(size: int, lo: int, hi: int) -> np.ndarray:
    """Source index of each output position: the edge element repeated at both ends."""
    return np.clip(np.arange(-lo, size + hi), 0, max(size - 1, 0))


def _pad_by_index(index_fn):
    """A pad reference that reads each output position through a per-axis index map. The
    map is taken over the whole input and negative pads crop the result (torch's rule for
    reflect and replicate), so one map per axis does both."""
    def impl(x: np.ndarray, pairs: list, value: float) -> np.ndarray:
        if x.ndim == 0:
            return x.copy()
        return x[np.ix_(*[index_fn(size, lo, hi) for size, (lo, hi) in zip(x.shape, pairs)])]
    return impl


_PAD_IMPLS = {"constant": _pad_constant, "reflect": _pad_by_index(_reflect_index),
              "replicate": _pad_by_index(_replicate_index)}


def _pad_impl(x: np.ndarray, pads, mode: str, value: float) -> np.ndarray:
    return _PAD_IMPLS[mode](x, _pairs(pads), value)


def _fold_reflect(g, axis: int, size: int, lo: int, hi: int):
    """Adjoint of reflect padding one axis by lo, hi >= 0: output position lo - k (k = 1..lo)
    read x[k] and position lo + size - 1 + k read x[size - 1 - k], so the flipped borders
    are added back onto x[1 .. lo] and x[size - 1 - hi .. size - 2]."""
    out = _slice_axis(g, axis, lo, lo + size)
    if lo:
        left = _flip_axis(_slice_axis(g, axis, 0, lo), axis)
        out = out + _pad_axis(left, axis, 1, size - 1 - lo)
    if hi:
        right = _flip_axis(_slice_axis(g, axis, lo + size, lo + size + hi), axis)
        out = out + _pad_axis(right, axis, size - 1 - hi, 1)
    return out


def _fold_replicate(g, axis: int, size: int, lo: int, hi: int):
    """Adjoint of replicate padding one axis by lo, hi >= 0: each border sums onto the edge
    element it repeats."""
    out = _slice_axis(g, axis, lo, lo + size)
    if lo:
        left = emit("sum", _slice_axis(g, axis, 0, lo), axes=(axis,), keepdims=True)
        out = out + _pad_axis(left, axis, 0, size - 1)
    if hi:
        right = emit("sum", _slice_axis(g, axis, lo + size, lo + size + hi), axes=(axis,),
                     keepdims=True)
        out = out + _pad_axis(right, axis, size - 1, 0)
    return out


_PAD_FOLDS = {"reflect": _fold_reflect, "replicate": _fold_replicate}


def _pad_vjp(g, out, inputs, attrs):
    pads, mode = attrs["pads"], attrs["mode"]
    if mode == "constant":  # the adjoint of zero-padding is cropping, and the other way round
        return [emit("pad", g, pads=tuple(-p for p in pads))]
    # the index map is a product of per-axis maps, so its adjoint goes one axis at a time:
    # zeros where the forward cropped, then the mode's fold
    for axis, (size, (lo, hi)) in enumerate(zip(inputs[0].shape, _pairs(pads))):
        g = _pad_axis(g, axis, max(-lo, 0), max(-hi, 0))
        g = _PAD_FOLDS[mode](g, axis, size, max(lo, 0), max(hi, 0))
    return [g]


register(OpDef(
    "pad", MOVEMENT, _pad_infer, _pad_impl,
    attrs=(Attr("pads", "ints"), Attr("mode", "str", "constant"), Attr("value", "float", 0.0)),
    normalize=_pad_normalize, vjp=_pad_vjp,
    doc="Pad (lo, hi) elements per axis: constant fills `value`, reflect mirrors without "
        "repeating the edge, replicate repeats the edge element; negative pads crop."))


# -- concat ------------------------------------------------------------------------------------
def _concat_normalize(types: list[TensorType], attrs: dict) -> dict:
    _require_rank("concat", types[0], 1, "each input")
    return {**attrs, "axis": _axis("concat", attrs["axis"], types[0].shape, "the inputs")}


def _concat_infer(types: list[TensorType], attrs: dict) -> TensorType:
    axis, first = attrs["axis"], types[0]
    same_dtype(types, "concat")

    def matches(t: TensorType) -> bool:
        return t.ndim == first.ndim and all(
            a == b for d, (a, b) in enumerate(zip(t.shape, first.shape)) if d != axis)

    if not all(matches(t) for t in types):
        shapes = ", ".join(str(t.shape) for t in types)
        raise ShapeError(f"concat along axis {axis}: shapes {shapes} must have the same rank "
                         f"and agree on every other axis")
    total = sum(t.shape[axis] for t in types)
    return first.with_shape(first.shape[:axis] + (total,) + first.shape[axis + 1:])


def _concat_impl(*xs: np.ndarray, axis: int) -> np.ndarray:
    return np.concatenate(xs, axis=axis)


def _concat_vjp(g, out, inputs, attrs):
    axis, grads, start = attrs["axis"], [], 0
    for x in inputs:  # each input gets back its own stretch of the axis
        grads.append(_slice_axis(g, axis, start, start + x.shape[axis]))
        start += x.shape[axis]
    return grads


register(OpDef(
    "concat", MOVEMENT, _concat_infer, _concat_impl, attrs=(Attr("axis", "int"),),
    arity=(1, None), normalize=_concat_normalize, vjp=_concat_vjp,
    doc="Join the inputs along `axis`; they agree on every other axis."))


# -- flip --------------------------------------------------------------------------------------
def _flip_normalize(types: list[TensorType], attrs: dict) -> dict:
    return {**attrs, "axes": _axes("flip", attrs["axes"], types[0].shape)}


def _flip_impl(x: np.ndarray, axes) -> np.ndarray:
    return np.flip(x, axes).copy()


def _flip_vjp(g, out, inputs, attrs):
    return [emit("flip", g, axes=attrs["axes"])]


register(OpDef(
    "flip", MOVEMENT, lambda types, attrs: types[0], _flip_impl, attrs=(Attr("axes", "ints"),),
    normalize=_flip_normalize, vjp=_flip_vjp,
    doc="Reverse the order of elements along each of `axes`."))


# -- upsample_nearest --------------------------------------------------------------------------
def _upsample_normalize(types: list[TensorType], attrs: dict) -> dict:
    x, scale = types[0], attrs["scale"]
    _require_rank("upsample_nearest", x, 3, "x (N, C, *spatial)")
    nsp = x.ndim - 2
    scale = scale * nsp if len(scale) == 1 else scale
    if len(scale) != nsp or any(s < 1 for s in scale):
        raise ShapeError(f"upsample_nearest: scale {list(attrs['scale'])} needs 1 or {nsp} "
                         f"positive ints for x {x.shape}")
    return {**attrs, "scale": tuple(scale)}


def _upsample_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    spatial = tuple(d * s for d, s in zip(x.shape[2:], attrs["scale"]))
    return x.with_shape(x.shape[:2] + spatial)


def _upsample_impl(x: np.ndarray, scale) -> np.ndarray:
    for axis, s in enumerate(scale, start=2):
        x = np.repeat(x, s, axis=axis)  # a new array each time (rank >= 3)
    return x


def _upsample_vjp(g, out, inputs, attrs):
    """Each input element fills a block of scale[0] x scale[1] x ... outputs: split every
    spatial axis into (size, scale) and sum over the scale axes."""
    x, scale = inputs[0], attrs["scale"]
    blocks = tuple(d for size, s in zip(x.shape[2:], scale) for d in (size, s))
    g = g.reshape(x.shape[:2] + blocks)
    return [emit("sum", g, axes=tuple(range(3, g.ndim, 2)), keepdims=False)]


register(OpDef(
    "upsample_nearest", MOVEMENT, _upsample_infer, _upsample_impl,
    attrs=(Attr("scale", "ints"),), normalize=_upsample_normalize, vjp=_upsample_vjp,
    doc="Repeat each element `scale` times along each spatial axis of x (N, C, *spatial) "
        "(torch.nn.functional.interpolate, mode='nearest', integer scale_factor)."))
