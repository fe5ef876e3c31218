"""Fused training ops on the CPU: each one a single compiled pass over its arrays.

* :func:`bias_act` / :func:`bias_act_backward`: ``activation(x + bias)`` and its backward with
  the bias gradient, through the kernels generated from ``fastact.activations`` (serial below
  ``fastact._config.PARALLEL_THRESHOLD`` elements, multi-threaded above).
* :func:`softmax_cross_entropy`, :func:`binary_cross_entropy_with_logits`: mean loss and its
  gradient with respect to the logits in one call, stable for any finite logits.
* :func:`softmax`: the row-wise softmax (stable).
* :func:`dropout` / :func:`dropout_backward`: inverted dropout, the mask kept for the backward.
* :func:`batch_norm` / :func:`batch_norm_backward`: 1-D batch normalization over the batch axis.
* :func:`sgd_update`, :func:`adam_update`: optimizer steps, in place, one pass per parameter.

Kernels other than the bias+activation epilogues are single-threaded: they are small next to
the matrix products of a training step, and a trainer that calls them next to a multi-threaded
BLAS must not start a second thread pool (see docs/mlp.md). Float32 inputs are computed in
float32 (typed constants, fastact's vectorizable ``exp``/``log1p``); sums that reduce many
elements (losses, batch statistics, bias gradients) are accumulated in float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from fastact import _kernels
from fastact import activations as act
from fastact._api import (
    _same_view,
    as_array,
    check_param,
    contiguous_target,
    finish,
    on_device,
    param_in,
    pick,
    result_dtypes,
    typed_params,
)
from fastact._config import PARALLEL_THRESHOLD, SCALAR, SERIAL, SUM_TERM
from fastact._math import always_inline, exp, log1p, typed, wide_vectors
from fastact.activations import ACTIVATIONS

__all__ = [
    "bias_act",
    "bias_act_backward",
    "softmax",
    "softmax_cross_entropy",
    "binary_cross_entropy_with_logits",
    "dropout",
    "dropout_backward",
    "batch_norm",
    "batch_norm_backward",
    "BatchNormCache",
    "sgd_update",
    "adam_update",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------- helpers
def _float_array(func, name, value, ndim=None):
    """``value`` as an ndarray of a real dtype, with ``ndim`` dimensions when given."""
    a = as_array(func, name, value)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"fastact.{func}: {name} must be {ndim}-D, got shape {a.shape}")
    return a


def _c(a, dtype):
    """``a`` as a C-contiguous array of ``dtype`` (no copy when it already is one); values
    beyond ``dtype``'s range become inf, without a warning (as NumPy's casts into ``out=``)."""
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(a, dtype=dtype)


# --------------------------------------------------------------------------- bias + activation
class _BiasAct:
    """An activation resolved to its fused kernels and typed parameters (no argument checks:
    the trainer's hot path, on C-contiguous 2-D arrays of one float dtype)."""

    def __init__(self, spec, a, b, dtype, serial):
        self.spec = spec
        self.saves_output = spec.fused_saves_output
        k = "serial" if serial else "parallel"
        self.forward_kernel = getattr(_kernels, f"{spec.name}_bias_forward_{k}")
        self.backward_kernel = getattr(_kernels, f"{spec.name}_bias_backward_{k}")
        self.a, self.b = dtype.type(a), dtype.type(b)

    def forward(self, x, bias, out, saved):
        """out = act(x + bias); saved = x + bias unless the backward uses the output (then
        ``saved`` is not written: pass ``out`` as ``saved`` to the backward). ``saved`` may
        be ``x`` itself (the pre-activation overwrites the input in place)."""
        self.forward_kernel(x, bias, out, saved, self.a, self.b)

    def backward(self, g, saved, grad_pre, grad_bias):
        """grad_pre = d loss / d(x + bias) (may be ``g`` itself); grad_bias = its column sums."""
        self.backward_kernel(g, saved, grad_pre, grad_bias, self.a, self.b)


def resolve_activation(func, activation, params):
    """(registry row, a, b): the activation a name and keyword parameters select, checked.

    ``activation`` is a name of ``fastact.activations.ACTIVATIONS``; for gelu, the keyword
    ``approximate='tanh'`` selects the tanh form (as ``fastact.gelu``)."""
    if not isinstance(activation, str):
        raise TypeError(f"fastact.{func}: activation must be a name (str), got {activation!r}")
    if activation not in ACTIVATIONS:
        hint = " (prelu has learned weights: use fastact.prelu)" if activation == "prelu" else ""
        raise ValueError(
            f"fastact.{func}: unknown activation {activation!r}{hint}; valid names: "
            f"{', '.join(ACTIVATIONS)}"
        )
    spec = ACTIVATIONS[activation]
    params = dict(params)
    if spec.choice and spec.choice[0] in params:
        arg, variants = spec.choice
        spec = ACTIVATIONS[pick(func, arg, params.pop(arg), variants)]
    names = [p.name for p in spec.params]
    unknown = sorted(set(params) - set(names))
    if unknown:
        takes = ", ".join(names + list(spec.choice[:1])) or "no parameters"
        raise TypeError(
            f"fastact.{func}: activation {activation!r} got unexpected parameter(s) "
            f"{', '.join(unknown)}; it takes {takes}"
        )
    values = [check_param(func, p.name, params.get(p.name, p.default), p.rule) for p in spec.params]
    values += [0.0] * (2 - len(values))
    problem = spec.validate(*values) if spec.validate else ""
    if problem:
        raise ValueError(f"fastact.{func}: {problem}")
    return spec, values[0], values[1]


def bias_act(x, bias, activation, *, out=None, **params):
    """``activation(x + bias)`` on a (batch, features) array, in one pass.

    Parameters
    ----------
    x : array_like, 2-D
        Pre-activations without the bias, shape (batch, features).
    bias : array_like, 1-D
        One value per feature (length ``x.shape[1]``).
    activation : str
        A name of ``fastact.activations.ACTIVATIONS`` ('relu', 'sigmoid', 'gelu', ...).
    out : ndarray, optional
        Where to write the activation (x's shape, result dtype; may be ``x``).
    **params
        The activation's parameters, as the elementwise function takes them
        (``negative_slope=0.1``, ``approximate='tanh'`` for gelu, ...).

    Returns
    -------
    out : ndarray
        ``activation(x + bias)``; float32/float64 keep their dtype (the dtype of
        ``np.result_type(x, bias)``), float16 is computed in float32, integers in float64.
    saved : ndarray
        What :func:`bias_act_backward` needs, in the compute dtype:

        * sigmoid and tanh (their derivative is computed from the output, as PyTorch's
          ``sigmoid_backward``/``tanh_backward``), and relu, relu6 and hard_tanh (their
          derivative is a mask that the output decides as well as ``x + bias`` does): the
          output itself, ``saved is out`` unless the result was cast (float16) or written
          through a temporary; nothing else is stored;
        * every other activation: the pre-activation ``x + bias`` (a new array).
    """
    func = "bias_act"
    if on_device(x):
        from fastact import cuda

        return cuda.bias_act(x, bias, activation, out=out, **params)
    spec, a, b = resolve_activation(func, activation, params)
    x = _float_array(func, "x", x, ndim=2)
    bias = _float_array(func, "bias", bias, ndim=1)
    if bias.shape[0] != x.shape[1]:
        raise ValueError(
            f"fastact.{func}: bias has length {bias.shape[0]}, x has {x.shape[1]} "
            f"features (x.shape[1]); pass one bias per feature"
        )
    compute, result = result_dtypes(x.dtype, bias.dtype)
    target = contiguous_target(func, out, x.shape, compute, result, x, bias)
    xc, bc = _c(x, compute), _c(bias, compute)
    saved = target if spec.fused_saves_output else np.empty(x.shape, compute)
    a, b = typed_params(func, spec, a, b, compute)
    _BiasAct(spec, a, b, compute, x.size < PARALLEL_THRESHOLD).forward(xc, bc, target, saved)
    return finish(out, target, result), saved


def bias_act_backward(grad_output, saved, activation, **params):
    """Backward of :func:`bias_act`: ``(grad_pre, grad_bias)`` in one pass.

    ``grad_pre = grad_output * activation'(x + bias)`` (the gradient with respect to ``x``, and
    to ``x + bias``); ``grad_bias = grad_pre.sum(axis=0)``, accumulated in float64.
    ``saved`` is the second return value of :func:`bias_act` (the output for sigmoid, tanh,
    relu, relu6 and hard_tanh, the pre-activation for the others); ``activation`` and
    ``params`` as given to it.
    """
    func = "bias_act_backward"
    if on_device(grad_output):
        from fastact import cuda

        return cuda.bias_act_backward(grad_output, saved, activation, **params)
    spec, a, b = resolve_activation(func, activation, params)
    g = _float_array(func, "grad_output", grad_output, ndim=2)
    saved = _float_array(func, "saved", saved, ndim=2)
    if g.shape != saved.shape:
        raise ValueError(
            f"fastact.{func}: grad_output has shape {g.shape}, saved has shape "
            f"{saved.shape}; they must be equal"
        )
    compute, result = result_dtypes(g.dtype, saved.dtype)
    grad_pre = np.empty(g.shape, compute)
    grad_bias = np.empty(g.shape[1], np.float64)
    a, b = typed_params(func, spec, a, b, compute)
    op = _BiasAct(spec, a, b, compute, g.size < PARALLEL_THRESHOLD)
    op.backward(_c(g, compute), _c(saved, compute), grad_pre, grad_bias)
    with np.errstate(over="ignore"):  # float16 results: beyond its range is inf, no warning
        grad_bias = grad_bias.astype(result)
    return finish(None, grad_pre, result), grad_bias


# --------------------------------------------------------------------------- softmax and losses
@njit(**SERIAL)
def _row_exp(logits, i, out):
    """out[i] = exp(logits[i] - max(logits[i])); returns (max, sum of out[i] in float64)."""
    wide_vectors()
    m = logits[i, 0]
    for j in range(1, logits.shape[1]):
        v = logits[i, j]
        m = v if v > m else m
    s = 0.0
    for j in range(logits.shape[1]):
        e = exp(logits[i, j] - m)  # <= 1: never overflows
        out[i, j] = e
        s += e
    return m, s


@njit(**SERIAL)
def softmax_kernel(logits, out):
    wide_vectors()
    for i in range(logits.shape[0]):
        m, s = _row_exp(logits, i, out)
        inv = typed(1.0 / s, logits[i, 0])
        for j in range(logits.shape[1]):
            out[i, j] *= inv


@njit(**SERIAL)
def softmax_cross_entropy_kernel(logits, labels, grad):
    """Mean of log(sum exp(logits[i])) - logits[i, labels[i]]; grad = (softmax - onehot) / n."""
    wide_vectors()
    n = logits.shape[0]
    total = 0.0
    inv_n = typed(1.0 / n, logits[0, 0])
    for i in range(n):
        c = labels[i]
        x_c = logits[i, c]  # before grad (which may be logits itself) is written
        m, s = _row_exp(logits, i, grad)
        # loss_i = m + log(s) - logits[i, c], in float64 (s is in [1, classes])
        total += (np.float64(m) - np.float64(x_c)) + log1p(s - 1.0)
        scale = typed(1.0 / (s * n), logits[i, 0])
        for j in range(logits.shape[1]):
            grad[i, j] *= scale
        grad[i, c] -= inv_n
    return total / n


@njit(**SERIAL)
def bce_with_logits_kernel(logits, targets, grad):
    """Mean of softplus(x) - t x = max(x, 0) - t x + log1p(exp(-|x|)); grad = (sigmoid(x) - t) / n."""
    wide_vectors()
    n = logits.size
    total = 0.0
    inv_n = typed(1.0 / n, logits[0])
    zero = typed(0.0, logits[0])
    for i in range(n):
        x = logits[i]
        t = targets[i]
        xd = np.float64(x)
        total += (max(xd, 0.0) - xd * np.float64(t)) + log1p(exp(-abs(xd)))
        grad[i] = (act.sigmoid(x, zero, zero) - t) * inv_n
    return total / n


def _logits_2d(func, logits):
    x = _float_array(func, "logits", logits, ndim=2)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"fastact.{func}: logits must have at least one row and one class, got shape {x.shape}"
        )
    return x


