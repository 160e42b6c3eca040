"""Elementwise ops: unary math and activations, binary arithmetic with NumPy broadcasting,
comparisons, logical ops, where, cast, the source ops full and arange, tril/triu, one_hot and
stop_gradient, each with its VJP (comparisons, logical ops, one_hot's index and stop_gradient
carry no gradient; full and arange take no inputs).

Semantics where NumPy and PyTorch differ are chosen once here (see docs/ops.md). Every impl
returns an array of exactly the dtype its `infer` rule gives: constants are made in the
input's dtype so that float32 stays float32. erf and the erf form of gelu are computed in
float64 for every float dtype, a few float16 helpers in float32; each rounds once at the end.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from dlc.errors import ShapeError
from dlc.ir.types import FLOATS, INTS, TensorType
from dlc.ops.common import broadcast_shapes, same_dtype
from dlc.ir.builder import emit
from dlc.ops.registry import ELEMENTWISE, Attr, OpDef, register
from dlc.ops.vjp_utils import unbroadcast, zero

NUMERIC = FLOATS + INTS
ALL = NUMERIC + ("bool",)
BOOL = ("bool",)


def require(t: TensorType, allowed: Sequence[str], op: str, hint: str = "") -> None:
    """Raise a ShapeError naming the op when `t` has a dtype the op does not take."""
    if t.dtype not in allowed:
        raise ShapeError(f"{op} does not take dtype {t.dtype}; expected one of "
                         f"{', '.join(allowed)}" + (f" ({hint})" if hint else ""))


def unary(name: str, fn: Callable, dtypes: Sequence[str] = FLOATS, attrs=(),
          normalize=None, doc: str = "", vjp: Callable | None = None,
          nondiff: tuple[int, ...] = (), decompose: Callable | None = None) -> OpDef:
    """Register a unary op whose output has the input's type."""
    def infer(types, attrs):
        require(types[0], dtypes, name)
        return types[0]

    def impl(x, **kw):
        with np.errstate(all="ignore"):  # log(-1) is NaN and overflow is inf, silently
            return np.asarray(fn(x, **kw), dtype=x.dtype)

    return register(OpDef(name, ELEMENTWISE, infer, impl, attrs=tuple(attrs), arity=1,
                          normalize=normalize, vjp=vjp, nondiff=nondiff, decompose=decompose,
                          doc=doc))


def binary(name: str, fn: Callable, dtypes: Sequence[str] = NUMERIC, result: str | None = None,
           hint: str = "", doc: str = "", vjp: Callable | None = None,
           nondiff: tuple[int, ...] = ()) -> OpDef:
    """Register a broadcasting binary op; `result` fixes the output dtype (comparisons)."""
    def infer(types, attrs):
        dtype = same_dtype(types, name)
        require(types[0], dtypes, name, hint)
        return TensorType(broadcast_shapes(types[0].shape, types[1].shape), result or dtype)

    def impl(a, b):
        with np.errstate(all="ignore"):  # integer x // 0 and x % 0 give 0 without a warning
            return np.asarray(fn(a, b), dtype=result or a.dtype)

    return register(OpDef(name, ELEMENTWISE, infer, impl, arity=2, vjp=vjp, nondiff=nondiff,
                          doc=doc))


def _c(value: float, x: np.ndarray):
    """A scalar constant in x's dtype, so arithmetic with it keeps x's precision."""
    return x.dtype.type(value)


def _wide(x: np.ndarray) -> np.ndarray:
    """float16 computed in float32 (rounded once at the end); other dtypes as they are."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


# -- erf and erfc in float64 precision, vectorized ----------------------------------------------
# erf, |x| < 1.5: the Maclaurin series 2/sqrt(pi) * sum_k (-1)^k x^(2k+1) / (k! (2k+1)) with 26
# terms (the last one at 1.5 is ~1e-18 of the sum). erf, 1.5 <= |x| < 6: 1 - erfc(|x|), with
# erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))) evaluated bottom-up
# from a fixed depth: 80 levels converge for x >= 1.5, 250 for x >= 1. erfc(6) < 2^-54, so
# erf rounds to +-1 from 6 on. Measured against math.erf: max relative error ~5e-16.
_SERIES_END, _ONE_FROM, _SERIES_TERMS = 1.5, 6.0, 26
_SERIES = tuple((-1) ** k * 2.0 / math.sqrt(math.pi) / (math.factorial(k) * (2 * k + 1))
                for k in range(_SERIES_TERMS))
_DEPTH_FROM_1, _DEPTH_FROM_SERIES_END = 250, 80


def _erf_series(x: np.ndarray) -> np.ndarray:
    x2 = x * x
    acc = np.full_like(x, _SERIES[-1])
    for c in reversed(_SERIES[:-1]):
        acc = c + x2 * acc
    return x * acc


def _exp_neg_square(x: np.ndarray) -> np.ndarray:
    """exp(-x^2) without the rounding error of x*x: x = hi + lo with hi on a 2^-12 grid, so
    hi*hi is exact and x^2 = hi^2 + lo*(x + hi). exp(-inf^2) is 0."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf at x = inf
        hi = np.round(x * 4096.0) / 4096.0
        out = np.exp(-hi * hi) * np.exp(-(x - hi) * (x + hi))
    return np.where(np.isinf(x), 0.0, out)


