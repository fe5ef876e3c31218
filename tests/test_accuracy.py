"""Accuracy of every activation, forward and backward, in ULP (tests/ulp.py measures).

* Forward, float32: a dense sweep of [-120, 120] (every 1536th float32 by bit pattern, i.e.
  log-uniform down to the subnormals, a uniform grid, random floats), huge |x| (1e4, 1e30,
  float max) and special values, against careful float64 formulas (themselves checked
  against mpmath below). Float64: ~3000 points over the whole range and the tails where the
  results are tiny or subnormal, against mpmath. Bounds (max ULP, float32/float64): sigmoid,
  log_sigmoid, tanh, softplus, elu, celu, selu, silu 2/4; gelu (both forms), mish 4/8.
* Piecewise-linear activations (relu family, hard_*): |err| <= 2 ULP, or eps (absolute).
* Backward: against the exact derivative at x with the tolerance stated at
  ``tests.ulp.BACKWARD_ULP`` (16 ULP, plus the conditioning of the derivative, plus an
  absolute floor of 4 eps in the saturated tails of sigmoid/tanh, which take the output).
* Every backward (all activations) against a central finite difference in float64.

Parametrized over the registry: a new activation fails here until it has an exact reference
and bounds in tests/ulp.py (or is listed there as piecewise linear).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastact.activations import ACTIVATIONS
from tests import ulp

F32, F64 = ulp.F32, ulp.F64
DTYPES = pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])


def _cases(names):
    return [
        pytest.param(
            name,
            params,
            id=name + (f"[{ulp.params_id(name, params)}]" if ulp.params_id(name, params) else ""),
        )
        for name in names
        for params in ulp.param_cases(name)
    ]


SMOOTH = [name for name in ACTIVATIONS if name not in ulp.PIECEWISE]
SMOOTH_CASES = _cases(SMOOTH)
PIECEWISE_CASES = _cases([name for name in ACTIVATIONS if name in ulp.PIECEWISE])
ALL_CASES = _cases(ACTIVATIONS)


def _explain(m, limit, what="ULP"):
    return f"{m.name} {m.dtype} params={m.params}: max {what} {m.max:.4g} > {limit:g}: {m.summary(limit)}"


def test_every_activation_is_classified():
    """A new activation needs bounds and an exact reference (tests/ulp.py)."""
    for name in ACTIVATIONS:
        assert (name in ulp.FORWARD_BOUNDS) != (name in ulp.PIECEWISE), (
            f"{name}: add its max-ULP bounds to FORWARD_BOUNDS (or list it in PIECEWISE)"
        )
        assert name in ulp.EXACT and name in ulp.DERIVATIVE, f"{name}: add an mpmath reference"
        assert name in ulp._NP_FORWARD and name in ulp._NP_DERIVATIVE, (
            f"{name}: add a float64 formula"
        )


# --------------------------------------------------------------------------- references
@pytest.mark.parametrize("name", SMOOTH)
def test_float64_formulas_agree_with_mpmath(name):
    """The dense float32 sweeps' reference (careful float64) is exact to 1/100 float32 ULP."""
    rng = np.random.default_rng(5)
    x = ulp.float32_sweep()
    x = np.concatenate([rng.choice(x, 300, replace=False), ulp._specials(np.float32, ulp.F32_HUGE)])
    x = x.astype(np.float64)
    params = ulp.default_params(name)
    exact = ulp.reference_f64(name, x, params)
    assert ulp.ulp_error(ulp.reference_numpy64(name, x, params), exact, F32).max() <= 0.01
    x = x[~np.isnan(x)]
    exact = ulp.derivative_f64(name, x, params)
    assert ulp.ulp_error(ulp.derivative_numpy64(name, x, params), exact, F32).max() <= 0.01


def test_ulp_error_conventions():
    f = np.float32
    assert ulp.ulp_error(np.array([1.0]), np.array([1.0 + 2.0**-23]), f)[0] == 1.0
    assert ulp.ulp_error(np.array([0.0]), np.array([2.0**-149]), f)[0] == 1.0  # subnormal floor
    got = np.array([np.inf, -np.inf, np.nan, np.nan, 1.0, np.inf, 3.5e38])
    ref = np.array([np.inf, -np.inf, np.nan, 1.0, np.nan, 1.0, 3.5e38])
    assert ulp.ulp_error(got, ref, f).tolist() == [0, 0, 0, np.inf, np.inf, np.inf, 0]
    hi, lo = ulp.reference_f64("sigmoid", np.array([0.0, -740.0, np.inf, -np.inf, np.nan]))
    assert hi[0] == 0.5 and 0 < hi[1] < 1e-300 and hi[2] == 1 and hi[3] == 0 and np.isnan(hi[4])
    assert (
        ulp.ulp_error(
            np.array([0.5 + 2.0**-53]), (np.array([0.5]), np.array([2.0**-54])), np.float64
        )[0]
        == 0.5
    )


