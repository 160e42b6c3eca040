"""Index maps that stay views on the llvm backend: a transposed weight is read by the GEMM's
packing straight from the parameter, also in a training step that updates the parameter in
place (the last reader of the view runs before the update), and the results equal eager.
A reshape maps each group of axes of equal size on its own, so head splits stay affine."""
import numpy as np
import pytest

import dlc
from backends.llvm.lower_movement import reshape_groups
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


@pytest.mark.parametrize("src,dst,groups", [
    ((128, 8, 256), (128, 8, 4, 64), [([0], [0]), ([1], [1]), ([2], [2, 3])]),
    ((128, 8, 4, 64), (1024, 256), [([0, 1], [0]), ([2, 3], [1])]),
    ((2, 3, 4), (4, 3, 2), [([0, 1, 2], [0, 1, 2])]),
    ((1, 6, 1), (6,), [([0, 1, 2], [0])]),
    ((6,), (1, 2, 3, 1), [([0], [0, 1, 2, 3])]),
    ((), (1, 1), [([], [0, 1])]),
    ((3, 0), (0, 3), None),
])
def test_reshape_groups(src, dst, groups):
    assert reshape_groups(src, dst) == groups


def test_attention_head_views_load_whole_vectors(rng):
    """Queries and keys split out of one projection by slice, reshape and permute: the
    reshape maps the head axes on their own, so the key transpose stays affine and is
    packed with vector loads and register transposes, not gathered element by element."""
    def scores(qkv):
        q = qkv[:, :, 0:64].reshape(16, 3, 4, 16).permute(1, 2, 0, 3)
        k = qkv[:, :, 64:128].reshape(16, 3, 4, 16).permute(1, 2, 3, 0)
        return q @ k

    graph = dlc.trace(scores, dlc.TensorSpec((16, 3, 192)))
    exe = dlc.compile(graph, backend="llvm", threads=2)
    assert len(exe.kernels()) == 1 and "masked.gather" not in exe.llvm_ir()
    qkv = rng.standard_normal((16, 3, 192)).astype(np.float32)
    q = qkv[:, :, 0:64].reshape(16, 3, 4, 16).transpose(1, 2, 0, 3).astype(np.float64)
    k = qkv[:, :, 64:128].reshape(16, 3, 4, 16).transpose(1, 2, 3, 0).astype(np.float64)
    want = q @ k
    scale = np.abs(q) @ np.abs(k)  # the size of the sum's terms
    got = exe(qkv)
    assert np.all(np.abs(got - want) <= 1e-6 * scale + 1e-30)
