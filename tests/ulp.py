"""ULP measurement for fastact: exact references (mpmath), sweeps, and the measurements that
``tests/test_math.py``, ``tests/test_accuracy.py`` and ``tools/accuracy_report.py`` share.

* ``ulp_error(got, ref, dtype)``: |got - ref| in units of the spacing of ``dtype`` at the
  correctly rounded reference (floored at the smallest subnormal). ``ref`` is a float64 array
  (for float32 results) or a double-double ``(hi, lo)`` pair (for float64 results).
  Equal infinities and NaN vs NaN count 0, NaN vs a number (or inf vs a finite reference
  that does not round to inf) counts inf; the sign of zero is not compared.
* ``reference_f64(name, x, params)``: the exact value from mpmath (``MP_PREC`` bits) as a
  double-double ``(hi, lo)``: ``hi`` is the correctly rounded float64 (subnormals included),
  ``lo`` the rest. ``name``: an activation of ``ACTIVATIONS`` or exp/expm1/log1p/tanh.
* ``derivative_f64(name, x, params)``: the exact d/dx at x (the backward's reference), and
  ``reference_numpy64`` / ``derivative_numpy64``: careful float64 NumPy formulas (their
  error is ~1e-14 relative at most, checked against mpmath by the tests) used as the
  reference of the dense float32 sweeps, where mpmath would be too slow.

Parameters: ``params`` is the tuple ``(a, b)`` of the kernel (``default_params(name)``); the
measurement rounds them to the dtype first, as the public functions do. The fixed constants
of the definitions (SELU_ALPHA, ..., GELU_TANH_K0/K1) are the float64 values of
``fastact.activations``, exactly.

Kernels are called through the public functions (``fastact.<name>``), in chunks smaller than
``PARALLEL_THRESHOLD`` so that only the serial kernels run (2-core machines, no thread pool).
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
from numba import njit

import fastact as fa
from fastact import _math
from fastact._config import PARALLEL_THRESHOLD, SERIAL
from fastact.activations import (
    ACTIVATIONS,
    GELU_TANH_K0,
    GELU_TANH_K1,
    SELU_ALPHA,
    SELU_SCALE,
)

MP_PREC = 120
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
DTYPES = (F32, F64)
MATH_FUNCTIONS = ("exp", "expm1", "log1p", "tanh", "log1p_exp_neg")

# --------------------------------------------------------------------------- bounds (max ULP)
#: The issue's bounds of the forward activations (float32, float64).
FORWARD_BOUNDS = {
    "sigmoid": (2, 4),
    "log_sigmoid": (2, 4),
    "tanh": (2, 4),
    "softplus": (2, 4),
    "elu": (2, 4),
    "celu": (2, 4),
    "selu": (2, 4),
    "silu": (2, 4),
    "gelu": (4, 8),
    "gelu_tanh": (4, 8),
    "mish": (4, 8),
}
#: Piecewise-linear activations (no transcendental): not ULP-bounded by the issue; their
#: accuracy is measured and reported, and checked with an absolute tolerance.
PIECEWISE = ("relu", "relu6", "leaky_relu", "hard_sigmoid", "hard_swish", "hard_tanh")
#: fastact._math (module docstring): both dtypes.
MATH_BOUNDS = {"exp": 1, "expm1": 2, "log1p": 2, "tanh": 2, "log1p_exp_neg": 2}
#: Backward (grad_output = 1) vs the exact derivative d at x, eps of the dtype:
#:   |got - d| <= BACKWARD_ULP ulp(d)                   relative part
#:              + BACKWARD_COND eps |x d'(x)|           what rounding x alone costs: the zeros
#:                                                      of gelu'/silu'/mish', gelu's e^(-x^2/2)
#:              + BACKWARD_SUB max(1, |x|) 2^-149|-1074 a subnormal intermediate (e^x) times x
#:              + BACKWARD_ATOL eps  (sigmoid, tanh)    absolute floor of the saturated tails:
#:                                                      from the rounded output y, 1 - y is 0
BACKWARD_ULP = 16
BACKWARD_COND = 4
BACKWARD_SUB = 1
BACKWARD_ATOL = 4


def bound(name, dtype):
    """The max-ULP bound of the forward of activation ``name`` in ``dtype``."""
    if name not in FORWARD_BOUNDS:
        raise KeyError(f"no max-ULP bound for {name!r}: add it to FORWARD_BOUNDS in tests/ulp.py")
    return FORWARD_BOUNDS[name][0 if np.dtype(dtype) == F32 else 1]


# --------------------------------------------------------------------------- ULP
_FORMAT = {F32: (24, -149), F64: (53, -1074)}  # (precision, exponent of the smallest subnormal)


def ulp_of(r, dtype):
    """The spacing of ``dtype`` at the values ``r`` (already in dtype), floored at the
    smallest subnormal; finite values only (float64 array)."""
    p, emin = _FORMAT[np.dtype(dtype)]
    a = np.abs(np.asarray(r, np.float64))
    _, e = np.frexp(a)
    e = np.where(a == 0, emin + p, e)
    return np.ldexp(1.0, np.maximum(e.astype(np.int64) - p, emin))


def ulp_error(got, ref, dtype):
    """|got - ref| in ULP of ``dtype`` at the correctly rounded ``ref`` (float64 array)."""
    dtype = np.dtype(dtype)
    hi, lo = ref if isinstance(ref, tuple) else (ref, 0.0)
    got = np.asarray(got, np.float64)
    hi = np.asarray(hi, np.float64)
    lo = np.broadcast_to(np.asarray(lo, np.float64), hi.shape)
    with np.errstate(all="ignore"):
        r = hi.astype(dtype).astype(np.float64)  # the reference rounded to dtype
        finite_r = np.where(np.isinf(r), np.finfo(dtype).max, r)
        err = np.abs((got - hi) - lo) / ulp_of(np.where(np.isnan(r), 0.0, finite_r), dtype)
    got_nan, ref_nan = np.isnan(got), np.isnan(hi)
    err = np.where(got_nan | ref_nan, np.inf, err)
    err = np.where(got_nan & ref_nan, 0.0, err)
    err = np.where(np.isinf(got) & (got == r), 0.0, err)  # equal infinities (ref rounds to inf)
    return err


def max_ulp(err, x):
    """(max ULP, the x where it occurs) of an error array over inputs x."""
    err = np.asarray(err)
    if err.size == 0:
        return 0.0, float("nan")
    i = int(np.argmax(err))
    return float(err[i]), float(np.asarray(x).ravel()[i])


# --------------------------------------------------------------------------- parameters
def default_params(name):
    """The kernel's (a, b) with the registry's defaults (0.0 for unused slots)."""
    if name in MATH_FUNCTIONS:
        return (0.0, 0.0)
    values = [p.default for p in ACTIVATIONS[name].params]
    return tuple(values + [0.0] * (2 - len(values)))


def param_cases(name):
    """The parameter tuples to test: the defaults, and for activations with parameters one
    more set (every default halved, 0 -> 0.5: exact in float32, e.g. softplus beta 0.5,
    threshold 10; elu/celu alpha 0.5; hard_tanh (-0.5, 0.5)); softplus also beta 3."""
    cases = [default_params(name)]
    spec = ACTIVATIONS.get(name)
    if spec is not None and spec.params:
        values = [p.default * 0.5 if p.default != 0 else 0.5 for p in spec.params]
        cases.append(tuple(values + [0.0] * (2 - len(values))))
    if name == "softplus":  # beta x rounded (beta not a power of two): exp amplifies it
        cases.append((3.0, 20.0))
    return cases


def params_id(name, params):
    spec = ACTIVATIONS.get(name)
    if spec is None or not spec.params:
        return ""
    return ",".join(f"{p.name}={v:g}" for p, v in zip(spec.params, params))


def typed_params(params, dtype):
    """The parameters as the kernel sees them (rounded to dtype), back as Python floats."""
    return tuple(float(np.dtype(dtype).type(p)) for p in params)


# --------------------------------------------------------------------------- calling fastact
def public_call(name):
    """(public function name, fixed keyword arguments) that reach activation ``name``."""
    spec = ACTIVATIONS[name]
    if spec.public:
        return name, {}
    for parent in ACTIVATIONS.values():
        if parent.choice and name in parent.choice[1].values():
            arg, variants = parent.choice
            return parent.name, {arg: next(k for k, v in variants.items() if v == name)}
    raise KeyError(name)


def _kwargs(name, params):
    spec = ACTIVATIONS[name]
    return {p.name: float(v) for p, v in zip(spec.params, params)}


_CHUNK = max(1, min(1 << 16, PARALLEL_THRESHOLD - 1))


def forward(name, x, params=None):
    """fastact's forward of ``name`` on a 1-D array (serial kernels only)."""
    params = default_params(name) if params is None else params
    func, extra = public_call(name)
    f = getattr(fa, func)
    kw = dict(extra, **_kwargs(name, params))
    out = np.empty_like(x)
    for i in range(0, x.size, _CHUNK):
        f(x[i : i + _CHUNK], out=out[i : i + _CHUNK], **kw)
    return out