def softmax(logits, *, out=None):
    """Row-wise softmax of a (batch, classes) array: ``exp(x - max) / sum(exp(x - max))``."""
    func = "softmax"
    if on_device(logits):
        from fastact import cuda

        return cuda.softmax(logits, out=out)
    x = _logits_2d(func, logits)
    compute, result = result_dtypes(x.dtype)
    target = contiguous_target(func, out, x.shape, compute, result, x)
    softmax_kernel(_c(x, compute), target)
    return finish(out, target, result)


def softmax_cross_entropy(logits, labels, *, out=None):
    """Mean softmax cross-entropy of integer class labels, and its gradient, in one pass.

    ``loss = mean_i(logsumexp(logits[i]) - logits[i, labels[i]])``, with the log-sum-exp taken
    after subtracting each row's maximum (no overflow for any finite logits, e.g. +-1e4);
    ``grad = (softmax(logits) - onehot(labels)) / batch``.

    Parameters
    ----------
    logits : array_like, shape (batch, classes)
    labels : array_like of int, shape (batch,)
        Class indices in ``[0, classes)``.
    out : ndarray, optional
        Where to write the gradient (logits' shape and result dtype).

    Returns
    -------
    loss : float
        The mean loss (accumulated in float64).
    grad : ndarray
        d loss / d logits, logits' dtype (float16 computed in float32, integers in float64).
    """
    func = "softmax_cross_entropy"
    if on_device(logits):
        from fastact import cuda

        return cuda.softmax_cross_entropy(logits, labels, out=out)
    x = _logits_2d(func, logits)
    y = as_array(func, "labels", labels)
    if y.dtype.kind not in "iu":
        raise TypeError(
            f"fastact.{func}: labels must be integer class indices, got dtype {y.dtype}"
        )
    if y.shape != (x.shape[0],):
        raise ValueError(
            f"fastact.{func}: labels must have shape ({x.shape[0]},) (one per row of "
            f"logits), got {y.shape}"
        )
    if y.min() < 0 or y.max() >= x.shape[1]:
        raise ValueError(
            f"fastact.{func}: labels must be in [0, {x.shape[1]}) (logits has "
            f"{x.shape[1]} classes), got values in [{y.min()}, {y.max()}]"
        )
    compute, result = result_dtypes(x.dtype)
    target = contiguous_target(func, out, x.shape, compute, result, x, y)
    loss = softmax_cross_entropy_kernel(_c(x, compute), _c(y, np.intp), target)
    return float(loss), finish(out, target, result)


