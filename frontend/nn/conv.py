"""Convolution layers: Conv1d/2d and ConvTranspose1d/2d with torch's weight layouts,
state_dict keys and default initialization (padding_mode="zeros")."""
from __future__ import annotations

import math

from dlc.errors import DlcError
from frontend import functional as F
from frontend import init
from frontend.nn.linear import empty_param
from frontend.nn.module import Module, Parameter

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]


def _tuple(value, n: int, name: str, cls: str) -> tuple[int, ...]:
    values = (int(value),) * n if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != n:
        raise DlcError(f"{cls}: {name}={value!r} needs {n} values")
    return values


class _ConvNd(Module):
    """Shared constructor: hyperparameters, weight/bias arrays, torch's init."""

    nsp = 2
    transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding,
                 dilation, groups: int, bias: bool, padding_mode: str, dtype,
                 output_padding=0):
        super().__init__()
        cls, n = type(self).__name__, self.nsp
        if in_channels % groups or out_channels % groups:
            raise DlcError(f"{cls}: in_channels={in_channels} and out_channels={out_channels} "
                           f"must be divisible by groups={groups}")
        if padding_mode != "zeros":
            raise DlcError(f"{cls}: padding_mode={padding_mode!r} is not supported "
                           f"(only 'zeros')")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _tuple(kernel_size, n, "kernel_size", cls)
        self.stride = _tuple(stride, n, "stride", cls)
        self.padding = padding if isinstance(padding, str) else \
            _tuple(padding, n, "padding", cls)
        self.dilation = _tuple(dilation, n, "dilation", cls)
        self.output_padding = _tuple(output_padding, n, "output_padding", cls)
        self.padding_mode = padding_mode
        if self.transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(empty_param(shape, dtype))
        if bias:
            self.bias = Parameter(empty_param((out_channels,), dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's default: kaiming_uniform_(a=sqrt(5)) weights, U(+-1/sqrt(fan_in)) bias,
        fan_in taken from the weight's layout (for transposed convs: out/groups * kernel)."""
        weight = self._parameters["weight"]
        init.kaiming_uniform_(weight, a=math.sqrt(5))
        if self._parameters.get("bias") is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self._parameters["bias"], -bound, bound)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0,) * self.nsp:
            text += f", padding={self.padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text


class _Conv(_ConvNd):
    """Conv1d and Conv2d: PyTorch's constructor, forward through the functional form `_conv`
    of the subclass (device is accepted for source compatibility and ignored)."""

    _conv = staticmethod(F.conv2d)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, dtype)

    def forward(self, input):
        return self._conv(input, self.weight, self.bias, self.stride, self.padding,
                          self.dilation, self.groups)


class Conv1d(_Conv):
    """1-D convolution over (N, C_in, L); weight (C_out, C_in/groups, k)."""

    nsp = 1
    _conv = staticmethod(F.conv1d)


class Conv2d(_Conv):
    """2-D convolution over (N, C_in, H, W); weight (C_out, C_in/groups, kh, kw)."""

    nsp = 2
    _conv = staticmethod(F.conv2d)


class _ConvTransposeNd(_ConvNd):
    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, output_padding,
                 groups, bias, dilation, padding_mode, dtype):
        if isinstance(padding, str):
            raise DlcError(f"{type(self).__name__}: padding must be an int or a tuple, "
                           f"got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, dtype, output_padding)

    def _output_padding(self, input, output_size) -> tuple[int, ...]:
        """The output_padding that makes the output `output_size` (torch's rule)."""
        if output_size is None:
            return self.output_padding
        n = self.nsp
        size = tuple(int(s) for s in output_size)[-n:]
        if len(size) != n:
            raise DlcError(f"{type(self).__name__}: output_size {output_size} needs {n} "
                           f"spatial sizes")
        extra = []
        for i in range(n):
            smallest = ((input.shape[input.ndim - n + i] - 1) * self.stride[i]
                        - 2 * self.padding[i] + self.dilation[i] * (self.kernel_size[i] - 1)
                        + 1)
            if not smallest <= size[i] < smallest + self.stride[i]:
                raise DlcError(f"{type(self).__name__}: output_size {tuple(size)} is not "
                               f"reachable from input {input.shape} (axis {i} must lie in "
                               f"[{smallest}, {smallest + self.stride[i] - 1}])")
            extra.append(size[i] - smallest)
        return tuple(extra)


class _ConvTranspose(_ConvTransposeNd):
    """ConvTranspose1d and ConvTranspose2d: PyTorch's constructor, forward through the
    functional form `_conv_t` of the subclass (device is accepted and ignored)."""

    _conv_t = staticmethod(F.conv_transpose2d)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding,
                         output_padding, groups, bias, dilation, padding_mode, dtype)

    def forward(self, input, output_size=None):
        return self._conv_t(input, self.weight, self.bias, self.stride, self.padding,
                            self._output_padding(input, output_size), self.groups,
                            self.dilation)


class ConvTranspose1d(_ConvTranspose):
    """Transposed 1-D convolution; weight (C_in, C_out/groups, k)."""

    nsp = 1
    _conv_t = staticmethod(F.conv_transpose1d)


class ConvTranspose2d(_ConvTranspose):
    """Transposed 2-D convolution; weight (C_in, C_out/groups, kh, kw)."""

    nsp = 2
    _conv_t = staticmethod(F.conv_transpose2d)
