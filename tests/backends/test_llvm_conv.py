"""Convolutions on the llvm backend against torch on fresh random inputs: the row kernel
(conv_rows.py: stride 1 along the last axis) with padding, dilation, groups, 1-D/2-D/3-D,
channel counts that split into uneven tiles, short rows laid several a vector ("flat"
tiles, row counts the tile does not divide), a bias+ReLU epilogue (masked vector stores)
and a residual epilogue (element stores), every tile shape the kernel may choose on two
shapes, LeNet's two convolutions at batch 64 with the tiles they get; and the implicit
GEMM with its window table (strided convolutions)."""
from collections import OrderedDict

import numpy as np
import pytest
import torch

import backends.llvm as llvm_backend
import dlc
from backends.llvm import conv_rows
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
# Output rows of at most about half a vector of float32, which the row kernel lays back to
# back (the comment gives the output's rows x columns)
SHORT_ROWS = [
    ((2, 3, 13, 6), 12, 3, 1, 0, 1, 1),         # 11 x 4: four rows a vector, 11 rows
    ((2, 3, 9, 7), 14, 3, 1, 1, 1, 1),          # 9 x 7: two a vector, padding
    ((3, 2, 10, 9), 13, 3, 1, 0, (1, 2), 1),    # 8 x 5: three a vector, dilated taps
    ((2, 4, 11, 8), 10, 3, 1, (0, 1), 1, 2),    # 9 x 8: two a vector, groups
    ((1, 2, 4, 7, 6), 9, 3, 1, 1, 1, 1),        # 4 x 7 x 6: two a vector, 3-D
    ((2, 6, 12, 12), 16, 5, 1, 0, 1, 1),        # 8 x 8: LeNet's second on 12 x 12 images
    ((2, 3, 12, 9), 11, 3, 1, 2, 2, 1),         # 12 x 9: across vectors, padding, dilation
]
RTOL = {"float32": 1e-5, "float64": 1e-12}


def _case_id(case) -> str:
    return "x".join(map(str, case[0])) + f"-o{case[1]}"


def _torch_conv(x, w, b, stride, padding, dilation, groups):
    conv = {3: torch.nn.functional.conv1d, 4: torch.nn.functional.conv2d,
            5: torch.nn.functional.conv3d}[x.ndim]
    return conv(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


def row_conv_plans(exe) -> list[dict]:
    """The plan of each row-kernel convolution of a compiled graph, in kernel order."""
    return [k.extra["conv_plan"] for k in exe.program.spec.kernels if "conv_plan" in k.extra]


def _weights(case, dtype: str, rng) -> tuple:
    shape, c_out, kernel = case[:3]
    nsp = len(shape) - 2
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) * nsp
    w = rng.standard_normal((c_out, shape[1] // case[6]) + kernel).astype(dtype)
    return w, rng.standard_normal(c_out).astype(dtype)


def _assert_close(got: np.ndarray, want: np.ndarray, dtype: str) -> None:
    """A sum of products: its error scales with the output's magnitude, not each value's."""
    rtol = RTOL[dtype]
    assert got.shape == want.shape and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))


def check_epilogues(case, dtype: str, rng, threads: int = 2):
    """relu(conv(x, w) + bias) and conv(x, w2) + bias + skip (two convolutions, so that
    each epilogue is fused into its own) against torch; returns the executable."""
    shape, _, _, stride, padding, dilation, groups = case
    nsp = len(shape) - 2
    w, bias = _weights(case, dtype, rng)
    w2 = rng.standard_normal(w.shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    tx, tw, tw2, tb = (torch.from_numpy(a) for a in (x, w, w2, bias))
    want_relu = torch.relu(_torch_conv(tx, tw, tb, stride, padding, dilation, groups))
    y2 = _torch_conv(tx, tw2, tb, stride, padding, dilation, groups)
    skip = rng.standard_normal(tuple(y2.shape)).astype(dtype)
    want_res = y2 + torch.from_numpy(skip)

    def model(x, w, w2, bias, skip):
        relu = F.relu(_conv("conv", nsp, x, w, bias, stride, padding, dilation, groups))
        return relu, _conv("conv", nsp, x, w2, bias, stride, padding, dilation, groups) + skip

    specs = [dlc.TensorSpec(a.shape, dtype) for a in (x, w, w2, bias, skip)]
    exe = dlc.compile(model, *specs, backend="llvm", threads=threads)
    relu, residual = exe(x, w, w2, bias, skip)
    _assert_close(relu, want_relu.numpy(), dtype)
    _assert_close(residual, want_res.numpy(), dtype)
    return exe


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES + SHORT_ROWS, ids=_case_id)
def test_conv_bias_relu_and_residual_match_torch(case, dtype, rng):
    exe = check_epilogues(case, dtype, rng)
    if case[3] in (1, (2, 1)):  # unit stride along the row: both are row kernels
        assert [p["stores"] for p in row_conv_plans(exe)] == ["vectors", "elements"]


