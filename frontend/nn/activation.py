"""Activation layers: thin modules over the functional forms, under torch's names."""
from __future__ import annotations

from frontend import functional as F
from frontend.nn.module import Module

__all__ = ["Identity", "ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Tanh",
           "Softplus", "ELU", "Hardtanh", "LogSigmoid", "Softmax", "LogSoftmax"]


class Identity(Module):
    """Returns its input; takes (and ignores) any constructor arguments, as torch."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class _Stateless(Module):
    """An activation without parameters: forward applies `fn` with the stored options."""

    fn = staticmethod(F.relu)
    options: tuple[str, ...] = ()

    def forward(self, input):
        return type(self).fn(input, **{k: getattr(self, k) for k in self.options})

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in self.options)


class ReLU(_Stateless):
    fn = staticmethod(F.relu)

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace


class ReLU6(_Stateless):
    fn = staticmethod(F.relu6)

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace


class LeakyReLU(_Stateless):
    fn = staticmethod(F.leaky_relu)
    options = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace


class GELU(_Stateless):
    fn = staticmethod(F.gelu)
    options = ("approximate",)

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate


class SiLU(_Stateless):
    fn = staticmethod(F.silu)

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace


class Sigmoid(_Stateless):
    fn = staticmethod(F.sigmoid)


class Tanh(_Stateless):
    fn = staticmethod(F.tanh)


class LogSigmoid(_Stateless):
    fn = staticmethod(F.logsigmoid)


class Softplus(_Stateless):
    fn = staticmethod(F.softplus)
    options = ("beta", "threshold")

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold


class ELU(_Stateless):
    fn = staticmethod(F.elu)
    options = ("alpha",)

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace


class Hardtanh(_Stateless):
    fn = staticmethod(F.hardtanh)
    options = ("min_val", "max_val")

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace


class Softmax(_Stateless):
    fn = staticmethod(F.softmax)
    options = ("dim",)

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim


class LogSoftmax(_Stateless):
    fn = staticmethod(F.log_softmax)
    options = ("dim",)

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim
