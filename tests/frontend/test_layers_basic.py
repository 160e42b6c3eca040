"""The basic layers of dlc.nn vs torch.nn: state_dict keys and shapes, outputs after loading
torch's weights (eval and, for BatchNorm, training mode with the running statistics), dropout,
default initializations, containers, and a small CNN end to end.

Layer cases are written once as `make(nn)` and built with nn = dlc.nn and nn = torch.nn, so
constructor names, signatures and defaults are checked by the same call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch

import dlc
import dlc.nn as dnn
import torch.nn as tnn
from dlc.nn import init
from tests.frontend.test_functional import check
from tests.ops.harness import assert_allclose, randint, randn


@dataclass
class LCase:
    id: str
    make: Callable                 # make(nn) -> layer
    inputs: list                   # generators (rng, dtype) -> array
    randomize: bool = False        # give torch's default-constant entries random values


LAYERS: list[LCase] = []


def layer(id: str, make, *inputs, randomize: bool = False) -> None:
    LAYERS.append(LCase(id, make, list(inputs), randomize))


X4 = randn(2, 4, 6, 5)
layer("ReLU", lambda nn: nn.ReLU(), X4)
layer("ReLU6", lambda nn: nn.ReLU6(), randn(3, 5, scale=5.0))
layer("LeakyReLU", lambda nn: nn.LeakyReLU(0.1), X4)
layer("GELU", lambda nn: nn.GELU(), X4)
layer("GELU-tanh", lambda nn: nn.GELU(approximate="tanh"), X4)
layer("SiLU", lambda nn: nn.SiLU(), X4)
layer("Sigmoid", lambda nn: nn.Sigmoid(), X4)
layer("Tanh", lambda nn: nn.Tanh(), X4)
layer("Softplus", lambda nn: nn.Softplus(beta=2.0, threshold=3.0), X4)
layer("ELU", lambda nn: nn.ELU(alpha=0.5), X4)
layer("Hardtanh", lambda nn: nn.Hardtanh(-0.3, 0.6), X4)
layer("LogSigmoid", lambda nn: nn.LogSigmoid(), X4)
layer("Softmax", lambda nn: nn.Softmax(dim=1), X4)
layer("LogSoftmax", lambda nn: nn.LogSoftmax(dim=-1), X4)
layer("Identity", lambda nn: nn.Identity(3, unused=True), X4)
layer("Flatten", lambda nn: nn.Flatten(), X4)
layer("Flatten-0-1", lambda nn: nn.Flatten(0, 1), X4)
layer("Unflatten", lambda nn: nn.Unflatten(1, (2, 2)), X4)
layer("Sequential", lambda nn: nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)),
      randn(4, 5))
layer("Linear", lambda nn: nn.Linear(6, 4), randn(3, 2, 6))
layer("Linear-nobias", lambda nn: nn.Linear(6, 4, bias=False), randn(5, 6))
layer("Bilinear", lambda nn: nn.Bilinear(3, 4, 2), randn(5, 3), randn(5, 4))
layer("Conv1d", lambda nn: nn.Conv1d(3, 4, 3, stride=2, padding=1), randn(2, 3, 9))
layer("Conv1d-same", lambda nn: nn.Conv1d(3, 4, 4, padding="same", bias=False),
      randn(2, 3, 9))
layer("Conv2d", lambda nn: nn.Conv2d(3, 5, 3), randn(2, 3, 7, 6))
layer("Conv2d-groups", lambda nn: nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=1, groups=2),
      randn(2, 4, 6, 7))
layer("Conv2d-same-dil", lambda nn: nn.Conv2d(2, 3, 3, padding="same", dilation=2),
      randn(1, 2, 7, 6))
layer("ConvTranspose1d", lambda nn: nn.ConvTranspose1d(3, 4, 3, stride=2, output_padding=1),
      randn(2, 3, 5))
layer("ConvTranspose2d",
      lambda nn: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2, dilation=1),
      randn(2, 4, 4, 5))
layer("MaxPool1d", lambda nn: nn.MaxPool1d(3, 2, 1), randn(2, 3, 10))
layer("MaxPool2d", lambda nn: nn.MaxPool2d(2), X4)
layer("MaxPool2d-opts", lambda nn: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), X4)
layer("AvgPool1d", lambda nn: nn.AvgPool1d(3), randn(2, 3, 10))
layer("AvgPool2d", lambda nn: nn.AvgPool2d(2, padding=1, count_include_pad=False), X4)
layer("AdaptiveAvgPool1d", lambda nn: nn.AdaptiveAvgPool1d(4), randn(2, 3, 10))
layer("AdaptiveAvgPool2d", lambda nn: nn.AdaptiveAvgPool2d((4, 3)), X4)
layer("Upsample", lambda nn: nn.Upsample(scale_factor=2), X4)
layer("Upsample-size", lambda nn: nn.Upsample(size=(8, 7)), X4)
layer("BatchNorm1d", lambda nn: nn.BatchNorm1d(4), randn(5, 4), randomize=True)
layer("BatchNorm1d-3d", lambda nn: nn.BatchNorm1d(4, eps=1e-3), randn(2, 4, 5),
      randomize=True)
layer("BatchNorm2d", lambda nn: nn.BatchNorm2d(4), X4, randomize=True)
layer("BatchNorm2d-noaffine", lambda nn: nn.BatchNorm2d(4, affine=False), X4, randomize=True)
layer("LayerNorm", lambda nn: nn.LayerNorm((6, 5)), X4, randomize=True)
layer("LayerNorm-noaffine", lambda nn: nn.LayerNorm(5, elementwise_affine=False), X4)
layer("LayerNorm-nobias", lambda nn: nn.LayerNorm(5, bias=False), X4, randomize=True)
layer("GroupNorm", lambda nn: nn.GroupNorm(2, 4), X4, randomize=True)
layer("GroupNorm-noaffine", lambda nn: nn.GroupNorm(4, 4, eps=1e-3, affine=False), X4)
layer("RMSNorm", lambda nn: nn.RMSNorm(5), X4, randomize=True)
layer("RMSNorm-2d", lambda nn: nn.RMSNorm([6, 5], eps=1e-3), X4, randomize=True)
layer("RMSNorm-noaffine", lambda nn: nn.RMSNorm(5, elementwise_affine=False), X4)
layer("Dropout-eval", lambda nn: nn.Dropout(0.3), X4)
layer("Embedding", lambda nn: nn.Embedding(10, 4), randint(0, 10, 3, 5))
layer("Embedding-pad", lambda nn: nn.Embedding(10, 4, padding_idx=-1), randint(5, 10, 3, 5))


# -- helpers -----------------------------------------------------------------------------------
def torch_state(m: tnn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}


def randomize_(m: tnn.Module, rng: np.random.Generator) -> None:
    """Random values for torch's constant-initialized entries (running_var stays positive)."""
    with torch.no_grad():
        for name, t in m.state_dict().items():
            if not t.is_floating_point():
                continue
            values = rng.uniform(0.5, 2.0, t.shape) if name.endswith("running_var") else \
                rng.standard_normal(t.shape)
            t.copy_(torch.from_numpy(values.astype(np.float32)))


