"""Every case of the op test matrix compiled on llvm matches the eager backend on fresh
random inputs: float32 to 1e-5 relative, float64 to 1e-10, integers and bools exactly.
Also: every op of the table has a lowering rule, and the backend's own error paths."""
import os

import numpy as np
import pytest

import dlc
from backends.eager import run_graph
from backends.llvm.lower import POINTWISE, KERNELS
from dlc.errors import ArgumentError, DlcError
from dlc.ops import OPS
from tests.backends.llvm_cases import case_key, load_cases, run_groups
from tests.ops.harness import TOL

CASES = load_cases()
# composite ops reach the backend decomposed; fused nodes are lowered from their body
COMPOSITE = {name for name, op in OPS.items() if op.decompose is not None}


def _compile(graph):
    return dlc.compile(graph, backend="llvm")


@pytest.fixture(scope="module")
def results():
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"rng seed {seed}")
    return run_groups(np.random.default_rng(seed), _compile)


def _params():
    for c in CASES:
        for dt in c.dtypes:
            yield pytest.param(c, dt, id=f"{c.id}-{dt}")


@pytest.mark.parametrize("c,dtype", list(_params()))
def test_case_matches_eager(c, dtype, results):
    r = results[case_key(c, dtype)]
    if r.error is not None:
        raise r.error
    graph = c.build(r.arrays)
    (expected,) = run_graph(graph, r.arrays)
    out = r.output
    assert out.shape == expected.shape and out.dtype == expected.dtype
    if out.dtype.kind in "biu":
        np.testing.assert_array_equal(out, expected)
        return
    rtol, atol = TOL[dtype] if dtype in TOL else (0, 0)
    rtol = c.rtol if c.rtol is not None else rtol
    atol = c.atol if c.atol is not None else atol
    nan = bool(np.isnan(expected).any())
    assert nan or not np.isnan(out).any(), "NaN in the llvm output"
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=atol, equal_nan=nan)


def test_every_op_has_a_lowering_rule():
    # fused and result are structural: a fused node is lowered with its body, a result
    # node is the buffer its fused node writes
    missing = sorted(set(OPS) - set(POINTWISE) - set(KERNELS) - COMPOSITE - {"fused", "result"})
    assert not missing, f"ops without an llvm lowering: {missing}"


def _graph(op, arrays, **attrs):
    from dlc.ir.builder import Builder
    from dlc.ir.types import TensorType
    with Builder(op) as b:
        ins = [b.add_input(f"a{i}", TensorType(a.shape, a.dtype.name))
               for i, a in enumerate(arrays)]
        node = b.emit(op, tuple(ins), attrs)
    return b.finish([node])


