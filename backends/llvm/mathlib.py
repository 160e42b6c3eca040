"""Vectorizable transcendental functions, emitted inline as LLVM IR.

Every function takes an `IR` helper and a float32 or float64 value (a scalar or a vector)
and returns the result in the same type. They are branch-free (special cases by `select`),
so the same code runs on a vector of 16 lanes or on one scalar. Range reductions use fused
multiply-adds with the constants split into sums of doubles (mathcoeffs.py).

Methods (docs/llvm-backend.md lists the measured errors):
- exp: x = n ln2 + r, |r| <= ln2/2, Taylor polynomial of e^r, scaled by 2^n in two steps
  (so subnormal results round once). expm1: the same reduction with e^r - 1 as a
  polynomial, then 2^n (e^r - 1) + (2^n - 1).
- log: x = 2^e m, m in [sqrt(1/2), sqrt(2)), f = m - 1, log(1+f) = 2 atanh(f / (2 + f))
  as a series, summed so that the large terms are exact. log1p(x) = log(u) x / (u - 1)
  with u = 1 + x, which cancels the rounding of u.
- tanh = expm1(2|x|) / (expm1(2|x|) + 2) with the sign of x; sigmoid 1 / (1 + e^-x) in
  float32 (exp's clamps give exactly 0 and 1 at the ends), and as the eager backend in
  float64 (1 / (1 + e^-|x|), mirrored for x < 0). gelu's tanh form is x sigmoid(2u), with
  2u = x (c + c' x^2); its erf form 0.5 x erfc(-x / sqrt 2) with the argument's rounding
  corrected.
- erf: the Taylor series below |x| = 1; above it, 1 - erfc. erfc(z) = e^(-z^2) erfcx(z),
  erfcx a fitted polynomial (mathfit.py), e^(-z^2) corrected for the rounding of z^2.
- sin, cos: n = round(x 2/pi), r = x - n pi/2 in three parts, Taylor polynomials on
  |r| <= pi/4, quadrant by n mod 4. float32 is reduced and evaluated in float64.
- pow: exp(y log|x|) (float32 in float64) with C99's special cases.
"""
from __future__ import annotations

import math

import llvmlite.ir as ir
import numpy as np

from backends.llvm import mathcoeffs as K
from backends.llvm.irutil import (F64, I32, IR, SCALAR, element_of, int_type_like, lanes_of,
                                  with_lanes)

# Per dtype: (mantissa bits, exponent bias, smallest normal)
FORMAT = {"float32": (23, 127, 2.0 ** -126), "float64": (52, 1023, 2.0 ** -1022)}


def dtype_of(x: ir.Value) -> str:
    return "float32" if isinstance(element_of(x.type), ir.FloatType) else "float64"


def _split(value_parts: tuple, dtype: str) -> tuple[float, float]:
    """A constant as hi + lo, each representable in dtype."""
    if dtype == "float64":
        return value_parts[0], value_parts[1]
    hi = float(np.float32(value_parts[0]))
    lo = float(np.float32((value_parts[0] - hi) + value_parts[1]))
    return hi, lo


LN2 = {dt: _split(K.LN2, dt) for dt in FORMAT}
LOG2E = 1.0 / math.log(2.0)

# Taylor coefficients: enough terms for the dtype on the reduced range |r| <= ln2/2
EXP_TERMS = {"float32": 8, "float64": 14}
EXP_POLY = {dt: [1.0 / math.factorial(k) for k in range(n)] for dt, n in EXP_TERMS.items()}
# e^r - 1 = r + r^2 q(r), q(r) = sum r^k / (k + 2)!
EXPM1_Q = {dt: [1.0 / math.factorial(k + 2) for k in range(n - 1)] for dt, n in
           EXP_TERMS.items()}
# log: R(z) = sum_{k>=1} 2/(2k+1) z^k with z = s^2 <= 0.0295
LOG_R = {"float32": [2.0 / (2 * k + 1) for k in range(1, 6)],
         "float64": [2.0 / (2 * k + 1) for k in range(1, 12)]}