def backward(name, g, v, params=None):
    """fastact's ``<name>_backward(g, v)`` on 1-D arrays (v: x, or the output for sigmoid/tanh)."""
    params = default_params(name) if params is None else params
    func, extra = public_call(name)
    f = getattr(fa, f"{func}_backward")
    kw = dict(extra, **_kwargs(name, params))
    out = np.empty_like(v)
    for i in range(0, v.size, _CHUNK):
        f(g[i : i + _CHUNK], v[i : i + _CHUNK], out=out[i : i + _CHUNK], **kw)
    return out


# fastact._math has no public entry: tiny loops with the kernels' options. Not cached: numba's
# cache of this file would not notice an edit of fastact/_math.py.
_LOOP = dict(SERIAL, cache=False)


@njit(**_LOOP)
def _exp_loop(x, out):
    for i in range(x.size):
        out[i] = _math.exp(x[i])


@njit(**_LOOP)
def _expm1_loop(x, out):
    for i in range(x.size):
        out[i] = _math.expm1(x[i])


@njit(**_LOOP)
def _log1p_loop(x, out):
    for i in range(x.size):
        out[i] = _math.log1p(x[i])


@njit(**_LOOP)
def _tanh_loop(x, out):
    for i in range(x.size):
        out[i] = _math.tanh(x[i])


