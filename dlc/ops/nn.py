"""Composite neural-network ops (the random ops live in random.py, the losses in losses.py).

Composite ops (kind reduction): logsumexp, softmax, log_softmax, layer_norm, rms_norm,
group_norm, batch_norm, and in losses.py cross_entropy, nll_loss, mse_loss, l1_loss,
bce_with_logits. Each has a numerically stable numpy reference (the eager semantics) and a
`decompose` rule that rebuilds it from primitives (elementwise, reductions, movement), so the
decompose pass can lower it and fusion turns it into one row kernel. float16 inputs are
computed in float32 and rounded once at the end, by the reference and the decomposition alike.

Autodiff differentiates the norms, nll_loss, mse_loss and l1_loss through their
decompositions. softmax, log_softmax, logsumexp and cross_entropy have direct VJPs: their
gradient graphs have well under half the nodes of the decomposition's (softmax: 9 against
25, with 2 reductions against 5). layer_norm has none: it would have to recompute the mean
and variance (the forward's intermediates are inside the op), which leaves it as many
reductions as the decomposition's backward. bce_with_logits has one because the kinks of
its decomposition at x = 0 (relu, abs) cancel in the loss but not in their one-sided
gradients.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from dlc.errors import ShapeError
from dlc.ir.builder import emit
from dlc.ir.types import FLOATS, TensorType
from dlc.ops.common import normalize_axes, normalize_axis, reduced_shape, same_dtype
from dlc.ops.registry import REDUCTION, Attr, OpDef, register
from dlc.ops.vjp_utils import keep_reduced
from dlc.tensor import Tensor, scalar

REDUCTIONS = ("mean", "sum", "none")


# -- shared helpers ----------------------------------------------------------------------------
def compute_dtype(dtype: str) -> str:
    """The dtype the composite ops compute in: float16 widens to float32."""
    return "float32" if dtype == "float16" else dtype


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(compute_dtype(x.dtype.name))


def _c(value: float, x: np.ndarray):
    """A scalar constant in x's dtype, so arithmetic with it keeps x's precision."""
    return x.dtype.type(value)


def _reduce(op: str, x: Tensor, axes: Sequence[int], keepdims: bool = False) -> Tensor:
    return emit(op, x, axes=tuple(axes), keepdims=keepdims)


def filled(shape: Sequence[int], value: float, dtype: str) -> Tensor:
    return emit("full", shape=tuple(shape), value=float(value), dtype=dtype)


def float_input(op: str, t: TensorType, what: str = "x") -> None:
    if t.dtype not in FLOATS:
        raise ShapeError(f"{op}: {what} must be a float tensor, got {t.dtype} {t.shape}")


def _check_eps(op: str, eps: float) -> None:
    if not eps >= 0:
        raise ShapeError(f"{op}: eps must be >= 0, got {eps}")


def _same_type_infer(op: str):
    """infer for ops whose single float input's type is the output type."""
    def infer(types, attrs):
        float_input(op, types[0])
        return types[0]
    return infer


# -- logsumexp, softmax, log_softmax ---------------------------------------------------------
def _axes_normalize(types, attrs):
    ndim = types[0].ndim
    return {**attrs, "axes": normalize_axes(attrs["axes"], ndim) if ndim else ()}


def _axis_normalize(types, attrs):
    return {**attrs, "axis": normalize_axis(attrs["axis"], types[0].ndim)}


def _axis_tuple(x_ndim: int, axis: int) -> tuple[int, ...]:
    """The reduced axes of softmax: none on a 0-d input."""
    return (axis,) if x_ndim else ()


def _finite_shift(m: np.ndarray) -> np.ndarray:
    """The max to subtract; an infinite or NaN max shifts by 0 (x - inf would be NaN)."""
    return np.where(np.isfinite(m), m, np.zeros((), m.dtype))


def _logsumexp_ref(x, axes, keepdims):
    w = _wide(x)
    if any(x.shape[a] == 0 for a in axes):  # log of an empty sum
        return np.full(reduced_shape(x.shape, axes, keepdims), -np.inf, x.dtype)
    with np.errstate(all="ignore"):
        m = _finite_shift(np.max(w, axis=axes, keepdims=True))
        out = np.log(np.sum(np.exp(w - m), axis=axes, keepdims=True)) + m
    return out.reshape(reduced_shape(x.shape, axes, keepdims)).astype(x.dtype)


