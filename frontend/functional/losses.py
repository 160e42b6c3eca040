"""Losses under torch.nn.functional's names and reductions."""
from __future__ import annotations


import numpy as np

from dlc.ir.builder import emit
from dlc.ir.types import is_float
from dlc.tensor import Tensor, binary_operands
from frontend.functional._common import _REDUCTIONS, _fail, _t
from frontend.functional.activation import log_softmax


# -- losses ------------------------------------------------------------------------------------
def _reduction(fn: str, reduction: str, size_average=None, reduce=None) -> str:
    """torch's legacy size_average/reduce flags mapped onto `reduction`."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in _REDUCTIONS:
        raise _fail(fn, f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return {"none": lambda t: t, "mean": Tensor.mean, "sum": Tensor.sum}[reduction](loss)


def _no_class_weight(fn: str, weight) -> None:
    if weight is not None:
        raise _fail(fn, "class weights (weight=...) are not supported; pass weight=None")


def _class_batch(x: Tensor, target: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Unbatched (C,) logits with a 0-d target gain a batch axis, as torch accepts them."""
    if x.ndim == 1:
        return x.unsqueeze(0), target.reshape((1,) + target.shape), True
    return x, target, False


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100,
                  reduce=None, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross entropy of logits (N, C, ...) with class indices or probabilities."""
    _no_class_weight("cross_entropy", weight)
    reduction = _reduction("cross_entropy", reduction, size_average, reduce)
    x = _t(input)
    t = _t(target, "int64")
    if is_float(t.dtype):  # class probabilities, same shape as the logits
        if t.shape != x.shape:
            raise _fail("cross_entropy", f"probability target {t.shape} must match the "
                                         f"input {x.shape}")
        class_axis = 0 if x.ndim == 1 else 1
        if label_smoothing:
            t = t * (1.0 - label_smoothing) + label_smoothing / x.shape[class_axis]
        loss = -(log_softmax(x, class_axis) * t.cast(x.dtype)).sum(class_axis)
        return _reduce(loss, reduction)
    x, t, unbatched = _class_batch(x, t)
    out = emit("cross_entropy", x, t, ignore_index=ignore_index,
               label_smoothing=label_smoothing, reduction=reduction)
    return out.reshape(()) if unbatched and reduction == "none" else out


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100,
             reduce=None, reduction: str = "mean") -> Tensor:
    """Negative log likelihood of log-probabilities (N, C, ...) at integer targets."""
    _no_class_weight("nll_loss", weight)
    reduction = _reduction("nll_loss", reduction, size_average, reduce)
    x, t, unbatched = _class_batch(_t(input), _t(target, "int64"))
    out = emit("nll_loss", x, t, ignore_index=ignore_index, reduction=reduction)
    return out.reshape(()) if unbatched and reduction == "none" else out


def _pointwise_loss(op: str, fn: str, input, target, reduction, size_average, reduce,
                    weight, error) -> Tensor:
    reduction = _reduction(fn, reduction, size_average, reduce)
    x, y = binary_operands(_t(input), _t(target))
    try:
        shape = np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise _fail(fn, f"target {y.shape} does not broadcast with the input {x.shape}") \
            from None
    x, y = x.broadcast_to(shape), y.broadcast_to(shape)
    if weight is None:
        return emit(op, x, y, reduction=reduction)
    w = _t(weight, x.dtype)
    if w.shape != x.shape:
        raise _fail(fn, f"weight {w.shape} must have the input's shape {x.shape}")
    loss = error(x - y) * w
    if reduction == "mean":  # torch: weighted sum over the sum of weights
        return loss.sum() / w.sum()
    return _reduce(loss, reduction)


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
             weight=None) -> Tensor:
    """Mean squared error (broadcasting input and target as torch does)."""
    return _pointwise_loss("mse_loss", "mse_loss", input, target, reduction, size_average,
                           reduce, weight, lambda d: d * d)


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
            weight=None) -> Tensor:
    """Mean absolute error (broadcasting input and target as torch does)."""
    return _pointwise_loss("l1_loss", "l1_loss", input, target, reduction, size_average,
                           reduce, weight, Tensor.abs)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction: str = "mean",
                                     pos_weight=None) -> Tensor:
    """Sigmoid + binary cross entropy in one stable expression."""
    reduction = _reduction("binary_cross_entropy_with_logits", reduction, size_average, reduce)
    x = _t(input)
    y = _t(target, x.dtype).cast(x.dtype)
    if y.shape != x.shape:
        raise _fail("binary_cross_entropy_with_logits",
                    f"target {y.shape} must have the input's shape {x.shape}")
    if weight is None and pos_weight is None:
        return emit("bce_with_logits", x, y, reduction=reduction)
    # (1 - y) x + (1 + (pw - 1) y) log(1 + exp(-x)), with log(1 + exp(-x)) kept stable
    log1p_exp = emit("log1p", (-x.abs()).exp()) + (-x).relu()
    coeff = 1.0 if pos_weight is None else (_t(pos_weight, x.dtype) - 1.0) * y + 1.0
    loss = (1.0 - y) * x + coeff * log1p_exp
    if weight is not None:
        loss = loss * _t(weight, x.dtype)
    return _reduce(loss, reduction)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean") -> Tensor:
    """Binary cross entropy of probabilities; the logs are clamped at -100 as in torch."""
    reduction = _reduction("binary_cross_entropy", reduction, size_average, reduce)
    x = _t(input)
    y = _t(target, x.dtype).cast(x.dtype)
    log_p = x.log().maximum(-100.0)
    log_q = (1.0 - x).log().maximum(-100.0)
    loss = -(y * log_p + (1.0 - y) * log_q)
    if weight is not None:
        loss = loss * _t(weight, x.dtype)
    return _reduce(loss, reduction)
