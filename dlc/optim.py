"""Optimizers and learning-rate schedules, as graph code.

An optimizer's update is written with the Tensor API, so `dlc.train_step` puts it inside the
compiled training-step graph: no Python runs between steps. Each optimizer declares its
per-parameter state (moments) as zero-initialized arrays; the step graph takes them as
`state` inputs and returns their new values as aliases (updated in place).

Schedules are functions of the step number (a float32 Tensor, 1 on the first step) computed
inside the graph, so changing the learning rate never recompiles.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from dlc.errors import DlcError
from dlc.tensor import Tensor, where

Schedule = Callable[[Tensor], "Tensor | float"]


# -- learning-rate schedules -----------------------------------------------------------------
def constant(lr: float) -> Schedule:
    """The same rate every step."""
    return lambda step: lr


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """lr * gamma ** floor((step - 1) / step_size), like torch's StepLR stepped per step."""
    if step_size < 1 or gamma < 0:
        raise DlcError(f"step_decay: step_size must be >= 1 and gamma >= 0, got step_size="
                       f"{step_size}, gamma={gamma}")

    def schedule(step: Tensor) -> Tensor:
        k = ((step - 1.0) / float(step_size)).floor()
        return float(gamma) ** k * lr
    return schedule


def warmup_cosine(lr: float, warmup: int, total: int, min_lr: float = 0.0) -> Schedule:
    """Linear warmup to `lr` over steps 1..`warmup`, then cosine decay to `min_lr` at step
    `total` (and `min_lr` after it)."""
    if warmup < 0 or total < warmup:
        raise DlcError(f"warmup_cosine: need 0 <= warmup <= total, got warmup={warmup}, "
                       f"total={total}")

    def schedule(step: Tensor) -> Tensor:
        warm = step * (lr / max(warmup, 1))
        progress = ((step - warmup) / float(max(total - warmup, 1))).clamp(0.0, 1.0)
        cosine = min_lr + (lr - min_lr) * 0.5 * ((progress * math.pi).cos() + 1.0)
        return where(step <= float(warmup), warm, cosine)
    return schedule


def _as_schedule(lr) -> Schedule:
    if callable(lr):
        return lr
    _require(isinstance(lr, (int, float)) and lr >= 0, "lr",
             f"a number >= 0 or a schedule, got {lr!r}")
    return constant(float(lr))


def _require(ok: bool, what: str, expected: str) -> None:
    """Bad hyperparameters fail when the optimizer is built, naming the argument."""
    if not ok:
        raise DlcError(f"optimizer argument {what}: expected {expected}")


def _check_betas(betas) -> tuple[float, float]:
    _require(len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas), "betas",
             f"two numbers in [0, 1), got {betas!r}")
    return float(betas[0]), float(betas[1])


# -- optimizers ------------------------------------------------------------------------------
class Optimizer:
    """Base: `state_names` lists per-parameter state; `update` is the graph code of one step.

    clip_grad_norm: if set, all gradients are scaled by min(1, clip / global_norm) first
    (torch.nn.utils.clip_grad_norm_ semantics, eps 1e-6)."""

    state_names: tuple[str, ...] = ()

    def __init__(self, lr=1e-3, weight_decay: float = 0.0,
                 clip_grad_norm: float | None = None):
        self.lr = _as_schedule(lr)
        _require(weight_decay >= 0, "weight_decay", f"a number >= 0, got {weight_decay!r}")
        _require(clip_grad_norm is None or clip_grad_norm > 0, "clip_grad_norm",
                 f"None or a number > 0, got {clip_grad_norm!r}")
        self.weight_decay = float(weight_decay)
        self.clip_grad_norm = None if clip_grad_norm is None else float(clip_grad_norm)

    def init_state(self, param: np.ndarray) -> dict[str, np.ndarray]:
        """The initial value of each per-parameter moment (zeros, like torch's)."""
        return {name: np.zeros_like(param) for name in self.state_names}

    def update(self, p: Tensor, g: Tensor, state: dict[str, Tensor], step: Tensor,
               lr: "Tensor | float") -> tuple[Tensor, dict[str, Tensor]]:
        """Graph code of one step for one parameter: (new p, {moment: new value}).

        `step` is 1 on the first step; `lr` is this step's rate from the schedule."""
        raise NotImplementedError


