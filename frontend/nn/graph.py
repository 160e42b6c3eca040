"""Graph convolution (Kipf & Welling's GCN) on a dense adjacency matrix.

    out = D^-1/2 (A + I) D^-1/2 X W^T + b,     D = diag of the row sums of A + I

Row i of the adjacency lists the nodes whose features node i aggregates: for an edge list
(source, target) as torch_geometric keeps it, adj[target, source] = weight. Parameters follow
torch_geometric's GCNConv, so its state dict loads as is:

    lin.weight (out_channels, in_channels)   Glorot-uniform init
    bias       (out_channels,)               zeros

The adjacency is a graph input or a constant numpy array; a constant one is normalized once,
in numpy, at trace time (see `normalized_adjacency`), so the compiled graph holds the result.
"""
from __future__ import annotations

import numpy as np

from dlc.errors import ShapeError
from dlc.tensor import Tensor, to_tensor, where
from frontend import init
from frontend.nn.linear import Linear
from frontend.nn.module import Module, Parameter

__all__ = ["GCNConv", "normalized_adjacency"]


def normalized_adjacency(adj, add_self_loops: bool = True, improved: bool = False,
                         dtype=None) -> np.ndarray:
    """D^-1/2 (A + fill I) D^-1/2 of a dense (..., N, N) adjacency, in numpy.

    fill is 1 (2 when `improved`); D holds the row sums of A + fill I. A node of degree 0
    (only possible without self loops) gets an all-zero row and column."""
    a = np.asarray(adj)
    dtype = np.dtype(dtype) if dtype is not None else \
        (a.dtype if a.dtype.kind == "f" else np.dtype(np.float32))
    _check_square(a.shape)
    a = a.astype(np.float64)  # normalize in double, round once at the end
    if add_self_loops:
        a = a + (2.0 if improved else 1.0) * np.eye(a.shape[-1])
    deg = a.sum(axis=-1)
    with np.errstate(divide="ignore"):
        inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    return (inv_sqrt[..., :, None] * a * inv_sqrt[..., None, :]).astype(dtype)


def _check_square(shape) -> None:
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ShapeError(f"GCNConv: the adjacency must be (..., N, N), got shape "
                         f"{tuple(shape)}")


def _normalize_traced(adj: Tensor, add_self_loops: bool, improved: bool) -> Tensor:
    """The same normalization as `normalized_adjacency`, built as graph ops."""
    n = adj.shape[-1]
    if add_self_loops:
        fill = 2.0 if improved else 1.0
        adj = adj + (fill * np.eye(n)).astype(adj.dtype)
    deg = adj.sum(dim=-1)
    has_edges = deg > 0
    # Guard the rsqrt so that isolated nodes give 0, not inf (and no NaN in gradients).
    inv_sqrt = where(has_edges, where(has_edges, deg, 1.0).rsqrt(), 0.0)
    return inv_sqrt.unsqueeze(-1) * adj * inv_sqrt.unsqueeze(-2)


class GCNConv(Module):
    """Graph convolution: forward(x, adj) with x (N, in) or (B, N, in), adj (N, N) or
    (B, N, N); returns (N, out) or (B, N, out).

    Signature as torch_geometric: `improved` uses 2 on the diagonal; `add_self_loops`
    defaults to `normalize`; `normalize=False` aggregates with the (self-looped) adjacency as
    given; `cached` is accepted (a constant adjacency is normalized once at trace time)."""

    def __init__(self, in_channels: int, out_channels: int, improved: bool = False,
                 cached: bool = False, add_self_loops: bool | None = None,
                 normalize: bool = True, bias: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.improved = improved
        self.cached = cached
        self.add_self_loops = normalize if add_self_loops is None else add_self_loops
        self.normalize = normalize
        if bias:
            self.bias = Parameter(np.zeros(out_channels, np.float32))
        else:
            self.register_parameter("bias", None)
        self.lin = Linear(in_channels, out_channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.xavier_uniform_(self.lin._parameters["weight"])
        if self._parameters.get("bias") is not None:
            init.constant_(self._parameters["bias"], 0.0)

    def propagation_matrix(self, adj):
        """The matrix that mixes node features: normalized (or not) adjacency with loops."""
        if isinstance(adj, np.ndarray):
            if self.normalize:
                return normalized_adjacency(adj, self.add_self_loops, self.improved,
                                            np.float32 if adj.dtype.kind != "f" else None)
            a = adj.astype(adj.dtype if adj.dtype.kind == "f" else np.float32)
            if self.add_self_loops:
                a = a + (2.0 if self.improved else 1.0) * np.eye(a.shape[-1], dtype=a.dtype)
            return a
        adj = to_tensor(adj)
        _check_square(adj.shape)
        if adj.dtype not in ("float32", "float64", "float16"):
            adj = adj.cast("float32")
        if self.normalize:
            return _normalize_traced(adj, self.add_self_loops, self.improved)
        if self.add_self_loops:
            n = adj.shape[-1]
            adj = adj + ((2.0 if self.improved else 1.0) * np.eye(n)).astype(adj.dtype)
        return adj

    def forward(self, x, adj) -> Tensor:
        x = to_tensor(x)
        _check_square(tuple(adj.shape))
        if x.ndim not in (2, 3) or x.shape[-2] != adj.shape[-1] \
                or x.shape[-1] != self.in_channels:
            raise ShapeError(f"GCNConv: x should be (N, {self.in_channels}) or "
                             f"(B, N, {self.in_channels}) with N = {adj.shape[-1]} nodes of "
                             f"the adjacency, got x {x.shape} and adj {tuple(adj.shape)}")
        a = self.propagation_matrix(adj)
        h = self.lin(x)  # transform first, as torch_geometric: cheaper when out < in
        a = to_tensor(a) if isinstance(a, np.ndarray) else a
        out = a.cast(h.dtype) @ h
        if self._parameters.get("bias") is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"
