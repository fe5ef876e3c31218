"""fastact's launch extension (fastact._cuda_launch) against numba's own argument marshalling:
outside the simulator, which takes no extension, so in a subprocess with the CUDA driver
replaced by stand-ins (tests/cuda/launch_check.py; no GPU needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cuda.conftest import SIMULATOR

ROOT = Path(__file__).resolve().parents[2]


def checked_release() -> bool:
    """Whether the installed numba-cuda is the release the extension was checked against
    (fastact._cuda_launch.CHECKED_VERSION); with another the kernels take numba's path."""
    import numba_cuda

    from fastact._cuda_launch import CHECKED_VERSION

    return numba_cuda.__version__.split(".")[:2] == list(CHECKED_VERSION)


def test_kernels_receive_the_arguments_numbas_own_path_gives(tmp_path):
    """Every launch of MLP steps (SGD, batch norm, dropout, PReLU + Adam) and of public calls
    on C/F-ordered, offset, 0-d and empty device arrays: the values marshalled through the
    extension equal numba's, and the steps send no array through numba's InOut path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NUMBA_ENABLE_CUDASIM", "FASTACT_CUDA_ARGUMENTS")
    }
    out = tmp_path / "launch.json"
    run = subprocess.run(
        [sys.executable, "tests/cuda/launch_check.py", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["mismatches"] == []
    if not checked_release():
        assert summary["extensions"] == 0
        pytest.skip("numba-cuda is not the release fastact._cuda_launch was checked against: "
                    "check this test's comparison with it, then update CHECKED_VERSION")  # fmt: skip
    assert summary["extensions"] == 1
    assert summary["numba_path_arrays_in_steps"] == 0
    assert summary["launches"] > 400 and summary["array_arguments"] > 1400
    assert {"matmul", "sgd_segments", "adam_segments", "batch_norm_moments", "dropout",
            "prelu_backward", "relu_forward", "softmax_cross_entropy"} <= set(summary["kernels"])  # fmt: skip


def test_the_numba_setting_and_the_simulator_turn_the_extension_off():
    """FASTACT_CUDA_ARGUMENTS=numba: the kernels take numba's own path (no extension); under
    the simulator, too."""
    if SIMULATOR:
        from fastact._cuda_launch import CUDA_KERNEL, EXTENSIONS

        assert EXTENSIONS == [] and "extensions" not in CUDA_KERNEL
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = "from fastact._cuda_launch import EXTENSIONS, CUDA_KERNEL; print(len(EXTENSIONS), 'extensions' in CUDA_KERNEL)"
    lines = []
    for setting in ("numba", ""):
        run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             env={**env, "FASTACT_CUDA_ARGUMENTS": setting}, timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        lines.append(run.stdout.strip())
    assert lines == ["0 False", "1 True" if checked_release() else "0 False"]