@njit(**_LOOP)
def _log1p_exp_neg_loop(x, out):
    for i in range(x.size):
        out[i] = _math.log1p_exp_neg(x[i])


_MATH_LOOPS = {
    "exp": _exp_loop,
    "expm1": _expm1_loop,
    "log1p": _log1p_loop,
    "tanh": _tanh_loop,
    "log1p_exp_neg": _log1p_exp_neg_loop,
}


def math_function(name, x):
    """fastact._math.<name> applied to a 1-D float32/float64 array."""
    out = np.empty_like(x)
    _MATH_LOOPS[name](x, out)
    return out


# --------------------------------------------------------------------------- exact (mpmath)
_BIG = mpmath.mpf(2) ** 1100  # stands for +-inf: beyond every float, every limit reached
#: Limits (at +inf, at -inf) that evaluating at +-_BIG does not reach (log grows too slowly).
_AT_INF = {"log1p": (math.inf, math.nan)}


def _sig(z):
    return 1 / (1 + mpmath.exp(-z))


def _erfc(t):
    """mpmath.erfc, with its asymptotic series where mpmath overflows (|t| > 1e4)."""
    if abs(t) <= 10000:
        return mpmath.erfc(t)
    a = abs(t)
    inv = 1 / (2 * a * a)
    series = 1 - inv + 3 * inv**2 - 15 * inv**3 + 105 * inv**4  # relative error < 1e-40
    tail = mpmath.exp(-a * a) / (a * mpmath.sqrt(mpmath.pi)) * series
    return tail if t > 0 else 2 - tail


def _gelu_tanh_2u(x):
    return 2 * mpmath.mpf(GELU_TANH_K0) * (x + mpmath.mpf(GELU_TANH_K1) * x**3)


def _softplus_mp(x, beta, threshold):
    z = beta * x
    return x if z > threshold else mpmath.log1p(mpmath.exp(z)) / beta


def _log1p_mp(x):
    if x < -1:
        return mpmath.nan
    if x == -1:
        return mpmath.ninf
    return mpmath.log1p(x)


_ALPHA, _SCALE = mpmath.mpf(SELU_ALPHA), mpmath.mpf(SELU_SCALE)

#: name -> f(x, a, b), exact; x an mpf.
EXACT = {
    "exp": lambda x, a, b: mpmath.exp(x),
    "expm1": lambda x, a, b: mpmath.expm1(x),
    "log1p": lambda x, a, b: _log1p_mp(x),
    "tanh": lambda x, a, b: mpmath.tanh(x),
    "log1p_exp_neg": lambda x, a, b: mpmath.log1p(mpmath.exp(x)),
    "sigmoid": lambda x, a, b: _sig(x),
    "log_sigmoid": lambda x, a, b: -mpmath.log1p(mpmath.exp(-x)),
    "softplus": _softplus_mp,
    "elu": lambda x, alpha, b: x if x > 0 else alpha * mpmath.expm1(x),
    "celu": lambda x, alpha, b: x if x > 0 else alpha * mpmath.expm1(x / alpha),
    "selu": lambda x, a, b: _SCALE * (x if x > 0 else _ALPHA * mpmath.expm1(x)),
    "gelu": lambda x, a, b: x / 2 * _erfc(-x / mpmath.sqrt(2)),
    "gelu_tanh": lambda x, a, b: x * _sig(_gelu_tanh_2u(x)),
    "silu": lambda x, a, b: x * _sig(x),
    "mish": lambda x, a, b: x * mpmath.tanh(mpmath.log1p(mpmath.exp(x))),
    "relu": lambda x, a, b: x if x > 0 else mpmath.mpf(0),
    "relu6": lambda x, a, b: min(max(x, mpmath.mpf(0)), mpmath.mpf(6)),
    "leaky_relu": lambda x, slope, b: x if x > 0 else slope * x,
    "hard_sigmoid": lambda x, a, b: min(max((x + 3) / 6, mpmath.mpf(0)), mpmath.mpf(1)),
    "hard_swish": lambda x, a, b: x * min(max((x + 3) / 6, mpmath.mpf(0)), mpmath.mpf(1)),
    "hard_tanh": lambda x, lo, hi: min(max(x, lo), hi),
}


