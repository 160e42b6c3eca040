"""The tracer: inputs and roles, loops unroll, locs and scopes, data-dependent branches."""
import numpy as np
import pytest

import dlc
from dlc.errors import TraceError
from frontend.nn.module import Module, Parameter
from tests.ops.harness import assert_allclose


class Affine(Module):
    def __init__(self, rng):
        super().__init__()
        self.weight = Parameter(rng.standard_normal((3, 4)).astype(np.float32))
        self.register_buffer("shift", rng.standard_normal(3).astype(np.float32))

    def forward(self, x):
        return x @ self.weight.T + self.shift


def test_module_parameters_and_buffers_become_inputs_with_roles(rng):
    m = Affine(rng)
    g = dlc.trace(m, dlc.TensorSpec((2, 4)))
    roles = {v.name: v.role for v in g.inputs}
    assert roles == {"x": "input", "weight": "param", "shift": "state"}
    assert g.input("weight").data is m._parameters["weight"]
    x = rng.standard_normal((2, 4)).astype(np.float32)
    out = dlc.compile(m, dlc.TensorSpec((2, 4)))(x)
    assert_allclose(out, x @ m._parameters["weight"].T + m._buffers["shift"],
                    rtol=1e-6)


def test_python_loops_unroll(rng):
    def f(x):
        for _ in range(5):
            x = x * 2.0 + 1.0
        return x

    g = dlc.trace(f, dlc.TensorSpec((3,)))
    assert sum(n.op.name == "mul" for n in g.nodes) == 5
    x = rng.standard_normal(3).astype(np.float32)
    expected = x.copy()
    for _ in range(5):
        expected = expected * 2 + 1
    assert_allclose(dlc.compile(g)(x), expected, rtol=1e-6)


def test_loc_is_the_users_line():
    def f(x):
        return x * 3.0  # this line

    g = dlc.trace(f, dlc.TensorSpec((2,)))
    mul = [n for n in g.nodes if n.op.name == "mul"][0]
    assert mul.loc.endswith(f"test_tracer.py:{f.__code__.co_firstlineno + 1}")


def test_scope_names_the_layer(rng):
    class Outer(Module):
        def __init__(self):
            super().__init__()
            self.inner = Affine(rng)

        def forward(self, x):
            return self.inner(x)

    g = dlc.trace(Outer(), dlc.TensorSpec((2, 4)))
    assert any(n.scope == "inner (Affine)" for n in g.nodes)


def test_data_dependent_branch_names_the_line():
    def f(x):
        if x.sum() > 0:  # branch on data
            return x
        return -x

    with pytest.raises(TraceError, match=r"test_tracer.py:\d+"):
        dlc.trace(f, dlc.TensorSpec((2,)))


def test_multiple_outputs_and_input_names(rng):
    def f(a, b):
        return a + b, a * b

    g = dlc.trace(f, dlc.TensorSpec((2,)), dlc.TensorSpec((2,)))
    assert [v.name for v in g.inputs] == ["a", "b"]
    a, b = rng.standard_normal((2, 2)).astype(np.float32)
    s, p = dlc.compile(g)(a, b)
    assert_allclose(s, a + b)
    assert_allclose(p, a * b)


def test_numpy_constants_become_const_inputs(rng):
    c = rng.standard_normal(3).astype(np.float32)
    g = dlc.trace(lambda x: x + c, dlc.TensorSpec((3,)))
    consts = [v for v in g.inputs if v.role == "const"]
    assert len(consts) == 1 and consts[0].data is c


def test_non_tensor_output_is_refused():
    with pytest.raises(TraceError, match="output 0"):
        dlc.trace(lambda x: 3, dlc.TensorSpec((3,)))


def test_mixed_dtypes_promote(rng):
    g = dlc.trace(lambda i, x: i + x, dlc.TensorSpec((3,), "int64"),
                  dlc.TensorSpec((3,), "float32"))
    assert g.outputs[0].type.dtype == "float32"
    i = np.arange(3)
    x = rng.standard_normal(3).astype(np.float32)
    assert_allclose(dlc.compile(g)(i, x), i + x, rtol=1e-6)
