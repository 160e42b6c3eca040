"""Linear and Bilinear layers: torch's parameter layouts, keys and default initialization."""
from __future__ import annotations

import math

import numpy as np

from dlc.ir.types import canonical_dtype
from frontend import functional as F
from frontend import init
from frontend.nn.module import Module, Parameter

__all__ = ["Linear", "Bilinear"]


def empty_param(shape, dtype=None) -> np.ndarray:
    """A zeroed parameter array of `dtype` (float32 by default, as torch's default dtype)."""
    return np.zeros(shape, dtype=canonical_dtype(dtype or "float32"))


def _bias_bound(fan_in: int) -> float:
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


class Linear(Module):
    """y = x W^T + b, W (out_features, in_features).

    Initialization as torch: W ~ kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)),
    and b ~ U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(empty_param((out_features, in_features), dtype))
        if bias:
            self.bias = Parameter(empty_param((out_features,), dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self._parameters["weight"], a=math.sqrt(5))
        if self._parameters.get("bias") is not None:
            bound = _bias_bound(self.in_features)
            init.uniform_(self._parameters["bias"], -bound, bound)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self._parameters.get('bias') is not None}")


class Bilinear(Module):
    """y_o = x1^T W_o x2 + b_o, W (out_features, in1_features, in2_features).

    Initialization as torch: W and b ~ U(-1/sqrt(in1), 1/sqrt(in1))."""

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in1_features, self.in2_features = in1_features, in2_features
        self.out_features = out_features
        self.weight = Parameter(empty_param((out_features, in1_features, in2_features), dtype))
        if bias:
            self.bias = Parameter(empty_param((out_features,), dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = _bias_bound(self.in1_features)
        init.uniform_(self._parameters["weight"], -bound, bound)
        if self._parameters.get("bias") is not None:
            init.uniform_(self._parameters["bias"], -bound, bound)

    def forward(self, input1, input2):
        return F.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, "
                f"bias={self._parameters.get('bias') is not None}")
