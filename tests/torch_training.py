"""Shared by the training tests: run the same steps in dlc and in PyTorch (the oracle).

A dlc model and its torch twin share initial weights (copied through the state dict, whose
keys agree); both take the same batches; the helpers record the loss and every weight after
each step on both sides.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

import dlc
from tests.ops.harness import assert_allclose


@dataclass
class Trajectory:
    """Losses per step and the model's state dict after each step."""
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)  # before clipping (torch side)
    states: list[dict[str, np.ndarray]] = field(default_factory=list)


def torch_twin(dlc_model, torch_model: torch.nn.Module) -> torch.nn.Module:
    """Load the dlc model's weights and buffers into `torch_model` (keys must agree)."""
    state = {k: torch.from_numpy(np.array(v)) for k, v in dlc_model.state_dict().items()}
    torch_model.load_state_dict(state, strict=True)
    return torch_model


def run_dlc(model, loss_fn, optimizer, batches, **compile_options) -> Trajectory:
    """Compile one training step and run it on each (x, y) batch."""
    x0, y0 = batches[0]
    step = dlc.train_step(model, loss_fn, optimizer, dlc.TensorSpec(x0.shape, x0.dtype.name),
                          dlc.TensorSpec(y0.shape, y0.dtype.name))
    exe = dlc.compile(step, **compile_options)
    out = Trajectory()
    for x, y in batches:
        out.losses.append(float(exe(x, y)))
        out.states.append(exe.state_dict())
    return out


def run_torch(model: torch.nn.Module, loss_fn: Callable, optimizer, batches,
              clip: float | None = None, scheduler=None) -> Trajectory:
    """The same loop in PyTorch: forward, backward, optional clipping, step, schedule."""
    model.train()
    out = Trajectory()
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            out.grad_norms.append(float(norm))
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        out.losses.append(float(loss.detach()))
        out.states.append({k: v.detach().numpy().copy() for k, v in model.state_dict().items()})
    return out


def max_rel_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected|: the relative error of a whole tensor."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert np.all(np.isfinite(actual)), "non-finite values"
    scale = np.abs(expected).max()
    return float(np.abs(actual - expected).max() / scale) if scale else \
        float(np.abs(actual).max())


def assert_same_trajectory(got: Trajectory, want: Trajectory, rtol: float,
                           atol: float) -> None:
    """Every step's loss and every weight after every step, elementwise."""
    assert len(got.losses) == len(want.losses)
    assert np.all(np.isfinite(got.losses)) and np.all(np.isfinite(want.losses))
    assert_allclose(got.losses, want.losses, rtol=rtol, atol=atol)
    for step, (g, w) in enumerate(zip(got.states, want.states), start=1):
        assert sorted(g) == sorted(w), f"step {step}: state dict keys differ"
        for key in w:
            assert np.all(np.isfinite(g[key])), f"{key} after step {step} is not finite"
            assert_allclose(g[key], w[key], rtol=rtol, atol=atol,
                            err_msg=f"{key} after step {step}")


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """The eager interpreter's matmuls are small: BLAS threads only add contention with
    torch's own threads on a small machine (tens of times slower), so use one."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl the tests are slower, not wrong
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
