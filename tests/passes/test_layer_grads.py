"""Gradients through whole layers against torch.autograd: RNN/LSTM/GRU unrolled over several
steps, attention with padding and causal masks, transformer layers, norms in training mode.

Each case loads torch's weights into the dlc layer, differentiates sum(layer(x) * w) with a
random cotangent w with respect to the input and every parameter, and compares with torch.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import dlc
from frontend import nn
from tests.frontend.test_layers_seq import causal_bool, load_torch_state, padding_mask
from tests.ops.harness import assert_allclose

RTOL, ATOL = 1e-4, 1e-5


def first(out):
    return out[0] if isinstance(out, tuple) else out


def check_grads(layer, tlayer, x: np.ndarray, rng, call=lambda m, x: m(x), consts=None,
                train: bool = False) -> None:
    consts = consts or {}
    load_torch_state(layer, tlayer)
    layer.train(train)
    tlayer.train(train)
    out_shape = first(call(tlayer, torch.from_numpy(x),
                           **{k: torch.from_numpy(v) for k, v in consts.items()})).shape
    w = rng.standard_normal(tuple(out_shape)).astype(np.float32)

    def loss(x, w):
        return (first(call(layer, x, **consts)) * w).sum()

    graph = dlc.trace(loss, dlc.TensorSpec(x.shape), dlc.TensorSpec(w.shape), module=layer)
    params = [v.name for v in graph.inputs if v.role == "param"]
    assert params, "the layer's parameters must be graph inputs"
    grads = dlc.compile(dlc.grad(graph, wrt=["x"] + params))(x, w)

    tx = torch.from_numpy(x).requires_grad_(True)
    tconsts = {k: torch.from_numpy(v) for k, v in consts.items()}
    (first(call(tlayer, tx, **tconsts)) * torch.from_numpy(w)).sum().backward()
    tparams = dict(tlayer.named_parameters())
    want = [tx.grad] + [tparams[p].grad for p in params]
    for name, g, t in zip(["x"] + params, grads, want):
        t = np.zeros_like(g) if t is None else t.numpy()
        assert np.isfinite(g).all(), name
        assert_allclose(g, t, rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_layers_over_several_steps(kind, bidirectional, rng):
    torch.manual_seed(int(rng.integers(2 ** 31)))
    kw = dict(num_layers=2, bidirectional=bidirectional, batch_first=True)
    layer, tlayer = getattr(nn, kind)(4, 5, **kw), getattr(torch.nn, kind)(4, 5, **kw)
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)  # 6 time steps
    check_grads(layer, tlayer, x, rng)


@pytest.mark.parametrize("mask", ["padding", "causal", "both"])
def test_self_attention_with_masks(mask, rng):
    torch.manual_seed(int(rng.integers(2 ** 31)))
    layer = nn.MultiheadAttention(8, 2, batch_first=True)
    tlayer = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    x = rng.standard_normal((3, 5, 8)).astype(np.float32)
    consts = {}
    if mask in ("padding", "both"):
        consts["key_padding_mask"] = padding_mask(rng, 3, 5)
    if mask in ("causal", "both"):
        consts["attn_mask"] = causal_bool(5)

    def call(m, x, **masks):
        return m(x, x, x, need_weights=False, **masks)
    check_grads(layer, tlayer, x, rng, call, consts)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer(norm_first, rng):
    torch.manual_seed(int(rng.integers(2 ** 31)))
    kw = dict(dim_feedforward=16, dropout=0.0, batch_first=True, norm_first=norm_first,
              activation="gelu")
    layer = nn.TransformerEncoderLayer(8, 2, **kw)
    tlayer = torch.nn.TransformerEncoderLayer(8, 2, **kw)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    check_grads(layer, tlayer, x, rng, lambda m, x: m(x, is_causal=False), train=True)


@pytest.mark.parametrize("make", [
    lambda: (nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)),
    lambda: (nn.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4)),
    lambda: (nn.LayerNorm(6), torch.nn.LayerNorm(6)),
], ids=["batch_norm_training", "group_norm", "layer_norm"])
def test_norms_in_training_mode(make, rng):
    layer, tlayer = make()
    with torch.no_grad():
        for p in tlayer.parameters():
            p.copy_(torch.randn_like(p))
    shape = {"BatchNorm2d": (4, 3, 5, 5), "GroupNorm": (3, 4, 6), "LayerNorm": (3, 4, 6)}
    x = rng.standard_normal(shape[type(tlayer).__name__]).astype(np.float32)
    check_grads(layer, tlayer, x, rng, train=True)
