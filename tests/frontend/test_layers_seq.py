"""Sequence and graph layers against PyTorch: state_dict keys and shapes, and outputs.

Each case builds the dlc layer and the torch layer with the same hyperparameters, loads
torch's state dict (as numpy) into dlc's, traces and compiles dlc's, and compares outputs on
fresh random float32 inputs. GCNConv is checked against a direct numpy formula.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dlc
from dlc.errors import ShapeError
from frontend import nn
from frontend.nn.module import Module
from tests.ops.harness import TOL, assert_allclose

RTOL, ATOL = TOL["float32"]


# -- harness -----------------------------------------------------------------------------------
class _Call(Module):
    """Wraps a layer and a call pattern, so that keyword arguments and nested or optional
    outputs go through dlc.compile: forward(*inputs) -> flat tuple of the non-None outputs."""

    def __init__(self, layer: Module, call, consts: dict):
        super().__init__()
        self.layer = layer
        self.call = call
        self.consts = consts

    def forward(self, *xs):
        return tuple(_flatten(self.call(self.layer, *xs, **self.consts)))


def _flatten(out) -> list:
    if out is None:
        return []
    if isinstance(out, (tuple, list)):
        return [y for o in out for y in _flatten(o)]
    return [out]


def _seed_torch(rng) -> None:
    torch.manual_seed(int(rng.integers(2 ** 31)))


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float = RTOL,
                 atol: float = ATOL) -> None:
    """Same shape and dtype, all finite (NaN never passes), equal within tolerance."""
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.isfinite(got).all() and np.isfinite(want).all()
    assert_allclose(got, want, rtol=rtol, atol=atol)


def load_torch_state(layer: Module, tlayer: torch.nn.Module) -> None:
    """Copy torch's state dict into `layer`, after checking keys (in order) and shapes."""
    tstate = {k: v.detach().numpy() for k, v in tlayer.state_dict().items()}
    ours = layer.state_dict()
    assert list(ours) == list(tstate)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in tstate.items()}
    layer.load_state_dict(tstate)


def check_against_torch(layer: Module, tlayer: torch.nn.Module, call, inputs: list,
                        consts: dict | None = None, rtol: float = RTOL, atol: float = ATOL):
    """Load torch's weights, run call(layer, *inputs, **consts) compiled and in torch, compare.

    `inputs` become graph inputs; `consts` (numpy arrays) are captured as constants."""
    consts = consts or {}
    load_torch_state(layer, tlayer)
    specs = [dlc.TensorSpec(a.shape, a.dtype.name) for a in inputs]
    got = dlc.compile(_Call(layer, call, consts), *specs)(*inputs)
    got = got if isinstance(got, tuple) else (got,)
    tin = [torch.from_numpy(a) for a in inputs]
    tconsts = {k: torch.from_numpy(v) for k, v in consts.items()}
    want = [w.detach().numpy() for w in _flatten(call(tlayer, *tin, **tconsts))]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w, rtol, atol)


def randn(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def padding_mask(rng, batch: int, length: int) -> np.ndarray:
    """True marks padded keys; key 0 is never padded, so no query loses every key."""
    lengths = rng.integers(1, length + 1, batch)
    lengths[0] = length - 1 if length > 1 else 1  # at least one row with padding
    return np.arange(length)[None, :] >= lengths[:, None]


def causal_bool(length: int) -> np.ndarray:
    return np.triu(np.ones((length, length), dtype=bool), k=1)


# -- MultiheadAttention ------------------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_mha_self_attention_padding_and_causal_mask(rng, batch_first, need_weights, average):
    E, H, L, N = 16, 4, 5, 3
    _seed_torch(rng)
    tl = torch.nn.MultiheadAttention(E, H, batch_first=batch_first).eval()
    dl = nn.MultiheadAttention(E, H, batch_first=batch_first).eval()
    x = randn(rng, *((N, L, E) if batch_first else (L, N, E)))
    kpm = padding_mask(rng, N, L)

    def call(m, x, kpm, attn_mask):
        return m(x, x, x, key_padding_mask=kpm, need_weights=need_weights, attn_mask=attn_mask,
                 average_attn_weights=average)

    # key_padding_mask is a bool graph input, the causal mask a captured constant
    check_against_torch(dl, tl, call, [x, kpm], {"attn_mask": causal_bool(L)})


def test_mha_cross_attention_with_kdim_vdim(rng):
    E, H, L, S, N, kdim, vdim = 12, 3, 4, 6, 2, 5, 7
    _seed_torch(rng)
    tl = torch.nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim).eval()
    dl = nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim).eval()
    assert "q_proj_weight" in dl.state_dict() and "in_proj_weight" not in dl.state_dict()
    q, k, v = randn(rng, L, N, E), randn(rng, S, N, kdim), randn(rng, S, N, vdim)
    kpm = padding_mask(rng, N, S)
    check_against_torch(dl, tl, lambda m, q, k, v, kpm: m(q, k, v, key_padding_mask=kpm),
                        [q, k, v, kpm])


