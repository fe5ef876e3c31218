"""The activations, each defined once: a scalar forward and a scalar gradient.

Every kernel in fastact (serial and parallel CPU loops, backward passes, fused epilogues,
CUDA twins) is generated from the two scalar functions of a row of ``ACTIVATIONS``:

* ``forward(x, a, b) -> y``: the activation of one element; ``a`` and ``b`` are the
  activation's numeric parameters (unused ones are 0), already of x's dtype.
* ``grad(g, v, a, b) -> g * dy/dx``: the backward of one element, where ``v`` is the input
  ``x`` or, for sigmoid and tanh, the forward's output (as PyTorch's aten backward ops).

The functions are written with fastact's vectorizable math (``fastact._math``) and typed
constants (``typed(1.0, x)``), so one definition serves float32 and float64 and LLVM
vectorizes the loops that call it. Adding an activation: two scalar functions here, a row
in ``ACTIVATIONS``, a NumPy reference in ``fastact.reference``, then
``python -m fastact._codegen`` (see docs/adding-an-activation.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from fastact._config import SCALAR
from fastact._math import (
    GELU_TANH_K0,
    GELU_TANH_K1,
    by_dtype,
    erfcx_f64,
    exp,
    exp_mul,
    exp_mul_neg,
    exp_neg,
    expm1,
    fma,
    gelu_derivative_f32,
    gelu_f32,
    gelu_tanh_derivative_f32,
    gelu_tanh_f32,
    log1p_exp_neg,
    one_plus,
    over_one_plus,
    typed,
)
from fastact._math import tanh as _tanh

scalar = njit(**SCALAR)

# float64 constants of the definitions (the reference uses the same values)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# GELU_TANH_K0 = sqrt(2/pi), GELU_TANH_K1 = 0.044715: imported from fastact._math (its
# float32 gelu_tanh splits them into float32 pairs)
_INV_SQRT2_HI = -0.7071067811865476  # -1/sqrt(2) = _INV_SQRT2_HI + _INV_SQRT2_LO
_INV_SQRT2_LO = 4.833646656726457e-17
_TWO_OVER_SQRT_PI = 1.1283791670955126
_INV_SQRT_2PI = 0.3989422804014327


@scalar
def _at_infinity(x, y, at_plus_inf, at_minus_inf):
    """y, with the limits at x = +inf / -inf (where x * 0 would give NaN)."""
    inf = typed(np.inf, x)
    y = at_plus_inf if x == inf else y
    return at_minus_inf if x == -inf else y


# --------------------------------------------------------------------------- sigmoid family
@scalar
def sigmoid(x, a, b):
    """1 / (1 + exp(-x)); stable: e = exp(-|x|), (1 if x >= 0 else e) / (1 + e)."""
    one = typed(1.0, x)
    e = exp_neg(-abs(x))
    numerator = one if x >= 0 else e
    return over_one_plus(numerator, e)


@scalar
def sigmoid_grad(g, y, a, b):
    """g * y * (1 - y), from the output y = sigmoid(x)."""
    return g * (y * (typed(1.0, y) - y))


@scalar
def log_sigmoid(x, a, b):
    """log(sigmoid(x)); stable: min(x, 0) - log1p(exp(-|x|))."""
    zero = typed(0.0, x)
    return (x if x < zero else zero) - log1p_exp_neg(-abs(x))


@scalar
def log_sigmoid_grad(g, x, a, b):
    """g * (1 - sigmoid(x)) = g * sigmoid(-x)."""
    return g * sigmoid(-x, a, b)


@scalar
def tanh(x, a, b):
    """(e^x - e^-x) / (e^x + e^-x); |x| < 0.55: odd polynomial, else 1 - 2e / (1 + e),
    e = exp(-2|x|)."""
    return _tanh(x)


@scalar
def tanh_grad(g, y, a, b):
    """g * (1 - y^2), from the output y = tanh(x)."""
    return g * (typed(1.0, y) - y * y)


@scalar
def _product_error(beta, x, z):
    """beta x - z exactly (fma) for z = beta x rounded; 0 where z is inf or NaN. exp(z) of
    the rounded product would be off by |z| times that rounding (up to ~100 ULP in the
    tails, whenever beta is not a power of two): softplus corrects with it."""
    zero = typed(0.0, z)
    error = fma(beta, x, -z)
    return error if z - z == zero else zero


@scalar
def softplus(x, beta, threshold):
    """log(1 + exp(beta x)) / beta, x where beta x > threshold; stable, with z = beta x
    rounded, e = beta x - z (fma), t = log1p(exp(-|z|)), s = sigmoid(-|z|):
    (t + e s) / beta for z <= 0, x + (t - e s) / beta for z > 0 (first order in e: the
    derivative is sigmoid(z)); s = -expm1(-t) by its series, t <= log 2. x is exact: beta x
    is never divided back (it may overflow). beta = 3: 1.8 ULP (float32 and float64), where
    the rounded beta x cost up to ~100. Not corrected: with beta < 1, where t is subnormal
    and t / beta is not, t's few digits cost about 1 / beta ULP (as PyTorch's formula)."""
    z = beta * x
    zero = typed(0.0, x)
    e = _product_error(beta, x, z)
    t = log1p_exp_neg(-abs(z))
    s = t * (typed(1.0, x) - t * (typed(0.5, x) - t * (typed(1 / 6, x) - t * typed(1 / 24, x))))
    positive = z > zero
    es = -(e * s) if positive else e * s
    # (t + e s) / beta: t / beta, plus its remainder (fma) and e s over beta (a correction
    # below an ULP of q: 1 / beta, hoisted out of the loop, serves); one division
    q = t / beta
    c = (fma(-q, beta, t) + es) * (typed(1.0, beta) / beta)
    c = c if c - c == zero else zero  # q or 1 / beta beyond the range (a subnormal beta)
    y = (x if positive else zero) + (q + c)
    return x if z > threshold else y


@scalar
def softplus_grad(g, x, beta, threshold):
    """g * sigmoid(beta x), g where beta x > threshold; sigmoid of the rounded z = beta x
    corrected by its error e (fma) to first order: s + e s (1 - s)."""
    z = beta * x
    e = _product_error(beta, x, z)
    s = sigmoid(z, beta, threshold)
    return g if z > threshold else g * fma(e, s * (typed(1.0, s) - s), s)


# --------------------------------------------------------------------------- ReLU family
@scalar
def relu(x, a, b):
    """max(x, 0); NaN propagates, relu(-0.0) = +0.0."""
    return typed(0.0, x) if x <= typed(0.0, x) else x


@scalar
def relu_grad(g, x, a, b):
    """g where x > 0, else 0."""
    return typed(0.0, g) if x <= typed(0.0, x) else g


@scalar
def relu6(x, a, b):
    """min(max(x, 0), 6)."""
    six = typed(6.0, x)
    y = six if x >= six else x
    return typed(0.0, x) if x <= typed(0.0, x) else y


@scalar
def relu6_grad(g, x, a, b):
    """g where 0 < x < 6, else 0."""
    inside = x > typed(0.0, x) and x < typed(6.0, x)
    return g if inside else typed(0.0, g)


@scalar
def leaky_relu(x, negative_slope, b):
    """x if x > 0 else negative_slope * x."""
    return x if x > typed(0.0, x) else x * negative_slope


@scalar
def leaky_relu_grad(g, x, negative_slope, b):
    """g if x > 0 else negative_slope * g."""
    return g if x > typed(0.0, x) else g * negative_slope


@scalar
def elu(x, alpha, b):
    """x if x > 0 else alpha * (exp(x) - 1), with expm1 for accuracy near 0."""
    return x if x > typed(0.0, x) else alpha * expm1(x)


@scalar
def elu_grad(g, x, alpha, b):
    """g if x > 0 else g * alpha * exp(x)."""
    return g if x > typed(0.0, x) else g * (alpha * exp_neg(x))


@scalar
def celu(x, alpha, b):
    """x if x > 0 else alpha * (exp(x / alpha) - 1)."""
    return x if x > typed(0.0, x) else alpha * expm1(x / alpha)


@scalar
def celu_grad(g, x, alpha, b):
    """g if x > 0 else g * exp(x / alpha)."""
    return g if x > typed(0.0, x) else g * exp_neg(x / alpha)


@scalar
def selu(x, a, b):
    """scale * (x if x > 0 else alpha * (exp(x) - 1)), alpha ~ 1.6733, scale ~ 1.0507."""
    alpha = typed(SELU_ALPHA, x)
    scale = typed(SELU_SCALE, x)
    return scale * (x if x > typed(0.0, x) else alpha * expm1(x))


@scalar
def selu_grad(g, x, a, b):
    """g * scale * (1 if x > 0 else alpha * exp(x))."""
    scale = typed(SELU_SCALE, x)
    scale_alpha = typed(SELU_SCALE * SELU_ALPHA, x)
    return g * scale if x > typed(0.0, x) else g * (scale_alpha * exp_neg(x))


# --------------------------------------------------------------------------- smooth ReLUs
@scalar
def _gelu_erfc(x):
    """(x as float64, a^2, m) with erfc(|t|) = m exp(-a^2), t = -x/sqrt(2) carried in
    double-double: erfc's tail amplifies the relative error of its argument by 2t^2."""
    xd = np.float64(x)
    t = xd * _INV_SQRT2_HI
    # explicit fma wherever two products meet: LLVM's contraction would pick one of them,
    # differently in vector and scalar code (results would depend on the array's layout)
    t_lo = fma(xd, _INV_SQRT2_LO, fma(xd, _INV_SQRT2_HI, -t))
    a = abs(t)
    a_lo = t_lo if t >= 0.0 else -t_lo
    a_lo = 0.0 if a > 28.5 else a_lo
    a = 28.5 if a > 28.5 else a  # erfc(28.5) = 0 in float64; keeps a^2 finite
    a2 = a * a
    a2_lo = fma(a, a, -a2)
    ex = erfcx_f64(a)
    # erfc(a + a_lo) = exp(-a2) erfcx(a) (1 - a2_lo - a_lo 2 / (sqrt(pi) erfcx(a))) to first order
    m = fma(ex, 1.0 - a2_lo, -(a_lo * _TWO_OVER_SQRT_PI))
    return xd, a2, m


