"""Math helpers the generated kernels call, written with core tl ops only.

libdevice (tl.extra.cuda.libdevice) does not exist under TRITON_INTERPRET=1, so every
function beyond exp/log/sqrt/sin/cos/floor/ceil/fma is written here from those, with
polynomials where exp - 1 or log(1 + x) would cancel. The same source runs on a GPU and in
the interpreter, so what the CPU tests check is what the GPU runs. Accuracy (tested against
math.* in tests/backends/test_triton_math.py): expm1, log1p, tanh, sigmoid to a few float32
ulps and ~1e-15 in float64; dlc_erf32/dlc_erfc32 to ~2e-7 relative; the float64 forms
(dlc_erf64/dlc_erfc64) follow the eager reference's series and continued fraction.

The random stream is the op table's counter-based hash (see dlc/ops/random.py): uint32 multiply,
xor and shift, which wrap identically on every backend.
"""
from __future__ import annotations

import math

# erf(x) = 2/sqrt(pi) * sum_k (-1)^k x^(2k+1) / (k! (2k+1)): Horner coefficients in x^2
_SERIES = [(-1) ** k * 2.0 / math.sqrt(math.pi) / (math.factorial(k) * (2 * k + 1))
           for k in range(26)]


def _horner(var: str, coeffs: list[float], indent: str = "    ") -> str:
    """Source of sum_k coeffs[k] var^k by Horner's rule (highest degree first)."""
    expr = repr(coeffs[-1])
    for c in reversed(coeffs[:-1]):
        expr = f"{c!r} + {var} * ({expr})"
    return expr


def _taylor_expm1_coeffs(terms: int) -> list[float]:
    # expm1(x) / x = sum_k x^k / (k+1)!
    return [1.0 / math.factorial(k + 1) for k in range(terms)]


def _atanh_series(terms: int) -> list[float]:
    # 2 atanh(s) / s = 2 * sum_k s^(2k) / (2k+1), as a polynomial in s^2
    return [2.0 / (2 * k + 1) for k in range(terms)]


# Numerical Recipes' Chebyshev fit: erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2), z >= 0,
# fractional error < 1.2e-7 everywhere
_ERFC_FIT = [-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
             -1.13520398, 1.48851587, -0.82215223, 0.17087277]

