"""fastact._math (exp, expm1, log1p, tanh, log1p_exp_neg): max ULP over the whole domain,
edges, specials.

float32: every 4096th float32 of the whole finite range (both signs, by bit pattern: ~1e6
values down to the subnormals), 2^17 random float32, a uniform grid over the function's
interesting range, and 64 floats on each side of the overflow / underflow / subnormal-result
thresholds, against NumPy in float64. float64: ~2500 points (whole range, tails, edges)
against mpmath. Bounds (both dtypes): exp <= 1, expm1 <= 2, log1p <= 2, tanh <= 2,
log1p_exp_neg (x <= 0) <= 2 ULP.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import fastact as fa
from fastact import _math
from tests import ulp

DTYPES = pytest.mark.parametrize("dtype", [ulp.F32, ulp.F64], ids=["float32", "float64"])


def _explain(m, limit):
    return f"{m.name} {m.dtype}: max ULP {m.max:.4g} > {limit}: {m.summary(limit)}"


@DTYPES
@pytest.mark.parametrize("name", ulp.MATH_FUNCTIONS)
def test_max_ulp(name, dtype):
    m = ulp.measure_math(name, dtype)
    limit = ulp.MATH_BOUNDS[name]
    assert m.max <= limit, _explain(m, limit)


@DTYPES
def test_special_values(dtype):
    inf, nan = np.inf, np.nan
    f = ulp.math_function

    def a(*v):
        return np.array(v, dtype)

    x = a(inf, -inf, nan, 0.0, -0.0)
    np.testing.assert_array_equal(f("exp", x), a(inf, 0.0, nan, 1.0, 1.0))
    np.testing.assert_array_equal(f("expm1", x), a(inf, -1.0, nan, 0.0, -0.0))
    np.testing.assert_array_equal(f("tanh", x), a(1.0, -1.0, nan, 0.0, -0.0))
    np.testing.assert_array_equal(
        f("log1p", a(inf, -1.0, -2.0, -inf, nan, 0.0, -0.0)), a(inf, -inf, nan, nan, nan, 0.0, -0.0)
    )
    np.testing.assert_array_equal(
        f("log1p_exp_neg", a(-inf, nan, 0.0, -0.0)), a(0.0, nan, np.log(2.0), np.log(2.0))
    )
    # the sign of zero is kept
    for name in ("expm1", "log1p", "tanh"):
        assert np.signbit(f(name, a(-0.0))[0]), name
    # overflow to inf and underflow to 0, no NaN on the way
    big, small = (89.0, -104.0) if dtype == ulp.F32 else (710.0, -746.0)
    assert f("exp", a(big))[0] == inf and f("expm1", a(big))[0] == inf
    assert f("exp", a(small))[0] == 0.0 and f("expm1", a(small))[0] == -1.0
    # subnormal results
    tiny = np.finfo(dtype).tiny
    sub = f("exp", a(small + 2.0))[0]
    assert 0 < sub < tiny


@DTYPES
def test_public_tanh_and_elu_are_the_math_functions(dtype):
    """fastact.tanh is _math.tanh; elu(x <= 0, alpha=1) is _math.expm1: bit for bit."""
    x = ulp.math_sweep("tanh", dtype)
    np.testing.assert_array_equal(ulp.forward("tanh", x), ulp.math_function("tanh", x))
    x = ulp.math_sweep("expm1", dtype)
    x = x[x <= 0]
    np.testing.assert_array_equal(ulp.forward("elu", x, (1.0, 0.0)), ulp.math_function("expm1", x))
    assert fa.tanh(np.array([0.5], dtype)).dtype == dtype


@njit(**ulp._LOOP)
def _exp_neg_pairs(x, out):
    """out[0] = exp(x), out[1] = exp_neg(x), out[2] = exp_mul(x, x), out[3] = exp_mul_neg(x, x)."""
    for i in range(x.size):
        out[0, i] = _math.exp(x[i])
        out[1, i] = _math.exp_neg(x[i])
        out[2, i] = _math.exp_mul(x[i], x[i])
        out[3, i] = _math.exp_mul_neg(x[i], x[i])


@DTYPES
def test_exp_neg_is_exp_for_non_positive_arguments(dtype):
    """exp_neg / exp_mul_neg (one scale factor for 2^k, k <= 0) give exp's / exp_mul's bits for
    every x <= 0: the whole negative range, the underflow and subnormal edges, -inf, -0.0, NaN."""
    x = ulp.math_sweep("exp", dtype)
    lows = (-130.0, -87.5, -104.0, -120.0) if dtype == ulp.F32 else (-720.0, -746.0, -800.0)
    edges = ulp.neighbors(list(lows), dtype.type, 64)
    x = np.concatenate([x[x <= 0], edges, np.array([-np.inf, -0.0, 0.0, np.nan], dtype)])
    out = np.empty((4, x.size), dtype)
    _exp_neg_pairs(x, out)
    np.testing.assert_array_equal(out[1], out[0])
    np.testing.assert_array_equal(out[3], out[2])
