"""A small multi-layer perceptron classifier on fastact's fused kernels.

    >>> from fastact.mlp import MLP
    >>> clf = MLP(hidden_sizes=(64,), activation="relu", epochs=20, seed=0).fit(X, y)
    >>> clf.score(X_test, y_test)

Matrix products go through NumPy (BLAS); everything around them is one fused fastact kernel:
bias + activation (forward and backward with the bias gradient), batch norm, dropout, the
loss with its gradient, the optimizer step. No autograd: each layer knows its backward.

* ``Dense``: ``x @ W``, [batch norm], ``activation(. + b)``, [dropout]; the last layer
  (no activation) gives the logits.
* ``Network``: the layers, the loss (sigmoid + binary cross-entropy for two classes, softmax
  cross-entropy for more) and the backward pass.
* ``SGD``, ``Adam``: in-place updates of every parameter.
* ``MLP``: the scikit-learn-style estimator (``fit``, ``partial_fit``, ``predict``,
  ``predict_proba``, ``score``).

Threads: the trainer runs every fastact kernel single-threaded and leaves the cores to BLAS.
numba's OpenMP thread pool next to OpenBLAS's threads makes the two pools spin against each
other on few cores (measured in docs/mlp.md); the single-threaded kernels never start it.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np
from numba import njit, prange

from fastact import _kernels, _prelu, fused
from fastact._api import as_array, on_device, param_in
from fastact._config import PARALLEL, SERIAL
from fastact._math import wide_vectors
from fastact.activations import ACTIVATIONS

__all__ = ["MLP", "Network", "Dense", "SGD", "Adam"]

#: The trainer's fused bias+activation kernels are the single-threaded ones. Only for the
#: measurement in docs/mlp.md: False selects the multi-threaded (numba prange) kernels.
SERIAL_KERNELS = True

#: activations initialized with Glorot under init='auto' (saturating, centred around 0)
GLOROT_ACTIVATIONS = frozenset(
    {"sigmoid", "tanh", "log_sigmoid", "softplus", "hard_sigmoid", "hard_tanh"}
)
INITS = ("auto", "glorot", "he", "normal")
OPTIMIZERS = ("sgd", "adam")


@njit(**PARALLEL)
def all_finite(x):
    """True when no element of the 1-D float array is NaN or infinite (x - x is 0 for finite
    x, NaN otherwise); one vectorized pass, ~7x faster than np.isfinite(x).all(). Threaded
    (23 -> 13 ms for 60,000 x 784 float32 on 2 cores): it runs before the matrix products, not
    between them."""
    bad = 0
    for i in prange(x.size):
        wide_vectors()
        d = x[i] - x[i]
        bad += 1 if d != d else 0
    return bad == 0


@njit(**SERIAL)
def gather_rows(X, targets, order, start, x, t):
    """x[r] = X[order[start + r]], t[r] = targets[order[start + r]] (a minibatch)."""
    wide_vectors()
    for r in range(x.shape[0]):
        i = order[start + r]
        t[r] = targets[i]
        for j in range(X.shape[1]):
            x[r, j] = X[i, j]


@njit(**SERIAL)
def count_correct(logits, targets, binary):
    """Rows of logits that predict their target: binary (one logit), logit > 0 vs target >
    0.5; else the first maximum's index vs the class index (as the CUDA twin,
    ``fastact._cuda_fused.end_step``: the simulator cannot share a function taking arrays)."""
    wide_vectors()
    hits = 0
    for i in range(logits.shape[0]):
        if binary:
            hit = (logits[i, 0] > 0) == (targets[i] > 0.5)
        else:
            best = 0
            for j in range(1, logits.shape[1]):
                if logits[i, j] > logits[i, best]:
                    best = j
            hit = best == targets[i]
        hits += 1 if hit else 0
    return hits


@njit(**SERIAL)
def column_sums(g, out):
    """out[j] = sum of g[:, j], summed in float64 (a bias gradient)."""
    wide_vectors()
    total = np.zeros(g.shape[1])
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            total[j] += g[i, j]
    for j in range(g.shape[1]):
        out[j] = total[j]


def activation_names() -> list[str]:
    """The hidden-layer activations the MLP accepts: the registry's names, and 'prelu'."""
    return list(ACTIVATIONS) + ["prelu"]


class Param:
    """A trainable array, its gradient, and whether weight decay applies to it."""

    __slots__ = ("value", "grad", "decay")

    def __init__(self, value, decay: bool, ops=None):
        ops = ops or HOST
        self.value = ops.asarray(value)
        self.grad = ops.zeros(value.shape, value.dtype)
        self.decay = decay


#: Start address alignment of the trainer's arrays: one AVX-512 vector, one cache line.
ALIGNMENT = 64


