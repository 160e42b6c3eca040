"""Shared by the training tests: run the same steps in dlc and in PyTorch (the oracle).

A dlc model and its torch twin share initial weights (copied through the state dict, whose
keys agree); both take the same batches; the helpers record the loss and every weight after
each step on both sides.
"""
from __future__ import annotations

import copy
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
    # per step, how far each weight moves when the gradients move by a few float32 ulps
    # (filled by torch_oracle): where an update is ill-conditioned, two correct float32
    # implementations differ by that much
    slack: list[dict[str, np.ndarray]] = field(default_factory=list)


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
              clip: float | None = None, scheduler=None, grad_shift: float = 0.0) -> Trajectory:
    """The same loop in PyTorch: forward, backward, optional clipping, step, schedule.
    grad_shift adds grad_shift * max|grad| to every gradient element before the step."""
    model.train()
    out = Trajectory()
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        if grad_shift:
            with torch.no_grad():
                for p in model.parameters():
                    p.grad.add_(grad_shift * p.grad.abs().max())
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            out.grad_norms.append(float(norm))
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        out.losses.append(float(loss.detach()))
        out.states.append({k: v.detach().numpy().copy() for k, v in model.state_dict().items()})
    return out


# A float32 gradient is a sum whose terms may cancel: two summation orders can differ by a
# few ulps of the largest term, which can be the whole value of a near-zero element. 2**-22
# of the tensor's largest gradient is 4 of its ulps. (A gap of 9 ulps of a 0.01 term in one
# element was seen; it moved that Adam weight by 0.3 of the slack this shift measures.)
GRAD_SHIFT = 2.0 ** -22


def torch_oracle(model: torch.nn.Module, loss_fn: Callable, make_optimizer: Callable, batches,
                 clip: float | None = None, make_scheduler: Callable | None = None) -> Trajectory:
    """run_torch, plus each weight's sensitivity to float32 gradient error, measured.

    Adaptive updates (Adam, RMSprop, Lion's sign) are ill-conditioned where a gradient is near
    zero: Adam's first step is lr * g / (|g| + eps), whose slope is lr / eps there. The loop is
    run again with every gradient shifted up and down by GRAD_SHIFT * max|grad|, and the
    larger move of each weight is its slack: assert_same_trajectory allows that much more."""
    def run(shift: float, net: torch.nn.Module) -> Trajectory:
        optimizer = make_optimizer(net.parameters())
        scheduler = make_scheduler(optimizer) if make_scheduler else None
        return run_torch(net, loss_fn, optimizer, batches, clip, scheduler, grad_shift=shift)

    initial = copy.deepcopy(model)
    base = run(0.0, model)
    shifted = [run(sign * GRAD_SHIFT, copy.deepcopy(initial)) for sign in (1.0, -1.0)]
    for step, state in enumerate(base.states):
        base.slack.append({key: np.maximum(*(np.abs(other.states[step][key] - value)
                                             for other in shifted))
                           for key, value in state.items()})
    return base


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
            if not want.slack:
                assert_allclose(g[key], w[key], rtol=rtol, atol=atol,
                                err_msg=f"{key} after step {step}")
                continue
            error = np.abs(g[key].astype(np.float64) - w[key])
            bound = atol + rtol * np.abs(w[key]) + 2 * want.slack[step - 1][key]
            worst = np.unravel_index(np.argmax(error - bound), error.shape)
            slack = want.slack[step - 1][key][worst]
            assert np.all(error <= bound), (
                f"{key} after step {step}: {int(np.sum(error > bound))} elements off; at "
                f"{tuple(int(i) for i in worst)}: {g[key][worst]} vs {w[key][worst]}, error "
                f"{error[worst]:.3g} > {bound[worst]:.3g} (slack {slack:.3g})")


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
