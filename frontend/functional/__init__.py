"""Functional forms under torch.nn.functional's names and signatures (`dlc.nn.functional`).

Every function builds graph nodes through the symbolic Tensor API and `emit`, with the ops
of docs/ops.md. Arguments may be Tensors, numpy arrays (captured as graph constants) or
Python numbers wherever torch takes them. Dimension arguments accept PyTorch's `dim` /
`keepdim` and NumPy's `axis` / `keepdims` alike.

Also here: tensor functions that model code reaches for under torch's module-level names
(cat, stack, split, chunk, where, zeros, arange, sum, clamp, ...).
"""
from __future__ import annotations

from frontend.functional.activation import *  # noqa: F401,F403
from frontend.functional.layers import *  # noqa: F401,F403
from frontend.functional.resample import *  # noqa: F401,F403
from frontend.functional.norm import *  # noqa: F401,F403
from frontend.functional.sparse import *  # noqa: F401,F403
from frontend.functional.losses import *  # noqa: F401,F403
from frontend.functional.attention import *  # noqa: F401,F403
from frontend.functional.tensors import *  # noqa: F401,F403

__all__ = [
    # activations
    "relu", "relu6", "leaky_relu", "gelu", "silu", "sigmoid", "tanh", "softplus", "elu",
    "hardtanh", "logsigmoid", "softmax", "log_softmax", "logsumexp",
    # linear, convolution, pooling, resampling
    "linear", "bilinear", "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d",
    "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "interpolate", "pad",
    # normalization, dropout, embedding
    "layer_norm", "rms_norm", "group_norm", "batch_norm", "normalize", "dropout",
    "rand", "randn", "rand_like", "randn_like",
    "embedding", "one_hot",
    # losses
    "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    # attention
    "scaled_dot_product_attention",
    # tensor functions
    "cat", "concat", "concatenate", "stack", "split", "chunk", "unbind", "flatten",
    "reshape", "transpose", "permute", "squeeze", "unsqueeze", "where", "zeros", "ones",
    "full", "zeros_like", "ones_like", "full_like", "arange", "sum", "mean", "max", "min",
    "var", "std", "exp", "log", "sqrt", "abs", "clamp", "clip", "maximum", "minimum",
    "matmul", "bmm", "mm", "gather", "take_along_dim", "index_select",
    "scatter_add",
]
