"""Measure fastact's CPU performance targets and write docs/performance.md.

    .venv/bin/python tools/performance_report.py [--size N] [--quick]

Start-up (import, cold compile, cache reload), call overhead at n = 1000, bandwidth of every
forward and backward at 16M elements against a parallel copy and torch (same threads),
speed-up over the NumPy reference at 1M, memory per call, and a BLAS + kernel loop (thread
pools). Every number in the page comes from this run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]

import _cases  # noqa: E402  (the benchmark suite's data, peers, copy kernel and timers)
import llvmlite.binding  # noqa: E402
import numba  # noqa: E402

import fastact as fa  # noqa: E402
from fastact import _config, reference  # noqa: E402


def median_time(func, repeat=9, min_time=0.02):
    """Median seconds per call over ``repeat`` batches (warm-up call first)."""
    func()
    loops = _cases.calibrate(func, min_time)
    return statistics.median(_cases.batch_time(func, loops) for _ in range(repeat))


def _run(code, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if out.returncode:
        raise RuntimeError(out.stderr)
    return float(out.stdout.strip().splitlines()[-1])


def startup():
    """(import s, cold first call s, warm first call s, warm 32 kernels s), medians of 3."""
    imp = statistics.median(
        _run("import time; t=time.perf_counter(); import fastact; print(time.perf_counter()-t)")
        for _ in range(3)
    )
    first = (
        "import numpy as np, fastact as fa, time; x=np.ones(1000, np.float32); "
        "t=time.perf_counter(); fa.sigmoid(x); print(time.perf_counter()-t)"
    )
    many = (
        "import numpy as np, fastact as fa, time; from fastact.activations import ACTIVATIONS\n"
        "x=np.ones(1000, np.float32); fa.relu(x); t=time.perf_counter()\n"
        "for n, s in ACTIVATIONS.items():\n"
        "    if s.public: getattr(fa, n)(x); getattr(fa, n + '_backward')(x, x)\n"
        "print(time.perf_counter()-t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        cold = _run(first, env)
        warm = statistics.median(_run(first, env) for _ in range(3))
        _run(many, env)
        warm_many = statistics.median(_run(many, env) for _ in range(3))
    return imp, cold, warm, warm_many


def alternating(calls, rounds=9, min_time=0.02):
    """Seconds per call of each of ``calls`` (name -> function), one batch of each per round,
    the batches of a round back to back: ratios taken within a round compare the calls under
    the same machine state (the shared box's memory bandwidth drifts 2-3x between minutes)."""
    for c in calls.values():
        c()  # compile / warm up
    loops = {k: _cases.calibrate(c, min_time) for k, c in calls.items()}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for k, c in calls.items():
            times[k].append(_cases.batch_time(c, loops[k]))
    return times


def _round_ratio(a, b):
    """Median over the rounds of a / b."""
    return statistics.median(x / y for x, y in zip(a, b))


def bandwidth_rows(n, dtypes):
    """Every op of the benchmark suite at n elements: fastact (out=) vs a parallel copy of the
    same array and vs torch (out=, same threads) where torch has the op, each op timed in
    rounds alternating with the copy and torch (``alternating``)."""
    torch = _cases.torch_module()
    if torch is not None:
        torch.set_num_threads(numba.get_num_threads())
    rows = []
    for dtype in dtypes:
        copy = _cases.prepare_copy(dtype, n)
        copy_bytes = _cases.bytes_moved(copy.inputs, copy.out_nbytes)
        copy_times = []
        op_rows = []
        for op in _cases.CASES:
            fast = _cases.prepare("fastact", op, dtype, n)
            calls = {"copy": copy.call, "fastact": fast.call}
            if torch is not None and _cases.has_impl("torch", op):
                calls["torch"] = _cases.prepare("torch", op, dtype, n).call
            times = alternating(calls)
            copy_times += times["copy"]
            t = statistics.median(times["fastact"])
            op_bytes = _cases.bytes_moved(fast.inputs, fast.out_nbytes)
            # of copy: the op's GB/s over the copy's GB/s of the same round
            of_copy = _round_ratio(times["copy"], times["fastact"]) * op_bytes / copy_bytes
            vs_torch = _round_ratio(times["torch"], times["fastact"]) if "torch" in times else ""
            op_rows.append([op, dtype, t * 1e3, op_bytes / t / 1e9, of_copy, vs_torch])
        t_copy = statistics.median(copy_times)
        rows.append(
            ["copy (parallel numba)", dtype, t_copy * 1e3, copy_bytes / t_copy / 1e9, 1.0, ""]
        )
        rows += op_rows
    return rows


def numpy_rows(n):
    rng = np.random.default_rng(1)
    rows = []
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal(n) * 4).astype(dtype)
        out = np.empty_like(x)
        for name in ("sigmoid", "log_sigmoid", "softplus", "gelu", "silu", "tanh", "relu", "mish"):
            t = median_time(lambda: getattr(fa, name)(x, out=out), repeat=5)
            tr = median_time(lambda: getattr(reference, name)(x), repeat=5)
            rows.append([name, np.dtype(dtype).name, t * 1e3, tr * 1e3, tr / t])
    return rows


