"""The GPU benchmark scripts run end to end under numba's simulator (their correctness part:
every kernel against the CPU), so that the one run a lent GPU allows does not fail on them."""

from __future__ import annotations

import json
import math
import os
import signal
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


def test_gpu_script_cut_short_by_its_time_limit_prints_what_it_measured():
    """bench/gpu_all.sh runs bench/gpu.py under `timeout`, whose SIGTERM must not lose the
    rows already measured: each prints as it comes, and the tables again at the end."""
    proc = subprocess.Popen(
        [sys.executable, "bench/gpu.py", "--only", "sigmoid", "--simulate"],
        cwd=ROOT,
        env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    try:
        for line in proc.stdout:  # the float32 timings' first row, then the time limit
            seen.append(line)
            if line.startswith("sigmoid "):
                proc.send_signal(signal.SIGTERM)
                break
        rest = proc.communicate(timeout=600)[0]
    finally:
        proc.kill()
    out = "".join(seen) + rest
    assert proc.returncode == 1, out[-3000:]
    assert "cut short (signal 15)" in out and "no check failed (checked: float32)" in out
    final = rest.split("the tables below hold what was measured by then", 1)[1]
    assert "float32: 96 elements" in final and "\nsigmoid " in final, out[-3000:]
    assert "float64: 96 elements" not in out  # float64 was neither checked nor timed


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
    assert gpu_mlp.launches_per_step(X, y) == 20  # as tests/cuda/test_cuda_mlp.py counts
    costs = gpu_mlp.launch_costs(repeat=2)
    assert {"numba launch: zero (1 array)", "numba launch: sgd (9 arguments)"} <= set(costs)
    assert all(us > 0 for us in costs.values())


def test_gpu_mlp_matmul_times_check_both_kernels_in_the_simulator(monkeypatch):
    """bench/gpu_mlp.py's matrix products of a step (here small ones, every transposition):
    the tiled and the naive kernel agree with NumPy before they are timed."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import gpu_mlp

    products = [((6, 5, 7), False, False), ((5, 6, 7), True, False), ((6, 9, 3), False, True)]
    monkeypatch.setattr(gpu_mlp, "STEP_PRODUCTS", products)
    totals, worst = gpu_mlp.matmul_times(repeat=1)
    assert set(totals) >= {"fastact tiled", "naive (before)"}
    assert all(math.isfinite(ms) for ms in totals.values())  # the simulator: no GPU times
    assert worst < 1e-5


def test_gpu_host_cost_steps_make_no_new_arrays(tmp_path):
    """bench/gpu_host_cost.py runs numba's real launch path with the driver stubbed out (no
    simulator): a steady training step launches the kernels the simulator counts and makes no
    new device-array object (numba would type each one again at its launch); also with
    numba's own argument marshalling (--numba-arguments)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = tmp_path / "cost.json"
    run = subprocess.run(
        [sys.executable, "bench/gpu_host_cost.py", "--steps", "30", "--repeat", "1",
         "--numba-arguments", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = json.loads(out.read_text())
    launches = {"relu": 20, "relu + dropout 0.2": 24, "relu + batch norm": 32, "prelu": 26,
                "relu, adam": 20}  # fmt: skip
    launches.update({f"{name} (numba arguments)": n for name, n in launches.items()})
    assert {name: row["launches_per_step"] for name, row in rows.items()} == launches
    assert {name: row["arrays_created_per_step"] for name, row in rows.items()} == dict.fromkeys(
        launches, 0
    )
    assert all(math.isfinite(row["host_us_per_step"]) for row in rows.values())  # noisy at 30
