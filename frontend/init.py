"""Parameter initializers under torch.nn.init's names (`dlc.nn.init`).

They fill numpy arrays in place (and return them), drawing from `rng=` (a
numpy Generator) or, by default, from this module's generator, which
`manual_seed(n)` reseeds. Distributions and bounds are torch's: Xavier/Glorot and
He/Kaiming with the same gains and fan rules.
"""
from __future__ import annotations

import math

import numpy as np

from dlc.errors import DlcError

__all__ = ["manual_seed", "default_generator", "calculate_gain", "uniform_", "normal_",
           "zeros_", "ones_", "constant_", "eye_", "xavier_uniform_", "xavier_normal_",
           "kaiming_uniform_", "kaiming_normal_", "trunc_normal_",
           "_calculate_fan_in_and_fan_out"]

_GENERATOR = np.random.default_rng(0)

# gain of each nonlinearity whose gain does not depend on a parameter
_GAINS = {
    "linear": 1.0, "identity": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0,
    "conv_transpose1d": 1.0, "conv_transpose2d": 1.0, "conv_transpose3d": 1.0,
    "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "selu": 3.0 / 4.0,
}


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the default generator of the initializers (and so of new layers)."""
    global _GENERATOR
    _GENERATOR = np.random.default_rng(seed)
    return _GENERATOR


def default_generator() -> np.random.Generator:
    return _GENERATOR


def _rng(rng, generator) -> np.random.Generator:
    """`rng=` wins; a numpy Generator passed as torch's `generator=` is accepted too."""
    if rng is not None:
        return rng
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is not None:
        raise DlcError(f"generator must be a numpy Generator, got {type(generator).__name__}")
    return _GENERATOR


def _fill(tensor: np.ndarray, values) -> np.ndarray:
    if not isinstance(tensor, np.ndarray):
        raise DlcError(f"initializers fill numpy arrays in place, got {type(tensor).__name__}")
    tensor[...] = values
    return tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (leaky_relu's slope is `param`)."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise DlcError(f"negative_slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity not in _GAINS:
        raise DlcError(f"unsupported nonlinearity {nonlinearity!r}; known: "
                       f"{', '.join(sorted(_GAINS) + ['leaky_relu'])}")
    return _GAINS[nonlinearity]


def _calculate_fan_in_and_fan_out(tensor: np.ndarray) -> tuple[int, int]:
    """fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field."""
    if tensor.ndim < 2:
        raise DlcError(f"fan in and fan out need at least 2 dimensions, got shape "
                       f"{tensor.shape}")
    receptive = int(np.prod(tensor.shape[2:], dtype=np.int64))
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _calculate_correct_fan(tensor: np.ndarray, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise DlcError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: np.ndarray, a: float = 0.0, b: float = 1.0, generator=None, *,
             rng: np.random.Generator | None = None) -> np.ndarray:
    """Fill with U(a, b)."""
    return _fill(tensor, _rng(rng, generator).uniform(a, b, tensor.shape))


def normal_(tensor: np.ndarray, mean: float = 0.0, std: float = 1.0, generator=None, *,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """Fill with N(mean, std^2)."""
    return _fill(tensor, _rng(rng, generator).normal(mean, std, tensor.shape))


def trunc_normal_(tensor: np.ndarray, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0, generator=None, *,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Fill with N(mean, std^2) restricted to [a, b] (redrawing values outside)."""
    gen = _rng(rng, generator)
    values = gen.normal(mean, std, tensor.shape)
    outside = (values < a) | (values > b)
    while outside.any():
        values[outside] = gen.normal(mean, std, int(outside.sum()))
        outside = (values < a) | (values > b)
    return _fill(tensor, values)


def constant_(tensor: np.ndarray, val: float) -> np.ndarray:
    return _fill(tensor, val)


def zeros_(tensor: np.ndarray) -> np.ndarray:
    return _fill(tensor, 0)


def ones_(tensor: np.ndarray) -> np.ndarray:
    return _fill(tensor, 1)


def eye_(tensor: np.ndarray) -> np.ndarray:
    """The identity matrix (2-D arrays)."""
    if tensor.ndim != 2:
        raise DlcError(f"eye_ needs a 2-D array, got shape {tensor.shape}")
    return _fill(tensor, np.eye(*tensor.shape))


def xavier_uniform_(tensor: np.ndarray, gain: float = 1.0, generator=None, *,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Glorot uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator, rng=rng)


def xavier_normal_(tensor: np.ndarray, gain: float = 1.0, generator=None, *,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Glorot normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator, rng=rng)


def _kaiming_std(tensor: np.ndarray, a: float, mode: str, nonlinearity: str) -> float | None:
    if tensor.size == 0:  # nothing to fill (torch warns and returns)
        return None
    return calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode))


def kaiming_uniform_(tensor: np.ndarray, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None, *,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """He uniform: U(-b, b), b = gain(nonlinearity, a) * sqrt(3 / fan)."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator, rng=rng)


def kaiming_normal_(tensor: np.ndarray, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None, *,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """He normal: N(0, std^2), std = gain(nonlinearity, a) / sqrt(fan)."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    return normal_(tensor, 0.0, std, generator, rng=rng)
