"""The VJP rules of the movement ops, called directly on every movement case.

Each rule is checked on fresh random float64 inputs and a random cotangent g against two
oracles that need no other op's VJP: torch.autograd.grad, and the adjoint identity
<op(x) - op(0), g> = <x, vjp(g)> (every movement op is affine in its float inputs, linear
but for pad's fill value, so the VJP is the transpose of its linear part). A second test
differentiates the gradient graph itself: d<vjp(g), v>/dg must be op(v) - op(0), from the
op's own forward reference (second order). The graphs the rules build are checked to use
only ops that have VJPs, and gradients with repeated indices, crops, negative steps and
empty slices are also checked against values written out by hand."""
import numpy as np
import pytest
import torch

import dlc
from backends.eager import run_graph
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType
from dlc.ops import OPS
from dlc.tensor import Tensor
from tests.ops import test_op_table  # noqa: F401  (imports every cases_*.py)
from tests.ops.harness import CASES, assert_allclose

MOVEMENT_OPS = {name for name, op in OPS.items() if op.impl.__module__ in
                ("dlc.ops.movement", "dlc.ops.gather")}
MOVEMENT_CASES = [pytest.param(c, id=c.id) for c in CASES if c.op in MOVEMENT_OPS]


def diff_inputs(op: str, arrays) -> list[int]:
    return [i for i, a in enumerate(arrays) if a.dtype.kind == "f" and i not in OPS[op].nondiff]


def forward(op: str, attrs: dict, arrays) -> np.ndarray:
    with Builder(op) as b:
        ins = [b.add_input(f"a{i}", TensorType(a.shape, a.dtype.name))
               for i, a in enumerate(arrays)]
        out = b.emit(op, tuple(ins), dict(attrs))
    return run_graph(b.finish([out]), arrays)[0]


def vjp_graph(op: str, attrs: dict, arrays, g: np.ndarray):
    """A graph (inputs a0.., g) -> the op's VJP rule for each differentiable input."""
    with Builder(op + "_vjp") as b:
        ins = [b.add_input(f"a{i}", TensorType(a.shape, a.dtype.name))
               for i, a in enumerate(arrays)]
        gv = b.add_input("g", TensorType(g.shape, g.dtype.name))
        out = b.emit(op, tuple(ins), dict(attrs))
        grads = OPS[op].vjp(Tensor(gv), Tensor(out), [Tensor(v) for v in ins], dict(out.attrs))
    assert len(grads) == len(arrays)
    return dlc.verify(b.finish([grads[i].value for i in diff_inputs(op, arrays)]))


def vjp(op: str, attrs: dict, arrays, g: np.ndarray) -> list[np.ndarray]:
    return run_graph(vjp_graph(op, attrs, arrays, g), list(arrays) + [g])


def torch_vjp(case, arrays, g: np.ndarray) -> list[np.ndarray]:
    idx = diff_inputs(case.op, arrays)
    ts = [torch.tensor(a, requires_grad=(i in idx)) for i, a in enumerate(arrays)]
    out = case.torch_ref(*ts, **case.attrs)
    grads = torch.autograd.grad(out, [ts[i] for i in idx], torch.from_numpy(g),
                                allow_unused=True)
    return [np.zeros_like(arrays[i]) if t is None else t.numpy() for i, t in zip(idx, grads)]


def linear_part(op: str, attrs: dict, arrays, idx: list[int]) -> np.ndarray:
    """op(arrays) - op(zeros in the float inputs): drops pad's constant fill."""
    zeros = [np.zeros_like(a) if i in idx else a for i, a in enumerate(arrays)]
    return forward(op, attrs, arrays) - forward(op, attrs, zeros)


def case_inputs(case, rng):
    arrays = case.make_inputs(rng, "float64")
    g = rng.standard_normal(forward(case.op, case.attrs, arrays).shape)
    return arrays, g


def test_every_movement_op_has_a_vjp_and_a_case():
    assert sorted(n for n in MOVEMENT_OPS if OPS[n].vjp is None) == []
    assert MOVEMENT_OPS <= {c.op for c in CASES}


@pytest.mark.parametrize("c", MOVEMENT_CASES)
def test_vjp_rule_matches_torch_autograd(c, rng):
    arrays, g = case_inputs(c, rng)
    got = vjp(c.op, c.attrs, arrays, g)
    for i, gi, expected in zip(diff_inputs(c.op, arrays), got, torch_vjp(c, arrays, g)):
        assert gi.shape == arrays[i].shape and not np.isnan(gi).any()
        assert_allclose(gi, expected, rtol=1e-12, atol=1e-12,
                        err_msg=f"{c.id}: d/d a{i}")


@pytest.mark.parametrize("c", MOVEMENT_CASES)
def test_vjp_rule_is_the_transpose_of_the_op(c, rng):
    """<op(x) - op(0), g> = sum_i <x_i, vjp_i(g)>, the op's numpy reference on the left."""
    arrays, g = case_inputs(c, rng)
    grads = vjp(c.op, c.attrs, arrays, g)
    idx = diff_inputs(c.op, arrays)
    lhs = float(np.sum(linear_part(c.op, c.attrs, arrays, idx) * g))
    rhs = sum(float(np.sum(arrays[i] * gi)) for i, gi in zip(idx, grads))
    assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("c", MOVEMENT_CASES)
