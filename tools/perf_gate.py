#!/usr/bin/env python
"""Performance-regression gate: fastact against floors committed in bench/perf_floors.toml.

    python tools/perf_gate.py                # measure, print the table, exit 1 on a regression
    python tools/perf_gate.py --suggest      # also print floors at half of what was measured

Machine-independent metrics, measured in ONE run, interleaved (each repeat times every
measurement once, the two sides of a ratio back to back, so load from other processes hits
both), medians over the repeats:

* ``speedup``: time of the plain-NumPy reference (``fastact.reference``, single-threaded) /
  time of fastact on the same data (with a preallocated ``out``), fastact on ONE thread by
  default (``threads`` in the file): the per-core speedup, which does not grow with the core
  count (so a floor set on a 2-core box still bites on a 64-core one) and is not distorted
  when another process holds a core (a multi-threaded kernel then waits for its descheduled
  worker at every barrier: 1e6-element calls measured 20x slower on the shared 2-core box).
  At n = 1e3 the ratio is the call overhead (serial kernel either way).
* ``copy_fraction``: fastact's bandwidth (bytes read + written per second) as a fraction of a
  parallel numba copy of the same array (the memory-bandwidth ceiling), both on all threads.

A metric fails when it is below ``floor * (1 - margin)`` (margin: the entry's, else the
file's default). Exit status 0 = all pass, 1 = regression, 2 = usage / setup error.
Every measured implementation is first checked against fastact.reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "bench"))

DEFAULT_FLOORS = os.path.join(ROOT, "bench", "perf_floors.toml")


def load_toml(path: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            sys.exit("perf_gate: reading the floors needs Python >= 3.11 or `pip install tomli`")
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--floors", default=DEFAULT_FLOORS, help="floors file (default: %(default)s)")
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats per measurement (default: the file's, else 15)",
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds per timed batch (default: the file's, else 0.02)",
    )
    p.add_argument("--json", metavar="PATH", help="also write the measurements as JSON")
    p.add_argument(
        "--suggest",
        action="store_true",
        help="print floors at half of the measured values (to update the file)",
    )
    return p.parse_args(argv)


class Unit:
    """One timed call (an implementation of an op on one dtype and size)."""

    def __init__(self, key, prepared, threads: int):
        self.key = key
        self.prepared = prepared
        self.threads = threads
        self.loops = 1
        self.times = []

    @property
    def bytes(self) -> int:
        from _cases import bytes_moved

        return bytes_moved(self.prepared.inputs, self.prepared.out_nbytes)

    def median(self) -> float:
        return statistics.median(self.times)


def entry_threads(entry, settings) -> int:
    """Threads fastact runs on for an entry: ``threads`` (a number or "all"); default 1 for
    ``speedup`` (settings.speedup_threads), all for ``copy_fraction``."""
    import numba

    default = settings.get("speedup_threads", 1) if entry["metric"] == "speedup" else "all"
    threads = entry.get("threads", default)
    all_threads = numba.config.NUMBA_NUM_THREADS
    return all_threads if threads == "all" else max(1, min(int(threads), all_threads))


def build_units(entries, settings):
    """The timed calls the entries need, each checked against the reference, in the order
    measured (the two sides of an entry adjacent)."""
    import _cases as C
    import numba

    units: dict = {}

    def unit(impl, op, dtype, size, threads):
        key = (impl, op, dtype, size, threads)
        if key not in units:
            numba.set_num_threads(threads)
            if impl == "copy":
                prepared = C.prepare_copy(dtype, size, C.parallel_copy)
            else:
                prepared = C.prepare(impl, op, dtype, size)
                C.check_result(impl, op, dtype, size, prepared.result(prepared.call()))
            units[key] = Unit(key, prepared, threads)
        return units[key]

    pairs = []
    for e in entries:
        op, dtype, size = e["op"], e["dtype"], int(e["size"])
        if op not in C.CASES:
            raise SystemExit(
                f"perf_gate: unknown op {op!r} in the floors file (known: {', '.join(C.CASES)})"
            )
        threads = entry_threads(e, settings)
        if e["metric"] == "speedup":
            other = unit("numpy", op, dtype, size, threads)
        elif e["metric"] == "copy_fraction":
            other = unit("copy", "copy", dtype, size, threads)
        else:
            raise SystemExit(f"perf_gate: unknown metric {e['metric']!r}")
        fa = unit("fastact", op, dtype, size, threads)
        pairs.append((e, other, fa))
    return pairs, list(units.values())


def measure(units, repeats: int, min_time: float) -> None:
    import _cases as C
    import numba

    for u in units:
        numba.set_num_threads(u.threads)
        u.prepared.call()  # warm (caches, page faults)
        u.loops = C.calibrate(u.prepared.call, min_time)
    for _ in range(repeats):
        for u in units:
            numba.set_num_threads(u.threads)
            u.times.append(C.batch_time(u.prepared.call, u.loops))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def metric_value(entry, other: Unit, fa: Unit) -> float:
    if entry["metric"] == "speedup":
        return other.median() / fa.median()
    # copy_fraction: GB/s of fastact / GB/s of the copy
    return (fa.bytes / fa.median()) / (other.bytes / other.median())


def fmt_size(n: int) -> str:
    for label, value in (
        ("16e6", 16_000_000),
        ("1e6", 1_000_000),
        ("1e5", 100_000),
        ("1e3", 1_000),
    ):
        if n == value:
            return label
    return str(n)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    if not os.path.exists(args.floors):
        print(f"perf_gate: no floors file {args.floors}", file=sys.stderr)
        return 2
    config = load_toml(args.floors)
    settings = config.get("settings", {})
    entries = config.get("floor", [])
    if not entries:
        print(f"perf_gate: {args.floors} has no [[floor]] entries", file=sys.stderr)
        return 2
    default_margin = float(settings.get("margin", 0.25))
    repeats = args.repeats or int(settings.get("repeats", 15))
    min_time = args.min_time or float(settings.get("min_time", 0.02))

    import _cases as C
    import numba
    import numpy as np

    import fastact

    print(f"fastact {fastact.__version__} from {os.path.dirname(fastact.__file__)}")
    print(
        f"{C.cpu_model()}, {os.cpu_count()} CPUs, numba threads {numba.get_num_threads()}; "
        f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}"
    )
    print(
        f"floors: {os.path.relpath(args.floors)}; {repeats} interleaved repeats, "
        f"batches >= {min_time * 1e3:.0f} ms, default margin {default_margin:.0%}"
    )

    try:
        pairs, units = build_units(entries, settings)
    except AssertionError as exc:
        print(
            f"perf_gate: an implementation gives wrong results, not timing it:\n{exc}",
            file=sys.stderr,
        )
        return 2
    measure(units, repeats, min_time)

    rows, failed, results = [], 0, []
    for e, other, fa in pairs:
        value = metric_value(e, other, fa)
        floor = float(e["floor"])
        margin = float(e.get("margin", default_margin))
        limit = floor * (1 - margin)
        if value < limit:
            status, failed = "FAIL", failed + 1
        elif value < floor:
            status = "low (within margin)"
        else:
            status = "ok"
        rows.append(
            (
                e["op"],
                e["dtype"],
                fmt_size(int(e["size"])),
                e["metric"],
                str(fa.threads),
                f"{value:.2f}",
                f"{floor:g}",
                f"{limit:.2f}",
                status,
            )
        )
        results.append(
            dict(
                op=e["op"],
                dtype=e["dtype"],
                size=int(e["size"]),
                metric=e["metric"],
                threads=fa.threads,
                measured=value,
                floor=floor,
                fail_below=limit,
                status=status,
                fastact_median_s=fa.median(),
                other_median_s=other.median(),
            )
        )

    header = (
        "op",
        "dtype",
        "size",
        "metric",
        "threads",
        "measured",
        "floor",
        "fail below",
        "status",
    )
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print()
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))
    elapsed = time.perf_counter() - t_start
    print()
    if failed:
        print(
            f"PERFORMANCE REGRESSION: {failed} of {len(rows)} metrics below floor * (1 - margin) "
            f"({elapsed:.0f} s)"
        )
    else:
        print(
            f"perf gate passed: {len(rows)} metrics at or above their floors' limits ({elapsed:.0f} s)"
        )

    if args.suggest:
        print("\n# suggested floors (half of the measured values):")
        for r in results:
            print(
                f"# {r['op']:<20} {r['dtype']:<8} {fmt_size(r['size']):<5} {r['metric']:<14} "
                f"measured {r['measured']:.2f} -> floor {r['measured'] / 2:.3g}"
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"failed": failed, "results": results, "elapsed_s": elapsed}, fh, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
