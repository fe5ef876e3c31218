"""CUDA kernels of the fused training ops (the twins of ``fastact.fused``) and of the MLP's
device steps. Launched by ``fastact.cuda``; imported only there (it imports numba.cuda).

The arithmetic is the CPU kernels': the same scalar functions (``fastact.activations``,
``fastact._math``), float64 accumulators for every sum over many elements. Grid-stride loops
throughout; 1-D launches use ``fastact.cuda._grid_1d``, 2-D ones ``_grid_2d`` (x along the
columns, so a warp reads consecutive elements of a row). Sums over the whole array (losses,
squared norms) reduce in shared memory per block, then one float64 atomic add per block: their
last bits may vary from run to run (the order of the blocks' additions), as cuBLAS/PyTorch's.
So may prelu's slope gradient (one float64 atomic add per thread and channel).
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda, float64, njit, uint64

from fastact import activations as act
from fastact._config import CUDA_DEVICE, CUDA_MAX_THREADS, SCALAR
from fastact._cuda_kernels import (
    _MAX,
    _SUM,
    _ZERO,
    CUDA_REDUCE_KERNEL,
    _column_strips,
    _column_total,
    _grid_1d_by_four,
    _grid_1d_unsigned,
    _grid_2d_unsigned,
    _tree,
)
from fastact._cuda_launch import CUDA_KERNEL
from fastact._math import exp, log1p, typed
from fastact.fused import adam_step, sgd_step

_M32 = np.uint64(0xFFFFFFFF)
_C1 = np.uint64(0x7FEB352D)
_C2 = np.uint64(0x846CA68B)
_S8 = np.uint64(8)
_S15 = np.uint64(15)
_S16 = np.uint64(16)
_S32 = np.uint64(32)
_TWO_M24 = np.float32(2.0**-24)


# --------------------------------------------------------------------------- helpers
@njit(**SCALAR)
def _mix32(x):
    """A 32-bit integer hash (Wellons' lowbias32) of x < 2^32, kept in uint64: the products
    stay below 2^64, so no step wraps (nor warns under the simulator)."""
    x ^= x >> _S16
    x = (x * _C1) & _M32
    x ^= x >> _S15
    x = (x * _C2) & _M32
    x ^= x >> _S16
    return x


@njit(**SCALAR)
def counter_uniform(seed, i):
    """A uniform number in [0, 1) (a multiple of 2^-24, exact in float32) from a 64-bit seed and
    an element index: a counter-based generator, no state, the same value on any launch shape."""
    k = np.uint64(i)
    h = _mix32((k & _M32) ^ (seed & _M32))
    h = _mix32(h ^ (((k >> _S32) + (seed >> _S32)) & _M32))
    return np.float32(h >> _S8) * _TWO_M24


@cuda.jit(**CUDA_DEVICE)
def _block_sum_add(value, total, index):
    """Adds the sum of ``value`` over this block's threads (1-D or 2-D) to ``total[index]`` (one
    atomic add per block). Every thread of the block must call it."""
    buf = cuda.shared.array(CUDA_MAX_THREADS, float64)
    # unsigned (numba wraps the atomic's index whatever its type)
    t = uint64(cuda.threadIdx.y) * uint64(cuda.blockDim.x) + uint64(cuda.threadIdx.x)
    buf[t] = value
    _tree(buf, t, t, uint64(cuda.blockDim.x) * uint64(cuda.blockDim.y), uint64(1), _SUM)
    if t == uint64(0):
        cuda.atomic.add(total, uint64(index), buf[uint64(0)])


@cuda.jit(**CUDA_DEVICE)
def _row_total(value, largest):
    """The sum (or, if ``largest``, the max) of ``value`` over the blockDim.x threads that share
    a row (threadIdx.y), in a shared-memory tree (_tree); they all get it. Every thread of the
    block calls it (barriers), unless blockDim.x is 1 (one thread per row: ``value`` itself).
    Call it from kernels, not from other device functions: numba-cuda 0.30 links a copy of its
    shared array per calling function, and NVVM rejects two copies of one specialization. Pass
    ``largest`` as _MAX or _SUM (typed, not literal: one compiled copy, one shared array)."""
    width = uint64(cuda.blockDim.x)
    one = uint64(1)
    if width == one:  # uniform in the block: no barrier is skipped by some threads only
        return value
    buf = cuda.shared.array(CUDA_MAX_THREADS, float64)
    x = uint64(cuda.threadIdx.x)
    slot = uint64(cuda.threadIdx.y) * width + x
    buf[slot] = value
    _tree(buf, slot, x, width, one, largest)  # the row's lanes: along x
    total = buf[slot - x]
    cuda.syncthreads()  # buf is free again for the next call
    return total


@cuda.jit(**CUDA_DEVICE)
def _row_max_part(logits, i, live, lowest):
    """The max of this thread's share of row i (``lowest`` where not ``live``): no barrier."""
    cols = uint64(logits.shape[1])
    width = uint64(cuda.blockDim.x)
    m = lowest
    if live:
        j = uint64(cuda.threadIdx.x)
        while j < cols:
            v = logits[i, j]
            m = v if v > m else m
            j += width
    return m


