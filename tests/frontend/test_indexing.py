"""x[index] on traced tensors: the compiled result equals NumPy indexing of the same array,
its gradient matches torch.autograd, and indexes a static graph cannot express are
TraceErrors that say why."""
import re

import numpy as np
import pytest
import torch

import dlc
from dlc.errors import DlcError, TraceError
from tests.ops.harness import assert_allclose

SHAPE = (4, 5, 6)


def compiled(fn, *specs):
    return dlc.compile(fn, *specs)


def assert_same(got, expected):
    expected = np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


# -- ints, slices, None, Ellipsis ---------------------------------------------------------------
BASIC = [
    0, -1, (1, 2), (-2, -1, -3), (3, 4, 5),
    slice(1, 3), slice(None, None, 2), slice(None, None, -1), slice(-100, 100),
    (slice(-3, None), slice(None, None, -2)), (slice(4, None, -3), Ellipsis, slice(1, -1, 2)),
    (Ellipsis, slice(-1, -7, -2)), (slice(3, 1),), (slice(None), slice(-2, 0, -1), 0),
    None, (None, 1), (Ellipsis, None), (None, Ellipsis, None, 2),
    (1, None, slice(None, None, -1), None), (Ellipsis, 1, None, -2),
    Ellipsis, (), (slice(None),) * 3, (Ellipsis, 0, 0, 0),
]


@pytest.mark.parametrize("index", BASIC, ids=repr)
def test_basic_indexing_matches_numpy(index, rng):
    x = rng.standard_normal(SHAPE).astype(np.float32)
    assert_same(compiled(lambda t: t[index], dlc.TensorSpec(SHAPE))(x), x[index])


def test_indexing_a_0d_tensor(rng):
    x = np.asarray(rng.standard_normal(), dtype=np.float64)
    spec = dlc.TensorSpec((), "float64")
    for index in (None, Ellipsis, (), (None, Ellipsis, None)):
        assert_same(compiled(lambda t: t[index], spec)(x), x[index])


def test_full_slices_emit_no_nodes():
    graph = dlc.trace(lambda t: t[:, ...], dlc.TensorSpec(SHAPE))
    assert not graph.nodes


def test_iterating_a_tensor_indexes_its_first_axis(rng):
    x = rng.standard_normal((3, 2)).astype(np.float32)
    out = compiled(lambda t: tuple(row * 2.0 for row in t), dlc.TensorSpec((3, 2)))(x)
    for got, row in zip(out, x):
        assert_allclose(got, row * 2.0, rtol=1e-6)


# -- one integer tensor index (lowered to take), with ints, slices and None around it ---------
# (index builder, the axis of x the array indexes): the array's values are drawn in [-n, n)
ARRAY_INDEXES = [
    (lambda i: i, 0),
    (lambda i: (slice(None), i), 1),
    (lambda i: (Ellipsis, i), 2),
    (lambda i: (0, slice(None), i), 2),                    # ints and array apart: dims first
    (lambda i: (slice(None), 0, i), 2),                    # side by side: dims in place
    (lambda i: (i, Ellipsis, -1), 0),
    (lambda i: (i, None, 1), 0),                           # None between: dims first
    (lambda i: (None, i), 0),
    (lambda i: (slice(1, None), i, slice(None, None, -1)), 1),
    (lambda i: (-1, i), 1),
    (lambda i: (slice(None, None, -2), None, i, 3), 1),
    (lambda i: (2, slice(4, 0, -2), i), 2),
]


@pytest.mark.parametrize("make,axis", ARRAY_INDEXES, ids=[str(k) for k in
                                                          range(len(ARRAY_INDEXES))])
@pytest.mark.parametrize("idx_shape", [(2, 3), (4,), ()], ids=["2d", "1d", "0d"])
def test_tensor_index_matches_numpy(make, axis, idx_shape, rng):
    x = rng.standard_normal(SHAPE).astype(np.float32)
    n = SHAPE[axis]
    idx = rng.integers(-n, n, idx_shape).astype(np.int64)
    fn = compiled(lambda t, i: t[make(i)], dlc.TensorSpec(SHAPE),
                  dlc.TensorSpec(idx_shape, "int64"))
    assert_same(fn(x, idx), x[make(idx)])


def test_int32_tensor_index(rng):
    x = rng.standard_normal((5, 3)).astype(np.float64)
    idx = rng.integers(0, 5, (2, 2)).astype(np.int32)
    fn = compiled(lambda t, i: t[i, 1:], dlc.TensorSpec((5, 3), "float64"),
                  dlc.TensorSpec((2, 2), "int32"))
    assert_same(fn(x, idx), x[idx, 1:])


@pytest.mark.parametrize("make", [
    lambda: [0, 3, -1, 3],
    lambda: (slice(None), np.array([[1, 0], [4, -5]])),
    lambda: (Ellipsis, np.array([5, 0, 2], dtype=np.int32), None),
    lambda: (np.int64(2), slice(None, None, -1), np.array(3)),
], ids=["list", "array", "int32-array", "numpy-scalars"])
def test_numpy_and_list_indexes_are_constants(make, rng):
    x = rng.standard_normal(SHAPE).astype(np.float32)
    assert_same(compiled(lambda t: t[make()], dlc.TensorSpec(SHAPE))(x), x[make()])


def test_tensor_index_out_of_range_fails_at_run_time(rng):
    fn = compiled(lambda t, i: t[:, i], dlc.TensorSpec(SHAPE), dlc.TensorSpec((3,), "int64"))
    x = rng.standard_normal(SHAPE).astype(np.float32)
    with pytest.raises(DlcError, match=r"take: index 5 is out of range for axis 1 of size 5 "
                                       r"\(valid: -5..4\)"):
        fn(x, np.array([0, 5, 1]))


