"""What the op table cannot express for dlc/ops/nn.py: every decomposition is made of
primitives and agrees with the op's reference; the counter-based RNG is deterministic, has
the right statistics and matches a plain-integer re-implementation of its hash bit for bit;
bad inputs raise ShapeError naming the shapes."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dlc  # noqa: F401  (registers ops)
from backends.eager import run_graph
from dlc.errors import DlcError, ShapeError
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType
from dlc.ops import ELEMENTWISE, MOVEMENT, OPS, REDUCTION
from passes.decompose import decompose
from tests.ops import cases_nn  # noqa: F401  (registers the nn cases in CASES)
from tests.ops.harness import CASES, TOL, assert_allclose

NN_OPS = ("logsumexp", "softmax", "log_softmax", "layer_norm", "rms_norm", "group_norm",
          "batch_norm", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "bce_with_logits",
          "dropout", "random_uniform", "random_normal")
RANDOM_OPS = ("dropout", "random_uniform", "random_normal")
PRIMITIVE_KINDS = (ELEMENTWISE, REDUCTION, MOVEMENT)


def build(op: str, types, **attrs):
    """A one-node graph applying `op` to inputs of `types`."""
    with Builder(op) as b:
        ins = [b.add_input(f"a{i}", t) for i, t in enumerate(types)]
        node = b.emit(op, tuple(ins), attrs)
    return b.finish([node])


def type_of(a: np.ndarray) -> TensorType:
    return TensorType(a.shape, a.dtype.name)


def run_op(op: str, *arrays, lower: bool = False, **attrs) -> np.ndarray:
    """Run one op eagerly: its reference, or with `lower` its decomposition."""
    arrays = [np.asarray(a) for a in arrays]
    graph = build(op, [type_of(a) for a in arrays], **attrs)
    return run_graph(decompose(graph) if lower else graph, arrays)[0]


def seed_array(value: int) -> np.ndarray:
    return np.asarray(value, dtype=np.int64)


# -- (1) decompositions ------------------------------------------------------------------------
def test_every_nn_op_is_registered_with_its_kind():
    for op in NN_OPS:
        assert op in OPS, op
        assert OPS[op].kind is (ELEMENTWISE if op in RANDOM_OPS else REDUCTION), op
    for op in NN_OPS:
        if op != "random_uniform":
            assert OPS[op].decompose is not None, f"{op} has no decomposition"
    assert OPS["random_uniform"].decompose is None  # the one random primitive


def _decomposition_params():
    for c in CASES:
        if c.op in NN_OPS and OPS[c.op].decompose is not None:
            for dt in c.dtypes:
                yield pytest.param(c, dt, id=f"{c.id}-{dt}")


def assert_matches(got: np.ndarray, want: np.ndarray, dtype: str) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg="NaN positions")
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("c,dtype", list(_decomposition_params()))
def test_decomposition_is_primitive_and_matches_reference(c, dtype, rng):
    arrays = c.make_inputs(rng, dtype)
    graph = c.build(arrays)
    (want,) = run_graph(graph, arrays)
    lowered = decompose(graph)
    dlc.verify(lowered)
    for node in lowered.nodes:
        assert node.op.decompose is None and node.op.kind in PRIMITIVE_KINDS, \
            f"{c.op} decomposes into non-primitive {node.op.name}"
    (got,) = run_graph(lowered, arrays)
    if c.op in RANDOM_OPS:  # the same hash and the same float operations: bit for bit
        np.testing.assert_array_equal(got, want)
    else:
        assert_matches(got, want, dtype)


FLOAT16_CASES = [
    ("softmax", [(3, 5)], {"axis": 1}),
    ("logsumexp", [(3, 5)], {"axes": (0, 1)}),
    ("layer_norm", [(3, 8)], {"axes": (1,)}),
    ("rms_norm", [(3, 8)], {"axes": (1,)}),
    ("group_norm", [(2, 4, 3)], {"groups": 2}),
    ("mse_loss", [(3, 4), (3, 4)], {}),
    ("bce_with_logits", [(3, 4), (3, 4)], {"reduction": "sum"}),
]


@pytest.mark.parametrize("op,shapes,attrs", FLOAT16_CASES, ids=[c[0] for c in FLOAT16_CASES])
def test_float16_computes_in_float32(op, shapes, attrs, rng):
    """float16 in, float16 out; both forms compute in float32 and match torch's float32."""
    arrays = [rng.standard_normal(s).astype(np.float16) for s in shapes]
    graph = build(op, [type_of(a) for a in arrays], **attrs)
    (want,) = run_graph(graph, arrays)
    (got,) = run_graph(decompose(graph), arrays)
    assert want.dtype == got.dtype == np.float16
    assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-3,
                    atol=1e-3)
    case = next(c for c in CASES if c.op == op)
    wide = case.torch_ref(*[torch.from_numpy(a.astype(np.float32)) for a in arrays],
                          **graph.nodes[-1].attrs)
    # rounding the float32 result once to float16: half an ulp of float16
    assert_allclose(want.astype(np.float32), wide.numpy(), rtol=2 ** -11, atol=1e-4)


