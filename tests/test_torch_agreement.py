"""The same MLP and the same small CNN, trained by dlc and by PyTorch from the same initial
weights on the same batches: 20 steps each of SGD with momentum, Adam and AdamW.

Both sides compute in float32. Every step's loss agrees to 1e-4 relative, and every final
weight tensor to 1e-3 relative (max |dlc - torch| / max |torch| over the tensor).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import dlc
from dlc import nn, optim
from dlc.nn import functional as F
from tests.torch_training import max_rel_error, one_blas_thread, run_dlc, run_torch, torch_twin

STEPS, BATCH, CLASSES = 20, 16, 10
LOSS_RTOL, WEIGHT_RTOL = 1e-4, 1e-3


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with one_blas_thread():
        yield


def mlp():
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, CLASSES))
    twin = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, CLASSES))
    return model, torch_twin(model, twin), (64,)


def cnn():
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8 * 2 * 2, CLASSES))
    twin = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Conv2d(6, 8, 3, padding=1),
                               torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 2 * 2, CLASSES))
    return model, torch_twin(model, twin), (1, 8, 8)


MODELS = {"mlp": mlp, "cnn": cnn}
OPTIMIZERS = {
    "sgd_momentum": (lambda: optim.SGD(0.05, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "adam": (lambda: optim.Adam(1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)),
    "adamw": (lambda: optim.AdamW(1e-3, weight_decay=0.01),
              lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01)),
}


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_training_agrees_with_torch(model_name, opt_name, rng):
    dlc.nn.init.manual_seed(int(rng.integers(2**31)))
    model, twin, shape = MODELS[model_name]()
    make_dlc, make_torch = OPTIMIZERS[opt_name]
    batches = [(rng.random((BATCH,) + shape, dtype=np.float32),
                rng.integers(0, CLASSES, BATCH).astype(np.int64)) for _ in range(STEPS)]
    got = run_dlc(model, F.cross_entropy, make_dlc(), batches)
    want = run_torch(twin, torch.nn.functional.cross_entropy, make_torch(twin.parameters()),
                     batches)

    assert np.all(np.isfinite(got.losses))
    for step, (a, b) in enumerate(zip(got.losses, want.losses), start=1):
        assert abs(a - b) <= LOSS_RTOL * abs(b), f"step {step}: loss {a} vs torch {b}"
    final, expected = got.states[-1], want.states[-1]
    assert list(final) == list(expected)
    for key in expected:
        err = max_rel_error(final[key], expected[key])
        assert err <= WEIGHT_RTOL, f"{key}: relative error {err:.2e} after {STEPS} steps"
        assert not np.array_equal(final[key], model.state_dict()[key])  # it did change