@cuda.jit(**CUDA_DEVICE)
def _row_exp_part(logits, i, live, m, out):
    """out[i, j] = exp(x[i, j] - m) (<= 1: never overflows) over this thread's share of row i,
    and their float64 sum (0 where not ``live``): no barrier."""
    cols = uint64(logits.shape[1])
    width = uint64(cuda.blockDim.x)
    s = _ZERO
    if live:
        j = uint64(cuda.threadIdx.x)
        while j < cols:
            e = exp(logits[i, j] - m)
            out[i, j] = e
            s += e
            j += width
    return s


@cuda.jit(**CUDA_DEVICE)
def _row_groups():
    """(first, step) of the grid-stride loop over row groups: each block takes blockDim.y rows
    at a time (row = first + threadIdx.y), blockDim.x threads per row."""
    per_block = uint64(cuda.blockDim.y)
    return uint64(cuda.blockIdx.x) * per_block, uint64(cuda.gridDim.x) * per_block


# --------------------------------------------------------------------------- softmax and losses
# Launched by fastact.cuda._grid_rows: blockDim.x threads share a row (strided over its
# columns, so a warp reads consecutive elements of a wide row; 1 for few classes: one thread
# per row, no barrier), blockDim.y rows per block. The loops over row groups run the same
# number of times in every thread of a block (the barriers of _row_total).
@cuda.jit(**CUDA_KERNEL)
def softmax(logits, out, lowest):
    """out[i] = exp(x[i] - max x[i]) / sum(...) (the sum in float64); ``lowest``: -inf in
    logits' dtype. out may be logits."""
    rows = uint64(logits.shape[0])
    cols = uint64(logits.shape[1])
    width = uint64(cuda.blockDim.x)
    base, step = _row_groups()
    while base < rows:
        i = base + uint64(cuda.threadIdx.y)
        live = i < rows
        m = typed(_row_total(np.float64(_row_max_part(logits, i, live, lowest)), _MAX), lowest)
        s = _row_total(_row_exp_part(logits, i, live, m, out), _SUM)
        if live:
            inv = typed(1.0 / s, m)
            j = uint64(cuda.threadIdx.x)
            while j < cols:
                out[i, j] *= inv
                j += width
        base += step


@cuda.jit(**CUDA_KERNEL)
def softmax_cross_entropy(logits, labels, grad, total, bad, lowest):
    """total[0] += sum over rows of logsumexp(x[i]) - x[i, label] (float64);
    grad = (softmax - onehot) / rows. A label outside [0, classes) is counted in bad[0] and its
    row skipped (the caller raises). grad may be logits itself. ``lowest``: -inf in logits'
    dtype."""
    rows = uint64(logits.shape[0])
    classes = uint64(logits.shape[1])
    width = uint64(cuda.blockDim.x)
    lane = uint64(cuda.threadIdx.x)
    acc = _ZERO
    wrong = _ZERO
    base, step = _row_groups()
    while base < rows:
        i = base + uint64(cuda.threadIdx.y)
        live = i < rows
        label = labels[i if live else rows - uint64(1)]  # every row's threads read its label
        valid = live and label >= 0 and label < classes
        if live and not valid and lane == 0:
            wrong += 1.0
        c = uint64(label) if valid else uint64(0)  # unsigned: no negative-index wraparound
        x_c = logits[i, c] if valid and lane == 0 else lowest  # read before grad is written
        m = typed(_row_total(np.float64(_row_max_part(logits, i, valid, lowest)), _MAX), lowest)
        s = _row_total(_row_exp_part(logits, i, valid, m, grad), _SUM)
        if valid:
            if lane == 0:
                acc += (np.float64(m) - np.float64(x_c)) + log1p(s - 1.0)
            scale = typed(1.0 / (s * rows), m)
            j = lane
            while j < classes:
                grad[i, j] *= scale
                j += width
            if c % width == lane:  # the thread that owns column c
                grad[i, c] -= typed(1.0 / rows, m)
        base += step
    _block_sum_add(acc, total, 0)
    _block_sum_add(wrong, bad, 0)


