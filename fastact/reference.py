"""Plain-NumPy, numerically stable implementations of every forward and backward.

The truth that tests compare fastact's kernels against and the "numpy" implementation in
the benchmarks. Same names and signatures as the public fastact functions (without
``out=``). Inputs are converted with ``np.asarray``; float32 stays float32, integers become
float64. Written for clarity, not speed: each makes the temporaries NumPy needs.
"""

from __future__ import annotations

import math

import numpy as np

from fastact.activations import GELU_TANH_K0, GELU_TANH_K1, SELU_ALPHA, SELU_SCALE

__all__ = [
    "special_values",
    "sigmoid",
    "sigmoid_backward",
    "log_sigmoid",
    "log_sigmoid_backward",
    "tanh",
    "tanh_backward",
    "softplus",
    "softplus_backward",
    "relu",
    "relu_backward",
    "relu6",
    "relu6_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "prelu",
    "prelu_backward",
    "elu",
    "elu_backward",
    "celu",
    "celu_backward",
    "selu",
    "selu_backward",
    "gelu",
    "gelu_backward",
    "silu",
    "silu_backward",
    "mish",
    "mish_backward",
    "hard_sigmoid",
    "hard_sigmoid_backward",
    "hard_swish",
    "hard_swish_backward",
    "hard_tanh",
    "hard_tanh_backward",
]


def _erfc(x):
    """scipy.special.erfc when SciPy is installed, else math.erfc element by element."""
    try:
        from scipy.special import erfc
    except ImportError:  # pragma: no cover - scipy is a test/bench extra
        return np.vectorize(math.erfc, otypes=[np.float64])(x)
    return erfc(x)


def _limits(x, y, at_plus_inf, at_minus_inf):
    """y with the limits at x = +-inf, where x * 0 gives NaN (as the kernels do)."""
    y = np.where(x == np.inf, at_plus_inf, y)
    return np.where(x == -np.inf, at_minus_inf, y).astype(y.dtype)


def _f(x):
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _quiet(func):
    """Both sides of np.where are evaluated; the discarded side may overflow."""

    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


