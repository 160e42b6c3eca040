"""Movement ops beyond the torch table: shape errors, canonical attributes, run-time index
checks, negative indices, non-float dtypes, and outputs that own their memory."""
import numpy as np
import pytest
import torch

import dlc
from backends.eager import run_graph
from dlc.errors import DlcError, ShapeError
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType
from tests.ops.harness import assert_allclose


def build(op: str, types: list, **attrs):
    """A verified one-node graph applying `op` to inputs of the given (shape, dtype)s."""
    with Builder(op) as b:
        ins = [b.add_input(f"a{i}", TensorType(shape, dtype))
               for i, (shape, dtype) in enumerate(types)]
        node = b.emit(op, tuple(ins), attrs)
    return dlc.verify(b.finish([node]))


def run(op: str, arrays: list, **attrs) -> np.ndarray:
    graph = build(op, [(a.shape, a.dtype.name) for a in arrays], **attrs)
    return run_graph(graph, arrays)[0]


def f32(*shape):
    return (shape, "float32")


def attrs_of(op: str, types: list, **attrs) -> dict:
    return build(op, types, **attrs).nodes[0].attrs


# -- shape errors name the shapes --------------------------------------------------------------
def test_reshape_to_a_different_element_count():
    with pytest.raises(ShapeError, match=r"reshape.*\(2, 3\) \(6 elements\) to \(4, 2\) "
                                         r"\(8 elements\)"):
        build("reshape", [f32(2, 3)], shape=(4, 2))


def test_reshape_op_takes_no_minus_one():
    with pytest.raises(ShapeError, match=r"\(-1, 3\) has a negative dimension"):
        build("reshape", [f32(2, 3)], shape=(-1, 3))


@pytest.mark.parametrize("src,dst,why", [
    ((3, 4), (3, 5), "axis 1 has size 4"),
    ((3, 4), (4,), r"the target has fewer dimensions \(1 < 2\)"),
    ((2, 1), (3, 3, 4), "axis 0 has size 2, which is neither 1 nor 3"),
])
def test_broadcast_to_incompatible_shapes(src, dst, why):
    with pytest.raises(ShapeError, match=rf"broadcast shape {_re(src)} to {_re(dst)}: {why}"):
        build("broadcast_to", [f32(*src)], shape=dst)


@pytest.mark.parametrize("shapes,axis", [
    ([(2, 3), (3, 3)], 1),
    ([(2, 3), (2, 3, 1)], 0),
    ([(4, 2), (4, 3), (5, 3)], -1),
])
def test_concat_of_mismatched_shapes(shapes, axis):
    pattern = ", ".join(_re(s) for s in shapes)
    with pytest.raises(ShapeError, match=rf"concat along axis \d: shapes {pattern}"):
        build("concat", [f32(*s) for s in shapes], axis=axis)


def test_concat_of_mismatched_dtypes():
    with pytest.raises(ShapeError, match="float32, float64"):
        build("concat", [f32(2, 3), ((2, 3), "float64")], axis=0)


@pytest.mark.parametrize("perm,why", [
    ((0, 0, 1), r"not a permutation of the axes of shape \(2, 3, 4\)"),
    ((1, 0), r"has 2 entries for x of shape \(2, 3, 4\)"),
    ((0, 1, 3), r"axis 3 is out of range for x of shape \(2, 3, 4\)"),
    ((0, 1, -4), r"axis -4 is out of range for x of shape \(2, 3, 4\)"),
])
def test_permute_with_an_invalid_perm(perm, why):
    with pytest.raises(ShapeError, match=why):
        build("permute", [f32(2, 3, 4)], perm=perm)


def _re(shape) -> str:
    """A shape tuple as a regex."""
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


