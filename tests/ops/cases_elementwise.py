"""Cases for dlc/ops/elementwise.py: every op against torch, with broadcasting, integer and
bool dtypes, NaN, halves, negative operands of floor_div/mod and float->int truncation.

The same cases drive the VJP checks (test_vjp_table.py). grad=False marks the cases whose
inputs sit where the function has no derivative (NaN and inf, jumps of round/floor_div/mod,
sign at 0, the real power of a negative base); each op also has cases away from them, and
the kinks that have a defined gradient (ties of maximum/minimum, abs at 0, pow at a zero
base) have cases of their own."""
import numpy as np
import torch
import torch.nn.functional as F

from tests.ops.harness import boolean, case, fixed, positive, randint, randn, uniform

INT = ("float32",)  # integer/bool cases run once: the case dtype does not reach their inputs
NAN = float("nan")


def small_ints(*shape: int, lo: int = -3, hi: int = 4):
    """Floats holding small integers, so that ties and equal values occur."""
    return lambda rng, dt: rng.integers(lo, hi, shape).astype(dt)


def away_from_zero(*shape: int, lo: float = 0.5, hi: float = 3.0):
    """Magnitudes in [lo, hi) with random signs: divisors that are never near zero."""
    return lambda rng, dt: (rng.uniform(lo, hi, shape) * rng.choice([-1, 1], shape)).astype(dt)


def nonzero_ints(*shape: int, dtype: str = "int64"):
    return lambda rng, dt: (rng.integers(1, 8, shape) * rng.choice([-1, 1], shape)).astype(dtype)


def tdtype(name: str):
    return getattr(torch, name)


# -- unary math ----------------------------------------------------------------------------------
case("neg", [randn(3, 4)], lambda x: -x)
case("neg", [randint(-50, 50, 3, 4, dtype="int32")], lambda x: -x, dtypes=INT)
case("abs", [randn(3, 4)], torch.abs)
case("abs", [fixed([-1.5, 0.0, 2.0, -0.0])], torch.abs, id="abs-zero")
case("abs", [randint(-50, 50, 5, dtype="int64")], torch.abs, dtypes=INT)
case("sign", [small_ints(4, 5)], torch.sign, grad=False, id="sign-zeros")
case("sign", [away_from_zero(4, 5)], torch.sign)
case("sign", [randint(-3, 4, 6, dtype="int32")], torch.sign, dtypes=INT)
case("exp", [randn(3, 4, scale=3.0)], torch.exp)
case("log", [positive(3, 4)], torch.log)
case("log", [fixed([0.0, -1.0, 1.0, np.inf])], torch.log, grad=False, id="log-edges")
case("sqrt", [positive(3, 4)], torch.sqrt)
case("rsqrt", [positive(3, 4)], torch.rsqrt)
case("sin", [randn(3, 4, scale=4.0)], torch.sin)
case("cos", [randn(3, 4, scale=4.0)], torch.cos)
case("tanh", [randn(3, 4, scale=3.0)], torch.tanh)
case("sigmoid", [randn(3, 4, scale=4.0)], torch.sigmoid)
case("sigmoid", [fixed([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0])], torch.sigmoid,
     id="sigmoid-large")
case("erf", [uniform(-4.0, 4.0, 6, 7)], torch.erf)
case("erf", [fixed([-10.0, -5.9, -1.5, -0.0, 1e-30, 0.7, 1.5, 2.5, 6.0, np.inf, NAN])],
     torch.erf, grad=False, id="erf-edges")
case("reciprocal", [away_from_zero(3, 4)], torch.reciprocal)
case("log1p", [uniform(-0.9, 3.0, 3, 4)], torch.log1p)
case("log1p", [fixed([1e-12, -1e-9, 3e-7, 1e-4])], torch.log1p, id="log1p-tiny")
case("expm1", [randn(3, 4)], torch.expm1)
case("expm1", [fixed([1e-12, -1e-9, 3e-7, -1e-4])], torch.expm1, id="expm1-tiny")
case("floor", [randn(3, 4, scale=3.0)], torch.floor)
case("ceil", [randn(3, 4, scale=3.0)], torch.ceil)
case("round", [randn(3, 4, scale=3.0)], torch.round)
case("round", [fixed([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999997, -0.51])],
     torch.round, grad=False, id="round-halves")

