"""Vectorizable elementary functions for float32 and float64 (exp, expm1, log1p, tanh, and
log1p(exp(x)) for x <= 0).

numba 0.68 has no SVML, so ``math.exp`` compiles to a scalar libm call that LLVM cannot
vectorize. The functions here are branch-free (range reduction, a polynomial, and
selects), so a loop that calls them vectorizes. Each has a float32 and a float64 version;
the generic name (``exp(x)``, ...) picks the one that matches the type of ``x``, so an
activation is written once for both dtypes. The float32 versions compute in float32 (no
float64 instruction: as many SIMD lanes as the vector width allows, no float64 on GPUs).
``typed(v, x)`` makes a constant of x's type: a bare Python float literal would silently
promote float32 arithmetic to float64.

Accuracy (max ULP over dense sweeps of the whole domain, ``tests/test_math.py``):
exp <= 1, expm1 <= 2, log1p <= 2, tanh <= 2, log1p_exp_neg <= 2, for both dtypes. Overflow
gives inf, underflow gives (possibly subnormal) values down to 0 (float64: correctly rounded;
float32: rounded twice, within 0.75 ULP), NaN propagates. ``exp_neg`` / ``exp_mul_neg``: exp /
exp_mul for arguments <= 0 (the e^-|x| of the sigmoid family), bit for bit, a few
instructions cheaper.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numpy as np
from numba import njit, types
from numba.core import cgutils  # noqa: F401  (keeps numba's lowering registry loaded)
from numba.extending import intrinsic, overload

from fastact._config import CUDA_OVERLOAD, OVERLOAD, SCALAR

f32 = np.float32
f64 = np.float64
i32 = np.int32
i64 = np.int64


# --------------------------------------------------------------------------- bit casts
@intrinsic
def _float_bits(typingctx, x):
    """Reinterpret the bits of a float32/float64 as int32/int64 (no conversion)."""
    if not isinstance(x, types.Float):
        return None
    int_type = types.int32 if x.bitwidth == 32 else types.int64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(int_type))

    return int_type(x), codegen


@intrinsic
def _bits_float(typingctx, i):
    """Reinterpret the bits of an int32/int64 as float32/float64."""
    if not isinstance(i, types.Integer) or i.bitwidth not in (32, 64):
        return None
    float_type = types.float32 if i.bitwidth == 32 else types.float64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(float_type))

    return float_type(i), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a*b + c with a single rounding (llvm.fma); all three of one float type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


def overload_per_target(python_version):
    """``@overload(python_version)`` for the CPU (``OVERLOAD`` options) and for CUDA
    (``CUDA_OVERLOAD``: numba-cuda would take the CPU's ``contract`` flag for fast math,
    float32 division approximate). The decorated function is the implementation for both."""

    def register(implementation):
        overload(python_version, target="cpu", jit_options=OVERLOAD)(implementation)
        overload(python_version, target="cuda", jit_options=CUDA_OVERLOAD)(implementation)
        return implementation

    return register


# --------------------------------------------------------------------------- typed constants
def typed(value, like):
    """``value`` as a constant of the float type of ``like`` (float32 stays float32)."""
    return type(like)(value) if isinstance(like, np.floating) else float(value)


@overload_per_target(typed)
def _typed_overload(value, like):
    if like == types.float32:
        return lambda value, like: np.float32(value)
    if like == types.float64:
        return lambda value, like: np.float64(value)
    return None


# --------------------------------------------------------------------------- exp
# x = k*ln2 + r, |r| <= ln2/2; exp(x) = 2^k * P(r), 2^k applied as two factors so that
# subnormal results are rounded once and k = 1024 overflows to inf like libm.
_LOG2E_64 = f64(1.4426950408889634)
_LN2_HI_64 = f64(6.93147180369123816490e-01)
_LN2_LO_64 = f64(1.90821492927058770002e-10)
_SHIFT_64 = f64(6755399441055744.0)  # 1.5 * 2**52: adding it rounds to an integer
_SHIFT_BITS_64 = i64(0x4338000000000000)
_EXP_HI_64 = f64(710.0)
# exp(-746) already rounds to 0, m e^x with |m| up to ~|x| underflows below -800: one clamp for
# exp and exp_mul, so a kernel taking e^x and m e^x of one x (silu, gelu_tanh, mish) computes
# the reduction and the polynomial once
_EXP_LO_64 = f64(-800.0)
_BIAS_64 = i64(1023)
_MANT_64 = i64(52)

_LN2_HI_32 = f32(0.693145751953125)
_LN2_LO_32 = f32(1.428606765330187045e-06)
_EXP_HI_32 = f32(89.0)
_EXP_LO_32 = f32(-120.0)  # exp(-104) already rounds to 0; one clamp for exp and exp_mul
_BIAS_32 = i32(127)
_MANT_32 = i32(23)
_LOG2E_32 = f32(1.44269502)
_SHIFT_32 = f32(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer
_SHIFT_BITS_32 = i32(0x4B400000)


@njit(**SCALAR)
def _reduce_64(x, lo):
    """(k as int, k as float, r) with x = k*ln2 + r; x is clamped to [lo, hi] so that 2^k,
    applied as two factors, stays representable."""
    x = _EXP_HI_64 if x > _EXP_HI_64 else x
    x = lo if x < lo else x
    t = x * _LOG2E_64 + _SHIFT_64
    kf = t - _SHIFT_64
    k = _float_bits(t) - _SHIFT_BITS_64
    r = x - kf * _LN2_HI_64
    r = r - kf * _LN2_LO_64
    return k, kf, r


@njit(**SCALAR)
def _expm1_poly_64(r):
    """exp(r) - 1 = r + r^2 q(r) for |r| <= ln2/2: q of degree 10, least squares on Chebyshev
    nodes relative to q (tools/fit_poly.py: 2.8e-18 relative, ~1e-19 of exp(r))."""
    q = f64(2.0885930053864267e-09)
    q = q * r + f64(2.5105177392475458e-08)
    q = q * r + f64(2.755735997394213e-07)
    q = q * r + f64(2.7557255507250965e-06)
    q = q * r + f64(2.480158723484882e-05)
    q = q * r + f64(0.0001984126987472421)
    q = q * r + f64(0.0013888888888922634)
    q = q * r + f64(0.008333333333326167)
    q = q * r + f64(0.04166666666666661)
    q = q * r + f64(0.1666666666666667)
    q = q * r + f64(0.5)
    return r + r * r * q


@njit(**SCALAR)
def _exp2_parts_64(k):
    """2^k as two normal factors (k in [-1154, 1024])."""
    k1 = k >> 1
    k2 = k - k1
    return _bits_float((k1 + _BIAS_64) << _MANT_64), _bits_float((k2 + _BIAS_64) << _MANT_64)


@njit(**SCALAR)
def _reduce_32(x, x_lo, lo, hi):
    """(k, r_hi, r_lo, r): x + x_lo = k ln2 + r_hi + r_lo, x clamped to [lo, hi] first
    (Cody-Waite: k ln2_hi has 8 + 16 bits, so k ln2_hi and r_hi = x - k ln2_hi are exact,
    Sterbenz); r = r_hi + r_lo rounded."""
    x = hi if x > hi else x
    x = lo if x < lo else x
    t = x * _LOG2E_32 + _SHIFT_32
    kf = t - _SHIFT_32
    k = i32(_float_bits(t) - _SHIFT_BITS_32)
    r_hi = x - kf * _LN2_HI_32  # exact
    r_lo = x_lo - kf * _LN2_LO_32
    return k, r_hi, r_lo, r_hi + r_lo


@njit(**SCALAR)
def _exp_q_32(r):
    """q(r) with exp(r) - 1 = r + r^2 q(r) for |r| <= ln2/2: degree 5, least squares on
    Chebyshev nodes relative to expm1, coefficients rounded to float32 (3e-9)."""
    q = f32(0.0001985162089113146)
    q = q * r + f32(0.0013941137585788965)
    q = q * r + f32(0.008333378471434116)
    q = q * r + f32(0.04166635125875473)
    q = q * r + f32(0.1666666567325592)
    return q * r + f32(0.5)


@njit(**SCALAR)
def _exp_lean_32(x, lo, hi):
    """(p, k) with exp(x) = 2^k (1 + p), p = r + r^2 q(r) in float32 arithmetic, x clamped to
    [lo, hi]. x = k ln2 + r_hi + r_lo (Cody-Waite; k ln2_hi and r_hi exact), r is rounded only
    inside the r^2 term; q of degree 5 (least squares on Chebyshev nodes, relative to expm1,
    coefficients rounded to float32: 3e-9). 1 + p is within 0.84 ULP of exp(r) (a dense sweep)."""
    k, r_hi, r_lo, r = _reduce_32(x, f32(0.0), lo, hi)
    q = _exp_q_32(r)
    return r_hi + (r_lo + (r * r) * q), k  # r rounded only inside the r^2 term


@njit(**SCALAR)
def _pow2_32(k):
    """2^k as two normal float32 factors (k in [-252, 254])."""
    k1 = i32(k >> 1)
    k2 = i32(k - k1)
    return (
        _bits_float(i32((k1 + _BIAS_32) << _MANT_32)),
        _bits_float(i32((k2 + _BIAS_32) << _MANT_32)),
    )


@njit(**SCALAR)
def _pow2_1_32(k):
    """2^k as one float32 (k in [-126, 127])."""
    return _bits_float(i32((k + _BIAS_32) << _MANT_32))


@njit(**SCALAR)
def _exp_dd_32(x, x_lo, lo, hi):
    """(y_hi, y_lo, k) with exp(x + x_lo) = 2^k (y_hi + y_lo), in float32 arithmetic.

    x is clamped to [lo, hi] (x_lo is a small correction, |x_lo| < ulp(x)); x = k ln2 + r with
    r = r_hi + r_lo (Cody-Waite: k ln2_hi and r_hi exact), exp(r) - 1 = p_hi + p_lo from the
    polynomial of _exp_lean_32, y_hi = 1 + p_hi rounded and y_lo its exact rounding error plus
    p_lo: y_hi + y_lo is exp(r) to ~2^-28. For gelu's exp(-x^2/2), whose argument comes with a
    low part. The caller scales by 2^k."""
    k, r_hi, r_lo, r = _reduce_32(x, x_lo, lo, hi)
    c = (r_hi - r) + r_lo
    q = _exp_q_32(r)
    t2 = c + (r * r) * q  # exp(r) - 1 - r, with the rounding error c of r
    p_hi = r + t2
    p_lo = (r - p_hi) + t2
    y_hi = f32(1.0) + p_hi
    y_lo = ((f32(1.0) - y_hi) + p_hi) + p_lo
    return y_hi, y_lo, k


@njit(**SCALAR)
def exp_f64(x):
    k, kf, r = _reduce_64(x, _EXP_LO_64)
    s1, s2 = _exp2_parts_64(k)
    return ((f64(1.0) + _expm1_poly_64(r)) * s1) * s2


@njit(**SCALAR)
def exp_f32(x):
    p, k = _exp_lean_32(x, _EXP_LO_32, _EXP_HI_32)
    s1, s2 = _pow2_32(k)
    return ((f32(1.0) + p) * s1) * s2


@njit(**SCALAR)
def exp_mul_f64(x, m):
    """m * exp(x) rounded once at the end, so no precision is lost where exp(x) alone would be
    subnormal; m * 0 below x = -800 (float32: -120), meant for |m| <= |x| (e.g. x e^x)."""
    k, kf, r = _reduce_64(x, _EXP_LO_64)
    s1, s2 = _exp2_parts_64(k)
    y = (((f64(1.0) + _expm1_poly_64(r)) * m) * s1) * s2
    return m * f64(0.0) if x < _EXP_LO_64 else y


@njit(**SCALAR)
def exp_mul_f32(x, m):
    p, k = _exp_lean_32(x, _EXP_LO_32, _EXP_HI_32)
    s1, s2 = _pow2_32(k)
    y = (fma(m, p, m) * s1) * s2
    return m * f32(0.0) if x < _EXP_LO_32 else y


# exp of a non-positive argument (sigmoid's, silu's, softplus' e^-|x|): 2^k with k <= 0 is one
# factor 2^(k + 64) (float64: 2^(k + 600)), normal for every k the clamp allows, times the
# constant 2^-64 (2^-600): the same two roundings as exp's two factors, bit-identical results
# (tests/test_math.py), without splitting k (float32 exp ~13% faster in cache).
_NEG_SHIFT_32 = i32(64)
_NEG_SCALE_32 = f32(2.0**-64)
_NEG_SHIFT_64 = i64(600)
_NEG_SCALE_64 = f64(2.0**-600)


@njit(**SCALAR)
def _times_pow2_neg_32(v, k):
    """v 2^k for k in [-174, 0], rounded once: (v 2^(k + 64)) 2^-64, the first product exact."""
    return (v * _bits_float(i32((k + (_NEG_SHIFT_32 + _BIAS_32)) << _MANT_32))) * _NEG_SCALE_32


@njit(**SCALAR)
def _times_pow2_neg_64(v, k):
    """v 2^k for k in [-1155, 0], rounded once: (v 2^(k + 600)) 2^-600."""
    return (v * _bits_float((k + (_NEG_SHIFT_64 + _BIAS_64)) << _MANT_64)) * _NEG_SCALE_64


@njit(**SCALAR)
def exp_neg_f64(x):
    """exp(x) for x <= 0 (or NaN), equal to exp_f64."""
    k, kf, r = _reduce_64(x, _EXP_LO_64)
    return _times_pow2_neg_64(f64(1.0) + _expm1_poly_64(r), k)


@njit(**SCALAR)
def exp_neg_f32(x):
    """exp(x) for x <= 0 (or NaN), equal to exp_f32."""
    p, k = _exp_lean_32(x, _EXP_LO_32, f32(0.0))
    return _times_pow2_neg_32(f32(1.0) + p, k)


@njit(**SCALAR)
def exp_mul_neg_f64(x, m):
    """m * exp(x) for x <= 0 (or NaN), equal to exp_mul_f64."""
    k, kf, r = _reduce_64(x, _EXP_LO_64)
    y = _times_pow2_neg_64((f64(1.0) + _expm1_poly_64(r)) * m, k)
    return m * f64(0.0) if x < _EXP_LO_64 else y


@njit(**SCALAR)
def exp_mul_neg_f32(x, m):
    """m * exp(x) for x <= 0 (or NaN), equal to exp_mul_f32."""
    p, k = _exp_lean_32(x, _EXP_LO_32, f32(0.0))
    y = _times_pow2_neg_32(fma(m, p, m), k)
    return m * f32(0.0) if x < _EXP_LO_32 else y


@njit(**SCALAR)
def expm1_f64(x):
    """expm1(x) = 2^k expm1(r) + (2^k - 1), one rounding at the end (FMA); for x > 40, where
    2^k - 1 = 2^k, exp(x) itself (2^k as one number may overflow before the product)."""
    k, kf, r = _reduce_64(x, _EXP_LO_64)
    s1, s2 = _exp2_parts_64(k)
    p = _expm1_poly_64(r)
    s = s1 * s2
    y = p * s + (s - f64(1.0))
    y = ((f64(1.0) + p) * s1) * s2 if x > f64(40.0) else y
    return x if x == f64(0.0) else y  # keeps -0.0


@njit(**SCALAR)
def expm1_f32(x):
    """2^k (1 + p) - 1 = 2^k p + (2^k - 1), one rounding (fma); 2^k - 1 is exact for x in
    [-17, 20] (k in [-24, 29]) and below the result's last bit elsewhere. x is clamped at -30
    (expm1 = -1 in float32 below); x > 20 is exp(x) (2^k as two factors: one may overflow)."""
    p, k = _exp_lean_32(x, f32(-30.0), _EXP_HI_32)
    s1, s2 = _pow2_32(k)
    s = _pow2_1_32(k if k < i32(64) else i32(64))
    y = p * s + (s - f32(1.0))
    y = ((f32(1.0) + p) * s1) * s2 if x > f32(20.0) else y
    return x if x == f32(0.0) else y


# --------------------------------------------------------------------------- shared steps
@njit(**SCALAR)
def one_plus(a, a_lo):
    """(s, s_lo) = 1 + a + a_lo as a pair: s = 1 + a rounded, s_lo its exact rounding error
    (two-sum) plus a_lo. Either dtype."""
    one = typed(1.0, a)
    s = one + a
    b = s - one
    return s, ((one - (s - b)) + (a - b)) + a_lo


def approx_quotient(n, d):
    """n / d (float32) for a caller that corrects the quotient itself: IEEE division on the
    CPU; on CUDA the approximate division (``div.approx.f32``: within 2 ULP for |d| in
    [2^-126, 2^126]), no slow path (sigmoid's vector loop: 37.5 machine instructions per
    element, 48.9 with ``div.rn.f32``). Every other division in the CUDA kernels is IEEE, as on
    the CPU."""
    return n / d


@overload(approx_quotient, target="cpu", jit_options=OVERLOAD)
def _approx_quotient_cpu(n, d):
    if n == types.float32 and d == types.float32:
        return lambda n, d: n / d
    return None


@overload(approx_quotient, target="cuda", jit_options=CUDA_OVERLOAD)
def _approx_quotient_cuda(n, d):
    if n == types.float32 and d == types.float32:
        from numba.cuda import libdevice  # typing for CUDA: numba.cuda is loaded already

        return lambda n, d: libdevice.fast_fdividef(n, d)
    return None


@njit(**SCALAR)
def _over_one_plus_f32(n, e):
    """n / (1 + e) for 0 <= e <= 1, as if 1 + e were exact: d = 1 + e rounds, but its error
    d_lo = e - (d - 1) and the division's remainder fma(-q, d, n) are exact, and correct the
    quotient (1/d from a linear fit within 9%: the correction is itself ~1 ULP). Without it
    e / (1 + e) reached 2.2 ULP in float32; with it the error is that of n and e alone. The
    correction also absorbs an approximate quotient (``approx_quotient``: 2 ULP on CUDA; the
    remainder of such a q is exact to ~2^-46 of n, and 9% of 2 ULP is 0.2 ULP).
    n = -0.0 gives +0.0 (callers with signed zeros restore the sign)."""
    d = f32(1.0) + e
    d_lo = e - (d - f32(1.0))
    q = approx_quotient(n, d)
    remainder = fma(-q, d, n)
    inv_d = f32(1.4571) - f32(0.5) * d
    return q + (remainder - q * d_lo) * inv_d


@njit(**SCALAR)
def _over_one_plus_f64(n, e):
    """n / (1 + e), the plain quotient: float64 sigmoid and silu stay within 2 ULP of their
    4-ULP bound without the float32 correction (docs/accuracy.md)."""
    return n / (f64(1.0) + e)


# --------------------------------------------------------------------------- log1p
# w = 1 + u = 2^k * m with m in [sqrt(2)/2, sqrt(2)); log(w) = k*ln2 + log1p(f), f = m - 1,
# log1p(f) = 2 atanh(s), s = f/(2+f) (fdlibm's form); c corrects the rounding of 1 + u.
_SQRT_HALF_BITS_64 = i64(0x3FE6A09E667F3BCD)
_ONE_BITS_64 = i64(0x3FF0000000000000)
_MANT_MASK_64 = i64(0x000FFFFFFFFFFFFF)
_SQRT_HALF_BITS_32 = i32(0x3F3504F3)
_ONE_BITS_32 = i32(0x3F800000)
_MANT_MASK_32 = i32(0x007FFFFF)
_INF_64 = f64(np.inf)
_INF_32 = f32(np.inf)


@njit(**SCALAR)
def log1p_f64(u):
    w = f64(1.0) + u
    c = (u - (w - f64(1.0))) / w
    ix = _float_bits(w) + (_ONE_BITS_64 - _SQRT_HALF_BITS_64)
    k = (ix >> _MANT_64) - _BIAS_64
    m = _bits_float((ix & _MANT_MASK_64) + _SQRT_HALF_BITS_64)
    f = m - f64(1.0)
    s = f / (f64(2.0) + f)
    z = s * s
    w2 = z * z
    t1 = w2 * (
        f64(3.999999999940941908e-01)
        + w2 * (f64(2.222219843214978396e-01) + w2 * f64(1.531383769920937332e-01))
    )
    t2 = z * (
        f64(6.666666666666735130e-01)
        + w2
        * (
            f64(2.857142874366239149e-01)
            + w2 * (f64(1.818357216161805012e-01) + w2 * f64(1.479819860511658591e-01))
        )
    )
    hfsq = f64(0.5) * f * f
    kf = f64(k)
    y = kf * _LN2_HI_64 + (f - (hfsq - (s * (hfsq + t1 + t2) + (kf * _LN2_LO_64 + c))))
    y = u if w == f64(1.0) else y  # |u| < 2^-53: log1p(u) = u (keeps -0.0)
    y = _INF_64 if u == _INF_64 else y
    y = -_INF_64 if u == f64(-1.0) else y
    return f64(np.nan) if u < f64(-1.0) else y


@njit(**SCALAR)
def log1p_f32(u):
    w = f32(1.0) + u
    c = (u - (w - f32(1.0))) / w
    ix = i32(_float_bits(w) + (_ONE_BITS_32 - _SQRT_HALF_BITS_32))
    k = (ix >> _MANT_32) - _BIAS_32
    m = _bits_float(i32((ix & _MANT_MASK_32) + _SQRT_HALF_BITS_32))
    f = m - f32(1.0)
    s = f / (f32(2.0) + f)
    z = s * s
    w2 = z * z
    t1 = w2 * (f32(0.40000972152) + w2 * f32(0.24279078841))
    t2 = z * (f32(0.66666662693) + w2 * f32(0.28498786688))
    hfsq = f32(0.5) * f * f
    kf = f32(k)
    y = kf * _LN2_HI_32 + (f - (hfsq - (s * (hfsq + t1 + t2) + (kf * _LN2_LO_32 + c))))
    y = u if w == f32(1.0) else y
    y = _INF_32 if u == _INF_32 else y
    y = -_INF_32 if u == f32(-1.0) else y
    return f32(np.nan) if u < f32(-1.0) else y


# --------------------------------------------------------------------------- log1p(exp(x))
# log1p(exp(x)) for x <= 0: the log(1 + e^-|x|) of log_sigmoid and softplus. float32: e g(e),
# g(e) = log1p(e) / e a polynomial in t = 2e - 1 on e in [0, 1] (no log1p reduction, no
# division), e carried as a float32 pair. float64: log1p(exp_neg(x)) (a degree-20 polynomial
# was no faster there).
_LOG1P_G_C0_HI = f32(0.8109301924705505)  # g(1/2) = 2 log(3/2) as a float32 pair
_LOG1P_G_C0_LO = f32(2.7425382853607516e-08)


@njit(**SCALAR)
def log1p_exp_neg_f32(x):
    """log1p(e), e = exp(x), x <= 0 (or NaN). g of degree 9 fitted by tools/fit_poly.py (5.5e-9
    relative with float32 coefficients; g's nearest singularity, e = -1, is 1.5 half-widths
    away, 2.5 bits per degree), its constant term a float32 pair. e = 2^k (1 + p) is carried as
    e + e_lo (1 + p's rounding error, exact): the rounding of e alone, doubled where log1p(e)
    falls a binade below e, reached 1.9 ULP of the result; t's rounding (e < 1/4) is below
    2^-25 absolute, negligible (|g'| <= 1/2)."""
    p, k = _exp_lean_32(x, _EXP_LO_32, f32(0.0))
    big = f32(1.0) + p
    small = (f32(1.0) - big) + p  # 1 + p = big + small exactly (|p| < 1)
    e = _times_pow2_neg_32(big, k)
    e_lo = _times_pow2_neg_32(small, k)
    t = fma(f32(2.0), e, f32(-1.0))
    h = f32(-6.18948752162396e-06)
    h = h * t + f32(2.050013245025184e-05)
    h = h * t + f32(-5.305976446834393e-05)
    h = h * t + f32(0.00018091917445417494)
    h = h * t + f32(-0.000642581086140126)
    h = h * t + f32(0.002289690775796771)
    h = h * t + f32(-0.008461027406156063)
    h = h * t + f32(0.0331522561609745)
    h = h * t + f32(-0.14426355063915253)
    rest = fma(e_lo, _LOG1P_G_C0_HI, e * fma(h, t, _LOG1P_G_C0_LO))
    return fma(e, _LOG1P_G_C0_HI, rest)


@njit(**SCALAR)
def log1p_exp_neg_f64(x):
    """log1p(exp(x)), x <= 0 (or NaN)."""
    return log1p_f64(exp_neg_f64(x))


# --------------------------------------------------------------------------- tanh
# |x| < 0.55: x + x^3 q(x^2) (fitted by tools/fit_poly.py); else 1 - 2e/(1 + e), e = exp(-2|x|)
# (= 1 - 2/(exp(2|x|) + 1); e <= 1/3 so the subtraction cannot cancel; exp of a non-positive
# argument is the cheaper exp_neg). Sign restored at the end.
@njit(**SCALAR)
def tanh_f64(x):
    a = abs(x)
    z = a * a
    q = f64(7.867875574980972e-06)
    q = q * z + f64(-3.371012723069598e-05)
    q = q * z + f64(9.454363973243279e-05)
    q = q * z + f64(-0.00023846959234500803)
    q = q * z + f64(0.00058990450445044)
    q = q * z + f64(-0.0014558189683009605)
    q = q * z + f64(0.0035921267565020534)
    q = q * z + f64(-0.008863235462269626)
    q = q * z + f64(0.021869488534040537)
    q = q * z + f64(-0.05396825396821972)
    q = q * z + f64(0.1333333333333331)
    q = q * z + f64(-0.3333333333333333)
    small = a + a * z * q
    e = exp_neg_f64(-(a + a))
    large = f64(1.0) - (e + e) / (f64(1.0) + e)
    t = small if a < f64(0.55) else large
    return math.copysign(t, x)


@njit(**SCALAR)
def tanh_f32(x):
    a = abs(x)
    z = a * a
    q = f32(0.0025243377226153896)
    q = q * z + f32(-0.008524771522779208)
    q = q * z + f32(0.021818032730288348)
    q = q * z + f32(-0.05396465500965435)
    q = q * z + f32(0.1333332402577532)
    q = q * z + f32(-0.33333333293948986)
    small = a + a * z * q
    e = exp_neg_f32(-(a + a))
    large = f32(1.0) - _over_one_plus_f32(e + e, e)
    t = small if a < f32(0.55) else large
    return math.copysign(t, x)


# --------------------------------------------------------------------------- erfcx
# exp(a^2) erfc(a) for a >= 0 (float64): with s = 1 / (1 + a/4), erfcx(a) = s g(s), g a
# polynomial in v = (s - s_lo) / (1 - s_lo) * 2 - 1 fitted on a in [0, 28.5] (tools/fit_poly.py,
# max relative error 3.8e-18). erfc(a) = exp(-a^2) erfcx(a): callers keep exp(-a^2) apart to
# carry a^2 in double-double (see activations.gelu).
_ERFCX_A_MAX = f64(28.5)
_ERFCX_S_LO = f64(0.12307692307692308)
_ERFCX_V_SCALE = f64(2.0) / (f64(1.0) - _ERFCX_S_LO)


@njit(**SCALAR)
def erfcx_f64(a):
    """exp(a^2) erfc(a) for a >= 0 (a above 28.5 is taken as 28.5: erfc is 0 there)."""
    a = _ERFCX_A_MAX if a > _ERFCX_A_MAX else a
    s = f64(1.0) / (f64(1.0) + a * f64(0.25))
    v = (s - _ERFCX_S_LO) * _ERFCX_V_SCALE - f64(1.0)
    g = f64(1.500922791208015e-11)
    g = g * v + f64(4.974248448062068e-11)
    g = g * v + f64(-2.0066582704405175e-10)
    g = g * v + f64(-7.497021333292729e-10)
    g = g * v + f64(1.8018976987924e-09)
    g = g * v + f64(8.428084288548189e-09)
    g = g * v + f64(-1.2760706916056582e-08)
    g = g * v + f64(-9.593581041422929e-08)
    g = g * v + f64(2.8106367263066048e-08)
    g = g * v + f64(1.0821971684616587e-06)
    g = g * v + f64(1.627106052158116e-06)
    g = g * v + f64(-9.270957714115303e-06)
    g = g * v + f64(-4.6191038495618e-05)
    g = g * v + f64(-3.254978108236253e-05)
    g = g * v + f64(0.0005297043307583337)
    g = g * v + f64(0.003232702071745626)
    g = g * v + f64(0.011563338476906892)
    g = g * v + f64(0.031042509968796348)
    g = g * v + f64(0.06757823126859577)
    g = g * v + f64(0.12360190883469382)
    g = g * v + f64(0.19349855946792258)
    g = g * v + f64(0.26179135946536825)
    g = g * v + f64(0.3072470598350682)
    return s * g


# --------------------------------------------------------------------------- gelu, float32
# x Phi(x) = x/2 erfc(-x/sqrt2) = x/2 erfcx(a) exp(-x^2/2) (a = |x|/sqrt2) for x <= 0, and
# x - that for x > 0, all in float32: x^2 = h + l exactly (fma), so exp(-x^2/2) is taken of
# -h/2 with -l/2 as its low part (exp would amplify a rounded x^2 by x^2/2); erfcx(a) = s g(v),
# s = 1 / (1 + C1 |x|), v = A s + B, g of degree 9 fitted to the float32 constants below on
# |x| <= 15 (least squares, coefficients rounded one by one: 1.1e-8 relative). Beyond |x| = 15
# the erfc term is 0 in float32 (x is clamped there: x^2 stays finite).
_GELU_C1 = f32(0.2357022613286972)
_GELU_A = f32(2.565685510635376)
_GELU_B = f32(-1.565685510635376)
_GELU_X_MAX = f32(15.0)


@njit(**SCALAR)
def _gelu_parts_32(x):
    """(xc, erfcx(a), y_hi, y_lo, k) for float32 x clamped to +-15 (xc): a = |xc|/sqrt2 and
    exp(-xc^2/2) = 2^k (y_hi + y_lo); the pieces of gelu_f32 and gelu_derivative_f32."""
    xc = _GELU_X_MAX if x > _GELU_X_MAX else x
    xc = -_GELU_X_MAX if xc < -_GELU_X_MAX else xc
    h = xc * xc
    l = fma(xc, xc, -h)  # noqa: E741
    ax = abs(xc)
    cx = ax * _GELU_C1
    cx_lo = fma(ax, _GELU_C1, -cx)
    d, d_lo = one_plus(cx, cx_lo)  # d + d_lo = 1 + C1 |x| exactly
    s0 = approx_quotient(f32(1.0), d)  # a Newton step corrects it:
    s = s0 + (fma(-s0, d, f32(1.0)) - s0 * d_lo) * s0  # 1 / (1 + C1 |x|), ~0.5 ULP: the
    # erfcx below is that at the x that s stands for, so s's error moves x
    u = cx * s  # 1 - s, to float32's relative precision
    # v = A s + B = 1 - A u: from s where s is small (tails), from u where s is near 1 (a
    # rounded s would carry an error of 2^-25 * A into v there)
    v = s * _GELU_A + _GELU_B if s < f32(0.5) else f32(1.0) - _GELU_A * u
    g = f32(1.1469971468613949e-05)
    g = g * v + f32(7.550967438874068e-06)
    g = g * v + f32(-0.00019588254508562386)
    g = g * v + f32(-0.00047489925054833293)
    g = g * v + f32(0.0020989777985960245)
    g = g * v + f32(0.01809399574995041)
    g = g * v + f32(0.06764083355665207)
    g = g * v + f32(0.16877371072769165)
    g = g * v + f32(0.31034597754478455)
    g = g * v + f32(0.43369826674461365)
    y_hi, y_lo, k = _exp_dd_32(h * f32(-0.5), l * f32(-0.5), _EXP_LO_32, f32(0.0))
    return xc, s * g, y_hi, y_lo, k


@njit(**SCALAR)
def _scaled_product_32(m, y_hi, y_lo, k):
    """m (y_hi + y_lo) 2^k for k in [-174, 0] (the exp of a non-positive argument), rounded
    once before the scaling (no subnormal intermediate); 2^k as exp_neg applies it."""
    return _times_pow2_neg_32(fma(m, y_hi, m * y_lo), k)


@njit(**SCALAR)
def gelu_f32(x):
    xc, erfcx, y_hi, y_lo, k = _gelu_parts_32(x)
    half_x_erfc = _scaled_product_32((f32(0.5) * xc) * erfcx, y_hi, y_lo, k)  # x/2 erfc(a)
    return half_x_erfc if x <= f32(0.0) else x - half_x_erfc  # x = -0.0 stays -0.0


#: 1 / sqrt(2 pi) in float32
_INV_SQRT_2PI_32 = f32(0.3989422804014327)


@njit(**SCALAR)
def gelu_derivative_f32(x):
    """Phi(x) + x phi(x) in float32 arithmetic, from the pieces of gelu_f32. With E =
    exp(-x^2/2): Phi(x) = E erfcx(a)/2 for x <= 0 (1 - that above) and x phi(x) = E x /
    sqrt(2 pi), so the sum is E (x / sqrt(2 pi) +- erfcx(a)/2) (+ 1 for x > 0): the bracket
    as one fma, where the two terms cancel (the derivative's zero near x = -0.75) it is
    rounded once. Infinite x: the caller's (xc is clamped there)."""
    xc, erfcx, y_hi, y_lo, k = _gelu_parts_32(x)
    half = f32(0.5) * erfcx
    negative = x <= f32(0.0)
    bracket = fma(xc, _INV_SQRT_2PI_32, half if negative else -half)
    d = _scaled_product_32(bracket, y_hi, y_lo, k)
    return d if negative else f32(1.0) + d


# --------------------------------------------------------------------------- gelu_tanh, float32
# x sigmoid(2u), 2u = 2 sqrt(2/pi) x (1 + 0.044715 x^2). exp amplifies the relative error of its
# argument by |2u| (up to ~120 where the float32 result is still nonzero), so 2u is carried as
# a float32 pair (products split exactly with fma, constants as hi + lo): ~2^-44 relative.
# Beyond |x| = 12 the result is x or 0 in float32 (x is clamped there).
GELU_TANH_K0 = 0.7978845608028654  # sqrt(2/pi), the definition's constants (float64)
GELU_TANH_K1 = 0.044715
_GT_K1_HI = f32(GELU_TANH_K1)
_GT_K1_LO = f32(GELU_TANH_K1 - float(_GT_K1_HI))
_GT_K2_HI = f32(2.0 * GELU_TANH_K0)
_GT_K2_LO = f32(2.0 * GELU_TANH_K0 - float(_GT_K2_HI))
_GT_3K1 = f32(3.0 * GELU_TANH_K1)
_GT_X_MAX = f32(12.0)


@njit(**SCALAR)
def _gelu_tanh_parts_32(x):
    """(xc, y_hi, y_lo, k, positive) for float32 x: xc = x clamped to +-12, exp(-|2u|) = 2^k
    (y_hi + y_lo) with 2u of xc carried as a float32 pair, positive = (2u >= 0)."""
    xc = _GT_X_MAX if x > _GT_X_MAX else x
    xc = -_GT_X_MAX if xc < -_GT_X_MAX else xc
    x2 = xc * xc
    x2_lo = fma(xc, xc, -x2)
    # p as an fma, not a product: the GPU compiler fuses a plain product into the addition
    # below (1 + p as one fma) and the two-sum would then correct a rounding that did not happen
    p = fma(_GT_K1_HI, x2, f32(0.0))
    p_lo = fma(_GT_K1_HI, x2, -p) + (_GT_K1_HI * x2_lo + _GT_K1_LO * x2)
    inner, inner_lo = one_plus(p, p_lo)
    q = xc * inner
    q_lo = fma(xc, inner, -q) + xc * inner_lo
    r = _GT_K2_HI * q
    r_lo = fma(_GT_K2_HI, q, -r) + (_GT_K2_HI * q_lo + _GT_K2_LO * q)
    positive = r >= f32(0.0)
    neg_r = -r if positive else r  # -|2u|, its low part with it
    neg_lo = -r_lo if positive else r_lo
    y_hi, y_lo, k = _exp_dd_32(neg_r, neg_lo, _EXP_LO_32, f32(0.0))
    return xc, y_hi, y_lo, k, positive


@njit(**SCALAR)
def _scaled_product_or_zero_32(m, y_hi, y_lo, k, k_min):
    """m (y_hi + y_lo) 2^k, or m * 0 where k < k_min (chosen so that the product rounds to 0
    there, or is negligible where it is added to 1): those lanes compute with k = 0 instead.
    A subnormal or underflowing product costs a microcode assist on x86, for the whole vector:
    gelu_tanh ran 2x slower on N(0, 4^2) inputs without this."""
    small = k < k_min
    v = _scaled_product_32(m, y_hi, y_lo, i32(0) if small else k)
    return m * f32(0.0) if small else v


@njit(**SCALAR)
def gelu_tanh_f32(x):
    """x sigmoid(2u) in float32 arithmetic: x / (1 + e) for 2u >= 0, x e / (1 + e) below
    (e = exp(-|2u|); x e rounded once, never a subnormal intermediate). e < 2^-30 counts as 0
    in 1 + e; x e is 0 below 2^-160 (|x| <= 12)."""
    xc, y_hi, y_lo, k, positive = _gelu_tanh_parts_32(x)
    e = _scaled_product_or_zero_32(f32(1.0), y_hi, y_lo, k, i32(-30))
    numerator = x if positive else _scaled_product_or_zero_32(xc, y_hi, y_lo, k, i32(-160))
    # e = 0 (k < -30): the result is the numerator, maybe subnormal: kept out of the division
    tiny = k < i32(-30)
    y = math.copysign(_over_one_plus_f32(f32(1.0) if tiny else numerator, e), numerator)
    return numerator if tiny else y


@njit(**SCALAR)
def gelu_tanh_derivative_f32(x):
    """s + x 2u' s (1 - s) in float32 arithmetic, s = sigmoid(2u) = n / (1 + e), s (1 - s) =
    e / (1 + e)^2 (no cancellation), 2u' = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2), x 2u' e
    rounded once (0 below 2^-160: |x 2u'| <= 400). One quotient: (n (1 + e) + x 2u' e) /
    (1 + e)^2, its numerator rounded once (fma) before it cancels for x < 0."""
    xc, y_hi, y_lo, k, positive = _gelu_tanh_parts_32(x)
    e = _scaled_product_or_zero_32(f32(1.0), y_hi, y_lo, k, i32(-30))
    one_plus_e = f32(1.0) + e
    tail = _scaled_product_or_zero_32(f32(1.0), y_hi, y_lo, k, i32(-160))
    du = _GT_K2_HI * fma(_GT_3K1, xc * xc, f32(1.0))
    term = _scaled_product_or_zero_32(xc * du, y_hi, y_lo, k, i32(-160))
    numerator = fma(f32(1.0) if positive else tail, one_plus_e, term)
    return numerator / (one_plus_e * one_plus_e)


# --------------------------------------------------------------------------- generic names
def _generic(name, impl_32, impl_64, numpy_impl):
    """A function usable from Python (NumPy) and, inside jitted code, typed on its arguments."""

    def python_version(*args):
        return numpy_impl(*args)

    python_version.__name__ = name
    python_version.__qualname__ = name
    python_version.__doc__ = f"{name}: float32 and float64, vectorizable inside kernels."

    def pick(args):
        if all(a == types.float32 for a in args):
            return impl_32
        if all(a == types.float64 for a in args):
            return impl_64
        return None

    @overload_per_target(python_version)
    def _dispatch(x, m=None):
        if m is None or isinstance(m, types.Omitted):
            impl = pick((x,))
            return None if impl is None else (lambda x, m=None: impl(x))
        impl = pick((x, m))
        return None if impl is None else (lambda x, m=None: impl(x, m))

    return python_version


exp = _generic("exp", exp_f32, exp_f64, np.exp)
expm1 = _generic("expm1", expm1_f32, expm1_f64, np.expm1)
log1p = _generic("log1p", log1p_f32, log1p_f64, np.log1p)
tanh = _generic("tanh", tanh_f32, tanh_f64, np.tanh)
exp_mul = _generic("exp_mul", exp_mul_f32, exp_mul_f64, lambda x, m: m * np.exp(x))
exp_neg = _generic("exp_neg", exp_neg_f32, exp_neg_f64, np.exp)
exp_mul_neg = _generic("exp_mul_neg", exp_mul_neg_f32, exp_mul_neg_f64, lambda x, m: m * np.exp(x))
#: n / (1 + e) for 0 <= e <= 1 (the sigmoid family's quotient): float32 corrected for the
#: rounding of 1 + e, float64 plain.
over_one_plus = _generic(
    "over_one_plus", _over_one_plus_f32, _over_one_plus_f64, lambda n, e: n / (1 + e)
)


@intrinsic
def _always_inline(typingctx):
    """Marks the function being compiled ``alwaysinline`` for LLVM (no code)."""

    def codegen(context, builder, signature, args):
        builder.function.attributes.add("alwaysinline")
        return context.get_dummy_value()

    return types.none(), codegen


#: ``always_inline()`` in jitted code (typed for mypy as jitted code sees it: no arguments).
always_inline = cast("Callable[[], None]", _always_inline)

#: LLVM's per-function override of the vector width its loop vectorizer aims for.
_PREFER_512_BIT = '"prefer-vector-width"="512"'


@intrinsic
def _wide_vectors(typingctx):
    """Lets LLVM vectorize the function being compiled with 512-bit vectors (no code).

    On AVX-512 CPUs LLVM's x86 tuning prefers 256-bit vectors (``prefer-256-bit``, against
    the clock drops of early AVX-512 chips), so numba's loops ran 8 float32 lanes wide. With
    this per-function attribute fastact's kernels ran 1.2-1.6x faster in cache and gave
    bit-identical results (docs/performance.md); unlike ``NUMBA_CPU_FEATURES`` it touches no
    other code of the process. Without AVX-512 it changes nothing. In a ``prange`` loop, call
    it inside the loop body: numba compiles that body as a function of its own.
    llvmlite's attribute set knows only LLVM's keyword attributes, so the string attribute is
    added with ``set.add``; llvmlite prints it verbatim into the function's definition.
    """

    def codegen(context, builder, signature, args):
        set.add(builder.function.attributes, _PREFER_512_BIT)
        return context.get_dummy_value()

    return types.none(), codegen


#: ``wide_vectors()`` in jitted code (typed for mypy as what jitted code sees: no arguments).
wide_vectors = cast("Callable[[], None]", _wide_vectors)


def by_dtype(name, impl_32, impl_64, numpy_impl):
    """f(x) that runs impl_32 for float32 x and impl_64 for float64 x inside jitted code (for
    the activations whose float32 algorithm differs from their float64 one). The dispatch is
    marked alwaysinline: left to LLVM's inliner, a large impl (gelu_f32) stayed an out-of-line
    call and the loop did not vectorize (numba's own inline='always' for overloads broke the
    CUDA compilation)."""

    def python_version(x):
        return numpy_impl(x)

    python_version.__name__ = name
    python_version.__qualname__ = name

    def pick(impl):
        def call(x):
            _always_inline()
            return impl(x)

        return call

    @overload_per_target(python_version)
    def _dispatch(x):
        if x == types.float32:
            return pick(impl_32)
        if x == types.float64:
            return pick(impl_64)
        return None

    return python_version


#: log1p(exp(x)) for x <= 0 (inlined for LLVM: the float64 version, log1p of exp, stayed an
#: out-of-line call through the generic dispatch, and the loop with it).
log1p_exp_neg = by_dtype(
    "log1p_exp_neg", log1p_exp_neg_f32, log1p_exp_neg_f64, lambda x: np.log1p(np.exp(x))
)
