"""Degenerate and odd GEMM shapes on the llvm backend against the eager backend.

M, N and K each take the values 1, 2, 3, 15, 16, 17 and 33: one column (a discriminator's
last layer), one row, one term, just under, at and over a vector of float32 lanes, and
more than two. The shapes are a Latin square over the values: every (M, N) pair, with K
chosen so that every (M, K) and (N, K) pair appears too, 49 products in all. They run as
one graph per dtype and epilogue (compiling one graph per shape would spend the test's
time in LLVM), each product its own output, so a failure names its shape.
"""
import numpy as np
import pytest

import dlc
from backends.eager import run_graph
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph
from dlc.ir.types import TensorType
from dlc.tensor import Tensor

SIZES = (1, 2, 3, 15, 16, 17, 33)
SHAPES = [(m, n, SIZES[(i + j) % len(SIZES)])
          for i, m in enumerate(SIZES) for j, n in enumerate(SIZES)]
RTOL = {"float32": 1e-5, "float64": 1e-12}


def _bias_relu_body(m: int, k: int, n: int, dtype: str) -> Graph:
    """The fused contraction body relu(a @ b + bias)."""
    with Builder("gemm_bias_relu") as b:
        a = b.add_input("a", TensorType((m, k), dtype))
        w = b.add_input("b", TensorType((k, n), dtype))
        bias = b.add_input("bias", TensorType((n,), dtype))
        out = ((Tensor(a) @ Tensor(w)) + Tensor(bias)).relu()
    return b.finish([out.value])


def gemm_graph(dtype: str, epilogue: bool) -> Graph:
    """One graph holding every shape's product (fused with bias and relu when asked)."""
    with Builder(f"gemm_shapes_{dtype}") as b:
        outs = []
        for s, (m, n, k) in enumerate(SHAPES):
            a = b.add_input(f"a{s}", TensorType((m, k), dtype))
            w = b.add_input(f"b{s}", TensorType((k, n), dtype))
            if not epilogue:
                outs.append(b.emit("matmul", (a, w), {}))
                continue
            bias = b.add_input(f"bias{s}", TensorType((n,), dtype))
            outs.append(b.emit("fused", (a, w, bias),
                               {"name": f"gemm{s}_bias_relu", "kind": "contraction"},
                               body=_bias_relu_body(m, k, n, dtype)))
    return b.finish(outs)


def random_inputs(graph: Graph, rng: np.random.Generator) -> list:
    return [rng.standard_normal(v.type.shape).astype(v.type.dtype) for v in graph.inputs]


@pytest.mark.parametrize("epilogue", [False, True], ids=["plain", "bias_relu"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_shapes_match_eager(dtype, epilogue, rng):
    graph = gemm_graph(dtype, epilogue)
    dlc.verify(graph)
    arrays = random_inputs(graph, rng)
    want = run_graph(graph, arrays)
    got = dlc.compile(graph, backend="llvm", opt_level="O0")(*arrays)
    assert len(got) == len(want) == len(SHAPES)
    for (m, n, k), g, w in zip(SHAPES, got, want):
        where = f"M={m} N={n} K={k}"
        assert g.shape == w.shape == (m, n) and g.dtype == w.dtype, where
        assert np.isfinite(g).all(), where
        # a sum of K products: its error scales with the terms, not with each result
        atol = RTOL[dtype] * max(float(np.abs(w).max()), 1.0)
        np.testing.assert_allclose(g, w, rtol=RTOL[dtype], atol=atol, err_msg=where)


@pytest.mark.parametrize("out_features", [1, 3, 17])
def test_narrow_linear_layer_matches_eager(out_features, rng):
    """A Linear layer through the O2 pipeline: its transposed weight is read by the
    packing, its bias fused into the epilogue; one output column was the failing case."""
    layer = dlc.nn.Linear(128, out_features)
    spec = dlc.TensorSpec((256, 128))
    x = rng.standard_normal((256, 128)).astype(np.float32)
    want = dlc.compile(layer, spec, backend="eager")(x)
    got = dlc.compile(layer, spec, backend="llvm")(x)
    assert got.shape == want.shape == (256, out_features)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5,
                               atol=1e-5 * max(float(np.abs(want).max()), 1.0))


# (M, N, K): K a whole number of vectors or not, N a whole number of panels or not
TRANSPOSED = [(64, 512, 784), (37, 100, 45), (5, 48, 16), (20, 33, 17), (128, 96, 64)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_transposed_weight_products(dtype, rng):
    """x @ W^T with W a parameter: the GEMM packs W^T straight from W (register
    transposes for whole blocks of k, vectors for the rest), with no permute kernel."""
    with Builder(f"transposed_{dtype}") as b:
        outs = []
        for s, (m, n, k) in enumerate(TRANSPOSED):
            x = b.add_input(f"x{s}", TensorType((m, k), dtype))
            w = b.add_input(f"w{s}", TensorType((n, k), dtype), "param",
                            rng.standard_normal((n, k)).astype(dtype))
            outs.append(b.emit("matmul", (x, b.emit("permute", (w,), {"perm": [1, 0]})), {}))
    graph = b.finish(outs)
    exe = dlc.compile(graph, backend="llvm", threads=2)
    assert not [name for name, _ in exe.kernels() if "permute" in name]
    xs = [rng.standard_normal(v.type.shape).astype(dtype) for v in graph.user_inputs]
    for (m, n, k), x, w, got in zip(TRANSPOSED, xs, graph.params.values(), exe(*xs)):
        want = x.astype(np.float64) @ w.astype(np.float64).T
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=RTOL[dtype],
                                   atol=RTOL[dtype] * float(np.abs(want).max()),
                                   err_msg=f"M={m} N={n} K={k}")