@scalar
def _gelu_f64(x):
    """x Phi(x) = x/2 erfc(-x/sqrt(2)); in float64: x < 0: x/2 erfc(|t|), else
    x - x/2 erfc(|t|), with erfc(|t|) = exp(-t^2) erfcx(|t|) and x/2 erfcx applied inside exp
    (one rounding, no subnormal intermediate)."""
    xd, a2, m = _gelu_erfc(x)
    half_x_erfc = exp_mul_neg(-a2, 0.5 * xd * m)
    return half_x_erfc if xd <= 0.0 else xd - half_x_erfc  # x = -0.0 stays -0.0


_gelu = by_dtype(
    "gelu",
    gelu_f32,
    _gelu_f64,
    np.vectorize(lambda v: 0.5 * v * math.erfc(-v / math.sqrt(2))),
)


@scalar
def gelu(x, a, b):
    """x Phi(x); float32: fastact._math.gelu_f32 (float32 arithmetic), float64: _gelu_f64."""
    return _at_infinity(x, _gelu(x), x, typed(-0.0, x))


@scalar
def _gelu_derivative_f64(x):
    """Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi) = exp(-a^2) / sqrt(2 pi)."""
    xd, a2, m = _gelu_erfc(x)
    half_erfc = exp_mul_neg(-a2, 0.5 * m)
    cdf = half_erfc if xd < 0.0 else 1.0 - half_erfc
    return cdf + exp_mul_neg(-a2, xd * _INV_SQRT_2PI)


