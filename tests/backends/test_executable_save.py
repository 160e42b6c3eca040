"""Executable.save writes an ahead-of-time bundle of what the Executable holds now (its
trained parameters included); dlc.load reads it back and computes the same outputs."""
import numpy as np

import dlc
import dlc.nn.functional as F
from dlc import nn
from tests.ops.harness import assert_allclose


def test_a_trained_eager_executable_saves_and_loads(tmp_path, rng):
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    initial = model.state_dict()
    step = dlc.compile(dlc.train_step(model, F.cross_entropy, dlc.optim.SGD(lr=0.5),
                                      dlc.TensorSpec((5, 6)), dlc.TensorSpec((5,), "int64")))
    x = rng.standard_normal((5, 6)).astype(np.float32)
    y = rng.integers(0, 3, 5)
    for _ in range(3):
        step(x, y)
    model.load_state_dict(step.state_dict())
    exe = dlc.compile(model.eval(), dlc.TensorSpec((5, 6)))
    bundle = exe.save(tmp_path / "b")
    assert (tmp_path / "b" / "manifest.json").is_file() and bundle is not None
    loaded = dlc.load(tmp_path / "b")
    probe = rng.standard_normal((5, 6)).astype(np.float32)
    want = exe(probe)
    assert_allclose(loaded(probe), want, rtol=1e-5, atol=1e-6)
    # the saved weights are the trained ones, not the initial ones
    model.load_state_dict(initial)
    untrained = dlc.compile(model, dlc.TensorSpec((5, 6)))(probe)
    assert np.abs(untrained - want).max() > 1e-3
