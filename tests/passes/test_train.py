"""dlc.train_step: the step graph's layout, every optimizer and schedule against PyTorch,
BatchNorm state, dropout masks, and bad input.

The oracle is torch.optim (and torch.nn.utils.clip_grad_norm_) on a twin torch model with
the same initial weights and batches; Lion, which torch does not ship, is checked against
the published algorithm written with torch tensor ops. Both sides compute in float32.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dlc
from backends.executable import NonFiniteLossError
from dlc import nn
from dlc import optim
from dlc.nn import functional as F
from tests.ops.harness import assert_allclose
from tests.torch_training import (assert_same_trajectory, one_blas_thread, run_dlc, run_torch,
                                  torch_oracle, torch_twin)

# float32 on both sides, a few steps: differences are rounding of reordered sums
RTOL, ATOL = 1e-5, 1e-6
IN, HIDDEN, CLASSES, BATCH = 6, 16, 4, 8


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with one_blas_thread():
        yield


@pytest.fixture(autouse=True)
def fresh_weights(rng):
    """New initial weights every run (the initializers draw from dlc.nn.init's generator)."""
    dlc.nn.init.manual_seed(int(rng.integers(2**31)))


def mlp_pair(norm: bool = False):
    layers = [nn.Linear(IN, HIDDEN)] + ([nn.BatchNorm1d(HIDDEN)] if norm else []) + \
        [nn.Tanh(), nn.Linear(HIDDEN, CLASSES)]
    twin = [torch.nn.Linear(IN, HIDDEN)] + ([torch.nn.BatchNorm1d(HIDDEN)] if norm else []) + \
        [torch.nn.Tanh(), torch.nn.Linear(HIDDEN, CLASSES)]
    model = nn.Sequential(*layers)
    return model, torch_twin(model, torch.nn.Sequential(*twin))


def make_batches(rng, steps: int, batch: int = BATCH):
    return [(rng.standard_normal((batch, IN)).astype(np.float32),
             rng.integers(0, CLASSES, batch).astype(np.int64)) for _ in range(steps)]


def spec_of(array: np.ndarray) -> dlc.TensorSpec:
    return dlc.TensorSpec(array.shape, array.dtype.name)


# -- the step graph ------------------------------------------------------------------------------
def test_step_graph_inputs_outputs_and_aliases(rng):
    model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
                          nn.Dropout(0.25), nn.Linear(HIDDEN, CLASSES))
    (x, y), = make_batches(rng, 1)
    step = dlc.train_step(model, F.cross_entropy, optim.Adam(1e-3), spec_of(x), spec_of(y))
    dlc.verify(step)

    params = [name for name, _ in model.named_parameters()]
    buffers = [name for name, _ in model.named_buffers()]
    moments = [f"optim.{m}.{p}" for p in params for m in ("exp_avg", "exp_avg_sq")]
    expected = ["x", "target"] + params + buffers + moments + ["optim.step"]
    assert [v.name for v in step.inputs] == expected
    roles = ["input"] * 2 + ["param"] * len(params) + ["state"] * (len(expected) - 2 -
                                                                   len(params))
    assert [v.role for v in step.inputs] == roles

    # loss first; every other output updates the input of the same position in place
    assert step.outputs[0].type == dlc.TensorType((), "float32")
    assert 0 not in step.aliases
    assert [step.aliases[i] for i in range(1, len(step.outputs))] == expected[2:]
    for i, name in step.aliases.items():
        assert step.outputs[i].type == step.input(name).type
    assert dlc.parse(str(step)).aliases == step.aliases

    exe = dlc.compile(step)
    loss = exe(x, y)
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == np.float32
    assert np.isfinite(loss)
    assert list(exe.state_dict()) == list(model.state_dict())
    assert int(exe.state["optim.step"]) == 1