class SGD(Optimizer):
    """torch.optim.SGD: momentum, dampening, nesterov, weight decay."""

    def __init__(self, lr=1e-2, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0,
                 clip_grad_norm: float | None = None):
        super().__init__(lr, weight_decay, clip_grad_norm)
        _require(momentum >= 0, "momentum", f"a number >= 0, got {momentum!r}")
        _require(not nesterov or (momentum > 0 and dampening == 0), "nesterov",
                 "momentum > 0 and dampening 0 with nesterov=True (as torch requires)")
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
        self.state_names = ("momentum_buffer",) if momentum else ()

    def update(self, p, g, state, step, lr):
        d = g + p * self.weight_decay if self.weight_decay else g
        if not self.momentum:
            return p - lr * d, {}
        buf = state["momentum_buffer"]
        # torch starts the buffer at the first gradient (no dampening on step 1)
        later = buf * self.momentum + d * (1.0 - self.dampening)
        buf = where(step <= 1.0, d, later) if self.dampening else later
        d = d + buf * self.momentum if self.nesterov else buf
        return p - lr * d, {"momentum_buffer": buf}


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient)."""

    state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, clip_grad_norm: float | None = None):
        super().__init__(lr, weight_decay, clip_grad_norm)
        _require(eps >= 0, "eps", f"a number >= 0, got {eps!r}")
        self.betas, self.eps = _check_betas(betas), float(eps)

    def update(self, p, g, state, step, lr):
        b1, b2 = self.betas
        if self.weight_decay and self.decoupled:
            p = p * (1.0 - lr * self.weight_decay)
        elif self.weight_decay:
            g = g + p * self.weight_decay
        m = state["exp_avg"] * b1 + g * (1.0 - b1)
        v = state["exp_avg_sq"] * b2 + g * g * (1.0 - b2)
        bias1 = _bias_correction(b1, step)
        bias2 = _bias_correction(b2, step)
        bias2_sqrt = bias2.sqrt() if isinstance(bias2, Tensor) else 1.0
        denom = v.sqrt() / bias2_sqrt + self.eps
        return p - (lr / bias1) * m / denom, {"exp_avg": m, "exp_avg_sq": v}


def _bias_correction(beta: float, step: Tensor) -> "Tensor | float":
    """1 - beta**step, as -expm1(step * log(beta)): accurate in float32 even when beta**step
    is close to 1 (beta2 = 0.999 on the first steps)."""
    if beta == 0.0:
        return 1.0
    return -(step * math.log(beta)).expm1()


class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay (default 0.01)."""

    decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, clip_grad_norm: float | None = None):
        super().__init__(lr, betas, eps, weight_decay, clip_grad_norm)


class Lion(Optimizer):
    """Lion (sign of an interpolated momentum), decoupled weight decay."""

    state_names = ("exp_avg",)

    def __init__(self, lr=1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0,
                 clip_grad_norm: float | None = None):
        super().__init__(lr, weight_decay, clip_grad_norm)
        self.betas = _check_betas(betas)

    def update(self, p, g, state, step, lr):
        b1, b2 = self.betas
        m = state["exp_avg"]
        direction = (m * b1 + g * (1.0 - b1)).sign()
        if self.weight_decay:
            p = p * (1.0 - lr * self.weight_decay)
        return p - lr * direction, {"exp_avg": m * b2 + g * (1.0 - b2)}


class RMSprop(Optimizer):
    """torch.optim.RMSprop (alpha, eps, momentum, centered, weight decay)."""

    def __init__(self, lr=1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 clip_grad_norm: float | None = None):
        super().__init__(lr, weight_decay, clip_grad_norm)
        _require(0 <= alpha <= 1, "alpha", f"a number in [0, 1], got {alpha!r}")
        _require(eps >= 0 and momentum >= 0, "eps, momentum",
                 f"numbers >= 0, got eps={eps!r}, momentum={momentum!r}")
        self.alpha, self.eps, self.momentum, self.centered = alpha, eps, momentum, centered
        self.state_names = ("square_avg",) + (("momentum_buffer",) if momentum else ()) + \
            (("grad_avg",) if centered else ())

    def update(self, p, g, state, step, lr):
        if self.weight_decay:
            g = g + p * self.weight_decay
        sq = state["square_avg"] * self.alpha + g * g * (1.0 - self.alpha)
        new = {"square_avg": sq}
        if self.centered:
            ga = state["grad_avg"] * self.alpha + g * (1.0 - self.alpha)
            new["grad_avg"] = ga
            avg = (sq - ga * ga).sqrt() + self.eps
        else:
            avg = sq.sqrt() + self.eps
        if self.momentum:
            buf = state["momentum_buffer"] * self.momentum + g / avg
            new["momentum_buffer"] = buf
            return p - lr * buf, new
        return p - lr * g / avg, new


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Lion", "RMSprop", "constant", "step_decay",
           "warmup_cosine"]
