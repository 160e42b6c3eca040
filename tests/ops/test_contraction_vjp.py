"""Gradients of the contraction and window ops beyond the table cases of test_vjp_table.py:
max_pool's tie rule on inputs full of ties, random conv / conv_transpose / pool
configurations against torch.autograd, second-order gradients (grad of grad) against
float64 finite differences, 1-D matmul operands, and a small CNN end to end."""
import math
from itertools import product

import numpy as np
import pytest
import torch

import dlc
from backends.eager import run_graph
from dlc import nn
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType
from passes.decompose import decompose
from passes.rewrite import inline
from tests.ops.cases_contraction import (adaptive_ref, avg_pool_ref, conv_ref, conv_t_ref,
                                         max_pool_ref, per_axis)
from tests.ops.harness import TOL, assert_allclose
from tests.ops.test_contraction_semantics import random_conv_config, random_pool_config

F = nn.functional
REFS = {"conv": conv_ref, "conv_transpose": conv_t_ref, "max_pool": max_pool_ref,
        "avg_pool": avg_pool_ref, "adaptive_avg_pool": adaptive_ref, "matmul": torch.matmul}


def loss_graph(op: str, shapes: list[tuple], attrs: dict, dtype: str = "float64"):
    """sum(op(a0, a1, ...) * c): its gradient is the op's VJP applied to the input c."""
    with Builder(op + "_loss") as b:
        ins = [b.add_input(f"a{i}", TensorType(s, dtype)) for i, s in enumerate(shapes)]
        out = b.emit(op, tuple(ins), dict(attrs))
        c = b.add_input("c", out.type)
        prod = b.emit("mul", (out, c), {})
        total = b.emit("sum", (prod,), {"axes": tuple(range(out.type.ndim))})
    return b.finish([total])


def output_shape(op: str, shapes: list[tuple], attrs: dict) -> tuple:
    return loss_graph(op, shapes, attrs).nodes[0].type.shape


def dlc_vjp(op: str, arrays: list[np.ndarray], attrs: dict, c: np.ndarray) -> list:
    graph = loss_graph(op, [a.shape for a in arrays], attrs, arrays[0].dtype.name)
    wrt = [f"a{i}" for i in range(len(arrays))]
    return run_graph(dlc.grad(graph, wrt=wrt), arrays + [c])


def torch_vjp(op: str, arrays: list[np.ndarray], attrs: dict, c: np.ndarray) -> list:
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    (REFS[op](*ts, **attrs) * torch.from_numpy(c)).sum().backward()
    return [t.grad.numpy() for t in ts]


def central_differences(f, arrays: list[np.ndarray], i: int, eps: float = 1e-6):
    """d f / d arrays[i], one element at a time (f: list of arrays -> float)."""
    out = np.zeros_like(arrays[i])
    for j in range(arrays[i].size):
        plus = [a.copy() for a in arrays]
        minus = [a.copy() for a in arrays]
        plus[i].reshape(-1)[j] += eps
        minus[i].reshape(-1)[j] -= eps
        out.reshape(-1)[j] = (f(plus) - f(minus)) / (2 * eps)
    return out


def assert_close(got: list, expected: list, dtype: str, what: str) -> None:
    rtol, atol = TOL[dtype]
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape and a.dtype == b.dtype and not np.isnan(a).any()
        assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{what}: d/d a{i}")


# -- max_pool: ties go to the first maximum of the window ---------------------------------------
def first_max_grad(x: np.ndarray, g: np.ndarray, kernel, stride, padding, dilation):
    """The documented rule, written out: each window's g goes to its first maximum in
    row-major tap order among the taps inside x (padding is never chosen)."""
    nsp = x.ndim - 2
    kernel, stride, padding, dilation = (per_axis(v, nsp) for v in
                                         (kernel, stride, padding, dilation))
    dx = np.zeros_like(x)
    for n, ch in product(range(x.shape[0]), range(x.shape[1])):
        for o in product(*(range(s) for s in g.shape[2:])):
            best = None
            for tap in product(*(range(k) for k in kernel)):
                pos = tuple(oi * s + t * d - p for oi, t, s, d, p in
                            zip(o, tap, stride, dilation, padding))
                if not all(0 <= q < size for q, size in zip(pos, x.shape[2:])):
                    continue
                if best is None or x[(n, ch) + pos] > x[(n, ch) + best]:
                    best = pos
            if best is not None:        # a window with no element of x passes nothing
                dx[(n, ch) + best] += g[(n, ch) + o]
    return dx