# -- (2) the RNG: determinism and statistics ---------------------------------------------------
N = 1_000_000


def dropout_mask(seed: int, p: float, salt: int = 0, n: int = N) -> np.ndarray:
    out = run_op("dropout", np.ones(n, np.float32), seed_array(seed), p=p, salt=salt)
    return out != 0


def uniform(seed: int, shape=(N,), salt: int = 0, dtype: str = "float64") -> np.ndarray:
    return run_op("random_uniform", seed_array(seed), shape=shape, dtype=dtype, salt=salt)


def within_sigmas(observed: float, expected: float, sigma: float, k: float = 5.0) -> bool:
    return abs(observed - expected) <= k * sigma


def test_same_seed_and_salt_give_the_same_stream():
    np.testing.assert_array_equal(dropout_mask(42, 0.3, 5, 4096), dropout_mask(42, 0.3, 5, 4096))
    a = run_op("random_normal", seed_array(-7), shape=(33, 3), salt=2)
    b = run_op("random_normal", seed_array(-7), shape=(33, 3), salt=2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("other", [{"seed": 43}, {"seed": 42 + 2 ** 32}, {"salt": 6},
                                   {"seed": -42}], ids=["seed+1", "seed-high-word", "salt",
                                                        "seed-negated"])
def test_different_seed_or_salt_gives_an_independent_mask(other):
    p, n = 0.3, 200_000
    base = dropout_mask(42, p, 5, n)
    changed = dropout_mask(other.get("seed", 42), p, other.get("salt", 5), n)
    # two independent masks disagree at a fraction 2 p (1 - p) of the elements
    q = 2 * p * (1 - p)
    assert within_sigmas(np.mean(base != changed), q, math.sqrt(q * (1 - q) / n))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.875])
def test_dropout_keep_fraction_and_scale(p, rng):
    seed = int(rng.integers(-2 ** 63, 2 ** 63 - 1))
    x = rng.standard_normal(N).astype(np.float32)
    out = run_op("dropout", x, seed_array(seed), p=p, salt=3)
    keep = out != 0
    assert within_sigmas(keep.mean(), 1 - p, math.sqrt(p * (1 - p) / N))
    np.testing.assert_array_equal(out[keep], x[keep] / np.float32(1 - p))


def test_dropout_edges_p0_and_p1(rng):
    x = rng.standard_normal((4, 5))
    np.testing.assert_array_equal(run_op("dropout", x, seed_array(1), p=0.0), x)
    np.testing.assert_array_equal(run_op("dropout", x, seed_array(1), p=1.0), np.zeros_like(x))


def test_uniform_range_moments_and_bins(rng):
    u = uniform(int(rng.integers(-2 ** 63, 2 ** 63 - 1)), salt=9)
    assert u.min() >= 0.0 and u.max() < 1.0
    np.testing.assert_array_equal(u * 2 ** 24, np.floor(u * 2 ** 24))  # 24-bit grid
    assert within_sigmas(u.mean(), 0.5, math.sqrt(1 / 12 / N))
    # Var((u - 1/2)^2) = 1/80 - 1/144 = 1/180
    assert within_sigmas(np.mean((u - 0.5) ** 2), 1 / 12, math.sqrt(1 / 180 / N))
    counts = np.bincount((u * 64).astype(np.int64), minlength=64)
    expected = N / 64
    assert np.all(np.abs(counts - expected) <= 5 * math.sqrt(expected * (1 - 1 / 64)))
    # neighbouring counters are uncorrelated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) <= 5 / math.sqrt(N)


def test_uniform_float32_equals_float64_stream(rng):
    seed = int(rng.integers(0, 2 ** 40))
    u32 = uniform(seed, (1000,), dtype="float32")
    np.testing.assert_array_equal(u32.astype(np.float64), uniform(seed, (1000,)))


def test_normal_moments(rng):
    z = run_op("random_normal", seed_array(int(rng.integers(0, 2 ** 62))), shape=(N,),
               dtype="float64", salt=1)
    assert np.isfinite(z).all() and np.abs(z).max() <= math.sqrt(2 * 24 * math.log(2)) + 1e-9
    assert within_sigmas(z.mean(), 0.0, 1 / math.sqrt(N))
    assert within_sigmas(z.var(), 1.0, math.sqrt(2 / N))
    inside = np.mean(np.abs(z) < 1.0)
    q = math.erf(1 / math.sqrt(2))
    assert within_sigmas(inside, q, math.sqrt(q * (1 - q) / N))
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) <= 5 / math.sqrt(N)


