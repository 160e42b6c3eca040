"""Semantics of the contraction and window ops beyond the op table cases: shape and dtype
errors (ShapeError naming the shapes), canonical attributes, and conv / conv_transpose on
random configurations against torch in float32 at the default tolerance."""
import math

import numpy as np
import pytest
import torch

import dlc
from backends.eager import run_graph
from dlc.errors import ShapeError
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType
from tests.ops.cases_contraction import (adaptive_ref, avg_pool_ref, conv_ref, conv_t_ref,
                                         max_pool_ref)
from tests.ops.harness import TOL, assert_allclose


def build(op: str, shapes, attrs=None, dtypes=None):
    """A one-node graph applying `op` to inputs of the given shapes (float32 by default)."""
    dtypes = dtypes or ["float32"] * len(shapes)
    with Builder(op) as b:
        ins = [b.add_input(f"a{i}", TensorType(s, d))
               for i, (s, d) in enumerate(zip(shapes, dtypes))]
        node = b.emit(op, tuple(ins), dict(attrs or {}))
    return b.finish([node])


# (op, input shapes, attrs, dtypes, fragments the message must contain)
ERRORS = [
    ("matmul", [(3, 4), (5, 6)], {}, None, ["(3, 4)", "(5, 6)", "4 != 5"]),
    ("matmul", [(4,), (4, 2)], {}, None, ["rank >= 2", "(4,)"]),
    ("matmul", [(2, 3, 4), (3, 4, 5)], {}, None, ["(2,)", "(3,)", "do not broadcast"]),
    ("matmul", [(3, 4), (4, 5)], {}, ["float32", "float64"], ["float32", "float64"]),
    ("matmul", [(3, 4), (4, 5)], {}, ["bool", "bool"], ["bool"]),
    ("conv", [(1, 3, 8, 8), (4, 2, 3, 3)], {}, None, ["C_in=3", "(4, 2, 3, 3)"]),
    ("conv", [(1, 3, 8, 8), (4, 1, 3, 3)], {"groups": 2}, None,
     ["groups=2", "C_in=3", "(1, 3, 8, 8)"]),
    ("conv", [(1, 4, 8, 8), (3, 2, 3, 3)], {"groups": 2}, None,
     ["groups=2", "C_out=3", "(3, 2, 3, 3)"]),
    ("conv", [(1, 1, 4, 4), (1, 1, 7, 7)], {"padding": 1}, None,
     ["larger than the padded input", "(1, 1, 4, 4)", "(7, 7)"]),
    ("conv", [(1, 1, 8, 8), (1, 1, 3, 3)], {"stride": (1, 2, 3)}, None,
     ["stride", "1 or 2 values"]),
    ("conv", [(1, 1, 8, 8), (1, 1, 3)], {}, None, ["(1, 1, 3)", "rank 4", "(1, 1, 8, 8)"]),
    ("conv", [(1, 8), (1, 1, 3)], {}, None, ["(N, C, *spatial)", "(1, 8)"]),
    ("conv", [(1, 1, 8, 8), (1, 1, 3, 3)], {"stride": 0}, None, ["stride", "positive"]),
    ("conv", [(1, 1, 8), (1, 1, 3)], {}, ["int64", "int64"], ["int64"]),
    ("conv", [(1, 1, 8), (1, 1, 3)], {}, ["float32", "float64"], ["float32", "float64"]),
    ("conv_transpose", [(1, 3, 4, 4), (4, 2, 3, 3)], {}, None, ["C_in=3", "(4, 2, 3, 3)"]),
    ("conv_transpose", [(1, 4, 4, 4), (4, 2, 3, 3)], {"groups": 3}, None,
     ["groups=3", "C_in=4"]),
    ("conv_transpose", [(1, 2, 4, 4), (2, 2, 3, 3)], {"stride": 2, "output_padding": 2}, None,
     ["output_padding", "stride", "dilation"]),
    ("conv_transpose", [(1, 1, 2, 2), (1, 1, 3, 3)], {"padding": 3}, None,
     ["not positive", "(1, 1, 2, 2)", "(1, 1, 3, 3)"]),
    ("max_pool", [(1, 1, 2, 2)], {"kernel": 5}, None, ["not positive", "(1, 1, 2, 2)"]),
    ("max_pool", [(1, 1, 8, 8)], {"kernel": 3, "padding": 2}, None,
     ["padding [2, 2]", "half the kernel [3, 3]"]),
    ("max_pool", [(1, 1, 8, 8)], {"kernel": (2, 2, 2)}, None, ["kernel", "1 or 2 values"]),
    ("avg_pool", [(1, 1, 8, 8)], {"kernel": 2, "stride": -1}, None, ["stride", "positive"]),
    ("avg_pool", [(1, 1, 8, 8)], {"kernel": 2}, ["int32"], ["int32"]),
    ("adaptive_avg_pool", [(1, 1, 8, 8)], {"output_size": (0, 2)}, None,
     ["output_size [0, 2]", "positive"]),
    ("adaptive_avg_pool", [(1, 1, 8, 8)], {"output_size": (2, 2, 2)}, None,
     ["output_size", "1 or 2 values"]),
    ("conv_weight_grad", [(1, 2, 8, 8), (1, 4, 5, 5)], {"kernel": 3}, None,
     ["(1, 4, 5, 5)", "(1, 4, 6, 6)", "conv(x, w)", "(4, 2, 3, 3)"]),
    ("conv_weight_grad", [(1, 4, 8, 8), (1, 3, 6, 6)], {"kernel": 3, "groups": 2}, None,
     ["groups=2", "(1, 3, 6, 6)"]),
    ("conv_weight_grad", [(2, 2, 8, 8), (1, 4, 6, 6)], {"kernel": 3}, None,
     ["N=2", "(1, 4, 6, 6)"]),
    ("conv_weight_grad", [(1, 2, 8, 8), (1, 4, 6, 6)], {}, None,
     ["missing required attribute kernel"]),
    ("conv_weight_grad", [(1, 2, 8), (1, 4, 6, 6)], {"kernel": 3}, None,
     ["(1, 4, 6, 6)", "rank 3"]),
    ("max_pool_argmax", [(1, 1, 8, 8)], {"kernel": 3, "padding": 2}, None,
     ["padding [2, 2]", "half the kernel [3, 3]"]),
    ("avg_pool_grad", [(1, 1, 3, 3)], {"kernel": 2, "input_size": 8}, None,
     ["(1, 1, 3, 3)", "(1, 1, 4, 4)", "(1, 1, 8, 8)"]),
    ("avg_pool_grad", [(1, 1, 3, 3)], {"kernel": 2, "input_size": (6, 0)}, None,
     ["input_size [6, 0]", "positive"]),
    ("avg_pool_grad", [(1, 3)], {"kernel": 2, "input_size": 6}, None,
     ["g must be (N, C, *spatial)", "(1, 3)"]),
    ("adaptive_avg_pool_grad", [(1, 1, 2, 2)], {"input_size": (0, 2)}, None,
     ["input_size [0, 2]", "positive"]),
    ("adaptive_avg_pool_grad", [(1, 1, 2, 2)], {"input_size": 3}, ["int64"], ["int64"]),
]


