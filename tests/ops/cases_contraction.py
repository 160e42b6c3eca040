"""Cases for dlc/ops/contraction.py and contraction_grad.py: matmul, conv, conv_transpose,
the pools and their gradient ops vs torch.nn.functional (gradient ops vs torch.autograd of
the forward op). The torch adapters take the op's attributes under dlc's names.

Cases take part in the VJP checks (tests/ops/test_vjp_table.py) unless grad=False, so they
cover the gradient's edge cases too: strides that do not divide the input, dilation,
groups and depthwise convs, output_padding, overlapping and padded pool windows."""
import math

import torch
import torch.nn.functional as F

from tests.ops.harness import TOL, case, randint, randn, uniform

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


def per_axis(value, nsp: int) -> tuple:
    """A per-axis attribute as torch wants it: one int per spatial axis."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return values * nsp if len(values) == 1 else values


def conv_weight_grad_ref(x, g, kernel, stride=1, padding=0, dilation=1, groups=1):
    """torch.autograd's gradient of conv(x, w) with respect to w, for cotangent g; built
    with create_graph when x or g needs a gradient (the VJP checks differentiate it)."""
    kernel = per_axis(kernel, x.ndim - 2)
    w = torch.zeros((g.shape[1], x.shape[1] // groups) + kernel, dtype=x.dtype,
                    requires_grad=True)
    y = conv_ref(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return torch.autograd.grad(y, w, g, create_graph=x.requires_grad or g.requires_grad)[0]


def input_grad_ref(pool, out_size_attr: str | None = None):
    """torch.autograd's gradient of `pool` with respect to its input, for cotangent g
    (`out_size_attr`: the pool's attribute that takes g's spatial shape)."""
    def ref(g, input_size, **attrs):
        size = per_axis(input_size, g.ndim - 2)
        if out_size_attr:
            attrs[out_size_attr] = tuple(g.shape[2:])
        x = torch.zeros(tuple(g.shape[:2]) + size, dtype=g.dtype, requires_grad=True)
        return torch.autograd.grad(pool(x, **attrs), x, g, create_graph=g.requires_grad)[0]
    return ref


def max_pool_argmax_ref(x, kernel, stride=None, padding=0, dilation=1, ceil_mode=False):
    return MAX_POOL[x.ndim - 2](x, kernel, stride=stride, padding=padding, dilation=dilation,
                                ceil_mode=ceil_mode, return_indices=True)[1]


def small_ints(*shape: int):
    """Integer-valued floats in {0, 1, 2}: pool windows full of ties."""
    return lambda rng, dt: rng.integers(0, 3, shape).astype(dt)


# -- matmul ------------------------------------------------------------------------------------
case("matmul", [randn(3, 4), randn(4, 5)], torch.matmul, id="matmul-2d")
case("matmul", [randn(2, 3, 4), randn(2, 4, 5)], torch.matmul, id="matmul-batched")
case("matmul", [randn(2, 1, 3, 4), randn(5, 4, 6)], torch.matmul, id="matmul-broadcast")
case("matmul", [randn(1, 7), randn(3, 7, 2)], torch.matmul, id="matmul-broadcast-2d")
case("matmul", [randn(2, 3, 4), randn(4, 5)], torch.matmul, id="matmul-batched-2d-b")
case("matmul", [randn(3, 1, 2, 4), randn(1, 2, 4, 3)], torch.matmul, id="matmul-broadcast-ones")
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
# strides that leave input positions past the last window (10 - 3 and 9 + 2 - 3 are not
# multiples of 3): their gradient is zero, restored by conv_transpose's output_padding
conv_case("conv", (1, 2, 10, 9), (3, 2, 3, 2), {"stride": 3, "padding": (0, 1),
                                                "dilation": (1, 2)}, id="conv2d-uneven-stride")
conv_case("conv", (2, 3, 12), (3, 1, 4), {"stride": 3, "groups": 3, "padding": 1},
          id="conv1d-depthwise-uneven-stride")

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
conv_case("conv_transpose", (1, 3, 4, 3), (3, 1, 3, 3),
          {"stride": 2, "padding": 1, "output_padding": (1, 0), "groups": 3},
          id="conv_transpose2d-depthwise-outpad")
# output_padding >= stride (allowed below the dilation): the extra output row is in no
# window of the input
conv_case("conv_transpose", (1, 2, 3, 4), (2, 2, 2, 2),
          {"dilation": 3, "output_padding": (2, 1), "groups": 2},
          id="conv_transpose2d-outpad-past-stride")


def weight_grad_case(x_shape: tuple, w_shape: tuple, attrs: dict | None = None,
                     id: str = "") -> None:
    """A conv_weight_grad case for conv(x, w): g has the conv's output shape.

    Each output sums N * prod(out) products, so float32 gets conv_case's atol rule."""
    attrs = dict(attrs or {})
    nsp = len(x_shape) - 2
    stride, padding, dilation = (per_axis(attrs.get(a, d), nsp) for a, d in
                                 (("stride", 1), ("padding", 0), ("dilation", 1)))
    out = tuple((i + 2 * p - d * (k - 1) - 1) // s + 1 for i, k, s, p, d in
                zip(x_shape[2:], w_shape[2:], stride, padding, dilation))
    g_shape = (x_shape[0], w_shape[0]) + out
    attrs["kernel"] = w_shape[2:]
    inputs = [randn(*x_shape), randn(*g_shape)]
    n = x_shape[0] * math.prod(out)
    op, ref = "conv_weight_grad", conv_weight_grad_ref
    if n * F32_EPS <= TOL["float32"][1]:
        case(op, inputs, ref, attrs, id=id)
        return
    case(op, inputs, ref, attrs, dtypes=("float64",), id=id)
    case(op, inputs, ref, attrs, dtypes=("float32",), atol=n * F32_EPS, id=id)


