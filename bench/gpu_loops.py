"""Which loop shape moves an elementwise CUDA kernel's memory fastest? Times variants of the
float32 forward kernel of a few activations (the same scalar functions as the generated
kernels, ``fastact.activations``), to choose the shape of ``fastact/_codegen.py``'s template
on a real GPU.

    python bench/gpu_loops.py                    # ~1-2 min on an H200 (compilation included)
    python bench/gpu_loops.py --only copy,sigmoid --size 64M
    python bench/gpu_loops.py --simulate         # no GPU: checks every variant, tiny sizes

Why: on an H200 (docs/gpu.md) the exp-based forwards took 0.8-1.1 ms at 256M elements against
the copy's 0.52 ms, and even relu took 0.65 ms: about the copy's time plus the arithmetic's,
as if loads and arithmetic did not overlap. Each variant keeps loads in flight differently:

- ``stride4``: the generated kernels' element loop (a grid-stride loop, four elements a
  thread: loads at i, i+s, i+2s, i+3s, then four stores; at most CUDA_MAX_BLOCKS blocks): since
  2026-11-27 only for views that do not start on 16 bytes, before that their only loop (the
  H200 times in docs/gpu.md);
- ``vector``: the generated kernels' loop for 16-byte aligned arrays: 128-bit loads and stores
  of four consecutive elements (``fastact._cuda_memory``), two such groups in flight a thread;
- ``vector1``: one group a thread per iteration; ``vector1_oneshot``: one group a thread and no
  loop, as many blocks as it takes (PyTorch's vectorized elementwise kernel);
- ``prefetch``: the same, software-pipelined: the next four loads are issued before this
  iteration's arithmetic and stores, so loads stay in flight while a thread computes;
- ``eight``: eight elements a thread per iteration (twice the loads in flight);
- ``chunk``: each block takes a contiguous chunk of 4 x blockDim elements (thread t: c+t,
  c+t+T, c+t+2T, c+t+3T), grid-stride over chunks: the addresses in flight at one time are
  close together (DRAM locality);
- ``oneshot``: the ``chunk`` kernel with one block per chunk and no loop (PyTorch's grid);
- ``stream``: ``stride4`` with streaming cache hints (``ld.global.cs`` / ``st.global.cs``).

``copy`` is the identity through each shape: the shape's own ceiling. ``sigmoid_expf`` is
sigmoid with libdevice's expf for fastact's exp (27.5 machine instructions per element in the
``vector`` loop against 37.5, sm_90): what the exp's arithmetic costs at the copy's speed. Each variant is first
checked against fastact's CPU kernel (ULP, special values included), then timed with CUDA events
(median of ``--repeat``) next to a device-to-device copy (cudaMemcpy, and PyTorch's copy kernel
when PyTorch with CUDA is installed: the faster is the ceiling). The table comes last.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from _gpu_common import gpu_time, parse_size, ulp_distance


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=parse_size, default=None, help="elements (default 256M)")
    p.add_argument("--only", default="", help="comma-separated activations (default: all)")
    p.add_argument("--variants", default="", help="comma-separated loop shapes (default: all)")
    p.add_argument("--threads", type=int, default=None, help="threads per block (default: config)")
    p.add_argument("--repeat", type=int, default=7, help="timed runs per kernel (median)")
    p.add_argument("--max-ulp", type=int, default=4, help="largest ULP distance from the CPU")
    p.add_argument("--simulate", action="store_true", help="numba's CUDA simulator, tiny sizes")
    args = p.parse_args(argv)
    if args.simulate:
        args.size = args.size or 203
        args.repeat = 1
    args.size = args.size or (256 << 20)
    return args


ARGS = parse()
if ARGS.simulate:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported
    sys.setswitchinterval(1e-4)  # the simulator's barriers: see tests/cuda/conftest.py
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from numba import cuda, njit, uint64  # noqa: E402

import fastact as fa  # noqa: E402
from fastact import _config, reference  # noqa: E402
from fastact import activations as act  # noqa: E402
from fastact._config import CUDA_KERNEL, SCALAR  # noqa: E402
from fastact._cuda_kernels import _grid_1d_by_four, _grid_1d_unsigned  # noqa: E402
from fastact._cuda_memory import load4, store4  # noqa: E402
from fastact._math import over_one_plus  # noqa: E402

if ARGS.simulate:  # one Python thread per GPU thread: few of them, still several blocks
    _config.CUDA_BLOCK_SIZE = 8
    _config.CUDA_MAX_BLOCKS = 3
elif ARGS.threads:
    _config.CUDA_BLOCK_SIZE = ARGS.threads


@njit(**SCALAR)
def _identity(x, a, b):
    return x


@njit(**SCALAR)
def _sigmoid_expf(x, a, b):
    """fastact's sigmoid (float32) with ``math.exp`` for its e^-|x|: on a GPU numba-cuda calls
    libdevice's expf (a reduction around the special-function unit's ex2, 2 ULP by NVIDIA's
    documentation, the exp of PyTorch's CUDA kernels) where fastact's exp_neg is its own
    polynomial (1 ULP, about 20 machine instructions). The row against ``sigmoid`` shows what
    the arithmetic of the exp costs at the copy's speed."""
    e = math.exp(-abs(x))
    numerator = np.float32(1.0) if x >= np.float32(0.0) else e
    return over_one_plus(numerator, e)