def binary_cross_entropy_with_logits(logits, targets, *, out=None):
    """Mean binary cross-entropy of sigmoid(logits) against targets in [0, 1], and its gradient.

    ``loss = mean(max(x, 0) - x t + log1p(exp(-|x|)))`` (= ``-t log s - (1 - t) log(1 - s)``,
    ``s = sigmoid(x)``, without forming ``s``: stable for any finite logits);
    ``grad = (sigmoid(x) - t) / size``. ``logits`` and ``targets`` have the same shape (any).

    Returns
    -------
    loss : float
        The mean loss (accumulated in float64).
    grad : ndarray
        d loss / d logits, logits' shape and dtype (float16 in float32, integers in float64).
    """
    func = "binary_cross_entropy_with_logits"
    if on_device(logits):
        from fastact import cuda

        return cuda.binary_cross_entropy_with_logits(logits, targets, out=out)
    x = as_array(func, "logits", logits)
    t = as_array(func, "targets", targets)
    if x.shape != t.shape:
        raise ValueError(
            f"fastact.{func}: logits has shape {x.shape}, targets has shape "
            f"{t.shape}; they must be equal"
        )
    if x.size == 0:
        raise ValueError(f"fastact.{func}: logits is empty")
    if not (np.all(t >= 0) and np.all(t <= 1)):
        raise ValueError(
            f"fastact.{func}: targets must be probabilities in [0, 1] (e.g. 0/1 "
            "labels), got values outside it or NaN"
        )
    compute, result = result_dtypes(x.dtype)
    target = contiguous_target(func, out, x.shape, compute, result, x, t)
    loss = bce_with_logits_kernel(
        _c(x, compute).reshape(-1), _c(t, compute).reshape(-1), target.reshape(-1)
    )
    return float(loss), finish(out, target, result)