def check_keys(d: dnn.Module, t: tnn.Module) -> None:
    """Same keys (in any order), shapes and dtypes as torch's state_dict."""
    ds, ts = d.state_dict(), torch_state(t)
    assert set(ds) == set(ts)
    for k in ts:
        assert ds[k].shape == ts[k].shape, k
        assert ds[k].dtype == ts[k].dtype, k


def pair(make, rng, randomize: bool = False):
    """The dlc and torch layers of one case, dlc holding torch's weights."""
    d, t = make(dnn), make(tnn)
    check_keys(d, t)
    if randomize:
        randomize_(t, rng)
    d.load_state_dict(torch_state(t))
    return d, t


def run_torch(t: tnn.Module, arrays):
    with torch.no_grad():
        return t(*[torch.from_numpy(a.copy()) for a in arrays])


def compile_for(d: dnn.Module, arrays):
    return dlc.compile(d, *[dlc.TensorSpec(a.shape, a.dtype.name) for a in arrays])


# -- every layer in eval mode --------------------------------------------------------------------
@pytest.mark.parametrize("c", LAYERS, ids=[c.id for c in LAYERS])
def test_layer_matches_torch_in_eval(c: LCase, rng):
    d, t = pair(c.make, rng, c.randomize)
    d.eval(), t.eval()
    arrays = [g(rng, "float32") for g in c.inputs]
    check(compile_for(d, arrays)(*arrays), run_torch(t, arrays))