@cuda.jit(**CUDA_KERNEL)
def bce_with_logits(logits, targets, grad, total, bad):
    """total[0] += sum of max(x, 0) - t x + log1p(exp(-|x|)) (float64); grad = (sigmoid(x) - t)/n.
    Targets outside [0, 1] (or NaN) are counted in bad[0] (the caller raises)."""
    n = logits.size
    acc = _ZERO
    wrong = _ZERO
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        x = logits[i]
        t = targets[i]
        wrong += 0.0 if (t >= 0 and t <= 1) else 1.0
        xd = np.float64(x)
        acc += (max(xd, 0.0) - xd * np.float64(t)) + log1p(exp(-abs(xd)))
        zero = typed(0.0, x)
        grad[i] = (act.sigmoid(x, zero, zero) - t) * typed(1.0 / n, x)
    _block_sum_add(acc, total, 0)
    _block_sum_add(wrong, bad, 0)


@cuda.jit(**CUDA_KERNEL)
def count_bad_labels(labels, classes, bad):
    """bad[0] += the labels outside [0, classes): read before a loss writes into ``out``
    (which may be the logits), so that a bad label leaves it untouched."""
    wrong = _ZERO
    i0, s = _grid_1d_unsigned()
    for i in range(i0, uint64(labels.size), s):
        label = labels[i]
        wrong += 0.0 if (label >= 0 and label < classes) else 1.0
    _block_sum_add(wrong, bad, 0)


@cuda.jit(**CUDA_KERNEL)
def count_bad_targets(targets, bad):
    """bad[0] += the targets outside [0, 1] or NaN (as count_bad_labels, for bce_with_logits)."""
    wrong = _ZERO
    i0, s = _grid_1d_unsigned()
    for i in range(i0, uint64(targets.size), s):
        t = targets[i]
        wrong += 0.0 if (t >= 0 and t <= 1) else 1.0
    _block_sum_add(wrong, bad, 0)


# --------------------------------------------------------------------------- dropout
@cuda.jit(**CUDA_DEVICE)
def _four(a, i, s, s2, s3):
    """a[i], a[i + s], a[i + s2], a[i + s3]: four loads issued together, before the caller's
    stores (which the compiler may not move them past: out may be an input)."""
    return a[i], a[i + s], a[i + s2], a[i + s3]


@cuda.jit(**CUDA_DEVICE)
def _drop(x, i, seed, p, scale, y, mask):
    """mask[i] = counter_uniform(seed, i) >= p; y[i] = x * scale where kept, else 0 (a select:
    no branch around a load)."""
    keep = counter_uniform(seed, i) >= p
    mask[i] = keep
    y[i] = x * scale if keep else typed(0.0, scale)


@cuda.jit(**CUDA_KERNEL)
def dropout(x, seed, p, scale, y, mask):
    """Keep x[i] (times scale) where counter_uniform(seed, i) >= p (y may be x)."""
    n = uint64(x.size)
    i, s, s2, s3 = _grid_1d_by_four()
    while i + s3 < n:  # four loads in flight per thread, before any store (as the activations)
        x0, x1, x2, x3 = _four(x, i, s, s2, s3)
        _drop(x0, i, seed, p, scale, y, mask)
        _drop(x1, i + s, seed, p, scale, y, mask)
        _drop(x2, i + s2, seed, p, scale, y, mask)
        _drop(x3, i + s3, seed, p, scale, y, mask)
        i += s3 + s
    while i < n:
        _drop(x[i], i, seed, p, scale, y, mask)
        i += s


@cuda.jit(**CUDA_KERNEL)
def dropout_backward(g, mask, scale, out):
    """out[i] = g[i] * scale where mask[i], else 0 (out may be g); both read before any store,
    four elements in flight per thread."""
    zero = typed(0.0, scale)
    n = uint64(g.size)
    i, s, s2, s3 = _grid_1d_by_four()
    while i + s3 < n:
        g0, g1, g2, g3 = _four(g, i, s, s2, s3)
        m0, m1, m2, m3 = _four(mask, i, s, s2, s3)
        out[i] = g0 * scale if m0 else zero
        out[i + s] = g1 * scale if m1 else zero
        out[i + s2] = g2 * scale if m2 else zero
        out[i + s3] = g3 * scale if m3 else zero
        i += s3 + s
    while i < n:
        gi = g[i]
        out[i] = gi * scale if mask[i] else zero
        i += s


# --------------------------------------------------------------------------- batch norm
@cuda.jit(**CUDA_DEVICE)
def _column_shift(x, j):
    """The shift of column j's one-pass moments: its first value (float64), or 0 where that is
    inf or NaN (the statistics are then inf or NaN, as the CPU's two-pass ones). Not as the
    CPU: float64 values ~1e154 or more from the first one overflow the sum of squares, and
    var = (S2 - S1 S1/n)/n is then inf - inf = NaN (the CPU's stays finite to ~1e154 from the
    mean)."""
    c = np.float64(x[uint64(0), j])
    return c if math.isfinite(c) else _ZERO


