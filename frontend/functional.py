"""Functional forms under torch.nn.functional's names and signatures (`dlc.nn.functional`).

Every function builds graph nodes through the symbolic Tensor API and `emit`, with the ops
of docs/ops.md. Arguments may be Tensors, numpy arrays (captured as graph constants) or
Python numbers wherever torch takes them. Dimension arguments accept PyTorch's `dim` /
`keepdim` and NumPy's `axis` / `keepdims` alike.

Also here: tensor functions that model code reaches for under torch's module-level names
(cat, stack, split, chunk, where, zeros, arange, sum, clamp, ...).
"""
from __future__ import annotations

import builtins
import math
import weakref
from typing import Sequence

import numpy as np

from dlc.errors import ShapeError
from dlc.ir import builder as _b
from dlc.ir.builder import emit
from dlc.ir.types import canonical_dtype, is_float, is_int, promote
from dlc.tensor import Tensor, binary_operands, to_tensor
from dlc.tensor import matmul as _matmul
from dlc.tensor import where as _where

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
    "matmul", "bmm", "mm",
]

_REDUCTIONS = ("none", "mean", "sum")


# -- argument helpers ------------------------------------------------------------------------
def _fail(fn: str, message: str) -> ShapeError:
    """A ShapeError naming the function, the layer and the user's line, as `emit` does."""
    try:
        scopes = _b.current().scopes
    except ShapeError:  # called outside a trace: no layer to name
        scopes = []
    where = [f"in layer {scopes[-1]}"] if scopes else []
    loc = _b.user_loc()
    where += [f"at {loc}"] if loc else []
    return ShapeError(" ".join([fn] + where) + f": {message}")


def _t(x, like: str = "float32") -> Tensor:
    """A Tensor from a Tensor, a numpy array (a graph const) or a Python number."""
    return to_tensor(x, like)


def _dim(dim, axis, fn: str, default=None):
    """PyTorch's `dim` or NumPy's `axis` (not both)."""
    if dim is not None and axis is not None:
        raise _fail(fn, f"pass dim or axis, not both (dim={dim}, axis={axis})")
    return default if dim is None and axis is None else (dim if dim is not None else axis)


def _ntuple(value, n: int, name: str, fn: str) -> tuple[int, ...]:
    """An int or a length-n sequence of ints, as a length-n tuple."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise _fail(fn, f"{name}={list(value)} needs 1 or {n} values")
    return values


def _batched(x: Tensor, nsp: int, fn: str) -> tuple[Tensor, bool]:
    """Accept (C, *spatial) as torch does by adding a batch axis; returns (x, was_unbatched)."""
    if x.ndim == nsp + 1:
        return x.unsqueeze(0), True
    if x.ndim != nsp + 2:
        raise _fail(fn, f"expected a {nsp + 1}-D (unbatched) or {nsp + 2}-D (batched) input, "
                        f"got shape {x.shape}")
    return x, False


def _unbatch(y: Tensor, unbatched: bool) -> Tensor:
    return y.reshape(y.shape[1:]) if unbatched else y


def _channel_bias(y: Tensor, bias) -> Tensor:
    """Add a per-channel (axis 1) bias; a separate add so it can fuse as an epilogue."""
    if bias is None:
        return y
    b = _t(bias, y.dtype)
    return y + b.reshape((b.shape[0],) + (1,) * (y.ndim - 2))


def _canon_axis(axis: int, ndim: int, fn: str) -> int:
    if not -builtins.max(ndim, 1) <= axis < builtins.max(ndim, 1):
        raise _fail(fn, f"dim {axis} is out of range for a tensor of rank {ndim}")
    return axis % builtins.max(ndim, 1)


# -- activations -------------------------------------------------------------------------------
def relu(input, inplace: bool = False) -> Tensor:
    """max(x, 0). `inplace` is accepted for torch compatibility; graphs are functional."""
    return emit("relu", _t(input))


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Tensor:
    """Clamp to [min_val, max_val]."""
    return _t(input).clamp(min_val, max_val)


def relu6(input, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6)."""
    return hardtanh(input, 0.0, 6.0)


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return emit("leaky_relu", _t(input), negative_slope=negative_slope)


