"""Compile every generated CUDA kernel to PTX for real (numba-cuda + NVVM; no GPU needed).

    python tests/cuda/ptx_check.py [--cc 9.0] [--json PATH] [--only NAME ...] [--jobs N]

Prints one line per kernel and dtype (float64 instructions in its PTX, registers per thread),
and writes the same as JSON (``{"kernel/dtype": {"f64": n, "wraparound": n, "max_threads": n,
"shared": bytes, "vector_loads": n, "vector_stores": n, "approximate": {opcode: n},
"ieee_divisions": n, "registers": n, "spill": bytes, "error": "..."}}``; ``wraparound``: array accesses with a
signed index, see ``wraparound_instructions``; ``max_threads``: the launch bound, see
``max_threads``; ``shared``: static shared memory, see ``shared_bytes``; ``vector_*``: 128-bit
accesses; ``approximate``: see ``approximate_instructions``; ``registers``/``spill``: from
NVIDIA's assembler, see ``assembled``). Run by
``tests/cuda/test_cuda_ptx.py`` in a process of its own, without ``NUMBA_ENABLE_CUDASIM`` (the
simulator has no compiler); ``--jobs`` worker processes compile (default: up to 4 cores).

Without a GPU, numba-cuda (0.30) still asks the driver for the current device's compute
capability when it compiles a device function called by a kernel (``compile_ptx`` itself takes
``cc``): here that lookup answers the ``cc`` given instead, only when no GPU is available.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
import time
import types as pytypes
from concurrent.futures import ProcessPoolExecutor

_INSTRUCTION = re.compile(r"^\s*(?:@!?%p\d+\s+)?([a-z][\w.]*)\s")  # group 1: the opcode


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


def opcodes(ptx: str) -> list[str]:
    """Every instruction's opcode with its modifiers (``div.approx.f32``), in order."""
    return [m.group(1) for m in map(_INSTRUCTION.match, ptx.splitlines()) if m]


def approximate_instructions(ops: list[str]) -> dict[str, int]:
    """``{opcode: count}`` of PTX's approximate or flush-to-zero floating-point instructions
    (``div.approx``, ``div.full``, ``rcp.approx``, ``ex2.approx``, ``*.ftz``, ...) among
    ``opcodes(ptx)``: what numba-cuda's fastmath emits, where the CPU rounds as IEEE does."""
    found: dict[str, int] = {}
    for op in ops:
        parts = op.split(".")
        if {"approx", "full", "ftz"} & set(parts[1:]):
            found[op] = found.get(op, 0) + 1
    return found


_VECTOR_LOAD = re.compile(r"^\s*ld\.global(\.\w+)*\.v[24]\.", re.MULTILINE)
_VECTOR_STORE = re.compile(r"^\s*st\.global(\.\w+)*\.v[24]\.", re.MULTILINE)


def measure(ptx: str) -> dict:
    ops = opcodes(ptx)
    return {
        "f64": f64_instructions(ptx),
        "wraparound": wraparound_instructions(ptx),
        "max_threads": max_threads(ptx),
        "shared": shared_bytes(ptx),
        "vector_loads": len(_VECTOR_LOAD.findall(ptx)),  # 128-bit: fastact._cuda_memory
        "vector_stores": len(_VECTOR_STORE.findall(ptx)),
        "approximate": approximate_instructions(ops),
        "ieee_divisions": sum(op in ("div.rn.f32", "div.rn.f64") for op in ops),
    }


def assembled(ptx: str, cc: tuple) -> dict:
    """What the GPU code takes per thread: ``registers`` and ``spill`` bytes (stores + loads
    to local memory), from NVIDIA's assembler in nvJitLink (the cuda extra; no GPU needed):
    registers bound how many threads an SM holds, hence the loads it keeps in flight. {}
    where nvJitLink does not load (an assembler error is an error)."""
    try:
        from cuda.bindings import nvjitlink

        handle = nvjitlink.create(2, [f"-arch=sm_{cc[0]}{cc[1]}", "-verbose"])
    except Exception:  # no cuda-bindings, or its nvJitLink library does not load
        return {}
    code = ptx.encode()
    try:
        nvjitlink.add_data(handle, nvjitlink.InputType.PTX, code, len(code), "kernel")
        nvjitlink.complete(handle)
        log = bytearray(nvjitlink.get_info_log_size(handle))
        nvjitlink.get_info_log(handle, log)
    finally:
        nvjitlink.destroy(handle)
    text = log.decode(errors="replace")
    registers = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    if not (registers and spills):
        raise RuntimeError(f"nvJitLink's log has no register count:\n{text[:2000]}")
    return {
        "registers": int(registers.group(1)),
        "spill": int(spills.group(1)) + int(spills.group(2)),
    }