def _compile_conv(case, dtype: str, threads: int = 2):
    shape, _, _, stride, padding, dilation, groups = case
    nsp = len(shape) - 2
    w, bias = _weights(case, dtype, np.random.default_rng(0))

    def model(x, w, bias):
        return _conv("conv", nsp, x, w, bias, stride, padding, dilation, groups)

    specs = [dlc.TensorSpec(a, dtype) for a in (shape, w.shape, bias.shape)]
    return dlc.compile(model, *specs, backend="llvm", threads=threads)


def _check_conv(exe, case, dtype: str, rng) -> None:
    shape, _, _, stride, padding, dilation, groups = case
    w, bias = _weights(case, dtype, rng)
    x = rng.standard_normal(shape).astype(dtype)
    want = _torch_conv(*(torch.from_numpy(a) for a in (x, w, bias)), stride, padding,
                       dilation, groups)
    _assert_close(exe(x, w, bias), want.numpy(), dtype)


@pytest.mark.parametrize("case", SHORT_ROWS, ids=_case_id)
def test_short_rows_share_vectors(case, rng):
    """float32: the short rows' tile lays them back to back, more rows than vectors."""
    exe = _compile_conv(case, "float32")
    (plan,) = row_conv_plans(exe)
    assert plan["layout"] == "flat" and plan["vectors"] < plan["rows"], plan
    _check_conv(exe, case, "float32", rng)


def test_lenet_convolutions_fill_their_registers(rng):
    """LeNet's convolutions at batch 64 on two threads: conv1's 6 channels of 28-wide rows
    take one tile of at least two rows; conv2's 10-wide rows (and 8-wide ones on 12 x 12
    images) share vectors, which they fill to 90% (to the last lane)."""
    conv1 = ((64, 1, 28, 28), 6, 5, 1, 2, 1, 1)
    conv2 = ((64, 6, 14, 14), 16, 5, 1, 0, 1, 1)
    conv2_12 = ((64, 6, 12, 12), 16, 5, 1, 0, 1, 1)
    plans = {}
    for name, case in (("conv1", conv1), ("conv2", conv2), ("conv2_12", conv2_12)):
        exe = _compile_conv(case, "float32")
        (plans[name],) = row_conv_plans(exe)
        _check_conv(exe, case, "float32", rng)
    p = plans["conv1"]
    assert p["mr"] == 6 and p["rows"] >= 2, p
    for name, fill in (("conv2", 0.9), ("conv2_12", 1.0)):
        p = plans[name]
        assert p["layout"] == "flat" and p["vectors"] < p["rows"], p
        assert p["rows"] * p["cols"] >= fill * p["vectors"] * p["width"], p


@pytest.fixture
def forced_tile(monkeypatch):
    """force(pick): compile with the row kernel's tile chosen by pick(tiles of the
    convolution). The compile caches know the graph and the compiler's source, not the
    tile: they are off, and the in-process one is emptied before each compile."""
    monkeypatch.setenv("DLC_CACHE", "0")
    monkeypatch.setattr(llvm_backend, "_CACHE", OrderedDict())

    def force(pick):
        llvm_backend._CACHE.clear()
        monkeypatch.setattr(conv_rows, "choose_tile",
                            lambda c, threads: pick(list(conv_rows.tiles(c))))
    return force


# a padded 2-D one with dilated rows, 7 x 7 outputs of 7 channels; a 3-D one padded along
# its outer axis, 5 x 5 x 14 outputs of 5 channels
FORCED = [((2, 3, 9, 7), 7, 3, 1, 1, (2, 1), 1), ((1, 2, 5, 7, 12), 5, 3, 1, (1, 0, 2), 1, 1)]


class NoSuchTile(Exception):
    """The forced tile is not among the convolution's (it would not fit the registers)."""


def _tile(layout: str, rows: int, mr: int):
    def pick(tiles):
        for t in tiles:
            if (t.layout, t.rows, t.mr) == (layout, rows, mr):
                return t
        raise NoSuchTile
    return pick


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", FORCED, ids=_case_id)
def test_every_tile_shape_matches_torch(case, dtype, forced_tile, rng):
    """Each layout with 1, 2, some and all of the rows (the last block then overlaps the
    one before), 2 channels (the last tile partly empty) and all of them, and both
    epilogues: the same results as torch."""
    out_rows, c_out = (5 if len(case[0]) == 5 else 7), case[1]
    tried = 0
    for layout in ("rows", "flat"):
        for rows in sorted({1, 2, out_rows - 2, out_rows}):
            for mr in (2, c_out):
                forced_tile(_tile(layout, rows, mr))
                try:
                    exe = check_epilogues(case, dtype, rng)
                except NoSuchTile:
                    continue
                assert [(p["layout"], p["rows"], p["mr"]) for p in row_conv_plans(exe)] == \
                    [(layout, rows, mr)] * 2
                tried += 1
    assert tried >= 10, tried
