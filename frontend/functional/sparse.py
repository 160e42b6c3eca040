"""Dropout, random samples (rand, randn), embedding and one_hot."""
from __future__ import annotations

import weakref


from dlc.ir import builder as _b
from dlc.ir.builder import emit
from dlc.ir.types import is_int
from dlc.tensor import Tensor
from frontend.functional._common import _fail, _t


# -- dropout, embedding ------------------------------------------------------------------------
_SALTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def next_salt() -> int:
    """A salt unique within the graph being built, so random ops draw independent streams."""
    b = _b.current()
    salt = _SALTS.get(b, 0)
    _SALTS[b] = salt + 1
    return salt


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when
    not training. The mask depends only on the graph's `seed` input and this call's salt."""
    if not 0.0 <= p <= 1.0:
        raise _fail("dropout", f"p must be in [0, 1], got {p}")
    x = _t(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    from frontend.tracer import seed_tensor
    return emit("dropout", x, seed_tensor(), p=p, salt=next_salt())


def _random(op: str, fn: str, size: tuple, dtype: str) -> Tensor:
    """`op` of shape `size` drawn from the graph's `seed` input, as dropout is:
    dlc.train_step feeds a new seed every step."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if not all(isinstance(d, int) and d >= 0 for d in size):
        raise _fail(fn, f"size must be non-negative integers, got {size}")
    from frontend.tracer import seed_tensor
    return emit(op, seed_tensor(), shape=tuple(size), dtype=dtype, salt=next_salt())


def rand(*size, dtype: str = "float32") -> Tensor:
    """Uniform samples in [0, 1) of shape `size` (torch.rand), from the graph's seed."""
    return _random("random_uniform", "rand", size, dtype)


def randn(*size, dtype: str = "float32") -> Tensor:
    """Standard normal samples of shape `size` (torch.randn), from the graph's seed."""
    return _random("random_normal", "randn", size, dtype)


def rand_like(input, dtype: str | None = None) -> Tensor:
    """rand with the shape (and, by default, the dtype) of `input`."""
    x = _t(input)
    return rand(x.shape, dtype=dtype or x.dtype)


def randn_like(input, dtype: str | None = None) -> Tensor:
    """randn with the shape (and, by default, the dtype) of `input`."""
    x = _t(input)
    return randn(x.shape, dtype=dtype or x.dtype)


def embedding(input, weight, padding_idx: int | None = None, max_norm=None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False,
              sparse: bool = False) -> Tensor:
    """Rows of `weight` (num_embeddings, dim) picked by integer indices.

    With padding_idx, positions holding that index read as zeros (the row torch keeps at
    zero) and send no gradient to it."""
    if max_norm is not None or scale_grad_by_freq:
        raise _fail("embedding", "max_norm and scale_grad_by_freq are not supported")
    w = _t(weight)
    idx = _t(input, "int64")
    if not is_int(idx.dtype):
        raise _fail("embedding", f"indices must be int32 or int64, got {idx.dtype}")
    out = emit("take", w, idx, axis=0)
    if padding_idx is None:
        return out
    n = w.shape[0]
    if not -n <= padding_idx < n:
        raise _fail("embedding", f"padding_idx {padding_idx} is out of range for {n} rows")
    keep = (idx != (padding_idx % n)).cast(w.dtype)
    return out * keep.unsqueeze(-1)


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot vectors along a new last axis (num_classes must be given)."""
    if num_classes < 0:
        raise _fail("one_hot", "num_classes=-1 would depend on the data; pass num_classes")
    return emit("one_hot", _t(tensor, "int64"), num_classes=num_classes, dtype="int64")