def blocks_per_sm(registers: int, threads: int) -> int:
    """Blocks of ``threads`` one SM holds by registers (compute capability 8.0 and 9.0: 64K
    registers, allocated per warp in units of 256; at most 2048 threads and 32 blocks an SM)."""
    warps = -(-threads // 32)
    per_warp = -(-registers * 32 // 256) * 256
    return min((65536 // per_warp) // warps, 2048 // (warps * 32), 32)


def signatures(name: str, ty, f64):
    """The argument types fastact.cuda launches each kernel with (C-contiguous arrays)."""
    from numba import boolean

    v, m = ty[::1], ty[:, ::1]
    if name == "column_sums":
        return (m, v)
    if name.endswith("_bias_forward"):
        return (m, v, m, m, ty, ty, boolean)
    if name.endswith("_bias_backward"):
        return (m, m, m, f64[:, ::1], ty, ty, boolean)
    if name.endswith("_backward"):
        return (v, v, v, ty, ty, boolean)
    return (v, v, ty, ty, boolean)


def fused_signatures(name: str, ty, f64):
    """The argument types fastact.cuda launches the fused kernels (fastact._cuda_fused) with;
    ``targets`` of the MLP helpers as the binary case (float), labels as int64."""
    from numba import boolean, int64, uint64

    v, m, d, i = ty[::1], ty[:, ::1], f64[::1], int64[::1]
    table = {
        "softmax": (m, m, ty),
        "softmax_cross_entropy": (m, i, m, d, d, ty),
        "bce_with_logits": (v, v, v, d, d),
        "count_bad_labels": (i, int64, d),
        "count_bad_targets": (v, d),
        "dropout": (v, uint64, ty, ty, v, boolean[::1]),
        "dropout_backward": (v, boolean[::1], ty, v),
        "batch_norm_moments": (m, f64[:, ::1], f64[:, ::1]),
        "batch_norm_stats": (m, f64[:, ::1], f64[:, ::1], int64, v, v, boolean, f64, f64, v, v),
        "batch_norm_apply": (m, v, v, v, v, m, m),
        "batch_norm_backward_partials": (m, m, f64[:, ::1], f64[:, ::1]),
        "batch_norm_backward_sums": (f64[:, ::1], f64[:, ::1], int64, v, v, boolean, v, v, v, v, v),
        "batch_norm_backward_apply": (m, m, v, v, v, m),
        "sgd": (v, v, v, ty, ty, ty, boolean, d, int64),
        "adam": (v, v, v, v) + (ty,) * 8 + (d, int64),
        "sgd_segments": (v, v, v, ty, ty, ty, boolean, int64[:, ::1], d),
        "adam_segments": (v, v, v, v) + (ty,) * 8 + (int64[:, ::1], d),
        "prelu_forward": (v, v, v, int64, int64),
        "prelu_backward": (v, v, v, v, d, int64, int64),
        "matmul": (m, m, m, boolean, boolean),
        "gather_batch": (m, v, i, int64, m, v),
        "add_bias": (m, v),
        "copy_into": (d, v),
        "zero": (d,),
        "end_step": (m, v, boolean, d, int64),
    }
    return table[name]


def kernel_names(module) -> list[str]:
    from numba.cuda.dispatcher import CUDADispatcher

    return [
        n
        for n, obj in vars(module).items()
        if isinstance(obj, CUDADispatcher) and not n.startswith("_")  # no device functions
    ]


def _setup(cc: tuple) -> None:
    """Let numba-cuda compile device functions for ``cc`` on a machine without a GPU."""
    from numba import cuda

    if not cuda.is_available():
        import numba.cuda.dispatcher as dispatcher

        dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)


def _probe_log1p():
    """A kernel whose only arithmetic is fastact._math.log1p, reached through its overload (as
    the activations reach exp, tanh, over_one_plus): its float32 quotients are not corrected
    afterwards, so they must be IEEE divisions, as on the CPU. No activation kernel calls
    log1p in float32; this one shows what the overloads compile to."""
    from numba import cuda

    from fastact._config import CUDA_KERNEL
    from fastact._math import log1p

    def probe_log1p(x, out):
        out[0] = log1p(x[0])

    return cuda.jit(**CUDA_KERNEL)(probe_log1p), lambda name, ty, f64: (ty[::1], ty[::1])


def _kernel(name: str):
    from fastact import _cuda_fused, _cuda_kernels

    if name == "probe.log1p":
        return _probe_log1p()

    if name.startswith("fused."):
        return getattr(_cuda_fused, name.removeprefix("fused.")), fused_signatures
    return getattr(_cuda_kernels, name), signatures


def compile_kernel(name: str, cc: tuple) -> dict:
    """``{"name/dtype": measurements}`` of one kernel, float32 and float64 (in a worker)."""
    from numba import cuda, float32, float64

    kernel, signature = _kernel(name)
    bounds = kernel.targetoptions.get("launch_bounds")
    results = {}
    cases = [
        (f"{name}/{ty}", signature(name.removeprefix("fused."), ty, float64))
        for ty in (float32, float64)
    ]
    if name == "column_sums":  # the bias backward's float64 partials into a float32 gradient
        cases.append(("column_sums/partials", (float64[:, ::1], float32[::1])))
    for key, sig in cases:
        t0 = time.perf_counter()
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc, launch_bounds=bounds)
            results[key] = measure(ptx) | assembled(ptx, cc) | {"seconds": time.perf_counter() - t0}
        except Exception as exc:
            results[key] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cc", default="9.0", help="compute capability (default 9.0, Hopper)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--only", nargs="*", help="kernel names to compile (default: all)")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="processes")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print(
            "ptx_check: unset NUMBA_ENABLE_CUDASIM (the simulator cannot compile)", file=sys.stderr
        )
        return 2
    cc = tuple(int(p) for p in args.cc.split("."))
    _setup(cc)
    from fastact import _cuda_fused, _cuda_kernels

    names = kernel_names(_cuda_kernels) + [f"fused.{n}" for n in kernel_names(_cuda_fused)]
    names.append("probe.log1p")
    if args.only:
        names = [name for name in names if name in args.only]
    results = {}
    start = time.perf_counter()
    # compiling is single-threaded Python and NVVM: one process per core (spawned: no forked
    # LLVM state), each importing numba and fastact once
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        args.jobs, mp_context=context, initializer=_setup, initargs=(cc,)
    ) as pool:
        for found in pool.map(compile_kernel, names, [cc] * len(names)):
            for key, result in found.items():
                print(
                    key, result.get("f64", result.get("error")), result.get("registers"), flush=True
                )
            results |= found
    print(f"{len(results)} kernels in {time.perf_counter() - start:.1f} s", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1, sort_keys=True)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