@cuda.jit(**CUDA_KERNEL)
def batch_norm_moments(x, partial_sum, partial_squares):
    """partial_sum[r, j] and partial_squares[r, j] = the float64 sums of d and d^2 over the rows
    r, r + si, ... of column j, d = x - _column_shift(x, j): the first stage of the batch
    statistics in one pass over x, on a 2-D grid (x along the columns, y over row blocks), four
    rows' loads in flight per thread. Shifting by a value of the column bounds the cancellation
    of var = S2/n - (S1/n)^2: (mean - shift)^2 <= n var, so its relative error is at most
    about 1 + 3n times the sums' own (in practice (mean - shift)^2 is of the order of var)."""
    j0, i0, sj, si = _grid_2d_unsigned()
    si2 = si + si
    si3 = si2 + si
    rows = uint64(x.shape[0])
    for j in range(j0, uint64(x.shape[1]), sj):
        c = _column_shift(x, j)
        s1 = _ZERO
        s2 = _ZERO
        i = i0
        while i + si3 < rows:
            x0, x1, x2, x3 = x[i, j], x[i + si, j], x[i + si2, j], x[i + si3, j]
            d0, d1, d2, d3 = x0 - c, x1 - c, x2 - c, x3 - c
            s1 += d0
            s2 += d0 * d0
            s1 += d1
            s2 += d1 * d1
            s1 += d2
            s2 += d2 * d2
            s1 += d3
            s2 += d3 * d3
            i += si3 + si
        while i < rows:
            d = x[i, j] - c
            s1 += d
            s2 += d * d
            i += si
        partial_sum[i0, j] = s1
        partial_squares[i0, j] = s2


@cuda.jit(**CUDA_REDUCE_KERNEL)
def batch_norm_stats(x, partial_sum, partial_squares, n, running_mean, running_var, training,
                     momentum, eps, center, inv_std):  # fmt: skip
    """Per column: training, the mean and biased variance from batch_norm_moments' partial sums
    (added in float64: S1, S2; mean = shift + S1/n, var = (S2 - S1 S1/n)/n, a rounding below 0
    taken as 0) and the running statistics updated; else the running statistics.
    center = mean and inv_std = 1 / sqrt(var + eps), in x's dtype. Launch:
    fastact.cuda._grid_columns."""
    start, stop, step = _column_strips(center.size)
    for first in range(start, stop, step):
        j = first + uint64(cuda.threadIdx.x)
        # every thread, past the columns too (training is the same for all)
        s1 = _column_total(partial_sum, j) if training else _ZERO
        s2 = _column_total(partial_squares, j) if training else _ZERO
        if cuda.threadIdx.y != 0 or j >= stop:
            continue
        if training:
            d = s1 / n
            m = _column_shift(x, j) + d
            var = (s2 - s1 * d) / n
            var = _ZERO if var < 0.0 else var  # (NaN stays NaN)
            keep = 1.0 - momentum
            running_mean[j] = keep * running_mean[j] + momentum * m
            running_var[j] = keep * running_var[j] + momentum * (var * (n / (n - 1.0)))
        else:
            m = np.float64(running_mean[j])
            var = np.float64(running_var[j])
        inv_std[j] = 1.0 / math.sqrt(var + eps)
        center[j] = m


@cuda.jit(**CUDA_KERNEL)
def batch_norm_apply(x, gamma, beta, center, inv_std, y, xhat):
    """xhat = (x - center) * inv_std; y = gamma xhat + beta (y may be x). Four rows' loads in
    flight per thread, before their stores (as the generated bias kernels)."""
    j0, i0, sj, si = _grid_2d_unsigned()
    si2 = si + si
    si3 = si2 + si
    rows = uint64(x.shape[0])
    for j in range(j0, uint64(x.shape[1]), sj):
        c, s, gj, bj = center[j], inv_std[j], gamma[j], beta[j]
        i = i0
        while i + si3 < rows:
            x0, x1, x2, x3 = x[i, j], x[i + si, j], x[i + si2, j], x[i + si3, j]
            _normalize(x0, c, s, gj, bj, i, j, y, xhat)
            _normalize(x1, c, s, gj, bj, i + si, j, y, xhat)
            _normalize(x2, c, s, gj, bj, i + si2, j, y, xhat)
            _normalize(x3, c, s, gj, bj, i + si3, j, y, xhat)
            i += si3 + si
        while i < rows:
            _normalize(x[i, j], c, s, gj, bj, i, j, y, xhat)
            i += si


@cuda.jit(**CUDA_DEVICE)
def _normalize(x, c, s, gj, bj, i, j, y, xhat):
    h = (x - c) * s
    xhat[i, j] = h
    y[i, j] = gj * h + bj


