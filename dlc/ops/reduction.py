"""Basic reductions: sum, mean, prod, max, min, var over `axes` (each with its VJP), and
argmax/argmin over one `axis` (no gradient: the output is an index).

Attributes are canonical once `normalize` has run: axes non-negative, sorted and unique. On a
0-d input the only axis (0 or -1) is dropped, so reducing a scalar is the identity. `axes=()`
reduces nothing. Composite reductions (logsumexp, softmax, norms, losses) live in nn.py.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from dlc.errors import ShapeError
from dlc.ir.builder import emit
from dlc.ir.types import FLOATS, TensorType
from dlc.ops.common import normalize_axes, normalize_axis, reduced_shape
from dlc.ops.elementwise import ALL, NUMERIC, require
from dlc.ops.registry import REDUCTION, Attr, OpDef, register
from dlc.ops.vjp_utils import expand_reduced, keep_reduced, zero
from dlc.tensor import scalar

AXES_ATTRS = (Attr("axes", "ints"), Attr("keepdims", "bool", False))


def _normalize_axes(types: list[TensorType], attrs: dict) -> dict:
    ndim = types[0].ndim
    axes = normalize_axes(attrs["axes"], ndim)
    return {**attrs, "axes": axes if ndim else ()}


def _same_dtype(dtype: str) -> str:
    return dtype


def _sum_dtype(dtype: str) -> str:
    """Counting bools gives int64; ints and floats keep their dtype."""
    return "int64" if dtype == "bool" else dtype


def _count(x: np.ndarray, axes: tuple[int, ...]) -> int:
    """How many elements each output element reduces over."""
    return int(np.prod([x.shape[a] for a in axes], dtype=np.int64))


def _acc(x: np.ndarray) -> np.ndarray:
    """float16 accumulates in float32 (rounded once at the end)."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def reduction(name: str, fn: Callable, dtypes: Sequence[str], out_dtype=_same_dtype,
              extra=(), normalize=_normalize_axes, needs_elements: bool = False,
              vjp: Callable | None = None, doc: str = "") -> OpDef:
    """Register a reduction over attrs `axes` (+ `keepdims` and `extra` attrs).

    `fn(x, axes, keepdims, **extra)` computes it; `needs_elements` refuses reducing a
    zero-length axis (max and min have no identity)."""
    def infer(types, attrs):
        t = types[0]
        require(t, dtypes, name)
        axes = attrs["axes"]
        if needs_elements and any(t.shape[a] == 0 for a in axes):
            raise ShapeError(f"{name} over an empty axis of shape {t.shape} has no value "
                             f"(axes {axes})")
        return TensorType(reduced_shape(t.shape, axes, attrs["keepdims"]),
                          out_dtype(t.dtype))

    def impl(x, axes, keepdims, **kw):
        with np.errstate(all="ignore"):  # mean/var over zero elements is NaN, silently
            out = fn(x, axes, keepdims, **kw)
        return np.asarray(out, dtype=out_dtype(x.dtype.name))

    return register(OpDef(name, REDUCTION, infer, impl, attrs=AXES_ATTRS + tuple(extra),
                          arity=1, normalize=normalize, vjp=vjp, doc=doc))


def _sum(x, axes, keepdims):
    w = _acc(x)
    return np.sum(w, axis=axes, keepdims=keepdims, dtype=_sum_dtype(w.dtype.name))


def _mean(x, axes, keepdims):
    w = _acc(x)
    return np.sum(w, axis=axes, keepdims=keepdims) / w.dtype.type(_count(x, axes))


def _prod(x, axes, keepdims):
    w = _acc(x)  # ints keep their dtype (numpy would widen int32)
    return np.prod(w, axis=axes, keepdims=keepdims, dtype=w.dtype)


def _max(x, axes, keepdims):
    return np.max(x, axis=axes, keepdims=keepdims) if axes else x.copy()


def _min(x, axes, keepdims):
    return np.min(x, axis=axes, keepdims=keepdims) if axes else x.copy()


def _var(x, axes, keepdims, correction):
    # two passes (mean, then squared deviations): no cancellation of E[x^2] - E[x]^2
    w = _acc(x)
    n = _count(x, axes)
    mean = np.sum(w, axis=axes, keepdims=True) / w.dtype.type(n)
    dev = np.square(w - mean)
    # N - correction <= 0 divides by 0: inf or NaN, as in torch and numpy
    return np.sum(dev, axis=axes, keepdims=keepdims) / w.dtype.type(max(n - correction, 0))


def _var_normalize(types, attrs):
    if attrs["correction"] < 0:
        raise ShapeError(f"var: correction must be >= 0, got {attrs['correction']}")
    return _normalize_axes(types, attrs)


# -- VJPs: (g, out, [x], attrs) -> [dx], built with the Tensor API -------------------------------
def _sum_vjp(g, out, inputs, attrs):
    (x,) = inputs
    return [expand_reduced(g, x.shape, attrs["axes"], attrs["keepdims"])]


