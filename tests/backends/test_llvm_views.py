"""Index maps that stay views on the llvm backend: a transposed weight is read by the GEMM's
packing straight from the parameter, also in a training step that updates the parameter in
place (the last reader of the view runs before the update), and the results equal eager."""
import numpy as np

import dlc
from dlc import nn
from dlc.ir.graph import Input

F = nn.functional


def _step():
    model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    # eps = 1e-3 keeps the update well-conditioned (see tests/backends/test_llvm_models.py)
    return dlc.train_step(model, F.cross_entropy, dlc.optim.Adam(lr=1e-2, eps=1e-3),
                          dlc.TensorSpec((16, 64)), dlc.TensorSpec((16,), "int64"))


def test_training_step_reads_weight_transposes_in_place(rng):
    step = _step()
    exe = dlc.compile(step, backend="llvm", threads=2)
    assert exe.program.inplace, "the step's parameters are updated in place"
    materialized = [node for (name, _), node in zip(exe.kernels(), exe.program.kernel_nodes)
                    if name.endswith(".permute")]
    assert not [n for n in materialized if isinstance(n.inputs[0], Input)], \
        "a weight's transpose was copied"
    eager = dlc.compile(step, backend="eager")
    for _ in range(4):
        x = rng.standard_normal((16, 64)).astype(np.float32)
        y = rng.integers(0, 10, size=16).astype(np.int64)
        got, want = exe(x, y), eager(x, y)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=1e-5)
    for name, value in eager.state.items():
        np.testing.assert_allclose(exe.state[name], value, rtol=1e-4, atol=1e-6,
                                   err_msg=name)
