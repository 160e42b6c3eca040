"""Every op in the table, on random inputs, eager vs the torch CPU oracle (float32, float64)."""
import importlib
import os
import pkgutil

import numpy as np
import pytest
import torch

import dlc  # noqa: F401  (registers ops)
from backends.eager import run_graph
from dlc.ops import OPS
from tests.ops import harness
from tests.ops.harness import CASES, TOL

for _m in pkgutil.iter_modules([os.path.dirname(harness.__file__)]):
    if _m.name.startswith("cases_"):
        importlib.import_module(f"tests.ops.{_m.name}")

# ops exercised elsewhere (fused bodies) need no standalone case
NO_CASE = {"fused", "result"}


def test_every_op_has_a_case():
    missing = sorted(set(OPS) - {c.op for c in CASES} - NO_CASE)
    assert not missing, f"ops without a test case: {missing}"


def _params():
    for c in CASES:
        for dt in c.dtypes:
            yield pytest.param(c, dt, id=f"{c.id}-{dt}")


def to_torch(a: np.ndarray):
    return torch.from_numpy(np.array(a, order="C", copy=True))


@pytest.mark.parametrize("c,dtype", list(_params()))
def test_op_matches_torch(c, dtype, rng):
    arrays = c.make_inputs(rng, dtype)
    graph = c.build(arrays)
    dlc.verify(graph)
    (out,) = run_graph(graph, arrays)
    node = graph.nodes[-1]
    assert out.shape == node.type.shape and out.dtype.name == node.type.dtype
    expected = c.torch_ref(*[to_torch(a) for a in arrays], **c.attrs)
    expected = expected.numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert expected.shape == out.shape, (expected.shape, out.shape)
    rtol, atol = TOL.get(dtype, (0, 0))
    rtol = c.rtol if c.rtol is not None else rtol
    atol = c.atol if c.atol is not None else atol
    if out.dtype.kind in "biu":
        np.testing.assert_array_equal(out, expected.astype(out.dtype))
    else:
        assert not np.isnan(out).any() or np.isnan(expected).any(), "NaN in output"
        np.testing.assert_allclose(out, expected.astype(out.dtype), rtol=rtol, atol=atol,
                                   equal_nan=bool(np.isnan(expected).any()))