weight_grad_case((2, 3, 5, 5), (4, 3, 3, 3), id="conv_weight_grad2d")
weight_grad_case((2, 4, 7, 6), (6, 2, 3, 2), {"stride": (2, 3), "padding": 1, "groups": 2},
                 id="conv_weight_grad2d-groups-uneven-stride")
weight_grad_case((1, 3, 7, 7), (3, 1, 3, 3), {"groups": 3, "dilation": 2, "padding": 1},
                 id="conv_weight_grad2d-depthwise-dilation")
weight_grad_case((2, 2, 9), (3, 2, 2), {"stride": 2, "dilation": 3}, id="conv_weight_grad1d")
weight_grad_case((1, 2, 3, 4, 4), (2, 2, 2, 2, 3), {"padding": (0, 1, 1), "stride": 2},
                 id="conv_weight_grad3d")

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
case("max_pool", [randn(1, 2, 4, 5, 5)], max_pool_ref, {"kernel": 2, "stride": 1, "padding": 1},
     id="max_pool3d-overlap-pad")

# max_pool_argmax: the index the max_pool gradient is routed to, vs torch's return_indices;
# small integer inputs make ties, where both take the first maximum in window order
case("max_pool_argmax", [randn(2, 3, 9, 9)], max_pool_argmax_ref, {"kernel": 3, "stride": 2},
     grad=False, id="max_pool_argmax2d")
case("max_pool_argmax", [small_ints(2, 3, 9, 8)], max_pool_argmax_ref,
     {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, grad=False,
     id="max_pool_argmax2d-ties")
case("max_pool_argmax", [small_ints(1, 2, 9, 9)], max_pool_argmax_ref,
     {"kernel": 3, "stride": 1, "dilation": 2, "padding": 1}, grad=False,
     id="max_pool_argmax2d-ties-dilation")
case("max_pool_argmax", [small_ints(2, 2, 10)], max_pool_argmax_ref,
     {"kernel": 4, "stride": 1, "padding": 2}, grad=False, id="max_pool_argmax1d-ties")
case("max_pool_argmax", [small_ints(1, 2, 4, 4, 5)], max_pool_argmax_ref,
     {"kernel": 2, "stride": 1, "padding": 1}, grad=False, id="max_pool_argmax3d-ties")
case("max_pool_argmax", [uniform(-3.0, -1.0, 1, 2, 6, 6)], max_pool_argmax_ref,
     {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, grad=False,
     id="max_pool_argmax2d-negative-pad")

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
case("avg_pool", [randn(1, 2, 4, 5, 5)], avg_pool_ref,
     {"kernel": 3, "stride": (1, 2, 2), "padding": 1, "count_include_pad": False},
     id="avg_pool3d-overlap-pad")

# avg_pool_grad: g has avg_pool's output shape for an input of input_size
AVG_GRAD = input_grad_ref(avg_pool_ref)
case("avg_pool_grad", [randn(2, 3, 4, 4)], AVG_GRAD,
     {"input_size": 8, "kernel": 3, "stride": 2, "padding": 1}, id="avg_pool_grad2d")
case("avg_pool_grad", [randn(2, 3, 4, 4)], AVG_GRAD,
     {"input_size": 8, "kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False},
     id="avg_pool_grad2d-pad-excluded")
case("avg_pool_grad", [randn(1, 2, 4, 4)], AVG_GRAD,
     {"input_size": 7, "kernel": 2, "ceil_mode": True}, id="avg_pool_grad2d-ceil-overhang")
case("avg_pool_grad", [randn(1, 2, 4, 4)], AVG_GRAD,
     {"input_size": 6, "kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True,
      "count_include_pad": False}, id="avg_pool_grad2d-ceil-pad-excluded")
case("avg_pool_grad", [randn(2, 3, 4)], AVG_GRAD,
     {"input_size": 10, "kernel": 4, "stride": 3, "padding": 2, "ceil_mode": True},
     id="avg_pool_grad1d")

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
case("adaptive_avg_pool", [randn(1, 2, 3, 5, 4)], adaptive_ref, {"output_size": (2, 3, 3)},
     id="adaptive3d")

ADAPTIVE_GRAD = input_grad_ref(adaptive_ref, out_size_attr="output_size")
case("adaptive_avg_pool_grad", [randn(2, 3, 3, 3)], ADAPTIVE_GRAD, {"input_size": 7},
     id="adaptive_grad2d-7to3")
case("adaptive_avg_pool_grad", [randn(2, 2, 5, 4)], ADAPTIVE_GRAD, {"input_size": (3, 3)},
     id="adaptive_grad2d-upsample")
case("adaptive_avg_pool_grad", [randn(2, 3, 4)], ADAPTIVE_GRAD, {"input_size": 10},
     id="adaptive_grad1d")