# -- (3) the hash, re-implemented with Python ints ---------------------------------------------
def _mix_int(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x7FEB352D) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x846CA68B) & 0xFFFFFFFF
    return h ^ (h >> 16)


def _hash_int(seed: int, salt: int, i: int) -> int:
    lo, hi = seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF
    a = _mix_int(_mix_int(_mix_int(lo ^ 0x243F6A88) ^ hi) ^ salt)
    b = _mix_int(_mix_int(_mix_int(hi ^ 0x85A308D3) ^ salt) ^ lo)
    return _mix_int(_mix_int(i ^ a) ^ b)


SEEDS_AND_SALTS = [(0, 0), (1, 0), (-1, 7), (2 ** 63 - 1, 2 ** 32 - 1), (-2 ** 63, 1),
                   (123456789012345, 42)]


@pytest.mark.parametrize("seed,salt", SEEDS_AND_SALTS)
def test_uniform_matches_integer_hash_bit_for_bit(seed, salt):
    shape = (5, 7, 3)
    u = uniform(seed, shape, salt, dtype="float32").reshape(-1)
    for i in (0, 1, 2, 17, 50, 104):
        assert u[i] == np.float32((_hash_int(seed, salt, i) >> 8) / 2 ** 24), i


@pytest.mark.parametrize("seed,salt", SEEDS_AND_SALTS)
def test_dropout_and_normal_match_integer_hash(seed, salt):
    p = 0.4
    x = np.arange(1, 61, dtype=np.float64).reshape(3, 4, 5)
    out = run_op("dropout", x, seed_array(seed), p=p, salt=salt).reshape(-1)
    z = run_op("random_normal", seed_array(seed), shape=(60,), dtype="float64", salt=salt)
    for i in (0, 3, 29, 59):
        u = (_hash_int(seed, salt, i) >> 8) / 2 ** 24
        assert out[i] == ((i + 1) / (1 - p) if u >= p else 0.0), i
        u1 = (_hash_int(seed, salt, 2 * i) >> 8) / 2 ** 24
        u2 = (_hash_int(seed, salt, 2 * i + 1) >> 8) / 2 ** 24
        expected = math.sqrt(-2 * math.log(1 - u1)) * math.cos(2 * math.pi * u2)
        assert z[i] == pytest.approx(expected, rel=1e-12, abs=1e-12), i


def test_dropout_threshold_is_exact_at_the_boundary():
    """An element with u exactly p is kept (u >= p); one just below is dropped."""
    seed, salt = 5, 0
    bits = [_hash_int(seed, salt, i) >> 8 for i in range(8)]
    x = np.ones(8)
    for lower in (False, True):
        for i, k in enumerate(bits):
            if 0 < k < 2 ** 24 - 1:
                at = run_op("dropout", x, seed_array(seed), lower=lower, p=k / 2 ** 24,
                            salt=salt)
                above = run_op("dropout", x, seed_array(seed), lower=lower,
                               p=(k + 1) / 2 ** 24, salt=salt)
                assert at[i] != 0 and above[i] == 0, (i, lower)


# -- (4) errors --------------------------------------------------------------------------------
F32, F64, I64, I32 = "float32", "float64", "int64", "int32"


def t(shape, dtype=F32) -> TensorType:
    return TensorType(shape, dtype)