def pool_attrs_in_full(attrs: dict) -> dict:
    """max_pool attributes with the defaults filled in, for first_max_grad."""
    full = {"stride": attrs["kernel"], "padding": 0, "dilation": 1, **attrs}
    full.pop("ceil_mode", None)
    return full


TIE_CONFIGS = [
    ((2, 2, 7, 7), {"kernel": 3, "stride": 1, "padding": 1}),
    ((1, 3, 8, 9), {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((1, 2, 9, 9), {"kernel": (3, 2), "stride": (1, 2), "dilation": (2, 1), "padding": 1}),
    ((2, 2, 11), {"kernel": 4, "stride": 1, "padding": 2}),
    ((1, 2, 4, 4, 5), {"kernel": 2, "stride": 1, "padding": 1}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_shape,attrs", TIE_CONFIGS,
                         ids=[f"{len(s) - 2}d-{i}" for i, (s, _) in enumerate(TIE_CONFIGS)])
def test_max_pool_grad_ties_go_to_first_max(x_shape, attrs, dtype, rng):
    """Values in {0, 1, 2} (every window has ties) and one constant channel (a window
    of equal values); overlapping windows, padding, dilation and ceil_mode. The rule is
    torch's, so torch.autograd agrees with it too."""
    x = rng.integers(0, 3, x_shape).astype(dtype)
    x[0, 0] = 1.0
    c = rng.standard_normal(output_shape("max_pool", [x_shape], attrs)).astype(dtype)
    (got,) = dlc_vjp("max_pool", [x], attrs, c)
    rule = first_max_grad(x, c, **pool_attrs_in_full(attrs))
    (expected,) = torch_vjp("max_pool", [x], attrs, c)
    assert_close([rule], [expected], dtype, "rule vs torch")
    assert_close([got], [rule], dtype, "dlc vs rule")


def test_max_pool_grad_of_all_negative_padded_windows(rng):
    """-inf padding is never chosen, even where every real value is below zero."""
    x = -rng.uniform(0.5, 2.0, (1, 2, 6, 6))
    attrs = {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}
    c = rng.standard_normal(output_shape("max_pool", [x.shape], attrs))
    (got,) = dlc_vjp("max_pool", [x], attrs, c)
    assert_allclose(got.sum(), c.sum(), rtol=1e-12)
    assert_close([got], torch_vjp("max_pool", [x], attrs, c), "float64", "max_pool")


# -- random configurations against torch.autograd -----------------------------------------------
@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
@pytest.mark.parametrize("trial", range(8))
def test_random_conv_vjp_matches_torch(trial, transpose, rng):
    """Random strides (dividing the input or not), padding, dilation, groups and
    output_padding (also at or past the stride, below the dilation)."""
    op = "conv_transpose" if transpose else "conv"
    x_shape, w_shape, attrs = random_conv_config(rng, transpose)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]
    c = rng.standard_normal(output_shape(op, [x_shape, w_shape], attrs))
    assert_close(dlc_vjp(op, arrays, attrs, c), torch_vjp(op, arrays, attrs, c), "float64",
                 f"{op} x{x_shape} w{w_shape} {attrs}")


def has_empty_window(x_shape: tuple, attrs: dict) -> bool:
    """A max_pool window with no element of x (dilation skipping over all of it), where
    torch's gradient goes to an index outside the window's channel plane."""
    (out,) = run_graph(single_op_graph("max_pool", x_shape, attrs), [np.zeros(x_shape)])
    return bool(np.isneginf(out).any())


def single_op_graph(op: str, x_shape: tuple, attrs: dict):
    with Builder(op) as b:
        x = b.add_input("x", TensorType(x_shape, "float64"))
        node = b.emit(op, (x,), dict(attrs))
    return b.finish([node])


@pytest.mark.parametrize("op", ["max_pool", "avg_pool", "adaptive_avg_pool"])
@pytest.mark.parametrize("trial", range(6))
def test_random_pool_vjp_matches_torch(op, trial, rng):
    """max_pool: also against the written-out rule; torch only where every window holds
    an element of x."""
    x_shape, attrs = random_pool_config(rng, op)
    x = rng.standard_normal(x_shape)
    c = rng.standard_normal(output_shape(op, [x_shape], attrs))
    got = dlc_vjp(op, [x], attrs, c)
    what = f"{op} x{x_shape} {attrs}"
    if op == "max_pool":
        assert_close(got, [first_max_grad(x, c, **pool_attrs_in_full(attrs))], "float64",
                     what)
        if has_empty_window(x_shape, attrs):
            return
    assert_close(got, torch_vjp(op, [x], attrs, c), "float64", what)


def test_max_pool_window_without_input_elements(rng):
    """Dilation 2 and padding 1 over a size-1 axis: the window's taps are (-1, 1), both
    outside x. Its output is -inf, its index -1, and it passes no gradient."""
    attrs = {"kernel": (2, 3), "stride": (1, 2), "padding": (1, 1), "dilation": (2, 1)}
    x = rng.standard_normal((2, 3, 1, 6))
    (out,) = run_graph(single_op_graph("max_pool", x.shape, attrs), [x])
    (index,) = run_graph(single_op_graph("max_pool_argmax", x.shape, attrs), [x])
    assert np.isneginf(out).all() and (index == -1).all()
    c = rng.standard_normal(out.shape)
    (got,) = dlc_vjp("max_pool", [x], attrs, c)
    np.testing.assert_array_equal(got, np.zeros_like(x))


@pytest.mark.parametrize("trial", range(6))
def test_conv_weight_grad_decomposition_matches_the_op(trial, rng):
    """The decomposition (one conv, for backends that lower conv only) computes what the
    op's reference does, on random strides, padding, dilation and groups."""
    x_shape, w_shape, attrs = random_conv_config(rng, transpose=False)
    g_shape = output_shape("conv", [x_shape, w_shape], attrs)
    with Builder("dw") as b:
        x = b.add_input("x", TensorType(x_shape, "float64"))
        g = b.add_input("g", TensorType(g_shape, "float64"))
        dw = b.emit("conv_weight_grad", (x, g), {"kernel": w_shape[2:], **attrs})
    graph = b.finish([dw])
    expanded = decompose(graph)
    assert "conv_weight_grad" not in {n.op.name for n in expanded.nodes}
    dlc.verify(expanded)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(g_shape)]
    (expected,) = run_graph(graph, arrays)
    assert_close(run_graph(expanded, arrays), [expected], "float64", f"{x_shape} {attrs}")


# -- second order: grad of grad against finite differences -------------------------------------
def vjp_dot_graph(op: str, shapes: list[tuple], attrs: dict):
    """h(a..., c, u...) = sum_i <u_i, d loss / d a_i> with loss = <c, op(a...)>: a scalar
    built from the gradient graph, so its gradient needs the VJPs of the VJP."""
    first = dlc.grad(loss_graph(op, shapes, attrs), wrt=[f"a{i}" for i in range(len(shapes))])
    with Builder("vjp_dot") as b:
        ins = [b.add_input(v.name, v.type) for v in first.inputs]
        us = [b.add_input(f"u{i}", TensorType(s, "float64")) for i, s in enumerate(shapes)]
        total = None
        for grad, u in zip(inline(b, first, ins), us):
            prod = b.emit("mul", (grad, u), {})
            dot = b.emit("sum", (prod,), {"axes": tuple(range(prod.type.ndim))})
            total = dot if total is None else b.emit("add", (total, dot), {})
    return b.finish([total])


SECOND_ORDER = [
    ("conv", [(1, 2, 6, 5), (3, 2, 3, 2)], {"stride": 2, "padding": 1, "dilation": (1, 2)}),
    ("conv", [(2, 4, 7), (4, 2, 3)], {"stride": 3, "groups": 2, "padding": 1}),
    ("conv_transpose", [(1, 2, 3, 4), (2, 2, 2, 2)],
     {"dilation": 3, "output_padding": (2, 1), "groups": 2}),
    ("conv_transpose", [(1, 2, 3, 3), (2, 3, 3, 3)], {"stride": 2, "output_padding": 1}),
    ("matmul", [(2, 3, 4), (4, 5)], {}),
    ("matmul", [(2, 1, 3, 4), (3, 4, 2)], {}),
    ("max_pool", [(1, 2, 6, 6)], {"kernel": 3, "stride": 2, "padding": 1}),
    ("avg_pool", [(1, 2, 6, 6)], {"kernel": 3, "stride": 2, "padding": 1,
                                  "count_include_pad": False}),
    ("adaptive_avg_pool", [(1, 2, 5, 7)], {"output_size": (3, 4)}),
]


@pytest.mark.parametrize("op,shapes,attrs", SECOND_ORDER,
                         ids=[f"{s[0]}-{i}" for i, s in enumerate(SECOND_ORDER)])
def test_second_order_matches_finite_differences(op, shapes, attrs, rng):
    """Differentiates h with respect to the op's inputs and the cotangent c; h is a
    polynomial of degree 2 in them (piecewise for max_pool), so central differences are
    exact up to rounding."""
    h = vjp_dot_graph(op, shapes, attrs)
    values = [rng.standard_normal(v.type.shape) for v in h.inputs]
    names = [v.name for v in h.inputs if not v.name.startswith("u")]
    got = run_graph(dlc.grad(h, wrt=names), values)

    def f(xs):
        return run_graph(h, xs)[0]

    for i, (name, gi) in enumerate(zip(names, got)):
        assert gi.shape == values[i].shape and not np.isnan(gi).any()
        fd = central_differences(f, values, i)
        assert_allclose(gi, fd, rtol=1e-5, atol=1e-6, err_msg=f"{op}: d/d {name}")


# -- matmul through the frontend: 1-D operands -------------------------------------------------
MATMUL_1D = [((4,), (4, 3)), ((2, 4, 3), (3,)), ((5,), (5,)), ((3,), (2, 3, 2))]


@pytest.mark.parametrize("a_shape,b_shape", MATMUL_1D, ids=[str(s) for s in MATMUL_1D])
def test_matmul_grad_with_1d_operands(a_shape, b_shape, rng):
    """dlc.matmul reshapes 1-D operands around the rank >= 2 op (NumPy's rules)."""
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    c = rng.standard_normal(np.matmul(a, b).shape)

    def loss(a, b, c):
        return (dlc.matmul(a, b) * c).sum()

    graph = dlc.trace(loss, *(dlc.TensorSpec(v.shape, "float64") for v in (a, b, c)))
    got = run_graph(dlc.grad(graph, wrt=["a", "b"]), [a, b, c])
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    (torch.matmul(ta, tb) * torch.from_numpy(c)).sum().backward()
    assert_close(got, [ta.grad.numpy(), tb.grad.numpy()], "float64", "matmul 1-D")


# -- a small CNN end to end ----------------------------------------------------------------------
def cnn(x, w1, w2, w3, fc):
    """Every window op in one graph; works on dlc and torch tensors alike."""
    fn = F if isinstance(x, dlc.Tensor) else torch.nn.functional
    y = fn.conv2d(x, w1, stride=2, padding=1).relu()
    y = fn.max_pool2d(y, 3, stride=1, padding=1)
    y = fn.conv_transpose2d(y, w2, stride=2, padding=1, output_padding=1, groups=2)
    y = fn.avg_pool2d(y, 2, ceil_mode=True, count_include_pad=False)
    y = fn.conv2d(y, w3, dilation=2, groups=4)
    y = fn.adaptive_avg_pool2d(y, (2, 3))
    return (y.reshape(y.shape[0], -1) @ fc).tanh().sum()


CNN_SHAPES = [(2, 3, 9, 9), (4, 3, 3, 3), (4, 2, 3, 3), (4, 1, 2, 2), (24, 5)]


def test_cnn_gradient_matches_torch_and_round_trips(rng):
    """Gradients of every input of a conv / pool network against torch.autograd; the
    gradient graph prints as text that parses back to the same results."""
    arrays = [rng.standard_normal(s) * (1.0 if i == 0 else 1 / math.sqrt(math.prod(s[1:])))
              for i, s in enumerate(CNN_SHAPES)]
    graph = dlc.trace(cnn, *(dlc.TensorSpec(a.shape, "float64") for a in arrays))
    names = [v.name for v in graph.inputs]
    grad = dlc.grad(graph, wrt=names)
    parsed = dlc.parse(str(grad))
    dlc.verify(parsed)
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    cnn(*ts).backward()
    expected = [t.grad.numpy() for t in ts]
    assert_close(run_graph(grad, arrays), expected, "float64", "cnn")
    assert_close(run_graph(parsed, arrays), expected, "float64", "cnn parsed")
    ops = {n.op.name for n in grad.nodes}
    assert {"conv_weight_grad", "max_pool_argmax", "avg_pool_grad",
            "adaptive_avg_pool_grad"} <= ops, ops