def test_wrong_shape_and_dtype_never_reach_native_code(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    exe = dlc.compile(_graph("exp", [x]), backend="llvm")
    with pytest.raises(ArgumentError, match=r"shape \(3, 4\)"):
        exe(np.zeros((4, 3), np.float32))
    with pytest.raises(ArgumentError, match="float32"):
        exe(np.zeros((3, 4), np.float64))
    with pytest.raises(ArgumentError, match="expected 1 input"):
        exe(x, x)
    np.testing.assert_allclose(exe(x), np.exp(x), rtol=1e-6)


def test_out_of_range_index_is_reported_like_eager(rng):
    x = rng.standard_normal((5, 3))
    idx = np.array([0, 2, 7, 1])
    graph = _graph("take", [x, idx], axis=0)
    exe = dlc.compile(graph, backend="llvm")
    with pytest.raises(DlcError, match=r"index 7 is out of range for axis 0 of size 5"):
        exe(x, idx)
    good = np.array([0, -1, 4, 2])
    np.testing.assert_array_equal(exe(x, good), run_graph(graph, [x, good])[0])


def test_non_contiguous_inputs_and_out_arrays(rng):
    a = rng.standard_normal((6, 8)).astype(np.float32)
    b = rng.standard_normal((8,)).astype(np.float32)
    exe = dlc.compile(_graph("add", [a, b]), backend="llvm")
    big = rng.standard_normal((12, 8)).astype(np.float32)
    view = big[::2]
    np.testing.assert_array_equal(exe(view, b), view + b)
    out = np.empty((6, 8), np.float32)
    got = exe(a, b, out=out)
    assert got is out
    np.testing.assert_array_equal(out, a + b)
    with pytest.raises(ArgumentError, match="out="):
        exe(a, b, out=np.empty((6, 8), np.float64))


def test_threads_option(rng):
    # positive terms: a well-conditioned sum, whatever order threads add in
    x = rng.uniform(0.1, 1.0, (300, 500)).astype(np.float32)
    g = _graph("sum", [x], axes=(1,))
    expected = run_graph(g, [x])[0]
    for threads in (1, 2, 3):
        exe = dlc.compile(g, backend="llvm", threads=threads)
        np.testing.assert_allclose(exe(x), expected, rtol=1e-5)
    with pytest.raises(ArgumentError, match="threads"):
        dlc.compile(g, backend="llvm", threads=0)


@pytest.mark.parametrize("shape,axes", [((1 << 21,), (0,)), ((50_000, 40), (0,)),
                                        ((40, 50_000), (1,))])
def test_long_float32_sums_stay_accurate(shape, axes, rng):
    """Long sums add block sums (and chunk sums across threads): the error stays at the
    float32 tolerance of the exact (float64) sum, where one running sum per lane would
    drift past it."""
    x = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    exact = x.astype(np.float64).sum(axis=axes)
    for threads in (1, 2):
        got = dlc.compile(_graph("sum", [x], axes=axes), backend="llvm", threads=threads)(x)
        np.testing.assert_allclose(got, exact, rtol=1e-5)


def test_index_error_from_a_parallel_vector_loop(rng):
    x = rng.standard_normal((1000, 8))
    idx = rng.integers(0, 1000, 200_000)
    idx[123_457] = -1001
    exe = dlc.compile(_graph("take", [x, idx], axis=0), backend="llvm", threads=2)
    with pytest.raises(DlcError, match=r"index -1001 is out of range for axis 0 of size 1000"):
        exe(x, idx)
    idx[123_457] = 5
    np.testing.assert_array_equal(exe(x, idx), x[idx])


def test_memory_plan_offsets_are_used(rng):
    """With the O2 pipeline's memory plan, planned values sit at the plan's offsets."""
    from examples.mlp import MLP
    from backends.llvm.lower import Placement
    graph = dlc.trace(MLP(), dlc.TensorSpec((8, 784)))
    exe = dlc.compile(graph, backend="llvm")
    plan = exe.graph.meta["memory_plan"]
    placed = {pos: exe.program.spec.placements[buf]
              for pos, buf in exe.program.node_buffers.items()}
    planned = [pos for pos in plan.offsets if pos in placed]
    assert planned  # the matmul groups' values (the transposed weights stay views)
    for pos in planned:
        assert placed[pos] == Placement("arena", plan.offsets[pos])
    assert exe.program.arena_bytes >= plan.arena_bytes


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_streams_are_bit_exact(dtype, rng):
    """random_uniform is the eager backend's counter hash bit for bit (so dropout masks
    are the same); random_normal goes through this backend's log and cos."""
    seed = np.asarray(rng.integers(-2 ** 63, 2 ** 63 - 1, dtype=np.int64))
    for op, attrs in (("random_uniform", {"shape": (33, 65), "dtype": dtype, "salt": 9}),
                      ("random_normal", {"shape": (31, 7), "dtype": dtype, "salt": 3})):
        graph = _graph(op, [seed], **attrs)
        got = dlc.compile(graph, backend="llvm")(seed)
        (want,) = run_graph(graph, [seed])
        if op == "random_uniform":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=TOL[dtype][0], atol=TOL[dtype][1])
    x = rng.standard_normal((40, 50)).astype(dtype)
    graph = _graph("dropout", [x, seed], p=0.3, salt=5)
    got = dlc.compile(graph, backend="llvm")(x, seed)
    (want,) = run_graph(graph, [x, seed])
    np.testing.assert_array_equal(got == 0, want == 0)
    np.testing.assert_allclose(got, want, rtol=TOL[dtype][0])


def test_unsupported_dtype_is_a_clear_error():
    x = np.zeros((2, 3), np.float16)
    with pytest.raises(DlcError, match="llvm backend does not support dtype float16"):
        dlc.compile(_graph("exp", [x]), backend="llvm")


def test_calls_from_several_threads(rng):
    """Python threads may share one Executable: their calls take turns (one arena)."""
    from concurrent.futures import ThreadPoolExecutor
    xs = [rng.standard_normal((64, 300)).astype(np.float32) for _ in range(8)]
    exe = dlc.compile(_graph("softmax", [xs[0]], axis=1), backend="llvm")
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda x: exe(x), xs * 4))
    for x, got in zip(xs * 4, outs):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        np.testing.assert_allclose(got, e / e.sum(axis=1, keepdims=True), rtol=1e-5,
                                   atol=1e-7)