# -- BatchNorm in training mode ------------------------------------------------------------------
BN_TRAIN = [
    ("BatchNorm1d", lambda nn: nn.BatchNorm1d(3), (6, 3)),
    ("BatchNorm1d-3d", lambda nn: nn.BatchNorm1d(3, momentum=0.3), (4, 3, 5)),
    ("BatchNorm2d", lambda nn: nn.BatchNorm2d(3), (2, 3, 4, 5)),
    ("BatchNorm2d-cumulative", lambda nn: nn.BatchNorm2d(3, momentum=None), (2, 3, 4, 5)),
    ("BatchNorm2d-noaffine", lambda nn: nn.BatchNorm2d(3, affine=False), (2, 3, 4, 5)),
]


@pytest.mark.parametrize("make,shape", [(m, s) for _, m, s in BN_TRAIN],
                         ids=[i for i, _, _ in BN_TRAIN])
def test_batchnorm_training_updates_running_stats_like_torch(make, shape, rng):
    d, t = pair(make, rng, randomize=True)
    d.train(), t.train()
    exe = compile_for(d, [np.zeros(shape, np.float32)])
    for _ in range(2):  # the Executable carries the running stats from call to call
        x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
        check(exe(x), run_torch(t, [x]))
        state = exe.state_dict()
        for key, expected in torch_state(t).items():
            check(state[key], expected)


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval(rng):
    d, t = pair(lambda nn: nn.BatchNorm2d(3, track_running_stats=False), rng)
    assert not d.state_dict() or set(d.state_dict()) == {"weight", "bias"}
    d.eval(), t.eval()
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    check(compile_for(d, [x])(x), run_torch(t, [x]))


def test_batchnorm_eval_graph_has_no_state_outputs():
    g = dlc.trace(dnn.BatchNorm2d(3).eval(), dlc.TensorSpec((2, 3, 4, 4)))
    assert not g.aliases and len(g.outputs) == 1


# -- Dropout -------------------------------------------------------------------------------------
def test_dropout_eval_is_identity(rng):
    m = dnn.Dropout(0.5).eval()
    g = dlc.trace(m, dlc.TensorSpec((4, 5)))
    assert [v.name for v in g.inputs] == ["input"]  # no seed input: nothing random
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(dlc.compile(g)(x), x)


def test_dropout_train_mask_depends_only_on_the_seed(rng):
    m = dnn.Dropout(0.4)
    exe = dlc.compile(m, dlc.TensorSpec((50, 40)))
    x = rng.uniform(1.0, 2.0, (50, 40)).astype(np.float32)
    x2 = rng.uniform(1.0, 2.0, (50, 40)).astype(np.float32)
    seed = np.int64(rng.integers(1 << 40))
    y = exe(x, seed)
    keep = y != 0
    np.testing.assert_array_equal(exe(x2, seed) != 0, keep)
    np.testing.assert_array_equal(exe(x, seed), y)
    assert_allclose(y[keep], x[keep] / 0.6, rtol=1e-6)
    assert 0.5 < keep.mean() < 0.7  # 2000 draws of p=0.6: far beyond 5 sigma otherwise
    assert (exe(x, seed + 1) != 0).tolist() != keep.tolist()