_gelu_derivative = by_dtype(
    "gelu_derivative",
    gelu_derivative_f32,
    _gelu_derivative_f64,
    np.vectorize(
        lambda v: 0.5 * math.erfc(-v / math.sqrt(2)) + v * math.exp(-v * v / 2) * _INV_SQRT_2PI
    ),
)


@scalar
def gelu_grad(g, x, a, b):
    """g * (Phi(x) + x phi(x)); float32: fastact._math.gelu_derivative_f32 (float32
    arithmetic), float64: erfc and exp in double-double as the forward."""
    return g * _at_infinity(x, _gelu_derivative(x), typed(1.0, x), typed(0.0, x))


@scalar
def _gelu_tanh_parts(x):
    """(x, |r|, m, sign) for 2u = r + lo = 2 sqrt(2/pi) x (1 + 0.044715 x^2) in float64
    double-double: exp(-|2u|) = exp(-|r|) * m with m = 1 - sign(r) lo.

    exp amplifies the relative error of its argument by |2u| (up to ~745), so 2u is carried
    in double-double (error-free products with fma). Beyond |x| = 1e4 the sigmoid is exactly
    0 or 1: there 2u is computed from +-1e4 (x^2 stays finite) and m = 1."""
    xd = np.float64(x)
    big = 1e4
    xc = big if xd > big else (-big if xd < -big else xd)
    x2 = xc * xc
    x2_lo = fma(xc, xc, -x2)
    # p rounded as an fma, not a product: on CUDA, ptxas fuses a plain product into the
    # addition below (1 + p as one fma), and the two-sum then corrects for a rounding that
    # did not happen (gelu_tanh's float64 tail was ~500 ULP off on an H200). Same value on the CPU.
    p = fma(GELU_TANH_K1, x2, 0.0)
    p_lo = fma(GELU_TANH_K1, x2, -p) + GELU_TANH_K1 * x2_lo
    inner, inner_lo = one_plus(p, p_lo)
    q = xc * inner
    q_lo = fma(xc, inner, -q) + xc * inner_lo
    k0 = 2.0 * GELU_TANH_K0
    r = k0 * q
    r_lo = fma(k0, q, -r) + k0 * q_lo
    sign = math.copysign(1.0, r)
    m = 1.0 if xc != xd else 1.0 - sign * r_lo
    return xd, abs(r), m, sign


