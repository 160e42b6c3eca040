"""Convolutions on the llvm backend against torch on fresh random inputs: the row kernel
(conv_rows.py: stride 1 along the last axis, rows of at least half a vector) with padding,
dilation, groups, 1-D/2-D/3-D, channel counts that split into uneven tiles, a bias+ReLU
epilogue (masked row-tail stores) and a residual epilogue (element stores), and the
implicit GEMM with its window table (strided convolutions)."""
import numpy as np
import pytest
import torch

import dlc
from dlc import nn
from frontend.functional.layers import _conv  # the n-D convolution behind conv1d/conv2d

F = nn.functional

# (input shape, out channels, kernel, stride, padding, dilation, groups)
CASES = [
    ((2, 1, 28, 28), 6, 5, 1, 2, 1, 1),       # LeNet's first layer
    ((3, 6, 14, 14), 16, 5, 1, 0, 1, 1),      # LeNet's second
    ((2, 4, 9, 33), 30, 3, 1, 1, 1, 1),       # 30 channels: uneven row tiles; 33 columns
    ((1, 6, 12, 40), 8, 3, 1, 2, 2, 2),       # dilation and groups
    ((2, 3, 10, 17), 5, (3, 1), (2, 1), (1, 0), 1, 1),  # strided rows, unit-stride columns
    ((2, 3, 19), 7, 4, 1, 3, 1, 1),           # 1-D
    ((1, 2, 5, 6, 16), 3, 3, 1, 1, 1, 1),     # 3-D (no conv3d layer yet: the op itself)
    ((2, 3, 16, 16), 8, 3, 2, 1, 1, 1),       # stride 2: implicit GEMM and window table
]


def _torch_conv(x, w, b, stride, padding, dilation, groups):
    conv = {3: torch.nn.functional.conv1d, 4: torch.nn.functional.conv2d,
            5: torch.nn.functional.conv3d}[x.ndim]
    return conv(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-o{c[1]}")
def test_conv_bias_relu_and_residual_match_torch(case, dtype, rng):
    shape, c_out, kernel, stride, padding, dilation, groups = case
    nsp = len(shape) - 2
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) * nsp
    w = rng.standard_normal((c_out, shape[1] // groups) + kernel).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, bias))
    y = _torch_conv(tx, tw, tb, stride, padding, dilation, groups)
    skip = rng.standard_normal(tuple(y.shape)).astype(dtype)

    def model(x, w, bias, skip):
        y = _conv("conv", nsp, x, w, bias, stride, padding, dilation, groups)
        return F.relu(y), y + skip

    specs = [dlc.TensorSpec(a.shape, dtype) for a in (x, w, bias, skip)]
    exe = dlc.compile(model, *specs, backend="llvm", threads=2)
    relu, residual = exe(x, w, bias, skip)
    want_relu = torch.relu(y).numpy()
    want_res = (y + torch.from_numpy(skip)).numpy()
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for got, want in ((relu, want_relu), (residual, want_res)):
        assert got.shape == want.shape and np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))