def default_params(name: str) -> tuple:
    """The activation's default parameters (a, b) as float32 (unused slots: 0)."""
    if name == "copy":
        return np.float32(0), np.float32(0)
    values = [np.float32(p.default) for p in act.ACTIVATIONS[name.removesuffix("_expf")].params]
    return tuple(values + [np.float32(0)] * (2 - len(values)))


#: activation name -> (scalar function, fastact's CPU function for the check)
ACTIVATIONS = {
    "copy": (_identity, lambda x: x.copy()),
    "relu": (act.relu, fa.relu),
    "sigmoid": (act.sigmoid, fa.sigmoid),
    "sigmoid_expf": (_sigmoid_expf, fa.sigmoid),  # checked against fastact's sigmoid
    "tanh": (act.tanh, fa.tanh),
    "softplus": (act.softplus, fa.softplus),
    "silu": (act.silu, fa.silu),
    "gelu": (act.gelu, fa.gelu),
}

#: rows whose scalar function is fastact's own: the table's last column times the public call
PUBLIC = set(ACTIVATIONS) & set(act.ACTIVATIONS)


# --------------------------------------------------------------------------- loop shapes
# Factories: each builds a kernel (x, out, a, b) around the scalar function f, and returns it
# with its launch configuration (n -> (blocks, threads)).
def _grid_capped(n):
    return fa.cuda._grid_1d(n)