def _mean_vjp(g, out, inputs, attrs):
    (x,) = inputs
    n = max(_count(x, attrs["axes"]), 1)  # over zero elements the gradient is empty anyway
    return [expand_reduced(g * (1.0 / n), x.shape, attrs["axes"], attrs["keepdims"])]


def _prod_vjp(g, out, inputs, attrs):
    """d prod / d x_i is the product of the others, computed without dividing by zero: with
    no zero in the slice it is prod / x_i; with one zero, the zero's entry is the product of
    the nonzero entries and the others get 0; with two or more zeros every entry is 0."""
    (x,) = inputs
    axes, keepdims = attrs["axes"], attrs["keepdims"]
    is_zero = x == 0
    nonzero = emit("where", is_zero, scalar(1, x.dtype), x)
    p = emit("prod", nonzero, axes=axes, keepdims=True)
    zeros = emit("sum", is_zero.cast(x.dtype), axes=axes, keepdims=True)
    nothing = zero(x.dtype)
    others = emit("where", is_zero, emit("where", zeros == 1, p, nothing),
                  emit("where", zeros == 0, p / nonzero, nothing))
    return [keep_reduced(g, x.shape, axes, keepdims) * others]


def _extremum_vjp(g, out, inputs, attrs):
    """max/min: the gradient is split evenly among the elements equal to the extremum (as
    torch.amax/amin do)."""
    (x,) = inputs
    axes, keepdims = attrs["axes"], attrs["keepdims"]
    hit = x == keep_reduced(out, x.shape, axes, keepdims)
    count = emit("sum", hit.cast(x.dtype), axes=axes, keepdims=True)
    share = keep_reduced(g, x.shape, axes, keepdims) / count
    return [emit("where", hit, share, zero(x.dtype))]


def _var_vjp(g, out, inputs, attrs):
    (x,) = inputs
    axes, keepdims = attrs["axes"], attrs["keepdims"]
    dof = _count(x, axes) - attrs["correction"]
    # dof <= 0 makes the variance inf or NaN; its gradient is NaN
    scale = 2.0 / dof if dof > 0 else math.nan
    d = x - emit("mean", x, axes=axes, keepdims=True)
    return [d * (keep_reduced(g, x.shape, axes, keepdims) * scale)]


reduction("sum", _sum, ALL, _sum_dtype, vjp=_sum_vjp, doc="Sum; bool counts as int64, ints "
          "keep their dtype (and wrap on overflow).")
reduction("mean", _mean, FLOATS, vjp=_mean_vjp, doc="Arithmetic mean (floats only).")
reduction("prod", _prod, NUMERIC, vjp=_prod_vjp, doc="Product; ints keep their dtype. The "
          "gradient is exact where x has zeros (the product of the other elements).")
reduction("max", _max, ALL, needs_elements=True, vjp=_extremum_vjp,
          doc="Maximum; NaN propagates. Ties split the gradient evenly.")
reduction("min", _min, ALL, needs_elements=True, vjp=_extremum_vjp,
          doc="Minimum; NaN propagates. Ties split the gradient evenly.")
reduction("var", _var, FLOATS, extra=(Attr("correction", "int", 1),), normalize=_var_normalize,
          vjp=_var_vjp, doc="Variance: sum of squared deviations / (N - correction).")


# -- argmax, argmin --------------------------------------------------------------------------
def _normalize_axis(types: list[TensorType], attrs: dict) -> dict:
    return {**attrs, "axis": normalize_axis(attrs["axis"], types[0].ndim)}


def arg_reduction(name: str, fn: Callable, doc: str = "") -> OpDef:
    """Register argmax/argmin: the int64 index along `axis` (first one among ties)."""
    def infer(types, attrs):
        t = types[0]
        require(t, NUMERIC, name)
        axes = (attrs["axis"],) if t.ndim else ()
        if any(t.shape[a] == 0 for a in axes):
            raise ShapeError(f"{name} over an empty axis of shape {t.shape} has no value "
                             f"(axis {attrs['axis']})")
        return TensorType(reduced_shape(t.shape, axes, attrs["keepdims"]), "int64")

    def impl(x, axis, keepdims):
        if x.ndim == 0:  # a scalar's only element
            return np.zeros((), np.int64)
        return np.asarray(fn(x, axis=axis, keepdims=keepdims), dtype=np.int64)

    return register(OpDef(name, REDUCTION, infer, impl,
                          attrs=(Attr("axis", "int"), Attr("keepdims", "bool", False)),
                          arity=1, normalize=_normalize_axis, nondiff=(0,), doc=doc))


# numpy treats NaN as the extreme value, so the first NaN wins (as torch does)
arg_reduction("argmax", np.argmax, doc="Index of the maximum; first among ties, first NaN.")
arg_reduction("argmin", np.argmin, doc="Index of the minimum; first among ties, first NaN.")