@cuda.jit(**CUDA_KERNEL)
def batch_norm_backward_partials(g, xhat, partial_g, partial_gx):
    """Row-block partial sums (float64) of g and g xhat per column (2-D grid, as
    batch_norm_moments)."""
    j0, i0, sj, si = _grid_2d_unsigned()
    for j in range(j0, uint64(g.shape[1]), sj):
        sg = _ZERO
        sgx = _ZERO
        for i in range(i0, uint64(g.shape[0]), si):
            sg += g[i, j]
            sgx += g[i, j] * xhat[i, j]
        partial_g[i0, j] = sg
        partial_gx[i0, j] = sgx


@cuda.jit(**CUDA_REDUCE_KERNEL)
def batch_norm_backward_sums(partial_g, partial_gx, n, gamma, inv_std, training, dgamma, dbeta,
                             k, c1, c2):  # fmt: skip
    """Per column: dbeta = sum g, dgamma = sum g xhat (the partials added in float64); the
    coefficients of dx = k (g - c1 - xhat c2): k = gamma inv_std, c1 = mean g, c2 = mean g
    xhat (training; 0 with fixed statistics). Launch: fastact.cuda._grid_columns."""
    start, stop, step = _column_strips(dbeta.size)
    for first in range(start, stop, step):
        j = first + uint64(cuda.threadIdx.x)
        sg = _column_total(partial_g, j)  # every thread, past the columns too
        sgx = _column_total(partial_gx, j)
        if cuda.threadIdx.y != 0 or j >= stop:
            continue
        dbeta[j] = sg
        dgamma[j] = sgx
        k[j] = gamma[j] * inv_std[j]
        c1[j] = sg / n if training else 0.0
        c2[j] = sgx / n if training else 0.0


@cuda.jit(**CUDA_KERNEL)
def batch_norm_backward_apply(g, xhat, k, c1, c2, dx):
    """dx = k (g - c1 - xhat c2), per column's coefficients; four rows in flight per thread."""
    j0, i0, sj, si = _grid_2d_unsigned()
    si2 = si + si
    si3 = si2 + si
    rows = uint64(g.shape[0])
    for j in range(j0, uint64(g.shape[1]), sj):
        kj, c1j, c2j = k[j], c1[j], c2[j]
        i = i0
        while i + si3 < rows:
            g0, g1, g2, g3 = g[i, j], g[i + si, j], g[i + si2, j], g[i + si3, j]
            h0, h1, h2, h3 = xhat[i, j], xhat[i + si, j], xhat[i + si2, j], xhat[i + si3, j]
            dx[i, j] = kj * (g0 - c1j - h0 * c2j)
            dx[i + si, j] = kj * (g1 - c1j - h1 * c2j)
            dx[i + si2, j] = kj * (g2 - c1j - h2 * c2j)
            dx[i + si3, j] = kj * (g3 - c1j - h3 * c2j)
            i += si3 + si
        while i < rows:
            dx[i, j] = kj * (g[i, j] - c1j - xhat[i, j] * c2j)
            i += si


# --------------------------------------------------------------------------- optimizers
@cuda.jit(**CUDA_DEVICE)
def _sgd_store(p, v, i, pi, gi, vi, lr, momentum, weight_decay, nesterov):
    if momentum != 0:
        p[i], v[i] = sgd_step(pi, gi, vi, lr, momentum, weight_decay, nesterov)
    else:
        p[i] = sgd_step(pi, gi, vi, lr, momentum, weight_decay, False)[0]


@njit(**SCALAR)
def _squares(a, b, c, d):
    """a^2 + b^2 + c^2 + d^2 in float64, added in that order."""
    s = np.float64(a) * np.float64(a)
    s += np.float64(b) * np.float64(b)
    s += np.float64(c) * np.float64(c)
    return s + np.float64(d) * np.float64(d)


@cuda.jit(**CUDA_DEVICE)
def _sgd_range(p, g, v, start, stop, lr, momentum, weight_decay, nesterov, norm):
    """fastact.fused.sgd_step over this thread's share of p[start:stop] (v neither read nor
    written without momentum), four elements' loads in flight, before their stores. Returns
    the thread's float64 sum of g^2 if ``norm``, else 0."""
    zero = typed(0.0, lr)
    acc = _ZERO
    i, s, s2, s3 = _grid_1d_by_four()
    i += start
    while i + s3 < stop:
        p0, p1, p2, p3 = _four(p, i, s, s2, s3)
        g0, g1, g2, g3 = _four(g, i, s, s2, s3)
        v0 = v1 = v2 = v3 = zero
        if momentum != 0:
            v0, v1, v2, v3 = _four(v, i, s, s2, s3)
        if norm:
            acc += _squares(g0, g1, g2, g3)
        _sgd_store(p, v, i, p0, g0, v0, lr, momentum, weight_decay, nesterov)
        _sgd_store(p, v, i + s, p1, g1, v1, lr, momentum, weight_decay, nesterov)
        _sgd_store(p, v, i + s2, p2, g2, v2, lr, momentum, weight_decay, nesterov)
        _sgd_store(p, v, i + s3, p3, g3, v3, lr, momentum, weight_decay, nesterov)
        i += s3 + s
    while i < stop:
        gi = g[i]
        vi = v[i] if momentum != 0 else zero
        if norm:
            acc += np.float64(gi) * np.float64(gi)
        _sgd_store(p, v, i, p[i], gi, vi, lr, momentum, weight_decay, nesterov)
        i += s
    return acc


