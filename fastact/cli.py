"""The ``fastact`` command (also ``python -m fastact``).

    fastact demo    a short tour: stable values, sigmoid's derivative, timings vs NumPy
    fastact info    versions, CPU, threads, cache directory
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np


def _median_time(func, *args, repeat=7):
    func(*args)  # warm-up: compilation and first-touch excluded
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _table(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = "  ".join(f"{h:>{w}}" for h, w in zip(header, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(f"{c:>{w}}" for c, w in zip(row, widths)))


def cmd_demo(args) -> int:
    import fastact as fa
    from fastact import reference

    print(f"fastact {fa.__version__}: compiled, numerically stable activation kernels\n")

    print("1. Stable on every input (float64; the naive formulas overflow or give NaN here)")
    xs = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0])
    rows = []
    for name in ("sigmoid", "log_sigmoid", "softplus", "tanh", "gelu", "silu", "mish"):
        ys = getattr(fa, name)(xs)
        rows.append([name] + [f"{v:.6g}" for v in ys])
    _table(["x"] + [f"{v:g}" for v in xs], rows)
    print(f"   sigmoid(-100) in float32 = {fa.sigmoid(np.float32(-100.0)):.4g} "
          "(subnormal, correctly not 0)\n")

    print("2. sigmoid'(x) = s(1 - s): largest (0.25) at x = 0, vanishing as |x| grows")
    xs = np.array([-10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0])
    ds = fa.sigmoid_backward(np.ones_like(xs), fa.sigmoid(xs))
    _table(["x"] + [f"{v:g}" for v in xs], [["sigmoid'(x)"] + [f"{d:.4g}" for d in ds]])
    print(f"   through 10 sigmoid layers the factor is at most 0.25**10 = {0.25**10:.2e}: "
          "gradients vanish;\n   sigmoid alone never makes them explode (that takes large weights).\n")

    n = args.size
    print(f"3. Speed on a real array: {n:,} float32 values from N(0, 4^2), median of 7 runs")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    out = np.empty_like(x)
    g = rng.standard_normal(n).astype(np.float32)
    rows = []
    cases = [
        ("sigmoid", lambda: fa.sigmoid(x, out=out), lambda: reference.sigmoid(x)),
        ("softplus", lambda: fa.softplus(x, out=out), lambda: reference.softplus(x)),
        ("gelu", lambda: fa.gelu(x, out=out), lambda: reference.gelu(x)),
        ("silu", lambda: fa.silu(x, out=out), lambda: reference.silu(x)),
        ("relu", lambda: fa.relu(x, out=out), lambda: reference.relu(x)),
        ("silu_backward", lambda: fa.silu_backward(g, x, out=out), lambda: reference.silu_backward(g, x)),
    ]
    for name, fast, slow in cases:
        t_fast = _median_time(fast)
        t_ref = _median_time(slow)
        gbps = (3 if "backward" in name else 2) * x.nbytes / t_fast / 1e9
        rows.append([name, f"{t_fast * 1e3:.2f}", f"{t_ref * 1e3:.2f}", f"{t_ref / t_fast:.1f}x", f"{gbps:.1f}"])
    _table(["op", "fastact ms", "numpy ms", "speed-up", "GB/s"], rows)
    print(f"\n   machine: {platform.machine()}, {os.cpu_count()} cpus; numba threads: {_numba_threads()}")
    return 0


def _numba_threads():
    import numba

    return numba.get_num_threads()


def cmd_info(args) -> int:
    import numba

    import fastact
    from fastact import _config

    print(f"fastact      {fastact.__version__}")
    print(f"python       {platform.python_version()} ({platform.machine()})")
    print(f"numpy        {np.__version__}")
    print(f"numba        {numba.__version__}")
    print(f"threads      {numba.get_num_threads()} (threading layer: {numba.config.THREADING_LAYER})")
    print(f"cache        {'on' if _config.CACHE else 'off (no writable location)'}")
    print(f"parallel at  {_config.PARALLEL_THRESHOLD} elements")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastact", description="fastact: compiled activation kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a short tour: stable values, derivatives, timings")
    demo.add_argument("--size", type=int, default=4_000_000, help="array size for the timings")
    demo.set_defaults(func=cmd_demo)
    info = sub.add_parser("info", help="versions, threads, cache")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "size", 1) <= 0:
        build_parser().error("--size must be positive")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
