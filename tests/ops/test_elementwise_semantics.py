"""What the op table cannot express for the elementwise and basic reduction ops: dtype rules,
error messages, canonical attributes, erf accuracy, edge values and division by zero."""
import math
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch

import dlc  # noqa: F401  (registers ops)
from backends.eager import run_graph
from dlc.errors import ShapeError
from dlc.ir.builder import Builder
from dlc.ir.types import DTYPES, TensorType
from dlc.ops import OPS
from dlc.ops.elementwise import erf, erfc
from tests.ops.harness import assert_allclose

UNARY = ("neg", "abs", "sign", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid",
         "erf", "reciprocal", "log1p", "expm1", "floor", "ceil", "round", "relu", "leaky_relu",
         "gelu", "silu", "softplus", "logical_not", "tril", "triu", "cast", "one_hot")
BINARY = ("add", "sub", "mul", "div", "floor_div", "mod", "pow", "maximum", "minimum", "eq",
          "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor")
REDUCTIONS = ("sum", "mean", "prod", "max", "min", "var", "argmax", "argmin")
# attributes an op needs to be built at all
REQUIRED_ATTRS = {"cast": {"dtype": "float32"}, "one_hot": {"num_classes": 3},
                  "argmax": {"axis": 1}, "argmin": {"axis": 1},
                  **{r: {"axes": (1,)} for r in REDUCTIONS[:6]}}


def build(op: str, types: list[TensorType], **attrs):
    """A one-node graph; returns (graph, node)."""
    with Builder(op) as b:
        ins = [b.add_input(f"a{i}", t) for i, t in enumerate(types)]
        node = b.emit(op, tuple(ins), attrs)
    return b.finish([node]), node


def run_op(op: str, *arrays: np.ndarray, **attrs):
    """Apply one op to concrete arrays with the eager backend (which checks the dtype and
    shape of the result against the op's rule); returns (result, node)."""
    arrays = [np.asarray(a) for a in arrays]
    graph, node = build(op, [TensorType(a.shape, a.dtype.name) for a in arrays], **attrs)
    (out,) = run_graph(graph, arrays)
    return out, node