def test_mha_float_3d_mask_packed_cross_attention(rng):
    """Distinct query and key/value (the packed weight split two ways), a float per-head
    (N*H, L, S) mask as a graph input, no biases."""
    E, H, L, S, N = 8, 2, 3, 5, 2
    _seed_torch(rng)
    tl = torch.nn.MultiheadAttention(E, H, bias=False, batch_first=True).eval()
    dl = nn.MultiheadAttention(E, H, bias=False, batch_first=True).eval()
    q, kv = randn(rng, N, L, E), randn(rng, N, S, E)
    mask = randn(rng, N * H, L, S)
    check_against_torch(dl, tl, lambda m, q, kv, mask: m(q, kv, kv, attn_mask=mask),
                        [q, kv, mask])


def test_mha_bias_kv_and_zero_attn_with_masks(rng):
    E, H, L, N = 8, 2, 4, 3
    _seed_torch(rng)
    tl = torch.nn.MultiheadAttention(E, H, add_bias_kv=True, add_zero_attn=True).eval()
    dl = nn.MultiheadAttention(E, H, add_bias_kv=True, add_zero_attn=True).eval()
    x = randn(rng, L, N, E)

    def call(m, x, kpm, attn_mask):
        return m(x, x, x, key_padding_mask=kpm, attn_mask=attn_mask)

    check_against_torch(dl, tl, call, [x, padding_mask(rng, N, L)],
                        {"attn_mask": causal_bool(L)})


def test_mha_unbatched(rng):
    E, H, L = 8, 2, 5
    _seed_torch(rng)
    tl = torch.nn.MultiheadAttention(E, H).eval()
    dl = nn.MultiheadAttention(E, H).eval()
    x = randn(rng, L, E)
    kpm = np.zeros(L, dtype=bool)
    kpm[-2:] = True
    check_against_torch(dl, tl, lambda m, x, kpm: m(x, x, x, key_padding_mask=kpm,
                                                    average_attn_weights=False), [x, kpm])


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_is_causal_builds_the_mask(rng, need_weights):
    """dlc builds the causal mask from is_causal alone; torch needs it passed as a hint."""
    E, H, L, N = 8, 2, 6, 2
    _seed_torch(rng)
    tl = torch.nn.MultiheadAttention(E, H, batch_first=True).eval()
    dl = nn.MultiheadAttention(E, H, batch_first=True).eval()
    x = randn(rng, N, L, E)
    load_torch_state(dl, tl)
    call = _Call(dl, lambda m, x: m(x, x, x, is_causal=True, need_weights=need_weights), {})
    got = dlc.compile(call, dlc.TensorSpec(x.shape))(x)
    got = got if isinstance(got, tuple) else (got,)
    tx = torch.from_numpy(x)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(L)
    want = _flatten(tl(tx, tx, tx, attn_mask=mask, is_causal=True, need_weights=need_weights))
    assert len(got) == len(want) == (2 if need_weights else 1)
    for g, w in zip(got, want):
        assert_close(g, w.detach().numpy())


def test_mha_init_and_errors():
    m = nn.MultiheadAttention(16, 4)
    sd = m.state_dict()
    assert list(sd) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    assert not sd["in_proj_bias"].any() and not sd["out_proj.bias"].any()
    bound = math.sqrt(6.0 / (16 + 48))  # Xavier-uniform over the packed (48, 16) weight
    assert np.abs(sd["in_proj_weight"]).max() <= bound
    assert np.abs(sd["in_proj_weight"]).max() > 0.9 * bound
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ShapeError, match="key_padding_mask"):
        dlc.trace(_Call(m, lambda m, x, k: m(x, x, x, key_padding_mask=k), {}),
                  dlc.TensorSpec((5, 2, 16)), dlc.TensorSpec((2, 4), "bool"))