def _logsumexp_infer(types, attrs):
    x = types[0]
    float_input("logsumexp", x)
    return x.with_shape(reduced_shape(x.shape, attrs["axes"], attrs["keepdims"]))


def _logsumexp_dec(inputs, attrs):
    (x,), axes, keepdims = inputs, attrs["axes"], attrs["keepdims"]
    out_shape = reduced_shape(x.shape, axes, keepdims)
    if any(x.shape[a] == 0 for a in axes):
        return filled(out_shape, -math.inf, x.dtype)
    w = x.cast(compute_dtype(x.dtype))
    m = _reduce("max", w, axes, keepdims=True)
    # m - m is 0 exactly where m is finite: there shift by m, elsewhere by 0
    m = emit("where", (m - m) == 0.0, m, scalar(0, w.dtype))
    out = _reduce("sum", (w - m).exp(), axes, keepdims=True).log() + m
    return out.reshape(out_shape).cast(x.dtype)


def _softmax_ref(x, axis):
    if x.size == 0:
        return x.copy()
    axes = _axis_tuple(x.ndim, axis)
    w = _wide(x)
    with np.errstate(all="ignore"):
        e = np.exp(w - np.max(w, axis=axes, keepdims=True))
        return (e / np.sum(e, axis=axes, keepdims=True)).astype(x.dtype)


def _log_softmax_ref(x, axis):
    if x.size == 0:
        return x.copy()
    axes = _axis_tuple(x.ndim, axis)
    w = _wide(x)
    with np.errstate(all="ignore"):
        z = w - np.max(w, axis=axes, keepdims=True)
        return (z - np.log(np.sum(np.exp(z), axis=axes, keepdims=True))).astype(x.dtype)


def log_softmax_prims(w: Tensor, axes: tuple[int, ...]) -> Tensor:
    """log_softmax over `axes` built from primitives (max-shifted)."""
    z = w - _reduce("max", w, axes, keepdims=True)
    return z - _reduce("sum", z.exp(), axes, keepdims=True).log()


def _softmax_dec(inputs, attrs):
    (x,) = inputs
    if x.numel == 0:  # nothing to compute, and max refuses an empty axis
        return filled(x.shape, 0.0, x.dtype)
    axes = _axis_tuple(x.ndim, attrs["axis"])
    w = x.cast(compute_dtype(x.dtype))
    e = (w - _reduce("max", w, axes, keepdims=True)).exp()
    return (e / _reduce("sum", e, axes, keepdims=True)).cast(x.dtype)


def _log_softmax_dec(inputs, attrs):
    (x,) = inputs
    if x.numel == 0:
        return filled(x.shape, 0.0, x.dtype)
    axes = _axis_tuple(x.ndim, attrs["axis"])
    return log_softmax_prims(x.cast(compute_dtype(x.dtype)), axes).cast(x.dtype)


# Direct VJPs: a handful of nodes each, where differentiating the decomposition would emit
# the backward of every primitive (max, shift, exp, sum, log, div: several times as many).
def _softmax_vjp(g, out, inputs, attrs):
    # y (g - sum(g y))
    (x,) = inputs
    cd, axes = compute_dtype(x.dtype), _axis_tuple(x.ndim, attrs["axis"])
    y = out.cast(cd)
    gy = g.cast(cd) * y
    return [(gy - y * _reduce("sum", gy, axes, keepdims=True)).cast(x.dtype)]


def _log_softmax_vjp(g, out, inputs, attrs):
    # g - exp(y) sum(g)
    (x,) = inputs
    cd, axes = compute_dtype(x.dtype), _axis_tuple(x.ndim, attrs["axis"])
    gw = g.cast(cd)
    return [(gw - out.cast(cd).exp() * _reduce("sum", gw, axes, keepdims=True)).cast(x.dtype)]