def small_call(rounds=41):
    """(fastact s, torch s, median of the per-round ratios fastact / torch): n = 1000 float32
    sigmoid, the two timed in alternating batches so that both see the same machine state
    (on the shared box a call's time drifts 2x between minutes)."""
    x = np.random.default_rng(2).standard_normal(1000).astype(np.float32)
    calls = {"fastact": lambda: fa.sigmoid(x)}
    try:
        import torch

        tx = torch.from_numpy(x)
        calls["torch"] = lambda: torch.sigmoid(tx)
    except ImportError:
        pass
    # the first call loads (or compiles) the kernel: alternating() makes it outside the rounds
    times = alternating(calls, rounds, min_time=0.005)
    t = statistics.median(times["fastact"])
    if "torch" not in calls:
        return t, float("nan"), float("nan")
    return t, statistics.median(times["torch"]), _round_ratio(times["fastact"], times["torch"])


def memory(n):
    x = np.random.default_rng(3).standard_normal(n).astype(np.float32)
    rows = []
    for name in ("sigmoid", "gelu", "silu", "softplus"):
        out = np.empty_like(x)
        getattr(fa, name)(x)
        peaks = []
        for func in (
            lambda: getattr(fa, name)(x),
            lambda: getattr(fa, name)(x, out=out),
            lambda: getattr(reference, name)(x),
        ):
            tracemalloc.start()
            func()
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        rows.append([name, peaks[0] / x.nbytes, peaks[1] / x.nbytes, peaks[2] / x.nbytes])
    return rows


def blas_loop():
    from fastact import _kernels as k

    rng = np.random.default_rng(4)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    x = rng.standard_normal(1 << 20).astype(np.float32)
    out = np.empty_like(x)
    z = np.float32(0)
    res = {}
    for label, kernel in (
        ("serial", k.sigmoid_forward_serial),
        ("parallel", k.sigmoid_forward_parallel),
    ):
        res[label] = median_time(lambda: (a @ a, kernel(x, out, z, z)), repeat=7)
    res["matmul"] = median_time(lambda: a @ a, repeat=7)
    return res


def _narrow_kernel(name):
    """The serial forward kernel of ``name`` as fastact generates it, minus ``wide_vectors()``:
    what LLVM makes of the loop with its default preference (256-bit on Intel's AVX-512 CPUs)."""
    from numba import njit

    from fastact import activations

    scalar = getattr(activations, name)
    options = dict(_config.SERIAL, cache=False)

    @njit(**options)
    def narrow(x, out, a, b):
        for i in range(x.size):
            out[i] = scalar(x[i], a, b)

    return narrow


def _vector_loop(asm: str) -> str:
    """The basic block of x86 assembly with the most 256/512-bit register operands: a
    kernel's vector loop."""
    import re

    blocks = re.split(r"\n(?=\.LBB\d+_\d+:)", asm)
    return max(blocks, key=lambda b: b.count("zmm") + b.count("ymm"))


def default_vector_bits() -> int:
    """The vector width (bits) LLVM gives sigmoid's float32 loop without ``wide_vectors()`` on
    this CPU, from the block with the most 256/512-bit register operands (the vector loop)."""

    kernel = _narrow_kernel("sigmoid")
    x = np.ones(64, np.float32)
    kernel(x, np.empty_like(x), np.float32(0), np.float32(0))
    asm = kernel.inspect_asm(kernel.signatures[0])
    hot = _vector_loop(asm)
    return 512 if hot.count("zmm") > hot.count("ymm") else 256 if "ymm" in hot else 128