def _grid_groups(n):  # a thread per group of four, as fastact.cuda launches the vector loop
    return fa.cuda._grid_1d(-(-n // 4))


def _grid_chunks(n, capped=True):
    threads = _config.CUDA_BLOCK_SIZE
    blocks = max(1, -(-n // (4 * threads)))
    return (min(blocks, _config.CUDA_MAX_BLOCKS) if capped else blocks), threads


def stride4(f):
    @cuda.jit(**CUDA_KERNEL)
    def kernel(x, out, a, b):
        n = uint64(out.size)
        i, s, s2, s3 = _grid_1d_by_four()
        while i + s3 < n:
            x0 = x[i]
            x1 = x[i + s]
            x2 = x[i + s2]
            x3 = x[i + s3]
            out[i] = f(x0, a, b)
            out[i + s] = f(x1, a, b)
            out[i + s2] = f(x2, a, b)
            out[i + s3] = f(x3, a, b)
            i += s3 + s
        while i < n:
            out[i] = f(x[i], a, b)
            i += s

    return kernel, _grid_capped


def prefetch(f):
    @cuda.jit(**CUDA_KERNEL)
    def kernel(x, out, a, b):
        n = uint64(out.size)
        i, s, s2, s3 = _grid_1d_by_four()
        s4 = s3 + s
        if i + s3 < n:
            x0 = x[i]
            x1 = x[i + s]
            x2 = x[i + s2]
            x3 = x[i + s3]
            more = True
            while more:
                j = i + s4
                more = j + s3 < n
                k = j if more else i  # the last group loads its own elements again
                y0 = x[k]
                y1 = x[k + s]
                y2 = x[k + s2]
                y3 = x[k + s3]
                out[i] = f(x0, a, b)
                out[i + s] = f(x1, a, b)
                out[i + s2] = f(x2, a, b)
                out[i + s3] = f(x3, a, b)
                i = j
                x0, x1, x2, x3 = y0, y1, y2, y3
        while i < n:
            out[i] = f(x[i], a, b)
            i += s

    return kernel, _grid_capped


def eight(f):
    @cuda.jit(**CUDA_KERNEL)
    def kernel(x, out, a, b):
        n = uint64(out.size)
        i, s, s2, s3 = _grid_1d_by_four()
        s4 = s3 + s
        s5, s6, s7 = s4 + s, s4 + s2, s4 + s3
        while i + s7 < n:
            x0 = x[i]
            x1 = x[i + s]
            x2 = x[i + s2]
            x3 = x[i + s3]
            x4 = x[i + s4]
            x5 = x[i + s5]
            x6 = x[i + s6]
            x7 = x[i + s7]
            out[i] = f(x0, a, b)
            out[i + s] = f(x1, a, b)
            out[i + s2] = f(x2, a, b)
            out[i + s3] = f(x3, a, b)
            out[i + s4] = f(x4, a, b)
            out[i + s5] = f(x5, a, b)
            out[i + s6] = f(x6, a, b)
            out[i + s7] = f(x7, a, b)
            i += s7 + s
        while i < n:
            out[i] = f(x[i], a, b)
            i += s

    return kernel, _grid_capped


def _chunk_kernel(f):
    @cuda.jit(**CUDA_KERNEL)
    def kernel(x, out, a, b):
        n = uint64(out.size)
        t = uint64(cuda.threadIdx.x)
        w = uint64(cuda.blockDim.x)
        w2 = w + w
        w3 = w2 + w
        width = w3 + w
        c = uint64(cuda.blockIdx.x) * width
        step = uint64(cuda.gridDim.x) * width
        while c + width <= n:  # whole chunks
            i = c + t
            x0 = x[i]
            x1 = x[i + w]
            x2 = x[i + w2]
            x3 = x[i + w3]
            out[i] = f(x0, a, b)
            out[i + w] = f(x1, a, b)
            out[i + w2] = f(x2, a, b)
            out[i + w3] = f(x3, a, b)
            c += step
        i = c + t  # the last, partial chunk (one block has it)
        while i < n:
            out[i] = f(x[i], a, b)
            i += w

    return kernel


def chunk(f):
    return _chunk_kernel(f), _grid_chunks


def oneshot(f):
    return _chunk_kernel(f), lambda n: _grid_chunks(n, capped=False)


def stream(f):
    @cuda.jit(**CUDA_KERNEL)
    def kernel(x, out, a, b):
        n = uint64(out.size)
        i, s, s2, s3 = _grid_1d_by_four()
        while i + s3 < n:
            x0 = cuda.ldcs(x, i)
            x1 = cuda.ldcs(x, i + s)
            x2 = cuda.ldcs(x, i + s2)
            x3 = cuda.ldcs(x, i + s3)
            cuda.stcs(out, i, f(x0, a, b))
            cuda.stcs(out, i + s, f(x1, a, b))
            cuda.stcs(out, i + s2, f(x2, a, b))
            cuda.stcs(out, i + s3, f(x3, a, b))
            i += s3 + s
        while i < n:
            cuda.stcs(out, i, f(cuda.ldcs(x, i), a, b))
            i += s

    return kernel, _grid_capped


def vector(f):
    @cuda.jit(**CUDA_KERNEL)
    def kernel(x, out, a, b):
        n = uint64(out.size)
        k, s = _grid_1d_unsigned()
        groups = n >> uint64(2)
        while k + s < groups:
            x0, x1, x2, x3 = load4(x, k)
            x4, x5, x6, x7 = load4(x, k + s)
            store4(out, k, f(x0, a, b), f(x1, a, b), f(x2, a, b), f(x3, a, b))
            store4(out, k + s, f(x4, a, b), f(x5, a, b), f(x6, a, b), f(x7, a, b))
            k += s + s
        if k < groups:
            x0, x1, x2, x3 = load4(x, k)
            store4(out, k, f(x0, a, b), f(x1, a, b), f(x2, a, b), f(x3, a, b))
        i = (groups << uint64(2)) + uint64(cuda.grid(1))
        while i < n:
            out[i] = f(x[i], a, b)
            i += s

    return kernel, _grid_groups


def _vector1_kernel(f):
    @cuda.jit(**CUDA_KERNEL)
    def kernel(x, out, a, b):
        n = uint64(out.size)
        k, s = _grid_1d_unsigned()
        groups = n >> uint64(2)
        while k < groups:
            x0, x1, x2, x3 = load4(x, k)
            store4(out, k, f(x0, a, b), f(x1, a, b), f(x2, a, b), f(x3, a, b))
            k += s
        i = (groups << uint64(2)) + uint64(cuda.grid(1))
        while i < n:
            out[i] = f(x[i], a, b)
            i += s

    return kernel


def vector1(f):
    return _vector1_kernel(f), _grid_groups


def vector1_oneshot(f):
    return _vector1_kernel(f), lambda n: _grid_chunks(n, capped=False)


SHAPES = {
    "stride4": stride4,
    "vector": vector,
    "vector1": vector1,
    "vector1_oneshot": vector1_oneshot,
    "prefetch": prefetch,
    "eight": eight,
    "chunk": chunk,
    "oneshot": oneshot,
    "stream": stream,
}


# --------------------------------------------------------------------------- check and time
def check_input(rng, n):
    scale = np.repeat([0.3, 3.0, 30.0], -(-n // 3))[:n]
    x = (rng.standard_normal(n) * scale).astype(np.float32)
    specials = reference.special_values(np.float32)[:n]
    x[: specials.size] = specials
    return x


@cuda.jit(**CUDA_KERNEL)
def fill_uniform(out, seed):
    """out[i] = 12 u - 6, u in [0, 1) from a hash of (i, seed): no host data, no transfer."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        h = (i * 2654435761 + seed) & 0xFFFFFFFF
        h ^= h >> 16
        h = (h * 0x45D9F3B) & 0xFFFFFFFF
        h ^= h >> 16
        out[i] = np.float32(h * (12.0 / 4294967296.0) - 6.0)


def copy_ceiling(x, y, repeat) -> tuple[float, str]:
    best = gpu_time(lambda: y.copy_to_device(x), repeat), "cudaMemcpy"
    try:
        import torch

        if torch.cuda.is_available():
            tx, ty = torch.as_tensor(x, device="cuda"), torch.as_tensor(y, device="cuda")
            ms = gpu_time(lambda: ty.copy_(tx), repeat)
            best = min(best, (ms, "PyTorch copy_"))
    except ImportError:
        pass
    return best


def main() -> int:
    t0 = time.perf_counter()
    if not fa.cuda.is_available():
        print("no CUDA GPU here: run with --simulate", file=sys.stderr)
        return 2
    dev = cuda.get_current_device()
    name = getattr(dev, "name", b"simulator")
    name = name.decode() if isinstance(name, bytes) else name
    print(f"device: {name}{'; SIMULATOR' if ARGS.simulate else ''}", flush=True)
    only = [s for s in ARGS.only.split(",") if s] or list(ACTIVATIONS)
    shapes = [s for s in ARGS.variants.split(",") if s] or list(SHAPES)
    if ARGS.simulate and "stream" in shapes:  # the simulator has no cache-hint loads
        shapes.remove("stream")
        print("(stream skipped: the simulator has no cuda.ldcs / cuda.stcs)")
    rng = np.random.default_rng(int(time.time()))
    n_check = 203 if ARGS.simulate else 100_003  # odd: every tail loop runs
    xc = check_input(rng, n_check)
    dxc = cuda.to_device(xc)
    failures, kernels = [], {}
    for act_name in only:
        f, cpu = ACTIVATIONS[act_name]
        want = cpu(xc)
        params = default_params(act_name)
        for shape in shapes:
            kernel, grid = SHAPES[shape](f)
            out = cuda.to_device(np.full(n_check, np.nan, np.float32))  # poisoned
            kernel[grid(n_check)](dxc, out, *params)
            ulp, problem = ulp_distance(out.copy_to_host(), want)
            if problem or ulp > ARGS.max_ulp:
                failures.append(f"{act_name}/{shape}: {problem or f'{ulp} ULP from the CPU'}")
            kernels[act_name, shape] = kernel, grid
    print(f"checked {len(kernels)} kernels in {time.perf_counter() - t0:.0f} s", flush=True)
    if ARGS.simulate:  # the simulator's events time nothing
        return report(failures)
    n = ARGS.size
    x = cuda.device_array(n, np.float32)
    y = cuda.device_array(n, np.float32)
    fill_uniform[fa.cuda._grid_1d(n)](x, 12345)
    copy_ms, copy_how = copy_ceiling(x, y, ARGS.repeat)
    times = {}
    for (act_name, shape), (kernel, grid) in kernels.items():
        blocks, threads = grid(n)
        p = default_params(act_name)
        times[act_name, shape] = gpu_time(
            lambda k=kernel, b=blocks, t=threads, p=p: k[b, t](x, y, *p), ARGS.repeat
        )
        print(f"{act_name}/{shape}: {times[act_name, shape]:.3f} ms", flush=True)  # if cut short
    public = {}
    for act_name in only:
        if act_name in PUBLIC:
            cpu_fn = ACTIVATIONS[act_name][1]
            public[act_name] = gpu_time(lambda fn=cpu_fn: fn(x, out=y), ARGS.repeat)
    print(
        f"\nfloat32 forward, {n:,} elements, {_config.CUDA_BLOCK_SIZE} threads a block, "
        f"at most {_config.CUDA_MAX_BLOCKS} blocks where capped; ms, median of {ARGS.repeat} "
        f"(% of the copy, {copy_ms:.3f} ms by {copy_how}); 'fastact' is the public function "
        f"(the generated kernel: its vector loop, on these 16-byte aligned arrays)"
    )
    head = ["activation", *shapes, "fastact"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for act_name in only:
        cells = [
            f"{times[act_name, s]:.3f} ({100 * copy_ms / times[act_name, s]:.0f}%)" for s in shapes
        ]
        p = public.get(act_name)
        cells.append(f"{p:.3f}" if p is not None else "-")
        print(f"| {act_name} | " + " | ".join(cells) + " |")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    return report(failures)


def report(failures) -> int:
    if failures:
        print(f"\nFAILED: {len(failures)} check(s):")
        for line in failures:
            print("  " + line)
        return 1
    print(f"all variants match the CPU (<= {ARGS.max_ulp} ULP)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