@cuda.jit(**CUDA_KERNEL)
def sgd(p, g, v, lr, momentum, weight_decay, nesterov, squares, slot):
    """fastact.fused.sgd_step over a parameter (v may be empty without momentum).
    slot >= 0: squares[slot] += the sum of g^2 (float64; the MLP's gradient-norm statistic,
    as the CPU kernel's return value), else squares is not touched (it may be empty)."""
    norm = slot >= 0
    acc = _sgd_range(p, g, v, uint64(0), uint64(p.size), lr, momentum, weight_decay, nesterov, norm)
    if norm:  # the same for every thread: the block sum's barriers
        _block_sum_add(acc, squares, slot)


@cuda.jit(**CUDA_DEVICE)
def _block_past(start, stop):
    """True when this block has no element of [start, stop) in a 1-D grid-stride loop from
    start (its first index, start + blockIdx.x * blockDim.x, is past stop): the same for every
    thread of the block, so the block may skip the segment, barriers and all."""
    first = uint64(start) + uint64(cuda.blockIdx.x) * uint64(cuda.blockDim.x)
    return first >= uint64(stop)


@cuda.jit(**CUDA_KERNEL)
def sgd_segments(p, g, v, lr, momentum, weight_decay, nesterov, segments, squares):
    """sgd over segments of flat buffers, every parameter of a network in one launch
    (fastact._cuda_mlp.ParamPack). Segment k (a column of the int64 table ``segments``:
    start, stop, decay, slot) is p[start:stop], with weight decay where decay != 0, and
    squares[slot] += its sum of g^2 where slot >= 0. (One table: a launch costs the host
    microseconds per array argument.)"""
    zero = typed(0.0, lr)
    for k in range(segments.shape[1]):
        start, stop, decayed, slot = segments[0, k], segments[1, k], segments[2, k], segments[3, k]
        if _block_past(start, stop):  # the grid is sized for the largest segment
            continue
        decay = weight_decay if decayed != 0 else zero
        norm = slot >= 0  # the same for every thread of the block, as k
        acc = _sgd_range(p, g, v, uint64(start), uint64(stop), lr, momentum, decay, nesterov, norm)
        if norm:
            _block_sum_add(acc, squares, slot)


@cuda.jit(**CUDA_DEVICE)
def _adam_store(p, m, v, i, pi, gi, mi, vi, h):
    """p[i], m[i], v[i] = adam_step(pi, gi, mi, vi, *h) (h: the step's scalars)."""
    step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bias2, eps, decay = h
    p[i], m[i], v[i] = adam_step(
        pi, gi, mi, vi, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bias2, eps, decay
    )  # fmt: skip


@cuda.jit(**CUDA_DEVICE)
def _adam_range(p, g, m, v, start, stop, h, norm):
    """fastact.fused.adam_step over this thread's share of p[start:stop] (h: the step's
    scalars), four elements' loads in flight, before their stores. Returns the thread's
    float64 sum of g^2 if ``norm``, else 0."""
    acc = _ZERO
    i, s, s2, s3 = _grid_1d_by_four()
    i += start
    while i + s3 < stop:
        p0, p1, p2, p3 = _four(p, i, s, s2, s3)
        g0, g1, g2, g3 = _four(g, i, s, s2, s3)
        m0, m1, m2, m3 = _four(m, i, s, s2, s3)
        v0, v1, v2, v3 = _four(v, i, s, s2, s3)
        if norm:
            acc += _squares(g0, g1, g2, g3)
        _adam_store(p, m, v, i, p0, g0, m0, v0, h)
        _adam_store(p, m, v, i + s, p1, g1, m1, v1, h)
        _adam_store(p, m, v, i + s2, p2, g2, m2, v2, h)
        _adam_store(p, m, v, i + s3, p3, g3, m3, v3, h)
        i += s3 + s
    while i < stop:
        gi = g[i]
        if norm:
            acc += np.float64(gi) * np.float64(gi)
        _adam_store(p, m, v, i, p[i], gi, m[i], v[i], h)
        i += s
    return acc


