"""Checks that fastact's launch extension (``fastact._cuda_launch``) hands every kernel the
arguments numba's own path would: run without the simulator, with the CUDA driver replaced by
``bench/gpu_host_cost.py``'s stand-ins (no GPU needed).

    python tests/cuda/launch_check.py [--json PATH]

It records the arguments of every launch of a few MLP training steps (ReLU with SGD, batch
norm, dropout, PReLU with Adam) and of public calls on device arrays of several layouts
(C- and F-ordered, views of rows, 0-d, empty, ``out=``), then marshals each
launch's arguments twice with numba's ``_Kernel._prepare_args``: with the kernel's
extensions and without. Prints (and writes) a JSON summary: launches and array arguments
checked, kernels, mismatches (at most 20 listed), and how many array arguments went through
numba's ``InOut.to_device`` during the MLP steps (the extension's point: none).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, ROOT)


def marshal(kernel, args, extensions):
    """The values numba passes to cuLaunchKernel for ``args``, with the given extensions."""
    saved, kernel.extensions = kernel.extensions, extensions
    try:
        values, retr = [], []
        for ty, val in zip(kernel.argument_types, args):
            kernel._prepare_args(ty, val, 0, retr, values)
    finally:
        kernel.extensions = saved
    return [getattr(v, "value", v) for v in values], len(retr)


def public_calls(cuda):
    """Public functions on device arrays of several layouts."""
    import fastact as fa
    from fastact import cuda as fcuda

    rng = np.random.default_rng(0)
    x = cuda.to_device(rng.standard_normal((6, 8)).astype(np.float32))
    f_order = cuda.to_device(np.asfortranarray(rng.standard_normal((6, 8))))
    fa.relu(x)
    fa.sigmoid(x[2:5])  # a view that starts inside its buffer
    fa.tanh(x[3])  # one row, 1-D
    fa.silu(f_order)
    fa.softplus(cuda.to_device(np.float32(1.5)))  # 0-d
    fa.elu(cuda.device_array((0, 8), np.float32))  # empty
    out = cuda.device_array((6, 8), np.float32)
    fa.gelu(x, out=out)
    fa.relu_backward(x, x, out=out)
    bias = cuda.to_device(np.zeros(8, np.float32))
    _, saved = fcuda.bias_act(x, bias, "relu")
    fcuda.bias_act_backward(x, saved, "relu")
    fcuda.softmax_cross_entropy(x, cuda.to_device(np.zeros(6, np.int64)))
    fa.prelu(x, cuda.to_device(np.full(8, 0.25, np.float32)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the summary to this file")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        parser.error("run with NUMBA_ENABLE_CUDASIM unset")
    import gpu_host_cost

    gpu_host_cost.install_stand_ins()
    os.environ["FASTACT_CUDA_MATMUL"] = "numba"
    from numba import cuda
    from numba.cuda import args as numba_args
    from numba.cuda import dispatcher

    from fastact._cuda_launch import EXTENSIONS
    from fastact.mlp import MLP

    launches = []
    launch = dispatcher._Kernel.launch

    def recorded(self, args, *rest, **kwargs):
        launches.append((self, args))
        return launch(self, args, *rest, **kwargs)

    numba_path = [0]
    to_device = numba_args.InOut.to_device

    def counted(self, retr, stream=0):
        numba_path[0] += 1
        return to_device(self, retr, stream)

    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 784)).astype(np.float32)
    y = rng.integers(0, 10, len(X))
    networks = [{}, {"batch_norm": True}, {"dropout": 0.2},
                {"activation": "prelu", "optimizer": "adam", "lr": 1e-3}]  # fmt: skip
    dispatcher._Kernel.launch = recorded
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba's low-occupancy warnings
            for options in networks:
                options = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, **options}
                activation = options.pop("activation", "relu")
                net = MLP((256, 256), activation, batch_size=128, epochs=1, seed=0,
                          device="cuda", **options)  # fmt: skip
                net.fit(X, y)  # compiles
                numba_args.InOut.to_device = counted
                net.fit(X, y)
                numba_args.InOut.to_device = to_device
            public_calls(cuda)
    finally:
        dispatcher._Kernel.launch = launch
        numba_args.InOut.to_device = to_device

    arrays, mismatches, kernels = 0, [], set()
    for kernel, arguments in launches:
        kernels.add(kernel.py_func.__name__)
        arrays += sum(1 for ty in kernel.argument_types if ty.__class__.__name__ == "Array")
        fast = marshal(kernel, arguments, kernel.extensions)
        plain = marshal(kernel, arguments, [])
        if fast != plain and len(mismatches) < 20:
            mismatches.append({"kernel": kernel.py_func.__name__, "fast": repr(fast),
                               "numba": repr(plain)})  # fmt: skip
    summary = {
        "extensions": len(EXTENSIONS),
        "launches": len(launches),
        "array_arguments": arrays,
        "kernels": sorted(kernels),
        "mismatches": mismatches,
        "numba_path_arrays_in_steps": numba_path[0],
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