def vector_width(n, names=("sigmoid", "tanh", "gelu", "silu", "softplus", "log_sigmoid", "relu")):
    """ns per element of the serial forward kernels on n elements (in cache), with and without
    the 512-bit preference (same results: checked)."""
    from fastact import _kernels

    rows = []
    x64 = np.random.default_rng(5).standard_normal(n) * 4
    for name in names:
        narrow = _narrow_kernel(name)
        wide = getattr(_kernels, f"{name}_forward_serial")
        for dtype in (np.float32, np.float64):
            x = x64.astype(dtype)
            zero = dtype(0)
            outs, times = [], []
            for kernel in (narrow, wide):
                out = np.empty_like(x)
                times.append(median_time(lambda k=kernel, o=out: k(x, o, zero, zero), repeat=15))
                outs.append(out)
            if not np.array_equal(outs[0], outs[1], equal_nan=True):
                raise AssertionError(f"{name} {dtype}: the 512-bit kernel's results differ")
            rows.append(
                [
                    name,
                    np.dtype(dtype).name,
                    times[0] / n * 1e9,
                    times[1] / n * 1e9,
                    times[0] / times[1],
                ]
            )
    return rows


def _loop_vector_instructions(name, dtype):
    """Vector (zmm) instructions in the main loop of ``name``'s serial forward kernel, compiled
    afresh as fastact generates it (one iteration: 16 float32 or 8 float64 elements)."""

    from numba import njit

    from fastact import activations
    from fastact._math import wide_vectors

    scalar = getattr(activations, name)

    @njit(**dict(_config.SERIAL, cache=False))
    def kernel(x, out, a, b):
        wide_vectors()
        for i in range(x.size):
            out[i] = scalar(x[i], a, b)

    x = np.ones(64, dtype)
    kernel(x, np.empty_like(x), dtype(1), dtype(20))
    asm = kernel.inspect_asm(kernel.signatures[0])
    hot = _vector_loop(asm)
    return sum(1 for line in hot.splitlines() if "zmm" in line and not line.strip().startswith("#"))


def compute_rows(n, names=("sigmoid", "tanh", "gelu", "silu", "softplus", "log_sigmoid")):
    """One thread each, n elements (in cache): ns per element of fastact (out=) and torch
    (out=), timed in alternating rounds; torch / fastact is the median of the per-round
    ratios. What each op costs in arithmetic, with memory out of the way."""
    torch = _cases.torch_module()
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    if torch is not None:
        torch.set_num_threads(1)
    rows = []
    try:
        for name in names:
            for dtype in ("float32", "float64"):
                calls = {"fastact": _cases.prepare("fastact", name, dtype, n).call}
                if torch is not None and _cases.has_impl("torch", name):
                    calls["torch"] = _cases.prepare("torch", name, dtype, n).call
                times = alternating(calls, rounds=11, min_time=0.01)
                fast = statistics.median(times["fastact"]) / n * 1e9
                peer = statistics.median(times["torch"]) / n * 1e9 if "torch" in times else ""
                ratio = _round_ratio(times["torch"], times["fastact"]) if "torch" in times else ""
                width = 16 if dtype == "float32" else 8
                count = _loop_vector_instructions(name, np.dtype(dtype).type)
                rows.append([name, dtype, fast, peer, ratio, f"{count} / {width}"])
    finally:
        numba.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
    return rows


def md(header, rows, fmt):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f(v) for f, v in zip(fmt, row)) + " |")
    return "\n".join(lines) + "\n"


