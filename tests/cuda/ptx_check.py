"""Compile every generated CUDA kernel to PTX for real (numba-cuda + NVVM; no GPU needed).

    python tests/cuda/ptx_check.py [--cc 9.0] [--json PATH] [--only NAME ...]

Prints one line per kernel and dtype, the number of float64 instructions in its PTX, and
writes the same as JSON (``{"kernel/dtype": {"f64": n, "wraparound": n, "max_threads": n,
"shared": bytes, "error": "..."}}``; ``wraparound``: array accesses with a signed index, see
``wraparound_instructions``; ``max_threads``: the launch bound, see ``max_threads``;
``shared``: static shared memory, see ``shared_bytes``). Run by
``tests/cuda/test_cuda_ptx.py`` in a process of its own, without ``NUMBA_ENABLE_CUDASIM`` (the
simulator has no compiler).

Without a GPU, numba-cuda (0.30) still asks the driver for the current device's compute
capability when it compiles a device function called by a kernel (``compile_ptx`` itself takes
``cc``): here that lookup answers the ``cc`` given instead, only when no GPU is available.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import types as pytypes

_INSTRUCTION = re.compile(r"^\s*(@!?%p\d+\s+)?[a-z][\w.]*\s")


def f64_instructions(ptx: str) -> int:
    """PTX instructions that operate on, produce or convert float64 (declarations excluded)."""
    count = 0
    for line in ptx.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith((".", "//", "{", "}")) or ".f64" not in stripped:
            continue
        if _INSTRUCTION.match(line):
            count += 1
    return count


_WRAPAROUND = re.compile(r"^\s*shr\.s64\s+%rd\d+,\s*%rd\d+,\s*63;", re.MULTILINE)


def wraparound_instructions(ptx: str) -> int:
    """``shr.s64 r, i, 63``: the sign test of numba's negative-index wraparound, emitted for
    every array access with a signed index (unsigned indices have none)."""
    return len(_WRAPAROUND.findall(ptx))


_MAX_THREADS = re.compile(r"^\s*\.maxntid\s+(\d+)", re.MULTILINE)


def max_threads(ptx: str) -> int:
    """The kernel's launch bound (``.maxntid``: the compiler fits registers to blocks of that
    many threads), 0 without one."""
    found = _MAX_THREADS.search(ptx)
    return int(found.group(1)) if found else 0


_SHARED = re.compile(r"^\s*\.(?:visible\s+)?\.shared\s+\.align\s+\d+\s+\.b8\s+\w+\[(\d+)\]", re.M)


def shared_bytes(ptx: str) -> int:
    """Static shared memory the kernel declares (bytes): it bounds the blocks an SM holds."""
    return sum(int(n) for n in _SHARED.findall(ptx))


def measure(ptx: str) -> dict:
    return {
        "f64": f64_instructions(ptx),
        "wraparound": wraparound_instructions(ptx),
        "max_threads": max_threads(ptx),
        "shared": shared_bytes(ptx),
    }


def signatures(name: str, ty, f64):
    """The argument types fastact.cuda launches each kernel with (C-contiguous arrays)."""
    v, m = ty[::1], ty[:, ::1]
    if name == "column_sums":
        return (m, v)
    if name.endswith("_bias_forward"):
        return (m, v, m, m, ty, ty)
    if name.endswith("_bias_backward"):
        return (m, m, m, f64[:, ::1], ty, ty)
    if name.endswith("_backward"):
        return (v, v, v, ty, ty)
    return (v, v, ty, ty)


def fused_signatures(name: str, ty, f64):
    """The argument types fastact.cuda launches the fused kernels (fastact._cuda_fused) with;
    ``targets`` of the MLP helpers as the binary case (float), labels as int64."""
    from numba import boolean, int64, uint64

    v, m, d, i = ty[::1], ty[:, ::1], f64[::1], int64[::1]
    table = {
        "softmax": (m, m, ty),
        "softmax_cross_entropy": (m, i, m, d, d, ty),
        "bce_with_logits": (v, v, v, d, d),
        "dropout": (v, uint64, ty, ty, v, boolean[::1]),
        "dropout_backward": (v, boolean[::1], ty, v),
        "column_partials": (m, d, boolean, f64[:, ::1]),
        "batch_norm_mean": (f64[:, ::1], int64, d),
        "batch_norm_stats": (f64[:, ::1], int64, d, v, v, boolean, f64, f64, v, v),
        "batch_norm_apply": (m, v, v, v, v, m, m),
        "batch_norm_backward_partials": (m, m, f64[:, ::1], f64[:, ::1]),
        "batch_norm_backward_sums": (f64[:, ::1], f64[:, ::1], int64, v, v, boolean, v, v, v, v, v),
        "batch_norm_backward_apply": (m, m, v, v, v, m),
        "sgd": (v, v, v, ty, ty, ty, boolean, d, int64),
        "adam": (v, v, v, v) + (ty,) * 8 + (d, int64),
        "prelu_forward": (v, v, v, int64, int64),
        "prelu_backward": (v, v, v, v, d, int64, int64),
        "matmul": (m, m, m, boolean, boolean),
        "gather_batch": (m, v, i, int64, m, v),
        "add_bias": (m, v),
        "move_sqrts": (d, int64, int64, d, int64),
        "copy_into": (d, v),
        "zero": (d,),
        "count_correct": (m, v, boolean, d, int64),
    }
    return table[name]


def kernel_names(module) -> list[str]:
    from numba.cuda.dispatcher import CUDADispatcher

    return [
        n
        for n, obj in vars(module).items()
        if isinstance(obj, CUDADispatcher) and not n.startswith("_")  # no device functions
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cc", default="9.0", help="compute capability (default 9.0, Hopper)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--only", nargs="*", help="kernel names to compile (default: all)")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print(
            "ptx_check: unset NUMBA_ENABLE_CUDASIM (the simulator cannot compile)", file=sys.stderr
        )
        return 2
    cc = tuple(int(p) for p in args.cc.split("."))

    from numba import cuda, float32, float64

    if not cuda.is_available():
        import numba.cuda.dispatcher as dispatcher

        dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)

    from fastact import _cuda_fused, _cuda_kernels

    jobs = [(name, _cuda_kernels, signatures) for name in kernel_names(_cuda_kernels)]
    jobs += [(f"fused.{n}", _cuda_fused, fused_signatures) for n in kernel_names(_cuda_fused)]
    if args.only:
        jobs = [job for job in jobs if job[0] in args.only]
    names = [job[0] for job in jobs]
    results = {}
    start = time.perf_counter()
    for name, module, signature in jobs:
        kernel = getattr(module, name.removeprefix("fused."))
        for ty in (float32, float64):
            key = f"{name}/{ty}"
            t0 = time.perf_counter()
            try:
                sig = signature(name.removeprefix("fused."), ty, float64)
                bounds = kernel.targetoptions.get("launch_bounds")
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc, launch_bounds=bounds)
                results[key] = measure(ptx) | {"seconds": time.perf_counter() - t0}
            except Exception as exc:
                results[key] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            print(key, results[key].get("f64", results[key].get("error")), flush=True)
    if "column_sums" in names:  # the bias backward's float64 partials into a float32 gradient
        kernel = _cuda_kernels.column_sums
        bounds = kernel.targetoptions.get("launch_bounds")
        ptx, _ = cuda.compile_ptx(
            kernel.py_func, (float64[:, ::1], float32[::1]), cc=cc, launch_bounds=bounds
        )
        results["column_sums/partials"] = measure(ptx)
    print(f"{len(results)} kernels in {time.perf_counter() - start:.1f} s", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1, sort_keys=True)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
