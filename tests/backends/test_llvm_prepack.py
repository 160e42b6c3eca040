"""Weights packed once: an inference GEMM whose B reads only weights keeps B packed in the
arena between calls. Those weights are read-only in exe.state; a new array (load_state_dict,
or an assignment to exe.state) makes the next call pack again, and the Executable keeps a
copy of its own, so later edits of the caller's array never reach the packed copy unseen.
Training steps and ahead-of-time bundles pack on every call. Every result is checked against
the eager backend on fresh inputs."""
import numpy as np
import pytest

import dlc
from dlc import nn
from backends.llvm import lower_program

F = nn.functional


class TwoLayers(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(n_in, hidden), nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def _pair(threads: int, rng):
    """(llvm, eager) Executables of one model; its GEMMs are big enough that every thread
    packs whole column blocks of its own (so B may stay packed)."""
    model = TwoLayers(96, 256, 128)
    spec = dlc.TensorSpec((40, 96))
    return (dlc.compile(model, spec, backend="llvm", threads=threads),
            dlc.compile(model, spec, backend="eager"))


def _agree(exe, eager, rng):
    for _ in range(3):  # the first call packs, the next ones read the packed copy
        x = rng.standard_normal((40, 96)).astype(np.float32)
        got, want = exe(x), eager(x)
        assert np.isfinite(got).all()
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("threads", [1, 2])
def test_packed_weights_follow_every_change(threads, rng):
    exe, eager = _pair(threads, rng)
    assert exe.program.prepacked_params == ["fc1.weight", "fc2.weight"]
    _agree(exe, eager, rng)
    new = {k: rng.standard_normal(v.shape).astype(np.float32)
           for k, v in exe.state.items() if k.endswith("weight")}
    exe.load_state_dict(new)
    eager.load_state_dict(new)
    _agree(exe, eager, rng)
    w = rng.standard_normal((256, 96)).astype(np.float32)
    exe.state["fc1.weight"] = w
    eager.state["fc1.weight"] = w.copy()
    _agree(exe, eager, rng)
    w[:] = 0.0  # the caller's array: the Executable packed a copy of its own
    _agree(exe, eager, rng)


def test_packed_weights_are_read_only(rng):
    exe, _ = _pair(1, rng)
    with pytest.raises(ValueError, match="read-only"):
        exe.state["fc2.weight"][0, 0] = 1.0
    assert exe.state["fc1.bias"].flags.writeable  # only what a GEMM keeps packed


def test_training_steps_and_bundles_pack_on_every_call(rng):
    model = TwoLayers(96, 256, 128)
    spec = dlc.TensorSpec((40, 96))
    inference = dlc.compile(model, spec, backend="llvm", threads=1)
    assert lower_program(inference.graph, 1, prepack=False).prepacked_params == []
    step = dlc.train_step(model, F.cross_entropy, dlc.optim.SGD(lr=0.1), spec,
                          dlc.TensorSpec((40,), "int64"))
    assert dlc.compile(step, backend="llvm", threads=1).program.prepacked_params == []
