"""What the MLP benchmark runs: the data, one training epoch per implementation, accuracy.

Shared by the pytest-benchmark file (``bench/bench_mlp.py``) and its by-hand report
(``python bench/bench_mlp.py``). Plain Python, no pytest.

The task: synthetic float32 inputs (10 Gaussian classes in 784 dimensions, overlapping enough
that accuracy is not 100%), a 784-256-256-10 ReLU network, softmax cross-entropy, minibatches
of 128 in a fresh random order each epoch, SGD with momentum 0.9 (lr 0.01, no weight decay),
or Adam (``optimizer='adam'``: lr 1e-3, betas 0.9 / 0.999, eps 1e-8, as every implementation's
default).

Initialization: He normal weights and zero biases (fastact's ``init='auto'`` for ReLU) for
fastact, numpy and torch; scikit-learn keeps its own (Glorot uniform; it has no option). The
initialization, not the implementation, decides the accuracy after a few epochs here: torch
with its default ``Linear`` init (uniform, std 1/sqrt(3 fan_in)) reaches 95.1% / 94.6%
(seeds 0 / 1) after 3 epochs, with He normal 94.1% / 93.8%, fastact 93.9% / 93.9%.

Implementations:

* ``fastact``: ``fastact.mlp.MLP`` (NumPy matmuls + fastact's fused single-threaded kernels),
  one ``partial_fit`` call per epoch.
* ``numpy``: the same network written with plain NumPy operations (matmuls, ``np.maximum``,
  a stable softmax (row maximum subtracted) for the loss gradient, ``np.where`` for the ReLU
  backward, in-place momentum updates; it does not compute the loss value).
* ``torch``: ``torch.nn.Sequential`` + ``torch.optim.SGD`` on CPU, intra-op threads =
  ``numba.get_num_threads()`` (as in ``_cases.torch_module``), zero-copy ``from_numpy`` data.
* ``sklearn``: ``sklearn.neural_network.MLPClassifier(solver='sgd')``, one ``partial_fit`` call
  per epoch (it shuffles, checks its input and computes the loss every batch, as it does in
  ``fit``).
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np

IMPLS = ("fastact", "numpy", "torch", "sklearn")
HIDDEN = (256, 256)
CLASSES = 10
BATCH = 128
LR = 0.01
MOMENTUM = 0.9
ADAM_LR = 1e-3
OPTIMIZERS = ("sgd", "adam")
SEED = 20240607

#: (train samples, test samples, features) of the full benchmark and of the smoke run
FULL = (60_000, 10_000, 784)
SMOKE = (512, 256, 784)


class Unavailable(Exception):
    """The implementation's library is not installed (the benchmark is skipped)."""


@functools.lru_cache(maxsize=2)
def data(n_train: int, n_test: int, features: int):
    """(X_train, y_train, X_test, y_test): class means ~ N(0, 0.13^2) per feature plus unit
    Gaussian noise (the Bayes accuracy is about 95%), float32 inputs, int64 labels."""
    rng = np.random.default_rng(SEED)
    centers = (rng.standard_normal((CLASSES, features)) * 0.13).astype(np.float32)
    y = rng.integers(0, CLASSES, n_train + n_test)
    X = rng.standard_normal((n_train + n_test, features), dtype=np.float32)
    X += centers[y]
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


class Trainer:
    """One implementation: ``epoch()`` trains one more epoch, ``accuracy(X, y)`` evaluates.
    ``__init__(X, y, seed, optimizer)``: 'sgd' (momentum) or 'adam'."""

    def epoch(self):
        raise NotImplementedError

    def accuracy(self, X, y) -> float:
        raise NotImplementedError


class FastactTrainer(Trainer):
    """One ``MLP.partial_fit`` call per epoch, as the scikit-learn trainer (input checks
    included; the initialization is the first call's); k calls train the model of ``fit``
    with ``epochs=k`` (same seed)."""

    def __init__(self, X, y, seed=0, optimizer="sgd"):
        from fastact.mlp import MLP

        self.X, self.y = X, y
        self.model = MLP(
            HIDDEN,
            "relu",
            optimizer=optimizer,
            lr=LR if optimizer == "sgd" else ADAM_LR,
            momentum=MOMENTUM,
            batch_size=BATCH,
            epochs=1,
            seed=seed,
        )

    def epoch(self):
        self.model.partial_fit(self.X, self.y, classes=np.arange(CLASSES))

    def accuracy(self, X, y):
        return self.model.score(X, y)


