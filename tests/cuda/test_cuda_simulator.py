"""fastact's fix of the simulator's shared-array race (fastact/_cuda_simulator.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest

import fastact as fa
from fastact import _config
from tests.cuda.conftest import SIMULATOR

cuda = pytest.importorskip("numba.cuda")
pytestmark = pytest.mark.skipif(not SIMULATOR, reason="numba's CUDA simulator only")


def test_block_sums_keep_every_threads_share_when_threads_meet_at_a_new_shared_array(
    monkeypatch, rng
):
    """The first block's threads reach cuda.shared.array together; numpy.empty, which the
    simulator calls between its look-up and its store, is slowed down so that they do hand the
    GIL over in between. Without the lock 18 of 20 such launches lost shares of the sum."""
    fa.cuda.fused_kernels()  # the kernel modules install the lock on import
    from numba.cuda.simulator import kernelapi

    assert kernelapi.FakeCUDAShared.array.fastact_locked
    monkeypatch.setattr(_config, "CUDA_BLOCK_SIZE", 8)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 3)
    n = 143
    g = rng.standard_normal(n)
    want = np.sum(g * g)
    p, v, squares = (cuda.to_device(np.zeros(k)) for k in (n, n, 1))
    dg = cuda.to_device(g)
    empty = np.empty

    def slow_empty(*args, **kwargs):
        time.sleep(5e-4)
        return empty(*args, **kwargs)

    monkeypatch.setattr(np, "empty", slow_empty)
    sgd = fa.cuda.fused_kernels().sgd[fa.cuda._grid_1d(n)]
    for launch in range(1, 6):
        sgd(p, dg, v, 0.0, 0.0, 0.0, False, squares, 0)
        np.testing.assert_allclose(squares.copy_to_host(), [launch * want], rtol=1e-14)


def test_shared_arrays_are_one_per_line():
    """The replacement keys arrays as numba does: two lines, two arrays, each the same for all
    the threads of a block."""

    @cuda.jit
    def two_arrays(out):
        a = cuda.shared.array(4, np.float64)
        b = cuda.shared.array(4, np.float64)
        t = cuda.threadIdx.x
        a[t] = t
        b[t] = 10 * t
        cuda.syncthreads()
        out[cuda.blockIdx.x, t] = a[3 - t] + b[3 - t]

    out = cuda.to_device(np.full((2, 4), np.nan))
    two_arrays[2, 4](out)
    np.testing.assert_array_equal(out.copy_to_host(), [[33, 22, 11, 0]] * 2)
