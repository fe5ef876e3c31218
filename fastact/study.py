"""The activation study: the article's sigmoid-vs-ReLU experiments, done right, on fastact.

Three experiments, each a function returning rows (lists of dicts) that the CLI prints and
writes as CSV/Markdown/PNG:

* ``xor_experiment``: the article's 2-4-1 XOR net, trained correctly over many seeds; how
  often each activation reaches 100% (a 4-unit ReLU layer dies on some seeds).
* ``accuracy_study``: one architecture, each activation, with and without batch norm and
  dropout, several seeds, on scikit-learn's digits and on two spirals: train/test accuracy,
  generalization gap, epochs to a target train accuracy, time per epoch.
* ``gradient_study``: per-layer gradient norms of a deep net at initialization and after
  training, per activation and initialization: sigmoid's geometric decay (its derivative is
  at most 0.25), flat with He init + ReLU or with batch norm.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from fastact.mlp import MLP, Network

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0, 1, 1, 0])


# --------------------------------------------------------------------------- data
def two_spirals(n: int = 1000, noise: float = 0.3, seed: int = 0):
    """Two interleaved spirals in 2-D (n points, half per class), standardized."""
    rng = np.random.default_rng(seed)
    half = n // 2
    t = np.sqrt(rng.uniform(0.0, 1.0, half)) * 3.0 * np.pi
    arm = np.column_stack([t * np.cos(t), t * np.sin(t)])
    X = np.vstack([arm, -arm]) + rng.normal(0.0, noise, (2 * half, 2))
    y = np.repeat([0, 1], half)
    X = (X - X.mean(0)) / X.std(0)
    return X, y


def _stratified_split(X, y, test_size, seed):
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        test[idx[: int(round(test_size * len(idx)))]] = True
    return X[~test], X[test], y[~test], y[test]


def _standardize(X_train, X_test):
    mean, std = X_train.mean(0), X_train.std(0)
    std[std == 0] = 1.0
    return (X_train - mean) / std, (X_test - mean) / std


def load_dataset(name: str, seed: int = 0):
    """(X_train, X_test, y_train, y_test): 75/25 stratified split, standardized."""
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise MissingDependency("scikit-learn", "the digits data") from None
        X, y = load_digits(return_X_y=True)
    elif name == "spirals":
        X, y = two_spirals(1000, seed=seed)
    else:
        raise ValueError(f"unknown dataset {name!r}; choose 'digits' or 'spirals'")
    X_train, X_test, y_train, y_test = _stratified_split(X.astype(np.float64), y, 0.25, seed)
    X_train, X_test = _standardize(X_train, X_test)
    return X_train, X_test, y_train, y_test


class MissingDependency(ImportError):
    """An optional package a command needs; the CLI prints a one-line hint."""

    def __init__(self, package: str, purpose: str):
        super().__init__(
            f"{purpose} needs {package}: pip install {package} (or: pip install 'fastact[study]')"
        )


# --------------------------------------------------------------------------- XOR
def xor_experiment(
    activations=("sigmoid", "tanh", "relu", "leaky_relu", "prelu"),
    seeds=50,
    epochs=3000,
    hidden=4,
    progress=None,
):
    """The article's 2-4-1 XOR net, full batch, Adam; success = 100% training accuracy."""
    rows = []
    for activation in activations:
        wins, dead_units, final_losses = 0, 0, []
        for seed in range(seeds):
            clf = MLP(
                (hidden,),
                activation,
                optimizer="adam",
                lr=0.05,
                batch_size=4,
                epochs=epochs,
                dtype="float64",
                seed=seed,
            ).fit(XOR_X, XOR_Y)
            wins += clf.score(XOR_X, XOR_Y) == 1.0
            final_losses.append(clf.history_["loss"][-1])
            dead_units += _dead_units(clf, XOR_X)
            if progress:
                progress()
        rows.append(
            {
                "activation": activation,
                "seeds": seeds,
                "solved": wins,
                "success_rate": wins / seeds,
                "dead_hidden_units_per_net": dead_units / seeds,
                "median_final_loss": float(np.median(final_losses)),
            }
        )
    return rows


def _dead_units(clf, X) -> int:
    """Hidden units that output 0 (zero gradient) on every input: dead ReLUs."""
    layer = clf.network_.layers[0]
    pre = X @ layer.W.value + layer.b.value
    if clf.activation not in ("relu", "relu6"):
        return 0
    return int(np.sum(np.all(pre <= 0, axis=0)))


# --------------------------------------------------------------------------- accuracy study
STUDY_ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "gelu", "silu")
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "batch_norm": {"batch_norm": True},
    "dropout": {"dropout": 0.2},
}
TARGETS = {"digits": 0.97, "spirals": 0.95}
#: per dataset: (learning rate, epochs multiplier); spirals is small (750 training points)
#: and needs more, larger steps than digits to be learned at all
SCHEDULE = {"digits": (1e-3, 1), "spirals": (1e-2, 5)}