@cuda.jit(**CUDA_KERNEL)
def adam(p, g, m, v, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bias2, eps, weight_decay, squares, slot):  # fmt: skip
    """fastact.fused.adam_step over a parameter. squares, slot: as sgd's."""
    h = (step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bias2, eps, weight_decay)  # fmt: skip
    norm = slot >= 0
    acc = _adam_range(p, g, m, v, uint64(0), uint64(p.size), h, norm)
    if norm:  # the same for every thread: the block sum's barriers
        _block_sum_add(acc, squares, slot)


@cuda.jit(**CUDA_KERNEL)
def adam_segments(p, g, m, v, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bias2, eps, weight_decay, segments, squares):  # fmt: skip
    """adam over segments of flat buffers in one launch: segments and squares as
    sgd_segments'."""
    zero = typed(0.0, eps)
    for k in range(segments.shape[1]):
        start, stop, decayed, slot = segments[0, k], segments[1, k], segments[2, k], segments[3, k]
        if _block_past(start, stop):
            continue
        decay = weight_decay if decayed != 0 else zero
        h = (step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bias2, eps, decay)  # fmt: skip
        norm = slot >= 0
        acc = _adam_range(p, g, m, v, uint64(start), uint64(stop), h, norm)
        if norm:
            _block_sum_add(acc, squares, slot)


