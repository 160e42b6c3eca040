"""Cases for dlc/ops/movement.py, each against torch."""
import numpy as np
import torch
import torch.nn.functional as F

from tests.ops.harness import case, fixed, randint, randn


# -- torch oracles -----------------------------------------------------------------------------
def torch_slice(x, starts, stops, steps, python):
    """Select along each axis the positions Python's own list slicing picks."""
    for axis, s in enumerate(python):
        picked = list(range(x.shape[axis]))[s]
        x = torch.index_select(x, axis, torch.tensor(picked, dtype=torch.long))
    return x


def slice_case(shape, *python: slice):
    """A slice case written as Python slices, one per axis; attrs in slice.indices form."""
    bounds = [s.indices(d) for s, d in zip(python, shape)]
    attrs = {"starts": [b[0] for b in bounds], "stops": [b[1] for b in bounds],
             "steps": [b[2] for b in bounds]}
    case("slice", [randn(*shape)], lambda x, **a: torch_slice(x, **a, python=python), attrs)


def torch_pad(x, pads, mode="constant", value=0.0):
    """F.pad takes (lo, hi) pairs from the last axis backwards; reflect and replicate pad no
    leading (batch) axes, so leading zero pairs are left out."""
    pairs = list(zip(pads[0::2], pads[1::2]))
    while mode != "constant" and pairs and pairs[0] == (0, 0):
        pairs.pop(0)
    flat = [p for pair in reversed(pairs) for p in pair]
    if mode != "constant":
        return F.pad(x, flat, mode=mode)
    return F.pad(x, flat, mode="constant", value=value)


def torch_take(x, idx, axis):
    """One tensor index at `axis`: x.shape[:axis] + idx.shape + x.shape[axis+1:]."""
    return x[(slice(None),) * (axis % x.dim()) + (idx,)]


def torch_scatter_add(x, idx, src, axis):
    """torch.scatter_add reads only src's leading idx.shape block; its backward refuses a
    larger src, so the oracle hands it that block."""
    return torch.scatter_add(x, axis, idx, src[tuple(slice(0, k) for k in idx.shape)])


def randn_0d(rng, dtype):
    """A 0-d array (harness.randn() gives a numpy scalar, which the finite differences of
    test_vjp_table cannot perturb in place)."""
    return np.asarray(rng.standard_normal(), dtype=dtype)


def torch_upsample(x, scale):
    return F.interpolate(x, scale_factor=tuple(float(s) for s in scale), mode="nearest")


# -- reshape, permute, broadcast_to ------------------------------------------------------------
case("reshape", [randn(2, 3, 4)], lambda x, shape: x.reshape(shape), {"shape": (4, 6)})
case("reshape", [randn(2, 3, 4)], lambda x, shape: x.reshape(shape), {"shape": (6, 1, 4)})
case("reshape", [randn(1, 1)], lambda x, shape: x.reshape(shape), {"shape": ()})
case("permute", [randn(2, 3, 4)], lambda x, perm: x.permute(perm), {"perm": (2, 0, 1)})
case("permute", [randn(2, 3, 4, 5)], lambda x, perm: x.permute(perm), {"perm": (-1, 1, 0, 2)})
case("broadcast_to", [randn(3, 1)], lambda x, shape: torch.broadcast_to(x, shape),
     {"shape": (2, 3, 4)})
case("broadcast_to", [randn(1, 4)], lambda x, shape: torch.broadcast_to(x, shape),
     {"shape": (3, 4)})
case("broadcast_to", [randn_0d], lambda x, shape: torch.broadcast_to(x, shape),
     {"shape": (2, 2)})
case("broadcast_to", [randn(2, 1, 3, 1)], lambda x, shape: torch.broadcast_to(x, shape),
     {"shape": (2, 2, 4, 3, 2)})

# -- slice: steps, negative steps (through index 0), negative and clamped starts, empty -----
slice_case((6, 5, 4), slice(1, None, 2), slice(None, None, -1), slice(-3, None))
slice_case((7, 5), slice(None, None, -2), slice(4, None, -3))
slice_case((6, 5), slice(-2, 0, -1), slice(-9, 4, 3))
slice_case((5, 4), slice(3, 1), slice(-1, -5, -2))
slice_case((8,), slice(-100, 100, 3))
slice_case((3, 9, 2), slice(None, None, -2), slice(1, 8, 4), slice(-1, None, -1))

# -- pad: uneven pads, a cropping (negative) pad, every mode ----------------------------------
case("pad", [randn(3, 4, 5)], torch_pad, {"pads": (1, 2, 0, -1, -2, 3), "value": 0.5})
case("pad", [randn(2, 6)], torch_pad, {"pads": (-1, 0, 3, 1)})
case("pad", [randn(2, 3, 5, 6)], torch_pad,
     {"pads": (0, 0, 0, 0, 2, 1, -1, 3), "mode": "reflect"})
