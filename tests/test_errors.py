"""Bad input through the public API: each error says what is wrong and where.

Shape errors inside a user's model name the layer (path and class), the user's file:line
and the shapes; an Executable names the argument and what it expected.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dlc
from dlc import nn
from tests.ops.harness import TOL, assert_allclose

THIS_FILE = Path(__file__).name


def line_of(marker: str) -> int:
    """The line of this file that ends with the comment `# marker`."""
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.endswith(f"# {marker}"))


# -- shape errors inside a model --------------------------------------------------------------
class AddMismatched(nn.Module):
    def forward(self, x, y):
        return x + y  # MISMATCHED-ADD


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = AddMismatched()

    def forward(self, x, y):
        return self.block(x, y)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 3)

    def forward(self, x):
        return self.proj(x)  # WRONG-IN-FEATURES


class WithEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()

    def forward(self, x):
        return self.encoder(x)


def test_mismatched_add_names_layer_line_and_shapes():
    with pytest.raises(dlc.ShapeError) as info:
        dlc.trace(Outer(), dlc.TensorSpec((2, 3)), dlc.TensorSpec((4, 3)))
    message = str(info.value)
    assert "add" in message
    assert "block (AddMismatched)" in message
    assert f"{THIS_FILE}:{line_of('MISMATCHED-ADD')}" in message
    assert "(2, 3)" in message and "(4, 3)" in message


def test_linear_with_wrong_in_features_names_layer_line_and_shapes():
    with pytest.raises(dlc.ShapeError) as info:
        dlc.trace(WithEncoder(), dlc.TensorSpec((5, 4)))
    message = str(info.value)
    assert "encoder.proj (Linear)" in message
    assert f"{THIS_FILE}:{line_of('WRONG-IN-FEATURES')}" in message
    assert "(5, 4)" in message and "(3, 6)" in message  # the input and the weight


# -- dtypes -----------------------------------------------------------------------------------
def exp_of(x):
    return x.exp()


def sqrt_of(x):
    return x.sqrt()


@pytest.mark.parametrize("fn, op, dtype", [
    (exp_of, "exp", "int64"),
    (sqrt_of, "sqrt", "bool"),
])
def test_unsupported_dtype_names_the_op(fn, op, dtype):
    with pytest.raises(dlc.ShapeError) as info:
        dlc.trace(fn, dlc.TensorSpec((3,), dtype))
    message = str(info.value)
    assert message.startswith(op), message
    assert dtype in message


# -- calling an Executable with bad arrays ----------------------------------------------------
def matmul(x, y):
    return x @ y


@pytest.fixture
def exe():
    return dlc.compile(matmul, dlc.TensorSpec((3, 4)), dlc.TensorSpec((4, 2)))


def test_wrong_number_of_arrays(exe):
    with pytest.raises(dlc.ArgumentError) as info:
        exe(np.zeros((3, 4), np.float32))
    message = str(info.value)
    assert "expected 2 input array(s)" in message and "got 1" in message
    assert "x: f32[3,4]" in message and "y: f32[4,2]" in message


def test_wrong_shape_names_the_argument(exe):
    with pytest.raises(dlc.ArgumentError) as info:
        exe(np.zeros((3, 4), np.float32), np.zeros((4, 3), np.float32))
    message = str(info.value)
    assert "argument 1 ('y')" in message
    assert "f32[4,2]" in message and "(4, 3)" in message


def test_wrong_dtype_names_the_argument(exe):
    with pytest.raises(dlc.ArgumentError) as info:
        exe(np.zeros((3, 4), np.float64), np.zeros((4, 2), np.float32))
    message = str(info.value)
    assert "argument 0 ('x')" in message
    assert "float32" in message and "float64" in message


def test_non_contiguous_arrays_are_accepted(exe, rng):
    a = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal((4, 8)).astype(np.float32)
    x, y = a.T, b[:, ::4]  # a transposed view and a strided slice
    assert not x.flags.c_contiguous and not y.flags.c_contiguous
    got = exe(x, y)
    expected = (torch.from_numpy(np.ascontiguousarray(x)) @
                torch.from_numpy(np.ascontiguousarray(y))).numpy()
    rtol, atol = TOL["float32"]
    assert_allclose(got, expected, rtol=rtol, atol=atol)


# -- data-dependent control flow --------------------------------------------------------------
def branchy(x):
    if x.sum() > 0:  # DATA-DEPENDENT
        return x
    return -x


def test_data_dependent_branch_names_the_line():
    with pytest.raises(dlc.TraceError) as info:
        dlc.trace(branchy, dlc.TensorSpec((3,)))
    message = str(info.value)
    assert f"{THIS_FILE}:{line_of('DATA-DEPENDENT')}" in message
    assert "branch" in message


# -- bad arguments to layers and tensors ----------------------------------------------------------
@pytest.mark.parametrize("build,fragment", [
    (lambda: nn.LSTM(4, 8, dropout=1.5), "LSTM: dropout should be a probability"),
    (lambda: nn.GRU(4, 0), "GRU: hidden_size must be a positive int"),
    (lambda: nn.RNN(4, 8, nonlinearity="gelu"), "RNN: unknown nonlinearity 'gelu'"),
    (lambda: nn.LSTM(4, 8, proj_size=8), "LSTM: proj_size must be 0 or in [1, hidden_size=8)"),
    (lambda: nn.MultiheadAttention(10, 3),
     "MultiheadAttention: embed_dim 10 must be divisible"),
    (lambda: nn.TransformerEncoderLayer(8, 2, activation="swish"),
     "TransformerEncoderLayer: activation should be one of"),
])
def test_bad_layer_arguments_name_the_layer(build, fragment):
    with pytest.raises(dlc.errors.ConfigError) as info:
        build()
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)  # what torch.nn raises for the same arguments


def test_tensor_misuse_names_the_line():
    line = line_of("STR-AS-TENSOR")

    def bad(x):
        return x + "one"  # STR-AS-TENSOR

    with pytest.raises(dlc.errors.TensorTypeError, match=f"cannot use str as a tensor at "
                                                         f".*{THIS_FILE}:{line}"):
        dlc.trace(bad, dlc.TensorSpec((2,)))


def test_negative_dimension_in_a_spec():
    with pytest.raises(dlc.ShapeError, match=r"TensorSpec 'x': negative dimension in shape "
                                             r"\(-1, 4\)"):
        dlc.TensorSpec((-1, 4), name="x")


def test_unknown_input_name_lists_the_inputs():
    graph = dlc.trace(lambda a, b: a * b, dlc.TensorSpec((2,), name="a"),
                      dlc.TensorSpec((2,), name="b"))
    with pytest.raises(dlc.errors.InputNameError) as info:
        graph.input("c")
    assert str(info.value) == "graph @main has no input named 'c'; inputs: a, b"
