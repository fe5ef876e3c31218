"""PReLU: leaky ReLU with a learned slope per channel (axis 1), as ``torch.nn.functional.prelu``.

The elementwise work is ``activations.leaky_relu`` / ``leaky_relu_grad`` with the channel's
slope; only the layout (channels on axis 1) and the slope's gradient are specific here:
d prelu(x, w) / dw = x where x <= 0, else 0, summed over every axis but the channel axis.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastact import activations as act
from fastact._api import (
    _strong_dtypes,
    as_array,
    contiguous_target,
    finish,
    on_device,
    result_dtypes,
)
from fastact._config import PARALLEL, PARALLEL_THRESHOLD, SCALAR, SERIAL
from fastact._math import wide_vectors


@njit(**SCALAR)
def _forward_row(x3, w, out3, o):
    for c in range(x3.shape[1]):
        slope = w[c]
        for i in range(x3.shape[2]):
            out3[o, c, i] = act.leaky_relu(x3[o, c, i], slope, slope)


@njit(**SERIAL)
def prelu_forward_serial(x3, w, out3):
    wide_vectors()
    for o in range(x3.shape[0]):
        _forward_row(x3, w, out3, o)


@njit(**PARALLEL)
def prelu_forward_parallel(x3, w, out3):
    for o in prange(x3.shape[0]):
        wide_vectors()
        _forward_row(x3, w, out3, o)


@njit(**SCALAR)
def _backward_channel(g3, x3, w, out3, grad_w, c):
    slope = w[c]
    acc = 0.0  # float64 accumulator for the slope's gradient
    zero = act.typed(0.0, slope)
    for o in range(x3.shape[0]):
        for i in range(x3.shape[2]):
            x = x3[o, c, i]
            g = g3[o, c, i]
            out3[o, c, i] = act.leaky_relu_grad(g, x, slope, slope)
            acc += np.float64(zero if x > zero else g * x)
    grad_w[c] = acc


@njit(**SERIAL)
def prelu_backward_serial(g3, x3, w, out3, grad_w):
    wide_vectors()
    for c in range(x3.shape[1]):
        _backward_channel(g3, x3, w, out3, grad_w, c)


@njit(**PARALLEL)
def prelu_backward_parallel(g3, x3, w, out3, grad_w):
    for c in prange(x3.shape[1]):
        wide_vectors()
        _backward_channel(g3, x3, w, out3, grad_w, c)


def _prepare(func, x, weight, dtypes=None):
    """(x as C-contiguous compute array, weight vector, result dtype, 3-D shape); the
    compute and result dtypes from x's, or from ``dtypes`` when given."""
    x = as_array(func, "x", x)
    w = as_array(func, "weight", weight)
    compute, result = result_dtypes(*(dtypes or [x.dtype]))
    channels = x.shape[1] if x.ndim >= 2 else 1
    if w.ndim > 1 or w.size not in (1, channels):
        raise ValueError(
            f"fastact.{func}: weight must be a scalar or a 1-D array of length "
            f"{channels} (x.shape[1], the channel axis), got shape {w.shape}"
        )
    if not np.isfinite(w).all():
        raise ValueError(f"fastact.{func}: weight must be finite")
    with np.errstate(over="ignore"):
        w = np.ascontiguousarray(np.asarray(w, dtype=compute).reshape(-1))
    if not np.isfinite(w).all():
        raise ValueError(
            f"fastact.{func}: weight overflows {compute.name} (the dtype of the computation): "
            f"|weight| must be at most {float(np.finfo(compute).max):.6g}"
        )
    if w.size != channels:
        w = np.full(channels, w[0], dtype=compute)
    outer = x.shape[0] if x.ndim >= 2 else 1
    inner = int(np.prod(x.shape[2:])) if x.ndim >= 2 else x.size
    # np.asarray(order="C") keeps a 0-d x 0-d (np.ascontiguousarray would make it 1-d)
    return np.asarray(x, dtype=compute, order="C"), w, result, (outer, channels, inner)


def prelu(x, weight, out=None):
    """PReLU, elementwise: ``x if x > 0 else weight[c] * x``, c the index on axis 1.

    Parameters
    ----------
    x : array_like
        Input; axis 1 is the channel axis (arrays with fewer than 2 dims have one channel).
    weight : array_like
        The slopes: a scalar, or one per channel (length ``x.shape[1]``), finite.
    out : ndarray, optional
        Where to write the result (x's shape and result dtype).

    Returns
    -------
    ndarray
    """
    if on_device(x):
        from fastact import cuda

        return cuda.prelu(x, weight, out)
    xc, w, result, shape3 = _prepare("prelu", x, weight)
    target = contiguous_target("prelu", out, xc.shape, xc.dtype, result, xc, w)
    kernel = prelu_forward_parallel if xc.size >= PARALLEL_THRESHOLD else prelu_forward_serial
    kernel(xc.reshape(shape3), w, target.reshape(shape3))
    return finish(out, target, result)


def prelu_backward(grad_output, x, weight, out=None):
    """Backward of :func:`prelu`: returns ``(grad_input, grad_weight)``.

    ``grad_input = grad_output * (1 if x > 0 else weight[c])``;
    ``grad_weight[c] = sum of grad_output * x over x <= 0`` in channel c (accumulated in
    float64), with ``weight``'s shape. ``out`` receives ``grad_input``. ``grad_output``
    broadcasts to x's shape; the dtypes promote as in the other backward functions.
    """
    func = "prelu_backward"
    if on_device(x):
        from fastact import cuda

        return cuda.prelu_backward(grad_output, x, weight, out)
    g = as_array(func, "grad_output", grad_output)
    dtypes = _strong_dtypes((grad_output, x), (g.dtype, as_array(func, "x", x).dtype))
    xc, w, result, shape3 = _prepare(func, x, weight, dtypes)
    try:
        g = np.broadcast_to(g, xc.shape)  # grad_output broadcasts to x's shape
    except ValueError:
        raise ValueError(
            f"fastact.{func}: grad_output with shape {g.shape} does not broadcast to x's "
            f"shape {xc.shape}"
        ) from None
    gc = np.asarray(g, dtype=xc.dtype, order="C")
    target = contiguous_target(func, out, xc.shape, xc.dtype, result, xc, gc, w)
    grad_w = np.empty(shape3[1], np.float64)
    kernel = prelu_backward_parallel if xc.size >= PARALLEL_THRESHOLD else prelu_backward_serial
    kernel(gc.reshape(shape3), xc.reshape(shape3), w, target.reshape(shape3), grad_w)
    weight_shape = np.shape(weight)
    with np.errstate(over="ignore"):  # float16 results: beyond its range is inf, no warning
        grad_weight = (
            grad_w.astype(result) if np.size(weight) != 1 else np.asarray(grad_w.sum(), result)
        )
    return finish(out, target, result), grad_weight.reshape(weight_shape)
