"""The model-family examples train on the triton backend (interpreter) as on eager.

For each example's `training()` (what `dlc train FILE.py` runs), the compiled training
step (forward, backward, optimizer update, schedules and random draws in the graph) runs 3
steps on eager and on triton from the same initial weights on the same batches; the losses
agree to rtol 1e-4 in float32 (the backends sum in different orders, and each step feeds
the next one's weights), and the weights after the 3 steps agree to 1e-4 of their scale.
"""
from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.cli_train import load_training
from dlc.trainer import batch_indices

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FILES = ["gcn_karate", "autoencoder", "vae", "diffusion", "digits_mlp", "digits_cnn"]
STEPS = 3
SEED = 0


def training_step(name: str):
    """The example's compiled-step graph and the first STEPS batches `dlc train` feeds it."""
    _, _, training = load_training(str(EXAMPLES / f"{name}.py"), SEED, None)
    x, y = training.train
    specs = (dlc.TensorSpec((training.batch_size,) + x.shape[1:], x.dtype.name, name="x"),
             dlc.TensorSpec((training.batch_size,) + y.shape[1:], y.dtype.name,
                            name="target"))
    graph = dlc.train_step(training.model, training.loss_fn, training.optimizer, *specs,
                           seed=SEED)
    order = batch_indices(len(x), training.batch_size, np.random.default_rng(SEED))
    batches = [(x[idx], y[idx]) for _, idx in zip(range(STEPS), order)]
    return graph, batches


@pytest.mark.parametrize("name", FILES)
def test_example_trains_on_triton_as_on_eager(name):
    graph, batches = training_step(name)
    eager = dlc.compile(graph)
    triton = dlc.compile(graph, backend="triton")
    start = eager.state_dict()
    for k, v in triton.state_dict().items():  # the same initial weights
        np.testing.assert_array_equal(v, start[k], err_msg=k)
    for step, batch in enumerate(batches, 1):
        want, got = eager(*batch), triton(*batch)
        assert np.isfinite(want) and np.isfinite(got), (step, want, got)
        np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=f"{name} step {step}")
    want, got = eager.state_dict(), triton.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        scale = float(np.abs(want[k]).max())
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-4 * scale,
                                   err_msg=f"{name}: {k}")
