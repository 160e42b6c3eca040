"""Cases for dlc/ops/contraction.py: matmul, conv, conv_transpose and the pools vs
torch.nn.functional. The torch adapters take the op's attributes under dlc's names."""
import math

import torch
import torch.nn.functional as F

from tests.ops.harness import TOL, case, randint, randn

# torch functions by number of spatial axes
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
ADAPTIVE = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


def conv_ref(x, w, stride=1, padding=0, dilation=1, groups=1):
    return CONV[x.ndim - 2](x, w, stride=stride, padding=padding, dilation=dilation,
                            groups=groups)


def conv_t_ref(x, w, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    return CONV_T[x.ndim - 2](x, w, stride=stride, padding=padding,
                              output_padding=output_padding, groups=groups, dilation=dilation)


def max_pool_ref(x, kernel, stride=None, padding=0, dilation=1, ceil_mode=False):
    return MAX_POOL[x.ndim - 2](x, kernel, stride=stride, padding=padding, dilation=dilation,
                                ceil_mode=ceil_mode)


def avg_pool_ref(x, kernel, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    return AVG_POOL[x.ndim - 2](x, kernel, stride=stride, padding=padding,
                                ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def adaptive_ref(x, output_size):
    return ADAPTIVE[x.ndim - 2](x, output_size)


# -- matmul ------------------------------------------------------------------------------------
case("matmul", [randn(3, 4), randn(4, 5)], torch.matmul, id="matmul-2d")
case("matmul", [randn(2, 3, 4), randn(2, 4, 5)], torch.matmul, id="matmul-batched")
case("matmul", [randn(2, 1, 3, 4), randn(5, 4, 6)], torch.matmul, id="matmul-broadcast")
case("matmul", [randn(1, 7), randn(3, 7, 2)], torch.matmul, id="matmul-broadcast-2d")
# integer inputs: the float dtype label is unused; compared exactly
case("matmul", [randint(-9, 9, 3, 4), randint(-9, 9, 4, 5)], torch.matmul,
     dtypes=("float32",), grad=False, id="matmul-int64")
case("matmul", [randint(-9, 9, 2, 3, 4, dtype="int32"), randint(-9, 9, 4, 2, dtype="int32")],
     torch.matmul, dtypes=("float32",), grad=False, id="matmul-int32")

# -- conv and conv_transpose ------------------------------------------------------------------
F32_EPS = 2.0 ** -23


def conv_case(op: str, x_shape: tuple, w_shape: tuple, attrs: dict | None = None,
              id: str = "") -> None:
    """Register a conv or conv_transpose case on unit-normal inputs.

    float64 keeps the default tolerance. In float32 each output is a sum of up to
    `n` = C_in/groups * prod(kernel) products, added in a different order by dlc (im2col +
    matmul) and torch; each order is within about n * eps32 of the exact sum, which for an
    output near zero exceeds the default atol (1e-6) once n > 8. Such cases get atol
    n * eps32 in float32 (over 500 seeds the largest difference used 0.6 of it)."""
    attrs = dict(attrs or {})
    groups = attrs.get("groups", 1)
    channels = w_shape[1] if op == "conv" else w_shape[0] // groups
    n = channels * math.prod(w_shape[2:])
    ref = conv_ref if op == "conv" else conv_t_ref
    inputs = [randn(*x_shape), randn(*w_shape)]
    if n * F32_EPS <= TOL["float32"][1]:
        case(op, inputs, ref, attrs, id=id)
        return
    case(op, inputs, ref, attrs, dtypes=("float64",), id=id)
    case(op, inputs, ref, attrs, dtypes=("float32",), atol=n * F32_EPS, id=id)


conv_case("conv", (2, 3, 10), (4, 3, 3), {"stride": 2, "padding": 1}, id="conv1d-stride-pad")
conv_case("conv", (2, 4, 11), (6, 2, 3), {"padding": 2, "dilation": 2, "groups": 2},
          id="conv1d-dilation-groups")
conv_case("conv", (2, 3, 7, 7), (4, 3, 3, 3), id="conv2d")
conv_case("conv", (2, 3, 8, 9), (5, 3, 2, 3), {"stride": (2, 1), "padding": (1, 0)},
          id="conv2d-rect-kernel-stride")
conv_case("conv", (1, 2, 9, 8), (3, 2, 3, 3), {"padding": 2, "dilation": (2, 1)},
          id="conv2d-dilation")
conv_case("conv", (2, 4, 6, 6), (6, 2, 3, 3), {"groups": 2, "stride": 2, "padding": 1},
          id="conv2d-groups")
conv_case("conv", (2, 4, 7, 7), (4, 1, 3, 3), {"groups": 4, "padding": 1},
          id="conv2d-depthwise")
conv_case("conv", (1, 3, 6, 6), (6, 1, 3, 3), {"groups": 3, "stride": 2},
          id="conv2d-depthwise-multiplier")
conv_case("conv", (2, 5, 4, 4), (3, 5, 1, 1), id="conv2d-1x1")
conv_case("conv", (1, 2, 4, 5, 5), (3, 2, 2, 3, 3), {"padding": 1, "stride": (1, 2, 2)},
          id="conv3d")

conv_case("conv_transpose", (2, 3, 4, 4), (3, 5, 3, 3), id="conv_transpose2d")
conv_case("conv_transpose", (2, 4, 5, 5), (4, 3, 3, 3),
          {"stride": 2, "padding": 1, "output_padding": 1}, id="conv_transpose2d-stride-outpad")
conv_case("conv_transpose", (1, 2, 4, 5), (2, 3, 3, 2),
          {"dilation": 2, "output_padding": 1, "padding": (1, 0)},
          id="conv_transpose2d-dilation-outpad")
conv_case("conv_transpose", (2, 4, 3, 3), (4, 3, 3, 3), {"groups": 2, "stride": 2},
          id="conv_transpose2d-groups")
conv_case("conv_transpose", (1, 3, 4, 3), (3, 2, 2, 3),
          {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0)},
          id="conv_transpose2d-rect")
conv_case("conv_transpose", (1, 2, 6, 5), (2, 2, 3, 3), {"padding": 3},
          id="conv_transpose2d-padding-past-kernel")
conv_case("conv_transpose", (2, 3, 6), (3, 4, 3),
          {"stride": 2, "padding": 1, "output_padding": 1}, id="conv_transpose1d")

# -- max_pool ----------------------------------------------------------------------------------
case("max_pool", [randn(2, 3, 9, 9)], max_pool_ref, {"kernel": 3, "stride": 2},
     id="max_pool2d-overlap")
case("max_pool", [randn(2, 3, 8, 8)], max_pool_ref, {"kernel": 3, "stride": 2, "padding": 1},
     id="max_pool2d-padding")
case("max_pool", [randn(1, 2, 9, 9)], max_pool_ref,
     {"kernel": 3, "stride": 1, "dilation": 2, "padding": 1}, id="max_pool2d-dilation")
case("max_pool", [randn(1, 2, 8, 8)], max_pool_ref,
     {"kernel": 3, "stride": 2, "ceil_mode": True}, id="max_pool2d-ceil")
case("max_pool", [randn(1, 2, 7, 6)], max_pool_ref,
     {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, id="max_pool2d-ceil-pad")
case("max_pool", [randn(2, 3, 6, 6)], max_pool_ref, {"kernel": 2}, id="max_pool2d-default")
case("max_pool", [randn(1, 2, 7, 8)], max_pool_ref, {"kernel": (3, 2), "stride": (1, 2)},
     id="max_pool2d-rect")
case("max_pool", [randn(2, 3, 11)], max_pool_ref, {"kernel": 3, "stride": 2, "padding": 1},
     id="max_pool1d")

# -- avg_pool ----------------------------------------------------------------------------------
case("avg_pool", [randn(2, 3, 8, 8)], avg_pool_ref, {"kernel": 3, "stride": 2, "padding": 1},
     id="avg_pool2d-pad-included")
case("avg_pool", [randn(2, 3, 8, 8)], avg_pool_ref,
     {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False},
     id="avg_pool2d-pad-excluded")
case("avg_pool", [randn(1, 2, 6, 6)], avg_pool_ref,
     {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True},
     id="avg_pool2d-ceil-pad-included")
case("avg_pool", [randn(1, 2, 6, 6)], avg_pool_ref,
     {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
     id="avg_pool2d-ceil-pad-excluded")
case("avg_pool", [randn(1, 2, 7, 7)], avg_pool_ref, {"kernel": 2, "ceil_mode": True},
     id="avg_pool2d-ceil-overhang")
case("avg_pool", [randn(2, 2, 7, 8)], avg_pool_ref, {"kernel": (2, 3), "stride": (1, 2)},
     id="avg_pool2d-rect")
case("avg_pool", [randn(2, 3, 10)], avg_pool_ref,
     {"kernel": 4, "stride": 3, "padding": 2, "ceil_mode": True, "count_include_pad": False},
     id="avg_pool1d")

# -- adaptive_avg_pool -------------------------------------------------------------------------
case("adaptive_avg_pool", [randn(2, 3, 7, 7)], adaptive_ref, {"output_size": 3},
     id="adaptive2d-7to3")
case("adaptive_avg_pool", [randn(1, 2, 5, 5)], adaptive_ref, {"output_size": 2},
     id="adaptive2d-5to2")
case("adaptive_avg_pool", [randn(2, 3, 7, 5)], adaptive_ref, {"output_size": (3, 2)},
     id="adaptive2d-rect")
case("adaptive_avg_pool", [randn(2, 4, 6, 5)], adaptive_ref, {"output_size": (1, 1)},
     id="adaptive2d-global")
case("adaptive_avg_pool", [randn(2, 2, 3, 3)], adaptive_ref, {"output_size": (5, 4)},
     id="adaptive2d-upsample")
case("adaptive_avg_pool", [randn(2, 3, 10)], adaptive_ref, {"output_size": 4},
     id="adaptive1d")
