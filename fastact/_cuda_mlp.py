"""The MLP trainer's steps on the GPU: ``DeviceOps``, the twin of ``fastact.mlp.HostOps``.

Parameters, minibatches, activations and gradients are numba device arrays; every step is one
of fastact's CUDA kernels (``fastact._cuda_kernels`` for bias + activation,
``fastact._cuda_fused`` for the rest); matrix products go through CuPy's cuBLAS when CuPy is
installed (zero-copy views, ``__cuda_array_interface__``), else through fastact's own matmul
kernel. The epoch's statistics (summed loss, correct predictions, per-layer gradient norms)
accumulate on the device: one copy to the host per epoch. Imported only for device='cuda'.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import numpy as np
from numba import cuda

from fastact import _cuda_fused, _cuda_kernels
from fastact.cuda import (
    _grid_1d,
    _grid_2d,
    _grid_columns,
    _grid_tiles,
    _launch_bias_backward,
    _launch_bias_forward,
    _no_squares,
    _prelu_backward_into,
    _softmax_cross_entropy_into,
    dropout_seed,
)


def _cupy():
    """CuPy when installed and usable (FASTACT_CUDA_MATMUL=numba forces fastact's kernel)."""
    if os.environ.get("FASTACT_CUDA_MATMUL", "").lower() == "numba":
        return None
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        return cupy
    except Exception:
        return None


class ParamPack:
    """Every parameter of a network as views of one flat device buffer, and its gradient as
    views of another, each starting on 64 bytes, so that one launch (``sgd_segments``,
    ``adam_segments``) updates them all: a numba launch costs the host tens of microseconds
    (``bench/gpu_host_cost.py``), six or more per step with a launch per parameter. The
    optimizers' states take the same layout (``zeros``, ``views``)."""

    ALIGN = 16  # elements: 64 bytes of float32, 128 of float64

    def __init__(self, params):
        self.dtype = np.dtype(params[0].value.dtype)
        self.shapes = [p.value.shape for p in params]
        starts, stops, end = [], [], 0
        for p in params:
            starts.append(end)
            stops.append(end + p.value.size)
            end = -(-stops[-1] // self.ALIGN) * self.ALIGN
        self.size = end
        self.bounds = list(zip(starts, stops))
        self.largest = max(b - a for a, b in self.bounds)
        self.decays = [p.decay for p in params]
        self.values, self.grads = self.zeros(), self.zeros()
        for p, value, grad in zip(params, self.views(self.values), self.views(self.grads)):
            value.copy_to_device(p.value)
            p.value, p.grad = value, grad
        self._tables: dict[tuple, Any] = {}

    def zeros(self):
        """A flat buffer of zeros for all the parameters."""
        return cuda.to_device(np.zeros(self.size, self.dtype))

    def views(self, flat):
        """Each parameter's part of ``flat``, in its shape."""
        return [flat[a:b].reshape(shape) for (a, b), shape in zip(self.bounds, self.shapes)]

    def table(self, slots):
        """The segment kernels' table (int64, a column per parameter: start, stop, weight
        decay or not, the statistic its sum of squares goes to or -1), a device array made
        once per ``slots``."""
        slots = tuple(slots)
        table = self._tables.get(slots)
        if table is None:
            rows = [*zip(*self.bounds), [int(d) for d in self.decays], slots]
            table = self._tables[slots] = cuda.to_device(np.array(rows, np.int64))
        return table


class DeviceOps:
    """``fastact.mlp.HostOps``'s methods on numba device arrays, but for the optimizers: the
    host updates parameter by parameter (``sgd``, ``adam``), the GPU all of a network's
    parameters in one launch (``pack``, ``sgd_packed``, ``adam_packed``)."""

    device = "cuda"

    def __init__(self):
        self.cupy = _cupy()
        self._buffers: dict[tuple, Any] = {}  # reused device arrays
        self._no_norm = None  # the optimizer's squares when no norm is wanted (empty)
        self._views: dict[tuple, tuple] = {}  # (kind, id(array)) -> (array, its view)
        self._input = None  # a weak reference to the latest batch to predict on

    def _view(self, kind, a):
        """``a`` as a 1-D view (``kind`` "flat") or a CuPy array ("cupy"), the same object
        every step. A launch types each array it is given and numba caches that per array
        object: a fresh ``reshape`` per call costs that typing again (see
        ``bench/gpu_host_cost.py``); CuPy reads the ``__cuda_array_interface__`` of each
        array it is given. Only the arrays that persist are kept: the layers' buffers and
        parameters (the cache is emptied whenever ``empty`` allocates, so that a buffer
        replaced by a larger one is not held, and past 64 entries), not a batch to predict on
        (``input``: a new array each). An entry holds its array: the id stays that array's."""
        if self._input is not None and self._input() is a:
            return a.reshape(a.size) if kind == "flat" else self.cupy.asarray(a)
        key = (kind, id(a))
        entry = self._views.get(key)
        if entry is None:
            if len(self._views) >= 64:
                self._views.clear()
            view = a.reshape(a.size) if kind == "flat" else self.cupy.asarray(a)
            entry = self._views[key] = (a, view)
        return entry[1]

    def _flat(self, a):
        return self._view("flat", a)

    def asarray(self, a):
        return cuda.to_device(np.ascontiguousarray(a))

    def input(self, a):
        """A batch to predict on, copied to the device (not kept by ``_view``)."""
        batch = self.asarray(a)
        self._input = weakref.ref(batch)
        return batch

    def to_host(self, a):
        return a.copy_to_host()

    def empty(self, shape, dtype):
        self._views.clear()  # it may replace a buffer: see _view
        return cuda.device_array(shape, dtype)

    def zeros(self, shape, dtype):
        return cuda.to_device(np.zeros(shape, dtype))

    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        if out.size == 0:
            return out
        if self.cupy is not None:
            cp = self.cupy
            ca, cb = self._view("cupy", a), self._view("cupy", b)
            # on the default stream, as the kernels around it, whatever stream the caller
            # made CuPy's current one (that stream would not wait for them, nor they for it)
            with cp.cuda.Stream.null:
                cp.matmul(ca.T if trans_a else ca, cb.T if trans_b else cb, out=self._view("cupy", out))  # fmt: skip
        else:
            _cuda_fused.matmul[_grid_tiles(*out.shape)](a, b, out, trans_a, trans_b)
        return out

    def add_bias(self, z, bias):
        if z.size:
            _cuda_fused.add_bias[_grid_2d(*z.shape)](z, bias)

    def column_sums(self, g, out):
        if g.shape[1]:
            _cuda_kernels.column_sums[_grid_columns(g.shape[1])](g, out)

    def bias_act(self, act, z, bias, h, saved):
        if z.size:
            kernel = getattr(_cuda_kernels, f"{act.spec.name}_bias_forward")
            _launch_bias_forward(kernel, z, bias, h, saved, (act.a, act.b))

    def bias_act_backward(self, act, g, saved, grad_pre, grad_bias, scratch64):
        cols = g.shape[1]
        if not cols:
            return
        kernel = getattr(_cuda_kernels, f"{act.spec.name}_bias_backward")
        partial = _launch_bias_backward(
            kernel, g, saved, grad_pre, (act.a, act.b), lambda n: self._partial(n, cols)
        )
        _cuda_kernels.column_sums[_grid_columns(cols)](partial, grad_bias)

    def _partial(self, rows, cols):
        key = ("partial", rows, cols)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = cuda.device_array((rows, cols), np.float64)
        return buf

    def prelu(self, z, slope, h):
        if z.size:
            n = z.size
            _cuda_fused.prelu_forward[_grid_1d(n)](
                self._flat(z), slope, self._flat(h), z.shape[1], 1
            )

    def prelu_backward(self, g, z, slope, grad_pre, slope_grad, scratch64):
        n = z.size
        channels = slope.size
        _cuda_fused.zero[_grid_1d(channels)](scratch64)
        if n:
            _prelu_backward_into(
                self._flat(g), self._flat(z), slope, self._flat(grad_pre), scratch64, channels, 1
            )
        _cuda_fused.copy_into[_grid_1d(channels)](scratch64, slope_grad)

    def batch_norm(self, z, gamma, beta, running_mean, running_var, training, xhat, center,
                   inv_std):  # fmt: skip
        from fastact.cuda import _batch_norm_into

        _batch_norm_into(z, gamma, beta, running_mean, running_var, bool(training), 0.1, 1e-5, z,
                         xhat, center, inv_std)  # fmt: skip

    def batch_norm_backward(self, g, xhat, gamma, inv_std, training, dz, dgamma, dbeta):
        from fastact.cuda import _batch_norm_backward_into
        from fastact.fused import BatchNormCache

        cache = BatchNormCache(xhat, gamma, inv_std, bool(training))
        _batch_norm_backward_into(g, cache, dz, dgamma, dbeta)

    def dropout(self, h, p, scale, rng, out, mask):
        n = h.size
        if n:
            t = np.dtype(h.dtype).type
            _cuda_fused.dropout[_grid_1d(n)](
                self._flat(h), dropout_seed(rng), t(p), scale, self._flat(out), self._flat(mask)
            )

    def dropout_backward(self, g, mask, scale, out):
        n = g.size
        if n:
            _cuda_fused.dropout_backward[_grid_1d(n)](
                self._flat(g), self._flat(mask), scale, self._flat(out)
            )

    def pack(self, params):
        """The parameters moved into one flat buffer (see ParamPack)."""
        return ParamPack(params)

    def sgd_packed(self, pack, v, lr, momentum, weight_decay, nesterov, norm_slots):
        """sgd on every parameter of ``pack`` in one launch (``v``: its flat velocity)."""
        _cuda_fused.sgd_segments[_grid_1d(pack.largest)](
            pack.values, pack.grads, v, lr, momentum, weight_decay, nesterov,
            *self._packed_squares(pack, norm_slots),
        )  # fmt: skip

    def adam_packed(self, pack, m, v, scalars, norm_slots):
        """adam on every parameter of ``pack`` in one launch (``scalars``: ``adam``'s eight,
        weight decay last)."""
        _cuda_fused.adam_segments[_grid_1d(pack.largest)](
            pack.values, pack.grads, m, v, *scalars, *self._packed_squares(pack, norm_slots)
        )

    def _packed_squares(self, pack, norm_slots):
        """(table, squares) of the segment kernels: the epoch's statistics where a norm is
        wanted (their slots start at 2: see start_epoch), else an empty array."""
        if norm_slots is not None and any(k >= 0 for k in norm_slots):
            return pack.table(k + 2 if k >= 0 else -1 for k in norm_slots), self._stats
        if self._no_norm is None:
            self._no_norm = _no_squares()[0]
        return pack.table([-1] * len(pack.bounds)), self._no_norm

    # the training loop's data and statistics
    def data(self, X, targets):
        """The training set, copied to the device once."""
        self._order = None
        return self.asarray(X), self.asarray(targets)

    def batch(self, X, targets, order, start, stop):
        if start == 0:  # a new epoch's order: one copy
            self._order = cuda.to_device(np.ascontiguousarray(order, dtype=np.int64))
        rows = stop - start
        x = self._batch_buf("x", (rows, X.shape[1]), X.dtype)
        t = self._batch_buf("t", (rows,), targets.dtype)
        _cuda_fused.gather_batch[_grid_2d(rows, X.shape[1])](X, targets, self._order, start, x, t)
        return x, t

    def _batch_buf(self, name, shape, dtype):
        key = ("batch", name)
        buf = self._buffers.get(key)
        if buf is None or buf.shape[0] < shape[0]:
            buf = self._buffers[key] = cuda.device_array(shape, dtype)
        return buf if buf.shape[0] == shape[0] else buf[: shape[0]]

    def start_epoch(self, n_layers):
        # [summed loss, correct, squared norms (scratch) x n_layers, norms x n_layers]
        self._n_layers = n_layers
        self._stats = cuda.to_device(np.zeros(2 + 2 * n_layers))
        self._unchecked = cuda.to_device(np.zeros(1))  # labels were checked on the host in fit

    def loss(self, logits, y, grad, binary):
        if binary:
            n = logits.size
            _cuda_fused.bce_with_logits[_grid_1d(n)](
                self._flat(logits), y, self._flat(grad), self._stats, self._unchecked
            )
        else:
            _softmax_cross_entropy_into(logits, y, grad, self._stats, self._unchecked)

    def end_step(self, logits, t, binary):
        """The step's statistics in one launch: the batch's correct predictions, and each
        layer's gradient norm, the sqrt of the scratch sum the optimizer kernel left, added to
        the epoch's norms (the scratch slots reset)."""
        rows = logits.shape[0]
        _cuda_fused.end_step[_grid_1d(max(rows, 1))](logits, t, binary, self._stats,
                                                     self._n_layers)  # fmt: skip

    def end_epoch(self):
        stats = self._stats.copy_to_host()
        return float(stats[0]), int(round(stats[1])), stats[2 + self._n_layers :]