# --------------------------------------------------------------------------- dropout
@njit(**SERIAL)
def dropout_kernel(x, u, p, scale, y, mask):
    """Keep x[i] (scaled by 1 / (1 - p)) where the uniform u[i] >= p."""
    wide_vectors()
    zero = typed(0.0, scale)
    for i in range(x.size):
        keep = u[i] >= p
        mask[i] = keep
        y[i] = x[i] * scale if keep else zero


@njit(**SERIAL)
def dropout_backward_kernel(g, mask, scale, out):
    wide_vectors()
    zero = typed(0.0, scale)
    for i in range(g.size):
        out[i] = g[i] * scale if mask[i] else zero


def _dropout_p(func, p):
    p = check_param(func, "p", p, "nonnegative")
    if p > 1:
        raise ValueError(
            f"fastact.{func}: p is the probability of dropping an element, it must "
            f"be in [0, 1], got {p!r}"
        )
    return p, (0.0 if p == 1 else 1.0 / (1.0 - p))


def as_generator(func, rng) -> np.random.Generator:
    """``rng`` as a numpy Generator: a Generator itself, else a seed (a non-negative integer)
    or None (fresh entropy) for a new one; a TypeError that names it otherwise."""
    if isinstance(rng, np.random.Generator):
        return rng
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError):
        raise TypeError(
            f"fastact.{func}: rng must be a numpy.random.Generator, a seed (a non-negative "
            f"integer) or None, got {rng!r}"
        ) from None


