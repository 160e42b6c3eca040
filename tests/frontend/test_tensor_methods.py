"""Tensor methods that lower to movement ops (reshape, flatten, permute, transpose/T/mT,
expand, squeeze/unsqueeze, broadcast_to), traced and run, against NumPy on random inputs.
Out-of-range dims must raise."""
import numpy as np
import pytest

import dlc
from dlc.errors import DlcError

SHAPE = (2, 3, 4)


def run(fn, x: np.ndarray) -> np.ndarray:
    return dlc.compile(fn, dlc.TensorSpec(x.shape, x.dtype.name))(x)


def assert_same(got, expected):
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def ops_of(fn, shape) -> list[str]:
    return [n.op.name for n in dlc.trace(fn, dlc.TensorSpec(shape)).nodes]


CASES = {
    # name: (method call on a dlc Tensor, the same on a numpy array, input shape)
    "reshape-minus-one": (lambda t: t.reshape(-1, 4), lambda a: a.reshape(-1, 4), SHAPE),
    "reshape-tuple": (lambda t: t.reshape((4, -1, 2)), lambda a: a.reshape(4, -1, 2), SHAPE),
    "reshape-flat": (lambda t: t.reshape(-1), lambda a: a.reshape(-1), SHAPE),
    "view": (lambda t: t.view(6, 4), lambda a: a.reshape(6, 4), SHAPE),
    "reshape-empty": (lambda t: t.reshape(-1, 3), lambda a: a.reshape(-1, 3), (0, 3)),
    "flatten": (lambda t: t.flatten(), lambda a: a.reshape(-1), SHAPE),
    "flatten-1": (lambda t: t.flatten(1), lambda a: a.reshape(2, 12), SHAPE),
    "flatten-0-1": (lambda t: t.flatten(0, 1), lambda a: a.reshape(6, 4), SHAPE),
    "flatten-neg": (lambda t: t.flatten(-2, -1), lambda a: a.reshape(2, 12), SHAPE),
    "flatten-one-axis": (lambda t: t.flatten(1, 1), lambda a: a, SHAPE),
    "flatten-0d": (lambda t: t.flatten(), lambda a: a.reshape(1), ()),
    "permute": (lambda t: t.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), SHAPE),
    "permute-list": (lambda t: t.permute([1, 2, 0]), lambda a: a.transpose(1, 2, 0), SHAPE),
    "permute-neg": (lambda t: t.permute(-1, -3, -2), lambda a: a.transpose(2, 0, 1), SHAPE),
    "transpose": (lambda t: t.transpose(0, 2), lambda a: a.swapaxes(0, 2), SHAPE),
    "transpose-neg": (lambda t: t.transpose(-1, 0), lambda a: a.swapaxes(-1, 0), SHAPE),
    "swapaxes": (lambda t: t.swapaxes(1, 2), lambda a: a.swapaxes(1, 2), SHAPE),
    "T-2d": (lambda t: t.T, lambda a: a.T, (3, 5)),
    "T-3d": (lambda t: t.T, lambda a: a.T, SHAPE),
    "mT": (lambda t: t.mT, lambda a: np.swapaxes(a, -1, -2), SHAPE),
    "expand": (lambda t: t.expand(2, 3, 4), lambda a: np.broadcast_to(a, (2, 3, 4)), (3, 1)),
    "expand-minus-one": (lambda t: t.expand(5, -1, 4),
                         lambda a: np.broadcast_to(a, (5, 3, 4)), (3, 1)),
    "expand-tuple": (lambda t: t.expand((2, 3)), lambda a: np.broadcast_to(a, (2, 3)), (1, 3)),
    "broadcast_to": (lambda t: t.broadcast_to((4, 2, 3)),
                     lambda a: np.broadcast_to(a, (4, 2, 3)), (2, 1)),
    "broadcast_to-0d": (lambda t: t.broadcast_to(3, 2), lambda a: np.broadcast_to(a, (3, 2)),
                        ()),
    "squeeze-all": (lambda t: t.squeeze(), lambda a: a.squeeze(), (1, 3, 1, 2)),
    "squeeze-dim": (lambda t: t.squeeze(2), lambda a: a.squeeze(2), (1, 3, 1, 2)),
    "squeeze-neg": (lambda t: t.squeeze(-4), lambda a: a.squeeze(-4), (1, 3, 1, 2)),
    "squeeze-tuple": (lambda t: t.squeeze((0, 2)), lambda a: a.squeeze((0, 2)), (1, 3, 1, 2)),
    "squeeze-axis-kw": (lambda t: t.squeeze(axis=0), lambda a: a.squeeze(axis=0), (1, 3)),
    # torch semantics: squeezing an axis whose size is not 1 leaves it
    "squeeze-not-1": (lambda t: t.squeeze(1), lambda a: a, (1, 3, 1, 2)),
    "unsqueeze-0": (lambda t: t.unsqueeze(0), lambda a: a[None], SHAPE),
    "unsqueeze-mid": (lambda t: t.unsqueeze(2), lambda a: np.expand_dims(a, 2), SHAPE),
    "unsqueeze-end": (lambda t: t.unsqueeze(-1), lambda a: a[..., None], SHAPE),
    "unsqueeze-neg": (lambda t: t.unsqueeze(-3), lambda a: np.expand_dims(a, -3), SHAPE),
    "unsqueeze-0d": (lambda t: t.unsqueeze(0), lambda a: a.reshape(1), ()),
    "chain": (lambda t: t.unsqueeze(1).expand(2, 5, 3, 4).permute(3, 0, 2, 1).flatten(1, 2),
              lambda a: np.broadcast_to(a[:, None], (2, 5, 3, 4)).transpose(3, 0, 2, 1)
              .reshape(4, 6, 5), SHAPE),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_method_matches_numpy(name, dtype, rng):
    method, reference, shape = CASES[name]
    x = np.asarray(rng.standard_normal(shape) * 5).astype(dtype)
    assert_same(run(method, x), np.asarray(reference(x)))


