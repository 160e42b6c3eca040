"""Scaled dot-product attention."""
from __future__ import annotations

import math

import numpy as np

from dlc.tensor import Tensor
from dlc.tensor import matmul as _matmul
from dlc.tensor import where as _where
from frontend.functional._common import _fail, _t
from frontend.functional.activation import softmax
from frontend.functional.sparse import dropout


# -- attention ---------------------------------------------------------------------------------
def _repeat_heads(x: Tensor, heads: int) -> Tensor:
    """(..., Hkv, S, E) -> (..., heads, S, E), each kv head serving heads/Hkv query heads."""
    hkv = x.shape[-3]
    if heads % hkv:
        raise _fail("scaled_dot_product_attention", f"{heads} query heads are not a "
                                                    f"multiple of {hkv} key/value heads")
    g = heads // hkv
    lead = x.shape[:-3]
    wide = x.unsqueeze(-3).broadcast_to(lead + (hkv, g) + x.shape[-2:])
    return wide.reshape(lead + (heads,) + x.shape[-2:])


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(q k^T * scale + mask) v over (..., L, E) queries and (..., S, E) keys.

    attn_mask: bool (True takes part) or float (added to the scores); is_causal masks
    position j > i. dropout_p applies to the attention weights (always, as in torch)."""
    fn = "scaled_dot_product_attention"
    q = _t(query)
    k, v = _t(key, q.dtype), _t(value, q.dtype)
    if is_causal and attn_mask is not None:
        raise _fail(fn, "pass attn_mask or is_causal, not both")
    if enable_gqa and q.ndim >= 3:
        k, v = _repeat_heads(k, q.shape[-3]), _repeat_heads(v, q.shape[-3])
    L, S = q.shape[-2], k.shape[-2]
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = _matmul(q, k.transpose(-2, -1)) * s
    if is_causal:
        attn_mask = np.tril(np.ones((L, S), dtype=bool))
    if attn_mask is not None:
        mask = _t(attn_mask, q.dtype)
        if mask.dtype == "bool":
            scores = _where(mask, scores, float("-inf"))
        else:
            scores = scores + mask.cast(q.dtype)
    weights = softmax(scores, -1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, True)
    return _matmul(weights, v)