def aligned_empty(shape, dtype):
    """np.empty(shape, dtype) starting on an ``ALIGNMENT``-byte boundary. NumPy aligns large
    arrays to 16 bytes only, so each 64-byte vector load or store of a kernel straddled two
    cache lines: the fused bias+ReLU kernel on 128 x 256 float32 took 9.1 us, 6.2 us
    aligned (bias+ReLU backward 12.2 -> 8.4 us)."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


class HostOps:
    """The trainer's steps on NumPy arrays: NumPy's BLAS for the matrix products, fastact's
    single-threaded CPU kernels for the rest. ``fastact._cuda_mlp.DeviceOps`` is the GPU twin
    (same methods, device arrays). Every array it makes is 64-byte aligned
    (``aligned_empty``)."""

    device = "cpu"

    def input(self, a):
        """A batch to predict on, where the network reads it: ``a`` itself (no copy)."""
        return a

    def pack(self, params):
        """None: the host's optimizers call their kernel per parameter (a call costs ~1 us;
        the GPU's DeviceOps packs the parameters so that one launch updates them all)."""
        return None

    def asarray(self, a):
        """Where the trainer keeps an array (parameters, statistics): ``a`` itself when it is
        C-contiguous and aligned, else an aligned copy."""
        if a.flags.c_contiguous and a.ctypes.data % ALIGNMENT == 0:
            return a
        out = aligned_empty(a.shape, a.dtype)
        out[...] = a
        return out

    def to_host(self, a):
        return a

    def empty(self, shape, dtype):
        return aligned_empty(shape, dtype)

    def zeros(self, shape, dtype):
        out = aligned_empty(shape, dtype)
        out.fill(0)
        return out

    def matmul(self, a, b, out, trans_a=False, trans_b=False):
        return np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)

    def add_bias(self, z, bias):
        np.add(z, bias, out=z)

    def column_sums(self, g, out):
        column_sums(g, out)

    def bias_act(self, act, z, bias, h, saved):
        act.forward(z, bias, h, saved)

    def bias_act_backward(self, act, g, saved, grad_pre, grad_bias, scratch64):
        act.backward(g, saved, grad_pre, scratch64)
        grad_bias[:] = scratch64

    def prelu(self, z, slope, h):
        _prelu.prelu_forward_serial(z[:, :, None], slope, h[:, :, None])

    def prelu_backward(self, g, z, slope, grad_pre, slope_grad, scratch64):
        _prelu.prelu_backward_serial(
            g[:, :, None], z[:, :, None], slope, grad_pre[:, :, None], scratch64
        )
        slope_grad[:] = scratch64

    def batch_norm(self, z, gamma, beta, running_mean, running_var, training, xhat, center,
                   inv_std):  # fmt: skip
        """Normalizes z in place (momentum 0.1, eps 1e-5, as torch.nn.BatchNorm1d)."""
        fused.batch_norm_forward_kernel(
            z, gamma, beta, running_mean, running_var, training, 0.1, 1e-5, z, xhat, inv_std
        )

    def batch_norm_backward(self, g, xhat, gamma, inv_std, training, dz, dgamma, dbeta):
        fused.batch_norm_backward_kernel(g, xhat, gamma, inv_std, training, dz, dgamma, dbeta)

    def dropout(self, h, p, scale, rng, out, mask):
        u = rng.random(h.shape, dtype=h.dtype)
        fused.dropout_kernel(
            h.reshape(-1), u.reshape(-1), h.dtype.type(p), scale, out.reshape(-1), mask.reshape(-1)
        )

    def dropout_backward(self, g, mask, scale, out):
        fused.dropout_backward_kernel(g.reshape(-1), mask.reshape(-1), scale, out.reshape(-1))

    def sgd(self, p, g, v, lr, momentum, weight_decay, nesterov, norm_slot=-1):
        """One SGD step; ``norm_slot`` >= 0: add the gradient's L2 norm to that epoch
        statistic (the kernel sums g^2 as it reads g)."""
        squares = fused.sgd_kernel(p, g, v, lr, momentum, weight_decay, nesterov)
        if norm_slot >= 0:
            self._norms[norm_slot] += math.sqrt(squares)

    def adam(self, p, g, m, v, *scalars, norm_slot=-1):
        squares = fused.adam_kernel(p, g, m, v, *scalars)
        if norm_slot >= 0:
            self._norms[norm_slot] += math.sqrt(squares)

    # the training loop's data and statistics
    def data(self, X, targets):
        return X, targets

    _x: np.ndarray | None = None  # the minibatch buffers of batch()
    _t: np.ndarray | None = None

    def batch(self, X, targets, order, start, stop):
        """The minibatch order[start:stop], gathered into reused buffers (the previous batch's
        arrays are dead by then: its backward pass is done)."""
        rows = stop - start
        bx, bt = self._x, self._t
        if (
            bx is None
            or bt is None
            or bx.shape[0] < rows
            or bx.shape[1:] != X.shape[1:]
            or bx.dtype != X.dtype
            or bt.dtype != targets.dtype
        ):
            bx = self._x = aligned_empty((rows, X.shape[1]), X.dtype)
            bt = self._t = aligned_empty(rows, targets.dtype)
        x, t = bx[:rows], bt[:rows]
        gather_rows(X, targets, order, start, x, t)
        return x, t

    def start_epoch(self, n_layers):
        self._loss, self._correct, self._norms = 0.0, 0, np.zeros(n_layers)

    def loss(self, logits, y, grad, binary):
        """Adds the batch's summed loss to the epoch's; ``grad`` = d mean loss / d logits."""
        if binary:
            loss = fused.bce_with_logits_kernel(logits.reshape(-1), y, grad.reshape(-1))
        else:
            loss = fused.softmax_cross_entropy_kernel(logits, y, grad)
        self._loss += loss * len(logits)

    def end_step(self, logits, t, binary):
        """After an optimizer step: the batch's correct predictions (the norms were added by
        sgd/adam; the GPU's ops take their square roots here)."""
        self._correct += count_correct(logits, t, binary)

    def end_epoch(self):
        """(summed loss, correct predictions, summed per-layer weight-gradient norms)."""
        return self._loss, self._correct, self._norms


HOST = HostOps()


def _init_weights(rng, n_in, n_out, scheme, dtype):
    if scheme == "glorot":
        limit = math.sqrt(6.0 / (n_in + n_out))
        w = rng.uniform(-limit, limit, (n_in, n_out))
    elif scheme == "he":
        w = rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / n_in)
    else:  # 'normal'
        w = rng.standard_normal((n_in, n_out)) * 0.01
    return w.astype(dtype)