@pytest.mark.parametrize("fn", [
    lambda t: t.reshape(2, 3, 4), lambda t: t.permute(0, 1, 2), lambda t: t.transpose(1, 1),
    lambda t: t.expand(2, 3, 4), lambda t: t.broadcast_to(2, 3, 4), lambda t: t.squeeze(),
    lambda t: t.flatten(1, 1),
], ids=["reshape", "permute", "transpose", "expand", "broadcast_to", "squeeze", "flatten"])
def test_identity_movements_emit_nothing(fn):
    assert ops_of(fn, SHAPE) == []


def test_methods_lower_to_the_documented_ops():
    assert ops_of(lambda t: t.flatten(), SHAPE) == ["reshape"]
    assert ops_of(lambda t: t.unsqueeze(1), SHAPE) == ["reshape"]
    assert ops_of(lambda t: t.mT, SHAPE) == ["permute"]
    assert ops_of(lambda t: t.expand(5, 2, 3, 4), SHAPE) == ["broadcast_to"]


@pytest.mark.parametrize("fn,message", [
    (lambda t: t.reshape(5, -1), r"cannot reshape \(2, 3, 4\) \(24 elements\)"),
    (lambda t: t.reshape(-1, -1), "at most one -1"),
    (lambda t: t.reshape(4, 7), r"\(24 elements\) to \(4, 7\) \(28 elements\)"),
    (lambda t: t.expand(2, 5, 4), r"cannot broadcast shape \(2, 3, 4\) to \(2, 5, 4\)"),
    (lambda t: t.permute(0, 0, 1), "not a permutation"),
    (lambda t: t.permute(1, 0), "has 2 entries"),
])
def test_bad_calls_raise_shape_errors(fn, message):
    with pytest.raises(dlc.ShapeError, match=message):
        dlc.trace(fn, dlc.TensorSpec(SHAPE))


# -- out-of-range dims raise ---------------------------------------------------------------
def test_permute_out_of_range_dim_raises():
    with pytest.raises(DlcError):
        dlc.trace(lambda t: t.permute(0, 1, 5), dlc.TensorSpec(SHAPE))


@pytest.mark.parametrize("args", [(2, 1), (0, 5)])
def test_flatten_bad_dims_raise(args):
    with pytest.raises(DlcError):
        dlc.trace(lambda t: t.flatten(*args), dlc.TensorSpec(SHAPE))


def test_unsqueeze_out_of_range_dim_raises():
    with pytest.raises(DlcError):
        dlc.trace(lambda t: t.unsqueeze(5), dlc.TensorSpec(SHAPE))


def test_squeeze_out_of_range_dim_raises():
    with pytest.raises(DlcError):
        dlc.trace(lambda t: t.squeeze(4), dlc.TensorSpec((3, 1)))


def test_expand_minus_one_in_a_new_leading_dim_raises():
    with pytest.raises(DlcError):
        dlc.trace(lambda t: t.expand(-1, 3, 4), dlc.TensorSpec((3, 4)))