# -- optimizers against torch.optim --------------------------------------------------------------
OPTIMIZERS = {
    "sgd": (lambda: optim.SGD(0.1), lambda p: torch.optim.SGD(p, lr=0.1), None),
    "sgd_momentum_nesterov_wd": (
        lambda: optim.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        None),
    "sgd_momentum_dampening": (
        lambda: optim.SGD(0.1, momentum=0.8, dampening=0.3),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8, dampening=0.3), None),
    "adam": (lambda: optim.Adam(0.01), lambda p: torch.optim.Adam(p, lr=0.01), None),
    "adam_l2_betas_eps": (
        lambda: optim.Adam(0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
        None),
    "adamw": (lambda: optim.AdamW(0.01, weight_decay=0.1),
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1), None),
    "rmsprop": (lambda: optim.RMSprop(0.01), lambda p: torch.optim.RMSprop(p, lr=0.01), None),
    "rmsprop_centered_momentum_wd": (
        lambda: optim.RMSprop(0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.01),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5, centered=True,
                                      weight_decay=0.01), None),
    "sgd_momentum_clipped": (
        lambda: optim.SGD(0.1, momentum=0.9, clip_grad_norm=0.05),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), 0.05),
    "adamw_clipped": (lambda: optim.AdamW(0.01, clip_grad_norm=0.05),
                      lambda p: torch.optim.AdamW(p, lr=0.01), 0.05),
    "adam_clip_not_reached": (lambda: optim.Adam(0.01, clip_grad_norm=1e3),
                              lambda p: torch.optim.Adam(p, lr=0.01), 1e3),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_torch(name, rng):
    make_dlc, make_torch, clip = OPTIMIZERS[name]
    model, twin = mlp_pair()
    batches = make_batches(rng, 4)
    got = run_dlc(model, F.cross_entropy, make_dlc(), batches)
    want = torch_oracle(twin, torch.nn.functional.cross_entropy, make_torch, batches, clip=clip)
    if clip is not None and clip < 1:  # the clipping case must actually clip
        assert min(want.grad_norms) > clip
    assert_same_trajectory(got, want, RTOL, ATOL)


class LionReference(torch.optim.Optimizer):
    """Lion as published (Chen et al. 2023, Algorithm 2), in torch tensor ops."""

    def __init__(self, params, lr, betas, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                update = torch.sign(b1 * m + (1 - b1) * p.grad)
                p.sub_(group["lr"] * (update + group["weight_decay"] * p))
                m.mul_(b2).add_((1 - b2) * p.grad)


def test_lion_matches_the_published_algorithm(rng):
    model, twin = mlp_pair()
    batches = make_batches(rng, 4)
    got = run_dlc(model, F.cross_entropy, optim.Lion(1e-3, betas=(0.9, 0.99),
                                                     weight_decay=0.1), batches)
    want = torch_oracle(twin, torch.nn.functional.cross_entropy,
                        lambda p: LionReference(p, 1e-3, (0.9, 0.99), 0.1), batches)
    assert_same_trajectory(got, want, RTOL, ATOL)


# -- learning-rate schedules: computed in the graph from the step counter ------------------------
def warmup_cosine_reference(step: int, lr: float, warmup: int, total: int,
                            min_lr: float) -> float:
    """The documented schedule in float64 Python (step counts from 1)."""
    if step <= warmup:
        return lr * step / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def schedule_values(schedule, steps: int) -> np.ndarray:
    """Run a schedule as a graph over step = 1..steps (float32, as in train_step)."""
    graph = dlc.trace(lambda s: schedule(s) * 1.0, dlc.TensorSpec((), "float32"))
    exe = dlc.compile(graph)
    return np.array([float(exe(np.float32(s))) for s in range(1, steps + 1)])


def test_warmup_cosine_values():
    lr, warmup, total, min_lr = 0.3, 4, 12, 0.01
    got = schedule_values(optim.warmup_cosine(lr, warmup, total, min_lr), total + 3)
    want = [warmup_cosine_reference(s, lr, warmup, total, min_lr) for s in range(1, total + 4)]
    assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert got[warmup - 1] == pytest.approx(lr) and got[total - 1] == pytest.approx(min_lr)
    assert np.all(np.diff(got[:warmup]) > 0) and np.all(np.diff(got[warmup - 1:total]) < 0)


def test_step_decay_schedule_matches_torch_steplr(rng):
    model, twin = mlp_pair()
    batches = make_batches(rng, 7)
    got = run_dlc(model, F.cross_entropy,
                  optim.SGD(optim.step_decay(0.2, step_size=3, gamma=0.5)), batches)
    opt = torch.optim.SGD(twin.parameters(), lr=0.2)
    want = run_torch(twin, torch.nn.functional.cross_entropy, opt, batches,
                     scheduler=torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5))
    assert_same_trajectory(got, want, RTOL, ATOL)


