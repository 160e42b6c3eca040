"""Every differentiable op: its VJP (through dlc.grad) against float64 central finite
differences and against torch.autograd in float32, on fresh random inputs.

The op's output is reduced to a scalar as sum(out * w) with a random cotangent w, so the
check covers a general VJP, not only the gradient of a plain sum.

Which cases take part is decided at collection time, from the types of a case (they do not
depend on the random values): a case needs a float input that carries a gradient and a float
output; the finite-difference check needs them in float64 (a cast to float32 rounds away
the perturbation), the torch check a float32 variant. Every collected test runs and asserts.

Case options (Case.extra): "fd_eps" the finite-difference step, "wrt" the input indices to
differentiate (default: every float input not in the op's nondiff), "grad_ref" a torch
function to differentiate instead of the case's torch_ref (for ops torch cannot
differentiate, e.g. floor_divide)."""
import numpy as np
import pytest
import torch

import dlc
from backends.eager import run_graph
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType, is_float
from dlc.ops import OPS
from tests.ops.harness import CASES, assert_allclose
from tests.ops import test_op_table  # noqa: F401  (imports every cases_*.py)

# differentiated before fusion creates them: autodiff never sees one
NOT_DIFFERENTIATED = {"fused"}


def diff_inputs(case, arrays) -> list[int]:
    op = OPS[case.op]
    wanted = case.extra.get("wrt", range(len(arrays)))
    return [i for i, a in enumerate(arrays)
            if a.dtype.kind == "f" and i not in op.nondiff and i in wanted]


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


def _probe(case, dtype: str):
    """(inputs, output type) of the case in `dtype`: types only, the values are unused."""
    arrays = case.make_inputs(np.random.default_rng(0), dtype)
    return arrays, case.build(arrays).nodes[-1].type


def _fd_applies(case) -> bool:
    arrays, out = _probe(case, "float64")
    idx = diff_inputs(case, arrays)
    return bool(idx) and out.dtype == "float64" and all(arrays[i].dtype == "float64"
                                                         for i in idx)


def _torch_applies(case) -> bool:
    arrays, out = _probe(case, "float32")
    return "float32" in case.dtypes and bool(diff_inputs(case, arrays)) and is_float(out.dtype)


def _grad_cases() -> list:
    return [c for c in CASES if c.grad and OPS[c.op].differentiable]


FD_CASES = [c for c in _grad_cases() if _fd_applies(c)]
TORCH_CASES = [c for c in _grad_cases() if _torch_applies(c)]


def _cotangent(case, arrays, rng):
    out = case.build(arrays).nodes[-1].type
    return rng.standard_normal(out.shape).astype(out.dtype)


def central_differences(op_out, arrays: list[np.ndarray], w: np.ndarray, i: int,
                        eps: float) -> np.ndarray:
    """d sum(op_out(arrays) * w) / d arrays[i], one element at a time.

    The outputs are subtracted before they are weighted and summed: outputs the step does
    not reach cancel exactly, so the rounding noise of the quotient is that of the outputs
    it moves, not that of the whole (possibly much larger) sum."""
    fd = np.zeros_like(arrays[i])
    flat = fd.reshape(-1)
    for j in range(arrays[i].size):
        plus = [a.copy() for a in arrays]
        minus = [a.copy() for a in arrays]
        plus[i].reshape(-1)[j] += eps
        minus[i].reshape(-1)[j] -= eps
        flat[j] = np.sum((op_out(plus) - op_out(minus)) * w) / (2 * eps)
    return fd


# (a case whose output does not depend on its inputs, dropout with p = 1, warns by design)
NO_PATH = "ignore:grad.*no differentiable path:UserWarning"


@pytest.mark.filterwarnings(NO_PATH)
@pytest.mark.parametrize("c", [pytest.param(c, id=c.id) for c in FD_CASES])
def test_vjp_matches_finite_differences(c, rng):
    arrays = c.make_inputs(rng, "float64")
    w = _cotangent(c, arrays, rng)
    g = loss_graph(c, arrays, w)
    idx = diff_inputs(c, arrays)
    grads = run_graph(dlc.grad(g, wrt=[f"a{i}" for i in idx]), arrays + [w])

    op_graph = c.build(arrays)

    def op_out(xs):
        return run_graph(op_graph, xs)[0]

    for i, gi in zip(idx, grads):
        assert gi.shape == arrays[i].shape and not np.isnan(gi).any()
        fd = central_differences(op_out, arrays, w, i, c.extra.get("fd_eps", 1e-6))
        assert_allclose(gi, fd, rtol=1e-5, atol=1e-6, err_msg=f"{c.id}: d/d a{i}")


@pytest.mark.filterwarnings(NO_PATH)
@pytest.mark.parametrize("c", [pytest.param(c, id=c.id) for c in TORCH_CASES])
def test_vjp_matches_torch_autograd(c, rng):
    arrays = c.make_inputs(rng, "float32")
    w = _cotangent(c, arrays, rng)
    idx = diff_inputs(c, arrays)
    grads = run_graph(dlc.grad(loss_graph(c, arrays, w), wrt=[f"a{i}" for i in idx]),
                      arrays + [w])
    ts = [torch.tensor(a, requires_grad=(i in idx)) for i, a in enumerate(arrays)]
    out = c.extra.get("grad_ref", c.torch_ref)(*ts, **c.attrs)
    (out * torch.from_numpy(w)).sum().backward()
    for i, gi in zip(idx, grads):
        assert gi.dtype == arrays[i].dtype and not np.isnan(gi).any()
        expected = ts[i].grad.numpy() if ts[i].grad is not None else np.zeros_like(gi)
        assert_allclose(gi, expected, rtol=1e-4, atol=1e-5,
                        err_msg=f"{c.id}: d/d a{i}")


# -- the table states differentiability --------------------------------------------------------
def _gives_floats(name: str) -> bool:
    """Whether the op has a float output in any of its cases (an op without cases counts as
    one; test_every_op_has_a_case reports it)."""
    cases = [c for c in CASES if c.op == name]
    return not cases or any(is_float(_probe(c, dt)[1].dtype) for c in cases for dt in c.dtypes)


def test_every_op_with_a_float_output_states_how_it_is_differentiated():
    """A vjp, a decomposition, or every input in nondiff (no gradient flows through it)."""
    silent = sorted(name for name, op in OPS.items()
                    if name not in NOT_DIFFERENTIATED and op.differentiable
                    and op.vjp is None and op.decompose is None and _gives_floats(name))
    assert not silent, (f"ops with neither a vjp, a decomposition, nor every input in "
                        f"nondiff: {silent}")


def test_every_differentiable_op_has_vjp_cases():
    differentiable = {name for name, op in OPS.items() if op.differentiable
                      and name not in NOT_DIFFERENTIATED and _gives_floats(name)}
    for what, cases in (("finite-difference", FD_CASES), ("torch.autograd", TORCH_CASES)):
        missing = sorted(differentiable - {c.op for c in cases})
        assert not missing, f"differentiable ops without a {what} VJP case: {missing}"


def test_non_differentiable_ops_take_no_gradient():
    """Comparisons, index and random sources: their output is not a float computed from a
    float input, or every input is nondiff."""
    for name in ("eq", "lt", "logical_and", "argmax", "argmin", "one_hot", "full", "arange",
                 "random_uniform", "stop_gradient"):
        assert not OPS[name].differentiable, name
    for name in ("add", "where", "cross_entropy", "dropout", "take"):
        assert OPS[name].differentiable, name
