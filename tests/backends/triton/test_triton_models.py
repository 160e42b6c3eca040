"""Whole models on the triton backend (interpreter), against the eager backend.

Every example model (examples/*.py main_model) through dlc.compile's O2 pipeline (fusion
and a memory plan), training steps of a small MLP and a small CNN over several steps, and
the numpy-in/numpy-out and torch-in/torch-out calling conventions.

Model outputs are compared with rtol 1e-5 plus an absolute tolerance of 1e-5 of the
output's largest magnitude: a model's outputs are long float32 sums (784-term dot products,
convolutions) added in a different order by each backend, an error that scales with the
summed terms, i.e. with the output's scale, not with each element (an output near zero has
no relative accuracy in either backend).
"""
import numpy as np
import pytest
import torch

import dlc
from backends.eager import run_graph
from tests.backends.model_checks import assert_model_close, assert_nan_step_skipped, user_args
from tests.passes.fusion_models import (cnn_train_step, example_files, example_graph,
                                        mlp_train_step)

EXAMPLES = example_files()




@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_model_matches_eager(path, rng):
    graph = example_graph(path)
    args = user_args(graph, rng)
    want = dlc.compile(graph)(*args)
    exe = dlc.compile(graph, backend="triton")
    assert exe.launcher.layout.planned_bytes > 0 or "memory_plan" not in exe.graph.meta
    assert_model_close(exe(*args), want)


# eps = 1e-3 keeps Adam's update well-conditioned (see tests/backends/test_llvm_models.py)
@pytest.mark.parametrize("make,optimizer", [
    (mlp_train_step, dlc.optim.SGD(lr=0.1, momentum=0.9)),
    (mlp_train_step, dlc.optim.Adam(lr=1e-2, eps=1e-3)),
    (cnn_train_step, dlc.optim.AdamW(lr=1e-2, weight_decay=0.1, eps=1e-3)),
    # the schedule's clamp meets 0-d constants in its fused group (max/min with a scalar)
    (mlp_train_step, dlc.optim.AdamW(dlc.optim.warmup_cosine(1e-2, warmup=1, total=6),
                                     weight_decay=0.1, eps=1e-3)),
], ids=["mlp-sgd-momentum", "mlp-adam", "cnn-adamw", "mlp-adamw-warmup-cosine"])
def test_training_steps_match_eager(make, optimizer, rng):
    step = make(optimizer)
    eager = dlc.compile(step)
    triton = dlc.compile(step, backend="triton")
    for _ in range(3):
        batch = user_args(step, rng)
        loss_e, loss_t = eager(*batch), triton(*batch)
        np.testing.assert_allclose(loss_t, loss_e, rtol=1e-5)
    want, got = eager.state_dict(), triton.state_dict()
    assert want.keys() == got.keys() and want
    for k in want:  # three steps of updates: the same 1e-5 of each tensor's scale
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5,
                                   atol=1e-5 * float(np.abs(want[k]).max()), err_msg=k)


def test_training_step_skips_a_nonfinite_loss(rng):
    exe = dlc.compile(mlp_train_step(), backend="triton", on_nonfinite="skip")
    # the plan's in-place updates scheduled after the loss write into the parameters
    assert exe.launcher.inplace and exe.launcher.guard is not None
    written = {exe.graph.inputs[k].name for k in exe.launcher.inplace.values()}
    same = {n: exe.device_state[n] for n in written}
    x, y = user_args(exe.graph, rng)
    exe(x, y)
    assert all(exe.device_state[n] is t for n, t in same.items())
    assert_nan_step_skipped(exe, x, y, 2)


def _mlp_graph():
    return example_graph(next(p for p in EXAMPLES if p.stem == "mlp"))


def test_numpy_in_numpy_out_and_torch_in_torch_out(rng):
    graph = _mlp_graph()
    (x,) = user_args(graph, rng)
    exe = dlc.compile(graph, backend="triton")
    out_np = exe(x)
    assert isinstance(out_np, np.ndarray)
    out_t = exe(torch.from_numpy(x))
    assert isinstance(out_t, torch.Tensor) and out_t.device.type == "cpu"
    np.testing.assert_array_equal(out_t.numpy(), out_np)
    # non-contiguous inputs are fine on both paths
    xt = torch.from_numpy(np.asfortranarray(x))
    np.testing.assert_array_equal(exe(xt).numpy(), out_np)


def test_unfused_graph_without_memory_plan(rng):
    graph = _mlp_graph()
    (x,) = user_args(graph, rng)
    exe = dlc.compile(graph, backend="triton", opt_level="O0")
    assert "memory_plan" not in exe.graph.meta and exe.launcher.layout.own_bytes > 0
    assert_model_close(exe(x), run_graph(graph, [x] + [v.data for v in graph.inputs[1:]])[0])


def test_kernels_are_named_after_fused_groups():
    exe = dlc.compile(_mlp_graph(), backend="triton")
    fused = [n.attrs["name"] for n in exe.graph.nodes if n.body is not None]
    names = [k.name for k in exe.program.kernels]
    assert fused and set(fused) <= set(names)


def test_load_state_dict_reaches_the_device(rng):
    step = mlp_train_step()
    exe = dlc.compile(step, backend="triton")
    batch = user_args(step, rng)
    trained = exe.state_dict()
    fresh = dlc.compile(step, backend="triton")
    fresh.load_state_dict(trained)
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v, trained[k])
    exe(*batch)
    fresh.load_state_dict(exe.state_dict())
    np.testing.assert_array_equal(fresh(*batch), exe(*batch))
