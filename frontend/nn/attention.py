"""Multi-head attention under PyTorch's names, parameter layout and call semantics.

Parameters (state_dict keys), as torch.nn.MultiheadAttention:
    in_proj_weight (3E, E)           packed q, k, v projections (when kdim == vdim == E)
    q_proj_weight (E, E), k_proj_weight (E, kdim), v_proj_weight (E, vdim)   otherwise
    in_proj_bias (3E,)               when bias=True
    bias_k, bias_v (1, 1, E)         when add_bias_kv=True
    out_proj.weight (E, E), out_proj.bias (E,)

Masks follow PyTorch: a boolean mask is True where attention is *not* allowed; a float mask is
added to the scores. `attn_mask` is (L, S) or (N*num_heads, L, S); `key_padding_mask` is
(N, S) ((S,) for unbatched inputs). Masks are graph inputs or constant numpy arrays.
"""
from __future__ import annotations

import math

import numpy as np

from dlc.errors import ConfigError, ShapeError
from dlc.ir.types import is_float
from dlc.tensor import Tensor, to_tensor, where
from frontend import functional as F
from frontend import init
from frontend.nn.linear import Linear
from frontend.nn.module import Module, Parameter

__all__ = ["MultiheadAttention", "causal_mask"]


def causal_mask(tgt_len: int, src_len: int | None = None, dtype: str = "float32") -> np.ndarray:
    """The additive causal mask: 0 where query i may attend key j (j <= i), -inf above.

    A float (tgt_len, src_len) numpy array, equal to PyTorch's
    Transformer.generate_square_subsequent_mask for square sizes."""
    src_len = tgt_len if src_len is None else src_len
    blocked = np.triu(np.ones((tgt_len, src_len), dtype=bool), k=1)
    return np.where(blocked, -np.inf, 0.0).astype(dtype)


def _float_mask(mask, dtype: str, what: str):
    """PyTorch's canonical mask: bool -> 0 / -inf, float -> as is (in the query's dtype)."""
    if mask is None:
        return None
    if isinstance(mask, np.ndarray):
        if mask.dtype == np.bool_:
            return np.where(mask, -np.inf, 0.0).astype(dtype)
        if mask.dtype.kind != "f":
            raise ShapeError(f"{what} must be bool or floating, got dtype {mask.dtype}")
        return mask.astype(dtype)
    mask = to_tensor(mask)
    if mask.dtype == "bool":
        return where(mask, F.full((), -math.inf, dtype=dtype), F.zeros((), dtype=dtype))
    if not is_float(mask.dtype):
        raise ShapeError(f"{what} must be bool or floating, got dtype {mask.dtype}")
    return mask.cast(dtype)


def _pad_key(mask):
    """One more key column (bias_k or the zero key), never masked."""
    if mask is None:
        return None
    if isinstance(mask, np.ndarray):
        return np.concatenate([mask, np.zeros(mask.shape[:-1] + (1,), mask.dtype)], -1)
    zeros = F.zeros(mask.shape[:-1] + (1,), dtype=mask.dtype)
    return F.cat([mask, zeros], dim=-1)


def _add_masks(a, b):
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a + b
    return to_tensor(a) + to_tensor(b)


