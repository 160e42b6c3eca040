"""Every differentiable op: its VJP (through dlc.grad) against float64 central finite
differences and against torch.autograd in float32, on fresh random inputs.

The op's output is reduced to a scalar as sum(out * w) with a random cotangent w, so the
check covers a general VJP, not only the gradient of a plain sum."""
import numpy as np
import pytest
import torch

import dlc
from backends.eager import run_graph
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType, is_float
from dlc.ops import OPS
from tests.ops.harness import CASES
from tests.ops import test_op_table  # noqa: F401  (imports every cases_*.py)


def diff_inputs(case, arrays):
    op = OPS[case.op]
    return [i for i, a in enumerate(arrays) if a.dtype.kind == "f" and i not in op.nondiff]


def loss_graph(case, arrays, w):
    """scalar = sum(op(inputs) * w)"""
    with Builder(case.op + "_loss") as b:
        ins = [b.add_input(f"a{i}", TensorType(a.shape, a.dtype.name))
               for i, a in enumerate(arrays)]
        wv = b.add_input("w", TensorType(w.shape, w.dtype.name))
        out = b.emit(case.op, tuple(ins), dict(case.attrs))
        prod = b.emit("mul", (out, wv), {})
        total = b.emit("sum", (prod,), {"axes": tuple(range(len(w.shape))), "keepdims": False})
    return b.finish([total])


def vjp_cases():
    for c in CASES:
        if not c.grad:
            continue
        op = OPS[c.op]
        if op.vjp is None and op.decompose is None:
            continue
        yield pytest.param(c, id=c.id)


def _output_is_float(case, arrays):
    return is_float(case.build(arrays).nodes[-1].type.dtype)


@pytest.mark.parametrize("c", list(vjp_cases()))
def test_vjp_matches_finite_differences(c, rng):
    arrays = c.make_inputs(rng, "float64")
    if not _output_is_float(c, arrays) or not diff_inputs(c, arrays):
        pytest.skip("no differentiable float input/output")
    out_shape = c.build(arrays).nodes[-1].type.shape
    w = rng.standard_normal(out_shape)
    g = loss_graph(c, arrays, w)
    idx = diff_inputs(c, arrays)
    grads = run_graph(dlc.grad(g, wrt=[f"a{i}" for i in idx]), arrays + [w])

    def f(xs):
        return run_graph(g, xs + [w])[0]

    eps = c.extra.get("fd_eps", 1e-6)
    for i, gi in zip(idx, grads):
        assert gi.shape == arrays[i].shape and not np.isnan(gi).any()
        fd = np.zeros_like(arrays[i])
        flat = fd.reshape(-1)
        for j in range(arrays[i].size):
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[i].reshape(-1)[j] += eps
            minus[i].reshape(-1)[j] -= eps
            flat[j] = (f(plus) - f(minus)) / (2 * eps)
        np.testing.assert_allclose(gi, fd, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{c.id}: d/d a{i}")


@pytest.mark.parametrize("c", list(vjp_cases()))
def test_vjp_matches_torch_autograd(c, rng):
    if "float32" not in c.dtypes:
        pytest.skip("case has no float32 variant")
    arrays = c.make_inputs(rng, "float32")
    if not _output_is_float(c, arrays) or not diff_inputs(c, arrays):
        pytest.skip("no differentiable float input/output")
    out_shape = c.build(arrays).nodes[-1].type.shape
    w = rng.standard_normal(out_shape).astype(np.float32)
    idx = diff_inputs(c, arrays)
    grads = run_graph(dlc.grad(loss_graph(c, arrays, w), wrt=[f"a{i}" for i in idx]),
                      arrays + [w])
    ts = [torch.tensor(a, requires_grad=(i in idx)) for i, a in enumerate(arrays)]
    out = c.torch_ref(*ts, **c.attrs)
    (out * torch.from_numpy(w)).sum().backward()
    for i, gi in zip(idx, grads):
        expected = ts[i].grad.numpy() if ts[i].grad is not None else np.zeros_like(gi)
        np.testing.assert_allclose(gi, expected, rtol=1e-4, atol=1e-5,
                                   err_msg=f"{c.id}: d/d a{i}")