def dropout(x, p, rng=None, *, out=None):
    """Inverted dropout: each element zeroed with probability ``p``, the others scaled by
    ``1 / (1 - p)`` (the expected value is unchanged; no scaling at inference).

    Parameters
    ----------
    x : array_like
        Any shape.
    p : float
        Drop probability, in [0, 1].
    rng : numpy.random.Generator or int or None
        The source of randomness (an int seeds ``numpy.random.default_rng``): the same
        generator state gives the same mask.
    out : ndarray, optional
        Where to write the result (x's shape and result dtype; may be ``x``).

    Returns
    -------
    y : ndarray
    mask : ndarray of bool
        True where x was kept; :func:`dropout_backward` takes it.
    """
    func = "dropout"
    if on_device(x):
        from fastact import cuda

        return cuda.dropout(x, p, rng, out=out)
    p, scale = _dropout_p(func, p)
    x = as_array(func, "x", x)
    rng = as_generator(func, rng)
    compute, result = result_dtypes(x.dtype)
    target = contiguous_target(func, out, x.shape, compute, result, x)
    u = rng.random(x.shape, dtype=compute)
    mask = np.empty(x.shape, np.bool_)
    t = compute.type
    dropout_kernel(
        _c(x, compute).reshape(-1),
        u.reshape(-1),
        t(p),
        t(scale),
        target.reshape(-1),
        mask.reshape(-1),
    )
    return finish(out, target, result), mask


def dropout_backward(grad_output, mask, p, *, out=None):
    """Backward of :func:`dropout`: ``grad_output / (1 - p)`` where ``mask``, else 0."""
    func = "dropout_backward"
    if on_device(grad_output):
        from fastact import cuda

        return cuda.dropout_backward(grad_output, mask, p, out=out)
    p, scale = _dropout_p(func, p)
    g = as_array(func, "grad_output", grad_output)
    mask = as_array(func, "mask", mask)  # a device mask: a clear error, no silent copy
    if mask.dtype != np.bool_ or mask.shape != g.shape:
        raise ValueError(
            f"fastact.{func}: mask must be the boolean mask dropout returned, of "
            f"grad_output's shape {g.shape}; got {mask.dtype} with shape {mask.shape}"
        )
    compute, result = result_dtypes(g.dtype)
    target = contiguous_target(func, out, g.shape, compute, result, g, mask)
    dropout_backward_kernel(
        _c(g, compute).reshape(-1),
        _c(mask, np.bool_).reshape(-1),
        compute.type(scale),
        target.reshape(-1),
    )
    return finish(out, target, result)


# --------------------------------------------------------------------------- batch norm
class BatchNormCache(NamedTuple):
    """What :func:`batch_norm_backward` needs from the forward."""

    xhat: np.ndarray  # (x - mean) * inv_std, compute dtype
    gamma: np.ndarray  # a copy of the scale used (compute dtype)
    inv_std: np.ndarray  # 1 / sqrt(var + eps) per feature (compute dtype)
    training: bool  # batch statistics (True) or running statistics (False) were used


@njit(**SERIAL)
def _column_mean_var(x):
    """Per-column mean and biased variance (two passes, float64 accumulators)."""
    wide_vectors()
    n, f = x.shape
    mean = np.zeros(f)
    for i in range(n):
        for j in range(f):
            mean[j] += x[i, j]
    mean /= n
    var = np.zeros(f)
    for i in range(n):
        for j in range(f):
            d = x[i, j] - mean[j]
            var[j] += d * d
    var /= n
    return mean, var


@njit(**SERIAL)
def batch_norm_forward_kernel(
    x, gamma, beta, running_mean, running_var, training, momentum, eps, y, xhat, inv_std
):
    wide_vectors()
    n, f = x.shape
    if training:
        mean, var = _column_mean_var(x)
        keep = 1.0 - momentum
        unbiased = n / (n - 1.0)
        for j in range(f):
            running_mean[j] = keep * running_mean[j] + momentum * mean[j]
            running_var[j] = keep * running_var[j] + momentum * (var[j] * unbiased)
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    center = np.empty(f, x.dtype)
    for j in range(f):
        inv_std[j] = 1.0 / math.sqrt(var[j] + eps)
        center[j] = mean[j]
    for i in range(n):
        for j in range(f):
            h = (x[i, j] - center[j]) * inv_std[j]
            xhat[i, j] = h
            y[i, j] = gamma[j] * h + beta[j]


@njit(**SERIAL)
def batch_norm_backward_kernel(g, xhat, gamma, inv_std, training, dx, dgamma, dbeta):
    """dbeta = sum g; dgamma = sum g xhat; training: dx = gamma inv_std (g - mean(g) -
    xhat mean(g xhat)); evaluation (fixed statistics): dx = gamma inv_std g."""
    wide_vectors()
    n, f = g.shape
    sum_g = np.zeros(f)
    sum_gx = np.zeros(f)
    for i in range(n):
        for j in range(f):
            sum_g[j] += g[i, j]
            sum_gx[j] += g[i, j] * xhat[i, j]
    k = np.empty(f, g.dtype)
    c1 = np.zeros(f, g.dtype)
    c2 = np.zeros(f, g.dtype)
    for j in range(f):
        dbeta[j] = sum_g[j]
        dgamma[j] = sum_gx[j]
        k[j] = gamma[j] * inv_std[j]
        if training:
            c1[j] = sum_g[j] / n
            c2[j] = sum_gx[j] / n
    for i in range(n):
        for j in range(f):
            dx[i, j] = k[j] * (g[i, j] - c1[j] - xhat[i, j] * c2[j])


