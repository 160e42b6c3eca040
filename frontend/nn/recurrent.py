"""Recurrent layers: RNN, LSTM, GRU and their single-step cells, under PyTorch's conventions.

Parameters are named, shaped, ordered and initialized as PyTorch does, so a PyTorch state dict
converted to numpy loads as is:

    weight_ih_l{k}{suffix}  (gates * hidden_size, layer input size)
    weight_hh_l{k}{suffix}  (gates * hidden_size, proj_size or hidden_size)
    bias_ih_l{k}{suffix}    (gates * hidden_size,)          when bias=True
    bias_hh_l{k}{suffix}    (gates * hidden_size,)          when bias=True
    weight_hr_l{k}{suffix}  (proj_size, hidden_size)        LSTM with proj_size > 0

with suffix "_reverse" for the backward direction of a bidirectional layer. Gate blocks are
stacked in PyTorch's order: LSTM (i, f, g, o), GRU (r, z, n). The sequence loop is Python and
unrolls at trace time over the fixed sequence length; the input projections of all time steps
are one matmul per layer and direction, only the hidden-to-hidden product runs per step.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np

from dlc.errors import ConfigError, ShapeError
from dlc.tensor import Tensor, to_tensor
from frontend import functional as F
from frontend import init
from frontend.nn.module import Module, Parameter

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

# Number of gate blocks stacked in weight_ih / weight_hh, per mode.
GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}
RNN_MODES = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}


# -- one time step per mode ------------------------------------------------------------------
# step(gi, h, c, w_hh, b_hh, w_hr) -> (h', c'): `gi` is the input projection x W_ih^T + b_ih
# of this step, already computed; `c` is the LSTM cell state (None for the other modes).

def _tanh_step(gi, h, c, w_hh, b_hh, w_hr):
    return F.tanh(gi + F.linear(h, w_hh, b_hh)), None


def _relu_step(gi, h, c, w_hh, b_hh, w_hr):
    return F.relu(gi + F.linear(h, w_hh, b_hh)), None


def _lstm_step(gi, h, c, w_hh, b_hh, w_hr):
    gates = gi + F.linear(h, w_hh, b_hh)
    i, f, g, o = F.chunk(gates, 4, dim=-1)
    c_new = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
    h_new = F.sigmoid(o) * F.tanh(c_new)
    if w_hr is not None:
        h_new = F.linear(h_new, w_hr)
    return h_new, c_new


def _gru_step(gi, h, c, w_hh, b_hh, w_hr):
    gh = F.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = F.chunk(gi, 3, dim=-1)
    h_r, h_z, h_n = F.chunk(gh, 3, dim=-1)
    r = F.sigmoid(i_r + h_r)
    z = F.sigmoid(i_z + h_z)
    # The reset gate multiplies the hidden projection *including* its bias b_hn, as PyTorch.
    n = F.tanh(i_n + r * h_n)
    # (1 - z) * n + z * h, written as PyTorch's kernel evaluates it.
    return n + z * (h - n), None


STEPS: dict[str, Callable] = {"RNN_TANH": _tanh_step, "RNN_RELU": _relu_step,
                              "LSTM": _lstm_step, "GRU": _gru_step}


def _reset_uniform(module: Module, hidden_size: int) -> None:
    """PyTorch's recurrent init: every parameter ~ U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for _, p in module.named_parameters():
        init.uniform_(p, -bound, bound)


def _check_size(what: str, got: int, want: int, layer: str, shape) -> None:
    if got != want:
        raise ShapeError(f"{layer}: {what} should have size {want}, got shape {tuple(shape)}")


