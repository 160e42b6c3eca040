"""Tensor functions under torch's module-level names (cat, stack, split, where, zeros, sum, clamp, ...)."""
from __future__ import annotations

import builtins

import numpy as np

from dlc.ir.builder import emit
from dlc.ir.types import canonical_dtype, promote
from dlc.tensor import Tensor, binary_operands, to_tensor
from dlc.tensor import matmul as _matmul
from dlc.tensor import where as _where
from frontend.functional._common import _canon_axis, _dim, _fail, _t


# -- tensor functions (torch's module-level names) ---------------------------------------------
def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _same_dtype(tensors, fn: str) -> list[Tensor]:
    """The tensors promoted to one dtype, as torch.cat/stack promote."""
    ts = [_t(x) for x in tensors]
    if not ts:
        raise _fail(fn, "needs at least one tensor")
    dtype = ts[0].dtype
    for t in ts[1:]:
        dtype = promote(dtype, t.dtype)
    return [t.cast(dtype) for t in ts]


def cat(tensors, dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Concatenate along an existing axis (dtypes promoted as torch does)."""
    ts = _same_dtype(list(tensors), "cat")
    d = _canon_axis(_dim(dim if axis is None else None, axis, "cat"), ts[0].ndim, "cat")
    return ts[0] if len(ts) == 1 else emit("concat", *ts, axis=d)


concat = concatenate = cat


def stack(tensors, dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Join same-shape tensors along a new axis."""
    ts = _same_dtype(list(tensors), "stack")
    d = _dim(dim if axis is None else None, axis, "stack")
    d = _canon_axis(d, ts[0].ndim + 1, "stack")
    return cat([t.unsqueeze(d) for t in ts], d)


def _narrow(x: Tensor, axis: int, start: int, stop: int) -> Tensor:
    index = (slice(None),) * axis + (slice(start, stop),)
    return x[index]


def split(tensor, split_size_or_sections, dim: int = 0, *,
          axis: int | None = None) -> tuple[Tensor, ...]:
    """Pieces of `split_size` along `dim` (the last may be smaller), or of the given sizes."""
    x = _t(tensor)
    d = _canon_axis(_dim(dim if axis is None else None, axis, "split"), x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size <= 0:
            raise _fail("split", f"split_size must be positive, got {size}")
        sizes = [builtins.min(size, n - s) for s in range(0, n, size)] or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != n or builtins.min(sizes, default=0) < 0:
            raise _fail("split", f"sections {sizes} must be non-negative and sum to the "
                                 f"size {n} of dim {d}")
    starts = np.cumsum([0] + sizes[:-1])
    return tuple(_narrow(x, d, int(s), int(s) + size) for s, size in zip(starts, sizes))


def chunk(input, chunks: int, dim: int = 0, *, axis: int | None = None) -> tuple[Tensor, ...]:
    """Split into `chunks` pieces of ceil(size / chunks) (possibly fewer pieces, as torch)."""
    x = _t(input)
    if chunks <= 0:
        raise _fail("chunk", f"chunks must be positive, got {chunks}")
    d = _canon_axis(_dim(dim if axis is None else None, axis, "chunk"), x.ndim, "chunk")
    return split(x, builtins.max(1, -(-x.shape[d] // chunks)), d)


def unbind(input, dim: int = 0, *, axis: int | None = None) -> tuple[Tensor, ...]:
    """The slices along `dim`, with that axis removed."""
    x = _t(input)
    d = _canon_axis(_dim(dim if axis is None else None, axis, "unbind"), x.ndim, "unbind")
    return tuple(x[(slice(None),) * d + (i,)] for i in range(x.shape[d]))


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    return _t(input).flatten(start_dim, end_dim)


def reshape(input, shape) -> Tensor:
    return _t(input).reshape(shape)


def transpose(input, dim0: int, dim1: int) -> Tensor:
    return _t(input).transpose(dim0, dim1)


def permute(input, dims) -> Tensor:
    return _t(input).permute(dims)


def squeeze(input, dim=None, *, axis=None) -> Tensor:
    return _t(input).squeeze(dim, axis)


def unsqueeze(input, dim: int) -> Tensor:
    return _t(input).unsqueeze(dim)


def where(condition, input, other) -> Tensor:
    """input where condition, else other (Python numbers and arrays accepted)."""
    return _where(condition, input, other)


def _size_args(size) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def _fill_dtype(value, dtype) -> str:
    """torch's default dtype for a fill value: bool, int64 or float32."""
    if dtype is not None:
        return canonical_dtype(dtype)
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    return "int64" if isinstance(value, (int, np.integer)) else "float32"


def full(size, fill_value, *, dtype=None) -> Tensor:
    return emit("full", shape=tuple(int(s) for s in size), value=float(fill_value),
                dtype=_fill_dtype(fill_value, dtype))


def zeros(*size, dtype=None) -> Tensor:
    return full(_size_args(size), 0.0, dtype=dtype)


def ones(*size, dtype=None) -> Tensor:
    return full(_size_args(size), 1.0, dtype=dtype)


def full_like(input, fill_value, *, dtype=None) -> Tensor:
    x = _t(input)
    return full(x.shape, fill_value, dtype=dtype or x.dtype)


def zeros_like(input, *, dtype=None) -> Tensor:
    return full_like(input, 0.0, dtype=dtype)


def ones_like(input, *, dtype=None) -> Tensor:
    return full_like(input, 1.0, dtype=dtype)


def arange(start, end=None, step=1, *, dtype=None) -> Tensor:
    """[start, end) by step; int64 for integer arguments, float32 otherwise (as torch)."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = "int64" if ints else "float32"
    return emit("arange", start=start, stop=end, step=step, dtype=canonical_dtype(dtype))


def sum(input, dim=None, keepdim: bool = False, *, dtype=None, axis=None,
        keepdims: bool = False) -> Tensor:
    return _t(input).sum(dim, keepdim, axis=axis, keepdims=keepdims, dtype=dtype)


def mean(input, dim=None, keepdim: bool = False, *, dtype=None, axis=None,
         keepdims: bool = False) -> Tensor:
    x = _t(input) if dtype is None else _t(input).cast(dtype)
    return x.mean(dim, keepdim, axis=axis, keepdims=keepdims)


def max(input, dim=None, keepdim: bool = False, *, axis=None, keepdims: bool = False):
    """The maximum over `dim` (values only, like Tensor.max), or elementwise with a tensor."""
    return _t(input).max(dim, keepdim, axis=axis, keepdims=keepdims)


def min(input, dim=None, keepdim: bool = False, *, axis=None, keepdims: bool = False):
    """The minimum over `dim` (values only, like Tensor.min), or elementwise with a tensor."""
    return _t(input).min(dim, keepdim, axis=axis, keepdims=keepdims)


def var(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None,
        axis=None, keepdims: bool = False, ddof=None) -> Tensor:
    return _t(input).var(dim, unbiased, keepdim, axis=axis, keepdims=keepdims,
                         correction=correction, ddof=ddof)


def std(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None,
        axis=None, keepdims: bool = False, ddof=None) -> Tensor:
    return var(input, dim, unbiased, keepdim, correction=correction, axis=axis,
               keepdims=keepdims, ddof=ddof).sqrt()


def exp(input) -> Tensor:
    return emit("exp", _t(input))


def log(input) -> Tensor:
    return emit("log", _t(input))


def sqrt(input) -> Tensor:
    return emit("sqrt", _t(input))


def abs(input) -> Tensor:
    return emit("abs", _t(input))


def clamp(input, min=None, max=None) -> Tensor:
    return _t(input).clamp(min, max)


clip = clamp


def maximum(input, other) -> Tensor:
    a, b = binary_operands(input, other)
    return emit("maximum", a, b)


def minimum(input, other) -> Tensor:
    a, b = binary_operands(input, other)
    return emit("minimum", a, b)


def matmul(input, other) -> Tensor:
    """NumPy/torch matmul, 1-D operands and batch broadcasting included."""
    return _matmul(_t(input), _t(other))


mm = bmm = matmul


def gather(input, dim: int, index) -> Tensor:
    """torch.gather: out[..i..] = input[..index[..i..] along dim..]; index has input's rank."""
    x, idx = _t(input), to_tensor(index)
    return emit("gather", x, idx, axis=_canon_axis(dim, x.ndim, "gather"))


def take_along_dim(input, indices, dim: int) -> Tensor:
    """torch.take_along_dim with an explicit dim (numpy.take_along_axis)."""
    x, idx = _t(input), to_tensor(indices)
    axis = _canon_axis(dim, x.ndim, "take_along_dim")
    if idx.ndim != x.ndim:
        raise _fail("take_along_dim", f"indices {idx.shape} must have the rank of input "
                                      f"{x.shape}")
    shape = tuple(i if d == axis else builtins.max(i, s)
                  for d, (i, s) in enumerate(zip(idx.shape, x.shape)))
    x = x.broadcast_to(tuple(s if d == axis else shape[d] for d, s in enumerate(x.shape)))
    return emit("gather", x, idx.broadcast_to(shape), axis=axis)


def index_select(input, dim: int, index) -> Tensor:
    """torch.index_select: whole slices along dim picked by a 1-D index."""
    x, idx = _t(input), to_tensor(index)
    if idx.ndim != 1:
        raise _fail("index_select", f"index must be 1-D, got {idx.shape}")
    return emit("take", x, idx, axis=_canon_axis(dim, x.ndim, "index_select"))


def scatter_add(input, dim: int, index, src) -> Tensor:
    """torch.scatter_add (out of place): input with src added at index along dim."""
    x, idx, s = _t(input), to_tensor(index), _t(src)
    return emit("scatter_add", x, idx, s, axis=_canon_axis(dim, x.ndim, "scatter_add"))
