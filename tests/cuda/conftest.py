"""The CUDA tests run in a pytest process of their own, never inside the default ``pytest``.

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda      # numba's simulator, no GPU
    FASTACT_CUDA_TESTS=1 python -m pytest tests/cuda        # a real GPU

NUMBA_ENABLE_CUDASIM must be set before numba is imported, so the default run (which imports
numba for the CPU kernels) cannot switch to the simulator: there this folder is not collected.
"""

from __future__ import annotations

import os

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
ENABLED = SIMULATOR or os.environ.get("FASTACT_CUDA_TESTS", "0") not in ("", "0")

if not ENABLED:
    collect_ignore_glob = ["*"]