def _state_vector(func, name, value, f):
    if not isinstance(value, np.ndarray) or value.dtype not in _FLOATS:
        raise TypeError(
            f"fastact.{func}: {name} must be a float32 or float64 numpy array "
            "(it is updated in place)"
        )
    if value.shape != (f,) or not value.flags.c_contiguous or not value.flags.writeable:
        problem = (
            f"shape {value.shape}"
            if value.shape != (f,)
            else ("a read-only array" if not value.flags.writeable else "a strided view")
        )
        raise ValueError(
            f"fastact.{func}: {name} must be a writeable contiguous array of shape "
            f"({f},) (it is updated in place), got {problem}"
        )
    return value


def _batch_norm_scalars(func, rows, training, momentum, eps):
    """batch_norm's momentum and eps, checked (CPU and GPU): training needs >= 2 rows."""
    if training and rows < 2:
        raise ValueError(
            f"fastact.{func}: training needs at least 2 rows for batch statistics, got {rows}"
        )
    momentum = check_param(func, "momentum", momentum, "nonnegative")
    eps = check_param(func, "eps", eps, "nonnegative")
    if momentum > 1:
        raise ValueError(f"fastact.{func}: momentum must be in [0, 1], got {momentum!r}")
    return momentum, eps


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """1-D batch normalization of a (batch, features) array, as ``torch.nn.BatchNorm1d``.

    ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` per feature. Training: mean and
    (biased) variance of the batch, and the running statistics are updated in place,
    ``running = (1 - momentum) running + momentum * batch`` (the running variance with the
    unbiased batch variance). Evaluation (``training=False``): the running statistics.

    Returns
    -------
    y : ndarray
        x's shape and result dtype.
    cache : BatchNormCache
        For :func:`batch_norm_backward`.
    """
    func = "batch_norm"
    if on_device(x):
        from fastact import cuda

        return cuda.batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    x = _float_array(func, "x", x, ndim=2)
    n, f = x.shape
    momentum, eps = _batch_norm_scalars(func, n, training, momentum, eps)
    compute, result = result_dtypes(x.dtype)
    params = []
    for name, value in (("gamma", gamma), ("beta", beta)):
        v = _float_array(func, name, value)
        if v.shape != (f,):
            raise ValueError(
                f"fastact.{func}: {name} must have shape ({f},) (one per feature), got {v.shape}"
            )
        params.append(_c(v, compute))
    running_mean = _state_vector(func, "running_mean", running_mean, f)
    running_var = _state_vector(func, "running_var", running_var, f)
    y = np.empty(x.shape, compute)
    xhat = np.empty(x.shape, compute)
    inv_std = np.empty(f, compute)
    batch_norm_forward_kernel(
        _c(x, compute),
        params[0],
        params[1],
        running_mean,
        running_var,
        bool(training),
        momentum,
        eps,
        y,
        xhat,
        inv_std,
    )
    gamma_copy = params[0].copy() if params[0] is gamma else params[0]
    return finish(None, y, result), BatchNormCache(xhat, gamma_copy, inv_std, bool(training))


def batch_norm_backward(grad_output, cache):
    """Backward of :func:`batch_norm`: ``(dx, dgamma, dbeta)`` in one pass (two over g)."""
    func = "batch_norm_backward"
    if on_device(grad_output):
        from fastact import cuda

        return cuda.batch_norm_backward(grad_output, cache)
    if not isinstance(cache, BatchNormCache):
        raise TypeError(f"fastact.{func}: cache must be the BatchNormCache batch_norm returned")
    if on_device(cache.xhat):
        raise TypeError(
            f"fastact.{func}: cache is on the GPU (batch_norm ran there) and grad_output on "
            f"the host: pass grad_output as a CUDA device array"
        )
    g = _float_array(func, "grad_output", grad_output, ndim=2)
    if g.shape != cache.xhat.shape:
        raise ValueError(
            f"fastact.{func}: grad_output has shape {g.shape}, the forward's x had "
            f"shape {cache.xhat.shape}"
        )
    compute = cache.xhat.dtype
    _, result = result_dtypes(g.dtype, compute)
    dx = np.empty(g.shape, compute)
    dgamma = np.empty(g.shape[1], compute)
    dbeta = np.empty(g.shape[1], compute)
    batch_norm_backward_kernel(
        _c(g, compute), cache.xhat, cache.gamma, cache.inv_std, cache.training, dx, dgamma, dbeta
    )
    return finish(None, dx, result), dgamma, dbeta