# -- activations ---------------------------------------------------------------------------------
case("relu", [randn(5, 6)], torch.relu)
case("relu", [randint(-5, 5, 7, dtype="int64")], torch.relu, dtypes=INT)
case("relu", [fixed([NAN, -1.0, 0.0, 2.0])], torch.relu, grad=False, id="relu-nan")
case("leaky_relu", [randn(4, 5)], lambda x: F.leaky_relu(x))
case("leaky_relu", [randn(4, 5)], lambda x, negative_slope: F.leaky_relu(x, negative_slope),
     attrs={"negative_slope": 0.2})
case("gelu", [randn(4, 5, scale=2.0)], lambda x: F.gelu(x))
case("gelu", [randn(4, 5, scale=2.0)], lambda x, approximate: F.gelu(x, approximate=approximate),
     attrs={"approximate": "none"})
case("gelu", [randn(4, 5, scale=2.0)], lambda x, approximate: F.gelu(x, approximate=approximate),
     attrs={"approximate": "tanh"})
case("silu", [randn(4, 5, scale=3.0)], F.silu)
case("silu", [fixed([-1000.0, -50.0, 0.0, 50.0, 1000.0])], F.silu, id="silu-large")
case("softplus", [randn(4, 5, scale=5.0)], lambda x: F.softplus(x))
case("softplus", [randn(4, 5, scale=5.0)],
     lambda x, beta, threshold: F.softplus(x, beta=beta, threshold=threshold),
     attrs={"beta": 2.0, "threshold": 5.0})
case("softplus", [fixed([-1000.0, -30.0, 19.9, 20.1, 1000.0])], lambda x: F.softplus(x),
     id="softplus-large")
case("logical_not", [boolean(3, 4)], torch.logical_not, dtypes=INT)
case("stop_gradient", [randn(3, 4)], lambda x: x.detach())
case("stop_gradient", [randint(-9, 9, 5, dtype="int32")], lambda x: x, dtypes=INT)

# -- binary arithmetic ---------------------------------------------------------------------------
case("add", [randn(3, 4), randn(4)], lambda a, b: a + b)
case("add", [randint(-9, 9, 2, 1, 3, dtype="int32"), randint(-9, 9, 4, 1, dtype="int32")],
     torch.add, dtypes=INT)
case("sub", [randn(2, 1, 4), randn(3, 1)], lambda a, b: a - b)
case("sub", [randint(-9, 9, 3, dtype="int64"), randint(-9, 9, 2, 3, dtype="int64")],
     torch.sub, dtypes=INT)
case("mul", [randn(2, 1, 4), randn(3, 1)], lambda a, b: a * b)
case("mul", [randn(1), randn(2, 3)], lambda a, b: a * b, id="mul-size-1")
case("mul", [randint(-9, 9, 3, 4, dtype="int64"), randint(-9, 9, 4, dtype="int64")],
     torch.mul, dtypes=INT)
case("div", [randn(3, 4), away_from_zero(3, 1)], torch.div)
def _floor_div_grad_ref(a, b):
    """torch cannot differentiate floor_divide; division rounding down is the same function."""
    return torch.div(a, b, rounding_mode="floor")


case("floor_div", [randn(4, 5, scale=5.0), away_from_zero(5)], torch.floor_divide,
     extra={"grad_ref": _floor_div_grad_ref})
case("floor_div", [fixed([7.0, -7.0, 7.0, -7.0, 0.5, -0.5]),
                   fixed([2.0, 2.0, -2.0, -2.0, 0.1, 3.0])],
     torch.floor_divide, grad=False, id="floor_div-signs")
case("floor_div", [randint(-20, 20, 4, 5, dtype="int64"), nonzero_ints(5)],
     torch.floor_divide, dtypes=INT)
case("floor_div", [randint(-20, 20, 3, 4, dtype="int32"), nonzero_ints(3, 1, dtype="int32")],
     torch.floor_divide, dtypes=INT)
case("mod", [randn(4, 5, scale=5.0), away_from_zero(5)], torch.remainder)
case("mod", [fixed([7.0, -7.0, 7.0, -7.0, 0.0, -0.5]), fixed([2.0, 2.0, -2.0, -2.0, 3.0, 3.0])],
     torch.remainder, grad=False, id="mod-signs")
case("mod", [randint(-20, 20, 4, 5, dtype="int64"), nonzero_ints(5)], torch.remainder,
     dtypes=INT)
case("mod", [randint(-20, 20, 3, 4, dtype="int32"), nonzero_ints(3, 1, dtype="int32")],
     torch.remainder, dtypes=INT)