def test_vjp_rules_use_only_ops_with_vjps(c, rng):
    arrays, g = case_inputs(c, rng)
    graph = vjp_graph(c.op, c.attrs, arrays, g)
    # a node without inputs (full: the zeros) has nothing to differentiate
    no_vjp = {n.op.name for n in graph.nodes if n.inputs and n.op.vjp is None}
    assert not no_vjp, f"{c.id}: the VJP graph uses {sorted(no_vjp)}, which have no VJP"


@pytest.mark.parametrize("c", MOVEMENT_CASES)
def test_second_order_gradient_of_the_vjp_is_the_op(c, rng):
    """The VJP graph is linear in g, the transpose of the op's linear part, so
    d<vjp(g), v>/dg = op(v) - op(0)."""
    arrays, g = case_inputs(c, rng)
    idx = diff_inputs(c.op, arrays)
    vs = [rng.standard_normal(arrays[i].shape) for i in idx]
    with Builder(c.op + "_second") as b:
        ins = [b.add_input(f"a{i}", TensorType(a.shape, a.dtype.name))
               for i, a in enumerate(arrays)]
        gv = Tensor(b.add_input("g", TensorType(g.shape, "float64")))
        vv = [Tensor(b.add_input(f"v{i}", TensorType(v.shape, "float64")))
              for i, v in zip(idx, vs)]
        out = b.emit(c.op, tuple(ins), dict(c.attrs))
        grads = OPS[c.op].vjp(gv, Tensor(out), [Tensor(v) for v in ins], dict(out.attrs))
        total = sum(((grads[i] * v).sum() for i, v in zip(idx, vv)), start=0.0)
    graph = b.finish([total.value])
    (second,) = run_graph(dlc.grad(graph, wrt=["g"]), arrays + [g] + vs)
    # the float inputs replaced by v, the index input kept
    v_arrays = list(arrays)
    for i, v in zip(idx, vs):
        v_arrays[i] = v
    assert_allclose(second, linear_part(c.op, c.attrs, v_arrays, idx), rtol=1e-12,
                    atol=1e-12)


# -- rules checked by hand ---------------------------------------------------------------------
def test_take_with_repeated_indices_accumulates(rng):
    x = rng.standard_normal((3, 2))
    g = rng.standard_normal((4, 2))
    (dx,) = vjp("take", dict(axis=0), [x, np.array([1, -2, 0, 1])], g)
    assert_allclose(dx, np.stack([g[2], g[0] + g[1] + g[3], np.zeros(2)]),
                    rtol=1e-15)


def test_slice_with_a_negative_step_places_the_gradient_backwards(rng):
    x = rng.standard_normal(7)
    g = rng.standard_normal(3)
    (dx,) = vjp("slice", dict(starts=[5], stops=[-1], steps=[-2]), [x], g)  # x[5::-2]
    np.testing.assert_array_equal(dx, [0, g[2], 0, g[1], 0, g[0], 0])


def test_empty_slice_gives_zeros(rng):
    x = rng.standard_normal((4, 3))
    (dx,) = vjp("slice", dict(starts=[3, 0], stops=[1, 3], steps=[1, 1]), [x],
                np.zeros((0, 3)))
    np.testing.assert_array_equal(dx, np.zeros((4, 3)))


def test_reflect_pad_folds_the_border_back(rng):
    x = rng.standard_normal(4)
    g = rng.standard_normal(4 + 2 + 3)  # out = x2 x1 | x0 x1 x2 x3 | x2 x1 x0
    (dx,) = vjp("pad", dict(pads=[2, 3], mode="reflect"), [x], g)
    assert_allclose(dx, [g[2] + g[8], g[3] + g[1] + g[7], g[4] + g[0] + g[6], g[5]],
                    rtol=1e-15)


def test_replicate_pad_with_a_crop_sums_each_border_onto_its_edge(rng):
    x = rng.standard_normal(5)
    g = rng.standard_normal(5 - 2 + 3)  # out = x2 x3 x4 x4 x4 x4
    (dx,) = vjp("pad", dict(pads=[-2, 3], mode="replicate"), [x], g)
    assert_allclose(dx[:4], [0, 0, g[0], g[1]], rtol=0)
    # a sum of four float64 terms, in whatever order: its rounding error is bounded by the
    # terms' magnitudes, not by the sum's (which cancellation can make small)
    edge = g[2:6]
    assert abs(dx[4] - edge.sum()) <= 4 * np.finfo(np.float64).eps * np.abs(edge).sum()


def test_scatter_add_src_outside_the_index_region_gets_zeros(rng):
    x, src = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    idx = np.array([[2, 0], [2, 1]])
    g = rng.standard_normal((3, 4))
    dx, dsrc = vjp("scatter_add", dict(axis=0), [x, idx, src], g)
    np.testing.assert_array_equal(dx, g)
    expected = np.zeros((4, 5))
    expected[:2, :2] = [[g[2, 0], g[0, 1]], [g[2, 0], g[1, 1]]]
    np.testing.assert_array_equal(dsrc, expected)