# --------------------------------------------------------------------------- forward
@DTYPES
@pytest.mark.parametrize("name, params", SMOOTH_CASES)
def test_forward_max_ulp(name, params, dtype):
    m = ulp.measure_forward(name, dtype, params)
    limit = ulp.bound(name, dtype)
    assert m.max <= limit, _explain(m, limit)


@DTYPES
@pytest.mark.parametrize("name, params", PIECEWISE_CASES)
def test_piecewise_forward(name, params, dtype):
    """Selects and up to three roundings: within 2 ULP, or eps absolute (x/6 + 1/2 cancels)."""
    m = ulp.measure_forward(name, dtype, params)
    x = m.x.astype(np.float64)
    ref = (
        ulp.reference_numpy64(name, x, m.params)
        if dtype == F32
        else ulp.reference_f64(name, x, m.params)[0]
    )
    got = ulp.forward(name, m.x, m.params).astype(np.float64)
    with np.errstate(invalid="ignore"):
        ok = (m.err <= 2) | (np.abs(got - ref) <= np.finfo(dtype).eps)
    assert ok.all(), _explain(m, 2)


# --------------------------------------------------------------------------- backward
@DTYPES
@pytest.mark.parametrize("name, params", ALL_CASES)
def test_backward_matches_derivative(name, params, dtype):
    m = ulp.measure_backward(name, dtype, params)
    assert m.tol.max <= 1, _explain(m.tol, 1, what="error/tolerance")


def _away_from_kinks(x):
    """Drop points near multiples of 0.5, where the piecewise activations have their kinks
    (0, +-3, 6, +-1, +-0.5, softplus's threshold / beta)."""
    return x[np.abs(2 * x - np.round(2 * x)) > 1e-3]


@pytest.mark.parametrize("name, params", ALL_CASES)
def test_backward_matches_finite_difference(name, params):
    """float64: the backward vs (f(x + h) - f(x - h)) / 2h, h = 1e-6 max(1, |x|); points
    where the one-sided slopes disagree (a kink inside [x - h, x + h]) are left out."""
    rng = np.random.default_rng(11)
    x = np.concatenate(
        [rng.normal(0.0, 3.0, 400), rng.uniform(-30, 30, 300), rng.uniform(-6, 6, 300)]
    )
    x = _away_from_kinks(x)
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    xp, xm = x + h, x - h
    fp, f0, fm = (ulp.forward(name, v, params) for v in (xp, x, xm))
    fd = (fp - fm) / (xp - xm)
    smooth = np.abs((fp - f0) / (xp - x) - (f0 - fm) / (x - xm)) <= 1e-3 * (1 + np.abs(fd))
    assert smooth.mean() > 0.95, f"{name}: {np.count_nonzero(~smooth)} points look like kinks"
    v = ulp.forward(name, x, params) if ACTIVATIONS[name].grad_from == "output" else x
    got = ulp.backward(name, np.ones_like(x), v, params)
    err = np.abs(got - fd) / (1 + np.abs(fd))
    bad = np.flatnonzero(smooth & ~(err <= 1e-6))
    assert bad.size == 0, [(float(x[i]), float(got[i]), float(fd[i])) for i in bad[:5]]


@DTYPES
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_backward_special_values(name, dtype):
    """grad_output = 1 at +-inf, huge |x|, and 0: finite limits (no NaN); NaN propagates
    through the smooth ones (the piecewise ones select on x > 0 etc., as PyTorch does)."""
    fi = np.finfo(dtype)
    x = np.array([np.inf, -np.inf, fi.max, -fi.max, 1e30, -1e30, 0.0, -0.0, np.nan], dtype)
    params = ulp.typed_params(ulp.default_params(name), dtype)
    v = ulp.forward(name, x, params) if ACTIVATIONS[name].grad_from == "output" else x
    got = ulp.backward(name, np.ones_like(x), v, params)
    exact = ulp.derivative_f64(name, x[:-1].astype(np.float64), params)
    assert np.isnan(got[-1]) or name in ulp.PIECEWISE
    assert np.isfinite(got[:-1]).all(), dict(zip(x[:-1].tolist(), got[:-1].tolist()))
    tol = ulp.BACKWARD_ATOL * fi.eps
    assert np.allclose(got[:-1], exact[0], rtol=tol, atol=tol), (x[:-1], got[:-1], exact[0])


@DTYPES
@pytest.mark.parametrize("name", ["silu", "gelu", "gelu_tanh", "mish"])
def test_negative_inputs_keep_the_sign_of_zero(name, dtype):
    """x * s(x) with s >= 0: -0.0 at x = -0.0 and where a negative result underflows (as
    torch and the NumPy reference), never +0.0."""
    x = np.array([-0.0, -1e4, -np.finfo(dtype).max], dtype)
    y = ulp.forward(name, x)
    assert np.all(y == 0) and np.all(np.signbit(y)), f"{name}({x}) = {y}"