# --------------------------------------------------------------------------- optimizers
@njit(**SCALAR)
def sgd_step(p, g, v, lr, momentum, weight_decay, nesterov):
    """One element's SGD step, shared by the CPU and CUDA kernels: (new p, new velocity).
    d = g + wd p; v = momentum v + d; p -= lr (d + momentum v if nesterov else v). With
    momentum 0 (and v 0) the step is d."""
    d = g + weight_decay * p
    buf = momentum * v + d
    return p - lr * (d + momentum * buf if nesterov else buf), buf


@njit(**SCALAR)
def adam_step(p, g, m, v, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2,
              inv_sqrt_bias2, eps, weight_decay):  # fmt: skip
    """One element's Adam step, shared by the CPU and CUDA kernels: (new p, new m, new v).
    m, v: moving averages of d = g + wd p and d^2; p -= step_size m / (sqrt(v) inv_sqrt_bias2
    + eps), step_size = lr / (1 - beta1^t), inv_sqrt_bias2 = 1 / sqrt(1 - beta2^t)."""
    d = g + weight_decay * p
    mi = beta1 * m + one_minus_beta1 * d
    vi = beta2 * v + one_minus_beta2 * (d * d)
    return p - step_size * mi / (math.sqrt(vi) * inv_sqrt_bias2 + eps), mi, vi


@njit(**SUM_TERM)
def _plus_square(total, x):
    """total + x^2 in float64, as a term of a sum LLVM may reorder (vectorize)."""
    always_inline()
    xd = np.float64(x)
    return total + xd * xd


@njit(**SERIAL)
def sgd_kernel(p, g, v, lr, momentum, weight_decay, nesterov):
    """sgd_step over a parameter, in place (as ``torch.optim.SGD``, dampening 0); v is not
    read or written without momentum (it may be empty). Returns the gradient's squared L2
    norm (float64; free: g is read anyway)."""
    wide_vectors()
    squares = 0.0
    if momentum == 0:
        zero = typed(0.0, lr)
        for i in range(p.size):
            gi = g[i]
            squares = _plus_square(squares, gi)
            p[i] = sgd_step(p[i], gi, zero, lr, momentum, weight_decay, False)[0]
    else:
        for i in range(p.size):
            gi = g[i]
            squares = _plus_square(squares, gi)
            p[i], v[i] = sgd_step(p[i], gi, v[i], lr, momentum, weight_decay, nesterov)
    return squares


@njit(**SERIAL)
def adam_kernel(p, g, m, v, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bias2, eps, weight_decay):  # fmt: skip
    """adam_step over a parameter, in place (as ``torch.optim.Adam``, L2 weight decay). Returns
    the gradient's squared L2 norm (float64)."""
    wide_vectors()
    squares = 0.0
    for i in range(p.size):
        gi = g[i]
        squares = _plus_square(squares, gi)
        p[i], m[i], v[i] = adam_step(
            p[i], gi, m[i], v[i], step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bias2, eps, weight_decay
        )  # fmt: skip
    return squares


def _param_and_grad(func, param, grad):
    if not isinstance(param, np.ndarray) or param.dtype not in _FLOATS:
        raise TypeError(
            f"fastact.{func}: param must be a float32 or float64 numpy array "
            "(it is updated in place)"
        )
    if not param.flags.c_contiguous or not param.flags.writeable:
        raise ValueError(f"fastact.{func}: param must be a writeable C-contiguous array")
    g = as_array(func, "grad", grad)
    if g.shape != param.shape:
        raise ValueError(f"fastact.{func}: grad has shape {g.shape}, param has shape {param.shape}")
    return param.reshape(-1), _c(g, param.dtype).reshape(-1)


def _state(func, name, value, param):
    if (
        not isinstance(value, np.ndarray)
        or value.dtype != param.dtype
        or value.shape != param.shape
        or not value.flags.c_contiguous
        or not value.flags.writeable
    ):
        where = " NumPy" if on_device(value) else ""  # as param: on the host
        raise ValueError(
            f"fastact.{func}: {name} must be a writeable C-contiguous{where} array with "
            f"param's shape {param.shape} and dtype {param.dtype} (start from zeros)"
        )
    return value.reshape(-1)


