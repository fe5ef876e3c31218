"""fastact.mlp: whole-network gradients by finite differences, training, the estimator API."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fastact import mlp
from fastact.mlp import MLP, Network, activation_names


# --------------------------------------------------------------------------- gradients
def check_network_gradients(net, X, y, seed=None):
    """Every parameter's gradient (one backward) against central differences of the loss
    (float64). ``seed``: dropout draws its mask from a generator seeded with it, so every
    evaluation of the loss uses the same mask."""
    rng = lambda: None if seed is None else np.random.default_rng(seed)  # noqa: E731
    net.loss_and_backward(X, y, rng())
    analytic = [p.grad.copy() for p in net.params]
    h = 1e-6
    for p, grad in zip(net.params, analytic):
        numeric = np.empty_like(grad)
        for i in np.ndindex(p.value.shape):
            old = p.value[i]
            p.value[i] = old + h
            up = net.loss_and_backward(X, y, rng())[0]
            p.value[i] = old - h
            down = net.loss_and_backward(X, y, rng())[0]
            p.value[i] = old
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def small_problem(n_outputs, n=8, features=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features))
    if n_outputs == 1:
        return X, rng.integers(0, 2, n).astype(np.float64)
    return X, rng.integers(0, n_outputs, n).astype(np.intp)


@pytest.mark.parametrize("activation", activation_names())
def test_network_gradients_every_activation(activation):
    X, y = small_problem(3)
    net = Network((5, 6, 4, 3), activation, dtype=np.float64, rng=1)
    for layer in net.layers:  # non-zero biases, so that they matter
        layer.b.value[:] = np.random.default_rng(2).standard_normal(layer.b.value.shape) * 0.5
    check_network_gradients(net, X, y)


@pytest.mark.parametrize("activation", ["relu", "tanh", "prelu"])
def test_network_gradients_with_batch_norm(activation):
    X, y = small_problem(3)
    net = Network((5, 6, 4, 3), activation, dtype=np.float64, rng=1, batch_norm=True)
    net.layers[0].gamma.value[:] = np.linspace(0.5, 1.5, 6)
    check_network_gradients(net, X, y)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_network_gradients_with_dropout_under_a_fixed_mask(activation):
    X, y = small_problem(3)
    net = Network((5, 6, 4, 3), activation, dtype=np.float64, rng=1, dropout=0.4)
    check_network_gradients(net, X, y, seed=3)
    assert not net.layers[0].mask.all()  # the mask did drop units


def test_network_gradients_binary_output():
    X, y = small_problem(1)
    net = Network((5, 4, 1), "silu", dtype=np.float64, rng=1, batch_norm=True, dropout=0.3)
    check_network_gradients(net, X, y, seed=4)


# --------------------------------------------------------------------------- training
def blobs(n=300, classes=3, features=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, features)) * 3
    y = rng.integers(0, classes, n)
    return (centers[y] + rng.standard_normal((n, features))).astype(np.float32), y


def test_loss_decreases_and_history():
    X, y = blobs()
    clf = MLP((16,), "tanh", epochs=8, batch_size=32, lr=0.01, seed=0)
    clf.fit(X, y, validation_data=(X[:50], y[:50]))
    h = clf.history_
    assert set(h) == {"loss", "train_accuracy", "val_accuracy", "grad_norms"}
    assert all(len(v) == 8 for v in h.values())
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert len(h["grad_norms"][0]) == 2 and all(g > 0 for g in h["grad_norms"][0])
    assert h["val_accuracy"][-1] > 0.9 and h["train_accuracy"][-1] > 0.9


def test_xor_2_4_1_sigmoid_net_learns_xor():
    """The article's net: 2 inputs, 4 sigmoid hidden units, 1 output."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0])
    clf = MLP((4,), "sigmoid", lr=0.1, epochs=2000, batch_size=4, seed=0).fit(X, y)
    assert [layer.W.value.shape for layer in clf.network_.layers] == [(2, 4), (4, 1)]
    assert clf.score(X, y) == 1.0
    np.testing.assert_array_equal(clf.predict(X), y)
    assert clf.history_["loss"][-1] < 0.01


