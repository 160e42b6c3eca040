"""The standard benchmark suite of `dlc bench --suite standard`, one model factory per
workload, with the same computation written for each peer (numpy by hand, torch eager,
torch.compile, jax.jit, ONNX Runtime from an ONNX export of the torch version).

Each factory is also a model-file entry for the other commands:

    dlc dump examples/suite.py:softmax_rows
    dlc bench examples/suite.py:gemm --backends eager,llvm --peers numpy,torch

Peers receive the dlc model itself (for its weights: dlc.nn layers use PyTorch's names and
layouts, so a torch module loads `model.state_dict()` as is) and return a function of the
same numpy arrays the dlc Executable takes.
"""
from __future__ import annotations

import math

import numpy as np

import dlc
import dlc.nn.functional as F
from dlc import nn
from dlc.bench.workload import Workload

F32 = "float32"


# -- ew_chain: gelu(x*a+b) * sigmoid(x) ---------------------------------------------------------
def ew_chain(n: int = 16 * 2**20):
    """A pointwise chain over three arrays: the bandwidth-bound case fusion exists for.
    GELU in its tanh form, so that every peer computes the same function."""
    def chain(x, a, b):
        return F.gelu(x * a + b, approximate="tanh") * F.sigmoid(x)
    return chain, [dlc.TensorSpec((n,), F32, name=k) for k in ("x", "a", "b")]


def _np_gelu_tanh(xp, y):
    return 0.5 * y * (1.0 + xp.tanh(math.sqrt(2.0 / math.pi) * (y + 0.044715 * y * y * y)))


def _ew_chain_xp(xp):
    def make(model, size):
        def run(x, a, b):
            y = x * a + b
            return _np_gelu_tanh(xp, y) / (1.0 + xp.exp(-x))
        return run
    return make


def _ew_chain_torch(model, size):
    import torch

    def run(x, a, b):
        y = torch.nn.functional.gelu(x * a + b, approximate="tanh")
        return y * torch.sigmoid(x)
    return run


# -- row softmax, layernorm ---------------------------------------------------------------------
def softmax_rows(rows: int = 4096, cols: int = 1024):
    """Softmax over the last axis of a (rows, cols) matrix."""
    return (lambda x: F.softmax(x, dim=-1)), [dlc.TensorSpec((rows, cols), F32, name="x")]


def _softmax_xp(xp):
    def make(model, size):
        def run(x):
            e = xp.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        return run
    return make


def _softmax_torch(model, size):
    import torch
    return lambda x: torch.softmax(x, dim=-1)


def layernorm(rows: int = 8192, cols: int = 1024):
    """LayerNorm over the last axis, with a weight and a bias."""
    return nn.LayerNorm(cols), [dlc.TensorSpec((rows, cols), F32, name="x")]


def _layernorm_xp(xp):
    def make(model, size):
        w, b = _state(model)["weight"], _state(model)["bias"]

        def run(x):
            mu = x.mean(axis=-1, keepdims=True)
            var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
            return (x - mu) / xp.sqrt(var + 1e-5) * w + b
        return run
    return make


def _layernorm_torch(model, size):
    import torch
    m = torch.nn.LayerNorm(size["cols"])
    _load(m, model)
    return m


# -- gemm -----------------------------------------------------------------------------------------
def gemm(n: int = 1024):
    """C = A @ B with square float32 matrices."""
    return (lambda a, b: a @ b), [dlc.TensorSpec((n, n), F32, name=k) for k in ("a", "b")]


def _gemm_xp(xp):
    return lambda model, size: (lambda a, b: a @ b)


def _gemm_torch(model, size):
    import torch
    return torch.matmul


# -- MLP 784-512-512-10 -------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 512), nn.Linear(512, 512), nn.Linear(512, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def mlp(batch: int = 256):
    """MLP 784-512-512-10 inference."""
    return MLP(), [dlc.TensorSpec((batch, 784), F32, name="images")]


def mlp_b1():
    return mlp(1)


def _mlp_xp(xp):
    def make(model, size):
        p = _state(model)

        def run(x):
            h = xp.maximum(x @ p["fc1.weight"].T + p["fc1.bias"], 0)
            h = xp.maximum(h @ p["fc2.weight"].T + p["fc2.bias"], 0)
            return h @ p["fc3.weight"].T + p["fc3.bias"]
        return run
    return make