def _logsumexp_vjp(g, out, inputs, attrs):
    # g exp(x - y): the softmax over `axes`
    (x,) = inputs
    cd, axes, keepdims = compute_dtype(x.dtype), attrs["axes"], attrs["keepdims"]
    y = keep_reduced(out.cast(cd), x.shape, axes, keepdims)
    gk = keep_reduced(g.cast(cd), x.shape, axes, keepdims)
    return [((x.cast(cd) - y).exp() * gk).cast(x.dtype)]


register(OpDef(
    "logsumexp", REDUCTION, _logsumexp_infer, _logsumexp_ref,
    attrs=(Attr("axes", "ints"), Attr("keepdims", "bool", False)), normalize=_axes_normalize,
    decompose=_logsumexp_dec, vjp=_logsumexp_vjp,
    doc="log(sum(exp(x))) over `axes`, shifted by the max; -inf over an empty axis."))
register(OpDef(
    "softmax", REDUCTION, _same_type_infer("softmax"), _softmax_ref,
    attrs=(Attr("axis", "int"),), normalize=_axis_normalize, decompose=_softmax_dec,
    vjp=_softmax_vjp,
    doc="exp(x - max) / sum(exp(x - max)) along `axis`."))
register(OpDef(
    "log_softmax", REDUCTION, _same_type_infer("log_softmax"), _log_softmax_ref,
    attrs=(Attr("axis", "int"),), normalize=_axis_normalize, decompose=_log_softmax_dec,
    vjp=_log_softmax_vjp,
    doc="(x - max) - log(sum(exp(x - max))) along `axis`."))


# -- layer_norm, rms_norm, group_norm, batch_norm --------------------------------------------
def _trailing_normalize(op: str):
    """axes canonical, non-empty and trailing (the normalized_shape of torch)."""
    def normalize(types, attrs):
        x = types[0]
        if x.ndim == 0:
            raise ShapeError(f"{op}: x must have rank >= 1, got a 0-d tensor")
        axes = normalize_axes(attrs["axes"], x.ndim)
        if not axes or axes != tuple(range(x.ndim - len(axes), x.ndim)):
            raise ShapeError(f"{op}: axes {list(attrs['axes'])} must be the trailing axes of "
                             f"x {x.shape} (at least one)")
        _check_eps(op, attrs["eps"])
        return {**attrs, "axes": axes}
    return normalize


def _layer_norm_ref(x, axes, eps):
    w = _wide(x)
    with np.errstate(all="ignore"):
        d = w - np.mean(w, axis=axes, keepdims=True)
        var = np.mean(d * d, axis=axes, keepdims=True)
        return (d / np.sqrt(var + _c(eps, w))).astype(x.dtype)


def _rms_norm_ref(x, axes, eps):
    w = _wide(x)
    with np.errstate(all="ignore"):
        ms = np.mean(w * w, axis=axes, keepdims=True)
        return (w / np.sqrt(ms + _c(eps, w))).astype(x.dtype)


def normalize_prims(w: Tensor, axes: tuple[int, ...], eps: float) -> Tensor:
    """(w - mean) / sqrt(var + eps) over `axes` (biased variance, two passes)."""
    d = w - _reduce("mean", w, axes, keepdims=True)
    var = _reduce("mean", d * d, axes, keepdims=True)
    return d * (var + eps).rsqrt()


def _layer_norm_dec(inputs, attrs):
    (x,) = inputs
    w = x.cast(compute_dtype(x.dtype))
    return normalize_prims(w, attrs["axes"], attrs["eps"]).cast(x.dtype)


def _rms_norm_dec(inputs, attrs):
    (x,) = inputs
    w = x.cast(compute_dtype(x.dtype))
    ms = _reduce("mean", w * w, attrs["axes"], keepdims=True)
    return (w * (ms + attrs["eps"]).rsqrt()).cast(x.dtype)


register(OpDef(
    "layer_norm", REDUCTION, _same_type_infer("layer_norm"), _layer_norm_ref,
    attrs=(Attr("axes", "ints"), Attr("eps", "float", 1e-5)),
    normalize=_trailing_normalize("layer_norm"), decompose=_layer_norm_dec,
    doc="(x - mean) / sqrt(var + eps) over the trailing `axes` (biased var, no affine)."))
