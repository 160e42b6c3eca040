"""0-d values meeting blocks inside one kernel, on the triton backend against eager.

A constant (`clamp`'s bounds, an exponent) or a 0-d input is a 0-d Triton value while the
tensor it meets is a block. Triton's interpreter splats a 0-d comparison in its operands'
dtype (float for `s > 0.1`), and `&`, `|`, `^` of that with a bool block fail; these cases
keep the generator (mathlib's max/min/pow, the logical ops) clear of that, unfused (O0) and
fused (O2), on fresh inputs with the scalar of either sign.
"""
import numpy as np
import pytest

import dlc
from dlc.tensor import where

CASES = {
    "clamp": lambda x, s: x.clamp(-0.5, 0.5),
    "maximum-scalar": lambda x, s: x.maximum(s),
    "minimum-scalar-first": lambda x, s: s.minimum(x),
    "pow-constant": lambda x, s: x ** 3.0,
    # integer exponents keep a negative base finite (and its sign rule in play)
    "pow-scalar-exponent": lambda x, s: x ** s.round(),
    "pow-scalar-base": lambda x, s: s ** (x * 2.0).round(),
    "pow-fractional": lambda x, s: x.abs() ** s,
    "mod-scalar": lambda x, s: x % s,
    "floor-div-scalar": lambda x, s: x // s,
    "and-where": lambda x, s: where((x > 0) & (s > 0.1), x, s),
    "or-where": lambda x, s: where((s > 0.1) | (x > 0), x, s),
    "xor-where": lambda x, s: where((x > 0) ^ (s > 0.1), x, s),
    "and-bool-out": lambda x, s: (x > 0) & (s > 0.1),
    "or-bool-out": lambda x, s: (s < 0.1) | (x > 0),
    "compare-scalar": lambda x, s: x > s,
}


@pytest.mark.parametrize("level", ["O0", "O2"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_scalar_meets_block(name, level, rng):
    graph = dlc.trace(CASES[name], dlc.TensorSpec((4, 8)), dlc.TensorSpec(()))
    exe_e = dlc.compile(graph, opt_level=level)
    exe_t = dlc.compile(graph, backend="triton", opt_level=level)
    for sign in (1.0, -1.0):
        x = rng.standard_normal((4, 8)).astype(np.float32)
        x[0, 0] = 0.0
        s = np.array(sign * rng.uniform(0.5, 2.5), dtype=np.float32)
        want, got = exe_e(x, s), exe_t(x, s)
        assert got.shape == want.shape and got.dtype == want.dtype
        if want.dtype == np.bool_:
            np.testing.assert_array_equal(got, want)
        else:  # x[0, 0] = 0 to a negative power is inf in both, compared as equal
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