# -- sequence layers -----------------------------------------------------------------------------
class RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU (PyTorch's RNNBase)."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0):
        super().__init__()
        _validate(type(self).__name__, mode, input_size, hidden_size, num_layers, dropout,
                  proj_size)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            for direction in range(self.num_directions):
                self._make_layer(layer, direction)
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def real_hidden_size(self) -> int:
        """The size of h: proj_size when the LSTM projects its output, else hidden_size."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def _make_layer(self, layer: int, direction: int) -> None:
        gate_size = GATES[self.mode] * self.hidden_size
        in_size = self.input_size if layer == 0 else self.real_hidden_size * self.num_directions
        shapes = [("weight_ih", (gate_size, in_size)),
                  ("weight_hh", (gate_size, self.real_hidden_size))]
        if self.bias:
            shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
        if self.proj_size > 0:
            shapes += [("weight_hr", (self.proj_size, self.hidden_size))]
        suffix = "_reverse" if direction == 1 else ""
        names = []
        for stem, shape in shapes:
            name = f"{stem}_l{layer}{suffix}"
            setattr(self, name, Parameter(np.zeros(shape, np.float32)))
            names.append(name)
        self._flat_weights_names.extend(names)
        self._all_weights.append(names)

    def reset_parameters(self) -> None:
        _reset_uniform(self, self.hidden_size)

    def _weights(self, layer: int, direction: int) -> dict:
        suffix = "_reverse" if direction == 1 else ""
        return {stem: getattr(self, f"{stem}_l{layer}{suffix}", None)
                for stem in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")}

    def _state_shapes(self, batch: int) -> tuple[tuple, tuple]:
        n = self.num_layers * self.num_directions
        return (n, batch, self.real_hidden_size), (n, batch, self.hidden_size)

    def _run(self, x: Tensor, h0, c0):
        """x: (L, N, input_size); h0/c0: (layers*dirs, N, .) or None.

        Returns the last layer's output (L, N, dirs*H) and the final states stacked as
        (layers*dirs, N, .) (c_n is None except for the LSTM)."""
        h_shape, c_shape = self._state_shapes(x.shape[1])
        h0 = F.zeros(h_shape, dtype=x.dtype) if h0 is None else h0
        if self.mode == "LSTM" and c0 is None:
            c0 = F.zeros(c_shape, dtype=x.dtype)
        step = STEPS[self.mode]
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                w = self._weights(layer, direction)
                gi = F.linear(x, w["weight_ih"], w["bias_ih"])  # all time steps at once
                out, h, c = _scan(step, gi, h0[k], None if c0 is None else c0[k], w,
                                  reverse=direction == 1)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outs[0] if len(outs) == 1 else F.cat(outs, dim=-1)
            if self.dropout > 0 and layer < self.num_layers - 1:
                x = F.dropout(x, p=self.dropout, training=self.training)
        cell = F.stack(c_n, dim=0) if self.mode == "LSTM" else None
        return x, F.stack(h_n, dim=0), cell

    def _prepare(self, x: Tensor, h0, c0=None):
        """Check shapes and bring input and states to the batched, sequence-first layout."""
        name = type(self).__name__
        x = to_tensor(x)
        if x.ndim not in (2, 3):
            raise ShapeError(f"{name}: expected a 2-D (unbatched) or 3-D (batched) input, "
                             f"got shape {x.shape}")
        _check_size("the input's last dimension", x.shape[-1], self.input_size, name, x.shape)
        batched = x.ndim == 3
        if not batched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        h_shape, c_shape = self._state_shapes(x.shape[1])
        h0 = _state(h0, h_shape, batched, name, "h0")
        c0 = _state(c0, c_shape, batched, name, "c0")
        return x, h0, c0, batched

    def _finish(self, out: Tensor, h_n: Tensor, c_n, batched: bool):
        if not batched:
            out, h_n = out.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, h_n, c_n

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        for key, default in (("num_layers", 1), ("bias", True), ("batch_first", False),
                             ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)}"
        return s


def _validate(layer: str, mode, input_size, hidden_size, num_layers, dropout,
              proj_size) -> None:
    """Check the constructor arguments of `layer` (its class name, for the message)."""
    if mode not in GATES:
        raise ConfigError(f"{layer}: unknown recurrent mode {mode!r}; expected one of "
                          f"{list(GATES)}")
    if isinstance(dropout, bool) or not 0 <= dropout <= 1:
        raise ConfigError(f"{layer}: dropout should be a probability in [0, 1], got "
                          f"{dropout!r}")
    if dropout > 0 and num_layers == 1:
        warnings.warn(f"dropout={dropout} acts between recurrent layers only, and "
                      f"num_layers=1", stacklevel=3)
    for what, value in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{layer}: {what} must be a positive int, got {value!r}")
    if proj_size < 0 or (proj_size and proj_size >= hidden_size):
        raise ConfigError(f"{layer}: proj_size must be 0 or in [1, hidden_size="
                          f"{hidden_size}), got {proj_size}")
    if proj_size and mode != "LSTM":
        raise ConfigError(f"{layer}: proj_size is supported by LSTM only")


def _state(t, shape: tuple, batched: bool, layer: str, what: str):
    """Check an initial state against (layers*dirs, N, H) (unbatched: (layers*dirs, H))."""
    if t is None:
        return None
    t = to_tensor(t)
    want = shape if batched else (shape[0], shape[2])
    if tuple(t.shape) != tuple(want):
        raise ShapeError(f"{layer}: expected {what} of shape {want}, got {tuple(t.shape)}")
    return t if batched else t.unsqueeze(1)


def _lstm_state(hx, layer: str) -> tuple:
    """Unpack an LSTM's (h_0, c_0) pair (or None)."""
    if hx is None:
        return None, None
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise ShapeError(f"{layer}: hx must be a pair (h_0, c_0), got {type(hx).__name__}")
    return hx[0], hx[1]


def _scan(step: Callable, gi: Tensor, h, c, w: dict, reverse: bool):
    """Run one layer and direction over the sequence. gi: (L, N, gates*H) input projections.

    Returns the per-step outputs stacked in time order (L, N, H), the last h and the last c."""
    order = range(gi.shape[0] - 1, -1, -1) if reverse else range(gi.shape[0])
    outs = [None] * gi.shape[0]
    for t in order:
        h, c = step(gi[t], h, c, w["weight_hh"], w["bias_hh"], w["weight_hr"])
        outs[t] = h
    return F.stack(outs, dim=0), h, c


class RNN(RNNBase):
    """Elman RNN: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu.

    forward(input, hx=None) -> (output, h_n) with PyTorch's shapes: input (L, N, H_in)
    ((N, L, H_in) with batch_first, (L, H_in) unbatched), h_n (layers*dirs, N, H)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False):
        if nonlinearity not in RNN_MODES:
            raise ConfigError(f"{type(self).__name__}: unknown nonlinearity {nonlinearity!r}; "
                              f"expected 'tanh' or 'relu'")
        super().__init__(RNN_MODES[nonlinearity], input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None):
        x, h0, _, batched = self._prepare(input, hx)
        out, h_n, _ = self._run(x, h0, None)
        out, h_n, _ = self._finish(out, h_n, None, batched)
        return out, h_n


class LSTM(RNNBase):
    """Long short-term memory, gates (i, f, g, o) as PyTorch; optional output projection.

    forward(input, hx=None) -> (output, (h_n, c_n)); hx is a pair (h_0, c_0) or None."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size)

    def forward(self, input: Tensor, hx: tuple | None = None):
        h0, c0 = _lstm_state(hx, type(self).__name__)
        x, h0, c0, batched = self._prepare(input, h0, c0)
        out, h_n, c_n = self._run(x, h0, c0)
        out, h_n, c_n = self._finish(out, h_n, c_n, batched)
        return out, (h_n, c_n)


class GRU(RNNBase):
    """Gated recurrent unit, gates (r, z, n) as PyTorch:
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.

    forward(input, hx=None) -> (output, h_n)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional)

    def forward(self, input: Tensor, hx: Tensor | None = None):
        x, h0, _, batched = self._prepare(input, hx)
        out, h_n, _ = self._run(x, h0, None)
        out, h_n, _ = self._finish(out, h_n, None, batched)
        return out, h_n


# -- single-step cells ---------------------------------------------------------------------------
class RNNCellBase(Module):
    """Shared machinery of the cells: weight_ih, weight_hh, bias_ih, bias_hh as PyTorch."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        gate_size = GATES[mode] * hidden_size
        self.weight_ih = Parameter(np.zeros((gate_size, input_size), np.float32))
        self.weight_hh = Parameter(np.zeros((gate_size, hidden_size), np.float32))
        if bias:
            self.bias_ih = Parameter(np.zeros(gate_size, np.float32))
            self.bias_hh = Parameter(np.zeros(gate_size, np.float32))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_uniform(self, self.hidden_size)

    def _step(self, input: Tensor, h, c):
        name = type(self).__name__
        if input.ndim not in (1, 2):
            raise ShapeError(f"{name}: expected a 1-D (unbatched) or 2-D (batched) input, "
                             f"got shape {input.shape}")
        _check_size("the input's last dimension", input.shape[-1], self.input_size, name,
                    input.shape)
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        shape = (x.shape[0], self.hidden_size)
        h = _cell_state(h, shape, batched, name, "hx", x.dtype)
        c = _cell_state(c, shape, batched, name, "cx", x.dtype) if self.mode == "LSTM" else None
        gi = F.linear(x, self.weight_ih, self.bias_ih)
        h, c = STEPS[self.mode](gi, h, c, self.weight_hh, self.bias_hh, None)
        if not batched:
            h = h.squeeze(0)
            c = None if c is None else c.squeeze(0)
        return h, c

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        return s if self.bias else s + ", bias=False"


def _cell_state(t, shape: tuple, batched: bool, layer: str, what: str, dtype: str):
    if t is None:
        return F.zeros(shape, dtype=dtype)
    t = to_tensor(t)
    want = shape if batched else shape[1:]
    if tuple(t.shape) != tuple(want):
        raise ShapeError(f"{layer}: expected {what} of shape {want}, got {tuple(t.shape)}")
    return t if batched else t.unsqueeze(0)


class RNNCell(RNNCellBase):
    """One Elman step: forward(input, hx=None) -> h'."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh"):
        if nonlinearity not in RNN_MODES:
            raise ConfigError(f"{type(self).__name__}: unknown nonlinearity {nonlinearity!r}; "
                              f"expected 'tanh' or 'relu'")
        super().__init__(RNN_MODES[nonlinearity], input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, hx, None)[0]


class LSTMCell(RNNCellBase):
    """One LSTM step: forward(input, hx=None) -> (h', c'); hx is (h, c) or None."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__("LSTM", input_size, hidden_size, bias)

    def forward(self, input: Tensor, hx: tuple | None = None):
        return self._step(input, *_lstm_state(hx, type(self).__name__))


class GRUCell(RNNCellBase):
    """One GRU step: forward(input, hx=None) -> h'."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__("GRU", input_size, hidden_size, bias)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, hx, None)[0]
