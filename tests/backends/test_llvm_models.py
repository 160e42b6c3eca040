"""Whole models on the llvm backend against the eager backend.

Every example model (examples/*.py main_model) through dlc.compile's O2 pipeline (fusion
and a memory plan), training steps (the 784-512-512-10 MLP of examples/mlp.py with Adam
and with SGD, and the small MLP and CNN of the fusion tests) over several steps, and the
non-finite-loss rule of training steps.

Outputs are compared with rtol 1e-5 plus an absolute tolerance of 1e-5 of the output's
largest magnitude, the standard of the backend model tests: a model's outputs are long
float32 sums (784-term dot products, convolutions) added in a different order by each
backend, an error that scales with the summed terms, i.e. with the output's scale, not with
each element (an output near zero has no relative accuracy in either backend).
"""
import numpy as np
import pytest

import dlc
from dlc import nn
from tests.backends.model_checks import assert_model_close, assert_nan_step_skipped, user_args
from tests.passes.fusion_models import (cnn_train_step, example_files, example_graph,
                                        mlp_train_step)

EXAMPLES = example_files()




@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_model_matches_eager(path, rng):
    graph = example_graph(path)
    args = user_args(graph, rng)
    want = dlc.compile(graph)(*args)
    exe = dlc.compile(graph, backend="llvm")
    assert_model_close(exe(*args), want)


def test_transformer_block_matches_eager(rng):
    """A pre-LN encoder block: attention's batched matmuls, softmax rows, layer norms."""
    dlc.nn.init.manual_seed(4)
    block = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True,
                                       norm_first=True)
    block.eval()
    graph = dlc.trace(block, dlc.TensorSpec((2, 5, 32), "float32", name="x"))
    x = rng.standard_normal((2, 5, 32)).astype(np.float32)
    assert_model_close(dlc.compile(graph, backend="llvm")(x), dlc.compile(graph)(x))


def mnist_mlp_train_step(optimizer, batch: int = 16):
    """A training step of the MLP 784-512-512-10 of examples/mlp.py."""
    from examples.mlp import MLP
    dlc.nn.init.manual_seed(3)
    return dlc.train_step(MLP(), nn.functional.cross_entropy, optimizer,
                          dlc.TensorSpec((batch, 784)), dlc.TensorSpec((batch,), "int64"))


# Adam divides each update by the gradient's running RMS, so an element whose gradient sums
# to nearly zero (its batch terms cancel) gets an update of up to lr whatever its tiny value:
# its slope in the gradient is up to lr / eps, and two summation orders can move it
# differently (with the default eps = 1e-8, one element in 768 of the small MLP did by 5e-4
# relative). The 401k weights of the 784-wide MLP train with SGD (updates linear in the
# gradient); Adam and AdamW run on the small models with eps = 1e-3, which bounds that slope
# by 10 and still runs every operation of the update.
STEPS = [
    (mnist_mlp_train_step, dlc.optim.SGD(lr=0.05, momentum=0.9)),
    (mnist_mlp_train_step, dlc.optim.SGD(lr=0.05)),
    (mlp_train_step, dlc.optim.Adam(lr=1e-2, eps=1e-3)),
    (mlp_train_step, dlc.optim.SGD(lr=0.1, momentum=0.9)),
    (cnn_train_step, dlc.optim.AdamW(lr=1e-2, weight_decay=0.1, eps=1e-3)),
]


@pytest.mark.parametrize("make,optimizer", STEPS,
                         ids=["mlp784-sgd-momentum", "mlp784-sgd", "mlp-adam",
                              "mlp-sgd-momentum", "cnn-adamw"])
def test_training_steps_match_eager(make, optimizer, rng):
    step = make(optimizer)
    eager = dlc.compile(step)
    llvm = dlc.compile(step, backend="llvm")
    for _ in range(3):
        batch = user_args(step, rng)
        np.testing.assert_allclose(llvm(*batch), eager(*batch), rtol=1e-5)
    want, got = eager.state_dict(), llvm.state_dict()
    assert want.keys() == got.keys() and want
    for k in want:  # three steps of updates: the same 1e-5 of each tensor's scale
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5,
                                   atol=1e-5 * float(np.abs(want[k]).max()), err_msg=k)


def test_training_step_skips_a_nonfinite_loss(rng):
    exe = dlc.compile(mlp_train_step(), backend="llvm", on_nonfinite="skip")
    x, y = user_args(exe.graph, rng)
    before = exe.state_dict()
    assert_nan_step_skipped(exe, x, y, 1)
    x[0, 0] = 0.0
    assert np.isfinite(exe(x, y))
    assert any(not np.array_equal(v, before[k]) for k, v in exe.state_dict().items())


def test_parameters_are_not_copied_per_call(rng):
    """Params and optimizer state live in arrays the Executable owns; a step updates them
    in place or swaps in the spare it wrote: after two steps no new arrays appear."""
    exe = dlc.compile(mlp_train_step(), backend="llvm")
    batch = user_args(exe.graph, rng)
    exe(*batch)
    exe(*batch)
    owned = {id(a) for a in exe.state.values()} | {id(a) for a in exe._spares.values()}
    for _ in range(3):
        exe(*batch)
        now = {id(a) for a in exe.state.values()} | {id(a) for a in exe._spares.values()}
        assert now == owned
