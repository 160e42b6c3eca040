"""Python indexing on symbolic tensors: ints, slices (steps, negatives), None, Ellipsis, and
one integer-tensor index (lowered to `take`)."""
from __future__ import annotations

from dlc.errors import TraceError
from dlc.ir import builder as _b


def getitem(x, index):
    from dlc.tensor import Tensor
    if not isinstance(index, tuple):
        index = (index,)
    if sum(i is Ellipsis for i in index) > 1:
        raise TraceError("an index can have only one Ellipsis")
    consumed = sum(1 for i in index if i is not None and i is not Ellipsis)
    if consumed > x.ndim:
        raise TraceError(f"too many indices ({consumed}) for a tensor of shape {x.shape}")
    if Ellipsis in index:
        k = index.index(Ellipsis)
        index = index[:k] + (slice(None),) * (x.ndim - consumed) + index[k + 1:]
    else:
        index = index + (slice(None),) * (x.ndim - consumed)

    starts, stops, steps, out_shape, drop, tensor_axes = [], [], [], [], set(), []
    axis = 0
    for item in index:
        if item is None:
            continue
        dim = x.shape[axis]
        if isinstance(item, Tensor):
            if item.dtype == "bool":
                raise TraceError("boolean-mask indexing has a data-dependent shape; "
                                 "use dlc.where")
            tensor_axes.append((axis, item))
            item = slice(None)
        if isinstance(item, slice):
            start, stop, step = item.indices(dim)
            starts.append(start); stops.append(stop); steps.append(step)
        elif isinstance(item, int):
            i = item + dim if item < 0 else item
            if not 0 <= i < dim:
                raise TraceError(f"index {item} is out of range for axis {axis} of size {dim}")
            starts.append(i); stops.append(i + 1); steps.append(1)
            drop.add(axis)
        else:
            raise TraceError(f"unsupported index {item!r} of type {type(item).__name__}")
        axis += 1

    out = x
    full = all(st == 0 and sp == 1 and so == d
               for st, so, sp, d in zip(starts, stops, steps, x.shape))
    if not full:
        out = _b.emit("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
    if len(tensor_axes) > 1:
        raise TraceError("only one tensor index per indexing expression is supported")
    # integer-tensor index: take along that axis (inserts the index's dims there)
    for ax, idx in tensor_axes:
        out = _b.emit("take", out, idx, axis=ax)
    shift = {ax: idx.ndim - 1 for ax, idx in tensor_axes}
    # int-indexed axes occupy one position in `out` each
    return out.reshape(_final_shape(out, index, drop, shift))


def _final_shape(out, index, drop, shift):
    shape, pos, axis = [], 0, 0
    for item in index:
        if item is None:
            shape.append(1)
            continue
        width = shift.get(axis, 0) + 1
        if axis not in drop:
            shape.extend(out.shape[pos:pos + width])
        pos += width
        axis += 1
    return tuple(shape)
