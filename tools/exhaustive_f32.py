"""Max ULP of float32 ops over every float32 input (2^32 bit patterns), against float64.

The tests sweep every 4096th float32 plus dense grids and edges (tests/ulp.py); this script
checks all of them (5-9 minutes per op on the 2-core Xeon). The reference is the tests' careful float64
NumPy formula (``tests.ulp.reference_numpy64``, ~1e-16 relative: ~1e-9 float32 ULP), the error
is measured as the tests measure it (``tests.ulp.ulp_error``). Activations run through their
public functions (default parameters), math functions through ``fastact._math``
(log1p_exp_neg on its domain, x <= 0).

    python tools/exhaustive_f32.py log_sigmoid softplus [--stride 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import fastact as fa  # noqa: E402
from tests import ulp  # noqa: E402

CHUNK = 1 << 24


def evaluate(name, x):
    if name in ulp.MATH_FUNCTIONS:
        return ulp.math_function(name, x)
    func, extra = ulp.public_call(name)
    return getattr(fa, func)(x, **extra)


def max_ulp(name, stride=1):
    """(max ULP, x at the max, inputs checked) over every stride-th float32 bit pattern."""
    worst, worst_x, count = 0.0, float("nan"), 0
    for start in range(0, 1 << 32, CHUNK):
        bits = np.arange(start, start + CHUNK, stride, dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32)
        if name in ulp.MATH_FUNCTIONS:
            x = x[ulp.in_domain(name, x)]
        if x.size == 0:
            continue
        err = ulp.ulp_error(evaluate(name, x), ulp.reference_numpy64(name, x), ulp.F32)
        count += x.size
        i = int(np.argmax(err))
        if err[i] > worst:
            worst, worst_x = float(err[i]), float(x[i])
    return worst, worst_x, count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ops", nargs="+", help="activation or fastact._math function names")
    parser.add_argument("--stride", type=int, default=1, help="check every stride-th pattern")
    args = parser.parse_args(argv)
    for name in args.ops:
        t0 = time.perf_counter()
        worst, x, count = max_ulp(name, args.stride)
        print(
            f"{name} float32: max {worst:.4f} ULP at x = {x!r} "
            f"({count:,} inputs, {time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
