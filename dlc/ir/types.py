"""Tensor types: a shape (tuple of ints) and a dtype name.

dtypes are spelled by their numpy names ("float32"); the text form uses short names
("f32"). bool prints as "i1", as in MLIR.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlc.errors import DlcError, ShapeError

DTYPES = ("float16", "float32", "float64", "int32", "int64", "bool")
SHORT = {"float16": "f16", "float32": "f32", "float64": "f64",
         "int32": "i32", "int64": "i64", "bool": "i1"}
LONG = {v: k for k, v in SHORT.items()}
FLOATS = ("float16", "float32", "float64")
INTS = ("int32", "int64")

# Promotion order for Python operators on tensors of different dtypes (ops themselves are
# strict; the frontend inserts casts).
_RANK = {"bool": 0, "int32": 1, "int64": 2, "float16": 3, "float32": 4, "float64": 5}


def canonical_dtype(dtype) -> str:
    """Accept 'float32', 'f32', np.float32, np.dtype('float32'); return 'float32'."""
    if isinstance(dtype, str) and dtype in LONG:
        return LONG[dtype]
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise DlcError(f"unsupported dtype {dtype!r}; supported: {', '.join(DTYPES)}")
    return name


def promote(a: str, b: str) -> str:
    return a if _RANK[a] >= _RANK[b] else b


def is_float(dtype: str) -> bool:
    return dtype in FLOATS


def is_int(dtype: str) -> bool:
    return dtype in INTS


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        if any(d < 0 for d in self.shape):
            raise ShapeError(f"negative dimension in shape {self.shape}")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    def __str__(self) -> str:
        return f"{SHORT[self.dtype]}[{','.join(str(d) for d in self.shape)}]"

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype) -> "TensorType":
        return TensorType(self.shape, dtype)
