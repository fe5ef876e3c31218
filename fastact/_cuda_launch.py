"""The ``cuda.jit`` options of fastact's kernels, with a cheaper hand-over of device arrays.

numba-cuda 0.30 prepares each array argument of a launch through ``numba.cuda.args.InOut``:
a new hint object, then its ``to_device``, which runs four ``from ... import`` statements on
every call before it asks ``_to_strided_memory_view`` for the array's pointer, shape and
strides. For a numba device array that is about 4.5 us of the ~5 us an array argument costs
the host (2-core CI VM; a training step of the MLP passes ~70 arrays). ``cuda.jit`` takes
``extensions``: objects whose ``prepare_args(ty, val, stream, retr)`` numba calls for every
argument before its own marshalling. ``DeviceArrayArguments`` hands numba's own device arrays
(``__cuda_memory__``) to that marshalling as a hint whose ``to_device`` makes the same call
``InOut.to_device`` makes, without the imports: the kernel receives the same arguments
(``tests/cuda/test_cuda_launch.py`` compares them for every launch of MLP steps and of the
public functions), and a device array never needs the copies back that ``InOut`` arranges for
host arrays. Everything else (host arrays, CuPy or PyTorch arrays, scalars) takes numba's path.

Under the simulator, with a numba-cuda release other than the one checked
(``CHECKED_VERSION``: a private function's behaviour is what the extension relies on), or with
``FASTACT_CUDA_ARGUMENTS=numba`` in the environment, the kernels take no extension.
"""

from __future__ import annotations

import os

from numba import config

from fastact import _config, _cuda_simulator

if config.ENABLE_CUDASIM:  # type: ignore[attr-defined]
    _cuda_simulator.lock_shared_arrays()  # its shared arrays' race: see _cuda_simulator

#: the extensions every fastact kernel is declared with ([] where numba's own path is used)
EXTENSIONS: list = []
#: The numba-cuda release (major, minor) whose ``InOut.to_device`` the extension reproduces
#: (checked by tests/cuda/launch_check.py); with any other the kernels take numba's path.
CHECKED_VERSION = ("0", "30")

if not config.ENABLE_CUDASIM and os.environ.get("FASTACT_CUDA_ARGUMENTS", "").lower() != "numba":  # type: ignore[attr-defined]  # fmt: skip
    try:
        import numba_cuda  # type: ignore[import-untyped]
        from numba.cuda import types as _types
        from numba.cuda.args import ArgHint as _ArgHint
        from numba.cuda.cudadrv.devicearray import _to_strided_memory_view  # type: ignore[attr-defined]

        _checked = numba_cuda.__version__.split(".")[:2] == list(CHECKED_VERSION)
    except (ImportError, AttributeError):  # not numba-cuda 0.30's layout: numba's own path
        _checked = False
    if _checked:

        class _DeviceArray(_ArgHint):
            """A numba device array on its way into a launch: ``to_device`` returns what
            ``InOut(array).to_device`` returns for it (device memory: no copy, no write-back)."""

            def to_device(self, retr, stream=0):
                return _to_strided_memory_view(self.value, stream=stream, copy=True)[0]

        class DeviceArrayArguments:
            """numba-cuda launch extension: array arguments that are numba device memory
            skip ``InOut``'s per-call imports; any other argument is returned unchanged."""

            def prepare_args(self, ty, val, stream, retr):
                if isinstance(ty, _types.Array) and getattr(val, "__cuda_memory__", False):  # type: ignore[attr-defined]
                    return ty, _DeviceArray(val)
                return ty, val

        EXTENSIONS.append(DeviceArrayArguments())

#: ``cuda.jit`` options of every fastact kernel (``_config.CUDA_KERNEL`` plus the extension)
CUDA_KERNEL = (
    dict(_config.CUDA_KERNEL, extensions=EXTENSIONS) if EXTENSIONS else _config.CUDA_KERNEL
)
