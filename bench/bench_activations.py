"""Benchmarks of every activation's forward and backward against NumPy, SciPy and PyTorch.

Parametrized over ``_cases.CASES`` (derived from ``fastact.activations.ACTIVATIONS``, so a new
activation is covered without touching this file) x implementation x dtype x size. One
pytest-benchmark group per ``op/dtype/size`` compares the implementations. Each item warms
up (compiles), checks its result against ``fastact.reference``, records the peak memory of
one call, then is timed; ``extra_info`` carries GB/s, bytes moved and peak memory.

    pytest bench                                 # smoke: each item once, n = 1e3 and 1e5
    pytest bench --benchmark-enable              # full suite
    pytest bench --quick --benchmark-enable      # representative subset, < 2 minutes
    pytest bench --benchmark-enable -k "sigmoid and float32"
"""

from __future__ import annotations

import _cases as C
import pytest
from _cases import benchmarks_enabled


def _is_quick(op: str, dtype: str, size: str) -> bool:
    return (op is None or op in C.QUICK_OPS) and dtype in C.QUICK_DTYPES and size in C.QUICK_SIZES


def _sizes(config) -> tuple:
    if config.getoption("quick", False):
        return C.QUICK_SIZES
    return tuple(C.SIZES) if benchmarks_enabled(config) else C.SMOKE_SIZES


def pytest_generate_tests(metafunc):
    config = metafunc.config
    quick = config.getoption("quick", False)
    sizes = _sizes(config)
    dtypes = C.QUICK_DTYPES if quick else C.DTYPES
    params = []
    # size, then dtype outermost: the suite generates each (dtype, size) data set once
    if metafunc.function.__name__ == "test_activation":
        ops = [op for op in C.CASES if not quick or op in C.QUICK_OPS]
        for size in sizes:
            for dtype in dtypes:
                for op in ops:
                    for impl in C.IMPLS:
                        if C.has_impl(impl, op):
                            marks = [pytest.mark.quick] if _is_quick(op, dtype, size) else []
                            params.append(
                                pytest.param(
                                    op,
                                    dtype,
                                    size,
                                    impl,
                                    marks=marks,
                                    id=f"{op}-{dtype}-{size}-{impl}",
                                )
                            )
        metafunc.parametrize(("op", "dtype", "size", "impl"), params)
    elif metafunc.function.__name__ == "test_copy_ceiling":
        for size in sizes:
            for dtype in dtypes:
                marks = [pytest.mark.quick] if _is_quick(None, dtype, size) else []
                params.append(pytest.param(dtype, size, marks=marks, id=f"{dtype}-{size}"))
        metafunc.parametrize(("dtype", "size"), params)


def _record_speed(benchmark, nbytes: int) -> None:
    stats = getattr(benchmark, "stats", None)
    if benchmark.enabled and stats is not None:
        median = stats.stats.median
        benchmark.extra_info["median_s"] = median
        benchmark.extra_info["gbps"] = nbytes / median / 1e9 if median > 0 else None


def test_activation(benchmark, op, dtype, size, impl):
    n = C.SIZES[size]
    try:
        prepared = C.prepare(impl, op, dtype, n)
    except C.Unavailable as exc:
        pytest.skip(str(exc))
    # warm-up (compilation, first touch of out) + the peak memory of one call
    if impl == "fastact":
        ret = prepared.call()  # may compile: tracemalloc would count the compiler's allocations
        peak = C.peak_bytes(prepared.call)
    elif impl == "torch":
        ret, peak = prepared.call(), None  # torch's allocator is invisible to tracemalloc
    else:
        ret, peak = C.traced_call(prepared.call)  # one call of a slow reference, not two
    C.check_result(impl, op, dtype, n, prepared.result(ret))
    del ret

    benchmark.group = f"{op}/{dtype}/{size}"
    nbytes = C.bytes_moved(prepared.inputs, prepared.out_nbytes)
    info = benchmark.extra_info
    info.update(
        op=op,
        impl=impl,
        dtype=dtype,
        size=n,
        bytes=nbytes,
        uses_out=prepared.uses_out,
        output_bytes=prepared.out_nbytes,
        peak_bytes=peak,
    )
    if impl == "fastact":
        info["peak_bytes_no_out"] = C.peak_bytes(C.fastact_call_no_out(op, dtype, n))

    benchmark(prepared.call)
    _record_speed(benchmark, nbytes)


def test_copy_ceiling(benchmark, dtype, size):
    """A numba copy of the same data: the memory-bandwidth ceiling. Parallel (prange) where
    fastact runs its parallel kernels, serial below its PARALLEL_THRESHOLD."""
    n = C.SIZES[size]
    kind, kernel = C.copy_kernel(n)
    prepared = C.prepare_copy(dtype, n, kernel)
    benchmark.group = f"copy/{dtype}/{size}"
    nbytes = C.bytes_moved(prepared.inputs, prepared.out_nbytes)
    benchmark.extra_info.update(
        op="copy", impl=f"numba_{kind}_copy", dtype=dtype, size=n, bytes=nbytes
    )
    benchmark(prepared.call)
    _record_speed(benchmark, nbytes)