@scalar
def _gelu_tanh_f64(x):
    """x / (1 + e) for u >= 0, x e / (1 + e) for u < 0 (e = exp(-|2u|), x e rounded once)."""
    xd, r_abs, m, sign = _gelu_tanh_parts(x)
    e = exp_neg(-r_abs) * m
    numerator = xd if sign > 0.0 else exp_mul_neg(-r_abs, xd * m)
    return numerator / (1.0 + e)


@scalar
def _gelu_tanh_derivative_f64(x):
    """s + x s (1 - s) 2u', s = sigmoid(2u), s (1 - s) = e / (1 + e)^2 (no cancellation),
    2u' = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2)."""
    xd, r_abs, m, sign = _gelu_tanh_parts(x)
    e = exp_neg(-r_abs) * m
    one_plus_e = 1.0 + e
    s = (1.0 if sign > 0.0 else e) / one_plus_e
    xc = 1e4 if xd > 1e4 else (-1e4 if xd < -1e4 else xd)  # the term below is 0 there anyway
    du = 2.0 * GELU_TANH_K0 * (1.0 + 3.0 * GELU_TANH_K1 * xc * xc)
    # x 2u' e / (1 + e)^2, with x 2u' e rounded once (e alone can be subnormal)
    return s + exp_mul_neg(-r_abs, xc * du * m) / (one_plus_e * one_plus_e)


def _np_gelu_tanh(v):
    return v * (1 + np.tanh(GELU_TANH_K0 * (v + GELU_TANH_K1 * v**3))) / 2


