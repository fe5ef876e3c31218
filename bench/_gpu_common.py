"""Helpers of the GPU scripts (bench/gpu.py, bench/gpu_loops.py, bench/gpu_mlp.py,
bench/gpu_host_cost.py): sizes on the command line, ULP distances, CUDA-event timings, a
launch counter. numba is imported inside the functions, after a script has
chosen the simulator (NUMBA_ENABLE_CUDASIM must be set before numba is imported)."""

from __future__ import annotations

import contextlib

import numpy as np


@contextlib.contextmanager
def counting_launches():
    """Counts numba kernel launches (``kernel[grid, block]`` configures one) inside the
    ``with`` block: yields a one-element list, the count."""
    import fastact as fa

    dispatcher = type(fa.cuda.fused_kernels().zero)
    count = [0]
    configure = dispatcher.__getitem__

    def counted(self, config):
        count[0] += 1
        return configure(self, config)

    dispatcher.__getitem__ = counted
    try:
        yield count
    finally:
        dispatcher.__getitem__ = configure


@contextlib.contextmanager
def numba_argument_path():
    """Inside the ``with`` block fastact's kernels take numba's own marshalling of array
    arguments, as with FASTACT_CUDA_ARGUMENTS=numba (fastact._cuda_launch), to time both in
    one process: the extension passes every argument through unchanged, which leaves one
    Python call per argument (~0.1 us) on top of numba's path."""
    from fastact._cuda_launch import EXTENSIONS

    if not EXTENSIONS:  # the simulator, or the setting: numba's path already
        yield
        return
    kind = type(EXTENSIONS[0])
    prepare = kind.prepare_args
    kind.prepare_args = lambda self, ty, val, stream, retr: (ty, val)
    try:
        yield
    finally:
        kind.prepare_args = prepare


def parse_size(text: str) -> int:
    """'256M', '64k', '1G', '1_000' -> elements."""
    text = text.strip().upper().replace("_", "")
    factor = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text[:-1] if factor > 1 else text) * factor)


def ulp_distance(got, want) -> tuple[int, str]:
    """(max ULP distance over the finite part, '' or what does not match in the special values)."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or got.dtype != want.dtype:
        return -1, f"shape/dtype {got.shape} {got.dtype} vs {want.shape} {want.dtype}"
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    if (nan_g != nan_w).any():
        i = int(np.argmax(nan_g != nan_w))
        return -1, f"NaN mismatch at {i}: got {got.flat[i]!r}, want {want.flat[i]!r}"
    f = ~nan_w
    g, w = got[f], want[f]
    if (np.isinf(g) != np.isinf(w)).any() or (g[np.isinf(g)] != w[np.isinf(w)]).any():
        return -1, "inf mismatch"
    zero = (g == 0) & (w == 0)
    if (np.signbit(g[zero]) != np.signbit(w[zero])).any():
        return -1, "sign of zero differs"
    bits = np.int32 if got.dtype == np.float32 else np.int64
    gi, wi = g.view(bits).astype(np.int64), w.view(bits).astype(np.int64)
    top = np.int64(np.iinfo(bits).min)
    gi = np.where(gi < 0, top - gi, gi)  # monotonic integer order of the floats
    wi = np.where(wi < 0, top - wi, wi)
    same_sign = (gi >= 0) == (wi >= 0)  # exact int64 difference; opposite signs: huge anyway
    with np.errstate(over="ignore"):
        d = np.where(same_sign, np.abs(np.where(same_sign, gi - wi, 0)), np.iinfo(np.int64).max)
    return (int(d.max()) if d.size else 0), ""


def gpu_time(fn, repeat: int, warmup: int = 1) -> float:
    """Median milliseconds of ``fn()`` between CUDA events, after ``warmup`` runs."""
    from numba import cuda

    for _ in range(warmup):
        fn()
    cuda.synchronize()
    start, end = cuda.event(), cuda.event()
    times = []
    for _ in range(repeat):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))