# --------------------------------------------------------------------------- prelu
@cuda.jit(**CUDA_KERNEL)
def prelu_forward(x, w, out, channels, inner):
    """out = leaky_relu(x, w[c]), c = (i // inner) % channels (axis 1 of the C-order array)."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        slope = w[(i // inner) % channels]
        out[i] = act.leaky_relu(x[i], slope, slope)


@cuda.jit(**CUDA_KERNEL)
def prelu_backward(g, x, w, out, grad_w, channels, inner):
    """out = leaky_relu_grad(g, x, w[c]); grad_w[c] += sum of g x over x <= 0 (float64).
    Grid: y over channels, x over parts of a channel's outer * inner elements; each thread
    adds its part with an atomic add, in an order that may change the last bits run to run."""
    part, c0 = cuda.grid(2)
    parts, sc = cuda.gridsize(2)
    per_channel = x.size // channels if channels else 0
    for c in range(c0, channels, sc):
        slope = w[c]
        zero = typed(0.0, slope)
        acc = _ZERO
        for t in range(part, per_channel, parts):
            i = ((t // inner) * channels + c) * inner + t % inner
            xi = x[i]
            gi = g[i]  # read once: out may be g itself
            out[i] = act.leaky_relu_grad(gi, xi, slope, slope)
            acc += np.float64(zero if xi > zero else gi * xi)
        cuda.atomic.add(grad_w, c, acc)


# --------------------------------------------------------------------------- the MLP's steps
#: The matmul kernel's tiles of c: MATMUL_TILE x MATMUL_TILE elements per block of
#: MATMUL_TILE x MATMUL_TILE // 4 threads (four rows each). 4 under the simulator, whose
#: threads are Python threads (the same code, more tiles per matrix).
MATMUL_TILE = 32 if not config.ENABLE_CUDASIM else 4  # type: ignore[attr-defined]
_PADDED = MATMUL_TILE + 1  # a row of a staged slab: a column's elements in different banks
_TILE = np.uint64(MATMUL_TILE)  # unsigned, as the indices (no wraparound code per access)
_QUARTER = np.uint64(MATMUL_TILE // 4)
_U2, _U3 = np.uint64(2), np.uint64(3)


@cuda.jit(**CUDA_KERNEL)
def matmul(a, b, c, trans_a, trans_b):
    """c = op(a) @ op(b), op the transpose where asked, summed in c's dtype in the order of the
    inner index. The fallback without CuPy's cuBLAS. Blocks of MATMUL_TILE x MATMUL_TILE / 4
    threads take tiles of c (grid-stride over the tiles; launch: fastact.cuda._grid_tiles):
    each thread four rows of one column. The tile's slabs of op(a) and op(b), MATMUL_TILE of
    the inner index at a time, are staged in shared memory, read with consecutive threads on
    consecutive addresses whatever the transposition (a warp reads 128 contiguous bytes of a
    row, where one thread per element of c read a[k, i] or b[j, k] with a row's stride
    between threads), and each staged value serves MATMUL_TILE products."""
    sa = cuda.shared.array((MATMUL_TILE, _PADDED), c.dtype)  # op(a)[i, k]
    sb = cuda.shared.array((MATMUL_TILE, _PADDED), c.dtype)  # op(b)[k, j]
    tx, ty = uint64(cuda.threadIdx.x), uint64(cuda.threadIdx.y)
    rows, cols = uint64(c.shape[0]), uint64(c.shape[1])
    depth = uint64(a.shape[0] if trans_a else a.shape[1])
    zero = typed(0.0, sa[0, 0])  # c's dtype (c itself may be empty)
    for ti in range(uint64(cuda.blockIdx.y) * _TILE, rows, uint64(cuda.gridDim.y) * _TILE):
        for tj in range(uint64(cuda.blockIdx.x) * _TILE, cols, uint64(cuda.gridDim.x) * _TILE):
            acc0 = acc1 = acc2 = acc3 = zero
            for k0 in range(uint64(0), depth, _TILE):
                for r in range(ty, _TILE, _QUARTER):  # stage the slabs, zeros outside
                    if trans_a:  # op(a)[ti + tx, k0 + r] = a[k0 + r, ti + tx]
                        i, k = ti + tx, k0 + r
                        sa[tx, r] = a[k, i] if i < rows and k < depth else zero
                    else:
                        i, k = ti + r, k0 + tx
                        sa[r, tx] = a[i, k] if i < rows and k < depth else zero
                    if trans_b:  # op(b)[k0 + tx, tj + r] = b[tj + r, k0 + tx]
                        k, j = k0 + tx, tj + r
                        sb[tx, r] = b[j, k] if k < depth and j < cols else zero
                    else:
                        k, j = k0 + r, tj + tx
                        sb[r, tx] = b[k, j] if k < depth and j < cols else zero
                cuda.syncthreads()
                for q in range(min(_TILE, depth - k0)):
                    bq = sb[q, tx]
                    acc0 += sa[ty, q] * bq
                    acc1 += sa[ty + _QUARTER, q] * bq
                    acc2 += sa[ty + _U2 * _QUARTER, q] * bq
                    acc3 += sa[ty + _U3 * _QUARTER, q] * bq
                cuda.syncthreads()  # the slabs are overwritten next
            j = tj + tx
            if j < cols:
                i = ti + ty
                if i < rows:
                    c[i, j] = acc0
                if i + _QUARTER < rows:
                    c[i + _QUARTER, j] = acc1
                if i + _U2 * _QUARTER < rows:
                    c[i + _U2 * _QUARTER, j] = acc2
                if i + _U3 * _QUARTER < rows:
                    c[i + _U3 * _QUARTER, j] = acc3


@cuda.jit(**CUDA_KERNEL)
def gather_batch(X, targets, order, start, x, t):
    """x[r] = X[order[start + r]] and t[r] = targets[order[start + r]] for the rows of x (a
    minibatch; the threads of the grid's first column copy the targets)."""
    j0, i0 = cuda.grid(2)
    sj, si = cuda.gridsize(2)
    for i in range(i0, x.shape[0], si):
        row = order[start + i]
        if j0 == 0:
            t[i] = targets[row]
        for j in range(j0, x.shape[1], sj):
            x[i, j] = X[row, j]


@cuda.jit(**CUDA_KERNEL)
def add_bias(z, bias):
    """z += bias, in place, on a (rows, columns) array."""
    j0, i0, sj, si = _grid_2d_unsigned()
    for j in range(j0, uint64(z.shape[1]), sj):
        bj = bias[j]
        for i in range(i0, uint64(z.shape[0]), si):
            z[i, j] += bj


@cuda.jit(**CUDA_KERNEL)
def copy_into(src, out):
    """out[i] = src[i], converted to out's dtype."""
    i0, s = _grid_1d_unsigned()
    for i in range(i0, uint64(out.size), s):
        out[i] = src[i]


@cuda.jit(**CUDA_KERNEL)
def zero(out):
    i0, s = _grid_1d_unsigned()
    for i in range(i0, uint64(out.size), s):
        out[i] = 0


@cuda.jit(**CUDA_KERNEL)
def end_step(logits, targets, binary, stats, layers):
    """The MLP's per-step statistics, in ``stats`` = [summed loss, correct, the step's sums of
    squares x layers, the epoch's norms x layers]: adds the rows of the batch whose prediction
    matches (binary: logit > 0 vs target > 0.5; else argmax, the first maximum, vs the class
    index) to ``stats[1]``, and each layer's sqrt(sum of squares) (that sgd/adam left) to its
    norm, the sums reset to 0 for the next step (one thread)."""
    acc = _ZERO
    for i in range(cuda.grid(1), logits.shape[0], cuda.gridsize(1)):
        if binary:
            hit = (logits[i, 0] > 0) == (targets[i] > 0.5)
        else:
            best = 0
            for j in range(1, logits.shape[1]):
                if logits[i, j] > logits[i, best]:
                    best = j
            hit = best == targets[i]
        acc += 1.0 if hit else 0.0
    _block_sum_add(acc, stats, 1)
    if cuda.grid(1) == 0:
        for k in range(layers):
            stats[2 + layers + k] += math.sqrt(stats[2 + k])
            stats[2 + k] = 0.0