_gelu_tanh = by_dtype("gelu_tanh", gelu_tanh_f32, _gelu_tanh_f64, _np_gelu_tanh)
_gelu_tanh_derivative = by_dtype(
    "gelu_tanh_derivative",
    gelu_tanh_derivative_f32,
    _gelu_tanh_derivative_f64,
    lambda v: (
        (1 + np.tanh(GELU_TANH_K0 * (v + GELU_TANH_K1 * v**3))) / 2
        + v
        * GELU_TANH_K0
        * (1 + 3 * GELU_TANH_K1 * v * v)
        * (1 - np.tanh(GELU_TANH_K0 * (v + GELU_TANH_K1 * v**3)) ** 2)
        / 2
    ),
)


@scalar
def gelu_tanh(x, a, b):
    """x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3); stable: x sigmoid(2u) with 2u
    carried in double precision for exp (float32: fastact._math.gelu_tanh_f32, float32 pairs;
    float64: double-double)."""
    return _at_infinity(x, typed(_gelu_tanh(x), x), x, typed(-0.0, x))


@scalar
def gelu_tanh_grad(g, x, a, b):
    """g (s + x s (1 - s) 2u'), s = sigmoid(2u); float32: gelu_tanh_derivative_f32."""
    return g * _at_infinity(x, typed(_gelu_tanh_derivative(x), x), typed(1.0, x), typed(0.0, x))


@scalar
def silu(x, a, b):
    """x * sigmoid(x); stable: e = exp(-|x|), (x if x >= 0 else x e) / (1 + e)."""
    e = exp_neg(-abs(x))
    # x e^x for x < 0, one rounding; of -|x| like e, so the float32 kernel computes e^-|x| once
    numerator = x if x >= typed(0.0, x) else exp_mul_neg(-abs(x), x)
    y = math.copysign(over_one_plus(numerator, e), x)  # silu(-0.0) = -0.0
    return _at_infinity(x, y, x, typed(-0.0, x))


@scalar
def silu_grad(g, x, a, b):
    """g * s * (1 + x (1 - s)), s = sigmoid(x)."""
    one = typed(1.0, x)
    e = exp_neg(-abs(x))
    positive = x >= typed(0.0, x)
    s = (one if positive else e) / (one + e)
    one_minus_s = (e if positive else one) / (one + e)  # sigmoid(-x): no cancellation
    return g * _at_infinity(x, s * (one + x * one_minus_s), one, typed(0.0, x))


@scalar
def _mish_ratio(x):
    """(tanh(softplus(x)), n + 2) with n = e^x (e^x + 2): tanh(softplus(x)) = n / (n + 2),
    no cancellation at either end; x is capped at 20 where the ratio is 1.0 in both dtypes."""
    cap = typed(20.0, x)
    e = exp(cap if x > cap else x)
    n = e * (e + typed(2.0, x))
    d = n + typed(2.0, x)
    return n / d, d, e


@scalar
def mish(x, a, b):
    """x * tanh(softplus(x)); stable: x * n / (n + 2), n = e^x (e^x + 2)."""
    t, d, e = _mish_ratio(x)
    # x t = x e^x (e^x + 2) / (n + 2), with x e^x rounded once (no subnormal e^x for x << 0);
    # e^x of the argument _mish_ratio capped (x beyond the cap gives x): one exp, shared
    two = typed(2.0, x)
    cap = typed(20.0, x)
    y = exp_mul(cap if x > cap else x, x) * ((e + two) / d)
    y = x if x > cap else y
    return _at_infinity(x, y, x, typed(-0.0, x))


@scalar
def mish_grad(g, x, a, b):
    """g * (t + x sigmoid(x) (1 - t^2)), t = tanh(softplus(x)); 1 - t = 2 / (n + 2)."""
    t, d, e = _mish_ratio(x)
    one = typed(1.0, x)
    sig = e / (one + e)
    sech2 = (typed(2.0, x) / d) * (one + t)
    sech2 = typed(0.0, x) if x > typed(20.0, x) else sech2  # below float precision there
    return g * _at_infinity(x, t + x * sig * sech2, one, typed(0.0, x))


