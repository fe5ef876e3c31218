"""The CUDA tests run in a pytest process of their own, never inside the default ``pytest``.

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda      # numba's simulator, no GPU
    FASTACT_CUDA_TESTS=1 python -m pytest tests/cuda        # a real GPU

NUMBA_ENABLE_CUDASIM must be set before numba is imported, so the default run (which imports
numba for the CPU kernels) cannot switch to the simulator: there this folder is not collected.
"""

from __future__ import annotations

import os
import sys

import pytest

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
ENABLED = SIMULATOR or os.environ.get("FASTACT_CUDA_TESTS", "0") not in ("", "0")

if not ENABLED:
    collect_ignore_glob = ["*"]

if SIMULATOR:
    # The simulator runs a block's threads as Python threads, and the thread that runs the
    # block polls them in a loop until all wait at a barrier (cuda.syncthreads): with Python's
    # default switch interval (5 ms) each barrier costs milliseconds of GIL hand-overs. 0.1 ms
    # makes the kernels with barriers (block and column sums, the tiled matmul) several times
    # faster here; it changes scheduling, never results.
    sys.setswitchinterval(1e-4)


@pytest.fixture
def count_allocations(monkeypatch):
    """Call it to start recording: it returns the list that names ("device_array",
    "to_device") every numba allocation and host copy made from then on, by fastact or the
    test (numba.cuda's functions are restored after the test)."""

    def start():
        from numba import cuda

        calls = []

        def recorded(name):
            real = getattr(cuda, name)

            def call(*args, **kwargs):
                calls.append(name)
                return real(*args, **kwargs)

            return call

        for name in ("device_array", "to_device"):
            monkeypatch.setattr(cuda, name, recorded(name))
        return calls

    return start