class Dense:
    """``x @ W``, then optional batch norm, ``activation(. + b)`` and dropout.

    ``activation=None``: the output layer, ``x @ W + b`` (logits). With batch norm, ``b``
    plays the role of batch norm's shift (beta): ``act(gamma * xhat + b)``. ``ops``: where the
    arrays live and the steps run (``HOST``, or the GPU's ``DeviceOps``).
    """

    def __init__(self, n_in, n_out, activation, *, init, dtype, rng, batch_norm=False, dropout=0.0,
                 ops=None):  # fmt: skip
        self.ops = ops = ops or HOST
        self.dtype = np.dtype(dtype)
        self.activation = activation
        self.W = Param(_init_weights(rng, n_in, n_out, init, self.dtype), decay=True, ops=ops)
        self.b = Param(np.zeros(n_out, self.dtype), decay=False, ops=ops)
        self.params = [self.W, self.b]
        self.act = None
        if activation == "prelu":
            self.slope = Param(np.full(n_out, 0.25, self.dtype), decay=False, ops=ops)
            self.params.append(self.slope)
        elif activation is not None:
            spec, a, b = fused.resolve_activation("mlp", activation, {})
            self.act = fused._BiasAct(spec, a, b, self.dtype, serial=SERIAL_KERNELS)
        self.batch_norm = batch_norm
        if batch_norm:
            self.gamma = Param(np.ones(n_out, self.dtype), decay=False, ops=ops)
            self.params.append(self.gamma)
            self.running_mean = ops.zeros(n_out, self.dtype)
            self.running_var = ops.asarray(np.ones(n_out, self.dtype))
            self._zero_beta = ops.zeros(n_out, self.dtype)
            self.inv_std = ops.empty(n_out, self.dtype)
            self._center = ops.empty(n_out, self.dtype)
        self.p = float(dropout)
        self._scale = self.dtype.type(1.0 / (1.0 - self.p))
        self._buffers = {}
        self._gb = ops.empty(n_out, np.float64)  # the fused backward accumulates in float64

    def _buf(self, name, rows, cols, dtype=None):
        """A (rows, cols) C-contiguous work array, reused across batches. Kernels write to
        buffers distinct from their inputs: with aliased arrays LLVM's runtime alias check
        sends the loop to its scalar version (2-3x slower, measured). The same rows give the
        same array object (the buffer, or one slice of it kept per row count): a GPU launch
        types each array object it is given once (see bench/gpu_host_cost.py), and training
        batches and prediction chunks differ in rows."""
        held = self._buffers.get(name)
        if held is None or held[0].shape[0] < rows:
            buffer = self.ops.empty((rows, cols), dtype or self.dtype)
            held = self._buffers[name] = (buffer, {rows: buffer})
        buffer, views = held
        view = views.get(rows)
        if view is None:
            if len(views) >= 8:
                views.clear()
            view = views[rows] = buffer[:rows]
        return view

    def forward(self, x, training=False, rng=None):
        ops = self.ops
        n, n_out = x.shape[0], self.W.value.shape[1]
        self.x = x
        z = ops.matmul(x, self.W.value, out=self._buf("z", n, n_out))
        if self.batch_norm:
            self.xhat = self._buf("xhat", n, n_out)
            self.bn_training = training
            ops.batch_norm(
                z,
                self.gamma.value,
                self._zero_beta,
                self.running_mean,
                self.running_var,
                training,
                self.xhat,
                self._center,
                self.inv_std,
            )
        if self.activation is None:
            ops.add_bias(z, self.b.value)
            return z
        h = self._buf("h", n, n_out)
        if self.act is None:  # prelu: slope per unit
            ops.add_bias(z, self.b.value)
            ops.prelu(z, self.slope.value, h)
        else:  # z + b is saved for the backward, except where it takes the output (sigmoid, tanh)
            saved = h if self.act.saves_output else self._buf("saved", n, n_out)
            ops.bias_act(self.act, z, self.b.value, h, saved)
            z = saved
        self.z, self.h = z, h  # the pre-activation (when saved), the activation
        self.mask = None
        if training and self.p > 0:
            rng = np.random.default_rng() if rng is None else rng
            self.mask = self._buf("mask", n, n_out, np.bool_)
            out = self._buf("dropped", n, n_out)
            ops.dropout(h, self.p, self._scale, rng, out, self.mask)
            return out
        return h

    def backward(self, g, input_grad=True):
        """Gradients of the parameters from ``g`` = d loss / d output; returns d loss / d
        input (a work buffer of this layer), or None when ``input_grad`` is False."""
        ops = self.ops
        n = g.shape[0]
        if self.activation is None:
            ops.column_sums(g, self.b.grad)
        else:
            if self.mask is not None:
                kept = self._buf("grad_kept", n, g.shape[1])
                ops.dropout_backward(g, self.mask, self._scale, kept)
                g = kept
            grad_pre = self._buf("grad_pre", n, g.shape[1])
            if self.act is None:
                ops.prelu_backward(g, self.z, self.slope.value, grad_pre, self.slope.grad, self._gb)
                ops.column_sums(grad_pre, self.b.grad)
            else:
                saved = self.h if self.act.saves_output else self.z
                ops.bias_act_backward(self.act, g, saved, grad_pre, self.b.grad, self._gb)
            g = grad_pre
        if self.batch_norm:
            dz = self._buf("dz", n, g.shape[1])
            ops.batch_norm_backward(
                g,
                self.xhat,
                self.gamma.value,
                self.inv_std,
                self.bn_training,
                dz,
                self.gamma.grad,
                self._gb,
            )
            g = dz
        ops.matmul(self.x, g, self.W.grad, trans_a=True)
        if not input_grad:
            return None
        return ops.matmul(g, self.W.value, self._buf("gx", n, self.W.value.shape[0]), trans_b=True)


