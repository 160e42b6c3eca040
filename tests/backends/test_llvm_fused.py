"""Fused groups built by hand (Builder.emit("fused", ...)) on the llvm backend vs eager:
each lowering strategy (one pointwise loop, the GEMM epilogue, the row kernel with the
reduced axis innermost or outermost, op by op for anything else), and what the backend
reports about its kernels."""
import numpy as np
import pytest

import dlc
from backends.eager import run_graph
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph
from dlc.ir.types import TensorType
from dlc.tensor import Tensor


def body_graph(types: list, fn) -> Graph:
    """A body graph: fn(*Tensors) -> Tensor over block arguments of the given types."""
    with Builder("bb") as b:
        args = [b.add_input(f"a{i}", TensorType(*t)) for i, t in enumerate(types)]
        out = fn(*[Tensor(a) for a in args])
    return b.finish([out.value])


def fused_graph(types: list, fn, kind: str, name: str = "group") -> Graph:
    """A graph of one fused node over inputs of the given types."""
    body = body_graph(types, fn)
    with Builder("g") as b:
        ins = [b.add_input(f"x{i}", TensorType(*t)) for i, t in enumerate(types)]
        node = b.emit("fused", tuple(ins), {"name": name, "kind": kind}, body=body)
    return b.finish([node])


def check(graph: Graph, arrays: list, rtol: float = 1e-5, atol: float = 1e-6):
    dlc.verify(graph)
    exe = dlc.compile(graph, backend="llvm", opt_level="O0")
    (want,) = run_graph(graph, arrays)
    got = exe(*arrays)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return exe


def _softmax(x, axis):
    e = (x - x.max(axis=axis, keepdims=True)).exp()
    return e / e.sum(axis=axis, keepdims=True)


def _layer_norm(x):
    d = x - x.mean(axis=-1, keepdims=True)
    return d * ((d * d).mean(axis=-1, keepdims=True) + 1e-5).rsqrt()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pointwise_group(dtype, rng):
    shape = (33, 70)
    types = [(shape, dtype), ((70,), dtype), ((33, 1), dtype)]
    g = fused_graph(types, lambda x, a, b: (x * a + b).tanh() * (x.exp() + 1.0).log(),
                    "pointwise")
    arrays = [rng.standard_normal(t[0]).astype(dtype) for t in types]
    exe = check(g, arrays, rtol=1e-5 if dtype == "float32" else 1e-12)
    assert len(exe.kernels()) == 1 and "group" in exe.kernels()[0][0]


@pytest.mark.parametrize("axis,shape", [(-1, (37, 300)), (-1, (2, 4, 5, 5)), (-1, (3, 4, 21)),
                                        (0, (300, 37)), (1, (5, 64, 9))])
def test_row_kernel_softmax(axis, shape, rng):
    """axis -1: the reduced axis innermost (vectorized along the row; short rows run in
    straight-line vector pieces, several kept axes merge into one loop); axis 0 or a
    middle axis: the kept axis innermost (each lane its own row)."""
    g = fused_graph([(shape, "float32")], lambda x: _softmax(x, axis), "reduction")
    exe = check(g, [rng.standard_normal(shape).astype(np.float32) * 3])
    assert len(exe.kernels()) == 1


def test_row_kernel_layer_norm_and_row_output(rng):
    g = fused_graph([((64, 200), "float64")], _layer_norm, "reduction")
    check(g, [rng.standard_normal((64, 200)) * 2 + 5], rtol=1e-10, atol=1e-12)
    # a group that yields the reduced value itself
    g = fused_graph([((48, 100), "float32")],
                    lambda x: (x * x).sum(axis=1).sqrt(), "reduction")
    check(g, [rng.standard_normal((48, 100)).astype(np.float32)])


def test_reduction_group_of_two_levels_runs_op_by_op(rng):
    # rows reduced, then the row results reduced again: not one row kernel
    g = fused_graph([((16, 30), "float32")],
                    lambda x: (x - x.max(axis=1, keepdims=True)).exp().sum(axis=1).log().sum(),
                    "reduction")
    check(g, [rng.standard_normal((16, 30)).astype(np.float32)])


@pytest.mark.parametrize("m,k,n", [(64, 100, 70), (3, 50, 40), (130, 17, 9)])
def test_contraction_with_epilogue(m, k, n, rng):
    types = [((m, k), "float32"), ((k, n), "float32"), ((n,), "float32")]
    g = fused_graph(types, lambda a, b, bias: ((a @ b) + bias).relu() * 0.5, "contraction")
    arrays = [rng.standard_normal(t[0]).astype(np.float32) for t in types]
    want = run_graph(g, arrays)[0]
    check(g, arrays, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def test_conv_with_bias_epilogue(rng):
    from dlc.ir.builder import emit
    types = [((2, 3, 12, 12), "float32"), ((8, 3, 3, 3), "float32"),
             ((8, 1, 1), "float32")]
    g = fused_graph(types, lambda x, w, bias: emit("conv", x, w, padding=1) + bias,
                    "contraction")
    arrays = [rng.standard_normal(t[0]).astype(np.float32) for t in types]
    want = run_graph(g, arrays)[0]
    check(g, arrays, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def test_opaque_group_runs_op_by_op(rng):
    from dlc.ir.builder import emit
    types = [((2, 3, 8, 8), "float32")]
    g = fused_graph(types, lambda x: emit("max_pool", x.relu(), kernel=2) * 2.0,
                    "opaque")
    check(g, [rng.standard_normal(types[0][0]).astype(np.float32)])


def test_kernels_are_named_after_their_origin(rng):
    g = fused_graph([((8, 16), "float32")], lambda x: _softmax(x, -1), "reduction",
                    name="fused7_softmax_rows")
    exe = dlc.compile(g, backend="llvm", opt_level="O0")
    (name, origin), = exe.kernels()
    assert "fused7_softmax_rows" in name and "test_llvm_fused.py" in origin
    assert f'@"{name}"' in exe.llvm_ir() or f"@{name}" in exe.llvm_ir()