def gelu(input, approximate: str = "none") -> Tensor:
    """GELU: the exact erf form ("none") or the tanh approximation ("tanh")."""
    if approximate not in ("none", "tanh"):
        raise _fail("gelu", f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return emit("gelu", _t(input), approximate=approximate)


def silu(input, inplace: bool = False) -> Tensor:
    return emit("silu", _t(input))


def sigmoid(input) -> Tensor:
    return emit("sigmoid", _t(input))


def tanh(input) -> Tensor:
    return emit("tanh", _t(input))


def softplus(input, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold (as torch)."""
    return emit("softplus", _t(input), beta=beta, threshold=threshold)


def logsigmoid(input) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), stable for large |x|."""
    return -softplus(-_t(input))


def elu(input, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x for x > 0, alpha (exp(x) - 1) otherwise."""
    x = _t(input)
    # expm1 sees min(x, 0) so the unused branch cannot overflow (inf * 0 in the VJP)
    negative = emit("expm1", x.minimum(0.0)) * alpha
    return _where(x > 0.0, x, negative)


def _softmax_dim(fn: str, dim, axis, ndim: int) -> int:
    d = _dim(dim, axis, fn)
    if d is None:  # torch's legacy implicit choice
        d = 0 if ndim in (0, 1, 3) else 1
    return _canon_axis(d, ndim, fn)


def softmax(input, dim: int | None = None, _stacklevel: int = 3, dtype=None, *,
            axis: int | None = None) -> Tensor:
    """exp(x) / sum(exp(x)) along `dim` (computed in `dtype` if given)."""
    x = _t(input) if dtype is None else _t(input).cast(dtype)
    return emit("softmax", x, axis=_softmax_dim("softmax", dim, axis, x.ndim))


def log_softmax(input, dim: int | None = None, _stacklevel: int = 3, dtype=None, *,
                axis: int | None = None) -> Tensor:
    x = _t(input) if dtype is None else _t(input).cast(dtype)
    return emit("log_softmax", x, axis=_softmax_dim("log_softmax", dim, axis, x.ndim))


def logsumexp(input, dim=None, keepdim: bool = False, *, axis=None,
              keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) over `dim` (all axes if None), stable for large inputs."""
    x = _t(input)
    d = _dim(dim, axis, "logsumexp")
    axes = tuple(range(x.ndim)) if d is None else \
        tuple(sorted({_canon_axis(a, x.ndim, "logsumexp") for a in _as_tuple(d)}))
    return emit("logsumexp", x, axes=axes, keepdims=bool(keepdim or keepdims))


# -- linear ------------------------------------------------------------------------------------
def linear(input, weight, bias=None) -> Tensor:
    """x @ weight.T + bias, weight (out_features, in_features) as in torch."""
    w = _t(weight)
    x = _t(input, w.dtype)
    if w.ndim not in (1, 2) or x.shape[-1:] != w.shape[-1:]:
        raise _fail("linear", f"input {x.shape} does not match weight {w.shape} "
                              f"(expected input (..., {w.shape[-1]}))")
    if x.ndim > 2:
        # one plain GEMM over all leading axes rather than a batched matmul
        lead = x.shape[:-1]
        y = _matmul(x.reshape(-1, x.shape[-1]), w.T)
        y = y.reshape(lead + y.shape[1:])
    else:
        y = _matmul(x, w.T)
    return y if bias is None else y + _t(bias, y.dtype)


def bilinear(input1, input2, weight, bias=None) -> Tensor:
    """y_o = x1^T W_o x2 + b_o with weight (out, in1, in2)."""
    w = _t(weight)
    x1, x2 = _t(input1, w.dtype), _t(input2, w.dtype)
    out, in1, in2 = w.shape
    if x1.shape[-1] != in1 or x2.shape[-1] != in2 or x1.shape[:-1] != x2.shape[:-1]:
        raise _fail("bilinear", f"inputs {x1.shape} and {x2.shape} do not match weight "
                                f"{w.shape} (expected (..., {in1}) and (..., {in2}))")
    lead = x1.shape[:-1]
    a = x1.reshape(-1, in1)
    # (n, in1) @ (in1, out*in2) -> (n, out, in2), then contract in2 with x2 per row
    t = _matmul(a, w.permute(1, 0, 2).reshape(in1, out * in2)).reshape(-1, out, in2)
    y = _matmul(t, x2.reshape(-1, in2, 1)).reshape(lead + (out,))
    return y if bias is None else y + _t(bias, y.dtype)


# -- convolution -------------------------------------------------------------------------------
def _string_padding(fn: str, padding: str, kernel, dilation, stride):
    """(lo, hi) per spatial axis for torch's padding='valid' | 'same'."""
    if padding == "valid":
        return (0,) * len(kernel), (0,) * len(kernel)
    if padding != "same":
        raise _fail(fn, f"padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
    if any(s != 1 for s in stride):
        raise _fail(fn, f"padding='same' needs stride 1, got stride {list(stride)}")
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    lo = tuple(t // 2 for t in total)  # an odd total pads one more at the end, as torch
    return lo, tuple(t - a for t, a in zip(total, lo))


def _pad_spatial_end(x: Tensor, extra: Sequence[int]) -> Tensor:
    pads = (0, 0, 0, 0) + tuple(v for e in extra for v in (0, e))
    return emit("pad", x, pads=pads, mode="constant", value=0.0)


def _conv(fn: str, nsp: int, input, weight, bias, stride, padding, dilation,
          groups: int) -> Tensor:
    w = _t(weight)
    x, unbatched = _batched(_t(input, w.dtype), nsp, fn)
    if w.ndim != nsp + 2:
        raise _fail(fn, f"weight must be (C_out, C_in/groups, {nsp}-D kernel), got {w.shape}")
    stride = _ntuple(stride, nsp, "stride", fn)
    dilation = _ntuple(dilation, nsp, "dilation", fn)
    if isinstance(padding, str):
        lo, hi = _string_padding(fn, padding, w.shape[2:], dilation, stride)
    else:
        lo = hi = _ntuple(padding, nsp, "padding", fn)
    if lo != hi:  # the conv op pads symmetrically; the extra end padding is its own node
        x = _pad_spatial_end(x, [h - l for l, h in zip(lo, hi)])
    y = emit("conv", x, w, stride=stride, padding=lo, dilation=dilation, groups=groups)
    return _unbatch(_channel_bias(y, bias), unbatched)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """1-D convolution of (N, C_in, L) with weight (C_out, C_in/groups, k)."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-D convolution of (N, C_in, H, W) with weight (C_out, C_in/groups, kh, kw)."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(fn: str, nsp: int, input, weight, bias, stride, padding, output_padding,
                    groups, dilation) -> Tensor:
    w = _t(weight)
    x, unbatched = _batched(_t(input, w.dtype), nsp, fn)
    if isinstance(padding, str):
        raise _fail(fn, f"padding must be an int or a tuple, got {padding!r}")
    y = emit("conv_transpose", x, w, stride=_ntuple(stride, nsp, "stride", fn),
             padding=_ntuple(padding, nsp, "padding", fn),
             output_padding=_ntuple(output_padding, nsp, "output_padding", fn),
             dilation=_ntuple(dilation, nsp, "dilation", fn), groups=groups)
    return _unbatch(_channel_bias(y, bias), unbatched)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1) -> Tensor:
    """Transposed 1-D convolution, weight (C_in, C_out/groups, k) as in torch."""
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1) -> Tensor:
    """Transposed 2-D convolution, weight (C_in, C_out/groups, kh, kw) as in torch."""
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


# -- pooling -----------------------------------------------------------------------------------
def _max_pool(fn, nsp, input, kernel_size, stride, padding, dilation, ceil_mode,
              return_indices) -> Tensor:
    if return_indices:
        raise _fail(fn, "return_indices=True is not supported")
    x, unbatched = _batched(_t(input), nsp, fn)
    stride = () if stride is None or stride == [] else _ntuple(stride, nsp, "stride", fn)
    y = emit("max_pool", x, kernel=_ntuple(kernel_size, nsp, "kernel_size", fn),
             stride=stride, padding=_ntuple(padding, nsp, "padding", fn),
             dilation=_ntuple(dilation, nsp, "dilation", fn), ceil_mode=ceil_mode)
    return _unbatch(y, unbatched)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False) -> Tensor:
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation,
                     ceil_mode, return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False) -> Tensor:
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation,
                     ceil_mode, return_indices)


def _avg_pool(fn, nsp, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override=None) -> Tensor:
    x, unbatched = _batched(_t(input), nsp, fn)
    kernel = _ntuple(kernel_size, nsp, "kernel_size", fn)
    stride = () if stride is None or stride == [] else _ntuple(stride, nsp, "stride", fn)
    if divisor_override is not None:
        if ceil_mode or divisor_override <= 0:
            raise _fail(fn, f"divisor_override={divisor_override} is supported with "
                            f"ceil_mode=False and a positive divisor only")
        # every window then lies inside the padded input: sum = mean * kernel size
        count_include_pad = True
    y = emit("avg_pool", x, kernel=kernel, stride=stride,
             padding=_ntuple(padding, nsp, "padding", fn), ceil_mode=ceil_mode,
             count_include_pad=count_include_pad)
    if divisor_override is not None:
        y = y * (float(np.prod(kernel)) / divisor_override)
    return _unbatch(y, unbatched)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True) -> Tensor:
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None) -> Tensor:
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def _adaptive_avg_pool(fn: str, nsp: int, input, output_size) -> Tensor:
    x, unbatched = _batched(_t(input), nsp, fn)
    sizes = (output_size,) * nsp if output_size is None or isinstance(output_size, int) \
        else tuple(output_size)
    if len(sizes) == 1:
        sizes = sizes * nsp
    if len(sizes) != nsp:
        raise _fail(fn, f"output_size={output_size} needs 1 or {nsp} values")
    # None keeps the input's size along that axis, as torch
    sizes = tuple(x.shape[2 + i] if s is None else int(s) for i, s in enumerate(sizes))
    return _unbatch(emit("adaptive_avg_pool", x, output_size=sizes), unbatched)


def adaptive_avg_pool1d(input, output_size) -> Tensor:
    return _adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    return _adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


# -- resampling and padding ----------------------------------------------------------------------
def _nearest_sources(n_in: int, n_out: int, scale: float, exact: bool) -> np.ndarray:
    """Source index of each output position, computed in float32 as torch does."""
    pos = np.arange(n_out, dtype=np.float32) + np.float32(0.5 if exact else 0.0)
    src = np.floor(pos * np.float32(scale)).astype(np.int64)
    return np.minimum(src, n_in - 1)


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest",
                align_corners=None, recompute_scale_factor=None,
                antialias: bool = False) -> Tensor:
    """Resize the spatial axes of (N, C, *spatial): modes "nearest" and "nearest-exact"."""
    fn = "interpolate"
    if mode not in ("nearest", "nearest-exact"):
        raise _fail(fn, f"mode {mode!r} is not supported (nearest, nearest-exact)")
    if align_corners is not None or antialias:
        raise _fail(fn, "align_corners and antialias do not apply to nearest modes")
    x = _t(input)
    nsp = x.ndim - 2
    if nsp < 1:
        raise _fail(fn, f"expected (N, C, *spatial), got shape {x.shape}")
    if (size is None) == (scale_factor is None):
        raise _fail(fn, "give exactly one of size and scale_factor")
    ins = x.shape[2:]
    if size is not None:
        outs = _ntuple(size, nsp, "size", fn)
        scales = [i / o for i, o in zip(ins, outs)]
    else:
        factors = [float(s) for s in (scale_factor if isinstance(scale_factor, (tuple, list))
                                      else [scale_factor] * nsp)]
        if len(factors) != nsp:
            raise _fail(fn, f"scale_factor={scale_factor} needs {nsp} values")
        outs = tuple(int(math.floor(i * f)) for i, f in zip(ins, factors))
        scales = [i / o if recompute_scale_factor else 1.0 / f
                  for i, o, f in zip(ins, outs, factors)]
    if any(o < 1 for o in outs):
        raise _fail(fn, f"output size {outs} is not positive for input {x.shape}")
    sources = [_nearest_sources(i, o, s, mode == "nearest-exact")
               for i, o, s in zip(ins, outs, scales)]
    ratios = [o // i if o % i == 0 else 0 for i, o in zip(ins, outs)]
    if all(r > 0 and np.array_equal(src, np.arange(o) // r)
           for r, src, o in zip(ratios, sources, outs)):
        return emit("upsample_nearest", x, scale=tuple(ratios))
    for axis, src in enumerate(sources):  # general sizes: gather rows along each axis
        if not np.array_equal(src, np.arange(ins[axis])):
            x = emit("take", x, src, axis=2 + axis)
    return x


def _pad_pairs(pad: Sequence[int], ndim: int, fn: str) -> list[tuple[int, int]]:
    """torch's pad list (last axis first, (lo, hi) pairs) as one (lo, hi) per axis."""
    pad = [int(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > ndim:
        raise _fail(fn, f"pad {pad} must have an even length of at most 2 * rank ({2 * ndim})")
    pairs = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        pairs[ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return pairs


def _edge_pad(x: Tensor, pairs: list[tuple[int, int]], mode: str) -> Tensor:
    """replicate / circular padding from slices and concats, one axis at a time."""
    for axis, (lo, hi) in enumerate(pairs):
        if lo == hi == 0:
            continue
        n = x.shape[axis]
        if lo < 0 or hi < 0 or (mode == "circular" and builtins.max(lo, hi) > n):
            raise _fail("pad", f"{mode} padding {lo, hi} is out of range for axis {axis} "
                               f"of size {n}")
        parts = []
        if mode == "replicate":
            first, last = _narrow(x, axis, 0, 1), _narrow(x, axis, n - 1, n)
            shape = list(x.shape)
            if lo:
                parts.append(first.broadcast_to(shape[:axis] + [lo] + shape[axis + 1:]))
            parts.append(x)
            if hi:
                parts.append(last.broadcast_to(shape[:axis] + [hi] + shape[axis + 1:]))
        else:
            parts = ([_narrow(x, axis, n - lo, n)] if lo else []) + [x] + \
                ([_narrow(x, axis, 0, hi)] if hi else [])
        x = emit("concat", *parts, axis=axis)
    return x


def pad(input, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad (or crop, with negative amounts) in torch's order: last axis first."""
    x = _t(input)
    pairs = _pad_pairs(pad, x.ndim, "pad")
    if mode in ("replicate", "circular"):
        return _edge_pad(x, pairs, mode)
    if mode not in ("constant", "reflect"):
        raise _fail("pad", f"mode must be constant, reflect, replicate or circular, "
                           f"got {mode!r}")
    if mode == "reflect" and value:
        raise _fail("pad", "value applies to mode='constant' only")
    flat = tuple(v for pair in pairs for v in pair)
    return emit("pad", x, pads=flat, mode=mode, value=0.0 if value is None else value)


# -- normalization -----------------------------------------------------------------------------
def _trailing_axes(fn: str, x: Tensor, normalized_shape) -> tuple[int, ...]:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else \
        tuple(int(s) for s in normalized_shape)
    if not shape or x.shape[x.ndim - len(shape):] != shape or len(shape) > x.ndim:
        raise _fail(fn, f"normalized_shape {list(shape)} does not match the trailing axes "
                        f"of input {x.shape}")
    return tuple(range(x.ndim - len(shape), x.ndim))


def _affine(y: Tensor, weight, bias) -> Tensor:
    if weight is not None:
        y = y * _t(weight, y.dtype)
    if bias is not None:
        y = y + _t(bias, y.dtype)
    return y


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing `normalized_shape` axes, then scale and shift."""
    x = _t(input)
    y = emit("layer_norm", x, axes=_trailing_axes("layer_norm", x, normalized_shape),
             eps=eps)
    return _affine(y, weight, bias)


def rms_norm(input, normalized_shape, weight=None, eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over the trailing axes; eps None is the dtype's epsilon."""
    x = _t(input)
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    y = emit("rms_norm", x, axes=_trailing_axes("rms_norm", x, normalized_shape), eps=eps)
    return _affine(y, weight, None)


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize each of num_groups channel groups of (N, C, ...); per-channel affine."""
    x = _t(input)
    if x.ndim < 2 or x.shape[1] % num_groups:
        raise _fail("group_norm", f"input {x.shape} must be (N, C, ...) with C divisible "
                                  f"by num_groups={num_groups}")
    y = emit("group_norm", x, groups=num_groups, eps=eps)
    shape = (x.shape[1],) + (1,) * (x.ndim - 2)
    w = None if weight is None else _t(weight, x.dtype).reshape(shape)
    b = None if bias is None else _t(bias, x.dtype).reshape(shape)
    return _affine(y, w, b)


def _is_state(t) -> bool:
    """A graph input holding a module buffer (its updates can be recorded)."""
    return isinstance(t, Tensor) and getattr(t.value, "role", None) == "state" \
        and t.value.data is not None


def _update_running(buffer, batch_value: Tensor, momentum) -> None:
    """torch updates running stats in place; a graph records the new value instead."""
    if not _is_state(buffer):
        return
    from frontend.tracer import update_state
    new = batch_value * momentum + buffer * (1.0 - momentum)
    update_state(buffer.value.data, new.cast(buffer.dtype))


def batch_norm(input, running_mean, running_var, weight=None, bias=None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize (N, C, ...) per channel.

    Training: with the batch's statistics (biased variance); when running_mean/running_var
    are module buffers, their updated values (momentum as torch, unbiased variance) are
    recorded as graph state outputs. Eval: with running_mean and running_var.
    `momentum` may be a Tensor (BatchNorm's cumulative average with momentum=None)."""
    x = _t(input)
    if x.ndim < 2:
        raise _fail("batch_norm", f"expected (N, C, ...), got shape {x.shape}")
    if not training:
        if running_mean is None or running_var is None:
            raise _fail("batch_norm", "eval mode needs running_mean and running_var")
        y = emit("batch_norm", x, _t(running_mean, x.dtype), _t(running_var, x.dtype),
                 eps=eps)
        return _channel_affine(y, weight, bias)
    axes = (0,) + tuple(range(2, x.ndim))
    n = x.numel // x.shape[1]
    if n <= 1:
        raise _fail("batch_norm", f"expected more than 1 value per channel when training, "
                                  f"got input shape {x.shape}")
    mean = x.mean(axis=axes)
    var = x.var(axis=axes, correction=0)
    y = emit("batch_norm", x, mean, var, eps=eps)
    _update_running(running_mean, mean, momentum)
    _update_running(running_var, var * (n / (n - 1)), momentum)
    return _channel_affine(y, weight, bias)


def _channel_affine(y: Tensor, weight, bias) -> Tensor:
    shape = (y.shape[1],) + (1,) * (y.ndim - 2)
    w = None if weight is None else _t(weight, y.dtype).reshape(shape)
    b = None if bias is None else _t(bias, y.dtype).reshape(shape)
    return _affine(y, w, b)


def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None, *,
              axis: int | None = None) -> Tensor:
    """x / max(||x||_p, eps) along `dim`."""
    if out is not None:
        raise _fail("normalize", "out= is not supported: graphs return new tensors")
    x = _t(input)
    d = _dim(dim if axis is None else None, axis, "normalize")
    if p == 2.0:
        norm = (x * x).sum(d, keepdim=True).sqrt()
    else:
        norm = (x.abs() ** float(p)).sum(d, keepdim=True) ** (1.0 / p)
    return x / norm.maximum(eps)


# -- dropout, embedding ------------------------------------------------------------------------
_SALTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def next_salt() -> int:
    """A salt unique within the graph being built, so random ops draw independent streams."""
    b = _b.current()
    salt = _SALTS.get(b, 0)
    _SALTS[b] = salt + 1
    return salt


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when
    not training. The mask depends only on the graph's `seed` input and this call's salt."""
    if not 0.0 <= p <= 1.0:
        raise _fail("dropout", f"p must be in [0, 1], got {p}")
    x = _t(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    from frontend.tracer import seed_tensor
    return emit("dropout", x, seed_tensor(), p=p, salt=next_salt())


def embedding(input, weight, padding_idx: int | None = None, max_norm=None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False,
              sparse: bool = False) -> Tensor:
    """Rows of `weight` (num_embeddings, dim) picked by integer indices.

    With padding_idx, positions holding that index read as zeros (the row torch keeps at
    zero) and send no gradient to it."""
    if max_norm is not None or scale_grad_by_freq:
        raise _fail("embedding", "max_norm and scale_grad_by_freq are not supported")
    w = _t(weight)
    idx = _t(input, "int64")
    if not is_int(idx.dtype):
        raise _fail("embedding", f"indices must be int32 or int64, got {idx.dtype}")
    out = emit("take", w, idx, axis=0)
    if padding_idx is None:
        return out
    n = w.shape[0]
    if not -n <= padding_idx < n:
        raise _fail("embedding", f"padding_idx {padding_idx} is out of range for {n} rows")
    keep = (idx != (padding_idx % n)).cast(w.dtype)
    return out * keep.unsqueeze(-1)


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot vectors along a new last axis (num_classes must be given)."""
    if num_classes < 0:
        raise _fail("one_hot", "num_classes=-1 would depend on the data; pass num_classes")
    return emit("one_hot", _t(tensor, "int64"), num_classes=num_classes, dtype="int64")


# -- losses ------------------------------------------------------------------------------------
def _reduction(fn: str, reduction: str, size_average=None, reduce=None) -> str:
    """torch's legacy size_average/reduce flags mapped onto `reduction`."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in _REDUCTIONS:
        raise _fail(fn, f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return {"none": lambda t: t, "mean": Tensor.mean, "sum": Tensor.sum}[reduction](loss)


def _no_class_weight(fn: str, weight) -> None:
    if weight is not None:
        raise _fail(fn, "class weights (weight=...) are not supported; pass weight=None")


def _class_batch(x: Tensor, target: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Unbatched (C,) logits with a 0-d target gain a batch axis, as torch accepts them."""
    if x.ndim == 1:
        return x.unsqueeze(0), target.reshape((1,) + target.shape), True
    return x, target, False


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100,
                  reduce=None, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross entropy of logits (N, C, ...) with class indices or probabilities."""
    _no_class_weight("cross_entropy", weight)
    reduction = _reduction("cross_entropy", reduction, size_average, reduce)
    x = _t(input)
    t = _t(target, "int64")
    if is_float(t.dtype):  # class probabilities, same shape as the logits
        if t.shape != x.shape:
            raise _fail("cross_entropy", f"probability target {t.shape} must match the "
                                         f"input {x.shape}")
        class_axis = 0 if x.ndim == 1 else 1
        if label_smoothing:
            t = t * (1.0 - label_smoothing) + label_smoothing / x.shape[class_axis]
        loss = -(log_softmax(x, class_axis) * t.cast(x.dtype)).sum(class_axis)
        return _reduce(loss, reduction)
    x, t, unbatched = _class_batch(x, t)
    out = emit("cross_entropy", x, t, ignore_index=ignore_index,
               label_smoothing=label_smoothing, reduction=reduction)
    return out.reshape(()) if unbatched and reduction == "none" else out


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100,
             reduce=None, reduction: str = "mean") -> Tensor:
    """Negative log likelihood of log-probabilities (N, C, ...) at integer targets."""
    _no_class_weight("nll_loss", weight)
    reduction = _reduction("nll_loss", reduction, size_average, reduce)
    x, t, unbatched = _class_batch(_t(input), _t(target, "int64"))
    out = emit("nll_loss", x, t, ignore_index=ignore_index, reduction=reduction)
    return out.reshape(()) if unbatched and reduction == "none" else out


def _pointwise_loss(op: str, fn: str, input, target, reduction, size_average, reduce,
                    weight, error) -> Tensor:
    reduction = _reduction(fn, reduction, size_average, reduce)
    x, y = binary_operands(_t(input), _t(target))
    shape = np.broadcast_shapes(x.shape, y.shape)
    x, y = x.broadcast_to(shape), y.broadcast_to(shape)
    if weight is None:
        return emit(op, x, y, reduction=reduction)
    w = _t(weight, x.dtype)
    if w.shape != x.shape:
        raise _fail(fn, f"weight {w.shape} must have the input's shape {x.shape}")
    loss = error(x - y) * w
    if reduction == "mean":  # torch: weighted sum over the sum of weights
        return loss.sum() / w.sum()
    return _reduce(loss, reduction)


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
             weight=None) -> Tensor:
    """Mean squared error (broadcasting input and target as torch does)."""
    return _pointwise_loss("mse_loss", "mse_loss", input, target, reduction, size_average,
                           reduce, weight, lambda d: d * d)


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
            weight=None) -> Tensor:
    """Mean absolute error (broadcasting input and target as torch does)."""
    return _pointwise_loss("l1_loss", "l1_loss", input, target, reduction, size_average,
                           reduce, weight, Tensor.abs)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction: str = "mean",
                                     pos_weight=None) -> Tensor:
    """Sigmoid + binary cross entropy in one stable expression."""
    reduction = _reduction("binary_cross_entropy_with_logits", reduction, size_average, reduce)
    x = _t(input)
    y = _t(target, x.dtype).cast(x.dtype)
    if y.shape != x.shape:
        raise _fail("binary_cross_entropy_with_logits",
                    f"target {y.shape} must have the input's shape {x.shape}")
    if weight is None and pos_weight is None:
        return emit("bce_with_logits", x, y, reduction=reduction)
    # (1 - y) x + (1 + (pw - 1) y) log(1 + exp(-x)), with log(1 + exp(-x)) kept stable
    log1p_exp = emit("log1p", (-x.abs()).exp()) + (-x).relu()
    coeff = 1.0 if pos_weight is None else (_t(pos_weight, x.dtype) - 1.0) * y + 1.0
    loss = (1.0 - y) * x + coeff * log1p_exp
    if weight is not None:
        loss = loss * _t(weight, x.dtype)
    return _reduce(loss, reduction)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean") -> Tensor:
    """Binary cross entropy of probabilities; the logs are clamped at -100 as in torch."""
    reduction = _reduction("binary_cross_entropy", reduction, size_average, reduce)
    x = _t(input)
    y = _t(target, x.dtype).cast(x.dtype)
    log_p = x.log().maximum(-100.0)
    log_q = (1.0 - x).log().maximum(-100.0)
    loss = -(y * log_p + (1.0 - y) * log_q)
    if weight is not None:
        loss = loss * _t(weight, x.dtype)
    return _reduce(loss, reduction)


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


# -- tensor functions (torch's module-level names) ---------------------------------------------
def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _same_dtype(tensors, fn: str) -> list[Tensor]:
    """The tensors promoted to one dtype, as torch.cat/stack promote."""
    ts = [_t(x) for x in tensors]
    if not ts:
        raise _fail(fn, "needs at least one tensor")
    dtype = ts[0].dtype
    for t in ts[1:]:
        dtype = promote(dtype, t.dtype)
    return [t.cast(dtype) for t in ts]


def cat(tensors, dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Concatenate along an existing axis (dtypes promoted as torch does)."""
    ts = _same_dtype(list(tensors), "cat")
    d = _canon_axis(_dim(dim if axis is None else None, axis, "cat"), ts[0].ndim, "cat")
    return ts[0] if len(ts) == 1 else emit("concat", *ts, axis=d)


concat = concatenate = cat


def stack(tensors, dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Join same-shape tensors along a new axis."""
    ts = _same_dtype(list(tensors), "stack")
    d = _dim(dim if axis is None else None, axis, "stack")
    d = _canon_axis(d, ts[0].ndim + 1, "stack")
    return cat([t.unsqueeze(d) for t in ts], d)


def _narrow(x: Tensor, axis: int, start: int, stop: int) -> Tensor:
    index = (slice(None),) * axis + (slice(start, stop),)
    return x[index]


def split(tensor, split_size_or_sections, dim: int = 0, *,
          axis: int | None = None) -> tuple[Tensor, ...]:
    """Pieces of `split_size` along `dim` (the last may be smaller), or of the given sizes."""
    x = _t(tensor)
    d = _canon_axis(_dim(dim if axis is None else None, axis, "split"), x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size <= 0:
            raise _fail("split", f"split_size must be positive, got {size}")
        sizes = [builtins.min(size, n - s) for s in range(0, n, size)] or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != n or builtins.min(sizes, default=0) < 0:
            raise _fail("split", f"sections {sizes} must be non-negative and sum to the "
                                 f"size {n} of dim {d}")
    starts = np.cumsum([0] + sizes[:-1])
    return tuple(_narrow(x, d, int(s), int(s) + size) for s, size in zip(starts, sizes))


def chunk(input, chunks: int, dim: int = 0, *, axis: int | None = None) -> tuple[Tensor, ...]:
    """Split into `chunks` pieces of ceil(size / chunks) (possibly fewer pieces, as torch)."""
    x = _t(input)
    if chunks <= 0:
        raise _fail("chunk", f"chunks must be positive, got {chunks}")
    d = _canon_axis(_dim(dim if axis is None else None, axis, "chunk"), x.ndim, "chunk")
    return split(x, builtins.max(1, -(-x.shape[d] // chunks)), d)


def unbind(input, dim: int = 0, *, axis: int | None = None) -> tuple[Tensor, ...]:
    """The slices along `dim`, with that axis removed."""
    x = _t(input)
    d = _canon_axis(_dim(dim if axis is None else None, axis, "unbind"), x.ndim, "unbind")
    return tuple(x[(slice(None),) * d + (i,)] for i in range(x.shape[d]))


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    return _t(input).flatten(start_dim, end_dim)


def reshape(input, shape) -> Tensor:
    return _t(input).reshape(shape)


def transpose(input, dim0: int, dim1: int) -> Tensor:
    return _t(input).transpose(dim0, dim1)


def permute(input, dims) -> Tensor:
    return _t(input).permute(dims)


def squeeze(input, dim=None, *, axis=None) -> Tensor:
    return _t(input).squeeze(dim, axis)


def unsqueeze(input, dim: int) -> Tensor:
    return _t(input).unsqueeze(dim)


def where(condition, input, other) -> Tensor:
    """input where condition, else other (Python numbers and arrays accepted)."""
    return _where(condition, input, other)


def _size_args(size) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def _fill_dtype(value, dtype) -> str:
    """torch's default dtype for a fill value: bool, int64 or float32."""
    if dtype is not None:
        return canonical_dtype(dtype)
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    return "int64" if isinstance(value, (int, np.integer)) else "float32"


def full(size, fill_value, *, dtype=None) -> Tensor:
    return emit("full", shape=tuple(int(s) for s in size), value=float(fill_value),
                dtype=_fill_dtype(fill_value, dtype))


def zeros(*size, dtype=None) -> Tensor:
    return full(_size_args(size), 0.0, dtype=dtype)


def ones(*size, dtype=None) -> Tensor:
    return full(_size_args(size), 1.0, dtype=dtype)


def full_like(input, fill_value, *, dtype=None) -> Tensor:
    x = _t(input)
    return full(x.shape, fill_value, dtype=dtype or x.dtype)


def zeros_like(input, *, dtype=None) -> Tensor:
    return full_like(input, 0.0, dtype=dtype)


def ones_like(input, *, dtype=None) -> Tensor:
    return full_like(input, 1.0, dtype=dtype)


def arange(start, end=None, step=1, *, dtype=None) -> Tensor:
    """[start, end) by step; int64 for integer arguments, float32 otherwise (as torch)."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = "int64" if ints else "float32"
    return emit("arange", start=start, stop=end, step=step, dtype=canonical_dtype(dtype))


def sum(input, dim=None, keepdim: bool = False, *, dtype=None, axis=None,
        keepdims: bool = False) -> Tensor:
    return _t(input).sum(dim, keepdim, axis=axis, keepdims=keepdims, dtype=dtype)


def mean(input, dim=None, keepdim: bool = False, *, dtype=None, axis=None,
         keepdims: bool = False) -> Tensor:
    x = _t(input) if dtype is None else _t(input).cast(dtype)
    return x.mean(dim, keepdim, axis=axis, keepdims=keepdims)


def max(input, dim=None, keepdim: bool = False, *, axis=None, keepdims: bool = False):
    """The maximum over `dim` (values only, like Tensor.max), or elementwise with a tensor."""
    return _t(input).max(dim, keepdim, axis=axis, keepdims=keepdims)


def min(input, dim=None, keepdim: bool = False, *, axis=None, keepdims: bool = False):
    """The minimum over `dim` (values only, like Tensor.min), or elementwise with a tensor."""
    return _t(input).min(dim, keepdim, axis=axis, keepdims=keepdims)


def var(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None,
        axis=None, keepdims: bool = False, ddof=None) -> Tensor:
    return _t(input).var(dim, unbiased, keepdim, axis=axis, keepdims=keepdims,
                         correction=correction, ddof=ddof)


def std(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None,
        axis=None, keepdims: bool = False, ddof=None) -> Tensor:
    return var(input, dim, unbiased, keepdim, correction=correction, axis=axis,
               keepdims=keepdims, ddof=ddof).sqrt()


def exp(input) -> Tensor:
    return emit("exp", _t(input))


def log(input) -> Tensor:
    return emit("log", _t(input))


def sqrt(input) -> Tensor:
    return emit("sqrt", _t(input))


def abs(input) -> Tensor:
    return emit("abs", _t(input))


def clamp(input, min=None, max=None) -> Tensor:
    return _t(input).clamp(min, max)


clip = clamp


def maximum(input, other) -> Tensor:
    a, b = binary_operands(input, other)
    return emit("maximum", a, b)


def minimum(input, other) -> Tensor:
    a, b = binary_operands(input, other)
    return emit("minimum", a, b)


def matmul(input, other) -> Tensor:
    """NumPy/torch matmul, 1-D operands and batch broadcasting included."""
    return _matmul(_t(input), _t(other))


mm = bmm = matmul