# -- what a static graph cannot express -------------------------------------------------------
def trace_error(fn, *specs) -> str:
    with pytest.raises(TraceError) as info:
        dlc.trace(fn, *specs)
    message = str(info.value)
    assert "test_indexing.py:" in message, message   # names the user's line
    return message


def test_boolean_mask_tensor_is_refused():
    message = trace_error(lambda t: t[t > 0], dlc.TensorSpec(SHAPE))
    assert "boolean-mask" in message and "depends on the data" in message


def test_boolean_numpy_mask_is_refused():
    mask = np.zeros(SHAPE[0], dtype=bool)
    assert "boolean-mask" in trace_error(lambda t: t[mask], dlc.TensorSpec(SHAPE))


def test_python_bool_index_is_refused():
    assert "boolean index" in trace_error(lambda t: t[True], dlc.TensorSpec(SHAPE))


@pytest.mark.parametrize("index,message", [
    (4, r"index 4 is out of range for axis 0 of size 4 \(valid: -4..3\)"),
    (-5, r"index -5 is out of range for axis 0 of size 4"),
    ((0, -6), r"index -6 is out of range for axis 1 of size 5 \(valid: -5..4\)"),
    ((Ellipsis, 6), r"index 6 is out of range for axis 2 of size 6"),
])
def test_out_of_range_int_is_refused(index, message):
    assert re.search(message, trace_error(lambda t: t[index], dlc.TensorSpec(SHAPE)))


@pytest.mark.parametrize("index,message", [
    ((0, 0, 0, 0), r"too many indices \(4\) for a tensor of shape \(4, 5, 6\)"),
    ((Ellipsis, 0, Ellipsis), "only one Ellipsis"),
    (slice(None, None, 0), "bad slice"),
    (1.5, "unsupported index 1.5 of type float"),
    (np.array([0.5]), "must hold integers, got dtype float64"),
])
def test_bad_indexes_are_refused(index, message):
    assert re.search(message, trace_error(lambda t: t[index], dlc.TensorSpec(SHAPE)))


def test_two_tensor_indexes_are_refused():
    spec = dlc.TensorSpec((2,), "int64")
    message = trace_error(lambda t, i, j: t[i, :, j], dlc.TensorSpec(SHAPE), spec, spec)
    assert "2 index arrays" in message


def test_float_tensor_index_is_refused():
    message = trace_error(lambda t, i: t[i], dlc.TensorSpec(SHAPE), dlc.TensorSpec((2,)))
    assert "must hold integers, got dtype float32" in message


def test_tensor_slice_bound_is_refused():
    message = trace_error(lambda t, i: t[:i], dlc.TensorSpec(SHAPE),
                          dlc.TensorSpec((), "int64"))
    assert "not known while tracing" in message


def test_list_of_tensors_is_refused():
    message = trace_error(lambda t, i: t[[i, i]], dlc.TensorSpec(SHAPE),
                          dlc.TensorSpec((), "int64"))
    assert "list index must hold Python ints" in message


# -- gradients through indexing ----------------------------------------------------------------
# (index builder, index array or None): the array is a traced int64 input; its repeated
# entries (some written negatively) must accumulate their gradients
GRAD_INDEXES = [
    (lambda i: (1, slice(None, None, -2), i), np.array([[0, 5, 0], [-1, 2, -6]])),
    (lambda i: (Ellipsis, None, i, slice(1, None, 2)), np.array([4, -1, 0, 4, 2])),
    (lambda i: (i, None, -1), np.array([[3, -1], [0, 0]])),       # apart: dims first
    (lambda i: (slice(None, None, -1), 2, i), np.array([1, 1, -5])),  # side by side
    (lambda i: (slice(3, 0, -2), None, Ellipsis, slice(None, None, 3)), None),
    (lambda i: (-1, slice(1, 4, 2), None), None),
    (lambda i: (slice(None), [0, 3, 0, -1], slice(5, None, -4)), None),  # a const list
]


def torch_index_grad(x: np.ndarray, index, w: np.ndarray) -> np.ndarray:
    """d sum(x[index] * w) / dx by torch.autograd. torch refuses negative slice steps, so
    x[index] is taken as a gather of x's flat positions that NumPy's indexing of
    arange(x.size) selects; repeated positions accumulate in torch's backward."""
    flat = np.ascontiguousarray(np.arange(x.size).reshape(x.shape)[index])
    xt = torch.tensor(x, requires_grad=True)
    (xt.reshape(-1)[torch.from_numpy(flat)] * torch.from_numpy(w)).sum().backward()
    return xt.grad.numpy()


@pytest.mark.parametrize("make,array", GRAD_INDEXES,
                         ids=[str(k) for k in range(len(GRAD_INDEXES))])
def test_gradient_through_indexing_matches_torch(make, array, rng):
    x = rng.standard_normal(SHAPE)
    index = make(array)
    w = rng.standard_normal(x[index].shape)
    specs = [dlc.TensorSpec(SHAPE, "float64"), dlc.TensorSpec(w.shape, "float64")]
    if array is None:
        graph = dlc.trace(lambda t, w: (t[index] * w).sum(), *specs)
        args = [x, w]
    else:
        graph = dlc.trace(lambda t, w, i: (t[make(i)] * w).sum(), *specs,
                          dlc.TensorSpec(array.shape, "int64"))
        args = [x, w, array]
    got = dlc.compile(dlc.grad(graph, wrt=["t"]))(*args)
    expected = torch_index_grad(x, index, w)
    assert not np.isnan(got).any()
    assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
