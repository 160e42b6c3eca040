"""The random ops and the counter-based hash behind them.

The random ops (kind elementwise): random_uniform is the one random primitive; dropout and
random_normal decompose into it. Every random value is a pure function of an explicit int64
scalar `seed` input, the op's `salt` attribute and the element's flat row-major index i, so
every backend reproduces it bit for bit. The hash uses only 32-bit unsigned multiply, xor and
shift, all wrapping modulo 2**32:

    mix(h):  h ^= h >> 16;  h *= 0x7FEB352D;  h ^= h >> 15;  h *= 0x846CA68B;  h ^= h >> 16

    s0, s1 = low and high 32-bit words of the seed (two's complement)
    a = mix(mix(mix(s0 ^ 0x243F6A88) ^ s1) ^ salt)      # two stream keys, 64 bits in all:
    b = mix(mix(mix(s1 ^ 0x85A308D3) ^ salt) ^ s0)      # computed once per op, not per element
    hash(i) = mix(mix(i ^ a) ^ b)
    u(i) = (hash(i) >> 8) * 2**-24                        # exact in float32: [0, 1 - 2**-24]

The mixer is a bijection of uint32 with strong avalanche; the second key word injected after
the first round keeps the streams of two keys from being permutations of each other. The
counter i is a uint32, so a random op covers at most 2**32 counters, and salt is in
[0, 2**32).

- random_uniform(seed){shape, dtype, salt}: u(i) in dtype float32 or float64 (both exact).
- dropout(x, seed){p, salt}: keep x[i] / (1 - p) where u(i) >= p, else 0. As an integer test,
  (hash(i) >> 8) >= ceil(p * 2**24), so no float rounding of p changes the mask; p = 0 is the
  identity, p = 1 gives zeros.
- random_normal(seed){shape, dtype, salt}: Box-Muller on the counters 2i and 2i+1:
  z(i) = sqrt(-2 log(1 - u(2i))) * cos(2 pi u(2i+1)); 1 - u >= 2**-24 so the log is finite
  (|z| <= 5.77). Computed in float64 for float64, else in float32.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from dlc.errors import ShapeError
from dlc.ir.builder import emit
from dlc.ir.types import FLOATS, TensorType
from dlc.ops.nn import compute_dtype, filled, float_input
from dlc.ops.registry import ELEMENTWISE, Attr, OpDef, register
from dlc.tensor import Tensor, scalar


def _c(value: float, x: np.ndarray):
    """A scalar constant in x's dtype, so arithmetic with it keeps x's precision."""
    return x.dtype.type(value)


# -- the counter-based RNG -------------------------------------------------------------------
MASK32 = 0xFFFFFFFF
MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
KEY_CONSTANTS = (0x243F6A88, 0x85A308D3)
MAX_COUNTERS = 2 ** 32
UNIFORM_BITS = 24  # u = (hash >> 8) * 2**-24


def mix32(h: np.ndarray) -> np.ndarray:
    """The multiply-xorshift mixer on a uint32 array (multiplies wrap modulo 2**32)."""
    m1, m2 = (np.uint32(m) for m in MIX_MULTIPLIERS)
    h = h ^ (h >> np.uint32(16))
    h = h * m1
    h = h ^ (h >> np.uint32(15))
    h = h * m2
    return h ^ (h >> np.uint32(16))


def _word(value: int) -> np.ndarray:
    # a 1-element array, not a numpy scalar: array arithmetic wraps without a warning
    return np.array([value & MASK32], dtype=np.uint32)


def stream_keys(seed: int, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """The two 32-bit keys (a, b) of the stream of (seed, salt), as 1-element arrays."""
    s0, s1, salt_word = _word(seed), _word(seed >> 32), _word(salt)
    a = mix32(mix32(mix32(s0 ^ _word(KEY_CONSTANTS[0])) ^ s1) ^ salt_word)
    b = mix32(mix32(mix32(s1 ^ _word(KEY_CONSTANTS[1])) ^ salt_word) ^ s0)
    return a, b


def random_bits(seed: int, salt: int, count: int) -> np.ndarray:
    """hash(i) >> 8 for the counters i = 0 .. count-1: uint32 values below 2**24."""
    a, b = stream_keys(int(seed), salt)
    i = np.arange(count, dtype=np.uint32)
    return mix32(mix32(i ^ a) ^ b) >> np.uint32(32 - UNIFORM_BITS)


def uniform_values(seed: int, salt: int, count: int, dtype: str) -> np.ndarray:
    """u(i) = (hash(i) >> 8) * 2**-24, exact in float32 and float64."""
    return (random_bits(seed, salt, count) * 2.0 ** -UNIFORM_BITS).astype(dtype)


def dropout_threshold(p: float) -> int:
    """u >= p  <=>  (hash >> 8) >= ceil(p * 2**24) (p * 2**24 is exact in float64)."""
    return math.ceil(p * 2 ** UNIFORM_BITS)


def _check_seed(op: str, seed: TensorType) -> None:
    if seed.dtype != "int64" or seed.shape != ():
        raise ShapeError(f"{op}: the seed must be an int64 scalar, got {seed}")


def _check_counters(op: str, count: int, shape: Sequence[int]) -> None:
    if count > MAX_COUNTERS:
        raise ShapeError(f"{op}: shape {tuple(shape)} needs {count} random counters, more "
                         f"than the {MAX_COUNTERS} a 32-bit counter covers")


def _salt_normalize(op: str, extra: Callable[[dict], None] | None = None):
    def normalize(types, attrs):
        if not 0 <= attrs["salt"] < 2 ** 32:
            raise ShapeError(f"{op}: salt must be in [0, 2**32), got {attrs['salt']}")
        if any(d < 0 for d in attrs.get("shape", ())):
            raise ShapeError(f"{op}: negative dimension in shape {attrs['shape']}")
        if extra is not None:
            extra(attrs)
        return attrs
    return normalize


def _dropout_p(attrs: dict) -> None:
    if not 0.0 <= attrs["p"] <= 1.0:
        raise ShapeError(f"dropout: p must be in [0, 1], got {attrs['p']}")


# -- dropout -----------------------------------------------------------------------------------
def _dropout_infer(types, attrs):
    x, seed = types
    float_input("dropout", x)
    _check_seed("dropout", seed)
    _check_counters("dropout", x.size, x.shape)
    return x


def _dropout_ref(x, seed, p, salt):
    if p == 0.0:
        return x.copy()
    if p == 1.0:
        return np.zeros_like(x)
    keep = random_bits(int(seed), salt, x.size).reshape(x.shape) >= dropout_threshold(p)
    return np.where(keep, x / _c(1.0 - p, x), _c(0, x))


def _dropout_dec(inputs, attrs):
    x, seed = inputs
    p, salt = attrs["p"], attrs["salt"]
    if p == 0.0:
        return x
    if p == 1.0:
        return filled(x.shape, 0.0, x.dtype)
    u = emit("random_uniform", seed, shape=x.shape, dtype="float32", salt=salt)
    # the threshold ceil(p * 2**24) * 2**-24 is exact in float32: the same mask as the
    # integer test of the reference
    threshold = dropout_threshold(p) * 2.0 ** -UNIFORM_BITS
    keep = u >= scalar(threshold, "float32")
    return emit("where", keep, x / scalar(1.0 - p, x.dtype), scalar(0, x.dtype))


register(OpDef(
    "dropout", ELEMENTWISE, _dropout_infer, _dropout_ref,
    attrs=(Attr("p", "float"), Attr("salt", "int", 0)), arity=2,
    normalize=_salt_normalize("dropout", _dropout_p), decompose=_dropout_dec, nondiff=(1,),
    doc="x / (1 - p) where the counter-based uniform u(i) >= p, else 0 (see the module "
        "docstring); p = 0 is the identity, p = 1 gives zeros."))


# -- random_uniform, random_normal -----------------------------------------------------------
def _random_infer(op: str, dtypes: Sequence[str], counters_per_element: int):
    def infer(types, attrs):
        (seed,) = types
        _check_seed(op, seed)
        if attrs["dtype"] not in dtypes:
            raise ShapeError(f"{op}: dtype must be one of {', '.join(dtypes)}, got "
                             f"{attrs['dtype']}")
        out = TensorType(attrs["shape"], attrs["dtype"])
        _check_counters(op, counters_per_element * out.size, out.shape)
        return out
    return infer


def _random_uniform_ref(seed, shape, dtype, salt):
    count = int(np.prod(shape, dtype=np.int64))
    return uniform_values(int(seed), salt, count, dtype).reshape(shape)


def _random_normal_ref(seed, shape, dtype, salt):
    count = int(np.prod(shape, dtype=np.int64))
    cd = compute_dtype(dtype)
    u = uniform_values(int(seed), salt, 2 * count, cd)
    u1, u2 = u[0::2], u[1::2]
    # the same operations in the same order as the decomposition below
    radius = np.sqrt(np.log(_c(1.0, u1) - u1) * _c(-2.0, u1))
    z = radius * np.cos(u2 * _c(2 * math.pi, u1))
    return z.astype(dtype).reshape(shape)


def _last_axis_slice(t: Tensor, index: int) -> Tensor:
    """t[..., index] of a (..., 2) tensor, by slice and reshape."""
    starts = (0,) * (t.ndim - 1) + (index,)
    stops = t.shape[:-1] + (index + 1,)
    part = emit("slice", t, starts=starts, stops=stops, steps=(1,) * t.ndim)
    return part.reshape(t.shape[:-1])


def _random_normal_dec(inputs, attrs):
    (seed,) = inputs
    shape, dtype = attrs["shape"], attrs["dtype"]
    cd = compute_dtype(dtype)
    # counters 2i and 2i+1 are the last axis of a (*shape, 2) uniform draw
    u = emit("random_uniform", seed, shape=tuple(shape) + (2,), dtype=cd, salt=attrs["salt"])
    u1, u2 = _last_axis_slice(u, 0), _last_axis_slice(u, 1)
    radius = ((1.0 - u1).log() * -2.0).sqrt()
    return (radius * (u2 * (2 * math.pi)).cos()).cast(dtype)


_RANDOM_ATTRS = (Attr("shape", "ints"), Attr("dtype", "dtype", "float32"), Attr("salt", "int", 0))
register(OpDef(
    "random_uniform", ELEMENTWISE, _random_infer("random_uniform", ("float32", "float64"), 1),
    _random_uniform_ref, attrs=_RANDOM_ATTRS, arity=1,
    normalize=_salt_normalize("random_uniform"), nondiff=(0,),
    doc="u(i) = (hash(seed, salt, i) >> 8) * 2**-24 in [0, 1) (see the module docstring); "
        "float32 or float64."))
register(OpDef(
    "random_normal", ELEMENTWISE, _random_infer("random_normal", FLOATS, 2),
    _random_normal_ref, attrs=_RANDOM_ATTRS, arity=1,
    normalize=_salt_normalize("random_normal"), decompose=_random_normal_dec, nondiff=(0,),
    doc="Standard normal by Box-Muller on the uniforms of counters 2i and 2i+1."))