class Network:
    """Dense layers and the loss: one logit and binary cross-entropy when ``n_outputs == 1``,
    softmax cross-entropy otherwise."""

    def __init__(
        self,
        sizes,
        activation,
        *,
        init="auto",
        dtype=np.float32,
        rng=None,
        batch_norm=False,
        dropout=0.0,
        ops=None,
    ):
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.ops = ops or HOST
        hidden_init = init
        if init == "auto":
            hidden_init = "glorot" if activation in GLOROT_ACTIVATIONS else "he"
        self.layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            self.layers.append(
                Dense(
                    n_in,
                    n_out,
                    None if last else activation,
                    dtype=dtype,
                    rng=rng,
                    init=("glorot" if init == "auto" else init) if last else hidden_init,
                    batch_norm=batch_norm and not last,
                    dropout=0.0 if last else dropout,
                    ops=self.ops,
                )
            )
        self.binary = sizes[-1] == 1
        self.params = [p for layer in self.layers for p in layer.params]
        self.batch_norm = any(layer.batch_norm for layer in self.layers)
        self.pack = self.ops.pack(self.params)  # for the optimizers: see HostOps.pack

    def forward(self, x, training=False, rng=None):
        for layer in self.layers:
            x = layer.forward(x, training, rng)
        return x

    def loss(self, logits, y):
        """(mean loss, d loss / d logits) on the host; ``y``: class indices (intp), float 0/1 if
        binary."""
        grad = self.layers[-1]._buf("dlogits", *logits.shape)
        if self.binary:
            loss = fused.bce_with_logits_kernel(logits.reshape(-1), y, grad.reshape(-1))
        else:
            loss = fused.softmax_cross_entropy_kernel(logits, y, grad)
        return loss, grad

    def backward(self, grad):
        for i in range(len(self.layers) - 1, -1, -1):
            grad = self.layers[i].backward(grad, input_grad=i > 0)

    def loss_and_backward(self, x, y, rng=None):
        """Forward in training mode, the loss, and every parameter's gradient; returns
        (loss, logits) (the loss on the host only; see ``train_step``)."""
        logits = self.forward(x, True, rng)
        loss, grad = self.loss(logits, y)
        self.backward(grad)
        return loss, logits

    def train_step(self, x, y, rng=None):
        """Forward, the loss (added to the ops' epoch statistics) and every gradient; returns
        the logits. Runs where ``ops`` runs (no copy to the host on the GPU)."""
        logits = self.forward(x, True, rng)
        grad = self.layers[-1]._buf("dlogits", *logits.shape)
        self.ops.loss(logits, y, grad, self.binary)
        self.backward(grad)
        return logits


def _flat(*arrays):
    """1-D views of C-contiguous arrays (NumPy or numba device arrays)."""
    return tuple(a.reshape(a.size) for a in arrays)


class SGD:
    """SGD with momentum (optionally Nesterov) and L2 weight decay on the weights."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, nesterov=False, ops=None,
                 pack=None):  # fmt: skip
        """``pack``: the network's ``ops.pack(params)``, or None (see HostOps.pack)."""
        self.ops: Any = ops or HOST  # HostOps, or its GPU twin (fastact._cuda_mlp.DeviceOps)
        self.params, self.pack = params, pack
        self.nesterov = bool(nesterov)
        t = np.dtype(params[0].value.dtype).type
        self.lr, self.momentum, self.weight_decay = t(lr), t(momentum), t(weight_decay)
        if pack is not None:  # one flat buffer, laid out as the parameters
            self._velocity = pack.zeros()
            self.velocity = pack.views(self._velocity)
            return
        self.velocity = [self.ops.zeros(p.value.shape, p.value.dtype) for p in params]
        # the kernels' 1-D views, made once (the GPU's optimizers use the pack instead)
        self._flat = [_flat(p.value, p.grad, v) for p, v in zip(params, self.velocity)]

    def step(self, norm_slots=None):
        """One update of every parameter; ``norm_slots[i]`` >= 0: the ops add parameter i's
        gradient norm to that epoch statistic (see ``HostOps.sgd``). The caller then calls
        ``ops.end_step``: the GPU's ops take the step's square roots there."""
        if self.pack is not None:
            self.ops.sgd_packed(self.pack, self._velocity, self.lr, self.momentum,
                                self.weight_decay, self.nesterov, norm_slots)  # fmt: skip
            return
        zero = self.lr * 0
        for i, (p, (value, grad, v)) in enumerate(zip(self.params, self._flat)):
            self.ops.sgd(
                value,
                grad,
                v,
                self.lr,
                self.momentum,
                self.weight_decay if p.decay else zero,
                self.nesterov,
                -1 if norm_slots is None else norm_slots[i],
            )


class Adam:
    """Adam (as torch.optim.Adam) with L2 weight decay on the weights."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, ops=None,
                 pack=None):  # fmt: skip
        """``pack``: as SGD's."""
        self.ops: Any = ops or HOST  # HostOps or DeviceOps
        self.params, self.pack = params, pack
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.t = np.dtype(params[0].value.dtype).type
        self.eps, self.weight_decay = self.t(eps), self.t(weight_decay)
        self.steps = 0
        if pack is not None:
            self._m, self._v = pack.zeros(), pack.zeros()
            self.m, self.v = pack.views(self._m), pack.views(self._v)
            return
        self.m = [self.ops.zeros(p.value.shape, p.value.dtype) for p in params]
        self.v = [self.ops.zeros(p.value.shape, p.value.dtype) for p in params]
        self._flat = [_flat(p.value, p.grad, m, v) for p, m, v in zip(params, self.m, self.v)]

    def step(self, norm_slots=None):
        """One update of every parameter (``norm_slots``: as ``SGD.step``)."""
        self.steps += 1
        t = self.t
        step_size = t(self.lr / (1.0 - self.beta1**self.steps))
        inv_sqrt_bias2 = t(1.0 / math.sqrt(1.0 - self.beta2**self.steps))
        b1, b2 = t(self.beta1), t(self.beta2)
        c1, c2 = t(1.0 - self.beta1), t(1.0 - self.beta2)
        scalars = (step_size, b1, c1, b2, c2, inv_sqrt_bias2, self.eps)
        if self.pack is not None:
            self.ops.adam_packed(
                self.pack, self._m, self._v, (*scalars, self.weight_decay), norm_slots
            )
            return
        for i, (p, flat) in enumerate(zip(self.params, self._flat)):
            self.ops.adam(
                *flat,
                *scalars,
                self.weight_decay if p.decay else t(0.0),
                norm_slot=-1 if norm_slots is None else norm_slots[i],
            )