def _torch_mlp():
    import torch

    class TorchMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(784, 512)
            self.fc2 = torch.nn.Linear(512, 512)
            self.fc3 = torch.nn.Linear(512, 10)

        def forward(self, x):
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))
    return TorchMLP()


def _mlp_torch(model, size):
    m = _torch_mlp()
    _load(m, model)
    return m


# the Adam hyperparameters of the training workload, shared by dlc and every peer
ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}


def mlp_train_adam(batch: int = 64):
    """One training step of the MLP with cross-entropy and Adam: forward, backward and the
    update, as one compiled graph."""
    model = MLP()
    step = dlc.train_step(model, F.cross_entropy, dlc.optim.Adam(**ADAM),
                          dlc.TensorSpec((batch, 784), F32, name="images"),
                          dlc.TensorSpec((batch,), "int64", name="labels"))
    return step, []


def _mlp_train_torch(model, size):
    import torch
    m = _torch_mlp()
    _load(m, model, training=True)
    opt = torch.optim.Adam(m.parameters(), **ADAM)

    def run(x, y):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss.detach()
    return run


def _adam(xp, p, g, m, v, step):
    """torch.optim.Adam's update of one parameter at step `step` (1 on the first):
    p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    b1, b2 = ADAM["betas"]
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * g * g
    bias1, bias2 = 1.0 - b1 ** step, 1.0 - b2 ** step
    p = p - (ADAM["lr"] / bias1) * m / (xp.sqrt(v) / xp.sqrt(bias2) + ADAM["eps"])
    return p, m, v


class _AdamState:
    """Parameters and moments of a hand-written training peer, updated by each step."""

    def __init__(self, params: dict):
        self.params = params
        self.m = {k: p * 0 for k, p in params.items()}
        self.v = {k: p * 0 for k, p in params.items()}
        self.step = 0


def _mlp_train_numpy(model, size):
    """The MLP's backward by hand: cross-entropy's gradient is (softmax - onehot) / batch,
    each Linear passes it back through its weight, each ReLU masks it."""
    s = _AdamState({k: np.array(v, dtype=np.float32) for k, v in _state(model).items()})

    def run(x, y):
        p, n = s.params, len(y)
        a1 = x @ p["fc1.weight"].T + p["fc1.bias"]
        h1 = np.maximum(a1, 0)
        a2 = h1 @ p["fc2.weight"].T + p["fc2.bias"]
        h2 = np.maximum(a2, 0)
        z = h2 @ p["fc3.weight"].T + p["fc3.bias"]
        shifted = z - z.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        loss = (np.log(total[:, 0]) - shifted[np.arange(n), y]).mean(dtype=np.float32)
        dz = e / total
        dz[np.arange(n), y] -= 1.0
        dz /= n
        dh2 = (dz @ p["fc3.weight"]) * (a2 > 0)
        dh1 = (dh2 @ p["fc2.weight"]) * (a1 > 0)
        grads = {"fc3.weight": dz.T @ h2, "fc3.bias": dz.sum(0),
                 "fc2.weight": dh2.T @ h1, "fc2.bias": dh2.sum(0),
                 "fc1.weight": dh1.T @ x, "fc1.bias": dh1.sum(0)}
        s.step += 1
        for k, g in grads.items():
            p[k], s.m[k], s.v[k] = _adam(np, p[k], g, s.m[k], s.v[k], s.step)
        return np.asarray(loss, dtype=np.float32)
    return run


def _mlp_train_jax(model, size):
    """jax.grad of the MLP's cross-entropy, then the same Adam step, jitted as one function."""
    import jax
    import jax.numpy as jnp

    def loss_fn(p, x, y):
        h = jnp.maximum(x @ p["fc1.weight"].T + p["fc1.bias"], 0)
        h = jnp.maximum(h @ p["fc2.weight"].T + p["fc2.bias"], 0)
        logp = jax.nn.log_softmax(h @ p["fc3.weight"].T + p["fc3.bias"], axis=1)
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    @jax.jit
    def step(p, m, v, t, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        new = {k: _adam(jnp, p[k], g[k], m[k], v[k], t) for k in p}
        return (loss, {k: u[0] for k, u in new.items()}, {k: u[1] for k, u in new.items()},
                {k: u[2] for k, u in new.items()})

    s = _AdamState({k: jnp.asarray(np.array(v, dtype=np.float32))
                    for k, v in _state(model).items()})

    def run(x, y):
        s.step += 1
        loss, s.params, s.m, s.v = step(s.params, s.m, s.v, jnp.float32(s.step), x, y)
        return loss
    return run


# -- LeNet-style CNN ------------------------------------------------------------------------------
class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def lenet(batch: int = 64):
    """LeNet-style CNN inference on 1x28x28 images."""
    return LeNet(), [dlc.TensorSpec((batch, 1, 28, 28), F32, name="images")]


def _lenet_torch(model, size):
    import torch
    import torch.nn.functional as TF

    class TorchLeNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 6, 5, padding=2)
            self.conv2 = torch.nn.Conv2d(6, 16, 5)
            self.fc1 = torch.nn.Linear(400, 120)
            self.fc2 = torch.nn.Linear(120, 84)
            self.fc3 = torch.nn.Linear(84, 10)

        def forward(self, x):
            x = TF.max_pool2d(torch.relu(self.conv1(x)), 2)
            x = TF.max_pool2d(torch.relu(self.conv2(x)), 2)
            x = x.flatten(1)
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))
    m = TorchLeNet()
    _load(m, model)
    return m