def test_digits_relu_net_reaches_97_percent():
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    digits = datasets.load_digits()
    X_train, X_test, y_train, y_test = model_selection.train_test_split(
        digits.data, digits.target, test_size=0.25, stratify=digits.target, random_state=0
    )
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std[std == 0] = 1
    X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    clf = MLP((64,), "relu", epochs=100, batch_size=32, seed=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.97


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(optimizer="sgd", lr=0.05, momentum=0.9),
        dict(activation="prelu", weight_decay=1e-3),
        dict(activation="gelu", batch_norm=True, dropout=0.2),
        dict(dtype="float64", activation="leaky_relu"),
    ],
)
def test_configurations_train(kwargs):
    X, y = blobs()
    clf = MLP(
        **{"hidden_sizes": (16, 8), "epochs": 10, "batch_size": 32, "lr": 0.01, "seed": 0, **kwargs}
    ).fit(X, y)
    assert clf.score(X, y) > 0.9
    assert clf.network_.params[0].value.dtype == np.dtype(kwargs.get("dtype", "float32"))


def test_prelu_slope_is_learned_without_weight_decay():
    X, y = blobs()
    clf = MLP((8,), "prelu", epochs=5, batch_size=32, lr=0.01, weight_decay=0.5, seed=0)
    clf.fit(X, y)
    layer = clf.network_.layers[0]
    assert not np.allclose(layer.slope.value, 0.25)
    assert not layer.slope.decay and layer.W.decay and not layer.b.decay


def test_trainer_uses_serial_kernels():
    net = Network((3, 4, 4, 2), "relu", rng=0)
    for layer in net.layers[:-1]:
        assert layer.act.forward_kernel.__name__.endswith("_serial")
        assert layer.act.backward_kernel.__name__.endswith("_serial")


def test_labels_of_any_hashable_type_and_probabilities():
    X, y = blobs()
    names = np.array(["cat", "dog", "eel"])[y]
    clf = MLP((16,), epochs=5, batch_size=32, lr=0.01, seed=0).fit(X, names)
    assert list(clf.classes_) == ["cat", "dog", "eel"]
    assert set(clf.predict(X[:20])) <= {"cat", "dog", "eel"}
    p = clf.predict_proba(X[:20])
    assert p.shape == (20, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(clf.classes_[p.argmax(axis=1)], clf.predict(X[:20]))

    binary = np.where(y == 0, "yes", "no")
    clf = MLP((8,), epochs=10, batch_size=32, lr=0.01, seed=0).fit(X, binary)
    p = clf.predict_proba(X[:20])
    assert p.shape == (20, 2) and clf.network_.layers[-1].W.value.shape[1] == 1
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[p.argmax(axis=1)], clf.predict(X[:20]))
    assert clf.score(X, binary) > 0.9


def test_same_seed_same_model():
    X, y = blobs()
    kw = dict(hidden_sizes=(8,), epochs=3, batch_size=32, dropout=0.2, seed=7)
    a, b, c = MLP(**kw).fit(X, y), MLP(**kw).fit(X, y), MLP(**{**kw, "seed": 8}).fit(X, y)
    for pa, pb in zip(a.network_.params, b.network_.params):
        np.testing.assert_array_equal(pa.value, pb.value)
    assert a.history_ == b.history_
    assert not np.array_equal(a.network_.params[0].value, c.network_.params[0].value)


def test_verbose_progress(capsys, monkeypatch):
    X, y = blobs(n=60)
    MLP((4,), epochs=2, verbose=True, seed=0).fit(X, y)
    assert "loss" in capsys.readouterr().err  # tqdm writes to stderr
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # as if tqdm were not installed
    MLP((4,), epochs=2, verbose=True, seed=0).fit(X, y)
    out = capsys.readouterr().out
    assert "epoch 2: loss" in out and "acc" in out


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(activation="relu7"), "unknown activation 'relu7'; valid names: .*prelu"),
        (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'"),
        (dict(init="xavier"), "unknown init 'xavier'"),
        (dict(dtype="float16"), "dtype must be 'float32' or 'float64'"),
        (dict(hidden_sizes=(8, 0)), "hidden_sizes entries must be a positive integer"),
        (dict(dropout=1.0), "dropout must be a number in"),
        (dict(lr=0.0), "lr must be a number in"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(epochs=2.5), "epochs must be a positive integer"),
    ],
)
def test_bad_hyperparameters(kwargs, message):
    X, y = blobs(n=20)
    with pytest.raises(ValueError, match=message):
        MLP(**kwargs).fit(X, y)