# -- other attribute and shape checks ----------------------------------------------------------
@pytest.mark.parametrize("op,types,attrs,message", [
    ("slice", [f32(5)], dict(starts=[-2], stops=[5], steps=[1]), "not in slice.indices form"),
    ("slice", [f32(5)], dict(starts=[0], stops=[5], steps=[0]), "step of axis 0 is 0"),
    ("slice", [f32(5, 2)], dict(starts=[0], stops=[5], steps=[1]), "one entry per axis"),
    ("pad", [f32(3, 4)], dict(pads=[1, 1]), r"one \(lo, hi\) pair per axis"),
    ("pad", [f32(3, 4)], dict(pads=[0, 0, 1, 1], mode="edge"), "mode 'edge'"),
    ("pad", [f32(3, 4)], dict(pads=[0, 0, 4, 0], mode="reflect"), "smaller than the size 4"),
    ("pad", [f32(3, 4)], dict(pads=[0, 0, -3, -2]), "crop more than the 4 elements"),
    ("pad", [f32(3, 0)], dict(pads=[0, 0, 1, 0], mode="replicate"), "no edge to repeat"),
    ("flip", [f32(3, 4)], dict(axes=[1, -1]), "name an axis twice"),
    ("flip", [f32(3, 4)], dict(axes=[2]), "axis 2 is out of range"),
    ("concat", [f32(), f32()], dict(axis=0), "rank >= 1"),
    ("take", [f32(3, 4), f32(2)], dict(axis=0), "must be an integer tensor"),
    ("take", [f32(3, 4), ((2,), "int64")], dict(axis=2), "axis 2 is out of range"),
    ("gather", [f32(3, 4), ((3,), "int64")], dict(axis=0), "same rank"),
    ("gather", [f32(3, 4), ((2, 5), "int64")], dict(axis=0), "larger than x"),
    ("scatter_add", [f32(3, 4), ((2, 4), "int64"), f32(2, 3)], dict(axis=0),
     "larger than src"),
    ("scatter_add", [f32(3, 4), ((2, 5), "int64"), f32(2, 5)], dict(axis=0), "larger than x"),
    ("upsample_nearest", [f32(2, 3)], dict(scale=[2]), "rank >= 3"),
    ("upsample_nearest", [f32(1, 1, 2, 3)], dict(scale=[2, 2, 2]), "needs 1 or 2 positive"),
    ("upsample_nearest", [f32(1, 1, 2)], dict(scale=[0]), "needs 1 or 1 positive"),
])
def test_bad_attributes_and_shapes_are_shape_errors(op, types, attrs, message):
    with pytest.raises(ShapeError, match=message):
        build(op, types, **attrs)


# -- canonical attributes ----------------------------------------------------------------------
def test_axes_are_stored_non_negative():
    assert attrs_of("permute", [f32(2, 3, 4)], perm=(-1, 0, -2))["perm"] == (2, 0, 1)
    assert attrs_of("flip", [f32(2, 3, 4)], axes=(-1, 0))["axes"] == (0, 2)
    assert attrs_of("concat", [f32(2, 3), f32(2, 1)], axis=-1)["axis"] == 1
    assert attrs_of("take", [f32(2, 3), ((4,), "int64")], axis=-2)["axis"] == 0
    assert attrs_of("upsample_nearest", [f32(1, 1, 2, 3)], scale=2)["scale"] == (2, 2)


@pytest.mark.parametrize("size,python", [
    (7, slice(None, None, -2)), (7, slice(0, 7, 3)), (5, slice(4, None, -3)),
    (5, slice(3, 1)), (5, slice(2, 3, -1)), (5, slice(3, 0, -5)), (6, slice(-1, -7, -1)),
])
def test_slice_bounds_are_stored_tight_and_select_the_same(size, python, rng):
    bounds = python.indices(size)
    attrs = attrs_of("slice", [f32(size)], starts=[bounds[0]], stops=[bounds[1]],
                     steps=[bounds[2]])
    start, stop, step = attrs["starts"][0], attrs["stops"][0], attrs["steps"][0]
    picked = list(range(size))[python]
    # the stored triple, read as the op does (stop < 0: through index 0), picks the same
    assert list(range(size))[slice(start, None if stop < 0 else stop, step)] == picked
    if picked:
        assert stop == picked[-1] + (1 if step > 0 else -1)
    assert len(picked) > 1 or step == 1
    x = rng.standard_normal(size)
    np.testing.assert_array_equal(
        run("slice", [x], starts=[bounds[0]], stops=[bounds[1]], steps=[bounds[2]]), x[python])


# -- index inputs: run-time range checks, negative indices --------------------------------------
@pytest.mark.parametrize("bad", [5, -6])
def test_take_out_of_range_index_raises_at_run_time(bad, rng):
    x = rng.standard_normal((3, 5))
    idx = np.array([[0, bad], [1, 2]])
    with pytest.raises(DlcError, match=rf"take: index {bad} is out of range for axis 1 of "
                                       r"size 5 \(valid: -5..4\)"):
        run("take", [x, idx], axis=1)


@pytest.mark.parametrize("bad", [3, -4])
def test_gather_out_of_range_index_raises_at_run_time(bad, rng):
    x = rng.standard_normal((3, 4))
    idx = np.array([[0, 1], [bad, 2]])
    with pytest.raises(DlcError, match=rf"gather: index {bad} is out of range for axis 0 of "
                                       r"size 3 \(valid: -3..2\)"):
        run("gather", [x, idx], axis=0)


def test_scatter_add_out_of_range_index_raises_at_run_time(rng):
    x, src = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    with pytest.raises(DlcError, match=r"scatter_add: index 4 is out of range for axis 1"):
        run("scatter_add", [x, np.array([[0, 4], [1, 1]]), src], axis=1)