def _apart_in_memory(func, arrays):
    """Updated-in-place arrays must not share memory with each other, nor with ``grad``
    (a velocity that is the parameter, or m that is v, would be updated twice); ``grad`` may
    be ``param`` itself (read before the element is written). ``arrays``: (name, array)."""
    for i, (name_a, a) in enumerate(arrays):
        for name_b, b in arrays[i + 1 :]:
            if b is None or a is None or not np.may_share_memory(a, b):
                continue
            if {name_a, name_b} == {"param", "grad"} and _same_view(a, b):
                continue
            raise ValueError(
                f"fastact.{func}: {name_a} and {name_b} share memory; each needs its own array"
            )


def sgd_update(param, grad, velocity=None, *, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """One SGD step on ``param``, in place (as ``torch.optim.SGD`` with dampening 0).

    ``d = grad + weight_decay * param``; with momentum, ``velocity = momentum * velocity + d``
    (in place; start from zeros) and ``d = velocity``, or ``d + momentum * velocity`` when
    ``nesterov``; then ``param -= lr * d``. ``velocity`` may be None when ``momentum == 0``.
    """
    func = "sgd_update"
    if on_device(param):
        from fastact import cuda

        return cuda.sgd_update(
            param,
            grad,
            velocity,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
    p, g = _param_and_grad(func, param, grad)
    lr = check_param(func, "lr", lr, "nonnegative")
    momentum = check_param(func, "momentum", momentum, "nonnegative")
    weight_decay = check_param(func, "weight_decay", weight_decay, "nonnegative")
    if nesterov and momentum == 0:
        raise ValueError(f"fastact.{func}: nesterov needs momentum > 0")
    if momentum == 0 and velocity is None:
        v = p[:0]
    else:
        v = _state(func, "velocity", velocity, param)
    _apart_in_memory(
        func,
        [
            ("param", param),
            ("grad", grad if isinstance(grad, np.ndarray) else None),
            ("velocity", velocity),
        ],
    )
    dt = param.dtype
    sgd_kernel(
        p,
        g,
        v,
        param_in(func, "lr", lr, "nonnegative", dt),
        param_in(func, "momentum", momentum, "nonnegative", dt),
        param_in(func, "weight_decay", weight_decay, "nonnegative", dt),
        bool(nesterov),
    )


def adam_update(
    param, grad, m, v, step, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0
):
    """One Adam step on ``param``, in place (as ``torch.optim.Adam``, L2 weight decay).

    ``m``, ``v``: the first and second moment estimates (param's shape and dtype, start from
    zeros; updated in place). ``step``: this step's number, 1 for the first (bias correction).
    """
    func = "adam_update"
    if on_device(param):
        from fastact import cuda

        return cuda.adam_update(param, grad, m, v, step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                weight_decay=weight_decay)  # fmt: skip
    p, g = _param_and_grad(func, param, grad)
    m_flat, v_flat = _state(func, "m", m, param), _state(func, "v", v, param)
    _apart_in_memory(
        func,
        [
            ("param", param),
            ("grad", grad if isinstance(grad, np.ndarray) else None),
            ("m", m),
            ("v", v),
        ],
    )
    scalars = _adam_scalars(func, param.dtype, step, lr, beta1, beta2, eps, weight_decay)
    adam_kernel(p, g, m_flat, v_flat, *scalars)


def _adam_scalars(func, dtype, step, lr, beta1, beta2, eps, weight_decay):
    """adam_kernel's scalar arguments after ``fastact.fused.adam_update``'s checks."""
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(
            f"fastact.{func}: step must be an integer >= 1 (the step's number), got {step!r}"
        )
    lr = check_param(func, "lr", lr, "nonnegative")
    eps = check_param(func, "eps", eps, "positive")
    weight_decay = check_param(func, "weight_decay", weight_decay, "nonnegative")
    for name, beta in (("beta1", beta1), ("beta2", beta2)):
        if not 0 <= check_param(func, name, beta, "finite") < 1:
            raise ValueError(f"fastact.{func}: {name} must be in [0, 1), got {beta!r}")
    t = np.dtype(dtype).type
    bias1 = 1.0 - beta1 ** int(step)
    bias2 = 1.0 - beta2 ** int(step)
    return (
        param_in(func, "lr / (1 - beta1^step)", lr / bias1, "nonnegative", dtype),
        t(beta1),
        t(1.0 - beta1),
        t(beta2),
        t(1.0 - beta2),
        param_in(func, "1 / sqrt(1 - beta2^step)", 1.0 / math.sqrt(bias2), "nonnegative", dtype),
        param_in(func, "eps", eps, "positive", dtype),
        param_in(func, "weight_decay", weight_decay, "nonnegative", dtype),
    )