# -- Transformer layers ----------------------------------------------------------------------
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer_encoder_layer(rng, norm_first, activation, batch_first):
    d, h, ff, L, N = 16, 4, 32, 5, 3
    kw = dict(dim_feedforward=ff, dropout=0.1, activation=activation, batch_first=batch_first,
              norm_first=norm_first, layer_norm_eps=1e-6)
    _seed_torch(rng)
    tl = torch.nn.TransformerEncoderLayer(d, h, **kw).eval()
    dl = nn.TransformerEncoderLayer(d, h, **kw).eval()
    x = randn(rng, *((N, L, d) if batch_first else (L, N, d)))

    def call(m, x, kpm, src_mask):
        return m(x, src_mask=src_mask, src_key_padding_mask=kpm)

    check_against_torch(dl, tl, call, [x, padding_mask(rng, N, L)],
                        {"src_mask": causal_bool(L)})


@pytest.mark.parametrize("norm_first,bias", [(False, True), (True, True), (False, False)])
def test_transformer_decoder_layer(rng, norm_first, bias):
    d, h, ff, L, S, N = 16, 2, 24, 4, 6, 2
    kw = dict(dim_feedforward=ff, norm_first=norm_first, batch_first=True, bias=bias)
    _seed_torch(rng)
    tl = torch.nn.TransformerDecoderLayer(d, h, **kw).eval()
    dl = nn.TransformerDecoderLayer(d, h, **kw).eval()
    tgt, mem = randn(rng, N, L, d), randn(rng, N, S, d)

    def call(m, tgt, mem, mem_kpm, tgt_mask):
        return m(tgt, mem, tgt_mask=tgt_mask, memory_key_padding_mask=mem_kpm)

    tgt_mask = nn.Transformer.generate_square_subsequent_mask(L)  # float 0 / -inf
    check_against_torch(dl, tl, call, [tgt, mem, padding_mask(rng, N, S)],
                        {"tgt_mask": tgt_mask})


def test_transformer_encoder_stack_with_norm(rng):
    d, h, L, N = 8, 2, 5, 2
    _seed_torch(rng)
    tlayer = torch.nn.TransformerEncoderLayer(d, h, dim_feedforward=16)
    tl = torch.nn.TransformerEncoder(tlayer, 2, norm=torch.nn.LayerNorm(d),
                                     enable_nested_tensor=False).eval()
    dlayer = nn.TransformerEncoderLayer(d, h, dim_feedforward=16)
    dl = nn.TransformerEncoder(dlayer, 2, norm=nn.LayerNorm(d)).eval()
    assert "layers.1.linear2.bias" in dl.state_dict() and "norm.weight" in dl.state_dict()
    x = randn(rng, L, N, d)
    check_against_torch(dl, tl, lambda m, x, mask: m(x, mask=mask), [x],
                        {"mask": causal_bool(L)})


def test_transformer_encoder_decoder(rng):
    d, h, S, L, N = 8, 2, 5, 4, 2
    kw = dict(d_model=d, nhead=h, num_encoder_layers=2, num_decoder_layers=1,
              dim_feedforward=16, batch_first=True)
    _seed_torch(rng)
    tl = torch.nn.Transformer(**kw).eval()
    dl = nn.Transformer(**kw).eval()
    src, tgt = randn(rng, N, S, d), randn(rng, N, L, d)
    check_against_torch(dl, tl, lambda m, s, t, tgt_mask: m(s, t, tgt_mask=tgt_mask),
                        [src, tgt], {"tgt_mask": causal_bool(L)})


# -- recurrent layers -------------------------------------------------------------------------
RECURRENT = {"RNN": (nn.RNN, torch.nn.RNN), "LSTM": (nn.LSTM, torch.nn.LSTM),
             "GRU": (nn.GRU, torch.nn.GRU)}


def _initial_state(rng, kind: str, shape, c_shape=None):
    h = randn(rng, *shape)
    return [h, randn(rng, *(c_shape or shape))] if kind == "LSTM" else [h]


def _call_rnn(kind: str):
    def call(m, x, *state):
        if not state:
            return m(x)
        return m(x, tuple(state) if kind == "LSTM" else state[0])
    return call