def test_warmup_cosine_in_one_compiled_step_matches_torch(rng):
    lr, warmup, total, min_lr = 0.2, 3, 7, 0.02
    model, twin = mlp_pair()
    batches = make_batches(rng, 9)  # past `total`: the rate stays at min_lr
    schedule = optim.warmup_cosine(lr, warmup, total, min_lr)
    got = run_dlc(model, F.cross_entropy, optim.Adam(schedule), batches)
    # LambdaLR's lambda sees the number of steps already taken (0 on the first)
    want = torch_oracle(twin, torch.nn.functional.cross_entropy,
                        lambda p: torch.optim.Adam(p, lr=lr), batches,
                        make_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
                            opt, lambda k: warmup_cosine_reference(k + 1, lr, warmup, total,
                                                                   min_lr) / lr))
    assert_same_trajectory(got, want, RTOL, ATOL)


# -- state: BatchNorm statistics and dropout masks ------------------------------------------------
def test_batchnorm_running_stats_are_updated_state(rng):
    model, twin = mlp_pair(norm=True)
    batches = make_batches(rng, 3)
    got = run_dlc(model, F.cross_entropy, optim.SGD(0.1, momentum=0.9), batches)
    want = run_torch(twin, torch.nn.functional.cross_entropy,
                     torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9), batches)
    assert_same_trajectory(got, want, RTOL, ATOL)
    assert int(got.states[-1]["1.num_batches_tracked"]) == 3
    assert not np.allclose(got.states[0]["1.running_mean"], got.states[-1]["1.running_mean"])


def dropout_losses(model, batch, steps: int, seed: int = 0) -> list[float]:
    """Losses of `steps` steps on the same batch with lr 0: only the masks change."""
    x, y = batch
    step = dlc.train_step(model, F.cross_entropy, optim.SGD(0.0), spec_of(x), spec_of(y),
                          seed=seed)
    exe = dlc.compile(step)
    return [float(exe(x, y)) for _ in range(steps)]


def test_dropout_masks_change_with_the_step(rng):
    model = nn.Sequential(nn.Linear(IN, 64), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(64, CLASSES))
    batch = make_batches(rng, 1)[0]
    first = dropout_losses(model, batch, 4)
    assert len(set(first)) == 4, f"the same loss twice: the mask did not change {first}"
    assert dropout_losses(model, batch, 4) == first  # deterministic given the seed
    assert dropout_losses(model, batch, 4, seed=1) != first
    model.eval()
    x, y = batch
    plain = float(dlc.compile(lambda a, t: F.cross_entropy(model(a), t), spec_of(x),
                              spec_of(y), module=model)(x, y))
    assert plain not in first  # the training graph does apply dropout


# -- bad input -----------------------------------------------------------------------------------
def test_loss_that_is_not_a_scalar_is_refused(rng):
    model, _ = mlp_pair()
    with pytest.raises(dlc.DlcError, match=r"scalar.*f32\[8,4\].*\(8, 4\)"):
        dlc.train_step(model, lambda out, target: out * 2.0, optim.SGD(0.1),
                       dlc.TensorSpec((BATCH, IN)), dlc.TensorSpec((BATCH,), "int64"))


def test_shape_mismatched_targets_name_the_value_and_shape(rng):
    model, _ = mlp_pair()
    with pytest.raises(dlc.ShapeError, match=r"target: i64\[9\].*target shape \(9,\)"):
        dlc.train_step(model, F.cross_entropy, optim.SGD(0.1), dlc.TensorSpec((BATCH, IN)),
                       dlc.TensorSpec((BATCH + 1,), "int64"))
    with pytest.raises(dlc.ShapeError, match=r"target: f32\[8,5\]"):
        dlc.train_step(model, F.mse_loss, optim.SGD(0.1), dlc.TensorSpec((BATCH, IN)),
                       dlc.TensorSpec((BATCH, CLASSES + 1)))
    (x, y), = make_batches(rng, 1)
    exe = dlc.compile(dlc.train_step(model, F.cross_entropy, optim.SGD(0.1), spec_of(x),
                                     spec_of(y)))
    with pytest.raises(dlc.ArgumentError, match=r"'target'.*shape \(7,\)"):
        exe(x, y[:7])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on NaN/Inf