HELPERS = f'''
@triton.jit
def dlc_expm1(x):
    # exp(x) - 1: a Taylor polynomial below |x| < 0.5 (no cancellation), exp(x) - 1 above
    small = x * ({_horner("x", _taylor_expm1_coeffs(18))})
    return tl.where(tl.abs(x) < 0.5, small, tl.exp(x) - 1.0)


@triton.jit
def dlc_log1p(x):
    # log(1 + x) = 2 atanh(s), s = x / (2 + x), by its series below |x| < 0.5
    s = x / (2.0 + x)
    s2 = s * s
    small = s * ({_horner("s2", _atanh_series(21))})
    return tl.where(tl.abs(x) < 0.5, small, tl.log(1.0 + x))


@triton.jit
def dlc_tanh(x):
    # tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|)): no overflow, no cancellation near 0
    t = dlc_expm1(-2.0 * tl.abs(x))
    y = -t / (2.0 + t)
    return tl.where(x < 0, -y, y)


@triton.jit
def dlc_sigmoid(x):
    # exp of -|x| never overflows; both branches are exact rearrangements
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@triton.jit
def dlc_erfc32(z):
    # erfc(z) for z >= 0 to ~1.2e-7 relative (Chebyshev fit in t = 1 / (1 + z/2))
    t = 1.0 / (1.0 + 0.5 * z)
    return t * tl.exp(-z * z + ({_horner("t", _ERFC_FIT)}))


@triton.jit
def dlc_gelu32(x):
    # 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), erfc from the fit above with
    # its exponent -x^2/2 split as hi^2 + lo (x + hi): hi has 8 bits, so -hi^2/2 is exact
    # and gets an exp of its own, so the far negative tail keeps its relative accuracy
    # (x / sqrt 2 rounded, squared and summed would cost ~5e-6 at x = -9)
    ax = tl.abs(x)
    hi = tl.floor(ax * 16.0) * 0.0625
    t = 1.0 / (1.0 + 0.5 * ({1 / math.sqrt(2.0)!r} * ax))
    small = ({_horner("t", _ERFC_FIT)}) - 0.5 * (ax - hi) * (ax + hi)
    tail = t * tl.exp(-0.5 * (hi * hi)) * tl.exp(small)
    return 0.5 * x * tl.where(x < 0, tail, 2.0 - tail)


@triton.jit
def dlc_erf32(x):
    # series below |x| < 0.5 (keeps relative accuracy near 0), 1 - erfc(|x|) above
    ax = tl.abs(x)
    x2 = x * x
    small = x * ({_horner("x2", _SERIES[:12])})
    big = 1.0 - dlc_erfc32(ax)
    return tl.where(ax < 0.5, small, tl.where(x < 0, -big, big))


@triton.jit
def dlc_erfc_fraction64(z):
    # erfc(z), z >= 1.5: exp(-z^2) / sqrt(pi) / (z + (1/2) / (z + 1 / (z + (3/2) / ...)))
    t = z
    for j in range(0, 80):
        t = z + (0.5 * (80 - j)) / t
    hi = tl.floor(z * 4096.0) / 4096.0
    e = tl.exp(-hi * hi) * tl.exp(-(z - hi) * (z + hi))
    return e / ({math.sqrt(math.pi)!r} * t)


@triton.jit
def dlc_erf64(x):
    # the eager reference's method: series below 1.5, continued fraction to 6, then +-1
    ax = tl.abs(x)
    x2 = ax * ax
    small = ax * ({_horner("x2", _SERIES)})
    mid = 1.0 - dlc_erfc_fraction64(tl.maximum(ax, 1.5))
    out = tl.where(ax < 1.5, small, tl.where(ax < 6.0, mid, 1.0))
    out = tl.where(ax != ax, ax, out)
    return tl.where(x < 0, -out, out)


@triton.jit
def dlc_erfc64(z):
    # erfc(z) for z >= 0
    return tl.where(z < 1.5, 1.0 - dlc_erf64(z), dlc_erfc_fraction64(tl.maximum(z, 1.5)))


@triton.jit
def dlc_pow(a, b):
    # |a|^b = exp(b log|a|), signed for a negative base (-0.0 too) and an odd integer
    # exponent; NaN for a negative base and a fractional exponent. One shape first: the
    # flags below meet in `&`/`|`, which the interpreter cannot apply to a 0-d comparison
    # and a block (it splats the 0-d one as float)
    a, b = tl.broadcast(a, b)
    mag = tl.exp(b * tl.log(tl.abs(a)))
    whole = tl.floor(b) == b
    odd = whole & (b - 2.0 * tl.floor(0.5 * b) == 1.0)
    neg = a < 0
    signed = neg | ((a == 0) & (1.0 / a < 0))
    out = tl.where(signed & odd, -mag, mag)
    out = tl.where(neg & (whole == 0), float("nan"), out)
    return tl.where((b == 0) | (a == 1), 1.0, out)


@triton.jit
def dlc_trunc(q):
    return tl.where(q < 0, tl.ceil(q), tl.floor(q))


@triton.jit
def dlc_fmod(a, b):
    # C fmod: a - trunc(a/b) b, the product subtracted by one fma (exact), and the quotient
    # corrected where a/b rounded across an integer
    r = tl.fma(-dlc_trunc(a / b), b, a)
    ab = tl.abs(b)
    r = tl.where((r != 0) & ((r < 0) != (a < 0)), tl.where(a < 0, r - ab, r + ab), r)
    r = tl.where(tl.abs(r) >= ab, tl.where(a < 0, r + ab, r - ab), r)
    return r


@triton.jit
def dlc_mod_float(a, b):
    # numpy/torch remainder: the divisor's sign
    r = dlc_fmod(a, b)
    fix = (r != 0) & ((b < 0) != (r < 0))
    return tl.where(fix, r + b, r)


@triton.jit
def dlc_floor_div_float(a, b):
    # numpy's npy_divmod: (a - fmod(a, b)) / b, corrected to the floor and rounded
    m = dlc_fmod(a, b)
    div = (a - m) / b
    fix = (m != 0) & ((b < 0) != (m < 0))
    div = tl.where(fix, div - 1.0, div)
    fl = tl.floor(div)
    fl = tl.where(div - fl > 0.5, fl + 1.0, fl)
    return tl.where(b == 0, a / b, tl.where(div == 0, div, fl))


@triton.jit
def dlc_floor_div_int(a, b):
    # floor division with the operands' magnitudes (the same in C and Python semantics);
    # division by zero gives 0, as in the eager reference
    zero = b == 0
    sb = tl.where(zero, 1, b)
    q = tl.abs(a) // tl.abs(sb)
    exact = tl.abs(a) % tl.abs(sb) == 0
    q = tl.where((a < 0) != (sb < 0), tl.where(exact, -q, -q - 1), q)
    return tl.where(zero, 0, q)


@triton.jit
def dlc_mod_int(a, b):
    zero = b == 0
    sb = tl.where(zero, 1, b)
    return tl.where(zero, 0, a - sb * dlc_floor_div_int(a, sb))


@triton.jit
def dlc_round_even(x):
    # round half to even without x + 0.5 (which rounds 0.49999997 up in float32)
    f = tl.floor(x)
    d = x - f
    odd = f - 2.0 * tl.floor(0.5 * f) == 1.0
    up = (d > 0.5) | ((d == 0.5) & odd)
    return tl.where(up, f + 1.0, f)


@triton.jit
def dlc_max_nan(acc, x):
    # elementwise max that keeps the first NaN (tl.max/tl.maximum may drop NaN); nested
    # selects, not `|`: the interpreter splats a 0-d comparison (x a constant, acc a
    # block) as the operands' float dtype, and `|` of float and bool fails there
    return tl.where(x != x, x, tl.where(x > acc, x, acc))


@triton.jit
def dlc_min_nan(acc, x):
    return tl.where(x != x, x, tl.where(x < acc, x, acc))


@triton.jit
def dlc_mul_combine(a, b):
    return a * b


@triton.jit
def dlc_mix32(h):
    h = h ^ (h >> 16)
    h = h * 0x7FEB352D
    h = h ^ (h >> 15)
    h = h * 0x846CA68B
    return h ^ (h >> 16)


@triton.jit
def dlc_stream_keys(seed, salt):
    # the two 32-bit keys of the stream (seed, salt); seed is an int64 scalar
    s0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    s1 = ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32)
    salt32 = tl.full((), salt, tl.uint32)
    a = dlc_mix32(dlc_mix32(dlc_mix32(s0 ^ 0x243F6A88) ^ s1) ^ salt32)
    b = dlc_mix32(dlc_mix32(dlc_mix32(s1 ^ 0x85A308D3) ^ salt32) ^ s0)
    return a, b


@triton.jit
def dlc_random_bits(i, a, b):
    # hash(i) >> 8: 24 random bits of counter i (a uint32)
    return dlc_mix32(dlc_mix32(i ^ a) ^ b) >> 8
'''