@pytest.mark.parametrize("kind", list(RECURRENT))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_recurrent_two_layers(rng, kind, bidirectional, batch_first, with_h0):
    hin, hid, L, N, layers = 5, 6, 4, 3, 2
    kw = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
              dropout=0.3)  # dropout between layers: inactive in eval mode
    ours, theirs = RECURRENT[kind]
    _seed_torch(rng)
    tl = theirs(hin, hid, **kw).eval()
    dl = ours(hin, hid, **kw).eval()
    x = randn(rng, *((N, L, hin) if batch_first else (L, N, hin)))
    dirs = 2 if bidirectional else 1
    state = _initial_state(rng, kind, (layers * dirs, N, hid)) if with_h0 else []
    check_against_torch(dl, tl, _call_rnn(kind), [x] + state)


@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize("variant", ["rnn_relu", "no_bias", "lstm_proj", "unbatched"])
def test_recurrent_variants(rng, variant):
    hin, hid, L, N = 4, 6, 5, 2
    cases = {
        "rnn_relu": ("RNN", dict(nonlinearity="relu", num_layers=2), (L, N, hin)),
        "no_bias": ("GRU", dict(bias=False, bidirectional=True), (L, N, hin)),
        "lstm_proj": ("LSTM", dict(proj_size=3, num_layers=2, bidirectional=True), (L, N, hin)),
        "unbatched": ("LSTM", dict(num_layers=2), (L, hin)),
    }
    kind, kw, xshape = cases[variant]
    ours, theirs = RECURRENT[kind]
    _seed_torch(rng)
    tl, dl = theirs(hin, hid, **kw), ours(hin, hid, **kw)
    x = randn(rng, *xshape)
    layers, dirs = kw.get("num_layers", 1), 2 if kw.get("bidirectional") else 1
    hout = kw.get("proj_size") or hid
    batch = (N,) if len(xshape) == 3 else ()
    state = _initial_state(rng, kind, (layers * dirs,) + batch + (hout,),
                           (layers * dirs,) + batch + (hid,))
    check_against_torch(dl, tl, _call_rnn(kind), [x] + state)
    check_against_torch(dl, tl, _call_rnn(kind), [x])


def test_recurrent_init_and_keys():
    m = nn.LSTM(3, 16, num_layers=2, bidirectional=True)
    t = torch.nn.LSTM(3, 16, num_layers=2, bidirectional=True)
    assert list(m.state_dict()) == list(t.state_dict())
    bound = 1 / math.sqrt(16)
    for name, p in m.named_parameters():
        assert np.abs(p).max() <= bound, name
        assert np.abs(p).max() > 0.5 * bound, name  # filled, not left at zero
    with pytest.raises(ShapeError, match="input"):
        dlc.trace(m, dlc.TensorSpec((4, 2, 5)))
    with pytest.raises(ShapeError, match="h0"):
        dlc.trace(_Call(m, lambda m, x, h, c: m(x, (h, c)), {}), dlc.TensorSpec((4, 2, 3)),
                  dlc.TensorSpec((2, 2, 16)), dlc.TensorSpec((4, 2, 16)))
    with pytest.raises(ShapeError, match="pair"):
        dlc.trace(_Call(m, lambda m, x, h: m(x, h), {}), dlc.TensorSpec((4, 2, 3)),
                  dlc.TensorSpec((4, 2, 16)))


def test_recurrent_dropout_only_in_training():
    m = nn.GRU(3, 4, num_layers=3, dropout=0.5)
    count = lambda g: sum(n.op.name == "dropout" for n in g.nodes)  # noqa: E731
    assert count(dlc.trace(m.train(), dlc.TensorSpec((2, 1, 3)))) == 2  # between layers
    assert count(dlc.trace(m.eval(), dlc.TensorSpec((2, 1, 3)))) == 0


CELLS = {"RNNCell": (nn.RNNCell, torch.nn.RNNCell), "LSTMCell": (nn.LSTMCell, torch.nn.LSTMCell),
         "GRUCell": (nn.GRUCell, torch.nn.GRUCell)}


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [False, True])
def test_cells(rng, kind, batched, with_hx):
    hin, hid, N = 5, 7, 3
    ours, theirs = CELLS[kind]
    _seed_torch(rng)
    tl, dl = theirs(hin, hid), ours(hin, hid)
    batch = (N,) if batched else ()
    x = randn(rng, *batch, hin)
    state = []
    if with_hx:
        state = [randn(rng, *batch, hid) for _ in range(2 if kind == "LSTMCell" else 1)]

    def call(m, x, *s):
        if not s:
            return m(x)
        return m(x, tuple(s) if kind == "LSTMCell" else s[0])

    check_against_torch(dl, tl, call, [x] + state)


