"""The op test matrix on the triton backend, under TRITON_INTERPRET=1 (conftest.py).

Every case of tests/ops/cases_*.py that has a float32 (or integer) variant is compiled on
triton and compared with the eager backend on fresh random inputs: float32 with the case's
tolerance (the matrix default: 1e-5 relative, 1e-6 absolute), integers and bools exactly,
NaN only where eager has NaN. Each case runs unfused (one group per node: composite ops
become the generator's row kernels) and the composite-op cases also through dlc.compile's
O2 pipeline (groups made by the fusion pass, a memory plan). Also: float16 pointwise,
mixed precision, rows longer than one block, fused groups built by hand.
"""
import numpy as np
import pytest

import dlc
from backends.eager import run_graph
from backends.registry import compile_graph
from backends.triton import kernel_sources
from backends.triton.codegen.lowering import LOWERING
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType
from dlc.ops import OPS
from tests.ops import test_op_table  # noqa: F401  (imports every cases_*.py)
from tests.ops.harness import CASES, TOL

CASES32 = [c for c in CASES if "float32" in c.dtypes]
COMPOSITE = [c for c in CASES32 if OPS[c.op].decompose is not None]


def check_close(out: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> None:
    assert out.shape == expected.shape and out.dtype == expected.dtype, \
        (out.shape, out.dtype, expected.shape, expected.dtype)
    if out.dtype.kind in "biu":
        np.testing.assert_array_equal(out, expected)
        return
    nan = bool(np.isnan(expected).any())
    assert nan or not np.isnan(out).any(), "NaN in the triton output"
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=atol, equal_nan=nan)


def case_tolerance(c) -> tuple[float, float]:
    rtol, atol = TOL["float32"]
    return (c.rtol if c.rtol is not None else rtol, c.atol if c.atol is not None else atol)


def run_case(c, rng, compile_fn) -> None:
    arrays = c.make_inputs(rng, "float32")
    graph = c.build(arrays)
    (expected,) = run_graph(graph, arrays)
    out = compile_fn(graph)(*arrays)
    check_close(out, expected, *case_tolerance(c))


def test_every_op_has_a_lowering():
    missing = sorted(set(OPS) - set(LOWERING))
    assert not missing, f"ops without a triton lowering: {missing}"


def test_the_matrix_is_not_empty():
    assert len(CASES32) > 300 and len(COMPOSITE) > 50


@pytest.mark.parametrize("c", CASES32, ids=lambda c: c.id)
def test_case_matches_eager(c, rng):
    run_case(c, rng, lambda g: compile_graph(g, "triton"))


@pytest.mark.parametrize("c", COMPOSITE, ids=lambda c: c.id)
def test_fused_case_matches_eager(c, rng):
    run_case(c, rng, lambda g: dlc.compile(g, backend="triton"))


# -- dtypes ----------------------------------------------------------------------------------
def _graph(name: str, specs: dict, build) -> "dlc.Graph":
    with Builder(name) as b:
        ins = {k: b.add_input(k, TensorType(*v)) for k, v in specs.items()}
        out = build(b, ins)
    return b.finish([out])


def _chain(b, v):
    """gelu(x * w) + sigmoid(x) - tanh(x) / (1 + x^2): broadcasting and helper math."""
    x, w = v["x"], v["w"]
    g = b.emit("gelu", (b.emit("mul", (x, w), {}),), {})
    s = b.emit("add", (g, b.emit("sigmoid", (x,), {})), {})
    one = b.emit("full", (), {"shape": (), "value": 1.0, "dtype": x.dtype})
    d = b.emit("add", (one, b.emit("mul", (x, x), {})), {})
    return b.emit("sub", (s, b.emit("div", (b.emit("tanh", (x,), {}), d), {})), {})