class NumpyTrainer(Trainer):
    """The same network and optimizer in plain NumPy (He init, as fastact's 'auto')."""

    def __init__(self, X, y, seed=0, optimizer="sgd"):
        self.X, self.y, self.optimizer, self.steps = X, y, optimizer, 0
        self.rng = np.random.default_rng(seed)
        sizes = (X.shape[1], *HIDDEN, CLASSES)
        self.W = [
            (self.rng.standard_normal((a, b)) * math.sqrt(2.0 / a)).astype(np.float32)
            for a, b in zip(sizes[:-1], sizes[1:])
        ]
        self.b = [np.zeros(b, np.float32) for b in sizes[1:]]
        self.vel = [np.zeros_like(p) for p in self.W + self.b]  # SGD; Adam's m
        self.sq = [np.zeros_like(p) for p in self.W + self.b]  # Adam's v

    def forward(self, x):
        hs, zs = [x], []
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            z = hs[-1] @ W + b
            zs.append(z)
            if i < len(self.W) - 1:
                hs.append(np.maximum(z, 0))
        return hs, zs

    def epoch(self):
        X, y, lr, mom = self.X, self.y, np.float32(LR), np.float32(MOMENTUM)
        order = self.rng.permutation(len(X))
        for s in range(0, len(X), BATCH):
            idx = order[s : s + BATCH]
            x, t = X[idx], y[idx]
            hs, zs = self.forward(x)
            logits = zs[-1]
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            g = e / e.sum(axis=1, keepdims=True)
            g[np.arange(len(t)), t] -= 1
            g /= len(t)
            grads_W, grads_b = [None] * len(self.W), [None] * len(self.W)
            for i in range(len(self.W) - 1, -1, -1):
                grads_W[i] = hs[i].T @ g
                grads_b[i] = g.sum(axis=0)
                if i > 0:
                    g = np.where(zs[i - 1] > 0, g @ self.W[i].T, 0)
            if self.optimizer == "adam":
                self.adam(grads_W + grads_b)
                continue
            for p, grad, v in zip(self.W + self.b, grads_W + grads_b, self.vel):
                v *= mom
                v += grad
                p -= lr * v

    def adam(self, grads, beta1=0.9, beta2=0.999, eps=1e-8):
        self.steps += 1
        step = np.float32(ADAM_LR / (1 - beta1**self.steps))
        bias2 = np.float32(math.sqrt(1 - beta2**self.steps))
        for p, grad, m, v in zip(self.W + self.b, grads, self.vel, self.sq):
            m *= np.float32(beta1)
            m += np.float32(1 - beta1) * grad
            v *= np.float32(beta2)
            v += np.float32(1 - beta2) * grad * grad
            p -= step * m / (np.sqrt(v) / bias2 + np.float32(eps))

    def accuracy(self, X, y):
        return float(np.mean(self.forward(X)[1][-1].argmax(axis=1) == y))


class TorchTrainer(Trainer):
    def __init__(self, X, y, seed=0, optimizer="sgd"):
        try:
            import torch
        except ImportError:
            raise Unavailable("torch is not importable") from None
        from numba import get_num_threads

        torch.set_num_threads(get_num_threads())
        torch.manual_seed(seed)
        self.torch = torch
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        layers, sizes = [], (X.shape[1], *HIDDEN)
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        self.model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], CLASSES))
        with torch.no_grad():  # He normal, zero biases: fastact's (and the numpy trainer's) init
            for layer in self.model:
                if isinstance(layer, torch.nn.Linear):
                    torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                    layer.bias.zero_()
        params = self.model.parameters()
        if optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)
        else:
            self.opt = torch.optim.Adam(params, lr=ADAM_LR)
        self.loss = torch.nn.CrossEntropyLoss()
        self.rng = np.random.default_rng(seed)

    def epoch(self):
        torch, model, opt = self.torch, self.model, self.opt
        order = torch.from_numpy(self.rng.permutation(len(self.X)))
        model.train()
        for s in range(0, len(self.X), BATCH):
            idx = order[s : s + BATCH]
            opt.zero_grad(set_to_none=True)
            self.loss(model(self.X[idx]), self.y[idx]).backward()
            opt.step()

    def accuracy(self, X, y):
        torch = self.torch
        with torch.no_grad():
            pred = self.model.eval()(torch.from_numpy(X)).argmax(dim=1).numpy()
        return float(np.mean(pred == y))


class SklearnTrainer(Trainer):
    def __init__(self, X, y, seed=0, optimizer="sgd"):
        try:
            from sklearn.neural_network import MLPClassifier
        except ImportError:
            raise Unavailable("scikit-learn is not importable") from None
        self.X, self.y = X, y
        self.model = MLPClassifier(
            HIDDEN,
            activation="relu",
            solver=optimizer,
            alpha=0.0,
            batch_size=BATCH,
            learning_rate_init=LR if optimizer == "sgd" else ADAM_LR,
            momentum=MOMENTUM,
            nesterovs_momentum=False,
            shuffle=True,
            random_state=seed,
        )

    def epoch(self):
        self.model.partial_fit(self.X, self.y, classes=np.arange(CLASSES))

    def accuracy(self, X, y):
        return float(self.model.score(X, y))


TRAINERS = {
    "fastact": FastactTrainer,
    "numpy": NumpyTrainer,
    "torch": TorchTrainer,
    "sklearn": SklearnTrainer,
}


def trainer(impl: str, X, y, seed=0, optimizer="sgd") -> Trainer:
    return TRAINERS[impl](X, y, seed, optimizer)


def time_epochs(impl: str, X, y, epochs: int, seed=0, optimizer="sgd") -> list[float]:
    """Seconds of each of ``epochs`` consecutive epochs (fastact: ``fit`` with one epoch)."""
    t = trainer(impl, X, y, seed, optimizer)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        t.epoch()
        times.append(time.perf_counter() - start)
    return times


def accuracy_after(impl: str, epochs: int, X, y, X_test, y_test, seed=0, optimizer="sgd") -> float:
    t = trainer(impl, X, y, seed, optimizer)
    for _ in range(epochs):
        t.epoch()
    return t.accuracy(X_test, y_test)