@_quiet
def sigmoid(x):
    x = _f(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def sigmoid_backward(grad_output, output):
    return grad_output * (output * (1 - output))


@_quiet
def log_sigmoid(x):
    x = _f(x)
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def log_sigmoid_backward(grad_output, x):
    return grad_output * sigmoid(-_f(x))


def tanh(x):
    return np.tanh(_f(x))


def tanh_backward(grad_output, output):
    return grad_output * (1 - output * output)


@_quiet
def softplus(x, beta=1.0, threshold=20.0):
    x = _f(x)
    z = beta * x
    y = (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / beta
    return np.where(z > threshold, x, y).astype(x.dtype)


def softplus_backward(grad_output, x, beta=1.0, threshold=20.0):
    x = _f(x)
    z = beta * x
    return np.where(z > threshold, grad_output, grad_output * sigmoid(z))


def relu(x):
    x = _f(x)
    return np.where(x <= 0, 0, x).astype(x.dtype)


def relu_backward(grad_output, x):
    return np.where(_f(x) <= 0, 0, grad_output)


def relu6(x):
    x = _f(x)
    return np.where(x <= 0, 0, np.where(x >= 6, 6, x)).astype(x.dtype)


def relu6_backward(grad_output, x):
    x = _f(x)
    return np.where((x > 0) & (x < 6), grad_output, 0)


def leaky_relu(x, negative_slope=0.01):
    x = _f(x)
    return np.where(x > 0, x, x * x.dtype.type(negative_slope))


def leaky_relu_backward(grad_output, x, negative_slope=0.01):
    x = _f(x)
    g = np.asarray(grad_output)
    return np.where(x > 0, g, g * np.result_type(g, x).type(negative_slope))


def _channel_weight(x, weight):
    w = np.asarray(weight, dtype=x.dtype).reshape(-1)
    if w.size == 1 or x.ndim < 2:
        return w.reshape(()) if w.size == 1 else w
    return w.reshape((-1,) + (1,) * (x.ndim - 2))


def prelu(x, weight):
    x = _f(x)
    w = _channel_weight(x, weight)
    return np.where(x > 0, x, x * w)


def prelu_backward(grad_output, x, weight):
    """Returns (grad_input, grad_weight); grad_weight has weight's shape."""
    x = _f(x)
    g = np.asarray(grad_output, dtype=x.dtype)
    w = _channel_weight(x, weight)
    grad_input = np.where(x > 0, g, g * w)
    contrib = np.where(x > 0, 0, g * x)
    weight = np.asarray(weight)
    if weight.size == 1:
        grad_weight = contrib.sum(dtype=np.float64)
    else:
        axes = (0,) + tuple(range(2, x.ndim))
        grad_weight = contrib.sum(axis=axes, dtype=np.float64)
    return grad_input, np.asarray(grad_weight, dtype=x.dtype).reshape(weight.shape)


@_quiet
def elu(x, alpha=1.0):
    x = _f(x)
    return np.where(x > 0, x, x.dtype.type(alpha) * np.expm1(x))


@_quiet
def elu_backward(grad_output, x, alpha=1.0):
    x = _f(x)
    return np.where(x > 0, grad_output, grad_output * (x.dtype.type(alpha) * np.exp(x)))


@_quiet
def celu(x, alpha=1.0):
    x = _f(x)
    a = x.dtype.type(alpha)
    return np.where(x > 0, x, a * np.expm1(x / a))


@_quiet
def celu_backward(grad_output, x, alpha=1.0):
    x = _f(x)
    return np.where(x > 0, grad_output, grad_output * np.exp(x / x.dtype.type(alpha)))


@_quiet
def selu(x):
    x = _f(x)
    t = x.dtype.type
    return t(SELU_SCALE) * np.where(x > 0, x, t(SELU_ALPHA) * np.expm1(x))


@_quiet
def selu_backward(grad_output, x):
    x = _f(x)
    t = x.dtype.type
    return np.where(
        x > 0, grad_output * t(SELU_SCALE), grad_output * (t(SELU_SCALE * SELU_ALPHA) * np.exp(x))
    )


def _check_approximate(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


@_quiet
def gelu(x, approximate="none"):
    _check_approximate(approximate)
    x = _f(x)
    xd = x.astype(np.float64)
    if approximate == "tanh":
        u = 2 * GELU_TANH_K0 * (xd + GELU_TANH_K1 * xd**3)
        return _limits(x, xd * sigmoid(u), x, -0.0).astype(x.dtype)
    return _limits(x, 0.5 * xd * _erfc(-xd / np.sqrt(2)), x, -0.0).astype(x.dtype)


@_quiet
def gelu_backward(grad_output, x, approximate="none"):
    _check_approximate(approximate)
    x = _f(x)
    xd = x.astype(np.float64)
    if approximate == "tanh":
        s = sigmoid(2 * GELU_TANH_K0 * (xd + GELU_TANH_K1 * xd**3))
        du = 2 * GELU_TANH_K0 * (1 + 3 * GELU_TANH_K1 * xd * xd)
        d = s + xd * s * (1 - s) * du
    else:
        d = 0.5 * _erfc(-xd / np.sqrt(2)) + xd * np.exp(-0.5 * xd * xd) / np.sqrt(2 * np.pi)
    return grad_output * _limits(x, d, 1.0, 0.0).astype(np.result_type(x, grad_output))


@_quiet
def silu(x):
    x = _f(x)
    return _limits(x, x * sigmoid(x), x, -0.0)


@_quiet
def silu_backward(grad_output, x):
    x = _f(x)
    s = sigmoid(x)
    return grad_output * _limits(x, s * (1 + x * (1 - s)), 1.0, 0.0)


@_quiet
def mish(x):
    x = _f(x)
    return _limits(x, x * np.tanh(softplus(x)), x, -0.0)


@_quiet
def mish_backward(grad_output, x):
    x = _f(x)
    t = np.tanh(softplus(x))
    return grad_output * _limits(x, t + x * sigmoid(x) * (1 - t * t), 1.0, 0.0)


def hard_sigmoid(x):
    x = _f(x)
    return np.where(x <= -3, 0, np.where(x >= 3, 1, x / 6 + x.dtype.type(0.5))).astype(x.dtype)


def hard_sigmoid_backward(grad_output, x):
    x = _f(x)
    return np.where((x > -3) & (x < 3), grad_output / 6, 0)


@_quiet
def hard_swish(x):
    x = _f(x)
    return np.where(x <= -3, 0, np.where(x >= 3, x, x * (x + 3) / 6)).astype(x.dtype)


def hard_swish_backward(grad_output, x):
    x = _f(x)
    return np.where(
        x < -3, 0, np.where(x > 3, grad_output, grad_output * (x / 3 + x.dtype.type(0.5)))
    )


def hard_tanh(x, min_val=-1.0, max_val=1.0):
    x = _f(x)
    t = x.dtype.type
    return np.where(x < min_val, t(min_val), np.where(x > max_val, t(max_val), x))


def hard_tanh_backward(grad_output, x, min_val=-1.0, max_val=1.0):
    x = _f(x)
    return np.where((x > min_val) & (x < max_val), grad_output, 0)


def special_values(dtype) -> np.ndarray:
    """The special inputs every kernel is checked on (tests, ``bench/gpu.py``): +-inf, +-max,
    huge and large magnitudes, +-subnormals, +-0, small and moderate values, NaN (31 values of
    ``dtype``; values beyond its range become inf)."""
    info = np.finfo(dtype)
    values = [
        -np.inf, -info.max, -1e30, -1e4, -1000.0, -100.0, -30.0, -20.0, -6.0, -3.0, -1.0, -0.5,
        -1e-30, -info.tiny / 4, -0.0, 0.0, info.tiny / 4, 1e-30, 0.5, 1.0, 3.0, 6.0, 20.0, 30.0,
        100.0, 1000.0, 1e4, 1e30, info.max, np.inf, np.nan,
    ]  # fmt: skip
    with np.errstate(over="ignore"):
        return np.array(values, dtype=dtype)