class MultiheadAttention(Module):
    """Multi-head scaled dot-product attention (torch.nn.MultiheadAttention).

    forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None).
    Inputs are (L, N, E) ((N, L, E) with batch_first, (L, E) unbatched); weights are
    (N, L, S) averaged over heads or (N, num_heads, L, S) per head.
    `is_causal` with no attn_mask builds the causal mask (PyTorch requires the mask then);
    with an attn_mask it is a hint and the mask is used.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False,
                 kdim: int | None = None, vdim: int | None = None, batch_first: bool = False):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ConfigError(f"{type(self).__name__}: embed_dim and num_heads must be "
                              f"positive, got {embed_dim} and {num_heads}")
        if embed_dim % num_heads:
            raise ConfigError(f"{type(self).__name__}: embed_dim {embed_dim} must be divisible "
                              f"by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = float(dropout)
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        self.add_zero_attn = add_zero_attn
        e = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.zeros((3 * e, e), np.float32))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(np.zeros((e, e), np.float32))
            self.k_proj_weight = Parameter(np.zeros((e, self.kdim), np.float32))
            self.v_proj_weight = Parameter(np.zeros((e, self.vdim), np.float32))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(np.zeros(3 * e, np.float32))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias)
        if add_bias_kv:
            self.bias_k = Parameter(np.zeros((1, 1, e), np.float32))
            self.bias_v = Parameter(np.zeros((1, 1, e), np.float32))
        else:
            self.register_parameter("bias_k", None)
            self.register_parameter("bias_v", None)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """PyTorch's init: Xavier-uniform projections, zero biases, Xavier-normal bias_k/v.

        out_proj.weight keeps Linear's default init, as in PyTorch."""
        for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            if self._parameters.get(name) is not None:
                init.xavier_uniform_(self._parameters[name])
        if self._parameters.get("in_proj_bias") is not None:
            init.constant_(self._parameters["in_proj_bias"], 0.0)
            init.constant_(self.out_proj._parameters["bias"], 0.0)
        for name in ("bias_k", "bias_v"):
            if self._parameters.get(name) is not None:
                init.xavier_normal_(self._parameters[name])

    # -- forward -------------------------------------------------------------------------------
    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        query, key, value = to_tensor(query), to_tensor(key), to_tensor(value)
        batched = self._check_shapes(query, key, value, key_padding_mask, attn_mask)
        same_kv, self_attn = key is value, query is key and key is value
        query, key, value = self._seq_first(query, key, value, batched, self_attn, same_kv)
        if not batched and key_padding_mask is not None:
            key_padding_mask = key_padding_mask[None]
        tgt_len, bsz = query.shape[0], query.shape[1]
        if is_causal and attn_mask is None:
            attn_mask = causal_mask(tgt_len, key.shape[0], query.dtype)

        q, k, v = self._in_projection(query, key, value, self_attn, same_kv)
        attn_mask = self._attn_mask_4d(_float_mask(attn_mask, query.dtype, "attn_mask"), bsz)
        kpm = _float_mask(key_padding_mask, query.dtype, "key_padding_mask")
        q, k, v, mask = self._heads_and_mask(q, k, v, attn_mask, kpm, bsz)

        p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = self._attention_with_weights(q, k, v, mask, p)
            weights = weights.mean(dim=1) if average_attn_weights else weights
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            weights = None
        out = out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, self.embed_dim)
        out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
        if not batched:
            return out.squeeze(1), None if weights is None else weights.squeeze(0)
        return (out.transpose(0, 1) if self.batch_first else out), weights

    def _seq_first(self, query, key, value, batched: bool, self_attn: bool, same_kv: bool):
        """To PyTorch's internal (len, N, E) layout, transposing each distinct tensor once."""
        if not batched:
            return query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if not self.batch_first:
            return query, key, value
        query = query.transpose(0, 1)
        key = query if self_attn else key.transpose(0, 1)
        value = key if same_kv else value.transpose(0, 1)
        return query, key, value

    def _heads_and_mask(self, q, k, v, attn_mask, kpm, bsz: int):
        """Append bias_k/bias_v and the zero key when asked, split heads to
        (N, H, len, head_dim), and merge the masks into one additive (.., L, S) mask."""
        if self._parameters.get("bias_k") is not None:
            k = F.cat([k, self.bias_k.broadcast_to((1, bsz, self.embed_dim))], dim=0)
            v = F.cat([v, self.bias_v.broadcast_to((1, bsz, self.embed_dim))], dim=0)
            attn_mask, kpm = _pad_key(attn_mask), _pad_key(kpm)
        q, k, v = (self._split_heads(t, bsz) for t in (q, k, v))
        if self.add_zero_attn:
            zeros = F.zeros((bsz, self.num_heads, 1, self.head_dim), dtype=k.dtype)
            k, v = F.cat([k, zeros], dim=2), F.cat([v, zeros], dim=2)
            attn_mask, kpm = _pad_key(attn_mask), _pad_key(kpm)
        if kpm is not None:  # (N, S) -> (N, 1, 1, S): the same keys masked for every head
            kpm = kpm.reshape(bsz, 1, 1, k.shape[2])
        mask = _add_masks(attn_mask, kpm)
        return q, k, v, None if mask is None else to_tensor(mask)

    def _attention_with_weights(self, q, k, v, mask, p: float):
        """Scores, softmax and weighted sum, keeping the weights (as PyTorch's math path)."""
        scores = (q * math.sqrt(1.0 / self.head_dim)) @ k.transpose(-2, -1)
        if mask is not None:
            scores = mask + scores
        weights = F.softmax(scores, dim=-1)
        if p > 0.0:
            weights = F.dropout(weights, p=p, training=True)
        return weights @ v, weights

    def _in_projection(self, query, key, value, self_attn: bool, same_kv: bool):
        e = self.embed_dim
        b = self.in_proj_bias if self._parameters.get("in_proj_bias") is not None else None

        def bias(lo: int, hi: int):
            return None if b is None else b[lo:hi]

        if not self._qkv_same_embed_dim:
            return (F.linear(query, self.q_proj_weight, bias(0, e)),
                    F.linear(key, self.k_proj_weight, bias(e, 2 * e)),
                    F.linear(value, self.v_proj_weight, bias(2 * e, 3 * e)))
        w = self.in_proj_weight
        if self_attn:  # one matmul for the three projections
            return tuple(F.chunk(F.linear(query, w, b), 3, dim=-1))
        q = F.linear(query, w[:e], bias(0, e))
        if same_kv:  # one matmul for key and value
            k, v = F.chunk(F.linear(key, w[e:], bias(e, 3 * e)), 2, dim=-1)
            return q, k, v
        return (q, F.linear(key, w[e:2 * e], bias(e, 2 * e)),
                F.linear(value, w[2 * e:], bias(2 * e, 3 * e)))

    def _split_heads(self, t: Tensor, bsz: int) -> Tensor:
        """(len, N, E) -> (N, num_heads, len, head_dim)."""
        return t.reshape(t.shape[0], bsz, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

    def _attn_mask_4d(self, mask, bsz: int):
        """(L, S) -> (1, 1, L, S); (N*num_heads, L, S) -> (N, num_heads, L, S)."""
        if mask is None:
            return None
        if mask.ndim == 2:
            return mask.reshape((1, 1) + tuple(mask.shape))
        return mask.reshape((bsz, self.num_heads) + tuple(mask.shape[1:]))

    def _check_shapes(self, query, key, value, key_padding_mask, attn_mask) -> bool:
        """PyTorch's shape rules; returns whether the inputs are batched."""
        name = type(self).__name__
        batched = query.ndim == 3
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ShapeError(f"{name}: query, key and value must all be 3-D (batched) or 2-D "
                             f"(unbatched), got {query.shape}, {key.shape}, {value.shape}")
        for what, t, want in (("query", query, self.embed_dim), ("key", key, self.kdim),
                              ("value", value, self.vdim)):
            if t.shape[-1] != want:
                raise ShapeError(f"{name}: {what} should have {want} features, got shape "
                                 f"{t.shape}")
        seq_axis, batch_axis = (1, 0) if batched and self.batch_first else (0, 1)
        if key.shape[:-1] != value.shape[:-1]:
            raise ShapeError(f"{name}: key {key.shape} and value {value.shape} must agree "
                             f"on sequence length and batch")
        if batched and key.shape[batch_axis] != query.shape[batch_axis]:
            raise ShapeError(f"{name}: query {query.shape} and key {key.shape} have "
                             f"different batch sizes")
        tgt, src = query.shape[seq_axis], key.shape[seq_axis]
        bsz = query.shape[batch_axis] if batched else None
        if key_padding_mask is not None:
            want = (bsz, src) if batched else (src,)
            if tuple(key_padding_mask.shape) != want:
                raise ShapeError(f"{name}: key_padding_mask should have shape {want}, got "
                                 f"{tuple(key_padding_mask.shape)}")
        if attn_mask is not None:
            heads = self.num_heads * (bsz if batched else 1)
            shape = tuple(attn_mask.shape)
            if shape not in ((tgt, src), (heads, tgt, src)):
                raise ShapeError(f"{name}: attn_mask should have shape {(tgt, src)} or "
                                 f"{(heads, tgt, src)}, got {shape}")
        return batched

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"batch_first={self.batch_first}")