def test_rnn_cell_relu_no_bias(rng):
    _seed_torch(rng)
    tl = torch.nn.RNNCell(4, 6, bias=False, nonlinearity="relu")
    dl = nn.RNNCell(4, 6, bias=False, nonlinearity="relu")
    check_against_torch(dl, tl, lambda m, x, h: m(x, h), [randn(rng, 2, 4), randn(rng, 2, 6)])


# -- GCNConv ---------------------------------------------------------------------------------
def random_graph(rng, n: int, isolated: bool = False) -> np.ndarray:
    """A symmetric weighted adjacency with no self loops (optionally an isolated node 0)."""
    a = (rng.random((n, n)) < 0.4) * rng.uniform(0.5, 2.0, (n, n))
    a = np.triu(a, 1)
    a = a + a.T
    if isolated:
        a[0, :] = a[:, 0] = 0
    return a.astype(np.float32)


def gcn_reference(x, adj, weight, bias, self_loops=True, fill=1.0, normalize=True):
    """Kipf & Welling in float64: D^-1/2 (A + fill I) D^-1/2 X W^T + b."""
    a = adj.astype(np.float64) + (fill * np.eye(adj.shape[-1]) if self_loops else 0)
    if normalize:
        deg = a.sum(-1)
        inv = np.zeros_like(deg)
        inv[deg > 0] = deg[deg > 0] ** -0.5
        a = inv[..., :, None] * a * inv[..., None, :]
    out = a @ (x.astype(np.float64) @ weight.astype(np.float64).T)
    return out if bias is None else out + bias


def _gcn_params(rng, m, cin, cout, bias=True):
    state = {"lin.weight": randn(rng, cout, cin)}
    if bias:
        state["bias"] = randn(rng, cout)
    assert sorted(m.state_dict()) == sorted(state)  # torch_geometric's keys
    m.load_state_dict(state)
    return state["lin.weight"], state.get("bias")


@pytest.mark.parametrize("adj_as", ["input", "constant"])
def test_gcn_conv(rng, adj_as):
    n, cin, cout = 7, 5, 3
    m = nn.GCNConv(cin, cout)
    w, b = _gcn_params(rng, m, cin, cout)
    x, adj = randn(rng, n, cin), random_graph(rng, n)
    if adj_as == "input":
        got = dlc.compile(m, dlc.TensorSpec(x.shape), dlc.TensorSpec(adj.shape))(x, adj)
    else:
        got = dlc.compile(_Call(m, lambda m, x, adj: m(x, adj), {"adj": adj}),
                          dlc.TensorSpec(x.shape))(x)
    assert_close(got, gcn_reference(x, adj, w, b).astype(np.float32))


@pytest.mark.parametrize("options", [dict(improved=True), dict(add_self_loops=False),
                                     dict(normalize=False, bias=False)])
def test_gcn_conv_options(rng, options):
    n, cin, cout, B = 6, 4, 5, 2
    m = nn.GCNConv(cin, cout, **options)
    w, b = _gcn_params(rng, m, cin, cout, bias=options.get("bias", True))
    x = randn(rng, B, n, cin)
    adj = np.stack([random_graph(rng, n, isolated=True) for _ in range(B)])
    got = dlc.compile(m, dlc.TensorSpec(x.shape), dlc.TensorSpec(adj.shape))(x, adj)
    normalize = options.get("normalize", True)
    want = gcn_reference(x, adj, w, b, self_loops=options.get("add_self_loops", normalize),
                         fill=2.0 if options.get("improved") else 1.0, normalize=normalize)
    assert_close(got, want.astype(np.float32))


def test_normalized_adjacency_and_gcn_init(rng):
    adj = random_graph(rng, 5, isolated=True)
    a = nn.normalized_adjacency(adj, add_self_loops=False)
    assert a.dtype == np.float32 and not a[0].any() and not a[:, 0].any()
    assert_allclose(a, a.T)
    m = nn.GCNConv(8, 4)
    bound = math.sqrt(6.0 / 12)  # Glorot-uniform over (4, 8)
    w = m.state_dict()["lin.weight"]
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.5 * bound
    assert not m.state_dict()["bias"].any()
    with pytest.raises(ShapeError, match="adjacency"):
        dlc.trace(m, dlc.TensorSpec((5, 8)), dlc.TensorSpec((5, 4)))
