"""Loss ops: cross_entropy, nll_loss, mse_loss, l1_loss and bce_with_logits (kind reduction).

Like the other composites in nn.py: a numerically stable numpy reference and a `decompose`
rule built from primitives; cross_entropy and bce_with_logits also have direct VJPs (see
nn.py's docstring for why)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from dlc.errors import DlcError, ShapeError
from dlc.ir.builder import emit
from dlc.ir.types import INTS
from dlc.ops.common import same_dtype
from dlc.ops.nn import (REDUCTIONS, _c, _log_softmax_ref, _reduce, _wide, compute_dtype,
                        float_input, log_softmax_prims)
from dlc.ops.registry import REDUCTION, Attr, OpDef, register
from dlc.tensor import Tensor, scalar


# -- losses ------------------------------------------------------------------------------------
def _check_reduction(op: str, attrs: dict) -> None:
    if attrs["reduction"] not in REDUCTIONS:
        raise ShapeError(f"{op}: reduction must be one of {REDUCTIONS}, got "
                         f"{attrs['reduction']!r}")


def _loss_shape(per_element: tuple[int, ...], reduction: str) -> tuple[int, ...]:
    return per_element if reduction == "none" else ()


def _reduce_loss_ref(loss: np.ndarray, reduction: str, count=None) -> np.ndarray:
    """mean divides by `count` when given (the non-ignored targets), else by the size."""
    if reduction == "none":
        return loss
    total = np.sum(loss)
    if reduction == "sum":
        return total
    with np.errstate(all="ignore"):  # all targets ignored: 0 / 0 is NaN, as in torch
        return total / (loss.dtype.type(loss.size) if count is None else count)


def _reduce_loss_dec(loss: Tensor, reduction: str, valid: Tensor | None = None) -> Tensor:
    """mean divides by the count of `valid` (bool) elements when given, else by the size."""
    if reduction == "none":
        return loss
    every = tuple(range(loss.ndim))
    if reduction == "mean" and valid is None:
        return _reduce("mean", loss, every)
    total = _reduce("sum", loss, every)
    if reduction == "sum":
        return total
    return total / _reduce("sum", valid.cast(loss.dtype), every)


def _class_infer(op: str):
    """infer for (N, C, d...) float scores with (N, d...) integer targets."""
    def infer(types, attrs):
        x, target = types
        float_input(op, x, "the input")
        if x.ndim < 2 or x.shape[1] < 1:
            raise ShapeError(f"{op}: the input must be (N, C, d...) with C >= 1 classes, got "
                             f"shape {x.shape}")
        if target.dtype not in INTS:
            raise ShapeError(f"{op}: the target must hold integer class indices (int32 or "
                             f"int64), got {target.dtype} {target.shape}")
        want = x.shape[:1] + x.shape[2:]
        if target.shape != want:
            raise ShapeError(f"{op}: the target shape {target.shape} must be {want}: the "
                             f"input {x.shape} without its class axis 1")
        return x.with_shape(_loss_shape(want, attrs["reduction"]))
    return infer


def _cross_entropy_normalize(types, attrs):
    _check_reduction("cross_entropy", attrs)
    if not 0.0 <= attrs["label_smoothing"] <= 1.0:
        raise ShapeError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{attrs['label_smoothing']}")
    return attrs


def _nll_loss_normalize(types, attrs):
    _check_reduction("nll_loss", attrs)
    return attrs


def _picked(logp: np.ndarray, target: np.ndarray, valid: np.ndarray, op: str) -> np.ndarray:
    """logp[n, target[n, d...], d...] where valid, else 0; other targets are errors."""
    n_classes = logp.shape[1]
    bad = valid & ((target < 0) | (target >= n_classes))
    if bad.any():
        raise DlcError(f"{op}: target {int(target[bad].flat[0])} is out of range for "
                       f"{n_classes} classes (valid: 0..{n_classes - 1} or the ignore_index)")
    safe = np.where(valid, target, 0)
    picked = np.take_along_axis(logp, np.expand_dims(safe, 1), axis=1)[:, 0]
    return np.where(valid, picked, _c(0, logp))


def _nll_loss_ref(logp, target, ignore_index, reduction):
    w = _wide(logp)
    valid = target != ignore_index
    loss = -_picked(w, target, valid, "nll_loss")
    count = np.sum(valid).astype(w.dtype)
    return np.asarray(_reduce_loss_ref(loss, reduction, count), dtype=logp.dtype)


def _cross_entropy_ref(x, target, ignore_index, label_smoothing, reduction):
    # torch's rule: (1 - s) * reduce(nll) + (s / C) * reduce(-sum_c logp), both masked by
    # the ignored targets, and "mean" divides both by the count of the others
    w = _wide(x)
    logp = _log_softmax_ref(w, 1)
    valid = target != ignore_index
    count = np.sum(valid).astype(w.dtype)
    nll = _reduce_loss_ref(-_picked(logp, target, valid, "cross_entropy"), reduction, count)
    if label_smoothing == 0.0:
        return np.asarray(nll, dtype=x.dtype)
    smooth = np.where(valid, -np.sum(logp, axis=1), _c(0, w))
    smooth = _reduce_loss_ref(smooth, reduction, count)
    s, n_classes = _c(label_smoothing, w), _c(x.shape[1], w)
    out = (_c(1, w) - s) * nll + (s / n_classes) * smooth
    return np.asarray(out, dtype=x.dtype)


def _class_hits(logp: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Bool (N, C, d...): true at each valid target's class (a one-hot along axis 1)."""
    n_classes = logp.shape[1]
    classes = emit("arange", start=0, stop=n_classes, step=1, dtype=target.dtype)
    classes = classes.reshape((1, n_classes) + (1,) * (logp.ndim - 2))
    t = target.reshape(target.shape[:1] + (1,) + target.shape[1:])
    return emit("logical_and", t == classes, valid.reshape(t.shape))


