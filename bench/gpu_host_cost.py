"""What issuing a training step of MLP(device='cuda') costs the host, measured without a GPU.

    python bench/gpu_host_cost.py [--steps 200] [--repeat 5] [--only NAME ...] [--numba-arguments]

At batch 128 a GPU step is bound by the host: the GPU's work is a few microseconds a kernel,
and every launch goes through numba-cuda's dispatcher in Python. This script runs that real
path (fastact's ``DeviceOps``, numba's dispatcher, typing and argument preparation) with the
CUDA driver replaced by stand-ins: device memory gets fake addresses and is never touched,
copies to the device do nothing, copies to the host read zeros, kernels are compiled to LLVM IR but not loaded, and cuda.core's ``launch``
returns at once. What is left is the Python that issues a step, minus the driver's own
cuLaunchKernel (a few microseconds a launch). Not for a process that uses CUDA afterwards:
the stand-ins stay.

For each network (784-256-256-10, batch 128, SGD momentum unless named otherwise), after
a warm-up epoch: host microseconds per step (the median over ``--repeat`` one-epoch fits of
``--steps`` steps and of 20 steps, their difference over the steps between), numba launches
per step, and device-array objects created per step. numba types each array object a launch
is given once and caches that on the object, so a new object (a slice or reshape made per
step) is typed again at its launch; a steady step should create none. ``--numba-arguments``
adds each network again with numba's own marshalling of array arguments (fastact's launch
extension off: ``fastact._cuda_launch``). ``--json PATH`` also writes the table.

Run it with NUMBA_ENABLE_CUDASIM unset (the simulator has no dispatcher of this kind).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import statistics
import sys
import time
import types
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _gpu_common import counting_launches, numba_argument_path

NETWORKS = {
    "relu": {},
    "relu + dropout 0.2": {"dropout": 0.2},
    "relu + batch norm": {"batch_norm": True},
    "prelu": {"activation": "prelu"},
    "relu, adam": {"optimizer": "adam", "lr": 1e-3},
}


def install_stand_ins():
    """Replaces what numba-cuda asks of the CUDA driver (numba-cuda 0.30) by stand-ins; returns
    a counter of device-array objects created."""
    from numba import cuda
    from numba.cuda import api, codegen, dispatcher
    from numba.cuda.cudadrv import devicearray, devices, driver

    device = types.SimpleNamespace(compute_capability=(9, 0), MULTIPROCESSOR_COUNT=132, id=0,
                                   name=b"stand-in", MAX_THREADS_PER_BLOCK=1024)  # fmt: skip
    next_address = [1 << 40]

    class Context:
        def __init__(self):
            self.device, self.handle = device, None

        def memalloc(self, size):
            address = next_address[0]
            next_address[0] += -(-size // 4096) * 4096 + 4096
            pointer = driver.binding.CUdeviceptr(address)
            return driver.MemoryPointer(context=self, pointer=pointer, size=size)

    context = Context()
    devices.get_context = lambda devnum=None: context
    devices._runtime.ensure_context = contextlib.nullcontext
    for name in ("host_to_device", "device_to_device", "device_memset"):
        setattr(driver, name, lambda *args, **kwargs: None)
    # copies to the host read zeros (the epoch's statistics: finite)
    driver.device_to_host = lambda dst, src, size, stream=0: ctypes.memset(
        driver.host_pointer(dst), 0, size
    )
    get_device = lambda: device  # noqa: E731
    dispatcher.get_current_device = api.get_current_device = cuda.get_current_device = get_device
    api.current_context = cuda.current_context = lambda devnum=0: context
    cuda.is_available = lambda: True
    cuda.synchronize = lambda: None

    loaded = types.SimpleNamespace(kernel=None, name="stand-in",
                                   module=types.SimpleNamespace(initialized=True))  # fmt: skip
    codegen.CUDACodeLibrary.get_cufunc = lambda self: loaded
    dispatcher._Kernel.launch.__globals__["launch"] = lambda *args, **kwargs: None

    created = [0]
    init = devicearray.DeviceNDArrayBase.__init__

    def counted(self, *args, **kwargs):
        created[0] += 1
        init(self, *args, **kwargs)

    devicearray.DeviceNDArrayBase.__init__ = counted
    return created


def measure(options, steps, repeat, created, launches):
    """(host us per step, launches per step, device arrays created per step) of one network."""
    from fastact.mlp import MLP

    os.environ["FASTACT_CUDA_MATMUL"] = "numba"  # no CuPy here; its launches would be CuPy's
    options = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, **options}
    activation = options.pop("activation", "relu")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((128 * steps, 784)).astype(np.float32)
    y = rng.integers(0, 10, len(X))

    def fit(rows):
        clf = MLP((256, 256), activation, batch_size=128, epochs=1, seed=0, device="cuda",
                  **options)  # fmt: skip
        start = time.perf_counter()
        clf.fit(X[:rows], y[:rows])
        return time.perf_counter() - start

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's low-occupancy warnings
        fit(128 * 20)  # compiles every kernel
        short = statistics.median(fit(128 * 20) for _ in range(repeat))
        long = statistics.median(fit(128 * steps) for _ in range(repeat))
        # per step: a steady step is what an epoch of `steps` adds to one of 20
        created[0] = launches[0] = 0
        fit(128 * 20)
        made_short, launched_short = created[0], launches[0]
        created[0] = launches[0] = 0
        fit(128 * steps)
    extra = steps - 20
    return (
        (long - short) / extra * 1e6,
        (launches[0] - launched_short) / extra,
        (created[0] - made_short) / extra,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=sorted(NETWORKS), metavar="NAME")
    parser.add_argument("--numba-arguments", action="store_true",
                        help="each network also with numba's own argument marshalling")  # fmt: skip
    parser.add_argument("--json", help="also write the table to this file")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        parser.error("run with NUMBA_ENABLE_CUDASIM unset")
    if args.steps <= 20:
        parser.error("--steps must be more than 20")
    created = install_stand_ins()
    rows = {}
    with counting_launches() as launches:
        for name in args.only or NETWORKS:
            paths = [(name, contextlib.nullcontext)]
            if args.numba_arguments:
                paths.append((f"{name} (numba arguments)", numba_argument_path))
            for label, path in paths:
                with path():
                    us, launched, made = measure(dict(NETWORKS[name]), args.steps, args.repeat,
                                                 created, launches)  # fmt: skip
                rows[label] = {"host_us_per_step": us, "launches_per_step": launched,
                               "arrays_created_per_step": made}  # fmt: skip
    print(f"host cost of MLP(device='cuda') steps, driver stand-ins, {args.steps} steps, "
          f"median of {args.repeat}")  # fmt: skip
    print(f"{'network':<37}{'us / step':>10}{'launches':>10}{'us / launch':>12}{'new arrays':>11}")
    for name, row in rows.items():
        us, launched = row["host_us_per_step"], row["launches_per_step"]
        print(f"{name:<37}{us:>10.0f}{launched:>10.1f}{us / launched:>12.1f}"
              f"{row['arrays_created_per_step']:>11.1f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