# -- initialization ------------------------------------------------------------------------------
def _bound_check(w: np.ndarray, bound: float) -> None:
    assert w.dtype == np.float32
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.9 * bound  # many draws reach near the bound
    # U(-b, b) has std b / sqrt(3); the sample std is within a few % for these sizes
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.05


@pytest.mark.parametrize("make,fan_in", [
    (lambda nn: nn.Linear(96, 64), 96),
    (lambda nn: nn.Conv2d(8, 32, 3, groups=2), 4 * 9),
    (lambda nn: nn.Conv1d(6, 40, 5), 30),
    (lambda nn: nn.ConvTranspose2d(32, 12, 3, groups=2), 6 * 9),  # fan_in from dim 1
])
def test_linear_and_conv_init_bounds_follow_torch(make, fan_in):
    d = make(dnn)
    bound = 1.0 / math.sqrt(fan_in)
    _bound_check(d._parameters["weight"], bound)
    b = d._parameters["bias"]
    assert b.dtype == np.float32 and np.abs(b).max() <= bound
    t = make(tnn)  # the same formula bounds torch's own init
    assert t.weight.detach().abs().max().item() <= bound * (1 + 1e-6)
    assert t.bias.detach().abs().max().item() <= bound * (1 + 1e-6)


def test_bilinear_and_embedding_init():
    m = dnn.Bilinear(50, 20, 30)
    _bound_check(m._parameters["weight"], 1 / math.sqrt(50))
    e = dnn.Embedding(200, 64, padding_idx=3)
    w = e._parameters["weight"]
    assert np.all(w[3] == 0) and w.dtype == np.float32
    assert abs(w.std() - 1) < 0.05 and abs(w.mean()) < 0.05


@pytest.mark.parametrize("make", [
    lambda nn: nn.BatchNorm2d(5), lambda nn: nn.LayerNorm((3, 4)), lambda nn: nn.GroupNorm(2, 6),
    lambda nn: nn.RMSNorm(7), lambda nn: nn.BatchNorm1d(4, affine=False),
])
def test_norm_layers_start_like_torch(make):
    d, t = make(dnn), make(tnn)
    ds = d.state_dict()
    for k, v in torch_state(t).items():
        check(ds[k], v)


@pytest.mark.parametrize("fill,std_of", [
    (lambda a, r: init.xavier_uniform_(a, rng=r), lambda fi, fo: math.sqrt(2 / (fi + fo))),
    (lambda a, r: init.xavier_normal_(a, gain=2.0, rng=r),
     lambda fi, fo: 2 * math.sqrt(2 / (fi + fo))),
    (lambda a, r: init.kaiming_uniform_(a, rng=r), lambda fi, fo: math.sqrt(2 / 1.0001) / fi ** .5),
    (lambda a, r: init.kaiming_normal_(a, mode="fan_out", nonlinearity="relu", rng=r),
     lambda fi, fo: math.sqrt(2) / math.sqrt(fo)),
    (lambda a, r: init.kaiming_normal_(a, a=0.2, nonlinearity="leaky_relu", rng=r),
     lambda fi, fo: math.sqrt(2 / 1.04) / math.sqrt(fi)),
    (lambda a, r: init.normal_(a, 0.5, 0.1, rng=r), lambda fi, fo: 0.1),
    (lambda a, r: init.uniform_(a, -2, 2, rng=r), lambda fi, fo: 4 / math.sqrt(12)),
])
def test_initializer_std_matches_formula(fill, std_of, rng):
    a = np.zeros((120, 40, 3, 3), np.float32)  # fan_in 360, fan_out 1080
    out = fill(a, rng)
    assert out is a and a.dtype == np.float32
    # 43200 draws: the sample std is within 2% of the true one
    assert abs(a.std() / std_of(360, 1080) - 1) < 0.02


