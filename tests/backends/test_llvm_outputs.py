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
from backends.llvm.executable import PAGE, PLACED_MIN_BYTES
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


def _at_page_offset(a: np.ndarray, offset: int) -> np.ndarray:
    """A copy of `a` whose data starts `offset` bytes into a page."""
    raw = np.empty(a.nbytes + PAGE, np.uint8)
    start = (offset - raw.__array_interface__["data"][0]) % PAGE
    out = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("offset", [0, 4, 16, 2044, 4092])
def test_a_big_output_lies_half_a_page_from_its_input(offset, rng):
    """A big output starts half a page from its largest input, at the same offset within a
    cache line (no 4K aliasing of the stores with the next loads, and aligning the stores
    aligns the loads); every element is still written, whatever the offset."""
    n = PLACED_MIN_BYTES // 4 + 37
    x = _at_page_offset(rng.standard_normal(n).astype(np.float32), offset)
    a = rng.standard_normal(n).astype(np.float32)
    exe = dlc.compile(lambda x, a: x * a + 1.0, dlc.TensorSpec((n,)), dlc.TensorSpec((n,)),
                      backend="llvm", threads=2)
    got = exe(x, a)
    address = got.__array_interface__["data"][0]
    assert address % PAGE == (offset + PAGE // 2) % PAGE
    np.testing.assert_array_equal(got, x * a + np.float32(1.0))


def test_a_small_output_stays_on_a_cache_line_boundary(rng):
    x = _at_page_offset(rng.standard_normal((8, 24)).astype(np.float32), 16)
    got = dlc.compile(lambda x: x + 1.0, dlc.TensorSpec((8, 24)), backend="llvm")(x)
    assert got.__array_interface__["data"][0] % 64 == 0
    np.testing.assert_array_equal(got, x + np.float32(1.0))


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