register(OpDef(
    "rms_norm", REDUCTION, _same_type_infer("rms_norm"), _rms_norm_ref,
    attrs=(Attr("axes", "ints"), Attr("eps", "float", 1e-6)),
    normalize=_trailing_normalize("rms_norm"), decompose=_rms_norm_dec,
    doc="x / sqrt(mean(x^2) + eps) over the trailing `axes` (no affine)."))


def _group_norm_normalize(types, attrs):
    x, groups = types[0], attrs["groups"]
    if x.ndim < 2:
        raise ShapeError(f"group_norm: x must be (N, C, *spatial), got shape {x.shape}")
    if groups < 1 or x.shape[1] % groups:
        raise ShapeError(f"group_norm: groups={groups} must be >= 1 and divide the "
                         f"{x.shape[1]} channels of x {x.shape}")
    _check_eps("group_norm", attrs["eps"])
    return attrs


def _grouped_shape(shape: Sequence[int], groups: int) -> tuple[int, int, int]:
    """(N, C, *spatial) viewed as (N, groups, elements per group)."""
    n = shape[0]
    per_group = int(np.prod(shape[1:], dtype=np.int64)) // groups
    return n, groups, per_group


def _group_norm_ref(x, groups, eps):
    grouped = x.reshape(_grouped_shape(x.shape, groups))
    return _layer_norm_ref(grouped, (2,), eps).reshape(x.shape)


def _group_norm_dec(inputs, attrs):
    (x,) = inputs
    w = x.cast(compute_dtype(x.dtype)).reshape(_grouped_shape(x.shape, attrs["groups"]))
    return normalize_prims(w, (2,), attrs["eps"]).reshape(x.shape).cast(x.dtype)


register(OpDef(
    "group_norm", REDUCTION, _same_type_infer("group_norm"), _group_norm_ref,
    attrs=(Attr("groups", "int"), Attr("eps", "float", 1e-5)),
    normalize=_group_norm_normalize, decompose=_group_norm_dec,
    doc="Normalize each of `groups` channel groups of x (N, C, *spatial) (no affine)."))


def _batch_norm_infer(types, attrs):
    x, mean, var = types
    float_input("batch_norm", x)
    same_dtype(types, "batch_norm")
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: x must be (N, C, *spatial), got shape {x.shape}")
    if mean.shape != (x.shape[1],) or var.shape != (x.shape[1],):
        raise ShapeError(f"batch_norm: mean {mean.shape} and var {var.shape} must both have "
                         f"shape ({x.shape[1]},), one value per channel of x {x.shape}")
    _check_eps("batch_norm", attrs["eps"])
    return x


def _channel_shape(x_shape: Sequence[int]) -> tuple[int, ...]:
    """Per-channel stats (C,) viewed as (C, 1, ...) to broadcast against (N, C, ...)."""
    return (x_shape[1],) + (1,) * (len(x_shape) - 2)


def _batch_norm_ref(x, mean, var, eps):
    w, m, v = _wide(x), _wide(mean), _wide(var)
    shape = _channel_shape(x.shape)
    with np.errstate(all="ignore"):
        out = (w - m.reshape(shape)) / np.sqrt(v.reshape(shape) + _c(eps, w))
    return out.astype(x.dtype)


def _batch_norm_dec(inputs, attrs):
    x, mean, var = inputs
    cd, shape = compute_dtype(x.dtype), _channel_shape(x.shape)
    m, v = mean.cast(cd).reshape(shape), var.cast(cd).reshape(shape)
    return ((x.cast(cd) - m) * (v + attrs["eps"]).rsqrt()).cast(x.dtype)


register(OpDef(
    "batch_norm", REDUCTION, _batch_norm_infer, _batch_norm_ref,
    attrs=(Attr("eps", "float", 1e-5),), arity=3, decompose=_batch_norm_dec,
    doc="(x - mean) / sqrt(var + eps) with per-channel stats (C,) on axis 1 of x (N, C, ...)."))
