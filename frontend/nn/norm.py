"""Normalization layers: BatchNorm1d/2d, LayerNorm, GroupNorm, RMSNorm.

Parameters and buffers follow torch (weight/bias, running_mean/running_var and an int64
num_batches_tracked). In training mode BatchNorm normalizes with the batch's statistics and
records the new running statistics as graph state outputs, so a compiled Executable carries
them from call to call.
"""
from __future__ import annotations

import numpy as np

from dlc.errors import DlcError
from frontend import functional as F
from frontend.nn.linear import empty_param
from frontend.nn.module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "RMSNorm"]


def _shape(normalized_shape) -> tuple[int, ...]:
    if isinstance(normalized_shape, (int, np.integer)):
        return (int(normalized_shape),)
    return tuple(int(s) for s in normalized_shape)


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d; subclasses name the input ranks they take."""

    ranks: tuple[int, ...] = (4,)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(empty_param((num_features,), dtype) + 1)
            self.bias = Parameter(empty_param((num_features,), dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", empty_param((num_features,), dtype))
            self.register_buffer("running_var", empty_param((num_features,), dtype) + 1)
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:  # plain attributes, so that state_dict and load_state_dict skip them
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self._buffers["running_mean"][...] = 0
            self._buffers["running_var"][...] = 1
            self._buffers["num_batches_tracked"][...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self._parameters["weight"][...] = 1
            self._parameters["bias"][...] = 0

    def _check_input(self, input) -> None:
        if input.ndim not in self.ranks:
            ranks = " or ".join(map(str, self.ranks))
            raise DlcError(f"{type(self).__name__}: expected a {ranks}-D input, got shape "
                           f"{tuple(input.shape)}")
        if input.shape[1] != self.num_features:
            raise DlcError(f"{type(self).__name__}: expected {self.num_features} channels "
                           f"(axis 1), got input shape {tuple(input.shape)}")

    def _average_factor(self):
        """torch's exponential_average_factor; counts batches when tracking in training."""
        if not (self.training and self.track_running_stats):
            return 0.0 if self.momentum is None else self.momentum
        from frontend.tracer import is_tracing, update_state
        count = self.num_batches_tracked + 1
        if is_tracing():
            update_state(self._buffers["num_batches_tracked"], count)
        if self.momentum is None:  # cumulative moving average
            return 1.0 / count.cast(self._buffers["running_mean"].dtype)
        return self.momentum

    def forward(self, input):
        self._check_input(input)
        factor = self._average_factor()
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight,
                            self.bias, use_batch_stats, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) per channel."""
    ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) per channel."""
    ranks = (4,)


class LayerNorm(Module):
    """Normalize over the trailing `normalized_shape` axes; weight ones, bias zeros."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape, self.eps = _shape(normalized_shape), eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(empty_param(self.normalized_shape, dtype) + 1)
            if bias:
                self.bias = Parameter(empty_param(self.normalized_shape, dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class GroupNorm(Module):
    """Normalize each of num_groups channel groups; per-channel weight ones, bias zeros."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device=None, dtype=None):
        super().__init__()
        if num_channels % num_groups:
            raise DlcError(f"GroupNorm: num_channels={num_channels} must be divisible by "
                           f"num_groups={num_groups}")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.affine = affine
        if affine:
            self.weight = Parameter(empty_param((num_channels,), dtype) + 1)
            self.bias = Parameter(empty_param((num_channels,), dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input):
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class RMSNorm(Module):
    """x / sqrt(mean(x^2) + eps) over the trailing axes, times weight (ones).

    eps=None uses the input dtype's machine epsilon, as torch."""

    def __init__(self, normalized_shape, eps: float | None = None,
                 elementwise_affine: bool = True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape, self.eps = _shape(normalized_shape), eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(empty_param(self.normalized_shape, dtype) + 1)
        else:
            self.register_parameter("weight", None)

    def forward(self, input):
        return F.rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")
