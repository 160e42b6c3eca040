"""Accuracy of the math the generated kernels compute without libdevice (mathlib.py).

Each function runs as a one-op graph on the triton backend over a dense grid (plus fresh
random points) and is compared with a float64 reference (math.erf, numpy): the maximum
relative error must stay within a few float32 ulps (float64: a few float64 ulps). The bounds
are about twice what was measured when they were written."""
import math

import numpy as np
import pytest

from backends.registry import compile_graph
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType

ERF = np.vectorize(math.erf, otypes=[np.float64])
ERFC = np.vectorize(math.erfc, otypes=[np.float64])


def run_op(op: str, *arrays, **attrs) -> np.ndarray:
    with Builder(op) as b:
        ins = [b.add_input(f"a{k}", TensorType(a.shape, a.dtype.name))
               for k, a in enumerate(arrays)]
        out = b.emit(op, tuple(ins), attrs)
    return compile_graph(b.finish([out]), "triton")(*arrays)


def gelu_ref(x):
    return 0.5 * x * ERFC(-x / math.sqrt(2.0))


# op -> (grid lo, hi, float64 reference, max relative error float32, float64)
FUNCTIONS = {
    "erf": (-7.0, 7.0, ERF, 6e-7, 1e-15),
    "tanh": (-12.0, 12.0, np.tanh, 6e-7, 1e-15),
    "expm1": (-3.0, 3.0, np.expm1, 7e-7, 1e-15),
    "log1p": (-0.99, 4.0, np.log1p, 6e-7, 1e-15),
    "sigmoid": (-60.0, 60.0, lambda x: 1.0 / (1.0 + np.exp(-x)), 6e-7, 1e-15),
    "gelu": (-9.0, 9.0, gelu_ref, 1e-6, 3e-14),
}


def grid(lo: float, hi: float, rng, dtype: str) -> np.ndarray:
    dense = np.linspace(lo, hi, 20001)
    return np.concatenate([dense, rng.uniform(lo, hi, 5000), [0.0, -0.0]]).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(FUNCTIONS))
def test_max_relative_error(op, dtype, rng):
    lo, hi, ref, tol32, tol64 = FUNCTIONS[op]
    x = grid(lo, hi, rng, dtype)
    want = ref(x.astype(np.float64))
    got = run_op(op, x).astype(np.float64)
    tiny = np.finfo(dtype).tiny
    rel = np.abs(got - want) / np.maximum(np.abs(want), tiny)
    keep = np.abs(want) > 1e-30  # gelu's tail underflows float32 far below its scale
    worst = float(rel[keep].max())
    assert worst <= (tol32 if dtype == "float32" else tol64), \
        f"{op} {dtype}: max relative error {worst:.3g} at x = {x[keep][rel[keep].argmax()]}"


def test_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)
    for op, want in {"erf": [np.nan, 1, -1, 0, 0], "tanh": [np.nan, 1, -1, 0, 0],
                     "sigmoid": [np.nan, 1, 0, 0.5, 0.5], "expm1": [np.nan, np.inf, -1, 0, 0],
                     "log1p": [np.nan, np.inf, np.nan, 0, 0]}.items():
        np.testing.assert_array_equal(run_op(op, x), np.array(want, np.float32), err_msg=op)


def test_pow_against_float64(rng):
    a = np.concatenate([rng.uniform(0.05, 5, 4000), rng.uniform(-4, 4, 2000).round(),
                        [0.0, 0.0, -2.0, -2.0, 1.0]]).astype(np.float32)
    b = np.concatenate([rng.uniform(-3, 3, 4000), rng.integers(-3, 4, 2000),
                        [2.0, -1.0, 0.5, 3.0, np.nan]]).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0^-1 and (-2)^0.5 on purpose
        want = np.power(a.astype(np.float64), b.astype(np.float64))
    got = run_op("pow", a, b).astype(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = np.isfinite(want)
    np.testing.assert_array_equal(got[~ok & ~np.isnan(want)], want[~ok & ~np.isnan(want)])
    # exp(b log a) in float32: the error grows with |b log a| (<= ~8 here)
    np.testing.assert_allclose(got[ok], want[ok], rtol=2e-6, atol=1e-30)


@pytest.mark.parametrize("op", ["floor_div", "mod"])
def test_floor_division_is_numpy_exactly(op, rng):
    a = np.concatenate([rng.standard_normal(5000) * 50, [7, -7, 7, -7, 0.5, -0.0]])
    b = np.concatenate([rng.uniform(0.1, 4, 5000) * rng.choice([-1, 1], 5000),
                        [2, 2, -2, -2, 0.1, 3]])
    a, b = a.astype(np.float32), b.astype(np.float32)
    fn = {"floor_div": np.floor_divide, "mod": np.mod}[op]
    np.testing.assert_array_equal(run_op(op, a, b), fn(a, b))


def test_round_half_to_even(rng):
    x = np.concatenate([np.arange(-6, 6) + 0.5, rng.standard_normal(1000) * 10,
                        [0.49999997, -0.49999997, 8388607.5, 2.0 ** 24]]).astype(np.float32)
    np.testing.assert_array_equal(run_op("round", x), np.rint(x))