def test_empty_axis_names_no_valid_range(rng):
    with pytest.raises(DlcError, match="the axis is empty"):
        run("take", [np.zeros((2, 0)), np.array([0])], axis=1)


def test_negative_indices_count_from_the_end(rng):
    x = rng.standard_normal((4, 5))
    idx = rng.integers(-5, 5, (3, 2))
    np.testing.assert_array_equal(run("take", [x, idx], axis=1), np.take(x, idx, axis=1))
    idx = rng.integers(-4, 4, (4, 5))
    np.testing.assert_array_equal(run("gather", [x, idx], axis=0),
                                  np.take_along_axis(x, idx, axis=0))


def test_scatter_add_negative_and_repeated_indices(rng):
    x, src = rng.standard_normal((3, 4)), rng.standard_normal((3, 6))
    idx = rng.integers(-4, 4, (2, 6))
    expected = torch.scatter_add(torch.from_numpy(x), 1, torch.from_numpy(idx % 4),
                                 torch.from_numpy(src))
    assert_allclose(run("scatter_add", [x, idx, src], axis=1), expected.numpy(),
                    rtol=1e-10, atol=1e-12)


def test_int32_indices(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    idx = rng.integers(0, 4, 5).astype(np.int32)
    np.testing.assert_array_equal(run("take", [x, idx], axis=0), x[idx])


def test_index_inputs_are_nondiff():
    for op in ("take", "gather", "scatter_add"):
        assert dlc.ops.OPS[op].nondiff == (1,)
    assert dlc.ops.OPS["scatter_add"].kind is dlc.ops.OPAQUE
    assert dlc.ops.OPS["gather"].kind is dlc.ops.MOVEMENT


# -- dtypes other than float; owned outputs ----------------------------------------------------
@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_movement_on_integer_and_bool_tensors(dtype, rng):
    x = rng.integers(-9, 9, (3, 4)).astype(dtype)
    y = rng.integers(-9, 9, (3, 2)).astype(dtype)
    checks = [
        (run("reshape", [x], shape=(2, 6)), x.reshape(2, 6)),
        (run("permute", [x], perm=(1, 0)), x.T),
        (run("broadcast_to", [y[:, :1]], shape=(2, 3, 5)), np.broadcast_to(y[:, :1], (2, 3, 5))),
        (run("slice", [x], starts=(2, 0), stops=(-1, 4), steps=(-1, 3)), x[2::-1, ::3]),
        (run("concat", [x, y], axis=1), np.concatenate([x, y], axis=1)),
        (run("flip", [x], axes=(0, 1)), x[::-1, ::-1]),
        (run("pad", [x], pads=(1, 0, 0, 2), value=1.0),
         np.pad(x, ((1, 0), (0, 2)), constant_values=1)),
        (run("pad", [x], pads=(0, 2, 1, -1), mode="reflect"),
         np.pad(x, ((0, 2), (1, 0)), mode="reflect")[:, :-1]),
        (run("pad", [x], pads=(2, -1, -2, 3), mode="replicate"),
         np.pad(x[:-1, 2:], ((2, 0), (0, 3)), mode="edge")),
    ]
    for got, expected in checks:
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_pad_modes_store_no_fill_value_but_constant():
    for mode in ("reflect", "replicate"):
        assert attrs_of("pad", [f32(3, 4)], pads=(0, 0, 1, 1), mode=mode, value=2.0)["value"] \
            == 0.0
    assert attrs_of("pad", [f32(3, 4)], pads=(0, 0, 1, 1), value=2.0)["value"] == 2.0


def test_replicate_pad_of_a_cropped_axis_repeats_the_new_edge(rng):
    x = rng.standard_normal(6)
    np.testing.assert_array_equal(run("pad", [x], pads=(-2, 1), mode="replicate"),
                                  np.pad(x[2:], (0, 1), mode="edge"))
    np.testing.assert_array_equal(run("pad", [x], pads=(3, -6), mode="replicate"),
                                  np.full(3, x[0]))


def test_outputs_do_not_alias_inputs(rng):
    x = rng.standard_normal((1, 2, 3, 4))
    views = {
        "reshape": dict(shape=(6, 4)), "permute": dict(perm=(3, 2, 1, 0)),
        "broadcast_to": dict(shape=(2, 2, 3, 4)), "flip": dict(axes=(3,)),
        "slice": dict(starts=(0, 0, 0, 0), stops=(1, 2, 3, 4), steps=(1, 1, 1, 1)),
        "pad": dict(pads=(0,) * 8), "upsample_nearest": dict(scale=(1, 1)),
        "concat": dict(axis=0),
    }
    for op, attrs in views.items():
        assert not np.shares_memory(run(op, [x], **attrs), x), op