case("pow", [positive(3, 4), randn(4)], torch.pow)
case("pow", [fixed([-2.0, -2.0, -3.0, 0.0, -1.5]), fixed([2.0, 3.0, -1.0, 0.5, 0.5])],
     torch.pow, grad=False, id="pow-negative-base")
# a negative base with integer exponents has a derivative in the base only (d/db is NaN);
# a zero base: d/da = 0 for b = 2 and b = 0 (not 0 * 0**-1), and d/db = 0 for b >= 0
case("pow", [fixed([-2.0, -1.5, -3.0, 0.5]), fixed([2.0, 3.0, -1.0, 4.0])], torch.pow,
     extra={"wrt": [0]}, id="pow-negative-base-integer-exponent")
case("pow", [fixed([0.0, 0.0, 0.0, 2.0]), fixed([2.0, 1.0, 3.0, 0.0])], torch.pow,
     id="pow-zero-base")
case("pow", [fixed([0.0, 0.0, 1.5]), fixed([0.0, 0.0, 0.0])], torch.pow, extra={"wrt": [0]},
     id="pow-zero-base-zero-exponent")
case("maximum", [randn(3, 4), randn(4)], torch.maximum)
case("maximum", [fixed([NAN, 1.0, NAN, -2.0]), fixed([0.0, NAN, NAN, 3.0])], torch.maximum,
     grad=False, id="maximum-nan")
# small integers tie often: a tie splits the gradient evenly (central differences agree)
case("maximum", [small_ints(3, 4), small_ints(4)], torch.maximum, id="maximum-ties")
case("maximum", [randint(-9, 9, 3, 4, dtype="int32"), randint(-9, 9, 1, 4, dtype="int32")],
     torch.maximum, dtypes=INT)
case("minimum", [randn(3, 1), randn(1, 4)], torch.minimum)
case("minimum", [fixed([NAN, 1.0, NAN, -2.0]), fixed([0.0, NAN, NAN, 3.0])], torch.minimum,
     grad=False, id="minimum-nan")
case("minimum", [small_ints(3, 1), small_ints(1, 4)], torch.minimum, id="minimum-ties")
case("minimum", [randint(-9, 9, 3, 4, dtype="int64"), randint(-9, 9, 4, dtype="int64")],
     torch.minimum, dtypes=INT)

# -- comparisons and logic -----------------------------------------------------------------------
_CMP = {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt,
        "ge": torch.ge}
for _op, _ref in _CMP.items():
    case(_op, [small_ints(3, 4), small_ints(4)], _ref)
    case(_op, [randint(-2, 3, 2, 3, dtype="int32"), randint(-2, 3, 3, dtype="int32")], _ref,
         dtypes=INT)
    case(_op, [boolean(3, 1), boolean(1, 4)], _ref, dtypes=INT)
case("eq", [fixed([NAN, 1.0, NAN]), fixed([NAN, 1.0, 2.0])], torch.eq, id="eq-nan")
case("ne", [fixed([NAN, 1.0, NAN]), fixed([NAN, 1.0, 2.0])], torch.ne, id="ne-nan")
case("lt", [fixed([NAN, 1.0, -np.inf]), fixed([0.0, NAN, 2.0])], torch.lt, id="lt-nan")
case("logical_and", [boolean(3, 4), boolean(4)], torch.logical_and, dtypes=INT)
case("logical_or", [boolean(3, 1), boolean(1, 4)], torch.logical_or, dtypes=INT)
case("logical_xor", [boolean(2, 3, 4), boolean(3, 4)], torch.logical_xor, dtypes=INT)

# -- where, cast ---------------------------------------------------------------------------------
case("where", [boolean(3, 4), randn(3, 4), randn(4)], torch.where)
case("where", [boolean(3, 1), randn(1, 4), randn(3, 4)], torch.where, id="where-broadcast")
case("where", [boolean(5), randint(-9, 9, 2, 5, dtype="int64"),
               randint(-9, 9, 5, dtype="int64")], torch.where, dtypes=INT)


def _cast_ref(x, dtype):
    return x.to(tdtype(dtype))


case("cast", [randn(3, 4, scale=5.0)], _cast_ref, attrs={"dtype": "int64"}, id="cast-trunc-i64")
case("cast", [randn(3, 4, scale=5.0)], _cast_ref, attrs={"dtype": "int32"}, id="cast-trunc-i32")
case("cast", [fixed([-2.9, -2.5, -1.0, -0.7, -0.0, 0.7, 1.0, 2.5, 2.9])], _cast_ref,
     attrs={"dtype": "int64"}, id="cast-trunc-fixed")