def accuracy_study(
    datasets=("digits", "spirals"),
    activations=STUDY_ACTIVATIONS,
    variants=tuple(VARIANTS),
    seeds=3,
    epochs=40,
    hidden=(64, 64),
    progress=None,
):
    """Train/test accuracy, gap, epochs to the target train accuracy and time per epoch,
    mean and std over seeds, for each dataset x activation x variant."""
    rows = []
    curves = {}
    for dataset in datasets:
        for activation in activations:
            for variant in variants:
                runs = []
                lr, factor = SCHEDULE[dataset]
                n_epochs = epochs * factor
                X_train, X_test, y_train, y_test = load_dataset(dataset, 0)
                # warm-up: compile this configuration's kernels outside the timings
                MLP(hidden, activation, epochs=1, seed=0, **VARIANTS[variant]).fit(
                    X_train[::8], y_train[::8]
                )
                for seed in range(seeds):
                    X_train, X_test, y_train, y_test = load_dataset(dataset, seed)
                    clf = MLP(
                        hidden,
                        activation,
                        optimizer="adam",
                        lr=lr,
                        batch_size=64,
                        epochs=n_epochs,
                        seed=seed,
                        **VARIANTS[variant],
                    )
                    t0 = time.perf_counter()
                    clf.fit(X_train, y_train, validation_data=(X_test, y_test))
                    elapsed = time.perf_counter() - t0
                    acc = clf.history_["train_accuracy"]
                    reached = next(
                        (i + 1 for i, a in enumerate(acc) if a >= TARGETS[dataset]), math.nan
                    )
                    runs.append(
                        (
                            clf.score(X_train, y_train),
                            clf.score(X_test, y_test),
                            reached,
                            elapsed / n_epochs,
                        )
                    )
                    curves[(dataset, activation, variant, seed)] = clf.history_["loss"]
                    if progress:
                        progress()
                r = np.array(runs, dtype=float)
                train, test = r[:, 0], r[:, 1]
                rows.append(
                    {
                        "dataset": dataset,
                        "activation": activation,
                        "variant": variant,
                        "train_acc": train.mean(),
                        "train_acc_std": train.std(),
                        "test_acc": test.mean(),
                        "test_acc_std": test.std(),
                        "gap": (train - test).mean(),
                        "gap_std": (train - test).std(),
                        "epochs_to_target": float(np.nanmean(r[:, 2]))
                        if np.isfinite(r[:, 2]).any()
                        else math.nan,
                        "reached_target": int(np.isfinite(r[:, 2]).sum()),
                        "seeds": seeds,
                        "ms_per_epoch": 1e3 * r[:, 3].mean(),
                    }
                )
    return rows, curves


# --------------------------------------------------------------------------- gradients
GRADIENT_CASES = (
    ("sigmoid", "glorot", False),
    ("sigmoid", "normal", False),
    ("sigmoid", "glorot", True),
    ("tanh", "glorot", False),
    ("relu", "he", False),
    ("relu", "glorot", False),
    ("relu", "normal", False),
    ("leaky_relu", "he", False),
    ("relu", "he", True),
)


def gradient_study(
    depth=10,
    width=64,
    cases=GRADIENT_CASES,
    dataset="digits",
    epochs=5,
    batches=8,
    seed=0,
    progress=None,
):
    """Per-layer gradient norms ||dL/dW_l|| of a deep net (``depth`` hidden layers): at
    initialization (mean over ``batches`` mini-batches) and in the last training epoch."""
    X_train, X_test, y_train, y_test = load_dataset(dataset, seed)
    classes, y_idx = np.unique(y_train, return_inverse=True)
    rows = []
    for activation, init, batch_norm in cases:
        sizes = (X_train.shape[1],) + (width,) * depth + (len(classes),)
        net = Network(
            sizes, activation, init=init, dtype=np.float32, rng=seed, batch_norm=batch_norm
        )
        rng = np.random.default_rng(seed)
        at_init = np.zeros(depth + 1)
        for _ in range(batches):
            idx = rng.choice(len(X_train), 64, replace=False)
            net.loss_and_backward(X_train[idx].astype(np.float32), y_idx[idx].astype(np.intp), rng)
            at_init += [np.linalg.norm(layer.W.grad) for layer in net.layers]
        at_init /= batches
        clf = MLP(
            (width,) * depth,
            activation,
            init=init,
            batch_norm=batch_norm,
            optimizer="adam",
            lr=1e-3,
            batch_size=64,
            epochs=epochs,
            seed=seed,
        ).fit(X_train, y_train)
        trained = np.array(clf.history_["grad_norms"][-1])
        rows.append(
            {
                "activation": activation,
                "init": init,
                "batch_norm": batch_norm,
                "at_init": at_init.tolist(),
                "trained": trained.tolist(),
                "first_over_last_at_init": at_init[0] / at_init[-2] if at_init[-2] else math.inf,
                "test_acc": clf.score(X_test, y_test),
            }
        )
        if progress:
            progress()
    return rows


def case_name(row) -> str:
    return f"{row['activation']}/{row['init']}" + ("+bn" if row["batch_norm"] else "")