case("pad", [randn(2, 3, 5)], torch_pad, {"pads": (0, 0, 0, 0, 3, -2), "mode": "reflect"})
case("pad", [randn(2, 4, 6)], torch_pad, {"pads": (0, 0, -1, 3, 0, 5), "mode": "reflect"})
case("pad", [randn(2, 3, 4, 5)], torch_pad,
     {"pads": (0, 0, 0, 0, 2, 3, 1, 4), "mode": "replicate"})
case("pad", [randn(2, 3, 5)], torch_pad, {"pads": (0, 0, 0, 0, -2, 3), "mode": "replicate"})
case("pad", [randn(1, 2, 4, 3)], torch_pad,
     {"pads": (0, 0, 0, 0, 3, -1, -1, 2), "mode": "replicate"})

# -- concat, flip ------------------------------------------------------------------------------
case("concat", [randn(2, 3), randn(2, 1), randn(2, 4)],
     lambda *xs, axis: torch.cat(xs, dim=axis), {"axis": 1})
case("concat", [randn(1, 3, 2), randn(4, 3, 2), randn(2, 3, 2)],
     lambda *xs, axis: torch.cat(xs, dim=axis), {"axis": 0})
case("concat", [randn(2, 3, 1), randn(2, 3, 2), randn(2, 3, 3)],
     lambda *xs, axis: torch.cat(xs, dim=axis), {"axis": -1})
case("concat", [randn(2, 3, 4), randn(2, 1, 4), randn(2, 2, 4)],
     lambda *xs, axis: torch.cat(xs, dim=axis), {"axis": 1})
case("flip", [randn(2, 3, 4)], lambda x, axes: torch.flip(x, axes), {"axes": (0, 2)})
case("flip", [randn(2, 3, 4)], lambda x, axes: torch.flip(x, axes), {"axes": (-1, 1, 0)})
case("flip", [randn(5, 3)], lambda x, axes: torch.flip(x, axes), {"axes": (-2,)})

# -- take: axis 0 and 1 with a 2-D index; negative indices count from the end ------------------
case("take", [randn(4, 5), randint(0, 4, 2, 3)], torch_take, {"axis": 0})
case("take", [randn(3, 5, 2), randint(-5, 5, 3, 2)], torch_take, {"axis": 1})
case("take", [randn(3, 5), randint(0, 5, 4)], torch_take, {"axis": -1})
# a 0-d index drops the axis; the harness hands torch 0-d arrays as 1-d, hence the reshape
case("take", [randn(6, 2), randint(0, 6)],
     lambda x, idx, axis: torch_take(x, idx.reshape(()), axis), {"axis": 0})
# repeated indices (one also written negatively): their gradients accumulate
case("take", [randn(2, 4, 3), fixed([[1, 3, 1], [-3, 0, 3]])], torch_take, {"axis": 1})

# -- gather: several axes; idx may be smaller than x off the axis and longer along it ---------
case("gather", [randn(3, 4, 5), randint(0, 3, 2, 4, 5)],
     lambda x, idx, axis: torch.gather(x, axis, idx), {"axis": 0})
case("gather", [randn(3, 4, 5), randint(0, 4, 3, 7, 4)],
     lambda x, idx, axis: torch.gather(x, axis, idx), {"axis": 1})
case("gather", [randn(3, 4, 5), randint(0, 5, 2, 3, 6)],
     lambda x, idx, axis: torch.gather(x, axis, idx), {"axis": -1})
case("gather", [randn(3, 4), fixed([[2, 2, 0, 2], [1, 2, 2, 1], [0, 0, 0, 0]])],
     lambda x, idx, axis: torch.gather(x, axis, idx), {"axis": 0})

# -- scatter_add: repeated indices accumulate; src may be larger than idx ----------------------
case("scatter_add", [randn(4, 5), randint(0, 4, 6, 3), randn(7, 3)], torch_scatter_add,
     {"axis": 0})
case("scatter_add", [randn(2, 3, 4), randint(0, 4, 2, 2, 9), randn(2, 3, 9)],
     torch_scatter_add, {"axis": -1})

# -- upsample_nearest: 1-D and 2-D -------------------------------------------------------------
case("upsample_nearest", [randn(2, 3, 5)], torch_upsample, {"scale": (3,)})
case("upsample_nearest", [randn(1, 2, 3, 4)], torch_upsample, {"scale": (2, 3)})
case("upsample_nearest", [randn(2, 1, 2, 3)], lambda x, scale: torch_upsample(x, [scale] * 2),
     {"scale": 2})