# erf(x) = x * sum c_k x^2k for |x| < ERFC_FROM
ERF_TERMS = {"float32": 11, "float64": 19}
ERF_SERIES = {dt: [(-1) ** k * 2.0 / math.sqrt(math.pi) / (math.factorial(k) * (2 * k + 1))
                   for k in range(n)] for dt, n in ERF_TERMS.items()}
# sin r = r + r z S(z), cos r = 1 + z C(z), z = r^2: Taylor on |r| <= pi/4 (float32 inputs
# are evaluated in float64 with fewer terms)
SIN_TERMS = {"float32": 6, "float64": 9}
COS_TERMS = {"float32": 7, "float64": 10}
SIN_S = {dt: [(-1) ** (k + 1) / math.factorial(2 * k + 3) for k in range(n - 1)]
         for dt, n in SIN_TERMS.items()}
COS_C = {dt: [(-1) ** (k + 1) / math.factorial(2 * k + 2) for k in range(n - 1)]
         for dt, n in COS_TERMS.items()}
# clamps: exp overflows above / underflows below; expm1 and tanh saturate
EXP_RANGE = {"float32": (-104.0, 89.0), "float64": (-746.0, 710.0)}
EXPM1_RANGE = {"float32": (-30.0, 80.0), "float64": (-40.0, 700.0)}
TANH_CAP = {"float32": 9.0, "float64": 19.1}
ERFC_TO = {"float32": 10.5, "float64": 27.0}


# -- small pieces ------------------------------------------------------------------------------
def _clamp(m: IR, x, lo: float, hi: float):
    """min(max(x, lo), hi), NaN passing through."""
    x = m.select(m.b.fcmp_ordered("<", x, m.like(x, lo)), m.like(x, lo), x)
    return m.select(m.b.fcmp_ordered(">", x, m.like(x, hi)), m.like(x, hi), x)


def _zero_nan(m: IR, x):
    """x with NaN lanes replaced by 0, so integer conversions of it are defined."""
    return m.select(m.isnan(x), m.like(x, 0.0), x)


def _pow2(m: IR, n, dtype: str):
    """2^n for integral float n inside the normal exponent range."""
    mant, bias, _ = FORMAT[dtype]
    it = int_type_like(n.type)
    ni = m.b.fptosi(n, it)
    bits = m.b.shl(m.b.add(ni, m.like(ni, bias)), m.like(ni, mant))
    return m.b.bitcast(bits, n.type)


def _reduce_ln2(m: IR, x, dtype: str):
    """(n, r) with x = n ln2 + r, |r| <= ln2/2 (x finite)."""
    n = m.rint(m.b.fmul(x, m.like(x, LOG2E)))
    hi, lo = LN2[dtype]
    r = m.fma(n, m.like(x, -hi), x)
    return n, m.fma(n, m.like(x, -lo), r)


# -- exp, expm1 --------------------------------------------------------------------------------
def scale2(m: IR, p, n, dtype: str):
    """p * 2^n for integral float n (|n| < 2^31), rounded once: AVX-512's vscalef where the
    target has it (LLVM's ldexp), else two exact power-of-two factors (n split in halves,
    each in the normal range for the exponents exp and expm1 produce)."""
    if m.has_avx512:
        it = with_lanes(ir.IntType(32), lanes_of(n.type))
        return m.intrinsic("ldexp", p.type, [p, m.b.fptosi(n, it)], overload=[p.type, it])
    half = m.floor(m.b.fmul(n, m.like(n, 0.5)))
    return m.b.fmul(m.b.fmul(p, _pow2(m, half, dtype)), _pow2(m, m.b.fsub(n, half), dtype))


# vscalef on one 512-bit register: (name, lanes, mask bits)
SCALEF = {"float32": ("llvm.x86.avx512.mask.scalef.ps.512", 16, 16),
          "float64": ("llvm.x86.avx512.mask.scalef.pd.512", 8, 8)}
CURRENT_ROUNDING = 4