# --------------------------------------------------------------------------- the estimator
def _positive_int(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"MLP: {name} must be a positive integer, got {value!r}")
    return int(value)


def _number(name, value, low, high=math.inf, low_open=False, high_open=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    ok = ok and math.isfinite(float(value)) and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "[") + str(low), str(high) + (")" if high_open else "]")
        raise ValueError(f"MLP: {name} must be a number in {lo}, {hi}, got {value!r}")
    return float(value)


def _unique_labels(values, what="y"):
    """np.unique of labels, or a ValueError when they mix types that do not order."""
    try:
        return np.unique(values, return_inverse=True)
    except TypeError as exc:
        raise ValueError(
            f"MLP: {what} mixes label types that cannot be ordered ({exc}); use labels of one type"
        ) from None


def _label_kind(labels):
    """The labels' kind by their dtype: "strings", "numbers", or None (object arrays: any mix)."""
    kind = np.asarray(labels).dtype.kind
    return "strings" if kind in "US" else "numbers" if kind in "biuf" else None


def _encode(classes, y, what="y"):
    """Class indices of labels in the sorted ``classes`` (ValueError for other labels)."""
    try:
        idx = np.searchsorted(classes, y)
    except TypeError as exc:
        raise ValueError(
            f"MLP: {what} has labels of another type than the classes ({exc})"
        ) from None
    idx = np.minimum(idx, len(classes) - 1)
    unknown = classes[idx] != y
    if np.any(unknown):
        raise ValueError(
            f"MLP: {what} has labels not in the training data: "
            f"{np.unique(np.asarray(y)[unknown])[:5].tolist()}"
        )
    return idx


class _TrainingState:
    """What training carries from one epoch (or partial_fit call) to the next besides the
    network: where it runs, the optimizer, the random generator, the dtype, the loss kind."""

    def __init__(self, ops, opt, rng, dtype, binary, batch_size):
        self.ops, self.opt, self.rng = ops, opt, rng
        self.dtype, self.binary, self.batch_size = dtype, binary, batch_size


def _check_batch_rows(batch_norm, n):
    """Batch statistics need 2 rows: one sample alone would make the running variance NaN
    (its unbiased estimate divides by n - 1)."""
    if batch_norm and n < 2:
        raise ValueError(
            f"MLP: with batch_norm, training needs at least 2 samples (batch statistics), got {n}"
        )