def _picked_dec(logp: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """sum over classes of logp at the target class (0 where ignored), shape (N, d...)."""
    hits = _class_hits(logp, target, valid)
    # where, not a multiply by the one-hot: 0 * -inf would be NaN
    return _reduce("sum", emit("where", hits, logp, scalar(0, logp.dtype)), (1,))


def _nll_loss_dec(inputs, attrs):
    x, target = inputs
    w = x.cast(compute_dtype(x.dtype))
    valid = target != attrs["ignore_index"]
    loss = -_picked_dec(w, target, valid)
    return _reduce_loss_dec(loss, attrs["reduction"], valid).cast(x.dtype)


def _cross_entropy_dec(inputs, attrs):
    x, target = inputs
    s, reduction = attrs["label_smoothing"], attrs["reduction"]
    w = x.cast(compute_dtype(x.dtype))
    logp = log_softmax_prims(w, (1,))
    valid = target != attrs["ignore_index"]
    loss = -_picked_dec(logp, target, valid)
    if s != 0.0:
        smooth = emit("where", valid, -_reduce("sum", logp, (1,)), scalar(0, w.dtype))
        loss = loss * (1.0 - s) + smooth * (s / x.shape[1])
    return _reduce_loss_dec(loss, reduction, valid).cast(x.dtype)


def _class_axis_last_to_1(t: Tensor) -> Tensor:
    """(N, d..., C) -> (N, C, d...)."""
    if t.ndim <= 2:
        return t
    return t.permute((0, t.ndim - 1) + tuple(range(1, t.ndim - 1)))


def _cross_entropy_vjp(g, out, inputs, attrs):
    # Per position: (softmax(x) - q) times its weight, q = (1 - s) onehot(target) + s / C.
    # The weight is g (none, sum) or g / count (mean) at valid targets, 0 at ignored ones.
    x, target = inputs
    s, reduction, n_classes = attrs["label_smoothing"], attrs["reduction"], x.shape[1]
    cd = compute_dtype(x.dtype)
    p = emit("softmax", x.cast(cd), axis=1)
    q = _class_axis_last_to_1(emit("one_hot", target, num_classes=n_classes, dtype=cd))
    if s != 0.0:
        q = q * (1.0 - s) + s / n_classes
    valid = target != attrs["ignore_index"]
    weight = g.cast(cd)
    if reduction == "mean":
        weight = weight / _reduce("sum", valid.cast(cd), tuple(range(target.ndim)))
    weight = emit("where", valid, weight, scalar(0, cd))
    weight = weight.reshape(target.shape[:1] + (1,) + target.shape[1:])
    return [((p - q) * weight).cast(x.dtype), None]


register(OpDef(
    "cross_entropy", REDUCTION, _class_infer("cross_entropy"), _cross_entropy_ref,
    attrs=(Attr("ignore_index", "int", -100), Attr("label_smoothing", "float", 0.0),
           Attr("reduction", "str", "mean")),
    arity=2, normalize=_cross_entropy_normalize, decompose=_cross_entropy_dec, nondiff=(1,),
    vjp=_cross_entropy_vjp,
    doc="Softmax cross entropy of logits (N, C, d...) with integer targets (N, d...), as "
        "torch.nn.functional.cross_entropy (ignore_index, label_smoothing, reduction)."))
register(OpDef(
    "nll_loss", REDUCTION, _class_infer("nll_loss"), _nll_loss_ref,
    attrs=(Attr("ignore_index", "int", -100), Attr("reduction", "str", "mean")),
    arity=2, normalize=_nll_loss_normalize, decompose=_nll_loss_dec, nondiff=(1,),
    doc="-logp at the target class of (N, C, d...) scores, as torch.nn.functional.nll_loss."))


def _pointwise_loss(name: str, ref: Callable, dec: Callable, doc: str,
                    vjp: Callable | None = None) -> OpDef:
    """Register a loss of two same-shape float tensors: reduce(f(a, b))."""
    def infer(types, attrs):
        a, b = types
        float_input(name, a, "the input")
        same_dtype(types, name)
        if a.shape != b.shape:
            raise ShapeError(f"{name}: the input {a.shape} and the target {b.shape} must "
                             f"have the same shape")
        return a.with_shape(_loss_shape(a.shape, attrs["reduction"]))

    def normalize(types, attrs):
        _check_reduction(name, attrs)
        return attrs

    def impl(a, b, reduction):
        with np.errstate(all="ignore"):
            loss = ref(_wide(a), _wide(b))
        return np.asarray(_reduce_loss_ref(loss, reduction), dtype=a.dtype)

    def decompose(inputs, attrs):
        a, b = inputs
        cd = compute_dtype(a.dtype)
        return _reduce_loss_dec(dec(a.cast(cd), b.cast(cd)), attrs["reduction"]).cast(a.dtype)

    return register(OpDef(name, REDUCTION, infer, impl,
                          attrs=(Attr("reduction", "str", "mean"),), arity=2,
                          normalize=normalize, decompose=decompose, vjp=vjp, doc=doc))


def _pointwise_weight(g: Tensor, reduction: str, count: int) -> Tensor:
    """d loss / d (per-element loss): g itself, or g / count for "mean"."""
    return g * (1.0 / max(count, 1)) if reduction == "mean" else g


def _bce_ref(x, y):
    # (1 - y) x + log(1 + exp(-x)) = max(x, 0) (1 - y) + max(-x, 0) y + log1p(exp(-|x|)):
    # exp never overflows, and for y in [0, 1] every term is >= 0, so nothing cancels (the
    # form max(x, 0) - x y loses |x| eps for large x with y near 1)
    zero = _c(0, x)
    return (np.maximum(x, zero) * (_c(1, y) - y) + np.maximum(-x, zero) * y
            + np.log1p(np.exp(-np.abs(x))))


def _bce_dec(x: Tensor, y: Tensor) -> Tensor:
    return x.relu() * (1 - y) + (-x).relu() * y + (-x.abs()).exp().log1p()


def _bce_vjp(g, out, inputs, attrs):
    # sigmoid(x) - y and -x. Differentiating the decomposition would be wrong at x = 0: the
    # kinks of relu(x) and |x| cancel in the loss, their one-sided gradients do not.
    x, y = inputs
    cd = compute_dtype(x.dtype)
    w, t = x.cast(cd), y.cast(cd)
    weight = _pointwise_weight(g.cast(cd), attrs["reduction"], x.numel)
    return [((w.sigmoid() - t) * weight).cast(x.dtype), (-w * weight).cast(y.dtype)]


def _squared_dec(a: Tensor, b: Tensor) -> Tensor:
    d = a - b
    return d * d


_pointwise_loss("mse_loss", lambda a, b: (a - b) * (a - b), _squared_dec,
                "Squared error (a - b)^2, reduced.")
_pointwise_loss("l1_loss", lambda a, b: np.abs(a - b), lambda a, b: (a - b).abs(),
                "Absolute error |a - b|, reduced.")
_pointwise_loss("bce_with_logits", _bce_ref, _bce_dec,
                "Binary cross entropy of sigmoid(x) with targets y, in a form that never "
                "overflows or cancels: max(x, 0) (1 - y) + max(-x, 0) y + "
                "log1p(exp(-|x|)), reduced.", vjp=_bce_vjp)