def _lenet_xp(xp, conv2d):
    """LeNet with `conv2d(x, weight, bias, padding)` and a 2x2 max pool by reshape."""
    def make(model, size):
        p = _state(model)

        def pool(x):
            n, c, h, w = x.shape
            return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

        def run(x):
            x = pool(xp.maximum(conv2d(x, p["conv1.weight"], p["conv1.bias"], 2), 0))
            x = pool(xp.maximum(conv2d(x, p["conv2.weight"], p["conv2.bias"], 0), 0))
            x = x.reshape(x.shape[0], -1)
            x = xp.maximum(x @ p["fc1.weight"].T + p["fc1.bias"], 0)
            x = xp.maximum(x @ p["fc2.weight"].T + p["fc2.bias"], 0)
            return x @ p["fc3.weight"].T + p["fc3.bias"]
        return run
    return make


def _conv2d_im2col(x, w, b, pad: int):
    """Stride-1 convolution as one matmul: every kh*kw*c window becomes a row of `cols`."""
    o, c, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    n, _, ho, wo = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    y = cols @ w.reshape(o, c * kh * kw).T + b
    return y.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)


def _conv2d_lax(x, w, b, pad: int):
    from jax import lax
    y = lax.conv_general_dilated(x, w, (1, 1), [(pad, pad), (pad, pad)],
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + b[:, None, None]


def _lenet_numpy(model, size):
    return _lenet_xp(np, _conv2d_im2col)(model, size)


def _lenet_jax(model, size):
    import jax
    import jax.numpy as jnp
    return jax.jit(_lenet_xp(jnp, _conv2d_lax)(model, size))


# -- pre-LN transformer block ---------------------------------------------------------------------
def transformer_block(batch: int = 8, seq: int = 128, d: int = 256, heads: int = 4,
                      ffn: int = 1024):
    """A pre-LN transformer encoder block (self-attention, ReLU MLP), inference."""
    block = nn.TransformerEncoderLayer(d, heads, ffn, dropout=0.0, batch_first=True,
                                       norm_first=True)
    block.eval()
    return block, [dlc.TensorSpec((batch, seq, d), F32, name="x")]


def _transformer_xp(xp):
    def make(model, size):
        p = _state(model)
        d, h = size["d"], size["heads"]

        def ln(x, w, b):
            mu = x.mean(-1, keepdims=True)
            var = ((x - mu) ** 2).mean(-1, keepdims=True)
            return (x - mu) / xp.sqrt(var + 1e-5) * w + b

        def run(x):
            bsz, seq, _ = x.shape
            y = ln(x, p["norm1.weight"], p["norm1.bias"])
            qkv = y @ p["self_attn.in_proj_weight"].T + p["self_attn.in_proj_bias"]
            qkv = qkv.reshape(bsz, seq, 3, h, d // h).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // h)
            e = xp.exp(s - s.max(-1, keepdims=True))
            a = (e / e.sum(-1, keepdims=True)) @ v
            a = a.transpose(0, 2, 1, 3).reshape(bsz, seq, d)
            x = x + a @ p["self_attn.out_proj.weight"].T + p["self_attn.out_proj.bias"]
            y = ln(x, p["norm2.weight"], p["norm2.bias"])
            y = xp.maximum(y @ p["linear1.weight"].T + p["linear1.bias"], 0)
            return x + y @ p["linear2.weight"].T + p["linear2.bias"]
        return run
    return make


def _transformer_torch(model, size):
    import torch
    m = torch.nn.TransformerEncoderLayer(size["d"], size["heads"], size["ffn"], dropout=0.0,
                                         batch_first=True, norm_first=True)
    _load(m, model)
    return m


def _transformer_onnx(model, size):
    """The block written out in torch ops (q/k/v from in_proj_weight, softmax attention, the
    MLP) for the ONNX export: the exporter rejects TransformerEncoderLayer's attention path.
    Submodule names follow TransformerEncoderLayer, so the same state_dict loads."""
    import torch

    d, heads, ffn = size["d"], size["heads"], size["ffn"]

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.in_proj_weight = torch.nn.Parameter(torch.empty(3 * d, d))
            self.in_proj_bias = torch.nn.Parameter(torch.empty(3 * d))
            self.out_proj = torch.nn.Linear(d, d)

        def forward(self, y):
            bsz, seq = y.shape[0], y.shape[1]
            qkv = torch.nn.functional.linear(y, self.in_proj_weight, self.in_proj_bias)
            qkv = qkv.reshape(bsz, seq, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            s = qkv[0] @ qkv[1].transpose(-1, -2) / math.sqrt(d // heads)
            a = torch.softmax(s, dim=-1) @ qkv[2]
            return self.out_proj(a.transpose(1, 2).reshape(bsz, seq, d))

    class PreLNBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = Attention()
            self.linear1, self.linear2 = torch.nn.Linear(d, ffn), torch.nn.Linear(ffn, d)
            self.norm1, self.norm2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)

        def forward(self, x):
            x = x + self.self_attn(self.norm1(x))
            return x + self.linear2(torch.relu(self.linear1(self.norm2(x))))

    m = PreLNBlock()
    _load(m, model)
    return m


# -- peers ----------------------------------------------------------------------------------------
def _state(target) -> dict:
    """The weights of a dlc model, or of the model inside a training-step graph."""
    if isinstance(target, nn.Module):
        return target.state_dict()
    return {v.name: v.data for v in target.inputs if v.role == "param"}


def _load(torch_module, model, training: bool = False) -> None:
    """Copy a dlc model's weights into the torch module of the same architecture; for
    inference, eval mode without autograd (peers run the way users run them)."""
    import torch
    state = {k: torch.from_numpy(np.array(v)) for k, v in _state(model).items()}
    torch_module.load_state_dict(state)
    if not training:
        torch_module.eval()
        torch_module.requires_grad_(False)


def _numpy(xp_make):
    return xp_make(np)


def _jax(xp_make):
    def make(model, size):
        import jax
        import jax.numpy as jnp
        return jax.jit(xp_make(jnp)(model, size))
    return make


def _peers(xp_make=None, torch_make=None, **own) -> dict:
    """numpy and jax from one array-API function, torch and torch.compile from one torch
    function (ONNX Runtime exports it unless `onnxruntime=` names another); `own` gives a
    peer its own version."""
    peers = {}
    if xp_make is not None:
        peers["numpy"] = _numpy(xp_make)
        peers["jax"] = _jax(xp_make)
    if torch_make is not None:
        peers["torch"] = peers["torch-compile"] = torch_make
    peers.update({k.replace("_", "-"): v for k, v in own.items()})
    return peers


SUITE = [
    Workload("ew_chain", ew_chain, {"n": 16 * 2**20}, {"n": 4099},
             flops=lambda s: 30.0 * s["n"], bytes=lambda s: 16.0 * s["n"],
             peers=_peers(_ew_chain_xp, _ew_chain_torch),
             doc="gelu(x*a+b)*sigmoid(x), float32"),
    Workload("softmax", softmax_rows, {"rows": 4096, "cols": 1024}, {"rows": 33, "cols": 70},
             flops=lambda s: 5.0 * s["rows"] * s["cols"],
             bytes=lambda s: 8.0 * s["rows"] * s["cols"],
             peers=_peers(_softmax_xp, _softmax_torch), doc="row softmax"),
    Workload("layernorm", layernorm, {"rows": 8192, "cols": 1024}, {"rows": 17, "cols": 96},
             flops=lambda s: 8.0 * s["rows"] * s["cols"],
             bytes=lambda s: 8.0 * s["rows"] * s["cols"],
             peers=_peers(_layernorm_xp, _layernorm_torch), doc="LayerNorm over rows"),
    Workload("gemm", gemm, {"n": 1024}, {"n": 48},
             flops=lambda s: 2.0 * s["n"] ** 3, bytes=lambda s: 12.0 * s["n"] ** 2,
             peers=_peers(_gemm_xp, _gemm_torch), rtol=1e-4, atol=1e-4, doc="float32 GEMM"),
    Workload("mlp_b1", mlp, {"batch": 1}, {"batch": 1},
             flops=lambda s: 2.0 * s["batch"] * (784 * 512 + 512 * 512 + 5120),
             bytes=lambda s: 4.0 * (784 * 512 + 512 * 512 + 5120 + s["batch"] * 794),
             peers=_peers(_mlp_xp, _mlp_torch), doc="MLP 784-512-512-10, batch 1"),
    Workload("mlp_b256", mlp, {"batch": 256}, {"batch": 5},
             flops=lambda s: 2.0 * s["batch"] * (784 * 512 + 512 * 512 + 5120),
             bytes=lambda s: 4.0 * (784 * 512 + 512 * 512 + 5120 + s["batch"] * 794),
             peers=_peers(_mlp_xp, _mlp_torch), doc="MLP 784-512-512-10, batch 256"),
    Workload("mlp_train_adam", mlp_train_adam, {"batch": 64}, {"batch": 4},
             flops=lambda s: 6.0 * s["batch"] * (784 * 512 + 512 * 512 + 5120),
             bytes=lambda s: 4.0 * 6 * (784 * 512 + 512 * 512 + 5120),
             peers=_peers(None, _mlp_train_torch, numpy=_mlp_train_numpy,
                          jax=_mlp_train_jax),
             unavailable={"onnxruntime": "ONNX Runtime runs inference graphs (no ONNX export "
                                         "of a training step with Adam)"},
             training=True, int_high=10,
             doc="MLP training step, batch 64, Adam"),
    Workload("lenet", lenet, {"batch": 64}, {"batch": 2},
             flops=lambda s: 2.0 * s["batch"] * (28 * 28 * 6 * 25 + 10 * 10 * 16 * 150
                                                  + 400 * 120 + 120 * 84 + 840),
             bytes=lambda s: 4.0 * s["batch"] * (784 + 10),
             peers=_peers(None, _lenet_torch, numpy=_lenet_numpy, jax=_lenet_jax),
             doc="LeNet-style CNN, batch 64"),
    Workload("transformer_block", transformer_block,
             {"batch": 8, "seq": 128, "d": 256, "heads": 4, "ffn": 1024},
             {"batch": 2, "seq": 5, "d": 16, "heads": 4, "ffn": 24},
             flops=lambda s: 2.0 * s["batch"] * s["seq"] * (4 * s["d"] ** 2 + 2 * s["d"] * s["ffn"]
                                                             + 2 * s["seq"] * s["d"]),
             bytes=lambda s: 4.0 * (4 * s["d"] ** 2 + 2 * s["d"] * s["ffn"]
                                    + 2 * s["batch"] * s["seq"] * s["d"]),
             peers=_peers(_transformer_xp, _transformer_torch, onnxruntime=_transformer_onnx),
             doc="pre-LN transformer block d=256, 4 heads, ffn 1024, batch 8, seq 128"),
]


def main_model():
    """`dlc dump examples/suite.py` shows the MLP at batch 256."""
    return mlp(256)
