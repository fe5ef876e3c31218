"""The GPU benchmark scripts run end to end under numba's simulator (their correctness part:
every kernel against the CPU), so that the one run a lent GPU allows does not fail on them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cuda.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(not SIMULATOR, reason="the scripts' --simulate mode")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "script",
    [
        ["bench/gpu.py", "--only", "relu,sigmoid", "--dtypes", "float32"],
        ["bench/gpu_loops.py"],
    ],
    ids=lambda args: args[0],
)
def test_gpu_benchmark_script_checks_pass_in_the_simulator(script):
    run = subprocess.run(
        [sys.executable, *script, "--simulate"],
        cwd=ROOT,
        env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "match the CPU (<=" in run.stdout


def test_gpu_mlp_launch_counts_and_costs_run_in_the_simulator(monkeypatch):
    """bench/gpu_mlp.py's launch count and launch-cost loop (its epochs are GPU-sized)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import _mlp_cases
    import gpu_mlp

    monkeypatch.setattr(_mlp_cases, "HIDDEN", (8, 8))
    monkeypatch.setattr(_mlp_cases, "BATCH", 16)
    monkeypatch.setenv("FASTACT_CUDA_MATMUL", "")  # restored after the test (it sets numba)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((48, 6)).astype(np.float32), rng.integers(0, 3, 48)
    assert gpu_mlp.launches_per_step(X, y) == 26  # as tests/cuda/test_cuda_mlp.py counts
    costs = gpu_mlp.launch_costs(repeat=2)
    assert {"numba launch: zero (1 array)", "numba launch: sgd (9 arguments)"} <= set(costs)
    assert all(us > 0 for us in costs.values())
