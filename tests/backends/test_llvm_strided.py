"""Vector loads with a small constant stride (2, 3, 4): one masked load of the span the
lanes cover and a shuffle, never a gather, and never a byte past the last element read.
Max pools whose windows all lie inside the input read their taps as such loads (no bounds
test, no clamp). Checked against torch and numpy on fresh random inputs."""
import numpy as np
import pytest
import torch

import dlc
from dlc.nn import functional as F


def compiled(fn, *shapes, dtype="float32"):
    graph = dlc.trace(fn, *[dlc.TensorSpec(s, dtype) for s in shapes])
    return dlc.compile(graph, backend="llvm", threads=2)


@pytest.mark.parametrize("step", [2, 3, 4])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_strided_slices_load_and_shuffle(step, dtype, rng):
    # the last element the slice reads is the array's last: the masked lanes past it
    # must not be read (a plain wide load would touch up to step - 1 elements more)
    n = 7 * 16 + 5
    exe = compiled(lambda x: (x[:, ::step] * 2.0).exp(), (3, (n - 1) * step + 1), dtype=dtype)
    assert "masked.gather" not in exe.llvm_ir()
    x = rng.standard_normal((3, (n - 1) * step + 1)).astype(dtype)
    np.testing.assert_allclose(exe(x), np.exp(x[:, ::step] * 2.0), rtol=2e-6)


@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 3), (2, 3), (3, 2), (4, 4)])
def test_max_pools_inside_the_input_read_vectors(kernel, stride, rng):
    shape = (4, 3, 29, 31)
    exe = compiled(lambda x: F.max_pool2d(x, kernel, stride), shape)
    assert "masked.gather" not in exe.llvm_ir()
    x = rng.standard_normal(shape).astype(np.float32)
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), kernel, stride).numpy()
    got = exe(x)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_padded_max_pool_still_masks_its_windows(rng):
    shape = (2, 3, 9, 11)
    exe = compiled(lambda x: F.max_pool2d(x, 3, 2, padding=1), shape)
    x = rng.standard_normal(shape).astype(np.float32)
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, 2, padding=1).numpy()
    np.testing.assert_array_equal(exe(x), want)


def test_max_pool_propagates_nan_through_vector_loads(rng):
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    x[0, 1, 2, 5] = np.nan
    got = compiled(lambda t: F.max_pool2d(t, 2, 2), x.shape)(x)
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, 2).numpy()
    assert np.isnan(got[0, 1, 1, 2]) and np.isnan(want[0, 1, 1, 2])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])
