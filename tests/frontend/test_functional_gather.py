"""gather, take_along_dim, index_select and scatter_add under torch's names, against torch."""
import numpy as np
import torch

import dlc
import dlc.nn.functional as F
from tests.ops.harness import assert_allclose


def run(fn, *arrays):
    specs = [dlc.TensorSpec(a.shape, a.dtype.name) for a in arrays]
    return dlc.compile(fn, *specs)(*arrays)


def test_gather_matches_torch(rng):
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    idx = rng.integers(-5, 5, size=(3, 7, 2))
    got = run(lambda x, i: F.gather(x, 1, i), x, idx)
    want = torch.gather(torch.from_numpy(x), 1, torch.from_numpy(idx % 5)).numpy()
    np.testing.assert_array_equal(got, want)


def test_take_along_dim_broadcasts_like_torch(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    idx = rng.integers(0, 6, size=(1, 3))
    got = run(lambda x, i: F.take_along_dim(x, i, dim=1), x, idx)
    want = torch.take_along_dim(torch.from_numpy(x), torch.from_numpy(idx), dim=1).numpy()
    np.testing.assert_array_equal(got, want)


def test_index_select_matches_torch(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    idx = rng.integers(0, 4, size=(5,))
    got = run(lambda x, i: F.index_select(x, 0, i), x, idx)
    want = torch.index_select(torch.from_numpy(x), 0, torch.from_numpy(idx)).numpy()
    np.testing.assert_array_equal(got, want)


def test_scatter_add_accumulates_repeated_indices_like_torch(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    src = rng.standard_normal((3, 6)).astype(np.float32)
    idx = rng.integers(0, 4, size=(3, 6))
    got = run(lambda x, i, s: F.scatter_add(x, 1, i, s), x, idx, src)
    want = torch.from_numpy(x).scatter_add(1, torch.from_numpy(idx), torch.from_numpy(src))
    assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-6)


def test_index_select_rejects_a_2d_index():
    import pytest
    with pytest.raises(dlc.ShapeError, match=r"index_select.*index must be 1-D"):
        dlc.trace(lambda x, i: F.index_select(x, 0, i), dlc.TensorSpec((4, 6)),
                  dlc.TensorSpec((2, 2), "int64"))
