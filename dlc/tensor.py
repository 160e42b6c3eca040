"""Symbolic tensors: what traced code, VJP rules and passes compute with.

A Tensor wraps an IR Value; its operators and methods emit nodes into the current Builder.
Methods accept PyTorch's keywords (dim, keepdim) and NumPy's (axis, keepdims) alike.
"""
from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as np

from dlc.errors import ShapeError, TensorTypeError, TraceError
from dlc.ir import builder as _b
from dlc.ir.graph import Value
from dlc.ir.types import TensorType, canonical_dtype, is_float, promote


class Tensor:
    """A symbolic tensor in the graph being built."""

    __slots__ = ("value",)
    __array_priority__ = 1000  # so `ndarray * Tensor` defers to Tensor.__rmul__

    def __init__(self, value: Value):
        self.value = value

    # -- type ------------------------------------------------------------------------------
    @property
    def type(self) -> TensorType:
        return self.value.type

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.type.shape

    @property
    def dtype(self) -> str:
        return self.value.type.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return self.ndim

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def numel(self) -> int:
        return self.type.size

    def __repr__(self) -> str:
        return f"Tensor({self.type})"

    def __len__(self) -> int:
        if not self.shape:
            raise TensorTypeError(f"len() of a 0-d tensor{_at()}")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # -- data-dependent Python is an error ---------------------------------------------------
    def _no_concrete(self, what: str):
        loc = _b.user_loc()
        raise TraceError(f"{what} of a traced tensor {self.type} at {loc}: the value is not "
                         f"known while tracing. Use dlc.where(...) instead of a Python branch "
                         f"on tensor data.")

    def __bool__(self):
        self._no_concrete("data-dependent Python branch (bool())")

    def __float__(self):
        self._no_concrete("float()")

    def __int__(self):
        self._no_concrete("int()")

    def __index__(self):
        self._no_concrete("use as an index")

    __hash__ = object.__hash__

    # -- elementwise operators ---------------------------------------------------------------
    def _binary(self, op: str, other, reverse: bool = False) -> "Tensor":
        a, b = binary_operands(self, other)
        return _b.emit(op, b, a) if reverse else _b.emit(op, a, b)

    def __add__(self, o): return self._binary("add", o)
    def __radd__(self, o): return self._binary("add", o, True)
    def __sub__(self, o): return self._binary("sub", o)
    def __rsub__(self, o): return self._binary("sub", o, True)
    def __mul__(self, o): return self._binary("mul", o)
    def __rmul__(self, o): return self._binary("mul", o, True)
    def __truediv__(self, o): return self._binary("div", o)
    def __rtruediv__(self, o): return self._binary("div", o, True)
    def __floordiv__(self, o): return self._binary("floor_div", o)
    def __rfloordiv__(self, o): return self._binary("floor_div", o, True)
    def __mod__(self, o): return self._binary("mod", o)
    def __rmod__(self, o): return self._binary("mod", o, True)
    def __pow__(self, o): return self._binary("pow", o)
    def __rpow__(self, o): return self._binary("pow", o, True)
    def __lt__(self, o): return self._binary("lt", o)
    def __le__(self, o): return self._binary("le", o)
    def __gt__(self, o): return self._binary("gt", o)
    def __ge__(self, o): return self._binary("ge", o)
    def __eq__(self, o): return self._binary("eq", o)  # type: ignore[override]
    def __ne__(self, o): return self._binary("ne", o)  # type: ignore[override]
    def __and__(self, o): return self._binary("logical_and", o)
    def __or__(self, o): return self._binary("logical_or", o)
    def __xor__(self, o): return self._binary("logical_xor", o)
    def __neg__(self): return _b.emit("neg", self)
    def __pos__(self): return self
    def __abs__(self): return _b.emit("abs", self)
    def __invert__(self): return _b.emit("logical_not", self)

    def __matmul__(self, o): return matmul(self, to_tensor(o, self.dtype))
    def __rmatmul__(self, o): return matmul(to_tensor(o, self.dtype), self)

    def maximum(self, o): return self._binary("maximum", o)
    def minimum(self, o): return self._binary("minimum", o)

    def clamp(self, min=None, max=None) -> "Tensor":
        out = self
        if min is not None:
            out = out.maximum(min)
        if max is not None:
            out = out.minimum(max)
        return out

    clip = clamp

    def detach(self) -> "Tensor":
        """The same values, through which autodiff passes no gradient (stop_gradient)."""
        return _b.emit("stop_gradient", self)

    def cast(self, dtype) -> "Tensor":
        dtype = canonical_dtype(dtype)
        return self if dtype == self.dtype else _b.emit("cast", self, dtype=dtype)

    astype = cast
    to = cast

    def float(self) -> "Tensor":
        return self.cast("float32")

    def double(self) -> "Tensor":
        return self.cast("float64")

    def long(self) -> "Tensor":
        return self.cast("int64")

    def int(self) -> "Tensor":
        return self.cast("int32")

    def bool(self) -> "Tensor":
        return self.cast("bool")

    # -- movement ----------------------------------------------------------------------------
    def reshape(self, *shape) -> "Tensor":
        shape = resolve_shape(_flat_args(shape), self.type.size, self.shape)
        return self if shape == self.shape else _b.emit("reshape", self, shape=shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        if self.ndim == 0:
            return self.reshape(1)
        s, e = _dim(start_dim, self.ndim), _dim(end_dim, self.ndim)
        if s > e:
            raise TraceError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                             f"for a tensor of rank {self.ndim}")
        mid = int(np.prod(self.shape[s:e + 1], dtype=np.int64))
        return self.reshape(self.shape[:s] + (mid,) + self.shape[e + 1:])

    def permute(self, *dims) -> "Tensor":
        perm = tuple(_dim(d, self.ndim) for d in _flat_args(dims))
        if perm == tuple(range(self.ndim)):
            return self
        return _b.emit("permute", self, perm=perm)

    def transpose(self, dim0: int = -2, dim1: int = -1) -> "Tensor":
        if self.ndim < 2:
            return self
        dim0, dim1 = _dim(dim0, self.ndim), _dim(dim1, self.ndim)
        perm = list(range(self.ndim))
        perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
        return self.permute(perm)

    swapaxes = transpose

    @property
    def T(self) -> "Tensor":
        return self.permute(tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> "Tensor":
        return self.transpose(-2, -1)

    def broadcast_to(self, *shape) -> "Tensor":
        shape = tuple(_flat_args(shape))
        return self if shape == self.shape else _b.emit("broadcast_to", self, shape=shape)

    def expand(self, *sizes) -> "Tensor":
        sizes = list(_flat_args(sizes))
        lead = len(sizes) - self.ndim
        if lead < 0:
            raise TraceError(f"expand: {len(sizes)} sizes for a tensor of rank {self.ndim}")
        if any(s == -1 for s in sizes[:lead]):
            raise TraceError(f"expand: -1 is not allowed in a new leading dim (sizes {sizes})")
        shape = [self.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes)]
        return self.broadcast_to(tuple(shape))

    def expand_as(self, other: "Tensor") -> "Tensor":
        return self.broadcast_to(other.shape)

    def squeeze(self, dim=None, axis=None) -> "Tensor":
        dims = _pick(dim, axis)
        if self.ndim == 0:
            return self
        if dims is None:
            dims = [i for i, d in enumerate(self.shape) if d == 1]
        dims = {d for d in (_dim(d, self.ndim) for d in _as_tuple(dims)) if self.shape[d] == 1}
        return self.reshape(tuple(d for i, d in enumerate(self.shape) if i not in dims))

    def unsqueeze(self, dim: int) -> "Tensor":
        dim = _dim(dim, self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def __getitem__(self, index) -> "Tensor":
        from dlc.indexing import getitem
        return getitem(self, index)

    # -- reductions ----------------------------------------------------------------------------
    def _reduce(self, op: str, dim, axis, keepdim, keepdims, **extra) -> "Tensor":
        axes = _pick(dim, axis)
        axes = tuple(range(self.ndim)) if axes is None else \
            tuple(sorted({a % builtins.max(self.ndim, 1) for a in _as_tuple(axes)}))
        keep = bool(keepdim or keepdims)
        return _b.emit(op, self, axes=axes, keepdims=keep, **extra)

    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=False, dtype=None):
        x = self if dtype is None else self.cast(dtype)
        return x._reduce("sum", dim, axis, keepdim, keepdims)

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        return self._reduce("mean", dim, axis, keepdim, keepdims)

    def prod(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        return self._reduce("prod", dim, axis, keepdim, keepdims)

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        return self._reduce("max", dim, axis, keepdim, keepdims)

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        return self._reduce("min", dim, axis, keepdim, keepdims)

    amax = max
    amin = min

    def var(self, dim=None, unbiased=None, keepdim=False, *, axis=None, keepdims=False,
            correction=None, ddof=None):
        if correction is None:
            correction = ddof if ddof is not None else (0 if unbiased is False else 1)
        return self._reduce("var", dim, axis, keepdim, keepdims, correction=correction)

    def std(self, *args, **kwargs):
        return self.var(*args, **kwargs).sqrt()

    def _arg(self, op: str, dim, axis, keepdim, keepdims) -> "Tensor":
        ax = _pick(dim, axis)
        x = self
        if ax is None:
            x, ax = self.reshape(-1), 0
        return _b.emit(op, x, axis=ax % builtins.max(x.ndim, 1),
                       keepdims=bool(keepdim or keepdims))

    def argmax(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        return self._arg("argmax", dim, axis, keepdim, keepdims)

    def argmin(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        return self._arg("argmin", dim, axis, keepdim, keepdims)


# Unary elementwise ops become methods of the same name: x.exp(), x.relu(), ...
_UNARY_METHODS = ("neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh",
                  "sigmoid", "relu", "silu", "erf", "reciprocal", "sign", "floor", "ceil",
                  "round", "logical_not", "log1p", "expm1")


def _unary_method(op: str):
    def method(self: Tensor) -> Tensor:
        return _b.emit(op, self)
    method.__name__ = op
    method.__doc__ = f"Elementwise {op}."
    return method


for _name in _UNARY_METHODS:
    setattr(Tensor, _name, _unary_method(_name))


# -- helpers shared by the Tensor methods, the functional API and VJP rules -------------------
def _dim(d: int, ndim: int) -> int:
    """A dim index in [-ndim, ndim) made non-negative; anything else is the user's error."""
    if not -ndim <= d < ndim:
        raise ShapeError(f"dim {d} is out of range for a tensor of rank {ndim} "
                         f"(expected a dim in [{-ndim}, {ndim - 1}])")
    return d % ndim


def _at() -> str:
    """' at file:line' of the user's code that is running, for error messages."""
    loc = _b.user_loc()
    return f" at {loc}" if loc else ""


def _flat_args(args) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def _pick(dim, axis):
    if dim is not None and axis is not None:
        raise TensorTypeError(f"pass dim or axis, not both (got dim={dim}, axis={axis}){_at()}")
    return dim if dim is not None else axis


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def resolve_shape(shape: Sequence[int], size: int, old: tuple[int, ...]) -> tuple[int, ...]:
    """Resolve one -1 in a reshape target; raise a clear error if sizes disagree."""
    from dlc.errors import ShapeError
    shape = [int(s) for s in shape]
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape {old} -> {tuple(shape)}: at most one -1")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {old} ({size} elements) to {tuple(shape)}")
        shape[shape.index(-1)] = size // known
    return tuple(shape)


def as_value(x) -> Value:
    if isinstance(x, Tensor):
        return x.value
    if isinstance(x, Value):
        return x
    if isinstance(x, np.ndarray):
        return _b.current().const(x)
    raise TensorTypeError(f"expected a Tensor, got {type(x).__name__}{_at()}")


def scalar(value, dtype: str) -> Tensor:
    """A 0-d tensor holding a Python number."""
    return _b.emit("full", shape=(), value=float(value), dtype=dtype)


def to_tensor(x, like_dtype: str = "float32") -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, Value):
        return Tensor(x)
    if isinstance(x, np.ndarray):
        return Tensor(_b.current().const(x))
    if isinstance(x, (bool, int, float, np.number, np.bool_)):
        return scalar(x, _scalar_dtype(x, like_dtype))
    raise TensorTypeError(f"cannot use {type(x).__name__} as a tensor{_at()}")


def _scalar_dtype(x, like: str) -> str:
    if isinstance(x, (bool, np.bool_)):
        return like
    if isinstance(x, (float, np.floating)) and not is_float(like):
        return "float32"
    if like == "bool":
        return "int64"
    return like


def binary_operands(a, b) -> tuple[Tensor, Tensor]:
    """Convert Python scalars/arrays to tensors and promote dtypes with casts."""
    if isinstance(a, Tensor) and not isinstance(b, (Tensor, np.ndarray, Value)):
        b = to_tensor(b, a.dtype)
        if b.dtype != a.dtype:
            a = a.cast(b.dtype)
        return a, b
    a, b = to_tensor(a), to_tensor(b)
    if a.dtype != b.dtype:
        d = promote(a.dtype, b.dtype)
        a, b = a.cast(d), b.cast(d)
    return a, b


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """NumPy matmul semantics, 1-D operands included."""
    a, b = binary_operands(a, b)
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    if squeeze_a:
        a = a.reshape(1, a.shape[0])
    if squeeze_b:
        b = b.reshape(b.shape[0], 1)
    out = _b.emit("matmul", a, b)
    if squeeze_a:
        out = out.reshape(out.shape[:-2] + out.shape[-1:])
    if squeeze_b:
        out = out.reshape(out.shape[:-1])
    return out


def where(cond, a, b) -> Tensor:
    a, b = binary_operands(a, b)
    cond = to_tensor(cond).cast("bool")
    return _b.emit("where", cond, a, b)
