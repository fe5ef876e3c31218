"""numba's CUDA simulator, made safe for kernels that share memory within a block.

The simulator (numba-cuda 0.30) hands out a block's ``cuda.shared.array`` from a dict keyed by
the calling line: the first thread to reach the line finds no entry, makes the array and stores
it. That look-up and store are not under a lock, so two threads of a launch's first block can
both find no entry and make an array each; the one stored last becomes the block's, and the
other thread's writes go to an array nobody reads. A block sum then silently misses that
thread's share (seen once in CI: a sum of gradient squares of 148.94 for 173.05). The short
switch interval of tests/cuda/conftest.py makes such hand-overs more frequent, not possible.

``lock_shared_arrays`` replaces the look-up by one under a lock, keyed as numba keys it (the
caller's file and line, read from its frame rather than from a formatted stack). The kernel
modules call it on import under the simulator; a GPU never sees it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any


def lock_shared_arrays() -> None:
    """Makes the simulator's ``FakeCUDAShared.array`` thread-safe (idempotent). Dynamic shared
    memory (shape 0) and alignment requests still go to numba's own method; so does
    everything where the simulator is not laid out as numba-cuda 0.30's."""
    import numpy as np
    from numba.cuda.simulator import kernelapi

    numba_array: Any = kernelapi.FakeCUDAShared.array
    types = getattr(kernelapi, "types", None)
    as_dtype = getattr(getattr(kernelapi, "numpy_support", None), "as_dtype", None)
    if getattr(numba_array, "fastact_locked", False) or types is None or as_dtype is None:
        return
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        allocations = getattr(self, "_allocations", None)
        if alignment is not None or shape == 0 or not isinstance(allocations, dict):
            return numba_array(self, shape, dtype, alignment)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            found = allocations.get(key)
            if found is None:
                if isinstance(dtype, types.Type):
                    dtype = as_dtype(dtype)
                found = allocations[key] = np.empty(shape, dtype)
        return found

    array.__doc__ = numba_array.__doc__
    array.fastact_locked = True  # type: ignore[attr-defined]
    setattr(kernelapi.FakeCUDAShared, "array", array)  # noqa: B010 (mypy: a method)