@contextmanager
def no_warnings():
    """A block in which any warning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def sample(rng, shape, dtype: str) -> np.ndarray:
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("int"):
        return rng.integers(0, 3, shape).astype(dtype)
    return rng.uniform(0.1, 2.0, shape).astype(dtype)


# -- dtype rules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("op", UNARY + BINARY + REDUCTIONS + ("where",))
def test_result_dtype_follows_the_rule_for_every_accepted_dtype(op, rng):
    accepted = []
    for dtype in DTYPES:
        arity = OPS[op].arity
        types = [TensorType((2, 3), dtype)] * arity
        if op == "where":
            types = [TensorType((2, 3), "bool"), TensorType((3,), dtype),
                     TensorType((2, 1), dtype)]
        try:
            graph, node = build(op, types, **REQUIRED_ATTRS.get(op, {}))
        except ShapeError:
            continue
        accepted.append(dtype)
        arrays = [sample(rng, t.shape, t.dtype) for t in types]
        (out,) = run_graph(graph, arrays)  # raises if dtype or shape differ from the rule
        assert out.dtype.name == node.type.dtype and out.shape == node.type.shape
    assert accepted, f"{op} accepts no dtype"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparisons_give_bool(op, dtype, rng):
    a, b = sample(rng, (3, 4), dtype), sample(rng, (4,), dtype)
    out, node = run_op(op, a, b)
    assert node.type.dtype == "bool" and out.dtype == np.bool_
    expected = getattr(torch, op)(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_argmax_gives_int64(op, dtype, rng):
    out, node = run_op(op, sample(rng, (3, 4), dtype), axis=0)
    assert node.type == TensorType((4,), "int64") and out.dtype == np.int64


def test_sum_dtypes():
    assert run_op("sum", np.ones((2, 3), bool), axes=(1,))[1].type.dtype == "int64"
    out, node = run_op("sum", np.array([2 ** 30, 2 ** 30], np.int32), axes=(0,))
    assert node.type.dtype == "int32" and out == -2 ** 31  # ints keep their dtype and wrap
    with pytest.raises(ShapeError, match="mean does not take dtype int64"):
        build("mean", [TensorType((3,), "int64")], axes=(0,))


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_div_refuses_integers(dtype):
    with pytest.raises(ShapeError) as e:
        build("div", [TensorType((3,), dtype)] * 2)
    msg = str(e.value)
    assert msg.startswith("div") and dtype in msg and "floor_div" in msg


@pytest.mark.parametrize("op,dtype,attrs", [
    ("exp", "int32", {}), ("erf", "int64", {}), ("gelu", "bool", {}), ("pow", "int64", {}),
    ("logical_not", "float32", {}), ("logical_and", "int64", {}), ("abs", "bool", {}),
    ("one_hot", "float32", {"num_classes": 2}), ("var", "int32", {"axes": (0,)}),
    ("argmax", "bool", {"axis": 0}), ("prod", "bool", {"axes": (0,)})])
def test_unsupported_dtype_names_the_op(op, dtype, attrs):
    t = TensorType((3,), dtype)
    types = [t] * OPS[op].arity
    with pytest.raises(ShapeError, match=rf"{op} does not take dtype {dtype}"):
        OPS[op].infer(types, OPS[op].canonical_attrs(types, attrs))
    with pytest.raises(ShapeError, match=rf"^{op} .*{dtype}"):
        build(op, types, **attrs)


def test_binary_dtype_mismatch_and_bad_broadcast():
    with pytest.raises(ShapeError, match="float32.*float64"):
        build("add", [TensorType((3,), "float32"), TensorType((3,), "float64")])
    with pytest.raises(ShapeError, match=r"\(3,\) and \(4,\)"):
        build("mul", [TensorType((3,), "float32"), TensorType((4,), "float32")])
    with pytest.raises(ShapeError, match="condition must be bool"):
        build("where", [TensorType((3,), "int64")] + [TensorType((3,), "float32")] * 2)


# -- erf -----------------------------------------------------------------------------------------
def _erf_points(rng) -> np.ndarray:
    bounds = np.array([1.5, 6.0])
    return np.concatenate([
        np.linspace(-7.0, 7.0, 20001),
        rng.uniform(-6.5, 6.5, 20000),
        10.0 ** rng.uniform(-300, 1.5, 20000) * rng.choice([-1.0, 1.0], 20000),
        np.nextafter(bounds, 0.0), bounds, np.nextafter(bounds, 10.0), -bounds,
    ])


def test_erf_is_float64_accurate(rng):
    x = _erf_points(rng)
    expected = np.array([math.erf(v) for v in x])
    got = erf(x)
    assert got.dtype == np.float64
    normal = np.abs(expected) >= np.finfo(np.float64).tiny  # subnormal results have fewer bits
    rel = np.abs(got - expected)[normal] / np.abs(expected[normal])
    assert rel.max() <= 1e-15, f"max relative error {rel.max():.3g}"
    assert np.all(np.abs(got - expected)[~normal] <= 4 * np.finfo(np.float64).smallest_subnormal)


def test_erf_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 40.0, -40.0])
    got = erf(x)
    np.testing.assert_array_equal(got[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(got[1]) and not np.signbit(got[0])
    assert np.isnan(got[4]) and got[5] == 1.0 and got[6] == -1.0
    assert erf(np.array(0.5)).shape == ()


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_erf_narrow_floats_are_rounded_float64(dtype, rng):
    x = rng.uniform(-4, 4, 200).astype(dtype)
    out, _ = run_op("erf", x)
    np.testing.assert_array_equal(out, erf(x.astype(np.float64)).astype(dtype))


def test_erfc_has_no_cancellation(rng):
    x = np.concatenate([rng.uniform(-6, 27, 20000), np.linspace(0.9, 1.6, 2001)])
    expected = np.array([math.erfc(v) for v in x])
    normal = expected >= np.finfo(np.float64).tiny
    rel = np.abs(erfc(x) - expected)[normal] / expected[normal]
    assert rel.max() <= 4e-15, f"max relative error {rel.max():.3g}"
    np.testing.assert_array_equal(erfc(np.array([np.inf, -np.inf, 0.0])), [0.0, 2.0, 1.0])
    assert np.isnan(erfc(np.array(np.nan)))


def test_gelu_none_is_the_erf_form(rng):
    # 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2): the second form has no
    # cancellation for negative x, so it is the oracle to hold the op to full precision
    x = np.concatenate([rng.standard_normal(500) * 3, rng.uniform(-37, 37, 500)])
    out, _ = run_op("gelu", x)
    expected = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x])
    assert_allclose(out, expected, rtol=4e-15, atol=1e-300)


# -- stable activations and precise log1p/expm1 ---------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_sigmoid_silu_softplus_do_not_overflow(dtype):
    x = np.array([-1e4, -500.0, -60.0, 0.0, 60.0, 500.0, 1e4], dtype)
    x = x[np.isfinite(x)]
    with no_warnings():
        sig, _ = run_op("sigmoid", x)
        silu, _ = run_op("silu", x)
        sp, _ = run_op("softplus", x, threshold=1e9)  # no shortcut: the smooth form itself
    assert np.all(np.isfinite(sig)) and np.all(np.isfinite(silu)) and np.all(np.isfinite(sp))
    assert sig[0] == 0 and sig[-1] == 1 and silu[-1] == x[-1] and sp[-1] == x[-1]
    assert sp[0] == 0 and np.all(sp >= 0)


def test_sigmoid_tail_is_relatively_accurate(rng):
    x = rng.uniform(-700, -1, 1000)
    out, _ = run_op("sigmoid", x)
    expected = np.array([1 / (1 + math.exp(-v)) for v in x])
    assert_allclose(out, expected, rtol=1e-14, atol=0)


def test_softplus_threshold_and_beta(rng):
    x = rng.uniform(-30, 30, 400)
    out, _ = run_op("softplus", x, beta=0.5, threshold=3.0)
    z = 0.5 * x
    expected = np.where(z > 3.0, x, np.array([math.log1p(math.exp(v)) for v in z]) / 0.5)
    assert_allclose(out, expected, rtol=1e-14, atol=0)


def test_log1p_expm1_are_precise_near_zero(rng):
    x = 10.0 ** rng.uniform(-300, -1, 500) * rng.choice([-1.0, 1.0], 500)
    out, _ = run_op("log1p", x)
    assert_allclose(out, [math.log1p(v) for v in x], rtol=1e-15, atol=0)
    out, _ = run_op("expm1", x)
    assert_allclose(out, [math.expm1(v) for v in x], rtol=1e-15, atol=0)


# -- integer semantics, NaN, rounding, cast ------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize("op", ["floor_div", "mod"])
def test_integer_division_by_zero_gives_zero(op, dtype):
    a = np.array([-7, 0, 5, 2 ** 30], dtype)
    with no_warnings():
        out, _ = run_op(op, a, np.zeros(4, dtype))
    np.testing.assert_array_equal(out, np.zeros(4, dtype))


@pytest.mark.parametrize("op,ref", [("floor_div", torch.floor_divide),
                                    ("mod", torch.remainder), ("div", torch.div)])
def test_float_division_by_zero_matches_torch(op, ref):
    a = np.array([1.0, -1.0, 0.0, np.inf, np.nan])
    b = np.array([0.0, 0.0, 0.0, 0.0, 0.0])
    with no_warnings():
        out, _ = run_op(op, a, b)
    expected = ref(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_array_equal(out, expected)  # inf and NaN in the same places


def test_sign_keeps_nan_and_zero():
    out, _ = run_op("sign", np.array([np.nan, -0.0, 0.0, -3.0, 2.0]))
    assert np.isnan(out[0])  # dlc keeps NaN (torch.sign would give 0)
    np.testing.assert_array_equal(out[1:], [0.0, 0.0, -1.0, 1.0])


def test_round_halves_to_even():
    x = np.arange(-5.5, 6.0, 1.0)
    out, _ = run_op("round", x)
    np.testing.assert_array_equal(out, [round(v) for v in x])  # Python rounds halves to even


def test_cast_truncates_toward_zero_and_tolerates_nan():
    x = np.array([-1e9 - 0.5, -2.99, -0.5, 0.5, 2.99, 1e9 + 0.5])
    out, _ = run_op("cast", x, dtype="int64")
    np.testing.assert_array_equal(out, [-1000000000, -2, 0, 0, 2, 1000000000])
    with no_warnings():
        out, node = run_op("cast", np.array([np.nan, np.inf]), dtype="int32")  # value undefined
    assert out.dtype == np.int32 and node.attrs == {"dtype": "int32"}


# -- sources -------------------------------------------------------------------------------------
@pytest.mark.parametrize("start,stop,step", [
    (0, 10, 1), (0, 10, 3), (10, 0, -3), (5, 5, 1), (5, 0, 1), (0, 5, -1), (-3, 4, 2),
    (0.0, 1.0, 0.1), (0.5, -2.25, -0.25), (1.0, 1.05, 0.1), (0, 1e6, 1e5)])
def test_arange_length_and_values(start, stop, step):
    dtype = "int64" if all(float(v).is_integer() for v in (start, step)) else "float64"
    out, node = run_op("arange", start=start, stop=stop, step=step, dtype=dtype)
    assert len(out) == max(0, math.ceil((stop - start) / step)) == node.type.shape[0]
    if len(out):
        expected = torch.arange(start, stop, step, dtype=getattr(torch, dtype)).numpy()
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("attrs,message", [
    ({"start": 0, "stop": 3, "step": 0}, "step must be nonzero"),
    ({"start": 0.5, "stop": 3}, "must be integers for dtype int64"),
    ({"start": 0, "stop": 3, "step": 0.5, "dtype": "int32"}, "must be integers"),
    ({"start": 0, "stop": float("inf"), "dtype": "float32"}, "finite"),
    ({"start": 0, "stop": 2, "dtype": "bool"}, "bool"),
    ({"stop": 3}, "missing required attribute start")])
def test_arange_errors(attrs, message):
    with pytest.raises(ShapeError, match=message):
        build("arange", [], **attrs)


def test_full_errors_and_values():
    out, node = run_op("full", shape=(2, 2), value=-3, dtype="int32")
    np.testing.assert_array_equal(out, np.full((2, 2), -3, np.int32))
    with pytest.raises(ShapeError, match="not an integer"):
        build("full", [], shape=(2,), value=0.5, dtype="int64")
    with pytest.raises(ShapeError, match="not 0 or 1"):
        build("full", [], shape=(2,), value=2, dtype="bool")
    with pytest.raises(ShapeError, match="negative dimension"):
        build("full", [], shape=(2, -1), value=0)


# -- tril/triu, one_hot ----------------------------------------------------------------------
def test_triangles_need_rank_two():
    for op in ("tril", "triu"):
        with pytest.raises(ShapeError, match="rank >= 2"):
            build(op, [TensorType((4,), "float32")])


def test_one_hot_out_of_range_rows_are_zero():
    idx = np.array([[0, 2, 3], [-1, 1, 7]], np.int64)
    out, node = run_op("one_hot", idx, num_classes=3)
    assert node.type == TensorType((2, 3, 3), "float32")
    expected = np.zeros((2, 3, 3), np.float32)
    expected[0, 0, 0] = expected[0, 1, 2] = expected[1, 1, 1] = 1
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ShapeError, match="num_classes must be >= 1"):
        build("one_hot", [TensorType((3,), "int64")], num_classes=0)


def test_attribute_validation():
    with pytest.raises(ShapeError, match="approximate must be one of"):
        build("gelu", [TensorType((3,), "float32")], approximate="exact")
    with pytest.raises(ShapeError, match="beta must be nonzero"):
        build("softplus", [TensorType((3,), "float32")], beta=0)
    with pytest.raises(ShapeError, match="unknown attribute"):
        build("relu", [TensorType((3,), "float32")], negative_slope=0.1)


# -- reductions: canonical attributes and edge shapes ---------------------------------------------
def test_reduction_axes_are_canonical():
    t = TensorType((2, 3, 4), "float32")
    _, node = build("sum", [t], axes=(-1, 0, -1))
    assert node.attrs == {"axes": (0, 2), "keepdims": False}
    assert node.type == TensorType((3,), "float32")
    _, node = build("var", [t], axes=[-2], keepdims=True)
    assert node.attrs == {"axes": (1,), "keepdims": True, "correction": 1}
    assert node.type == TensorType((2, 1, 4), "float32")
    _, node = build("argmin", [t], axis=-1, keepdims=True)
    assert node.attrs == {"axis": 2, "keepdims": True} and node.type.shape == (2, 3, 1)


@pytest.mark.parametrize("op,attrs", [("sum", {"axes": (3,)}), ("max", {"axes": (0, -4)}),
                                      ("argmax", {"axis": 3}), ("argmin", {"axis": -4})])
def test_reduction_axis_out_of_range(op, attrs):
    with pytest.raises(ShapeError, match=r"^" + op + r" .*axis -?\d is out of range for rank 3"):
        build(op, [TensorType((2, 3, 4), "float32")], **attrs)


@pytest.mark.parametrize("op", ["sum", "mean", "prod", "max", "min", "var"])
def test_reducing_a_scalar_is_the_identity(op):
    x = np.array(2.5)
    for axes in [(0,), (-1,), ()]:
        out, node = run_op(op, x, axes=axes)
        assert node.attrs["axes"] == () and out.shape == ()
        if op == "var":
            assert np.isnan(out)  # one element, correction 1: 0 / 0, as torch
        else:
            assert out == 2.5


def test_empty_axes_reduce_nothing(rng):
    x = rng.standard_normal((2, 3))
    for op in ("sum", "mean", "prod", "max", "min"):
        out, _ = run_op(op, x, axes=())
        np.testing.assert_array_equal(out, x)


def test_argmax_of_a_scalar():
    out, node = run_op("argmax", np.array(4.0), axis=-1)
    assert node.attrs["axis"] == 0 and out == 0 and out.dtype == np.int64


def test_reductions_over_an_empty_axis():
    x = np.zeros((3, 0), np.float64)
    with no_warnings():
        assert np.array_equal(run_op("sum", x, axes=(1,))[0], np.zeros(3))
        assert np.array_equal(run_op("prod", x, axes=(1,))[0], np.ones(3))
        assert np.isnan(run_op("mean", x, axes=(1,))[0]).all()  # 0 / 0, as torch
    for op, attrs in [("max", {"axes": (1,)}), ("min", {"axes": (0, 1)}),
                      ("argmax", {"axis": 1})]:
        with pytest.raises(ShapeError, match="empty axis"):
            build(op, [TensorType((3, 0), "float32")], **attrs)
    assert run_op("max", x, axes=(0,))[0].shape == (0,)  # the empty axis survives: fine


@pytest.mark.parametrize("correction", [0, 1, 2, 5])
def test_var_correction_matches_torch(correction, rng):
    x = rng.standard_normal((3, 4))
    with no_warnings():
        out, _ = run_op("var", x, axes=(1,), correction=correction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when N - correction <= 0
        expected = torch.var(torch.from_numpy(x), dim=1, correction=correction).numpy()
    assert_allclose(out, expected, rtol=1e-12, atol=0)  # inf where N <= correction
    with pytest.raises(ShapeError, match="correction must be >= 0"):
        build("var", [TensorType((3,), "float32")], axes=(0,), correction=-1)