class MLP:
    """A multi-layer perceptron classifier trained with fastact's fused kernels.

    Parameters
    ----------
    hidden_sizes : tuple of int
        Units of each hidden layer.
    activation : str
        Hidden-layer activation: any name of ``fastact.activations.ACTIVATIONS`` ('relu',
        'gelu', 'sigmoid', ...), or 'prelu' (a learned slope per unit, initialized to 0.25,
        no weight decay).
    batch_norm : bool
        Batch normalization before each hidden activation (batch statistics in training,
        running statistics, momentum 0.1, at prediction).
    dropout : float
        Probability of dropping a hidden unit in training (inverted dropout), in [0, 1).
    optimizer : {'adam', 'sgd'}
        'sgd' uses ``momentum`` (classical); Adam uses beta1 = 0.9, beta2 = 0.999.
    lr, momentum, weight_decay : float
        Learning rate, SGD momentum, L2 penalty on the weights (not on biases, batch-norm
        scales or PReLU slopes).
    batch_size, epochs : int
        Minibatch size (the last batch of an epoch may be smaller) and passes over the data.
    init : {'auto', 'glorot', 'he', 'normal'}
        Weight initialization: Glorot uniform, He normal (std sqrt(2 / fan_in)), or normal with
        std 0.01. 'auto': Glorot for sigmoid, tanh and the other saturating activations and for
        the output layer, He for the ReLU family (relu, gelu, silu, elu, prelu, ...).
    dtype : {'float32', 'float64'}
        The dtype of the parameters and of the computation.
    seed : int or None
        Seeds initialization, shuffling and dropout: the same seed gives the same model.
    verbose : bool
        A progress bar (tqdm, when installed; else a line per epoch) with loss and accuracy.
    device : {'cpu', 'cuda'}
        'cuda': the parameters, the data and every step stay on the GPU (fastact's CUDA
        kernels; matrix products through CuPy's cuBLAS when CuPy is installed, else
        fastact's own kernel); one copy to the host per epoch for the statistics. The same
        seed gives the same initial weights as on the CPU; dropout masks differ (a
        counter-based generator on the GPU).

    Attributes
    ----------
    classes_ : ndarray
        The class labels (sorted, as ``np.unique``).
    network_ : Network
    history_ : dict
        Per-epoch lists: ``loss`` (mean training loss), ``train_accuracy`` (accuracy on the
        training batches as they were trained, in training mode), ``val_accuracy`` (with
        ``validation_data``), ``grad_norms`` (per epoch, one value per layer: the mean over the
        epoch's batches of the L2 norm of the layer's weight gradient).
    """

    history_: dict[str, list]  # set by fit() and the first partial_fit()

    def __init__(
        self,
        hidden_sizes=(64,),
        activation="relu",
        *,
        batch_norm=False,
        dropout=0.0,
        optimizer="adam",
        lr=1e-3,
        momentum=0.9,
        weight_decay=0.0,
        batch_size=128,
        epochs=20,
        init="auto",
        dtype="float32",
        seed=None,
        verbose=False,
        device="cpu",
    ):
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.init = init
        self.dtype = dtype
        self.seed = seed
        self.verbose = verbose
        self.device = device

    # ------------------------------------------------------------------ scikit-learn API
    _estimator_type = "classifier"  # scikit-learn before 1.6

    def get_params(self, deep=True):
        """The constructor's parameters as a dict (scikit-learn's estimator API: ``clone``,
        ``GridSearchCV``, ``cross_val_score``)."""
        return {name: getattr(self, name) for name in _PARAM_NAMES}

    def set_params(self, **params):
        """Sets constructor parameters by name (checked at the next ``fit``); returns self."""
        for name, value in params.items():
            if name not in _PARAM_NAMES:
                raise ValueError(
                    f"MLP: no parameter {name!r}; valid parameters: {', '.join(_PARAM_NAMES)}"
                )
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self):
        """scikit-learn's tags (1.6 and later): a classifier of dense, finite 2-D input."""
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
            input_tags=InputTags(sparse=False, allow_nan=False),
        )

    def __repr__(self):
        def changed(name, value):
            try:
                return bool(value != _PARAM_DEFAULTS[name])
            except Exception:  # e.g. an array, which has no single truth value
                return True

        shown = [f"{k}={v!r}" for k, v in self.get_params().items() if changed(k, v)]
        return f"MLP({', '.join(shown)})"

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        if self.activation not in activation_names():
            raise ValueError(
                f"MLP: unknown activation {self.activation!r}; valid names: "
                f"{', '.join(activation_names())}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"MLP: unknown optimizer {self.optimizer!r}; use 'adam' or 'sgd'")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"MLP: device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.init not in INITS:
            raise ValueError(f"MLP: unknown init {self.init!r}; use one of {', '.join(INITS)}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"MLP: dtype must be 'float32' or 'float64', got {self.dtype!r}")
        sizes = self.hidden_sizes
        if isinstance(sizes, numbers.Integral) or (
            isinstance(sizes, np.ndarray) and sizes.ndim == 0
        ):
            sizes = (sizes.item() if isinstance(sizes, np.ndarray) else sizes,)
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
            raise ValueError(
                f"MLP: hidden_sizes must be an int or a sequence of ints (units per hidden "
                f"layer), got {self.hidden_sizes!r}"
            )
        sizes = tuple(_positive_int("hidden_sizes entries", s) for s in sizes)
        _number("dropout", self.dropout, 0.0, 1.0, high_open=True)
        param_in("mlp.MLP", "lr", _number("lr", self.lr, 0.0, low_open=True), "positive", dtype)
        _number("momentum", self.momentum, 0.0, 1.0, high_open=True)
        weight_decay = _number("weight_decay", self.weight_decay, 0.0)
        param_in("mlp.MLP", "weight_decay", weight_decay, "nonnegative", dtype)
        if not isinstance(self.seed, np.random.Generator):
            try:
                np.random.default_rng(self.seed)  # what fit does with it (a cheap check)
            except (TypeError, ValueError):
                raise ValueError(
                    f"MLP: seed must be None, a non-negative integer or a "
                    f"numpy.random.Generator, got {self.seed!r}"
                ) from None
        _positive_int("batch_size", self.batch_size)
        if self.batch_norm and self.batch_size < 2:
            raise ValueError("MLP: batch_norm needs batch_size >= 2 (batch statistics)")
        _positive_int("epochs", self.epochs)
        return sizes, dtype

    def _check_X(self, X, dtype, what="X"):
        if on_device(X):
            raise ValueError(
                f"MLP: {what} is a CUDA device array; the MLP takes host arrays (device='cuda' "
                "copies them to the GPU once): pass X.copy_to_host(), cupy.asnumpy(X) or "
                "X.cpu().numpy()"
            )
        if type(X).__module__.startswith("scipy.sparse"):
            raise ValueError(
                f"MLP: {what} is a sparse matrix; the trainer takes dense arrays (X.toarray())"
            )
        try:
            X = as_array("MLP", what, X)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        if X.ndim != 2:
            raise ValueError(f"MLP: {what} must be 2-D (samples, features), got shape {X.shape}")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"MLP: {what} is empty (shape {X.shape})")
        with np.errstate(over="ignore"):  # values beyond float32: reported below, by name
            Xc = np.ascontiguousarray(X, dtype=dtype)
        if not all_finite(Xc.reshape(-1)):
            if X.dtype.kind == "f" and not np.isfinite(X).all():
                raise ValueError(
                    f"MLP: {what} contains NaN or infinity; impute or drop those values"
                )
            raise ValueError(
                f"MLP: {what} has values beyond the range of {np.dtype(dtype).name} (the "
                f"model's dtype, |x| <= {float(np.finfo(dtype).max):.6g}); scale the data "
                f"or use dtype='float64'"
            )
        return Xc

    def _check_Xy(self, X, y, dtype, what="X"):
        X = self._check_X(X, dtype, what)
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"MLP: y must be 1-D (one label per sample), got shape {y.shape}")
        if len(y) != len(X):
            raise ValueError(f"MLP: {what} has {len(X)} samples but its labels have {len(y)}")
        missing = (
            np.isnan(y).any()
            if y.dtype.kind in "fc"
            else y.dtype.kind == "O" and any(isinstance(v, float) and v != v for v in y.tolist())
        )
        if missing:
            raise ValueError("MLP: y contains NaN; a label must be a class, not missing")
        return X, y

    def _check_fitted(self, X):
        if not hasattr(self, "network_"):
            raise ValueError("MLP: this model is not fitted yet; call fit(X, y) first")
        X = self._check_X(X, np.dtype(self.network_.params[0].value.dtype))
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"MLP: X has {X.shape[1]} features, the model was fitted with {self.n_features_in_}"
            )
        return X

    # ------------------------------------------------------------------ training
    def fit(self, X, y, validation_data=None):
        """Train on ``X`` (samples, features) and labels ``y`` (any hashable, >= 2 classes),
        from a fresh initialization, for ``epochs`` epochs. A ValueError ends training that
        diverges (a loss or gradient norm that is not finite after an epoch, or a parameter
        after the last; as scikit-learn's MLPClassifier): lower ``lr`` or scale ``X``."""
        sizes, dtype = self._check_params()
        X, y = self._check_Xy(X, y, dtype)
        classes, y_idx = _unique_labels(y)
        if len(classes) < 2:
            raise ValueError(
                f"MLP: y has a single class ({classes[0]!r}); a classifier needs at least 2"
            )
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError(
                    "MLP: validation_data must be a pair (X_val, y_val), got "
                    f"{type(validation_data).__name__}"
                )
            Xv, yv = validation_data
            Xv, yv = self._check_Xy(Xv, yv, dtype, what="validation X")
            if Xv.shape[1] != X.shape[1]:
                raise ValueError(
                    f"MLP: validation X has {Xv.shape[1]} features, X has {X.shape[1]}"
                )
            validation = Xv, _encode(classes, yv, "validation y")
        self._start(X.shape[1], classes, sizes, dtype, validation is not None)
        X_on, targets_on = self._trainer.ops.data(X, self._targets(y_idx))  # on the GPU once
        progress = _Progress(self.epochs, self.verbose)
        for _ in range(self.epochs):
            self._train_epoch(X_on, targets_on, validation)
            progress.update(self.history_)
        progress.close()
        self._check_finite(self.history_, parameters=True)
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, continuing from the current weights and optimizer state
        (as scikit-learn's ``partial_fit``): for data that arrives in parts, or to run epochs
        one at a time. The first call (unless ``fit`` ran before) needs ``classes``, every
        label the model will see, and starts from the initialization ``fit`` would use; the
        hyperparameters are those of that first call. ``partial_fit`` k times from a fresh
        model trains the same model as ``fit`` with ``epochs=k`` (same seed and data).
        ``history_`` gets one entry per call in each of its lists but ``val_accuracy``
        (partial_fit takes no validation data)."""
        if not hasattr(self, "_trainer"):
            if classes is None:
                raise ValueError(
                    "MLP: the first call to partial_fit needs classes= (every label of the "
                    "data, e.g. np.unique(y_all))"
                )
            sizes, dtype = self._check_params()
            classes = np.asarray(classes)
            if classes.ndim != 1:
                raise ValueError(f"MLP: classes must be 1-D, got shape {classes.shape}")
            unique = _unique_labels(classes, "classes")[0]
            if len(unique) != len(classes) or len(unique) < 2:
                raise ValueError(
                    f"MLP: classes must be at least 2 distinct labels, got {classes.tolist()[:5]}"
                )
            X, y = self._check_Xy(X, y, dtype)
            y_idx = _encode(unique, y, "y")  # checked before anything changes
            _check_batch_rows(self.batch_norm, len(X))
            self._start(X.shape[1], unique, sizes, dtype, False)
        else:
            if classes is not None and not np.array_equal(
                _unique_labels(classes, "classes")[0], self.classes_
            ):
                raise ValueError(
                    f"MLP: classes {np.asarray(classes).tolist()[:5]} differ from the "
                    f"classes of the first call {self.classes_.tolist()[:5]}"
                )
            X, y = self._check_Xy(X, y, self._trainer.dtype)
            if X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"MLP: X has {X.shape[1]} features, the model was trained with "
                    f"{self.n_features_in_}"
                )
            y_idx = _encode(self.classes_, y, "y")
            _check_batch_rows(self.network_.batch_norm, len(X))
        X_on, targets_on = self._trainer.ops.data(X, self._targets(y_idx))
        self._train_epoch(X_on, targets_on, None)
        return self

    def _start(self, n_features, classes, sizes, dtype, validation):
        """A fresh network, optimizer, random generator and history (what fit and the first
        partial_fit share)."""
        self.classes_ = classes
        self.n_features_in_ = n_features
        binary = len(classes) == 2
        rng = np.random.default_rng(self.seed)
        ops = self._ops()
        net = self.network_ = Network(
            (n_features, *sizes, 1 if binary else len(classes)),
            self.activation,
            init=self.init,
            dtype=dtype,
            rng=rng,
            batch_norm=self.batch_norm,
            dropout=self.dropout,
            ops=ops,
        )
        opt: SGD | Adam
        if self.optimizer == "sgd":
            opt = SGD(net.params, self.lr, self.momentum, self.weight_decay, ops=ops, pack=net.pack)
        else:
            opt = Adam(net.params, self.lr, weight_decay=self.weight_decay, ops=ops, pack=net.pack)
        self.history_ = {"loss": [], "train_accuracy": [], "grad_norms": []}
        if validation:
            self.history_["val_accuracy"] = []
        self._trainer = _TrainingState(ops, opt, rng, dtype, binary, self.batch_size)

    def _targets(self, y_idx):
        """Class indices as the loss kernels take them: 0/1 floats (binary) or intp."""
        state = self._trainer
        return y_idx.astype(state.dtype) if state.binary else y_idx.astype(np.intp)

    def _train_epoch(self, X, targets, validation):
        """One pass over the data (already where the network lives) in a fresh random order;
        appends the epoch's statistics to ``history_``."""
        state, net, history = self._trainer, self.network_, self.history_
        ops, opt, rng, binary = state.ops, state.opt, state.rng, state.binary
        n, bs = len(targets), state.batch_size
        bounds = [(s, min(s + bs, n)) for s in range(0, n, bs)]
        if net.batch_norm and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
            # batch statistics need 2 rows (a 1-row batch has variance 0 and an undefined
            # unbiased variance): the last sample joins the batch before it
            bounds[-2:] = [(bounds[-2][0], n)]
        weights = [layer.W for layer in net.layers]
        # per parameter: the layer whose gradient-norm statistic it feeds (weights), else -1
        norm_slots = [next((k for k, w in enumerate(weights) if w is p), -1) for p in net.params]
        order = rng.permutation(n)
        ops.start_epoch(len(weights))
        # a diverging run overflows in the host's matrix products: reported once, below
        with np.errstate(over="ignore", invalid="ignore"):
            for start, stop in bounds:
                x, t = ops.batch(X, targets, order, start, stop)
                logits = net.train_step(x, t, rng)
                opt.step(norm_slots)  # also adds each weight gradient's norm to the epoch's
                ops.end_step(logits, t, binary)  # statistics; correct predictions
        total_loss, correct, norms = ops.end_epoch()
        history["loss"].append(total_loss / n)
        history["train_accuracy"].append(correct / n)
        history["grad_norms"].append((np.asarray(norms) / len(bounds)).tolist())
        self._check_finite(history)
        if validation is not None:
            Xv, yv_idx = validation
            history["val_accuracy"].append(float(np.mean(self._logits_argmax(Xv) == yv_idx)))

    def _check_finite(self, history, parameters=False):
        """Raises when the epoch just trained produced a non-finite loss or gradient norm, or
        with ``parameters`` (after fit's last epoch: an overflow in a last step shows in no
        loss) a non-finite parameter, as scikit-learn's MLPClassifier: training has
        diverged, and the model's predictions would be meaningless. Per epoch it reads only
        the statistics the epoch already has on the host."""
        loss = history["loss"][-1]
        problems = [f"the loss is {loss}"] if not math.isfinite(loss) else []
        problems += [
            f"layer {k}'s weight gradient norm is {v}"
            for k, v in enumerate(history["grad_norms"][-1])
            if not math.isfinite(v)
        ]
        if parameters and not problems:
            ops, pack = self.network_.ops, self.network_.pack
            # the GPU's parameters are one buffer: one copy
            values = [pack.values] if pack is not None else [p.value for p in self.network_.params]
            if not all(np.isfinite(np.asarray(ops.to_host(v))).all() for v in values):
                problems.append("some parameters are not finite")
        if problems:
            bad = "; ".join(problems[:3])
            raise ValueError(
                f"MLP: training diverged in epoch {len(history['loss'])}: {bad}. Lower lr "
                f"(now {self.lr}) or scale X (e.g. sklearn's StandardScaler); history_ holds "
                "the epochs so far"
            )

    def _ops(self):
        """Where the network lives: HOST, or the GPU's DeviceOps for device='cuda'."""
        if self.device == "cpu":
            return HostOps()  # its own batch buffers: models may train in parallel threads
        from fastact import cuda

        if not cuda.is_available():
            raise ValueError(
                "MLP: device='cuda' needs a CUDA GPU and numba-cuda (pip install "
                "'fastact[cuda]'); none is available here"
            )
        from fastact._cuda_mlp import DeviceOps

        return DeviceOps()

    # ------------------------------------------------------------------ prediction
    def _logits(self, X):
        """Logits of already checked X (host array), in evaluation mode, batch by batch; on
        the host."""
        net, chunk = self.network_, max(self.batch_size, 1024)
        ops = net.ops
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged model's: NaN, no warning
            parts = [
                np.array(ops.to_host(net.forward(ops.input(X[s : s + chunk]))))
                for s in range(0, len(X), chunk)
            ]
        return np.concatenate(parts)

    def _logits_argmax(self, X):
        logits = self._logits(X)
        return (logits[:, 0] > 0).astype(np.intp) if logits.shape[1] == 1 else logits.argmax(1)

    def predict_proba(self, X):
        """Class probabilities, shape (samples, classes), columns in the order of ``classes_``."""
        logits = self._logits(self._check_fitted(X))
        if logits.shape[1] == 1:
            p = np.empty_like(logits)
            zero = logits.dtype.type(0)
            _kernels.sigmoid_forward_serial(logits.reshape(-1), p.reshape(-1), zero, zero)
            return np.concatenate([1 - p, p], axis=1)
        return fused.softmax(logits)

    def predict(self, X):
        """The most probable class label of each sample."""
        X = self._check_fitted(X)
        return self.classes_[self._logits_argmax(X)]

    def score(self, X, y):
        """Accuracy: the fraction of samples whose predicted label equals ``y``."""
        X = self._check_fitted(X)
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ValueError(f"MLP: y must have shape ({len(X)},), got {y.shape}")
        kinds = {_label_kind(y), _label_kind(self.classes_)}
        if kinds == {"strings", "numbers"}:  # they never compare equal: an accuracy of 0
            raise ValueError(
                f"MLP: y has {_label_kind(y)} as labels, the classes are "
                f"{_label_kind(self.classes_)} ({self.classes_.tolist()[:5]})"
            )
        return float(np.mean(self.predict(X) == y))


_PARAM_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(MLP.__init__).parameters.items()
    if name != "self"
}
_PARAM_NAMES = tuple(_PARAM_DEFAULTS)


class _Progress:
    """A tqdm bar over epochs (or one printed line per epoch without tqdm); silent unless
    verbose."""

    def __init__(self, epochs, verbose):
        self.bar, self.verbose, self.epoch = None, verbose, 0
        if verbose:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=epochs, desc="MLP", unit="epoch")

    def update(self, history):
        self.epoch += 1
        if not self.verbose:
            return
        stats = {
            "loss": f"{history['loss'][-1]:.4f}",
            "acc": f"{history['train_accuracy'][-1]:.4f}",
        }
        if "val_accuracy" in history:
            stats["val_acc"] = f"{history['val_accuracy'][-1]:.4f}"
        if self.bar is not None:
            self.bar.set_postfix(stats)
            self.bar.update(1)
        else:
            print(
                f"epoch {self.epoch}: " + ", ".join(f"{k} {v}" for k, v in stats.items()),
                flush=True,
            )

    def close(self):
        if self.bar is not None:
            self.bar.close()