def test_bad_data():
    X, y = blobs(n=20)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        MLP().fit(bad, y)
    bad[3, 1] = -np.inf
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        MLP().fit(bad, y)
    huge = X.astype(np.float64)
    huge[3, 1] = 1e39  # finite, beyond float32 (the default dtype): said so, no warning
    with pytest.raises(ValueError, match="beyond the range of float32"):
        MLP().fit(huge, y)
    fitted = MLP(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="beyond the range of float32"):
        fitted.predict(huge)
    with pytest.raises(ValueError, match="X has 20 samples but its labels have 19"):
        MLP().fit(X, y[:-1])
    with pytest.raises(ValueError, match="single class"):
        MLP().fit(X, np.zeros(20))
    with pytest.raises(ValueError, match="X must be 2-D"):
        MLP().fit(X[:, 0], y)
    with pytest.raises(ValueError, match="y must be 1-D"):
        MLP().fit(X, y[:, None])
    with pytest.raises(ValueError, match="not fitted"):
        MLP().predict(X)
    with pytest.raises(ValueError, match="validation y has labels not in the training data"):
        MLP(epochs=1).fit(X, y, validation_data=(X, y + 10))
    clf = MLP((4,), epochs=1, seed=0).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, the model was fitted with 4"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="X contains NaN"):
        clf.predict_proba(bad)


