"""The llvm backend's math library: the maximum error in ULP over a sweep of each range
(against a float64-or-better reference, as docs/llvm-backend.md reports with a denser
sweep), and the special values (NaN, infinities, zeros, subnormals) against numpy."""
import math

import numpy as np
import pytest

from backends.llvm.ulp import SWEEPS, jit_function, max_ulp, measure, measure_pow

POINTS = 60_001
# the documented maxima (docs/llvm-backend.md), with the margin a sparser sweep needs
BOUNDS = {
    "exp": (2, 2), "expm1": (2, 3), "log": (2, 2), "log1p": (3, 3), "tanh": (3, 4),
    "sigmoid": (3, 4), "erf": (3, 3), "erfc": (16, 32), "sin": (1, 2), "cos": (1, 2),
    "gelu_erf": (12, 96), "gelu_tanh": (48, 96), "pow": (1, 64),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda s: s.name)
def test_max_ulp_within_bound(sweep, dtype):
    bound = BOUNDS[sweep.name][dtype == "float64"]
    assert measure(sweep, dtype, POINTS) <= bound


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pow_max_ulp_within_bound(dtype):
    assert measure_pow(dtype, POINTS) <= BOUNDS["pow"][dtype == "float64"]


def test_random_points_in_the_vector_and_scalar_paths(rng):
    # odd lengths run both the vector loop and the scalar remainder
    for dtype in ("float32", "float64"):
        x = (rng.standard_normal(1001) * 5).astype(dtype)
        for name, ref in (("exp", np.exp), ("tanh", np.tanh), ("sin", np.sin)):
            got = jit_function(name, dtype)(x)
            assert max_ulp(got, ref(x.astype(np.float64)), dtype) <= 4, name


SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-310, -1e-310, 1.0, -1.0, 710.0,
                    -750.0, 1e300, -1e300])
NUMPY = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p,
         "tanh": np.tanh, "sin": np.sin, "cos": np.cos,
         "erf": np.vectorize(math.erf, otypes=[float]),
         "erfc": np.vectorize(math.erfc, otypes=[float])}


@pytest.mark.parametrize("name", sorted(NUMPY))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_special_values(name, dtype):
    with np.errstate(all="ignore"):
        x = SPECIAL.astype(dtype)
        want = NUMPY[name](x.astype(np.float64)).astype(dtype)
    got = jit_function(name, dtype)(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{name}: NaN")
    finite = ~np.isnan(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=4 * np.finfo(dtype).eps,
                               atol=4 * np.finfo(dtype).smallest_subnormal, err_msg=name)
    # signed zeros and infinities exactly
    exact = finite & ((want == 0) | np.isinf(want))
    np.testing.assert_array_equal(np.signbit(got[exact]), np.signbit(want[exact]))


def test_pow_special_cases():
    x = np.array([2.0, -2.0, -2.0, 0.0, -0.0, -0.0, 0.0, np.nan, 1.0, -1.0, -8.0, np.inf,
                  -np.inf, 0.5, 2.0])
    y = np.array([0.0, 3.0, 0.5, -1.0, -1.0, 3.0, 2.0, 0.0, np.nan, np.inf, 1 / 3, -2.0,
                  3.0, np.inf, -np.inf])
    for dtype in ("float32", "float64"):
        with np.errstate(all="ignore"):
            want = np.power(x.astype(dtype), y.astype(dtype))
        got = jit_function("pow", dtype, 2)(x.astype(dtype), y.astype(dtype))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=4 * np.finfo(dtype).eps)
        np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(want[ok]))