def _scalef(m: IR, p, n, dtype: str):
    """p * 2^n for an integral float n, by AVX-512's vscalef on whole registers (a
    narrower value is widened, a wider one split): n needs no conversion to an integer,
    and a NaN in p or n gives NaN."""
    b = m.b
    name, width, bits = SCALEF[dtype]
    vt = ir.VectorType(SCALAR[dtype], width)
    fn = m.module.globals.get(name) or ir.Function(
        m.module, ir.FunctionType(vt, [vt, vt, vt, ir.IntType(bits), I32]), name)
    lanes = lanes_of(p.type)
    scalar = not isinstance(p.type, ir.VectorType)
    undef = ir.Constant(vt, ir.Undefined)
    if lanes <= width:
        def widen(v):
            if scalar:
                return b.insert_element(undef, v, I32(0))
            return b.shuffle_vector(v, v, _mask(list(range(lanes)) + [0] * (width - lanes)))
        out = b.call(fn, [widen(p), widen(n), undef, ir.Constant(ir.IntType(bits), -1),
                          I32(CURRENT_ROUNDING)])
        if scalar:
            return b.extract_element(out, I32(0))
        return out if lanes == width else b.shuffle_vector(out, out, _mask(range(lanes)))
    parts = []
    for c in range(lanes // width):
        pick = _mask(range(c * width, (c + 1) * width))
        parts.append(b.call(fn, [b.shuffle_vector(p, p, pick), b.shuffle_vector(n, n, pick),
                                 undef, ir.Constant(ir.IntType(bits), -1),
                                 I32(CURRENT_ROUNDING)]))
    while len(parts) > 1:  # concatenate pairwise back to `lanes`
        size = lanes_of(parts[0].type)
        parts = [b.shuffle_vector(parts[i], parts[i + 1], _mask(range(2 * size)))
                 for i in range(0, len(parts), 2)]
    return parts[0]


def _mask(indices) -> ir.Constant:
    indices = list(indices)
    return ir.Constant(ir.VectorType(I32, len(indices)), indices)


def exp(m: IR, x, low: bool = True, high: bool = True, nan: bool = True):
    """e^x. Callers that know their argument can skip special-case work: `low`/`high`
    clamp x (needed unless x is bounded: the exponent must fit an int), `nan` makes NaN
    in give NaN out."""
    dtype = dtype_of(x)
    lo, hi = EXP_RANGE[dtype]
    xs = x
    if low:
        xs = m.select(m.b.fcmp_ordered("<", xs, m.like(xs, lo)), m.like(xs, lo), xs)
    if high:
        xs = m.select(m.b.fcmp_ordered(">", xs, m.like(xs, hi)), m.like(xs, hi), xs)
    n, r = _reduce_ln2(m, xs, dtype)
    if m.has_avx512 and _lanes_fit(x, dtype):
        # the clamps keep a NaN (fcmp_ordered is false for it), and so do the reduction,
        # the polynomial and vscalef: NaN in, NaN out with no select
        return _scalef(m, m.poly(r, EXP_POLY[dtype]), n, dtype)
    out = scale2(m, m.poly(r, EXP_POLY[dtype]), n, dtype)
    # NaN lanes computed garbage (their n is undefined): NaN in, NaN out
    return m.select(m.isnan(x), x, out) if nan else out


def _lanes_fit(x, dtype: str) -> bool:
    """Whether x's lanes are one, or split evenly into 512-bit registers, or fit one."""
    lanes = lanes_of(x.type)
    width = SCALEF[dtype][1]
    return lanes <= width or lanes % width == 0 and (lanes // width) & (lanes // width - 1) == 0


def expm1_core(m: IR, x):
    """e^x - 1 for finite x inside EXPM1_RANGE (no overflow, no NaN)."""
    dtype = dtype_of(x)
    n, r = _reduce_ln2(m, x, dtype)
    e = m.fma(m.b.fmul(r, r), m.poly(r, EXPM1_Q[dtype]), r)
    t = _pow2(m, n, dtype)
    return m.fma(t, e, m.b.fsub(t, m.like(t, 1.0)))


def expm1(m: IR, x):
    dtype = dtype_of(x)
    lo, hi = EXPM1_RANGE[dtype]
    core = expm1_core(m, _clamp(m, _zero_nan(m, x), lo, hi))
    big = m.b.fcmp_ordered(">", x, m.like(x, hi))
    out = m.select(big, exp(m, x), core)
    return m.select(m.isnan(x), x, _tiny_is_identity(m, x, out))


def _tiny_is_identity(m: IR, x, out):
    """x itself where |x| is below half an ulp of the next term (f(x) = x + O(x^2) or
    x + O(x^3)): keeps -0.0 and subnormals exact."""
    mant = FORMAT[dtype_of(x)][0]
    small = m.b.fcmp_ordered("<", m.fabs(x), m.like(x, 2.0 ** -(mant + 2)))
    return m.select(small, x, out)


# -- log, log1p --------------------------------------------------------------------------------
def log(m: IR, x):
    dtype = dtype_of(x)
    mant, bias, tiny = FORMAT[dtype]
    it = int_type_like(x.type)
    b = m.b
    # subnormals: scale into the normal range first
    scale_bits = mant + 2
    small = b.fcmp_ordered("<", x, m.like(x, tiny))
    xs = m.select(small, b.fmul(x, m.like(x, 2.0 ** scale_bits)), x)
    e_adj = m.select(small, m.like(xs, -scale_bits), m.like(xs, 0.0))
    bits = b.bitcast(xs, it)
    e = b.sub(b.lshr(bits, m.like(bits, mant)), m.like(bits, bias))
    mbits = b.or_(b.and_(bits, m.like(bits, (1 << mant) - 1)), m.like(bits, bias << mant))
    mx = b.bitcast(mbits, x.type)
    big = b.fcmp_ordered(">", mx, m.like(mx, math.sqrt(2.0)))
    mx = m.select(big, b.fmul(mx, m.like(mx, 0.5)), mx)
    e = b.add(e, b.zext(big, it))
    ef = b.fadd(b.sitofp(e, x.type), e_adj)
    f = b.fsub(mx, m.like(mx, 1.0))
    s = b.fdiv(f, b.fadd(f, m.like(f, 2.0)))
    z = b.fmul(s, s)
    r = b.fmul(z, m.poly(z, LOG_R[dtype]))
    hfsq = b.fmul(b.fmul(f, f), m.like(f, 0.5))
    hi, lo = LN2[dtype]
    inner = m.fma(s, b.fadd(hfsq, r), b.fmul(ef, m.like(ef, lo)))
    out = m.fma(ef, m.like(ef, hi), b.fsub(f, b.fsub(hfsq, inner)))
    # specials: log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays NaN
    out = m.select(b.fcmp_ordered("==", x, m.like(x, 0.0)), m.like(x, -math.inf), out)
    out = m.select(b.fcmp_ordered("==", x, m.like(x, math.inf)), x, out)
    bad = b.fcmp_unordered("ult", x, m.like(x, 0.0))  # x < 0 or NaN
    return m.select(bad, m.like(x, math.nan), out)


def log1p(m: IR, x):
    b = m.b
    u = b.fadd(x, m.like(x, 1.0))
    d = b.fsub(u, m.like(u, 1.0))
    out = b.fmul(log(m, u), b.fdiv(x, d))
    out = m.select(b.fcmp_ordered("==", d, m.like(d, 0.0)), x, out)
    return m.select(b.fcmp_ordered("==", x, m.like(x, math.inf)), x, out)


# -- tanh, sigmoid -----------------------------------------------------------------------------
def tanh(m: IR, x):
    dtype = dtype_of(x)
    b = m.b
    a = _zero_nan(m, m.fabs(x))
    cap = TANH_CAP[dtype]
    a = m.select(b.fcmp_ordered(">", a, m.like(a, cap)), m.like(a, cap), a)
    em = expm1_core(m, b.fadd(a, a))
    t = b.fdiv(em, b.fadd(em, m.like(em, 2.0)))
    return m.select(m.isnan(x), x, m.copysign(t, x))


def sigmoid(m: IR, x):
    """float32: 1 / (1 + e^-x). exp's clamps make e^-x exactly 0 for large x (result 1) and
    infinite for very negative x (result 0, where the true value is below the smallest
    subnormal); NaN gives NaN. One division and no select: 2.4 ulp at most.
    float64: 1 / (1 + e^-|x|), and e^-|x| / (1 + e^-|x|) for x < 0 (3 ulp, where the
    float32 form measures 4)."""
    b = m.b
    if dtype_of(x) == "float32":
        e = exp(m, b.fneg(x))
        return b.fdiv(m.like(e, 1.0), b.fadd(e, m.like(e, 1.0)))
    e = exp(m, b.fneg(m.fabs(x)), high=False)  # the argument is <= 0 (or NaN)
    r = b.fdiv(m.like(e, 1.0), b.fadd(e, m.like(e, 1.0)))
    pos = b.fcmp_ordered(">=", x, m.like(x, 0.0))
    return m.select(pos, r, b.fmul(e, r))


# -- erf, erfc ---------------------------------------------------------------------------------
def _exp_neg_square(m: IR, z):
    """e^(-z^2) with the rounding error of z*z put back (z^2 = a2 + err exactly)."""
    b = m.b
    a2 = b.fmul(z, z)
    err = m.fma(z, z, b.fneg(a2))
    # callers bound z to [0, ERFC_TO]: the argument is finite and at most 0
    return b.fmul(exp(m, b.fneg(a2), low=False, high=False, nan=False),
                  b.fsub(m.like(a2, 1.0), err))


# -1/sqrt(2) - (its rounding to the dtype), the low part of the constant
_INV_SQRT2_LO = {"float64": -(0.70710678118654752440084436210484903928 - 0.7071067811865476),
                 "float32": -(0.70710678118654752440084436210484903928 -
                              float(np.float32(0.7071067811865476)))}


def _erfc_far(m: IR, z):
    """erfc(z) for ERFC_FROM <= z <= ERFC_TO (z is clamped into that range first)."""
    dtype = dtype_of(z)
    b = m.b
    z = _clamp(m, z, K.ERFC_FROM, ERFC_TO[dtype])
    t0, t1, coeffs = K.ERFCX[dtype]
    t = b.fdiv(m.like(z, 1.0), m.fma(z, m.like(z, 0.5), m.like(z, 1.0)))
    scale = 2.0 / (t1 - t0)
    s = m.fma(t, m.like(t, scale), m.like(t, -t0 * scale - 1.0))
    return b.fmul(_exp_neg_square(m, z), m.poly(s, coeffs))


def _erf_near(m: IR, x):
    """erf(x) for |x| < ERFC_FROM by its Taylor series."""
    return m.b.fmul(x, m.poly(m.b.fmul(x, x), ERF_SERIES[dtype_of(x)]))


def erf(m: IR, x):
    b = m.b
    z = m.fabs(x)
    near = b.fcmp_ordered("<", z, m.like(z, K.ERFC_FROM))
    far = b.fsub(m.like(z, 1.0), _erfc_far(m, z))
    return m.select(near, _erf_near(m, x), m.copysign(far, x))


def erfc(m: IR, x):
    """erfc in one piece: e^(-z^2) erfcx(z) for z = |x| (fitted from z = 0), and
    2 - erfc(z) for negative x. Relative accuracy everywhere erfc is not tiny."""
    return _erfc_parts(m, x)[0]


def _erfc_parts(m: IR, x):
    """(erfc(x), e^(-x^2)), the second for callers that correct for a rounded x."""
    dtype = dtype_of(x)
    b = m.b
    z = m.fabs(x)
    cap = ERFC_TO[dtype]
    zc = m.select(b.fcmp_ordered(">", z, m.like(z, cap)), m.like(z, cap), z)
    t0, t1, coeffs = K.ERFCX_FROM_ZERO[dtype]
    t = b.fdiv(m.like(zc, 1.0), m.fma(zc, m.like(zc, 0.5), m.like(zc, 1.0)))
    scale = 2.0 / (t1 - t0)
    s = m.fma(t, m.like(t, scale), m.like(t, -t0 * scale - 1.0))
    gauss = _exp_neg_square(m, zc)
    c = b.fmul(gauss, m.poly(s, coeffs))
    if dtype == "float64":  # float32's e^(-cap^2) is already 0; float64's is subnormal
        c = m.select(b.fcmp_ordered(">", z, m.like(z, cap)), m.like(c, 0.0), c)
    out = m.select(b.fcmp_ordered("<", x, m.like(x, 0.0)), b.fsub(m.like(c, 2.0), c), c)
    return m.select(m.isnan(x), x, out), gauss


# -- sin, cos ----------------------------------------------------------------------------------
def _in_float64(m: IR, x, fn):
    """fn evaluated in float64 on a float32 x, rounded once at the end."""
    if dtype_of(x) == "float64":
        return fn(x, "float64")
    wide = m.b.fpext(x, with_lanes(F64, lanes_of(x.type)))
    return m.b.fptrunc(fn(wide, "float32"), x.type)


def _sincos(m: IR, x, terms: str, want_cos: bool):
    """sin or cos of float64 x, polynomials sized for `terms` (the caller's dtype)."""
    b = m.b
    xs = m.select(b.fcmp_unordered("uno", b.fsub(x, x), m.like(x, 0.0)), m.like(x, 0.0), x)
    n = m.rint(b.fmul(xs, m.like(xs, 2.0 / math.pi)))
    r = xs
    for part in K.PIO2:
        r = m.fma(n, m.like(n, -part), r)
    z = b.fmul(r, r)
    s = m.fma(b.fmul(r, z), m.poly(z, SIN_S[terms]), r)
    c = m.fma(z, m.poly(z, COS_C[terms]), m.like(z, 1.0))
    it = int_type_like(n.type)
    q = b.fptosi(n, it)
    if want_cos:
        q = b.add(q, m.like(q, 1))
    # quadrant q: sin -> s, c, -s, -c
    odd = b.icmp_unsigned("!=", b.and_(q, m.like(q, 1)), m.like(q, 0))
    neg = b.icmp_unsigned("!=", b.and_(q, m.like(q, 2)), m.like(q, 0))
    v = m.select(odd, c, s)
    v = m.select(neg, b.fneg(v), v)
    # inf and NaN give NaN
    return m.select(b.fcmp_unordered("uno", b.fsub(x, x), m.like(x, 0.0)),
                    m.like(x, math.nan), v)


# beyond this |x| the three-part reduction loses accuracy: those lanes call libm instead
SINCOS_FAST_LIMIT = 2.0 ** 49


def sin(m: IR, x):
    fast = _in_float64(m, x, lambda w, terms: _sincos(m, w, terms, False))
    return _tiny_is_identity(m, x, _large_to_libm(m, x, fast, "sin"))


def cos(m: IR, x):
    fast = _in_float64(m, x, lambda w, terms: _sincos(m, w, terms, True))
    return _large_to_libm(m, x, fast, "cos")


def _large_to_libm(m: IR, x, fast, name: str):
    """fast, except lanes with |x| past SINCOS_FAST_LIMIT (finite), which take LLVM's
    sin/cos (libm): a branch taken only when some lane needs it."""
    b = m.b
    ax = m.fabs(x)
    need = b.and_(b.fcmp_ordered(">", ax, m.like(x, SINCOS_FAST_LIMIT)),
                  b.fcmp_ordered("<", ax, m.like(x, math.inf)))
    if isinstance(need.type, ir.VectorType):
        any_lane = b.icmp_unsigned("!=", b.bitcast(need, ir.IntType(need.type.count)),
                                   ir.Constant(ir.IntType(need.type.count), 0))
    else:
        any_lane = need
    before = b.block
    with b.if_then(any_lane, likely=False):
        slow = m.select(need, m.unary_intrinsic(name, x), fast)
        slow_block = b.block
    out = b.phi(fast.type)
    out.add_incoming(fast, before)
    out.add_incoming(slow, slow_block)
    return out


# -- pow ---------------------------------------------------------------------------------------
def _pow64(m: IR, x, y):
    b = m.b
    ax = m.fabs(x)
    r = exp(m, b.fmul(y, log(m, ax)))
    one = m.like(x, 1.0)
    y_int = b.fcmp_ordered("==", m.floor(y), y)
    half = b.fmul(y, m.like(y, 0.5))
    y_odd = b.and_(y_int, b.fcmp_ordered("!=", m.floor(half), half))
    it = int_type_like(x.type)
    sign = b.icmp_signed("<", b.bitcast(x, it), m.like(b.bitcast(x, it), 0))
    r = m.select(b.and_(b.fcmp_ordered("<", x, m.like(x, 0.0)), b.not_(y_int)),
                 m.like(x, math.nan), r)
    r = m.select(b.and_(sign, y_odd), b.fneg(r), r)
    y_inf = b.fcmp_ordered("==", m.fabs(y), m.like(y, math.inf))
    r = m.select(b.and_(y_inf, b.fcmp_ordered("==", ax, one)), one, r)
    exact_one = b.or_(b.fcmp_ordered("==", y, m.like(y, 0.0)), b.fcmp_ordered("==", x, one))
    return m.select(exact_one, one, r)


def pow(m: IR, x, y):
    if dtype_of(x) == "float64":
        return _pow64(m, x, y)
    wide = with_lanes(F64, lanes_of(x.type))
    return m.b.fptrunc(_pow64(m, m.b.fpext(x, wide), m.b.fpext(y, wide)), x.type)


# -- activations built from the above ------------------------------------------------------------
def softplus(m: IR, x, beta: float, threshold: float):
    b = m.b
    z = b.fmul(x, m.like(x, beta))
    smooth = b.fadd(m.select(b.fcmp_ordered(">", z, m.like(z, 0.0)), z, m.like(z, 0.0)),
                    log1p(m, exp(m, b.fneg(m.fabs(z)))))
    smooth = m.select(m.isnan(z), z, smooth)
    smooth = b.fdiv(smooth, m.like(smooth, beta))
    return m.select(b.fcmp_ordered(">", z, m.like(z, threshold)), x, smooth)


def gelu_erf(m: IR, x):
    """0.5 x erfc(-x / sqrt 2): no cancellation for negative x. The rounding of the
    argument a = -x / sqrt 2 would be amplified ~2a^2 times in erfc's tail, so it is put
    back to first order: erfc(a + d) = erfc(a) - d (2 / sqrt pi) e^(-a^2)."""
    b = m.b
    dtype = dtype_of(x)
    c_hi = -1.0 / math.sqrt(2.0)
    c_lo = _INV_SQRT2_LO[dtype]
    a = b.fmul(x, m.like(x, c_hi))
    d = m.fma(x, m.like(x, c_hi), b.fneg(a))            # the rounding of x * c_hi
    d = m.fma(x, m.like(x, c_lo), d)                     # and of c_hi itself
    c, gauss = _erfc_parts(m, a)
    c = m.fma(b.fmul(d, m.like(d, -2.0 / math.sqrt(math.pi))), gauss, c)
    return b.fmul(b.fmul(m.like(x, 0.5), x), c)


def gelu_tanh(m: IR, x):
    """0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), computed as x sigmoid(2u):
    the same function without the cancellation of 1 + tanh(u) for negative x."""
    b = m.b
    c = 2.0 * math.sqrt(2 / math.pi)  # 2u = x (c + c 0.044715 x^2)
    u2 = b.fmul(x, m.fma(m.like(x, c * 0.044715), b.fmul(x, x), m.like(x, c)))
    return b.fmul(x, sigmoid(m, u2))
