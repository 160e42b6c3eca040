"""Output arrays of the llvm Executable, large row kernels, and x ** 2.

An output array is reused on the next call only once the caller holds no reference to it
(nor to a view of it); a result the caller keeps is never overwritten. Row kernels whose
output exceeds the streaming threshold write it with non-temporal stores (and softmax's
stash stays in cache); both agree with eager. x ** 2 is x * x for every float, Inf, NaN and
-0.0 included."""
import gc

import numpy as np
import pytest

import dlc
from dlc import nn
from backends.llvm.stmtgen import STREAM_MIN_BYTES

F = nn.functional


def test_outputs_the_caller_keeps_are_never_reused(rng):
    exe = dlc.compile(lambda x: x * 2.0, dlc.TensorSpec((64, 64)), backend="llvm")
    x = rng.standard_normal((64, 64)).astype(np.float32)
    kept = [exe(x) for _ in range(3)]
    assert len({id(a) for a in kept}) == 3
    view = exe(x)[:4]             # only a view survives the call
    after = exe(x + 1)
    assert not np.shares_memory(view, after)
    np.testing.assert_array_equal(view, (x * 2)[:4])
    for a in kept:
        np.testing.assert_array_equal(a, x * 2)


def test_a_dropped_output_array_is_reused(rng):
    exe = dlc.compile(lambda x: x + 1.0, dlc.TensorSpec((256, 256)), backend="llvm")
    x = rng.standard_normal((256, 256)).astype(np.float32)
    first = exe(x)
    address = first.__array_interface__["data"][0]
    del first
    gc.collect()
    again = exe(x * 3)
    assert again.__array_interface__["data"][0] == address
    np.testing.assert_array_equal(again, x * 3 + 1)


@pytest.mark.parametrize("which", ["layer_norm", "softmax"])
def test_row_kernels_past_the_streaming_threshold_match_eager(which, rng):
    cols = 1024
    rows = STREAM_MIN_BYTES // (4 * cols) + 3  # just over: streamed, rows unaligned to 64
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    fn = (lambda t: F.layer_norm(t, (cols,))) if which == "layer_norm" else \
        (lambda t: F.softmax(t, dim=-1))
    spec = dlc.TensorSpec((rows, cols))
    got = dlc.compile(fn, spec, backend="llvm", threads=2)(x)
    want = dlc.compile(fn, spec, backend="eager")(x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_square_is_exactly_x_times_x(dtype, rng):
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -3e19, 1e200 if
                        dtype == "float64" else 3e38], dtype=dtype)
    x = np.concatenate([special, rng.standard_normal(57).astype(dtype) * 1e3])
    got = dlc.compile(lambda t: t ** 2, dlc.TensorSpec(x.shape, dtype), backend="llvm")(x)
    with np.errstate(over="ignore"):
        want = x * x
    np.testing.assert_array_equal(got, want)
    assert not np.signbit(got[1])


@pytest.mark.parametrize("which", ["softmax", "log_softmax"])
def test_softmax_rows_with_nan_and_infinities_match_torch(which, rng):
    """The row max of a softmax skips NaN bookkeeping (a NaN reaches every output through
    the row sum): rows with a NaN, a +inf, all -inf, and plain rows agree with torch."""
    import torch
    x = rng.standard_normal((6, 70)).astype(np.float32) * 30
    x[1, 5] = np.nan
    x[2, 7] = np.inf
    x[3, :] = -np.inf
    x[4, 9] = -np.inf
    fn = getattr(F, which)
    got = dlc.compile(lambda t: fn(t, dim=-1), dlc.TensorSpec(x.shape), backend="llvm")(x)
    want = getattr(torch, which)(torch.from_numpy(x), -1).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6)