def test_batch_norm_last_batch_of_one_row_joins_the_previous():
    """9 samples in batches of 8 would leave a 1-row batch: its variance is undefined (the
    running variance became NaN and every prediction NaN)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((9, 3))
    y = np.arange(9) % 2
    clf = MLP(hidden_sizes=(4,), batch_norm=True, batch_size=8, epochs=2, seed=0).fit(X, y)
    assert np.isfinite(clf.network_.layers[0].running_var).all()
    assert np.isfinite(clf.predict_proba(X)).all()
    with pytest.raises(ValueError, match="batch_size >= 2"):
        MLP(batch_norm=True, batch_size=1).fit(X, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trainer_statistics_kernels_match_numpy(dtype):
    """count_correct (accuracy during training) and column_sums (output-layer bias gradient)
    against NumPy, odd shapes included."""
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((37, 5)).astype(dtype)
    labels = rng.integers(0, 5, 37)
    assert mlp.count_correct(logits, labels, False) == np.count_nonzero(
        logits.argmax(axis=1) == labels
    )
    one = logits[:, :1].copy()
    targets = rng.integers(0, 2, 37).astype(dtype)
    assert mlp.count_correct(one, targets, True) == np.count_nonzero(
        (one[:, 0] > 0) == (targets > 0.5)
    )
    out = np.full(5, np.nan, dtype)
    mlp.column_sums(logits, out)
    np.testing.assert_allclose(out, logits.astype(np.float64).sum(axis=0), rtol=1e-6)


def test_trainer_arrays_are_64_byte_aligned():
    """Parameters, gradients, optimizer state and work buffers start on a cache line (NumPy
    gives 16 bytes: the kernels' 64-byte vector accesses would straddle two lines)."""
    for shape in [(0,), (3,), (5, 7), (128, 256), 9]:
        for dtype in (np.float32, np.float64, np.bool_, np.intp):
            a = mlp.aligned_empty(shape, dtype)
            assert a.shape == np.empty(shape).shape and a.dtype == dtype and a.flags.c_contiguous
            assert a.flags.writeable and (a.size == 0 or a.ctypes.data % mlp.ALIGNMENT == 0)
    X, y = blobs()
    for optimizer in ("sgd", "adam"):
        clf = MLP((16,), epochs=1, batch_size=32, optimizer=optimizer, dropout=0.1, seed=0)
        clf.fit(X, y)
        layers = clf.network_.layers
        arrays = [a for p in clf.network_.params for a in (p.value, p.grad)]
        arrays += [buf for layer in layers for buf, _ in layer._buffers.values()]
        assert len(arrays) > 10
        assert all(a.ctypes.data % mlp.ALIGNMENT == 0 for a in arrays)
    ops = mlp.HostOps()
    aligned = ops.empty((4, 4), np.float32)
    assert ops.asarray(aligned) is aligned  # no copy when already aligned
    unaligned = np.empty(17, np.float32)[1:]
    copy = ops.asarray(unaligned)
    assert copy.ctypes.data % mlp.ALIGNMENT == 0 and np.shares_memory(copy, unaligned) is False


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_partial_fit_epochs_equal_fit(optimizer):
    """k partial_fit calls from a fresh model train the model of fit(epochs=k), dropout's
    random masks included; fit then partial_fit goes on from fit's state."""
    X, y = blobs()
    kw = dict(hidden_sizes=(8,), batch_size=32, dropout=0.2, optimizer=optimizer, seed=3)
    full = MLP(**kw, epochs=3).fit(X, y)
    parts = MLP(**kw)
    for _ in range(3):
        assert parts.partial_fit(X, y, classes=np.unique(y)) is parts
    for a, b in zip(full.network_.params, parts.network_.params):
        np.testing.assert_array_equal(a.value, b.value)
    assert full.history_ == parts.history_ and len(parts.history_["loss"]) == 3
    more = MLP(**kw, epochs=2).fit(X, y).partial_fit(X, y)
    for a, b in zip(full.network_.params, more.network_.params):
        np.testing.assert_array_equal(a.value, b.value)
    # data in parts, labels of any type; predictions use every class
    names = np.array(["a", "b", "c"])[y]
    clf = MLP((8,), epochs=1, batch_size=16, seed=0)
    clf.partial_fit(X[:40], names[:40], classes=["c", "a", "b"])
    clf.partial_fit(X[40:], names[40:])
    assert list(clf.classes_) == ["a", "b", "c"] and len(clf.history_["loss"]) == 2
    assert clf.predict_proba(X[:5]).shape == (5, 3)


def test_partial_fit_errors():
    X, y = blobs()
    with pytest.raises(ValueError, match="first call to partial_fit needs classes"):
        MLP().partial_fit(X, y)
    with pytest.raises(ValueError, match="at least 2 distinct labels"):
        MLP().partial_fit(X, y, classes=[0, 0, 1])
    with pytest.raises(ValueError, match="at least 2 distinct labels"):
        MLP().partial_fit(X, y, classes=[1])
    fresh = MLP()
    with pytest.raises(ValueError, match="labels not in the training data: \\[2\\]"):
        fresh.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(fresh, "network_")  # nothing was set up
    clf = MLP((4,), batch_size=32).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="differ from the classes of the first call"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="X has 3 features, the model was trained with 4"):
        clf.partial_fit(np.zeros((4, 3)), [0, 1, 2, 0])
    with pytest.raises(ValueError, match="NaN"):
        clf.partial_fit(np.full((4, 4), np.nan), [0, 1, 2, 0])
    assert len(clf.history_["loss"]) == 1  # the failed calls trained nothing
    # batch statistics need 2 samples: one alone would make the running variance NaN for good
    norm = MLP((4,), batch_norm=True, batch_size=32)
    with pytest.raises(ValueError, match="at least 2 samples"):
        norm.partial_fit(X[:1], y[:1], classes=[0, 1, 2])
    assert not hasattr(norm, "network_")
    norm.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="at least 2 samples"):
        norm.partial_fit(X[:1], y[:1])
    assert np.isfinite(norm.predict_proba(X)).all()
    # the first call's hyperparameters stay: batch_norm changed later changes nothing
    norm.batch_norm = False
    with pytest.raises(ValueError, match="at least 2 samples"):
        norm.partial_fit(X[:1], y[:1])
    norm.partial_fit(X[:33], y[:33])  # a last batch of one row joins the one before
    assert np.isfinite(norm.predict_proba(X)).all()


def test_bad_hyperparameters_are_named():
    """Each with a ValueError that names it (scikit-learn's convention), before anything
    is set up."""
    X, y = blobs(n=20)
    cases = [
        (dict(lr=1e39), "lr = 1e\\+39 overflows float32"),
        (dict(weight_decay=1e39), "weight_decay = 1e\\+39 overflows float32"),
        (dict(lr=1e-46), "lr = 1e-46 rounds to 0 in float32"),
        (dict(seed="abc"), "seed must be None, a non-negative integer"),
        (dict(seed=-1), "seed must be None"),
        (dict(seed=1.5), "seed must be None"),
        (dict(hidden_sizes=None), "hidden_sizes must be an int or a sequence of ints"),
        (dict(hidden_sizes=8.0), "hidden_sizes must be an int or a sequence of ints"),
    ]
    for kwargs, message in cases:
        clf = MLP(epochs=1, **kwargs)
        with pytest.raises(ValueError, match=message):
            clf.fit(X, y)
        assert not hasattr(clf, "classes_")
    MLP(epochs=1, lr=1e39, dtype="float64")._check_params()  # representable in float64
    with pytest.raises(ValueError, match="validation_data must be a pair"):
        MLP(epochs=1).fit(X, y, validation_data=X)


