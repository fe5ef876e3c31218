"""The GPU benchmark scripts run end to end under numba's simulator (their correctness part:
every kernel against the CPU), so that the one run a lent GPU allows does not fail on them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