case("cast", [small_ints(3, 4, lo=-1, hi=2)], _cast_ref, attrs={"dtype": "bool"},
     id="cast-to-bool")
case("cast", [randn(3, 4)], _cast_ref, attrs={"dtype": "float64"}, id="cast-to-f64")
case("cast", [randn(3, 4)], _cast_ref, attrs={"dtype": "float32"}, id="cast-to-f32")
# the gradient of a narrowing cast comes back in float64 (checked against torch only: a
# float32 output rounds away a finite-difference step)
case("cast", [lambda rng, dt: rng.standard_normal((3, 4))], _cast_ref,
     attrs={"dtype": "float32"}, dtypes=("float32",), id="cast-f64-to-f32")
case("cast", [lambda rng, dt: rng.standard_normal((3, 4)).astype(np.float32)], _cast_ref,
     attrs={"dtype": "float64"}, dtypes=("float32",), id="cast-f32-to-f64")
case("cast", [randint(-99, 99, 3, 4, dtype="int32")], _cast_ref, attrs={"dtype": "float32"},
     dtypes=INT, id="cast-i32-to-f32")
case("cast", [randint(-99, 99, 3, 4, dtype="int64")], _cast_ref, attrs={"dtype": "int32"},
     dtypes=INT, id="cast-i64-to-i32")
case("cast", [boolean(3, 4)], _cast_ref, attrs={"dtype": "float64"}, dtypes=INT,
     id="cast-bool-to-f64")


# -- sources -------------------------------------------------------------------------------------
def _full_ref(shape, value, dtype="float32"):
    return torch.full(shape, value, dtype=tdtype(dtype))


case("full", [], _full_ref, attrs={"shape": (2, 3), "value": 1.5}, dtypes=INT)
case("full", [], _full_ref, attrs={"shape": (), "value": -2.0, "dtype": "float64"}, dtypes=INT)
case("full", [], _full_ref, attrs={"shape": (4,), "value": 7, "dtype": "int32"}, dtypes=INT)
case("full", [], _full_ref, attrs={"shape": (2, 0), "value": 0, "dtype": "int64"}, dtypes=INT)
case("full", [], _full_ref, attrs={"shape": (3,), "value": 1, "dtype": "bool"}, dtypes=INT)


def _arange_ref(start, stop, step=1.0, dtype="int64"):
    return torch.arange(start, stop, step, dtype=tdtype(dtype))


for _attrs in [{"start": 0, "stop": 10}, {"start": 2, "stop": 11, "step": 3},
               {"start": 5, "stop": -4, "step": -2}, {"start": -3, "stop": 3, "dtype": "int32"},
               {"start": 0.5, "stop": 3.2, "step": 0.25, "dtype": "float32"},
               {"start": 0, "stop": 1, "step": 0.1, "dtype": "float32"},
               {"start": -1, "stop": 1, "step": 0.2, "dtype": "float64"},
               {"start": 2, "stop": -1.5, "step": -0.75, "dtype": "float64"}]:
    case("arange", [], _arange_ref, attrs=_attrs, dtypes=INT)


# -- tril, triu, one_hot -------------------------------------------------------------------------
for _op, _ref in {"tril": torch.tril, "triu": torch.triu}.items():
    case(_op, [randn(4, 4)], _ref)
    case(_op, [randn(2, 3, 4, 5)], lambda x, k, _ref=_ref: _ref(x, k), attrs={"k": 1})
    case(_op, [randn(5, 3)], lambda x, k, _ref=_ref: _ref(x, k), attrs={"k": -1})
    case(_op, [randn(3, 4)], lambda x, k, _ref=_ref: _ref(x, k), attrs={"k": 7})
    case(_op, [randint(-9, 9, 2, 3, 3, dtype="int64")], lambda x, k, _ref=_ref: _ref(x, k),
         attrs={"k": -2}, dtypes=INT)


def _one_hot_ref(idx, num_classes, dtype="float32"):
    return F.one_hot(idx.long(), num_classes).to(tdtype(dtype))


case("one_hot", [randint(0, 5, 3, 4)], _one_hot_ref, attrs={"num_classes": 5}, dtypes=INT)
case("one_hot", [randint(0, 3, 6, dtype="int32")], _one_hot_ref,
     attrs={"num_classes": 4, "dtype": "int64"}, dtypes=INT)
case("one_hot", [randint(0, 3, 2, 3)], _one_hot_ref, attrs={"num_classes": 3, "dtype": "float64"},
     dtypes=INT)
