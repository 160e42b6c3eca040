"""Normalization: layer, RMS, group and batch norm, normalize."""
from __future__ import annotations


import numpy as np

from dlc.ir.builder import emit
from dlc.tensor import Tensor
from frontend.functional._common import _dim, _fail, _t


# -- normalization -----------------------------------------------------------------------------
def _trailing_axes(fn: str, x: Tensor, normalized_shape) -> tuple[int, ...]:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else \
        tuple(int(s) for s in normalized_shape)
    if not shape or x.shape[x.ndim - len(shape):] != shape or len(shape) > x.ndim:
        raise _fail(fn, f"normalized_shape {list(shape)} does not match the trailing axes "
                        f"of input {x.shape}")
    return tuple(range(x.ndim - len(shape), x.ndim))


def _affine(y: Tensor, weight, bias) -> Tensor:
    if weight is not None:
        y = y * _t(weight, y.dtype)
    if bias is not None:
        y = y + _t(bias, y.dtype)
    return y


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing `normalized_shape` axes, then scale and shift."""
    x = _t(input)
    y = emit("layer_norm", x, axes=_trailing_axes("layer_norm", x, normalized_shape),
             eps=eps)
    return _affine(y, weight, bias)


def rms_norm(input, normalized_shape, weight=None, eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over the trailing axes; eps None is the dtype's epsilon."""
    x = _t(input)
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    y = emit("rms_norm", x, axes=_trailing_axes("rms_norm", x, normalized_shape), eps=eps)
    return _affine(y, weight, None)


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize each of num_groups channel groups of (N, C, ...); per-channel affine."""
    x = _t(input)
    if x.ndim < 2 or x.shape[1] % num_groups:
        raise _fail("group_norm", f"input {x.shape} must be (N, C, ...) with C divisible "
                                  f"by num_groups={num_groups}")
    y = emit("group_norm", x, groups=num_groups, eps=eps)
    shape = (x.shape[1],) + (1,) * (x.ndim - 2)
    w = None if weight is None else _t(weight, x.dtype).reshape(shape)
    b = None if bias is None else _t(bias, x.dtype).reshape(shape)
    return _affine(y, w, b)


def _is_state(t) -> bool:
    """A graph input holding a module buffer (its updates can be recorded)."""
    return isinstance(t, Tensor) and getattr(t.value, "role", None) == "state" \
        and t.value.data is not None


def _update_running(buffer, batch_value: Tensor, momentum) -> None:
    """torch updates running stats in place; a graph records the new value instead."""
    if not _is_state(buffer):
        return
    from frontend.tracer import update_state
    new = batch_value * momentum + buffer * (1.0 - momentum)
    update_state(buffer.value.data, new.cast(buffer.dtype))


def batch_norm(input, running_mean, running_var, weight=None, bias=None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize (N, C, ...) per channel.

    Training: with the batch's statistics (biased variance); when running_mean/running_var
    are module buffers, their updated values (momentum as torch, unbiased variance) are
    recorded as graph state outputs. Eval: with running_mean and running_var.
    `momentum` may be a Tensor (BatchNorm's cumulative average with momentum=None)."""
    x = _t(input)
    if x.ndim < 2:
        raise _fail("batch_norm", f"expected (N, C, ...), got shape {x.shape}")
    if not training:
        if running_mean is None or running_var is None:
            raise _fail("batch_norm", "eval mode needs running_mean and running_var")
        y = emit("batch_norm", x, _t(running_mean, x.dtype), _t(running_var, x.dtype),
                 eps=eps)
        return _channel_affine(y, weight, bias)
    axes = (0,) + tuple(range(2, x.ndim))
    n = x.numel // x.shape[1]
    if n <= 1:
        raise _fail("batch_norm", f"expected more than 1 value per channel when training, "
                                  f"got input shape {x.shape}")
    mean = x.mean(axis=axes)
    var = x.var(axis=axes, correction=0)
    y = emit("batch_norm", x, mean, var, eps=eps)
    _update_running(running_mean, mean, momentum)
    _update_running(running_var, var * (n / (n - 1)), momentum)
    return _channel_affine(y, weight, bias)


def _channel_affine(y: Tensor, weight, bias) -> Tensor:
    shape = (y.shape[1],) + (1,) * (y.ndim - 2)
    w = None if weight is None else _t(weight, y.dtype).reshape(shape)
    b = None if bias is None else _t(bias, y.dtype).reshape(shape)
    return _affine(y, w, b)


def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None, *,
              axis: int | None = None) -> Tensor:
    """x / max(||x||_p, eps) along `dim`."""
    if out is not None:
        raise _fail("normalize", "out= is not supported: graphs return new tensors")
    x = _t(input)
    d = _dim(dim if axis is None else None, axis, "normalize")
    if p == 2.0:
        norm = (x * x).sum(d, keepdim=True).sqrt()
    else:
        norm = (x.abs() ** float(p)).sum(d, keepdim=True) ** (1.0 / p)
    return x / norm.maximum(eps)
