"""Linear maps, convolutions and pooling."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dlc.ir.builder import emit
from dlc.tensor import Tensor
from dlc.tensor import matmul as _matmul
from frontend.functional._common import _batched, _channel_bias, _fail, _ntuple, _t, _unbatch


# -- linear ------------------------------------------------------------------------------------
def linear(input, weight, bias=None) -> Tensor:
    """x @ weight.T + bias, weight (out_features, in_features) as in torch."""
    w = _t(weight)
    x = _t(input, w.dtype)
    if w.ndim not in (1, 2) or x.shape[-1:] != w.shape[-1:]:
        raise _fail("linear", f"input {x.shape} does not match weight {w.shape} "
                              f"(expected input (..., {w.shape[-1]}))")
    if x.ndim > 2 and w.ndim == 2:
        # one plain GEMM over all leading axes rather than a batched matmul; the bias is
        # added before the reshape back so that fusion makes it the GEMM's epilogue
        lead = x.shape[:-1]
        y = _matmul(x.reshape(-1, x.shape[-1]), w.T)
        if bias is not None:
            y = y + _t(bias, y.dtype)
        return y.reshape(lead + y.shape[1:])
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