def test_float16_pointwise_matches_eager(rng):
    graph = _graph("f16", {"x": ((33, 70), "float16"), "w": ((70,), "float16")}, _chain)
    x = rng.standard_normal((33, 70)).astype(np.float16)
    w = rng.standard_normal(70).astype(np.float16)
    out = dlc.compile(graph, backend="triton")(x, w)
    (expected,) = run_graph(graph, [x, w])
    # eager rounds every float16 op; the kernel computes in float32 and rounds once
    check_close(out, expected, *TOL["float16"])


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_mixed_precision_stores_low_and_computes_float32(low, rng):
    graph = _graph("mixed", {"x": ((40, 64), "float32"), "w": ((64, 48), "float32")},
                   lambda b, v: b.emit("relu", (b.emit("matmul", (v["x"], v["w"]), {}),), {}))
    x = rng.standard_normal((40, 64)).astype(np.float32)
    w = rng.standard_normal((64, 48)).astype(np.float32)
    exe = compile_graph(graph, "triton", mixed_precision=low)
    out = exe(x, w)
    assert out.dtype == np.float32  # numpy callers see the graph's dtypes
    assert exe.program.input_storage == [low, low]
    assert f"tl.{low}" in exe.program.module_source()
    (expected,) = run_graph(graph, [x, w])
    # inputs rounded to the low dtype (2^-11 or 2^-8 relative), products summed in float32
    eps = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}[low]
    scale = np.abs(x).max() * np.abs(w).max() * 64
    np.testing.assert_allclose(out, expected, rtol=0, atol=4 * eps * scale / np.sqrt(64))


# -- rows longer than one block, hand-built fused groups -------------------------------------
def test_rows_longer_than_a_block_loop(rng):
    x = rng.standard_normal((3, 5000)).astype(np.float32)
    x[1, 4321] = np.nan
    graph = _graph("long", {"x": ((3, 5000), "float32")},
                   lambda b, v: b.emit("layer_norm", (b.emit("softmax", (v["x"],), {"axis": 1}),),
                                       {"axes": (1,)}))
    exe = compile_graph(graph, "triton")
    assert "for c" in exe.program.module_source()  # the column loop
    check_close(exe(x), run_graph(graph, [x])[0], 1e-5, 1e-6)
    amax = _graph("amax", {"x": ((3, 5000), "float32")},
                  lambda b, v: b.emit("argmax", (v["x"],), {"axis": 1}))
    check_close(compile_graph(amax, "triton")(x), run_graph(amax, [x])[0], 0, 0)


def _fused(b: Builder, name: str, kind: str, inputs: list, body_fn):
    """A fused node whose body is body_fn(builder, body inputs) (what passes.fuse makes)."""
    with Builder(name) as inner:
        args = [inner.add_input(f"p{k}", v.type) for k, v in enumerate(inputs)]
        out = body_fn(inner, args)
    return b.emit("fused", tuple(inputs), {"name": name, "kind": kind},
                  body=inner.finish([out]))


def test_hand_built_fused_groups(rng):
    def softmax_scaled(b, a):
        m = b.emit("max", (a[0],), {"axes": (1,), "keepdims": True})
        e = b.emit("exp", (b.emit("sub", (a[0], m), {}),), {})
        s = b.emit("sum", (e,), {"axes": (1,), "keepdims": True})
        return b.emit("mul", (b.emit("div", (e, s), {}), a[1]), {})

    def linear_gelu(b, a):
        return b.emit("gelu", (b.emit("add", (b.emit("matmul", (a[0], a[1]), {}), a[2]), {}),),
                      {})

    def two_spaces(b, a):  # a row reduction, then one over the other axis: two kernels
        r = b.emit("sum", (b.emit("exp", (a[0],), {}),), {"axes": (1,), "keepdims": True})
        return b.emit("mean", (b.emit("div", (a[0], r), {}),), {"axes": (0,)})

    with Builder("hand") as b:
        x = b.add_input("x", TensorType((6, 10), "float32"))
        w = b.add_input("w", TensorType((10, 7), "float32"))
        c = b.add_input("c", TensorType((7,), "float32"))
        scale = b.add_input("scale", TensorType((10,), "float32"))
        p = _fused(b, "softmax_scaled", "reduction", [x, scale], softmax_scaled)
        h = _fused(b, "linear_gelu", "contraction", [p, w, c], linear_gelu)
        y = _fused(b, "two_spaces", "reduction", [h], two_spaces)
    graph = b.finish([y])
    dlc.verify(graph)
    arrays = [rng.standard_normal(v.shape).astype(np.float32) for v in graph.inputs]
    exe = compile_graph(graph, "triton")
    names = [k.name for k in exe.program.kernels]
    assert names == ["softmax_scaled", "linear_gelu", "two_spaces_0", "two_spaces"], names
    check_close(exe(*arrays), run_graph(graph, arrays)[0], 1e-5, 1e-6)
    assert list(kernel_sources(graph)) == ["dlc_helpers"] + names