def _gelu_tanh_grad(x):
    u2 = _gelu_tanh_2u(x)
    s = _sig(u2)
    du = 2 * mpmath.mpf(GELU_TANH_K0) * (1 + 3 * mpmath.mpf(GELU_TANH_K1) * x * x)
    return s + x * s * _sig(-u2) * du


def _mish_grad(x):
    sp = mpmath.log1p(mpmath.exp(x))
    return mpmath.tanh(sp) + x * _sig(x) * mpmath.sech(sp) ** 2


def _step(cond):
    return mpmath.mpf(1) if cond else mpmath.mpf(0)


#: name -> d/dx f(x, a, b), exact (the backward's convention at kinks: the kernels' one).
DERIVATIVE = {
    "sigmoid": lambda x, a, b: _sig(x) * _sig(-x),
    "log_sigmoid": lambda x, a, b: _sig(-x),
    "tanh": lambda x, a, b: mpmath.sech(x) ** 2,
    "softplus": lambda x, beta, thr: mpmath.mpf(1) if beta * x > thr else _sig(beta * x),
    "elu": lambda x, alpha, b: mpmath.mpf(1) if x > 0 else alpha * mpmath.exp(x),
    "celu": lambda x, alpha, b: mpmath.mpf(1) if x > 0 else mpmath.exp(x / alpha),
    "selu": lambda x, a, b: _SCALE * (1 if x > 0 else _ALPHA * mpmath.exp(x)),
    "gelu": lambda x, a, b: (
        _erfc(-x / mpmath.sqrt(2)) / 2 + x * mpmath.exp(-x * x / 2) / mpmath.sqrt(2 * mpmath.pi)
    ),
    "gelu_tanh": lambda x, a, b: _gelu_tanh_grad(x),
    "silu": lambda x, a, b: _sig(x) * (1 + x * _sig(-x)),
    "mish": lambda x, a, b: _mish_grad(x),
    "relu": lambda x, a, b: _step(x > 0),
    "relu6": lambda x, a, b: _step(0 < x < 6),
    "leaky_relu": lambda x, slope, b: mpmath.mpf(1) if x > 0 else mpmath.mpf(slope),
    "hard_sigmoid": lambda x, a, b: _step(-3 < x < 3) / 6,
    "hard_swish": lambda x, a, b: (
        mpmath.mpf(0) if x < -3 else mpmath.mpf(1) if x > 3 else x / 3 + mpmath.mpf(0.5)
    ),
    "hard_tanh": lambda x, lo, hi: _step(lo < x < hi),
}

#: What the backward computes from its second argument y when it takes the output:
#: sigmoid: y (1 - y), tanh: 1 - y^2 (exact in y).
FROM_OUTPUT = {
    "sigmoid": lambda y: y * (1 - y),
    "tanh": lambda y: 1 - y * y,
}

_TWO_M1022 = mpmath.mpf(2) ** -1022
_TWO_1074 = mpmath.mpf(2) ** 1074


def _split(v):
    """(hi, lo): hi the correctly rounded float64 of mpf v (subnormals rounded once), lo the rest."""
    if mpmath.isnan(v):
        return math.nan, 0.0
    if mpmath.isinf(v):
        return float(v), 0.0
    if abs(v) < _TWO_M1022:
        hi = math.ldexp(int(mpmath.nint(v * _TWO_1074)), -1074)
    else:
        hi = float(v)  # mpmath rounds to nearest, and to inf beyond max + half an ulp
    if math.isinf(hi):
        return hi, 0.0
    return hi, float(v - mpmath.mpf(hi))


def _exact(table, name, x, params):
    if name not in table:
        raise KeyError(f"no exact (mpmath) reference for {name!r}: add it to tests/ulp.py")
    f = table[name]
    x = np.asarray(x, np.float64)
    hi = np.empty(x.shape)
    lo = np.empty(x.shape)
    with mpmath.workprec(MP_PREC):
        a, b = (mpmath.mpf(float(p)) for p in params)
        for i, xi in enumerate(x.flat):
            if math.isnan(xi):
                hi.flat[i], lo.flat[i] = math.nan, 0.0
                continue
            if math.isinf(xi) and name in _AT_INF and table is EXACT:
                hi.flat[i], lo.flat[i] = _AT_INF[name][0 if xi > 0 else 1], 0.0
                continue
            xm = (_BIG if xi > 0 else -_BIG) if math.isinf(xi) else mpmath.mpf(xi)
            hi.flat[i], lo.flat[i] = _split(f(xm, a, b))
    return hi, lo


def reference_f64(name, x, params=None):
    """The exact value of op ``name`` at x (float64 array; inf: the limit), as (hi, lo)."""
    return _exact(EXACT, name, x, default_params(name) if params is None else params)


def derivative_f64(name, x, params=None):
    """The exact derivative of activation ``name`` at x, as (hi, lo)."""
    return _exact(DERIVATIVE, name, x, default_params(name) if params is None else params)