ERRORS = [
    ("cross_entropy", [t((4, 5)), t((5,), I64)], {}, r"target shape \(5,\) must be \(4,\)"),
    ("cross_entropy", [t((2, 3, 4, 4)), t((2, 4), I64)], {}, r"must be \(2, 4, 4\)"),
    ("cross_entropy", [t((4, 5)), t((4,), F32)], {}, "integer class indices"),
    ("cross_entropy", [t((5,)), t((), I64)], {}, r"\(N, C, d\.\.\.\)"),
    ("cross_entropy", [t((4, 5), I64), t((4,), I64)], {}, "float tensor"),
    ("cross_entropy", [t((4, 5)), t((4,), I64)], {"reduction": "avg"}, "reduction must be"),
    ("cross_entropy", [t((4, 5)), t((4,), I64)], {"label_smoothing": 1.5}, "label_smoothing"),
    ("nll_loss", [t((4, 5)), t((4, 1), I32)], {}, r"target shape \(4, 1\)"),
    ("mse_loss", [t((3, 4)), t((4, 3))], {}, "same shape"),
    ("l1_loss", [t((3, 4)), t((3, 4), F64)], {}, "dtype mismatch"),
    ("bce_with_logits", [t((3,)), t((3,))], {"reduction": "max"}, "reduction must be"),
    ("layer_norm", [t((3, 4, 5))], {"axes": (1,)}, "trailing axes"),
    ("layer_norm", [t((3, 4, 5))], {"axes": ()}, "trailing axes"),
    ("rms_norm", [t((3, 4))], {"axes": (-1,), "eps": -1.0}, "eps must be >= 0"),
    ("group_norm", [t((2, 6, 3))], {"groups": 4}, "divide the 6 channels"),
    ("group_norm", [t((6,))], {"groups": 2}, r"\(N, C, \*spatial\)"),
    ("batch_norm", [t((4, 3, 2)), t((4,)), t((3,))], {}, r"one value per channel"),
    ("softmax", [t((3, 4))], {"axis": 2}, "out of range"),
    ("logsumexp", [t((3, 4), I64)], {"axes": (0,)}, "float tensor"),
    ("dropout", [t((3, 4)), t((), I64)], {"p": 1.5}, r"p must be in \[0, 1\]"),
    ("dropout", [t((3, 4)), t((1,), I64)], {"p": 0.5}, "int64 scalar"),
    ("dropout", [t((3, 4)), t((), I32)], {"p": 0.5}, "int64 scalar"),
    ("random_uniform", [t((), I64)], {"shape": (3,), "dtype": "float16"}, "dtype must be"),
    ("random_uniform", [t((), I64)], {"shape": (3,), "salt": -1}, "salt"),
    ("random_normal", [t((), I64)], {"shape": (2 ** 31 + 1,)}, "counters"),
]


@pytest.mark.parametrize("op,types,attrs,message", ERRORS,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
def test_bad_inputs_raise_shape_error(op, types, attrs, message):
    with pytest.raises(ShapeError, match=message):
        build(op, types, **attrs)


def test_out_of_range_target_is_a_runtime_error(rng):
    x = rng.standard_normal((3, 4))
    target = np.array([0, 4, 1])
    with pytest.raises(DlcError, match="target 4 is out of range for 4 classes"):
        run_op("cross_entropy", x, target)
    with pytest.raises(DlcError, match="target -1 is out of range"):
        run_op("nll_loss", x, np.array([0, -1, 1]))


def test_all_targets_ignored_mean_is_nan_as_torch(rng):
    x = rng.standard_normal((3, 4))
    target = np.full(3, -100)
    got = run_op("cross_entropy", x, target, label_smoothing=0.1)
    want = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(target), label_smoothing=0.1)
    assert np.isnan(got) and torch.isnan(want)
    assert run_op("cross_entropy", x, target, reduction="sum") == 0.0


def test_cases_cover_every_reduction_and_ignore_hits():
    ce = [c for c in CASES if c.op == "cross_entropy"]
    assert {c.attrs.get("reduction", "mean") for c in ce} == set(cases_nn.REDUCTIONS)
    assert any(c.attrs.get("label_smoothing", 0) > 0 for c in ce)


EDGE_SHAPES = [
    ("softmax", (), {"axis": 0}),
    ("log_softmax", (), {"axis": -1}),
    ("logsumexp", (), {"axes": (0,)}),
    ("logsumexp", (3, 0), {"axes": (1,), "keepdims": True}),
    ("softmax", (0, 4), {"axis": 1}),
    ("softmax", (4, 0), {"axis": 1}),
    ("layer_norm", (0, 3), {"axes": (1,)}),
    ("mse_loss", (0, 3), {"reduction": "sum"}),
]


@pytest.mark.parametrize("op,shape,attrs", EDGE_SHAPES,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(EDGE_SHAPES)])
def test_edge_shapes_agree_with_torch(op, shape, attrs, rng):
    """0-d inputs, empty tensors and empty reduced axes: reference, decomposition, torch."""
    x = rng.standard_normal(shape)
    arrays = [x, rng.standard_normal(shape)] if op == "mse_loss" else [x]
    want = run_op(op, *arrays, **attrs)
    np.testing.assert_array_equal(run_op(op, *arrays, lower=True, **attrs), want)
    case = next(c for c in CASES if c.op == op)
    expected = case.torch_ref(*[torch.from_numpy(a) for a in arrays], **attrs).numpy()
    assert expected.shape == want.shape
    assert_allclose(want, expected, rtol=1e-12, atol=0)


def test_logsumexp_over_no_axes_is_the_identity(rng):
    """axes=() reduces nothing (torch reads an empty dim as "all", dlc never does)."""
    x = rng.standard_normal((2, 3)) * 300.0
    for lower in (False, True):
        assert_allclose(run_op("logsumexp", x, lower=lower, axes=()), x,
                        rtol=1e-15, atol=0)
