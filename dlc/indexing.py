"""Python indexing of symbolic tensors, `x[index]`, with NumPy's rules.

Supported: ints (negative count from the end), slices (any step, negative too), None,
Ellipsis, and at most one integer index array: an int Tensor, a numpy int array or a list of
ints (those become const inputs). It lowers to one `slice` (ints and slices), one `take`
(the index array), and a `permute`/`reshape` to place the axes as NumPy does:

- an int removes its axis; None inserts a size-1 axis;
- the index array's dims replace its axis; when ints are present too they count as advanced
  indices, and if the advanced indices are not side by side (a slice or None between them)
  the index array's dims move to the front (NumPy's and PyTorch's rule).

Boolean masks are refused: the result's shape would depend on the data. Out-of-range ints
are refused at trace time; out-of-range entries of an index array fail when the graph runs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from dlc.errors import TraceError
from dlc.ir import builder as _b

if TYPE_CHECKING:
    from dlc.tensor import Tensor


def getitem(x: "Tensor", index: Any) -> "Tensor":
    """x[index] for a symbolic tensor x (see the module docstring)."""
    items = _expand_ellipsis(x, [_item(i) for i in _as_tuple(index)])
    per_axis = [i for i in items if i is not None]      # one entry per axis of x
    arrays = [(axis, i) for axis, i in enumerate(per_axis) if _is_array(i)]
    if len(arrays) > 1:
        _fail(f"indexing {x.type} with {len(arrays)} index arrays: only one per indexing "
              f"expression is supported (index the axes one after another)")
    out = _slice(x, [_bounds(i, size, axis)
                     for axis, (i, size) in enumerate(zip(per_axis, x.shape))])
    for axis, array in arrays:
        out = _b.emit("take", out, array, axis=axis)
    return _place_axes(out, items)


# -- parsing the index -------------------------------------------------------------------------
def _as_tuple(index: Any) -> tuple:
    return index if isinstance(index, tuple) else (index,)


def _fail(message: str) -> NoReturn:
    raise TraceError(f"{message} (at {_b.user_loc()})")


def _item(item: Any) -> Any:
    """One index entry as None, Ellipsis, an int, a slice or an int Tensor."""
    from dlc.tensor import Tensor, to_tensor
    if item is None or item is Ellipsis or isinstance(item, slice):
        return item
    if isinstance(item, (bool, np.bool_)):
        _fail(f"a boolean index ({item}) is not supported; use None to add an axis")
    if isinstance(item, (int, np.integer)):
        return int(item)
    if isinstance(item, Tensor):
        return _check_array_dtype(item, item.dtype)
    if isinstance(item, list) and any(isinstance(i, Tensor) for i in item):
        _fail("a list index must hold Python ints; stack Tensors into one index Tensor")
    if isinstance(item, (list, np.ndarray)):
        array = np.asarray(item)
        if array.dtype.kind in "iu" and array.ndim == 0:
            return int(array)
        _check_array_dtype(array, array.dtype.name)
        return to_tensor(array.astype(np.int64))
    _fail(f"unsupported index {item!r} of type {type(item).__name__}")


def _check_array_dtype(array: Any, dtype: str) -> Any:
    """The index array itself, if it holds integers; masks and floats are refused."""
    if dtype == "bool":
        _fail("boolean-mask indexing gives a shape that depends on the data, which a static "
              "graph cannot have; use dlc.where(mask, x, other) instead")
    if not np.issubdtype(np.dtype(dtype), np.integer):
        _fail(f"an index array must hold integers, got dtype {dtype}")
    return array


def _is_array(item: Any) -> bool:
    """Whether an (expanded) entry is the index array."""
    return not (item is None or isinstance(item, (int, slice)))


def _expand_ellipsis(x: "Tensor", items: list) -> list:
    """Replace Ellipsis (or pad the end) with full slices so every axis has one entry."""
    # identity tests only: `in` and `==` would compare Tensors elementwise
    dots = [k for k, i in enumerate(items) if i is Ellipsis]
    if len(dots) > 1:
        _fail("an index can have only one Ellipsis (...)")
    used = sum(1 for i in items if i is not None and i is not Ellipsis)
    if used > x.ndim:
        _fail(f"too many indices ({used}) for a tensor of shape {x.shape}")
    fill = [slice(None)] * (x.ndim - used)
    if not dots:
        return items + fill
    return items[:dots[0]] + fill + items[dots[0] + 1:]


def _bounds(item, size: int, axis: int) -> tuple[int, int, int]:
    """(start, stop, step) in slice.indices form for the entry indexing one axis."""
    if isinstance(item, int):
        i = item + size if item < 0 else item
        if not 0 <= i < size:
            _fail(f"index {item} is out of range for axis {axis} of size {size} "
                  f"(valid: {-size}..{size - 1})")
        return i, i + 1, 1
    if isinstance(item, slice):
        try:
            return item.indices(size)
        except ValueError as e:  # a zero step
            _fail(f"bad slice {item} for axis {axis}: {e}")
    return 0, size, 1  # an index array takes from the whole axis


# -- lowering ----------------------------------------------------------------------------------
def _slice(x: "Tensor", bounds: list[tuple[int, int, int]]) -> "Tensor":
    if all(b == (0, size, 1) for b, size in zip(bounds, x.shape)):
        return x
    starts, stops, steps = zip(*bounds)
    return _b.emit("slice", x, starts=starts, stops=stops, steps=steps)


def _advanced_side_by_side(items: list) -> bool:
    """Whether the ints and the index array sit next to each other in the index."""
    where = [k for k, i in enumerate(items) if i is not None and not isinstance(i, slice)]
    return where == list(range(where[0], where[-1] + 1))


def _width(item) -> int:
    """How many axes of the sliced-and-taken tensor an entry owns."""
    if item is None:
        return 0
    return item.ndim if _is_array(item) else 1


def _place_axes(out: "Tensor", items: list) -> "Tensor":
    """Drop the int axes, insert the None axes and, under NumPy's rule, move the index
    array's dims to the front. `out` holds, in index order, one axis per int or slice and
    the index array's dims in place of its axis."""
    owned, pos = [], 0      # per entry: the axes of `out` it owns
    for item in items:
        owned.append(list(range(pos, pos + _width(item))))
        pos += _width(item)
    sizes = [[1] if item is None else [] if isinstance(item, int) else
             [out.shape[a] for a in axes] for item, axes in zip(items, owned)]
    order = list(range(len(items)))
    array = next((k for k, i in enumerate(items) if _is_array(i)), None)
    if array is not None and not _advanced_side_by_side(items):
        order = [array] + [k for k in order if k != array]
        out = out.permute([a for k in order for a in owned[k]])
    # int axes have size 1, so dropping them (and adding None axes) is a reshape
    return out.reshape(tuple(d for k in order for d in sizes[k]))