def test_labels_of_mixed_types_are_refused_by_name():
    X, _ = blobs(n=20)
    y = np.array(["a"] * 10 + [None] * 10, dtype=object)
    with pytest.raises(ValueError, match="y mixes label types that cannot be ordered"):
        MLP(epochs=1).fit(X, y)
    classes = np.array(["a", 1], dtype=object)
    with pytest.raises(ValueError, match="classes mixes label types"):
        MLP(epochs=1).partial_fit(X, ["a"] * 20, classes=classes)
    clf = MLP(epochs=1).fit(X, np.array(["a", "b"] * 10))
    with pytest.raises(ValueError, match="labels of another type than the classes"):
        clf.partial_fit(X, np.array([1, 2] * 10, dtype=object))


def test_training_that_diverges_is_an_error():
    """As scikit-learn's MLPClassifier: a learning rate that makes the weights overflow ends
    with a ValueError (not a model that predicts from NaN), and no RuntimeWarning escapes
    (they are errors in the tests)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 10))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0)
    clf = MLP((32, 32), optimizer="sgd", lr=100.0, epochs=20, seed=0)
    with pytest.raises(ValueError, match=r"training diverged in epoch \d+: the loss is nan"):
        clf.fit(X, y)
    assert not np.isfinite(clf.history_["loss"][-1])
    assert np.all(np.isfinite(clf.history_["loss"][:-1]))
    clf.predict(X)  # a diverged model predicts (NaN logits) without warnings
    with pytest.raises(ValueError, match="training diverged in epoch 1"):
        MLP((8,), epochs=2, seed=0).fit(np.clip(X * 1e38, -3e38, 3e38).astype(np.float32), y)
    fine = MLP((8,), epochs=1, seed=0).fit(X, y)  # an overflow in the last step: fit checks
    fine.network_.params[1].value[0] = np.inf  # the weights too, not only the loss
    fine._check_finite(fine.history_)  # (per epoch: the loss and gradient norms only)
    with pytest.raises(ValueError, match="diverged in epoch 1: some parameters are not finite"):
        fine._check_finite(fine.history_, parameters=True)


def test_labels_that_cannot_be_classes_are_refused():
    X, y = blobs(n=20)
    with pytest.raises(ValueError, match="y contains NaN"):
        MLP(epochs=1).fit(X, np.where(np.arange(20) == 3, np.nan, y.astype(float)))
    labels = np.array(["a", "b"] * 10, dtype=object)
    labels[3] = float("nan")  # as pandas' missing values in a column of strings
    with pytest.raises(ValueError, match="y contains NaN"):
        MLP(epochs=1).fit(X, labels)
    clf = MLP(epochs=1, seed=0).fit(X, y)
    with pytest.raises(ValueError, match=r"y has strings as labels, the classes are numbers"):
        clf.score(X, y.astype(str))
    assert clf.score(X, y + 10) == 0.0  # labels it never saw: wrong, not an error
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(ValueError, match=r"X is a sparse matrix.*toarray"):
        clf.predict(sparse.csr_matrix(X))


def test_scikit_learn_estimator_api():
    """get_params / set_params / tags: scikit-learn's clone and model selection take the MLP."""
    sklearn_base = pytest.importorskip("sklearn.base")
    from sklearn.model_selection import cross_val_score

    clf = MLP((8,), epochs=2, seed=0, lr=0.01)
    assert clf.get_params()["hidden_sizes"] == (8,) and clf.get_params()["device"] == "cpu"
    assert repr(clf) == "MLP(hidden_sizes=(8,), lr=0.01, epochs=2, seed=0)"
    twin = sklearn_base.clone(clf)
    assert twin is not clf and twin.get_params() == clf.get_params()
    assert sklearn_base.is_classifier(clf)
    assert clf.set_params(epochs=3) is clf and clf.epochs == 3
    with pytest.raises(ValueError, match="no parameter 'epoch'; valid parameters: hidden_sizes"):
        clf.set_params(epoch=3)
    X, y = blobs(n=60)
    scores = cross_val_score(MLP((8,), epochs=5, seed=0, lr=0.05), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.5
    assert repr(MLP(hidden_sizes=np.array([4]))).startswith("MLP(hidden_sizes=array([4])")