def test_nonfinite_loss_stops_with_the_step_number(rng):
    model, _ = mlp_pair()
    (x, y), (x2, y2) = make_batches(rng, 2)
    exe = dlc.compile(dlc.train_step(model, F.cross_entropy, optim.Adam(0.01), spec_of(x),
                                     spec_of(y)))
    exe(x, y)
    exe(x2, y2)
    before = {k: v.copy() for k, v in exe.state.items()}
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(NonFiniteLossError, match="training step 3: the loss is nan") as info:
        exe(bad, y)
    assert info.value.step == 3
    for k, v in exe.state.items():  # params, moments and the step counter untouched
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on NaN/Inf
def test_nonfinite_gradient_behind_a_finite_loss_stops_too(rng):
    model, _ = mlp_pair()
    (x, y), = make_batches(rng, 1)
    x[2, 0] = np.inf  # tanh saturates: a finite loss, but 0 * inf in the weight gradient
    forward = dlc.compile(lambda a, t: F.cross_entropy(model(a), t), spec_of(x), spec_of(y),
                          module=model)
    assert np.isfinite(forward(x, y))
    exe = dlc.compile(dlc.train_step(model, F.cross_entropy, optim.SGD(0.1), spec_of(x),
                                     spec_of(y)))
    with pytest.raises(NonFiniteLossError, match="training step 1"):
        exe(x, y)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(exe.state_dict()[k], v, err_msg=k)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on NaN/Inf
def test_nonfinite_loss_can_be_skipped(rng):
    batches = make_batches(rng, 4)
    bad = batches[1][0].copy()
    bad[0, 0] = np.inf
    model, _ = mlp_pair()
    spec = [spec_of(a) for a in batches[0]]
    step = dlc.train_step(model, F.cross_entropy, optim.Adam(0.01), *spec)
    skipping = dlc.compile(step, on_nonfinite="skip")
    clean = dlc.compile(step)
    got = [float(skipping(*batches[0])), float(skipping(bad, batches[1][1]))]
    got += [float(skipping(*b)) for b in batches[2:]]
    assert skipping.skipped_steps == [2]
    assert not np.isfinite(got[1])
    # a skipped step changes nothing: the run equals one that never saw the bad batch
    want = [float(clean(*b)) for b in batches[:1] + batches[2:]]
    assert got[:1] + got[2:] == want
    for k, v in clean.state_dict().items():
        np.testing.assert_array_equal(skipping.state_dict()[k], v, err_msg=k)


@pytest.mark.parametrize("make, what", [
    (lambda: optim.SGD(0.1, nesterov=True), "nesterov"),
    (lambda: optim.SGD(-0.1), "lr"),
    (lambda: optim.Adam(betas=(1.0, 0.999)), "betas"),
    (lambda: optim.AdamW(weight_decay=-1), "weight_decay"),
    (lambda: optim.SGD(0.1, clip_grad_norm=0), "clip_grad_norm"),
    (lambda: optim.warmup_cosine(0.1, warmup=10, total=5), "warmup"),
])
def test_bad_optimizer_arguments_are_refused(make, what):
    with pytest.raises(dlc.DlcError, match=what):
        make()


def test_step_needs_a_target_spec_and_parameters():
    model, _ = mlp_pair()
    with pytest.raises(dlc.DlcError, match="target"):
        dlc.train_step(model, F.cross_entropy, optim.SGD(0.1), dlc.TensorSpec((BATCH, IN)))
    with pytest.raises(dlc.DlcError, match="no parameters"):
        dlc.train_step(nn.ReLU(), F.mse_loss, optim.SGD(0.1), dlc.TensorSpec((BATCH, IN)),
                       dlc.TensorSpec((BATCH, IN)))


def test_executable_load_state_dict_checks_names_and_shapes(rng):
    model, _ = mlp_pair()
    (x, y), = make_batches(rng, 1)
    exe = dlc.compile(dlc.train_step(model, F.cross_entropy, optim.SGD(0.1), spec_of(x),
                                     spec_of(y)))
    trained = {k: v + 1.0 for k, v in model.state_dict().items()}
    exe.load_state_dict(trained)
    for k, v in exe.state_dict().items():
        np.testing.assert_array_equal(v, trained[k], err_msg=k)
    with pytest.raises(dlc.ArgumentError, match="no param/state input named extra"):
        exe.load_state_dict({"extra": np.zeros(3, np.float32)})
    exe.load_state_dict({"extra": np.zeros(3, np.float32)}, strict=False)
    with pytest.raises(dlc.ArgumentError, match=r"'0.bias'.*shape \(3,\)"):
        exe.load_state_dict({"0.bias": np.zeros(3, np.float32)})