def test_gain_and_fans_equal_torch():
    for name in ("linear", "conv2d", "sigmoid", "tanh", "relu", "selu", "conv_transpose1d"):
        assert init.calculate_gain(name) == pytest.approx(tnn.init.calculate_gain(name))
    assert init.calculate_gain("leaky_relu", 0.3) == \
        pytest.approx(tnn.init.calculate_gain("leaky_relu", 0.3))
    for shape in [(3, 4), (5, 6, 7), (8, 2, 3, 3)]:
        assert init._calculate_fan_in_and_fan_out(np.zeros(shape)) == \
            tnn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))


def test_init_seeding_is_reproducible():
    init.manual_seed(11)
    a = dnn.Linear(5, 3).state_dict()
    init.manual_seed(11)
    b = dnn.Linear(5, 3).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    x, y = np.zeros((4, 4)), np.zeros((4, 4))
    init.normal_(x, rng=np.random.default_rng(5))
    init.normal_(y, generator=np.random.default_rng(5))
    np.testing.assert_array_equal(x, y)
    init.constant_(x, 0.25), init.ones_(y)
    assert np.all(x == 0.25) and np.all(y == 1)


# -- containers ----------------------------------------------------------------------------------
def make_net(nn):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
            self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4, bias=False)])
            self.heads = nn.ModuleDict({"cls": nn.Linear(4, 2), "reg": nn.Linear(4, 1)})

        def forward(self, x):
            h = self.features(x).mean((2, 3))
            for b in self.blocks:
                h = b(h)
            return self.heads["cls"](h), self.heads["reg"](h)
    return Net()


def test_container_keys_follow_torch_in_order():
    d, t = make_net(dnn), make_net(tnn)
    assert list(d.state_dict()) == list(t.state_dict())
    seq_d = dnn.Sequential(dnn.Linear(2, 3), dnn.Tanh(), dnn.Linear(3, 1))
    seq_t = tnn.Sequential(tnn.Linear(2, 3), tnn.Tanh(), tnn.Linear(3, 1))
    assert list(seq_d.state_dict()) == list(seq_t.state_dict()) == \
        ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(seq_d) == 3 and isinstance(seq_d[1], dnn.Tanh) and seq_d[-1] is seq_d[2]
    assert [type(m).__name__ for m in seq_d] == ["Linear", "Tanh", "Linear"]
    assert list(seq_d[1:].state_dict()) == list(seq_t[1:].state_dict()) == ["2.weight", "2.bias"]
    assert len(d.blocks) == 2 and "cls" in d.heads and list(d.heads.keys()) == ["cls", "reg"]


def test_nested_containers_run_like_torch(rng):
    d, t = make_net(dnn), make_net(tnn)
    randomize_(t.features[1], rng)  # the BatchNorm; the other layers keep torch's init
    d.load_state_dict(torch_state(t))
    d.eval(), t.eval()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    got = compile_for(d, [x])(x)
    for g, e in zip(got, run_torch(t, [x])):
        check(g, e)


def test_conv_transpose_output_size_matches_torch(rng):
    d, t = pair(lambda nn: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1), rng)
    x = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)

    def fwd(x):
        return d(x, output_size=(8, 10))

    got = dlc.compile(dlc.trace(fwd, dlc.TensorSpec(x.shape), module=d))(x)
    with torch.no_grad():
        check(got, t(torch.from_numpy(x), output_size=[8, 10]))


# -- a small CNN end to end ----------------------------------------------------------------------
def make_cnn(nn):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_small_cnn_matches_torch(mode, rng):
    d, t = make_cnn(dnn), make_cnn(tnn)
    randomize_(t[1], rng)  # the BatchNorm; conv and linear keep torch's init
    d.load_state_dict(torch_state(t))
    d.train(mode == "train"), t.train(mode == "train")
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    exe = compile_for(d, [x])
    check(exe(x), run_torch(t, [x]))
    if mode == "train":
        state = exe.state_dict()
        for key in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
            check(state[key], torch_state(t)[key])