# --------------------------------------------------------------------------- hard variants
@scalar
def hard_sigmoid(x, a, b):
    """0 if x <= -3, 1 if x >= 3, else x/6 + 1/2."""
    three = typed(3.0, x)
    y = (x + three) / typed(6.0, x)  # x/6 + 1/2 would cancel near x = -3
    y = typed(1.0, x) if x >= three else y
    return typed(0.0, x) if x <= -three else y


@scalar
def hard_sigmoid_grad(g, x, a, b):
    """g / 6 where -3 < x < 3, else 0."""
    three = typed(3.0, x)
    inside = x > -three and x < three
    return g / typed(6.0, g) if inside else typed(0.0, g)


@scalar
def hard_swish(x, a, b):
    """x * hard_sigmoid(x): 0 if x <= -3, x if x >= 3, else x (x + 3) / 6."""
    three = typed(3.0, x)
    y = x * (x + three) / typed(6.0, x)
    y = x if x >= three else y
    return typed(0.0, x) if x <= -three else y


@scalar
def hard_swish_grad(g, x, a, b):
    """0 if x < -3, g if x > 3, else g (x/3 + 1/2) (PyTorch's convention at the kinks)."""
    three = typed(3.0, x)
    y = g * (x / three + typed(0.5, x))
    y = g if x > three else y
    return typed(0.0, g) if x < -three else y


@scalar
def hard_tanh(x, min_val, max_val):
    """min(max(x, min_val), max_val)."""
    y = max_val if x > max_val else x
    return min_val if x < min_val else y


@scalar
def hard_tanh_grad(g, x, min_val, max_val):
    """g where min_val < x < max_val, else 0."""
    inside = x > min_val and x < max_val
    return g if inside else typed(0.0, g)


# --------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Param:
    """A numeric parameter: its name, default, and which values make sense."""

    name: str
    default: float
    rule: str = "finite"  # 'finite', 'positive' (> 0), 'nonnegative' (>= 0), 'any' (inf ok)


@dataclass(frozen=True)
class Activation:
    """One row of the table: everything else about the activation is generated from it."""

    name: str
    forward: object
    grad: object
    formula: str
    stable_form: str
    grad_from: str = "x"  # 'x' or 'output': what the backward takes besides grad_output
    params: tuple = ()
    family: str = ""
    public: bool = True  # False: a variant reached through another function's argument
    #: (argument name, {value: activation name}): a string argument that picks a variant
    choice: tuple = ()
    #: a check across parameters: (a, b) -> error message, or "" when they are valid
    validate: Callable[[float, float], str] | None = None
    #: the gradient is a mask that the output decides as well as x does (grad(g, x) ==
    #: grad(g, forward(x)) for every x: relu, relu6, hard_tanh), so the fused epilogue saves
    #: no pre-activation: its backward reads the output (cuBLASLt's ReLU epilogue keeps a
    #: mask for the same reason). tests/test_registry.py checks the equality.
    mask_from_output: bool = False

    @property
    def fused_saves_output(self) -> bool:
        """True when ``fused.bias_act`` saves only its output for the backward."""
        return self.grad_from == "output" or self.mask_from_output


def _ordered_bounds(min_val, max_val):
    return "" if min_val <= max_val else f"min_val ({min_val}) must be <= max_val ({max_val})"