def from_output_f64(name, y):
    """The exact value of sigmoid/tanh's backward formula at the given output y, as (hi, lo)."""
    f = FROM_OUTPUT[name]
    return _exact({name: lambda v, a, b: f(v)}, name, y, (0.0, 0.0))


# --------------------------------------------------------------------------- careful float64
def _np_sig(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0, e) / (1.0 + e)


def _np_limits(x, y, at_plus_inf, at_minus_inf):
    y = np.where(x == np.inf, at_plus_inf, y)
    return np.where(x == -np.inf, at_minus_inf, y)


def _np_gelu(x, a, b):
    from scipy.special import erfc

    return _np_limits(x, 0.5 * x * erfc(-x / math.sqrt(2.0)), np.inf, -0.0)


def _np_gelu_tanh(x, a, b):
    u2 = 2 * GELU_TANH_K0 * (x + GELU_TANH_K1 * x**3)
    return _np_limits(x, x * _np_sig(u2), np.inf, -0.0)


def _np_softplus(x, beta, thr):
    z = beta * x
    return np.where(z > thr, x, (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / beta)


_NP_FORWARD = {
    "exp": lambda x, a, b: np.exp(x),
    "expm1": lambda x, a, b: np.expm1(x),
    "log1p": lambda x, a, b: np.log1p(x),
    "tanh": lambda x, a, b: np.tanh(x),
    "log1p_exp_neg": lambda x, a, b: np.log1p(np.exp(x)),
    "sigmoid": lambda x, a, b: _np_sig(x),
    "log_sigmoid": lambda x, a, b: np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x))),
    "softplus": _np_softplus,
    "elu": lambda x, alpha, b: np.where(x > 0, x, alpha * np.expm1(x)),
    "celu": lambda x, alpha, b: np.where(x > 0, x, alpha * np.expm1(x / alpha)),
    "selu": lambda x, a, b: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
    "gelu": _np_gelu,
    "gelu_tanh": _np_gelu_tanh,
    "silu": lambda x, a, b: _np_limits(x, x * _np_sig(x), np.inf, -0.0),
    "mish": lambda x, a, b: _np_limits(x, x * np.tanh(np.logaddexp(0.0, x)), np.inf, -0.0),
    "relu": lambda x, a, b: np.where(x <= 0, 0.0, x),
    "relu6": lambda x, a, b: np.where(x <= 0, 0.0, np.where(x >= 6, 6.0, x)),
    "leaky_relu": lambda x, slope, b: np.where(x > 0, x, slope * x),
    "hard_sigmoid": lambda x, a, b: np.clip((x + 3) / 6, 0, 1),
    "hard_swish": lambda x, a, b: np.where(x <= -3, 0.0, np.where(x >= 3, x, x * ((x + 3) / 6))),
    "hard_tanh": lambda x, lo, hi: np.clip(x, lo, hi),
}


def _np_clamped(f, limit=1000.0):
    """f on x clamped to +-limit (the derivatives have reached their limits there)."""
    return lambda x, a, b: np.where(np.isnan(x), np.nan, f(np.clip(x, -limit, limit), a, b))


def _np_gelu_grad(x, a, b):
    from scipy.special import erfc

    return 0.5 * erfc(-x / math.sqrt(2.0)) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _np_gelu_tanh_grad(x, a, b):
    u2 = 2 * GELU_TANH_K0 * (x + GELU_TANH_K1 * x**3)
    s = _np_sig(u2)
    return s + x * s * _np_sig(-u2) * (2 * GELU_TANH_K0 * (1 + 3 * GELU_TANH_K1 * x * x))


def _np_mish_grad(x, a, b):
    sp = np.logaddexp(0.0, x)
    return np.tanh(sp) + x * _np_sig(x) / np.cosh(sp) ** 2


_NP_DERIVATIVE = {
    "sigmoid": _np_clamped(lambda x, a, b: _np_sig(x) * _np_sig(-x)),
    "log_sigmoid": lambda x, a, b: _np_sig(-x),
    "tanh": _np_clamped(lambda x, a, b: 1.0 / np.cosh(x) ** 2),
    "softplus": lambda x, beta, thr: np.where(beta * x > thr, 1.0, _np_sig(beta * x)),
    "elu": lambda x, alpha, b: np.where(x > 0, 1.0, alpha * np.exp(x)),
    "celu": lambda x, alpha, b: np.where(x > 0, 1.0, np.exp(x / alpha)),
    "selu": lambda x, a, b: SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(x)),
    "gelu": _np_clamped(_np_gelu_grad, 100.0),
    "gelu_tanh": _np_clamped(_np_gelu_tanh_grad, 100.0),
    "silu": _np_clamped(lambda x, a, b: _np_sig(x) * (1 + x * _np_sig(-x))),
    "mish": _np_clamped(_np_mish_grad),
    "relu": lambda x, a, b: np.where(x > 0, 1.0, 0.0),
    "relu6": lambda x, a, b: np.where((x > 0) & (x < 6), 1.0, 0.0),
    "leaky_relu": lambda x, slope, b: np.where(x > 0, 1.0, slope),
    "hard_sigmoid": lambda x, a, b: np.where((x > -3) & (x < 3), 1 / 6, 0.0),
    "hard_swish": lambda x, a, b: np.where(x < -3, 0.0, np.where(x > 3, 1.0, x / 3 + 0.5)),
    "hard_tanh": lambda x, lo, hi: np.where((x > lo) & (x < hi), 1.0, 0.0),
}


