"""Dask and xarray inputs, a Dask LocalCluster with worker processes, and thread safety."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastact as fa

da = pytest.importorskip("dask.array")


@pytest.fixture
def data():
    return np.random.default_rng(7).standard_normal((400, 60)).astype(np.float32) * 4


def test_dask_forward_is_lazy_and_chunkwise(data):
    d = da.from_array(data, chunks=(100, 30))
    y = fa.softplus(d, beta=2.0)
    assert isinstance(y, da.Array) and y.dtype == np.float32 and y.chunks == d.chunks
    np.testing.assert_array_equal(y.compute(), fa.softplus(data, beta=2.0))
    np.testing.assert_array_equal(
        fa.gelu(d, approximate="tanh").compute(), fa.gelu(data, approximate="tanh")
    )


def test_dask_backward_broadcasts(data):
    d = da.from_array(data, chunks=(100, 30))
    g = da.ones((1, 60), chunks=(1, 30), dtype=np.float32)
    got = fa.mish_backward(g, d)
    assert isinstance(got, da.Array)
    np.testing.assert_array_equal(
        got.compute(), fa.mish_backward(np.ones((1, 60), np.float32), data)
    )


def test_dask_backward_with_a_scalar_or_numpy_side(data):
    """One side a Dask array, the other a Python scalar, a list or a NumPy array: broadcast
    as the eager backward does, in the eager result dtype."""
    d = da.from_array(data, chunks=(100, 30))
    for other in (1.0, [0.5] * 60, np.full(60, 0.5, np.float32)):
        got = fa.silu_backward(other, d)
        assert isinstance(got, da.Array)
        want = fa.silu_backward(other, data)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.compute(), want)
    got = fa.sigmoid_backward(d, 0.5)
    np.testing.assert_array_equal(got.compute(), fa.sigmoid_backward(data, 0.5))
    with pytest.raises(TypeError, match="grad_output"):
        fa.silu_backward("a", d)


def test_dask_bad_arguments_fail_eagerly(data):
    d = da.from_array(data, chunks=(100, 30))
    with pytest.raises(ValueError, match="beta = 1e-50 rounds to 0 in float32"):
        fa.softplus(d, beta=1e-50)  # checked in the workers' dtype, at call time
    with pytest.raises(ValueError, match="beta = 1e-50 rounds to 0 in float32"):
        fa.softplus_backward(d, d, beta=1e-50)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        fa.elu(d, -1.0)
    with pytest.raises(TypeError, match="out= is not supported"):
        fa.relu(d, out=np.empty_like(data))


def test_xarray_keeps_coordinates_and_attributes(data):
    xr = pytest.importorskip("xarray")
    a = xr.DataArray(
        data, dims=("batch", "unit"), coords={"batch": np.arange(400)}, attrs={"units": "V"}
    )
    y = fa.silu(a)
    assert isinstance(y, xr.DataArray) and y.attrs == {"units": "V"} and y.dims == a.dims
    assert (y.coords["batch"] == a.coords["batch"]).all()
    np.testing.assert_array_equal(y.values, fa.silu(data))
    lazy = fa.silu(a.chunk({"batch": 100}))
    assert isinstance(lazy.data, da.Array)
    np.testing.assert_array_equal(lazy.values, fa.silu(data))


@pytest.mark.slow
def test_dask_distributed_local_cluster_with_worker_processes(data):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        d = da.from_array(data, chunks=(100, 60))
        got = client.compute(fa.sigmoid(d)).result()
        np.testing.assert_array_equal(got, fa.sigmoid(data))
        got = client.compute(fa.leaky_relu_backward(da.ones_like(d), d, 0.3)).result()
        np.testing.assert_array_equal(got, fa.leaky_relu_backward(np.ones_like(data), data, 0.3))


def test_threads_share_kernels(data):
    """Several Python threads calling the same and different kernels at once."""
    results, errors = {}, []

    def work(i):
        try:
            x = data * (i + 1)
            for _ in range(20):
                results[i] = (fa.tanh(x), fa.relu_backward(x, x), fa.elu(x, 0.5))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, (t, r, e) in results.items():
        x = data * (i + 1)
        np.testing.assert_array_equal(t, fa.tanh(x))
        np.testing.assert_array_equal(r, fa.relu_backward(x, x))
        np.testing.assert_array_equal(e, fa.elu(x, 0.5))


@pytest.mark.slow
def test_threads_during_first_compilation():
    """First compilation of a kernel raced by several threads (a process without the cache)."""
    code = textwrap.dedent("""
        import threading, numpy as np, fastact as fa
        x = np.linspace(-5, 5, 50_001)
        want = None
        out = [None] * 4
        def work(i):
            out[i] = fa.celu(x, 1.5)
        ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        [t.start() for t in ts]; [t.join() for t in ts]
        assert all(np.array_equal(o, out[0]) for o in out)
        print("ok")
    """)
    env = {"FASTACT_DISABLE_CACHE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