ACTIVATIONS = {
    a.name: a
    for a in (
        Activation(
            "sigmoid",
            sigmoid,
            sigmoid_grad,
            "1 / (1 + exp(-x))",
            "e = exp(-|x|); (1 if x >= 0 else e) / (1 + e)",
            "output",
            family="sigmoid",
        ),
        Activation(
            "log_sigmoid",
            log_sigmoid,
            log_sigmoid_grad,
            "log(1 / (1 + exp(-x)))",
            "min(x, 0) - log1p(exp(-|x|))",
            family="sigmoid",
        ),
        Activation(
            "tanh",
            tanh,
            tanh_grad,
            "(exp(x) - exp(-x)) / (exp(x) + exp(-x))",
            "|x| < 0.55: x + x^3 q(x^2); else sign(x) (1 - 2e / (1 + e)), e = exp(-2|x|)",
            "output",
            family="sigmoid",
        ),
        Activation(
            "softplus",
            softplus,
            softplus_grad,
            "log(1 + exp(beta x)) / beta",
            "(max(beta x, 0) + log1p(exp(-|beta x|))) / beta, the rounding of beta x corrected; x where beta x > threshold",
            params=(Param("beta", 1.0, "positive"), Param("threshold", 20.0, "any")),
            family="sigmoid",
        ),
        Activation(
            "relu", relu, relu_grad, "max(x, 0)", "select", family="relu", mask_from_output=True
        ),
        Activation(
            "relu6",
            relu6,
            relu6_grad,
            "min(max(x, 0), 6)",
            "select",
            family="relu",
            mask_from_output=True,
        ),
        Activation(
            "leaky_relu",
            leaky_relu,
            leaky_relu_grad,
            "x if x > 0 else negative_slope x",
            "select",
            params=(Param("negative_slope", 0.01, "finite"),),
            family="relu",
        ),
        Activation(
            "elu",
            elu,
            elu_grad,
            "x if x > 0 else alpha (exp(x) - 1)",
            "alpha expm1(x) for x <= 0",
            params=(Param("alpha", 1.0, "nonnegative"),),
            family="relu",
        ),
        Activation(
            "celu",
            celu,
            celu_grad,
            "max(0, x) + min(0, alpha (exp(x / alpha) - 1))",
            "alpha expm1(x / alpha) for x <= 0",
            params=(Param("alpha", 1.0, "positive"),),
            family="relu",
        ),
        Activation(
            "selu",
            selu,
            selu_grad,
            "scale (x if x > 0 else alpha (exp(x) - 1))",
            "scale alpha expm1(x) for x <= 0",
            family="relu",
        ),
        Activation(
            "gelu",
            gelu,
            gelu_grad,
            "x Phi(x) = x/2 (1 + erf(x / sqrt(2)))",
            "x/2 exp(-t^2) erfcx(t), t = -x/sqrt(2) (float64: t in double-double; float32: "
            "t^2 split exactly, erfcx a fitted polynomial)",
            family="smooth",
            choice=("approximate", {"none": "gelu", "tanh": "gelu_tanh"}),
        ),
        Activation(
            "gelu_tanh",
            gelu_tanh,
            gelu_tanh_grad,
            "x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
            "x sigmoid(2u), 2u = 2 sqrt(2/pi) x (1 + 0.044715 x^2) in double-double",
            family="smooth",
            public=False,
        ),
        Activation(
            "silu",
            silu,
            silu_grad,
            "x sigmoid(x)",
            "e = exp(-|x|); (x if x >= 0 else x e) / (1 + e)",
            family="smooth",
        ),
        Activation(
            "mish",
            mish,
            mish_grad,
            "x tanh(softplus(x))",
            "n = e^x (e^x + 2); x n / (n + 2)",
            family="smooth",
        ),
        Activation(
            "hard_sigmoid",
            hard_sigmoid,
            hard_sigmoid_grad,
            "relu6(x + 3) / 6",
            "select",
            family="hard",
        ),
        Activation(
            "hard_swish", hard_swish, hard_swish_grad, "x relu6(x + 3) / 6", "select", family="hard"
        ),
        Activation(
            "hard_tanh",
            hard_tanh,
            hard_tanh_grad,
            "min(max(x, min_val), max_val)",
            "select",
            params=(Param("min_val", -1.0, "finite"), Param("max_val", 1.0, "finite")),
            family="hard",
            validate=_ordered_bounds,
            mask_from_output=True,
        ),
    )
}