def num(p):
    return lambda v: v if isinstance(v, str) else f"{v:.{p}f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16_000_000)
    parser.add_argument("--quick", action="store_true", help="small sizes, to test the script")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "performance.md"))
    args = parser.parse_args(argv)
    n = 1_000_000 if args.quick else args.size
    t0 = time.perf_counter()
    imp, cold, warm, warm_many = startup()
    call, call_torch, call_ratio = small_call()
    bw = bandwidth_rows(n, ("float32", "float64"))
    vs_numpy = numpy_rows(100_000 if args.quick else 1_000_000)
    mem = memory(1_000_000)
    loop = blas_loop()
    width_n = 4096 if args.quick else 16384
    width = vector_width(width_n)
    default_bits = default_vector_bits()
    llvm_cpu = llvmlite.binding.get_host_cpu_name()
    if default_bits == 512:
        width_default = (
            f"numba 0.68's LLVM detects this CPU as {llvm_cpu} and already gives fastact's loops "
            "512-bit vectors without the attribute below (checked in the assembly of this run): "
            "here the two columns time the same vector width (their ratio is the run's noise, "
            "or other differences of the generated code). "
            "On Intel's AVX-512 chips since Skylake-X LLVM's tuning prefers 256-bit vectors "
            "(8 float32 lanes)."
        )
    else:
        width_default = (
            f"numba 0.68's LLVM detects this CPU as {llvm_cpu} and gives fastact's loops "
            f"{default_bits}-bit vectors without the attribute below (checked in the assembly of "
            "this run), as its tuning does for Intel's AVX-512 chips since Skylake-X (they "
            "prefer 256-bit vectors)."
        )
    compute = compute_rows(8192 if args.quick else 65536)
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    cpu = _cases.cpu_model()
    serial_extra = loop["serial"] - loop["matmul"]
    parallel_extra = loop["parallel"] - loop["matmul"]
    if parallel_extra <= serial_extra:
        blas_verdict = (
            f"In this run the parallel kernel added {parallel_extra * 1e3:.2f} ms to the matmul's "
            f"loop and the serial one {serial_extra * 1e3:.2f} ms: the spin count keeps the "
            "fight small."
        )
    else:
        blas_verdict = (
            f"In this run the parallel kernel still added more to the matmul's loop than the "
            f"serial one ({parallel_extra * 1e3:.2f} against {serial_extra * 1e3:.2f} ms): next "
            "to BLAS on few cores, prefer the serial kernels (`FASTACT_PARALLEL_THRESHOLD` "
            "above your arrays' sizes, or `numba.set_num_threads(1)`), as the MLP trainer does."
        )
    tanh32 = next((r for r in compute if r[0] == "tanh" and r[1] == "float32"), None)
    tanh_ratio = tanh32[4] if tanh32 is not None and not isinstance(tanh32[4], str) else None
    if tanh_ratio is None:
        tanh_note = "its float32 tanh is within 0.6 ULP"
    elif tanh_ratio < 1:
        tanh_note = "its float32 tanh is both faster (here) and within 0.6 ULP"
    else:
        tanh_note = "its float32 tanh is within 0.6 ULP, and slower here"
    page = f"""# Performance (CPU)

(GPU: the CUDA kernels' tables, measured on an NVIDIA H200 with `bench/gpu.py` and
`bench/gpu_mlp.py`, are in [docs/gpu.md](gpu.md#measured-on-an-nvidia-h200).)

Generated by `tools/performance_report.py{" --quick" if args.quick else ""}` on {
        datetime.date.today()
    }
({time.perf_counter() - t0:.0f} s): {cpu}, {os.cpu_count()} CPUs, {
        numba.get_num_threads()
    } numba threads
(threading layer {numba.threading_layer()}, GOMP_SPINCOUNT={
        os.environ.get("GOMP_SPINCOUNT")
    }); Python
{platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__}, torch {
        torch_version
    }.
Shared 2-core machines drift by 30% or more between runs: compare the ratios, measured in the
same run, rather than absolute times. Medians of repeated timings.

## Start-up

| what | time |
|---|---|
| `import fastact` | {imp * 1e3:.0f} ms |
| first `fa.sigmoid(x)` in a process, empty cache (compiles the kernel) | {cold * 1e3:.0f} ms |
| first `fa.sigmoid(x)` in a process, kernel in the disk cache | {warm * 1e3:.0f} ms |
| then every public forward and backward (32 more kernels) from the cache | {
        warm_many * 1e3:.0f} ms |

Kernels compile lazily, per op and dtype, and are cached on disk (next to the package, or in
`NUMBA_CACHE_DIR`); the first cached kernel in a process also pays numba's one-time start.
With no writable cache location fastact still works, compiling in each process.

## Call overhead, n = 1000 float32

`fa.sigmoid(x)`, the whole call (checks, allocation, kernel): **{call * 1e6:.2f} µs** median;
`torch.sigmoid` on the same array: {call_torch * 1e6:.2f} µs; timed in alternating batches,
fastact / torch = **{call_ratio:.2f}** (median of the per-round ratios).

## Bandwidth at {n:,} elements (forward reads 1 array and writes 1, backward reads 2)

The same cases, data and peers as the benchmark suite (`bench/_cases.py`).

GB/s counts bytes read + written; *of copy* is the op's GB/s as a fraction of a parallel numba
copy's; *torch / fastact* is torch's time over fastact's (> 1: fastact faster), same threads,
`out=` for both. Each op is timed in 9 rounds alternating with the copy and torch, and both
ratios are medians of the per-round ratios (the shared box's memory bandwidth drifts 2-3x
between minutes); ms, GB/s and the copy's row are medians over the rounds.

{
        md(
            ["op", "dtype", "ms", "GB/s", "of copy", "torch / fastact"],
            [r[:6] for r in bw],
            [str, str, num(2), num(1), num(2), lambda v: v if isinstance(v, str) else f"{v:.2f}"],
        )
    }
## Against the NumPy reference ({"100,000" if args.quick else "1,000,000"} elements)

{
        md(
            ["op", "dtype", "fastact ms", "numpy ms", "speed-up"],
            vs_numpy,
            [str, str, num(3), num(3), num(1)],
        )
    }
## Memory per call (1M float32; tracemalloc peak, in units of the input's size)

{md(["op", "fastact", "fastact, out=", "numpy reference"], mem, [str, num(2), num(2), num(2)])}
fastact allocates exactly its output (1.00), nothing with `out=`; the reference makes NumPy's
temporaries.

## Kernels next to BLAS (512x512 float32 matmul + 1M-element sigmoid, per iteration)

| loop | ms |
|---|---|
| matmul alone | {loop["matmul"] * 1e3:.2f} |
| matmul + serial kernel | {loop["serial"] * 1e3:.2f} |
| matmul + parallel kernel | {loop["parallel"] * 1e3:.2f} |

numba's OpenMP workers spin after each parallel region (GNU default: 300,000 spins) and take
the cores from OpenBLAS: with that default the parallel loop ran 5x slower than the serial one
(8.4 vs 1.7 ms in our first measurement, on a 2-core Intel Xeon VM). fastact sets
`GOMP_SPINCOUNT=20000` unless you set it, which keeps parallel launches at a few µs; the MLP
trainer uses the serial kernels only. {blas_verdict} Arrays of at least `PARALLEL_THRESHOLD` = {
        _config.PARALLEL_THRESHOLD:,} elements use the
parallel kernels (measured crossover on that Intel VM: ~16K elements for sigmoid/gelu, ~64K
for relu).

## Vector width (512-bit vectors, per kernel)

{width_default} fastact's kernels call
`fastact._math.wide_vectors()`, which sets LLVM's per-function `prefer-vector-width=512`
attribute: 16 float32 lanes in fastact's loops, and no other code of the process changed (the
process-wide `NUMBA_CPU_FEATURES=...,-prefer-256-bit` does the same for every numba function).
Serial forward kernels on {width_n:,} elements (in cache), ns per element, the same loop compiled
without and with the attribute in this run (results bit-identical, checked):

{
        md(
            ["op", "dtype", "without ns/el", "with the attribute ns/el", "speed-up"],
            width,
            [str, str, num(3), num(3), num(2)],
        )
    }
## Arithmetic alone: one thread, in cache, against torch

Where *of copy* is well below 1 above, the op is compute-bound at 16M elements on 2 threads,
and its ratio to torch there is the ratio of their arithmetic. Here both run on one
thread over {"8,192" if args.quick else "65,536"} elements (in L2), `out=`, alternating rounds;
*vector instructions* counts the 512-bit instructions of fastact's loop per iteration (per 16
float32 or 8 float64 elements), from the assembly of the kernel compiled in this run.

{
        md(
            [
                "op",
                "dtype",
                "fastact ns/el",
                "torch ns/el",
                "torch / fastact",
                "vector instructions / elements",
            ],
            compute,
            [str, str, num(3), num(3), num(2), str],
        )
    }
An AVX-512 core issues 512-bit arithmetic on two ports: the instruction count is most of the
cost (a division also holds the divider).
fastact's loops carry what its ULP bounds need ([accuracy](accuracy.md)): exp's Cody-Waite
reduction and polynomial, 2^k applied in two factors so that subnormal results round once,
float32 sigmoid's, silu's and tanh's correction for the rounding of 1 + e, tanh's two
branches, gelu's
erfc with x^2 carried as a float32 pair. Where torch / fastact is below 1, torch's loop does
less arithmetic per element; at 16M elements the memory traffic both pay narrows the gap.
torch's accuracy on the same inputs is in [accuracy](accuracy.md) ("PyTorch on the same
inputs"): its float32 sigmoid exceeds fastact's 2-ULP bound and returns 0 for subnormal
results, its gelu, silu and gelu (tanh) lose the left tail; {tanh_note}.
"""
    with open(args.out, "w") as fh:
        fh.write(page)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