@pytest.mark.parametrize("op,shapes,attrs,dtypes,fragments", ERRORS,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
def test_shape_errors(op, shapes, attrs, dtypes, fragments):
    with pytest.raises(ShapeError) as info:
        build(op, shapes, attrs, dtypes)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_attrs_are_canonical():
    """Single ints broadcast to one value per spatial axis (gradient ops' kernel and
    input_size too); pool stride defaults to kernel; canonical attributes are a fixed point
    (verify re-normalizes them)."""
    g = build("conv", [(1, 2, 8, 8), (4, 2, 3, 3)], {"stride": 2, "padding": (1, 0)})
    assert g.nodes[0].attrs == {"stride": (2, 2), "padding": (1, 0), "dilation": (1, 1),
                                "groups": 1}
    assert g.nodes[0].type.shape == (1, 4, 4, 3)
    dlc.verify(g)
    for stride in ({}, {"stride": None}):
        g = build("max_pool", [(1, 2, 7)], {"kernel": 3, **stride})
        assert g.nodes[0].attrs["stride"] == (3,) and g.nodes[0].type.shape == (1, 2, 2)
        dlc.verify(g)
    g = build("adaptive_avg_pool", [(1, 2, 7, 5)], {"output_size": 3})
    assert g.nodes[0].attrs["output_size"] == (3, 3)
    dlc.verify(g)
    g = build("conv_weight_grad", [(1, 2, 8, 8), (1, 4, 2, 6)],
              {"kernel": 3, "stride": (3, 1)})
    assert g.nodes[0].attrs == {"kernel": (3, 3), "stride": (3, 1), "padding": (0, 0),
                                "dilation": (1, 1), "groups": 1}
    assert g.nodes[0].type.shape == (4, 2, 3, 3)
    dlc.verify(g)
    g = build("avg_pool_grad", [(1, 2, 3)], {"kernel": 2, "input_size": 7})
    assert g.nodes[0].attrs["stride"] == (2,) and g.nodes[0].attrs["input_size"] == (7,)
    assert g.nodes[0].type.shape == (1, 2, 7)
    dlc.verify(g)


def random_conv_config(rng: np.random.Generator, transpose: bool) -> tuple:
    """x shape, w shape and attrs of a valid random conv (or conv_transpose), 1-D or 2-D.

    Each output is a sum of at most 8 products, so float32 rounding stays within the
    default atol (the table cases cover longer sums, see conv_case)."""
    nsp = int(rng.integers(1, 3))
    groups = int(rng.integers(1, 3))
    while True:
        kernel = tuple(int(k) for k in rng.integers(1, 4, nsp))
        c_in_g = int(rng.integers(1, 3))
        if c_in_g * math.prod(kernel) <= 8:
            break
    c_out_g = int(rng.integers(1, 3))
    stride = tuple(int(s) for s in rng.integers(1, 4, nsp))
    dilation = tuple(int(d) for d in rng.integers(1, 3, nsp))
    padding = tuple(int(p) for p in rng.integers(0, 3, nsp))
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    size = tuple(int(max(1, s - 2 * p) + rng.integers(0, 6)) for s, p in zip(spans, padding))
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    x_shape = (int(rng.integers(1, 3)), c_in_g * groups) + size
    if not transpose:
        return x_shape, (c_out_g * groups, c_in_g) + kernel, attrs
    # output_padding must stay below stride or dilation; size the input so output > 0
    attrs["output_padding"] = tuple(int(rng.integers(0, max(s, d)))
                                    for s, d in zip(stride, dilation))
    size = tuple(i + -(-2 * p // s) for i, p, s in zip(size, padding, stride))
    return x_shape[:2] + size, (c_in_g * groups, c_out_g) + kernel, attrs


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
@pytest.mark.parametrize("trial", range(6))
def test_random_conv_matches_torch_f32(trial, transpose, rng):
    x_shape, w_shape, attrs = random_conv_config(rng, transpose)
    op, ref = ("conv_transpose", conv_t_ref) if transpose else ("conv", conv_ref)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    g = build(op, [x_shape, w_shape], attrs)
    (out,) = run_graph(g, [x, w])
    expected = ref(torch.from_numpy(x), torch.from_numpy(w), **attrs).numpy()
    assert out.dtype == np.float32 and out.shape == expected.shape
    rtol, atol = TOL["float32"]
    assert_allclose(out, expected, rtol=rtol, atol=atol,
                    err_msg=f"{op} x{x_shape} w{w_shape} {attrs}")


def random_pool_attrs(rng: np.random.Generator, op: str, nsp: int) -> dict:
    """Valid random attributes for a pool over `nsp` spatial axes (torch's padding rule)."""
    if op == "adaptive_avg_pool":
        return {"output_size": tuple(int(o) for o in rng.integers(1, 8, nsp))}
    kernel = tuple(int(k) for k in rng.integers(1, 5, nsp))
    attrs = {"kernel": kernel, "stride": tuple(int(s) for s in rng.integers(1, 4, nsp)),
             "padding": tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel),
             "ceil_mode": bool(rng.integers(0, 2))}
    if op == "max_pool":
        attrs["dilation"] = tuple(int(d) for d in rng.integers(1, 3, nsp))
    else:
        attrs["count_include_pad"] = bool(rng.integers(0, 2))
    return attrs


POOL_REFS = {"max_pool": max_pool_ref, "avg_pool": avg_pool_ref,
             "adaptive_avg_pool": adaptive_ref}


def random_pool_config(rng: np.random.Generator, op: str) -> tuple[tuple, dict]:
    """x shape and valid random attributes of a pool, 1-D or 2-D."""
    nsp = int(rng.integers(1, 3))
    attrs = random_pool_attrs(rng, op, nsp)
    spans = [d * (k - 1) + 1 - 2 * p for k, d, p in
             zip(attrs.get("kernel", (1,) * nsp), attrs.get("dilation", (1,) * nsp),
                 attrs.get("padding", (0,) * nsp))]
    size = tuple(int(max(1, s) + rng.integers(0, 6)) for s in spans)
    return (2, 3) + size, attrs


@pytest.mark.parametrize("op", sorted(POOL_REFS))
@pytest.mark.parametrize("trial", range(6))
def test_random_pool_matches_torch(op, trial, rng):
    """Random windows, strides, padding and ceil_mode (edge windows included), 1-D or 2-D."""
    x_shape, attrs = random_pool_config(rng, op)
    x = rng.standard_normal(x_shape).astype(np.float32)
    (out,) = run_graph(build(op, [x.shape], attrs), [x])
    expected = POOL_REFS[op](torch.from_numpy(x), **attrs).numpy()
    assert out.dtype == np.float32 and out.shape == expected.shape, (out.shape, attrs)
    rtol, atol = TOL["float32"]
    assert_allclose(out, expected, rtol=rtol, atol=atol, err_msg=f"{op} {attrs}")


def test_max_pool_pads_with_minus_infinity(rng):
    """An all-negative input must not pick up a 0 from the padding."""
    x = -rng.uniform(0.5, 2.0, (1, 2, 6, 6))
    attrs = {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}
    (out,) = run_graph(build("max_pool", [x.shape], attrs, ["float64"]), [x])
    expected = max_pool_ref(torch.from_numpy(x), **attrs).numpy()
    assert (out < 0).all()
    assert_allclose(out, expected, rtol=0, atol=0)


NAN_CASES = [
    ("max_pool", [(1, 2, 6, 6)], {"kernel": 3, "stride": 2, "padding": 1}, max_pool_ref),
    ("avg_pool", [(1, 2, 6, 6)], {"kernel": 2, "padding": 1}, avg_pool_ref),
    ("adaptive_avg_pool", [(1, 2, 7, 7)], {"output_size": 3}, adaptive_ref),
    ("conv", [(1, 2, 6, 6), (3, 2, 3, 3)], {"padding": 1, "stride": 2}, conv_ref),
    ("conv_transpose", [(1, 2, 4, 4), (2, 3, 3, 3)], {"stride": 2}, conv_t_ref),
    ("matmul", [(2, 4, 5), (5, 3)], {}, lambda a, b: a @ b),
]


@pytest.mark.parametrize("op,shapes,attrs,ref", NAN_CASES, ids=[c[0] for c in NAN_CASES])
def test_nan_stays_in_its_windows(op, shapes, attrs, ref, rng):
    """A NaN reaches exactly the outputs whose window (or row) holds it, as in torch."""
    arrays = [rng.standard_normal(s) for s in shapes]
    arrays[0][(0,) * (len(shapes[0]) - 1) + (1,)] = np.nan
    (out,) = run_graph(build(op, shapes, attrs, ["float64"] * len(shapes)), arrays)
    expected = ref(*[torch.from_numpy(a) for a in arrays], **attrs).numpy()
    assert np.isnan(expected).any() and not np.isnan(expected).all()
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    rtol, atol = TOL["float64"]
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=atol, equal_nan=True)
