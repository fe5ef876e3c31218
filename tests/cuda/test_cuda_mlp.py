"""MLP(device='cuda') against the CPU trainer: the same seed gives the same initial weights and
the same batches, so without dropout the two must train the same model (float64: to ~1e-9)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from fastact import _config
from fastact.mlp import MLP
from tests.cuda.conftest import SIMULATOR

cuda = pytest.importorskip("numba.cuda")


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    monkeypatch.setattr(_config, "CUDA_BLOCK_SIZE", 8)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 3)
    monkeypatch.setattr(_config, "CUDA_REDUCE_ROWS", 2)
    monkeypatch.setenv("FASTACT_CUDA_MATMUL", "numba")  # fastact's kernel, even with CuPy


def data(classes, rng, n=30, features=4):
    X = rng.standard_normal((n, features))
    y = np.arange(n) % classes
    X[:, 0] += y  # learnable
    return X, np.array(["a", "b", "c"])[y]


@pytest.mark.parametrize(
    "kw",
    [
        dict(activation="relu", optimizer="sgd"),
        dict(activation="tanh", optimizer="adam", weight_decay=0.01),
        dict(activation="prelu", optimizer="adam"),
        dict(activation="gelu", optimizer="sgd", batch_norm=True, weight_decay=0.01),
    ],
    ids=lambda kw: "-".join(str(v) for v in kw.values()),
)
@pytest.mark.parametrize("classes", [2, 3])
def test_device_training_matches_cpu(kw, classes, rng):
    """8 hidden units: the first layer's bias kernels take four columns a thread."""
    X, y = data(classes, rng)
    common = dict(hidden_sizes=(8, 3), epochs=2, batch_size=8, lr=0.05, seed=3, dtype="float64")
    cpu = MLP(**common, **kw).fit(X, y)
    gpu = MLP(**common, **kw, device="cuda").fit(X, y, validation_data=(X, y))
    for a, b in zip(cpu.network_.params, gpu.network_.params):
        np.testing.assert_allclose(b.value.copy_to_host(), a.value, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gpu.history_["loss"], cpu.history_["loss"], rtol=1e-9)
    assert gpu.history_["train_accuracy"] == cpu.history_["train_accuracy"]
    np.testing.assert_allclose(gpu.history_["grad_norms"], cpu.history_["grad_norms"], rtol=1e-9)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=1e-9, atol=1e-12)
    assert (gpu.predict(X) == cpu.predict(X)).all()
    assert gpu.history_["val_accuracy"][-1] == gpu.score(X, y)
    if kw.get("batch_norm"):
        layer_cpu, layer_gpu = cpu.network_.layers[0], gpu.network_.layers[0]
        np.testing.assert_allclose(
            layer_gpu.running_var.copy_to_host(), layer_cpu.running_var, rtol=1e-9
        )


def test_device_float32_with_dropout_trains(rng):
    X, y = data(2, rng, n=40)
    clf = MLP(hidden_sizes=(6,), dropout=0.3, epochs=3, batch_size=16, lr=0.05, seed=0,
              device="cuda").fit(X, y)  # fmt: skip
    assert clf.network_.params[0].value.dtype == np.float32
    assert np.isfinite(clf.history_["loss"]).all()
    again = MLP(hidden_sizes=(6,), dropout=0.3, epochs=3, batch_size=16, lr=0.05, seed=0,
                device="cuda").fit(X, y)  # fmt: skip
    # same seed, same masks (the loss sums' block order may vary on a GPU: not bitwise)
    np.testing.assert_allclose(again.history_["loss"], clf.history_["loss"], rtol=1e-6)