def reference_numpy64(name, x, params=None):
    """Careful float64 NumPy formula of op ``name`` at x (the dense float32 sweeps' reference)."""
    params = default_params(name) if params is None else params
    with np.errstate(all="ignore"):
        return np.asarray(_NP_FORWARD[name](np.asarray(x, np.float64), *params), np.float64)


def derivative_numpy64(name, x, params=None):
    """Careful float64 NumPy derivative of activation ``name`` at x."""
    params = default_params(name) if params is None else params
    with np.errstate(all="ignore"):
        return np.asarray(_NP_DERIVATIVE[name](np.asarray(x, np.float64), *params), np.float64)


# --------------------------------------------------------------------------- sweeps
def _frozen(func):
    """Cache a sweep (they are reused by many tests) and hand it out read-only."""
    cached = functools.lru_cache(maxsize=None)(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        out = cached(*args, **kwargs)
        out.flags.writeable = False
        return out

    return wrapper


F32_HUGE = [1e4, 1e30, float(np.finfo(np.float32).max)]
F64_HUGE = [1e4, 1e30, 1e100, 1e300, float(np.finfo(np.float64).max)]


def _specials(dtype, huge):
    fi = np.finfo(dtype)
    v = [
        0.0,
        1.0,
        0.5,
        2.0,
        3.0,
        6.0,
        20.0,
        0.55,
        float(fi.tiny),
        float(fi.smallest_subnormal),
        float(fi.eps),
        np.inf,
        np.nan,
    ] + huge
    v = np.array(v, np.float64)
    return np.concatenate([v, -v]).astype(dtype)


def _bits_sweep(limit, stride, dtype):
    """Every ``stride``-th float of ``dtype`` in [0, limit] by bit pattern (log-uniform)."""
    itype = np.int32 if np.dtype(dtype) == F32 else np.int64
    top = np.array([limit], dtype).view(itype)[0]
    return np.arange(0, int(top) + 1, stride, dtype=itype).view(dtype)


@_frozen
def float32_sweep(limit=120.0, stride=1536, n_linear=1 << 18, n_random=1 << 17, seed=0):
    """Dense float32 sweep of [-limit, limit]: every stride-th float32 (bit pattern: the whole
    log range down to the subnormals), a uniform grid, random floats, huge and special values."""
    rng = np.random.default_rng(seed)
    pos = _bits_sweep(limit, stride, np.float32)
    parts = [
        pos,
        -pos,
        np.linspace(-limit, limit, n_linear, dtype=np.float32),
        rng.uniform(-limit, limit, n_random).astype(np.float32),
        _specials(np.float32, F32_HUGE),
    ]
    return np.unique(np.concatenate(parts))  # NaN kept (unique keeps one)


@_frozen
def float32_whole_domain(stride=4096, seed=0):
    """Every stride-th float32 of the whole finite range, both signs, plus 2^17 random bit
    patterns (uniform over the range) and the special values."""
    rng = np.random.default_rng(seed)
    pos = _bits_sweep(float(np.finfo(np.float32).max), stride, np.float32)
    rnd = rng.integers(0, 0x7F800000, 1 << 17, dtype=np.int64).astype(np.int32).view(np.float32)
    parts = [pos, -pos, rnd, -rnd[::2], _specials(np.float32, F32_HUGE)]
    return np.unique(np.concatenate(parts))


def neighbors(values, dtype, k=8):
    """The k floats of ``dtype`` on each side of each value (edges, thresholds)."""
    v = np.asarray(values, dtype)
    out = [v]
    lo, hi = v.copy(), v.copy()
    with np.errstate(over="ignore"):
        for _ in range(k):
            lo = np.nextafter(lo, dtype(-np.inf))
            hi = np.nextafter(hi, dtype(np.inf))
            out += [lo, hi]
    return np.concatenate(out)


@_frozen
def float64_points(n=3000, seed=0):
    """~n float64 inputs over the whole range: log-uniform magnitudes from the subnormals to
    max, a dense part over [-40, 40], and the tails where results become tiny or subnormal
    (|x| in [690, 760]: exp/sigmoid family; [-40, -36]: gelu; [-23, -20]: gelu tanh; [-120,
    -20]: float32-scale tails), plus special values."""
    rng = np.random.default_rng(seed)
    mags = 10.0 ** rng.uniform(-323.5, 308.25, n // 4)
    parts = [
        mags,
        -mags[::2],
        rng.uniform(-40, 40, n // 4),
        rng.uniform(-760, -690, n // 16),
        rng.uniform(690, 760, n // 16),
        rng.uniform(-40, -36, n // 16),
        rng.uniform(-23, -20, n // 16),
        rng.uniform(-120, -20, n // 16),
        rng.uniform(20, 120, n // 32),
        _specials(np.float64, F64_HUGE),
    ]
    return np.unique(np.concatenate(parts))


#: Edges of the math functions (float32, float64): overflow, underflow, subnormal results, -1.
_MATH_EDGES = {
    "exp": (
        [88.72283935546875, -87.33654, -103.97208, -103.27893, 0.0, -0.0, 1e-8],
        [709.782712893384, -708.3964185322641, -745.1332191019411, -744.4400719213812, 0.0, 1e-17],
    ),
    "expm1": (
        [88.72283935546875, -16.635532, -17.0, 0.0, 1e-8, -1e-8, 0.3465, -0.3465],
        [709.782712893384, -37.42994775023705, 0.0, 1e-17, -1e-17, 0.3465, -0.3465],
    ),
    "log1p": (
        [-1.0, -0.999999, 0.0, 1e-8, -1e-8, 0.41421356, -0.29289322, 3.4028235e38],
        [
            -1.0,
            -0.9999999999999999,
            0.0,
            1e-17,
            -1e-17,
            0.41421356237309503,
            -0.2928932188134524,
            1.7976931348623157e308,
        ],
    ),
    "tanh": ([0.55, -0.55, 9.01, -9.01, 1e-8, 0.0], [0.55, -0.55, 19.06, -19.06, 1e-17, 0.0]),
    # x <= 0 only: e = e^x at 1, 1/2, 1/4 (t = 2e - 1's rounding starts), e^x subnormal, 0
    "log1p_exp_neg": (
        [0.0, -0.0, -1e-8, -0.6931472, -1.3862944, -87.33654, -103.97208, -104.0, -120.0],
        [0.0, -1e-17, -0.6931471805599453, -1.3862943611198906, -708.3964185322641, -745.2, -800],
    ),
}


#: The range of each math function's uniform grid (float32) / random points (float64).
_MATH_DOMAINS = {
    "exp": ((-110, 95), (-750, 712)),
    "expm1": ((-20, 95), (-40, 712)),
    "log1p": ((-1, 20), (-1, 40)),
    "tanh": ((-12, 12), (-20, 20)),
    "log1p_exp_neg": ((-110, 0), (-800, 0)),
}


def in_domain(name, x):
    """Which of the inputs x lie in math function ``name``'s domain (log1p_exp_neg: x <= 0 or
    NaN; the others: everywhere)."""
    x = np.asarray(x)
    return ~(x > 0) if name == "log1p_exp_neg" else np.ones(x.shape, bool)


@_frozen
def math_sweep(name, dtype):
    """Inputs of a math function: float32 the whole domain (dense) + edges; float64 ~3000
    points (mpmath is slow) + edges."""
    dtype = np.dtype(dtype)
    if dtype == F32:
        edges = neighbors(_MATH_EDGES[name][0], np.float32, 64)
        lin = np.linspace(*_MATH_DOMAINS[name][0], 1 << 18, dtype=np.float32)
        x = np.unique(np.concatenate([float32_whole_domain(), lin, edges]))
    else:
        edges = neighbors(_MATH_EDGES[name][1], np.float64, 8)
        random = np.random.default_rng(1).uniform(*_MATH_DOMAINS[name][1], 800)
        x = np.unique(np.concatenate([float64_points(1600), random, edges]))
    return x[in_domain(name, x)]


# --------------------------------------------------------------------------- measurements
class Measurement:
    """Errors of one op over its sweep: ``err`` per input ``x``; ``worst`` = (max, x at max)."""

    def __init__(self, name, dtype, params, x, err, kind="ulp"):
        self.name, self.dtype, self.params, self.kind = name, np.dtype(dtype), params, kind
        self.x, self.err = x, err
        self.worst = max_ulp(err, x)

    @property
    def max(self):
        return self.worst[0]

    def summary(self, limit, k=5):
        """'n of N above limit, x in [lo, hi]; worst: x=..: err, ...' for assertion messages."""
        bad = ~(self.err <= limit)
        if not bad.any():
            return "none above the limit"
        xs = np.asarray(self.x, np.float64)[bad]
        worst = ", ".join(f"x={x!r}: {e:.4g}" for x, e in self.offenders(limit, k))
        return (
            f"{int(bad.sum())} of {self.x.size} inputs above {limit:g}, x in "
            f"[{np.nanmin(xs)!r}, {np.nanmax(xs)!r}]; worst: {worst}"
        )

    def offenders(self, limit, k=5):
        """Up to k (x, err) pairs above ``limit``, worst first."""
        bad = np.flatnonzero(~(self.err <= limit))
        bad = bad[np.argsort(-self.err[bad], kind="stable")][:k]
        return [(float(self.x[i]), float(self.err[i])) for i in bad]


def forward_inputs(dtype):
    return float32_sweep() if np.dtype(dtype) == F32 else float64_points()


def measure_forward(name, dtype, params=None, x=None):
    """Max ULP of fastact's forward of ``name``: float32 over ``float32_sweep()`` against the
    careful float64 formula, float64 over ``float64_points()`` against mpmath."""
    dtype = np.dtype(dtype)
    params = typed_params(default_params(name) if params is None else params, dtype)
    x = forward_inputs(dtype) if x is None else np.asarray(x, dtype)
    got = forward(name, x, params)
    ref = reference_numpy64(name, x, params) if dtype == F32 else reference_f64(name, x, params)
    return Measurement(name, dtype, params, x, ulp_error(got, ref, dtype))


def measure_math(name, dtype, x=None):
    """Max ULP of fastact._math.<name>: float32 over the whole domain against NumPy float64,
    float64 against mpmath."""
    dtype = np.dtype(dtype)
    x = math_sweep(name, dtype) if x is None else np.asarray(x, dtype)
    got = math_function(name, x)
    ref = reference_numpy64(name, x) if dtype == F32 else reference_f64(name, x)
    return Measurement(name, dtype, (0.0, 0.0), x, ulp_error(got, ref, dtype))


@_frozen
def backward_inputs(dtype):
    if np.dtype(dtype) == F32:
        return float32_sweep(stride=8192, n_linear=1 << 16, n_random=1 << 15)
    return float64_points(2000, seed=2)


def x_dprime(name, x, params=None, delta=2.0**-20):
    """|x d'(x)|, d the derivative (so |x d'/d| is d's condition number): a central
    difference of the careful float64 derivative, good to a few digits (only a tolerance)."""
    x = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        up = derivative_numpy64(name, x * (1 + delta), params)
        down = derivative_numpy64(name, x * (1 - delta), params)
        xd = np.abs(up - down) / (2 * delta)
    return np.where(np.isfinite(xd), xd, 0.0)


class BackwardMeasurement:
    """fastact's ``<name>_backward(1, v)`` against the exact derivative d at x.

    * ``tol``: |got - d| / allowed, allowed as stated at ``BACKWARD_ULP`` (<= 1 passes).
    * ``ulp``: ULP against d where d is well conditioned (|x d'| <= |d|) and not subnormal
      (elsewhere 0), or for sigmoid/tanh against the exact y (1 - y) / 1 - y^2 at the y that
      the backward got."""

    def __init__(self, name, dtype, params, x, tol, ulp):
        self.tol = Measurement(name, dtype, params, x, tol, kind="tolerance")
        self.ulp = Measurement(name, dtype, params, x, ulp)


def measure_backward(name, dtype, params=None, x=None):
    """Backward of ``name`` (v = x, or fastact's forward output for sigmoid/tanh) against the
    exact derivative at x: float32 the careful float64 formula, float64 mpmath."""
    dtype = np.dtype(dtype)
    params = typed_params(default_params(name) if params is None else params, dtype)
    x = backward_inputs(dtype) if x is None else np.asarray(x, dtype)
    x = x[~np.isnan(x)]
    from_output = ACTIVATIONS[name].grad_from == "output"
    v = forward(name, x, params) if from_output else x
    got = backward(name, np.ones_like(x), v, params).astype(np.float64)
    if dtype == F32:
        d = (derivative_numpy64(name, x, params), np.zeros(x.shape))
        if from_output:
            y = v.astype(np.float64)
            own = y * (1 - y) if name == "sigmoid" else 1 - y * y  # exact in float64
    else:
        d = derivative_f64(name, x, params)
        if from_output:
            own = from_output_f64(name, v)
    eps = float(np.finfo(dtype).eps)
    xd = x_dprime(name, x, params)
    with np.errstate(all="ignore"):
        diff = np.abs((got - d[0]) - d[1])
        diff = np.where(got == d[0], 0.0, diff)  # equal infinities
        sub = 2.0 ** _FORMAT[dtype][1]
        allowed = (
            BACKWARD_ULP * ulp_of(np.where(np.isfinite(d[0]), d[0], 0.0).astype(dtype), dtype)
            + BACKWARD_COND * eps * xd
            + BACKWARD_SUB * sub * np.maximum(1.0, np.abs(x.astype(np.float64)))
            + (BACKWARD_ATOL * eps if from_output else 0.0)
        )
        tol = diff / allowed
    tol = np.where(np.isnan(tol), np.inf, tol)
    if from_output:
        err = ulp_error(got, own, dtype)
    else:
        normal = np.abs(d[0]) >= np.finfo(dtype).tiny
        err = np.where((xd <= np.abs(d[0])) & normal, ulp_error(got, d, dtype), 0.0)
    return BackwardMeasurement(name, dtype, params, x, tol, err)