def _erfc_fraction(x: np.ndarray, depth: int) -> np.ndarray:
    """erfc(x) for x >= 1 by the continued fraction; NaN stays NaN, erfc(inf) = 0."""
    t = x.copy()
    for k in range(depth, 0, -1):
        t = x + (0.5 * k) / t
    return _exp_neg_square(x) / (math.sqrt(math.pi) * t)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function in float64 precision (max relative error ~5e-16); NaN stays NaN.

    The result has x's dtype; narrower floats are computed in float64 and rounded once."""
    x = np.asarray(x)
    ax = np.abs(x.astype(np.float64)).ravel()
    out = np.where(np.isnan(ax), np.nan, 1.0)  # NaN, and 1 for |x| >= _ONE_FROM
    small = ax < _SERIES_END
    mid = (ax >= _SERIES_END) & (ax < _ONE_FROM)
    out[small] = _erf_series(ax[small])
    out[mid] = 1.0 - _erfc_fraction(ax[mid], _DEPTH_FROM_SERIES_END)
    return np.copysign(out.reshape(x.shape), x).astype(x.dtype)


def erfc(x: np.ndarray) -> np.ndarray:
    """1 - erf(x) for float64 x, without the cancellation where erf(x) is close to 1.

    Max relative error ~1e-15 while the result is a normal float; NaN stays NaN."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.ravel()
    out = 1.0 - erf(flat)  # below x = 1 erfc > 0.15, so the subtraction loses little
    near = (flat >= 1.0) & (flat < _SERIES_END)
    far = flat >= _SERIES_END
    out[near] = _erfc_fraction(flat[near], _DEPTH_FROM_1)
    out[far] = _erfc_fraction(flat[far], _DEPTH_FROM_SERIES_END)
    return out.reshape(x.shape)


# -- activations -------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of -|x| never overflows; both branches are exact rearrangements of 1/(1+exp(-x)).
    e = np.exp(-np.abs(x))
    one = _c(1, x)
    return np.where(x >= 0, one / (one + e), e / (one + e))


def _leaky_relu(x: np.ndarray, negative_slope: float) -> np.ndarray:
    return np.where(x > 0, x, x * _c(negative_slope, x))


def _gelu_erf(x: np.ndarray) -> np.ndarray:
    # 1 + erf(x / sqrt 2) written as erfc(-x / sqrt 2): no cancellation for negative x
    w = x.astype(np.float64)
    return 0.5 * w * erfc(-w / math.sqrt(2.0))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    w = _wide(x)
    inner = _c(math.sqrt(2 / math.pi), w) * (w + _c(0.044715, w) * w * w * w)
    return _c(0.5, w) * w * (_c(1, w) + np.tanh(inner))


GELU_FORMS = {"none": _gelu_erf, "tanh": _gelu_tanh}


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    return GELU_FORMS[approximate](x)


def _gelu_normalize(types, attrs):
    if attrs["approximate"] not in GELU_FORMS:
        raise ShapeError(f"gelu: approximate must be one of {sorted(GELU_FORMS)}, got "
                         f"{attrs['approximate']!r}")
    return attrs


def _silu(x: np.ndarray) -> np.ndarray:
    return x * _sigmoid(x)


def _softplus(x: np.ndarray, beta: float, threshold: float) -> np.ndarray:
    # log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)) never overflows; above the threshold
    # the result is x itself, as in torch.nn.functional.softplus.
    w = _wide(x)
    z = w * _c(beta, w)
    smooth = (np.maximum(z, _c(0, w)) + np.log1p(np.exp(-np.abs(z)))) / _c(beta, w)
    return np.where(z > _c(threshold, w), w, smooth)


def _softplus_normalize(types, attrs):
    if attrs["beta"] == 0:
        raise ShapeError("softplus: beta must be nonzero, got 0.0")
    return attrs


# -- VJPs --------------------------------------------------------------------------------------
# Each takes (g, out, inputs, attrs) and returns one cotangent per input (None: zero), built
# with the Tensor API. Piecewise-constant ops (sign, floor, ceil, round, floor_div) have a zero
# gradient almost everywhere, as in PyTorch; kinks take the one-sided value PyTorch takes
# (relu'(0) = 0, abs'(0) = 0).
def _zero_vjp(g, out, inputs, attrs):
    return [None] * len(inputs)


def _where0(cond, x):
    return emit("where", cond, x, zero(x.dtype))


def _gelu_erf_slope(x):
    """d/dx x Phi(x) = Phi(x) + x phi(x)."""
    cdf = ((x * (1 / math.sqrt(2.0))).erf() + 1.0) * 0.5
    pdf = (x * x * -0.5).exp() * (1 / math.sqrt(2 * math.pi))
    return cdf + x * pdf


def _gelu_tanh_slope(x):
    """d/dx 0.5 x (1 + tanh(k (x + c x^3))), k = sqrt(2/pi), c = 0.044715."""
    k, c = math.sqrt(2 / math.pi), 0.044715
    x2 = x * x
    t = ((x2 * c + 1.0) * x * k).tanh()
    return (t + 1.0) * 0.5 + x * 0.5 * (1.0 - t * t) * (x2 * (3 * c) + 1.0) * k


def _gelu_vjp(g, out, inputs, attrs):
    (x,) = inputs
    slope = _gelu_erf_slope if attrs["approximate"] == "none" else _gelu_tanh_slope
    return [g * slope(x)]


def _silu_vjp(g, out, inputs, attrs):
    (x,) = inputs
    s = x.sigmoid()
    return [g * s * (x * (1.0 - s) + 1.0)]


def _softplus_vjp(g, out, inputs, attrs):
    # sigmoid(beta x) below the threshold; above it the op is x itself (slope 1)
    (x,) = inputs
    z = x * attrs["beta"]
    return [emit("where", z > attrs["threshold"], g, g * z.sigmoid())]


UNARY_VJPS: dict[str, Callable] = {
    "neg": lambda g, out, ins, attrs: [-g],
    "abs": lambda g, out, ins, attrs: [g * ins[0].sign()],
    "exp": lambda g, out, ins, attrs: [g * out],
    "log": lambda g, out, ins, attrs: [g / ins[0]],
    "sqrt": lambda g, out, ins, attrs: [g * 0.5 / out],
    "rsqrt": lambda g, out, ins, attrs: [g * -0.5 * out * out * out],
    "sin": lambda g, out, ins, attrs: [g * ins[0].cos()],
    "cos": lambda g, out, ins, attrs: [-(g * ins[0].sin())],
    "tanh": lambda g, out, ins, attrs: [g * (1.0 - out * out)],
    "sigmoid": lambda g, out, ins, attrs: [g * out * (1.0 - out)],
    "erf": lambda g, out, ins, attrs: [
        g * (-ins[0] * ins[0]).exp() * (2 / math.sqrt(math.pi))],
    "reciprocal": lambda g, out, ins, attrs: [-(g * out * out)],
    "log1p": lambda g, out, ins, attrs: [g / (ins[0] + 1.0)],
    "expm1": lambda g, out, ins, attrs: [g * (out + 1.0)],
    "relu": lambda g, out, ins, attrs: [_where0(ins[0] > 0, g)],
    "leaky_relu": lambda g, out, ins, attrs: [
        emit("where", ins[0] > 0, g, g * attrs["negative_slope"])],
    "gelu": _gelu_vjp,
    "silu": _silu_vjp,
    "softplus": _softplus_vjp,
    "sign": _zero_vjp, "floor": _zero_vjp, "ceil": _zero_vjp, "round": _zero_vjp,
}


def _add_vjp(g, out, inputs, attrs):
    a, b = inputs
    return [unbroadcast(g, a.shape), unbroadcast(g, b.shape)]


def _sub_vjp(g, out, inputs, attrs):
    a, b = inputs
    return [unbroadcast(g, a.shape), -unbroadcast(g, b.shape)]


def _mul_vjp(g, out, inputs, attrs):
    a, b = inputs
    return [unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape)]


def _div_vjp(g, out, inputs, attrs):
    a, b = inputs
    ga = g / b
    return [unbroadcast(ga, a.shape), -unbroadcast(ga * out, b.shape)]


def _mod_vjp(g, out, inputs, attrs):
    # a mod b = a - b floor(a / b): d/da = 1, d/db = -floor(a / b) (away from the jumps)
    a, b = inputs
    return [unbroadcast(g, a.shape), -unbroadcast(g * (a // b), b.shape)]


def _pow_vjp(g, out, inputs, attrs):
    # As PyTorch: d/da is 0 where b == 0 (0 ** -1 would make it NaN at a == 0); d/db is 0
    # where a == 0 and b >= 0 (log 0 = -inf times 0 ** b); where a < 0, d/db is NaN (the
    # real power has no derivative in b there) while d/da is b a^(b-1), finite for integer b.
    a, b = inputs
    ga = emit("where", b == 0.0, zero(g.dtype), g * b * a ** (b - 1.0))
    gb = emit("where", emit("logical_and", a == 0.0, b >= 0.0), zero(g.dtype),
              g * out * a.log())
    return [unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)]


def _extremum_vjp(wins_a, wins_b):
    """maximum/minimum: the gradient goes to the winner; ties split it evenly, and a NaN
    (which wins) takes all of it, as PyTorch does."""
    def vjp(g, out, inputs, attrs):
        a, b = inputs
        shared = emit("where", a == b, g * 0.5, g)
        ga = _where0(emit("logical_not", wins_b(a, b)), shared)
        gb = _where0(emit("logical_not", wins_a(a, b)), shared)
        return [unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)]
    return vjp


BINARY_VJPS: dict[str, Callable] = {
    "add": _add_vjp, "sub": _sub_vjp, "mul": _mul_vjp, "div": _div_vjp, "mod": _mod_vjp,
    "pow": _pow_vjp, "floor_div": _zero_vjp,
    "maximum": _extremum_vjp(lambda a, b: a > b, lambda a, b: b > a),
    "minimum": _extremum_vjp(lambda a, b: a < b, lambda a, b: b < a),
}


# -- unary math ----------------------------------------------------------------------------------
def _unary(name: str, fn: Callable, dtypes: Sequence[str] = FLOATS, **kw) -> OpDef:
    return unary(name, fn, dtypes, vjp=UNARY_VJPS[name], **kw)


_unary("neg", np.negative, NUMERIC)
_unary("abs", np.abs, NUMERIC, doc="Gradient sign(x): 0 at 0.")
_unary("sign", np.sign, NUMERIC, doc="-1, 0 or 1; sign(0) = 0 and NaN stays NaN. Gradient 0.")
_unary("exp", np.exp)
_unary("log", np.log)
_unary("sqrt", np.sqrt)
_unary("rsqrt", lambda x: np.reciprocal(np.sqrt(x)), doc="1 / sqrt(x).")
_unary("sin", np.sin)
_unary("cos", np.cos)
_unary("tanh", np.tanh)
_unary("sigmoid", _sigmoid, doc="1 / (1 + exp(-x)), without overflow for large |x|.")
_unary("erf", erf, doc="The error function, float64-accurate.")
_unary("reciprocal", np.reciprocal)
_unary("log1p", np.log1p, doc="log(1 + x), accurate for small x.")
_unary("expm1", np.expm1, doc="exp(x) - 1, accurate for small x.")
_unary("floor", np.floor, doc="Gradient 0.")
_unary("ceil", np.ceil, doc="Gradient 0.")
_unary("round", np.rint, doc="Round to the nearest integer, halves to even. Gradient 0.")
_unary("relu", lambda x: np.maximum(x, np.zeros((), x.dtype)), NUMERIC,
       doc="max(x, 0); gradient 0 at 0.")
_unary("leaky_relu", _leaky_relu, attrs=(Attr("negative_slope", "float", 0.01),))
_unary("gelu", _gelu, attrs=(Attr("approximate", "str", "none"),), normalize=_gelu_normalize,
       doc='"none": 0.5 x (1 + erf(x / sqrt 2)); "tanh": the tanh approximation.')
_unary("silu", _silu, doc="x * sigmoid(x).")
_unary("softplus", _softplus,
       attrs=(Attr("beta", "float", 1.0), Attr("threshold", "float", 20.0)),
       normalize=_softplus_normalize,
       doc="log(1 + exp(beta x)) / beta; x itself where beta x > threshold.")
unary("logical_not", np.logical_not, BOOL, nondiff=(0,))
# stop_gradient: its input is nondiff, so no gradient reaches it; the zero VJP keeps autodiff
# from decomposing it, and the decomposition (x itself) removes it before a backend sees it
unary("stop_gradient", np.copy, ALL, nondiff=(0,), vjp=_zero_vjp,
      decompose=lambda inputs, attrs: inputs[0],
      doc="The identity; autodiff passes no gradient through it (dlc.stop_gradient, "
          "Tensor.detach).")


# -- binary arithmetic -----------------------------------------------------------------------------
def _binary(name: str, fn: Callable, dtypes: Sequence[str] = NUMERIC, **kw) -> OpDef:
    return binary(name, fn, dtypes, vjp=BINARY_VJPS[name], **kw)


_binary("add", np.add)
_binary("sub", np.subtract)
_binary("mul", np.multiply)
_binary("div", np.true_divide, FLOATS,
        hint="true division of integers is refused: use floor_div, or cast to a float first",
        doc="True division of floats.")
_binary("floor_div", np.floor_divide,
        doc="floor(a / b); integer division by zero gives 0. Gradient 0.")
_binary("mod", np.mod, doc="a - b * floor(a / b): the divisor's sign; integer x % 0 gives 0. "
                           "Gradients 1 and -floor(a / b).")
_binary("pow", np.power, FLOATS,
        doc="a ** b. Gradients as PyTorch: 0 for a where b == 0, 0 for b where a == 0 and "
            "b >= 0, NaN for b where a < 0.")
_binary("maximum", np.maximum,
        doc="Elementwise max; NaN propagates. Ties split the gradient evenly.")
_binary("minimum", np.minimum,
        doc="Elementwise min; NaN propagates. Ties split the gradient evenly.")

# -- comparisons and logic (no gradient) -----------------------------------------------------------
COMPARISONS = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
               "gt": np.greater, "ge": np.greater_equal}
for _name, _fn in COMPARISONS.items():
    binary(_name, _fn, ALL, result="bool", nondiff=(0, 1))
for _name, _fn in {"logical_and": np.logical_and, "logical_or": np.logical_or,
                   "logical_xor": np.logical_xor}.items():
    binary(_name, _fn, BOOL, nondiff=(0, 1))


# -- where, cast -------------------------------------------------------------------------------
def _where_infer(types, attrs):
    cond, a, b = types
    if cond.dtype != "bool":
        raise ShapeError(f"where: condition must be bool, got {cond.dtype}")
    dtype = same_dtype([a, b], "where")
    return TensorType(broadcast_shapes(cond.shape, a.shape, b.shape), dtype)


def _where(cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.where(cond, a, b), dtype=a.dtype)


def _where_vjp(g, out, inputs, attrs):
    cond, a, b = inputs
    return [None, unbroadcast(_where0(cond, g), a.shape),
            unbroadcast(emit("where", cond, zero(g.dtype), g), b.shape)]


register(OpDef("where", ELEMENTWISE, _where_infer, _where, arity=3, nondiff=(0,),
               vjp=_where_vjp, doc="where(cond, a, b): a where cond is true, else b."))


def _cast(x: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(all="ignore"):  # NaN or out-of-range float -> int is undefined
        return x.astype(dtype)


def _cast_vjp(g, out, inputs, attrs):
    # a float -> float cast passes the gradient back in the input's dtype; to or from an
    # integer or bool there is none
    (x,) = inputs
    return [g.cast(x.dtype) if x.dtype in FLOATS and g.dtype in FLOATS else None]


register(OpDef(
    "cast", ELEMENTWISE, lambda types, attrs: types[0].with_dtype(attrs["dtype"]), _cast,
    attrs=(Attr("dtype", "dtype"),), arity=1, vjp=_cast_vjp,
    doc="Convert dtype. float->int truncates toward zero (C and PyTorch semantics). Only "
        "float->float casts pass a gradient."))


# -- sources: full, arange -------------------------------------------------------------------
def _check_shape(op: str, shape: Sequence[int]) -> None:
    if any(d < 0 for d in shape):
        raise ShapeError(f"{op}: negative dimension in shape {tuple(shape)}")


def _full_infer(types, attrs):
    _check_shape("full", attrs["shape"])
    value, dtype = attrs["value"], attrs["dtype"]
    if dtype in INTS and not (math.isfinite(value) and value == int(value)):
        raise ShapeError(f"full: value {value} is not an integer, the dtype is {dtype}")
    if dtype == "bool" and value not in (0.0, 1.0):
        raise ShapeError(f"full: value {value} is not 0 or 1, the dtype is bool")
    return TensorType(attrs["shape"], dtype)


def _full(shape: tuple[int, ...], value: float, dtype: str) -> np.ndarray:
    return np.full(shape, value, dtype=dtype)


register(OpDef(
    "full", ELEMENTWISE, _full_infer, _full,
    attrs=(Attr("shape", "ints"), Attr("value", "float"), Attr("dtype", "dtype", "float32")),
    arity=0, doc="A tensor filled with one value (zeros, ones and scalars are full)."))


def arange_length(start: float, stop: float, step: float) -> int:
    """ceil((stop - start) / step), or 0 where the range is empty."""
    return max(0, math.ceil((stop - start) / step))


def _arange_infer(types, attrs):
    start, stop, step, dtype = attrs["start"], attrs["stop"], attrs["step"], attrs["dtype"]
    if not all(math.isfinite(v) for v in (start, stop, step)):
        raise ShapeError(f"arange: start, stop and step must be finite, got {start}, {stop}, "
                         f"{step}")
    if step == 0:
        raise ShapeError("arange: step must be nonzero")
    if dtype == "bool":
        raise ShapeError("arange does not take dtype bool")
    if dtype in INTS and not (start == int(start) and step == int(step)):
        raise ShapeError(f"arange: start {start} and step {step} must be integers for dtype "
                         f"{dtype}")
    return TensorType((arange_length(start, stop, step),), dtype)


def _arange(start: float, stop: float, step: float, dtype: str) -> np.ndarray:
    n = arange_length(start, stop, step)
    if dtype in INTS:  # exact integer arithmetic (float64 loses integers past 2**53)
        return (int(start) + int(step) * np.arange(n, dtype=np.int64)).astype(dtype)
    # start + i * step in float64, rounded once to the dtype
    return (start + step * np.arange(n, dtype=np.float64)).astype(dtype)


register(OpDef(
    "arange", ELEMENTWISE, _arange_infer, _arange,
    attrs=(Attr("start", "float"), Attr("stop", "float"), Attr("step", "float", 1.0),
           Attr("dtype", "dtype", "int64")),
    arity=0, doc="start + i * step for i < ceil((stop - start) / step). Integer dtypes need "
                 "integer start and step."))


# -- tril, triu, one_hot ---------------------------------------------------------------------
def _triangle_infer(op: str):
    def infer(types, attrs):
        if types[0].ndim < 2:
            raise ShapeError(f"{op} needs rank >= 2 (it keeps a triangle of the last two "
                             f"axes), got shape {types[0].shape}")
        return types[0]
    return infer


def _triangle_vjp(op: str):
    """The gradient keeps the same triangle: tril(g, k) for tril, triu(g, k) for triu."""
    def vjp(g, out, inputs, attrs):
        return [emit(op, g, k=attrs["k"])]
    return vjp


register(OpDef("tril", ELEMENTWISE, _triangle_infer("tril"),
               lambda x, k: np.tril(x, k), attrs=(Attr("k", "int", 0),), arity=1,
               vjp=_triangle_vjp("tril"),
               doc="Zero above diagonal k of the last two axes (j - i > k)."))
register(OpDef("triu", ELEMENTWISE, _triangle_infer("triu"),
               lambda x, k: np.triu(x, k), attrs=(Attr("k", "int", 0),), arity=1,
               vjp=_triangle_vjp("triu"),
               doc="Zero below diagonal k of the last two axes (j - i < k)."))


def _one_hot_infer(types, attrs):
    require(types[0], INTS, "one_hot")
    if attrs["num_classes"] < 1:
        raise ShapeError(f"one_hot: num_classes must be >= 1, got {attrs['num_classes']}")
    return TensorType(types[0].shape + (attrs["num_classes"],), attrs["dtype"])


def _one_hot(idx: np.ndarray, num_classes: int, dtype: str) -> np.ndarray:
    classes = np.arange(num_classes, dtype=idx.dtype)
    return (idx[..., None] == classes).astype(dtype)


register(OpDef(
    "one_hot", ELEMENTWISE, _one_hot_infer, _one_hot,
    attrs=(Attr("num_classes", "int"), Attr("dtype", "dtype", "float32")), arity=1,
    nondiff=(0,), doc="out[..., c] = (idx == c). An index outside [0, num_classes) (negative "
                      "ones too) gives a row of zeros."))