@pytest.mark.parametrize(
    "trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(7, 5, 9), (1, 1, 1), (10, 13, 6), (4, 0, 3)])
def test_matmul_kernel(trans_a, trans_b, dtype, shape, rng):
    """Against NumPy in float64 on the same values, for every transposition. The simulator's
    tiles are 4 x 4 (MATMUL_TILE), so these products span several tiles with partial ones at
    the edges, an inner dimension that is not a multiple of the tile, and (CUDA_MAX_BLOCKS 3,
    from the fixture) more tiles than blocks: the grid-stride loop. An inner dimension of 0
    gives zeros. Inputs are left unchanged."""
    from fastact._cuda_fused import MATMUL_TILE
    from fastact._cuda_mlp import DeviceOps

    m, k, n = shape
    assert MATMUL_TILE == 4 or not SIMULATOR
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    da, db = cuda.to_device(a), cuda.to_device(b)
    out = cuda.to_device(np.full((m, n), np.nan, dtype))
    DeviceOps().matmul(da, db, out, trans_a, trans_b)
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    # summed in the dtype: k roundings of terms up to ~|a||b|
    tol = 1e-12 if dtype == np.float64 else 4e-6 * max(k, 1)
    np.testing.assert_allclose(out.copy_to_host(), want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(da.copy_to_host(), a)
    np.testing.assert_array_equal(db.copy_to_host(), b)


def test_bad_device():
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        MLP(device="gpu").fit(np.zeros((4, 2)), [0, 1, 0, 1])
    X = cuda.to_device(np.zeros((4, 2)))  # the MLP takes host data, also with device='cuda'
    with pytest.raises(ValueError, match=r"X is a CUDA device array; the MLP takes host"):
        MLP(device="cuda").fit(X, [0, 1, 0, 1])


# the simulator runs the kernels as NumPy scalar code, whose overflow warns (a GPU's does not)
@pytest.mark.filterwarnings("ignore:.*overflow encountered:RuntimeWarning")
def test_device_training_that_diverges_is_an_error(rng):
    """As on the CPU: an epoch that ends with a non-finite loss, gradient norm or parameter
    raises (the statistics come from the device's one copy per epoch), in the same epoch."""
    X, y = data(3, rng, n=32)
    common = dict(hidden_sizes=(6,), optimizer="sgd", lr=1e4, epochs=6, seed=0, dtype="float64")
    with pytest.raises(ValueError, match=r"diverged in epoch (\d+)") as host:
        MLP(**common).fit(X * 1e100, y)
    with pytest.raises(ValueError, match=r"diverged in epoch (\d+)") as device:
        MLP(**common, device="cuda").fit(X * 1e100, y)
    epoch = str(host.value).split("epoch ")[1].split(":")[0]
    assert f"diverged in epoch {epoch}:" in str(device.value)


def test_device_partial_fit_continues_like_fit(rng):
    """partial_fit on the device: two calls train fit(epochs=2)'s model, as on the CPU."""
    X, y = data(3, rng)
    common = dict(hidden_sizes=(5,), batch_size=8, lr=0.05, seed=3, dtype="float64")
    full = MLP(**common, epochs=2, device="cuda").fit(X, y)
    parts = MLP(**common, device="cuda")
    parts.partial_fit(X, y, classes=["a", "b", "c"]).partial_fit(X, y)
    for a, b in zip(full.network_.params, parts.network_.params):
        np.testing.assert_allclose(b.value.copy_to_host(), a.value.copy_to_host(), rtol=1e-12)
    # the loss is summed with one atomic add per block: its order may vary on a GPU
    np.testing.assert_allclose(parts.history_["loss"], full.history_["loss"], rtol=1e-12)
    assert parts.history_["train_accuracy"] == full.history_["train_accuracy"]


@pytest.mark.skipif(not SIMULATOR, reason="counts the simulator's kernel launches")
def test_device_training_step_launches(rng, monkeypatch):
    """The GPU trainer is launch-bound at small batches (docs/gpu.md): a step of a 3-layer ReLU
    net with SGD momentum takes 20 launches. The batch (rows and targets) is one gather; one
    sgd launch updates every parameter (they are views of one buffer: ParamPack) and sums the
    weight gradients' squares, and one launch per step (end_step) counts the correct
    predictions and takes the square roots (it was an sgd launch per parameter: 26, and
    sum_squares + move_sqrt per layer before that: 32; 21 with a launch for the count)."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    X, y = data(3, rng, n=32)
    launches = []
    configure = FakeCUDAKernel.__getitem__

    def counted(kernel, configuration):
        launches.append(kernel.__name__)
        return configure(kernel, configuration)

    mlp = MLP(hidden_sizes=(5, 3), epochs=1, batch_size=8, optimizer="sgd", seed=0, device="cuda")
    mlp.fit(X, y)  # compiles, allocates and copies the data first
    monkeypatch.setattr(FakeCUDAKernel, "__getitem__", counted)
    mlp.partial_fit(X, y)
    steps = 32 // 8
    # a step: forward 3 matmuls, 2 bias+relu, 1 add_bias; the loss; backward 5 matmuls, 2 x
    # (bias+relu backward, column_sums), 1 column_sums; sgd; end_step; gather
    counts = {name: launches.count(name) // steps for name in set(launches)}
    assert len(launches) == 20 * steps, counts
    assert counts["gather_batch"] == counts["end_step"] == counts["sgd_segments"] == 1


def test_device_batch_norm_steps_allocate_nothing(rng, count_allocations):
    """A training step with batch norm takes its temporaries (the statistics' and gradients'
    partial sums, the backward's coefficients) from fastact.cuda's scratch: after the first
    epoch no step allocates device memory or copies from the host (each step made 6
    allocations and a copy of zeros per batch-norm layer before the scratch)."""
    X, y = data(3, rng, n=32)
    mlp = MLP(hidden_sizes=(5, 3), epochs=1, batch_size=8, batch_norm=True, seed=0,
              device="cuda")  # fmt: skip
    mlp.fit(X, y)  # compiles, allocates and copies the data first
    calls = count_allocations()
    mlp.partial_fit(X, y)
    # once per call of partial_fit (4 steps here): the data, its targets, the batch order, the
    # epoch's statistics and the labels' flag
    assert calls == ["to_device"] * 5, calls


def test_device_ops_flat_views_are_kept_per_array():
    """DeviceOps hands the kernels one 1-D view per array (numba types each array object a
    launch gets once), and keeps at most 64 of them."""
    from numba import cuda

    from fastact._cuda_mlp import DeviceOps

    ops = DeviceOps()
    a = cuda.device_array((3, 4), np.float32)
    flat = ops._flat(a)
    assert flat.shape == (12,) and ops._flat(a) is flat
    assert ops._flat(a[:2]).shape == (8,)
    kept = [cuda.device_array((2, 2), np.float32) for _ in range(100)]
    for b in kept:
        ops._flat(b)
    assert len(ops._views) <= 64
    assert ops._flat(kept[-1]) is ops._flat(kept[-1])


def test_device_cupy_matmul_views_are_made_once(rng, monkeypatch):
    """With CuPy, each matrix product reads its three arrays through CuPy views: made once per
    array (CuPy reads an array's __cuda_array_interface__ to view it), so that a steady
    epoch makes none. A stand-in for CuPy (products on the host) counts them, and checks
    that each runs on the default stream (the caller's current CuPy stream may be another)."""
    from fastact import _cuda_mlp

    class View:
        def __init__(self, array, transposed=False):
            self.array, self.transposed = array, transposed

        @property
        def T(self):
            return View(self.array, not self.transposed)

        def host(self):
            h = self.array.copy_to_host()
            return h.T if self.transposed else h

    made = []

    def asarray(a):
        made.append(a)
        return View(a)

    class NullStream:  # cupy.cuda.Stream.null: records whether it is the current stream
        current = False

        def __enter__(self):
            NullStream.current = True

        def __exit__(self, *exc):
            NullStream.current = False

    def matmul(a, b, out):
        assert NullStream.current, "cuBLAS must run on the default stream, as the kernels"
        out.array.copy_to_device(np.ascontiguousarray(a.host() @ b.host()))

    stand_in = type("cupy", (), {"asarray": staticmethod(asarray), "matmul": staticmethod(matmul)})
    stand_in.cuda = types.SimpleNamespace(Stream=types.SimpleNamespace(null=NullStream()))
    monkeypatch.setattr(_cuda_mlp, "_cupy", lambda: stand_in)
    X, y = data(3, rng, n=32)
    common = dict(hidden_sizes=(5, 3), epochs=1, batch_size=8, seed=0, dtype="float64")
    mlp = MLP(**common, device="cuda").fit(X, y)
    first = len(made)
    mlp.partial_fit(X, y)
    assert first > 0 and len(made) == first  # 4 steps, no new views
    mlp.predict(np.concatenate([X] * 2))  # a chunk of 64 rows: viewed, not kept
    kept = [array.shape for array, _ in mlp.network_.ops._views.values()]
    assert len(made) > first and (64, 4) not in kept, kept
    monkeypatch.setattr(_cuda_mlp, "_cupy", lambda: None)
    own = MLP(**common, device="cuda").fit(X, y).partial_fit(X, y)
    for a, b in zip(mlp.network_.params, own.network_.params):
        np.testing.assert_allclose(a.value.copy_to_host(), b.value.copy_to_host(), rtol=1e-12)


@pytest.mark.skipif(not SIMULATOR, reason="records the simulator's kernel arguments")
@pytest.mark.parametrize("kw", [{}, {"dropout": 0.2}, {"batch_norm": True}])
def test_device_steps_reuse_their_array_objects_after_predictions(kw, rng, monkeypatch):
    """numba types each array object a launch is given once: after a prediction (a chunk of
    more rows than a batch grows the layers' buffers) a training step still launches with
    the array objects of the step before it, none new."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    X, y = data(3, rng, n=32)
    mlp = MLP(hidden_sizes=(5, 3), epochs=1, batch_size=8, seed=0, device="cuda", **kw)
    mlp.fit(X, y)
    mlp.predict(np.concatenate([X] * 2))  # 64 rows, more than a batch: the buffers grow
    steps: list[list] = []
    launch = FakeCUDAKernel.__call__

    def recorded(kernel, *args):
        if not kernel._device:  # a launch, not a device function called by a kernel
            if kernel.__name__ == "gather_batch":
                steps.append([])
            steps[-1].extend(a for a in args if isinstance(a, FakeCUDAArray))
        return launch(kernel, *args)

    monkeypatch.setattr(FakeCUDAKernel, "__call__", recorded)
    mlp.partial_fit(X, y)
    assert len(steps) == 4
    for before, step in zip(steps[1:], steps[2:]):  # the first step after predict may differ
        known = {id(a) for a in before}
        assert all(id(a) in known for a in step), [a.shape for a in step if id(a) not in known]
