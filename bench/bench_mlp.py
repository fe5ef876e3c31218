"""One training epoch of a 784-256-256-10 ReLU MLP: fastact vs NumPy, PyTorch, scikit-learn.

The task and the implementations are described in ``_mlp_cases.py``; the measured table is
in docs/mlp.md.

    pytest bench/bench_mlp.py                          # smoke: 512 samples, each impl once
    pytest bench/bench_mlp.py --benchmark-enable       # 60,000 x 784, 3 timed epochs each
                                                       # (not in --quick)
    python bench/bench_mlp.py [--blas-threads 1] [--impl torch] [--parallel-kernels]
                                                       # the report of docs/mlp.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import _mlp_cases as M
import pytest
from _cases import benchmarks_enabled


@pytest.mark.parametrize("optimizer", M.OPTIMIZERS)
@pytest.mark.parametrize("impl", M.IMPLS)
def test_mlp_epoch(benchmark, impl, optimizer, request):
    full = benchmarks_enabled(request.config)
    X, y, X_test, y_test = M.data(*(M.FULL if full else M.SMOKE))
    try:
        trainer = M.trainer(impl, X, y, optimizer=optimizer)
    except M.Unavailable as exc:
        pytest.skip(str(exc))
    trainer.epoch()  # warm-up: compilation, first touch
    assert 0.0 <= trainer.accuracy(X_test, y_test) <= 1.0
    benchmark.group = f"mlp-epoch/{optimizer}/{len(X)}x{X.shape[1]}"
    benchmark.extra_info.update(
        impl=impl,
        optimizer=optimizer,
        samples=len(X),
        features=X.shape[1],
        hidden=list(M.HIDDEN),
        batch=M.BATCH,
    )
    benchmark.pedantic(trainer.epoch, rounds=3 if full else 1, iterations=1)


# --------------------------------------------------------------------------- the report
def _versions() -> str:
    import numba
    import numpy

    parts = [
        f"Python {platform.python_version()}",
        f"numpy {numpy.__version__}",
        f"numba {numba.__version__}",
    ]
    for name in ("torch", "sklearn"):
        try:
            module = __import__(name)
            parts.append(f"{'scikit-learn' if name == 'sklearn' else name} {module.__version__}")
        except ImportError:
            pass
    return ", ".join(parts)


def _pretouch(gib: float = 2.0) -> None:
    """Touch and free ``gib`` GiB once. On a VM whose memory the host backs lazily (the
    reference box: ~19 us for the first touch of a page, ~1.3 us after), implementations that
    allocate fresh memory every batch (torch) otherwise pay the host's page faults."""
    import numpy as np

    block = np.ones(int(gib * 2**30) // 8)
    del block


def report(
    epochs: int, repeats: int, warmup: int, blas_threads: int | None, impls, optimizer="sgd"
) -> None:
    """Best and median epoch time of each implementation (epochs interleaved across
    implementations, after ``warmup`` epochs each), the ratios to fastact, and the test accuracy
    after ``epochs`` epochs (a separate run)."""
    import numpy as np
    from _cases import cpu_model

    load_before = os.getloadavg()[0]

    if blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(blas_threads)
        try:
            import torch

            torch.set_num_threads(blas_threads)
        except ImportError:
            pass
    _pretouch()
    X, y, X_test, y_test = M.data(*M.FULL)
    trainers = {}
    for impl in impls:
        try:
            trainers[impl] = M.trainer(impl, X, y, optimizer=optimizer)
        except M.Unavailable as exc:
            print(f"{impl}: skipped ({exc})")
            continue
        for _ in range(warmup):  # compilation, first touch of memory
            trainers[impl].epoch()
    times = {impl: [] for impl in trainers}
    for _ in range(repeats):
        for impl, t in trainers.items():
            start = time.perf_counter()
            t.epoch()
            times[impl].append(time.perf_counter() - start)
    accuracy = {
        impl: (
            M.accuracy_after(impl, epochs, X, y, X_test, y_test, optimizer=optimizer)
            if epochs
            else float("nan")
        )
        for impl in trainers
    }
    med = {impl: float(np.median(v)) for impl, v in times.items()}
    best = {impl: min(v) for impl, v in times.items()}
    # each round times every implementation once, back to back: the ratio within a round
    # cancels the machine's slow drifts (other jobs), its median the single disturbed epochs
    paired = {
        impl: float(np.median(np.array(times["fastact"]) / np.array(v)))
        for impl, v in times.items()
    }
    print(
        f"\n{len(X)} x {X.shape[1]} float32, 784-256-256-10 ReLU, batch {M.BATCH}, "
        + (f"SGD momentum {M.MOMENTUM}" if optimizer == "sgd" else f"Adam lr {M.ADAM_LR}")
        + f"; {_versions()}; BLAS threads: {blas_threads or 'default'}"
    )
    print(
        f"{cpu_model()}, {os.cpu_count()} cores; load average (1 min) before {load_before:.2f}, "
        f"after {os.getloadavg()[0]:.2f}"
    )
    print(
        f"\n| implementation | epoch (s), best of {repeats} | median | fastact / this (best; "
        f"median; per round) | all epochs (s) | test accuracy after {epochs} epochs |"
    )
    print("|---|---|---|---|---|---|")
    for impl in trainers:
        ratios = (
            f"{best['fastact'] / best[impl]:.2f}; {med['fastact'] / med[impl]:.2f}; "
            f"{paired[impl]:.2f}"
        )
        runs = ", ".join(f"{t:.2f}" for t in times[impl])
        print(
            f"| {impl} | {best[impl]:.2f} | {med[impl]:.2f} | {ratios} | {runs} | "
            f"{100 * accuracy[impl]:.2f}% |"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="epochs before the accuracy check (0: no accuracy check)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per implementation")
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed epochs per implementation first (torch allocates fresh "
        "memory every batch: on a VM it runs slowly until that memory has "
        "been touched once)",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit BLAS (threadpoolctl) and torch to this many threads",
    )
    parser.add_argument(
        "--parallel-kernels",
        action="store_true",
        help="fastact's trainer with the multi-threaded fused kernels (numba's "
        "thread pool next to BLAS's; the default is single-threaded)",
    )
    parser.add_argument(
        "--optimizer",
        choices=M.OPTIMIZERS,
        default="sgd",
        help="SGD with momentum (the default) or Adam, for every implementation",
    )
    parser.add_argument(
        "--impl",
        action="append",
        choices=M.IMPLS,
        help="only these implementations (repeatable; fastact is always run)",
    )
    args = parser.parse_args(argv)
    if args.parallel_kernels:
        import fastact.mlp

        fastact.mlp.SERIAL_KERNELS = False
    impls = M.IMPLS if not args.impl else ["fastact"] + [i for i in args.impl if i != "fastact"]
    report(args.epochs, args.repeats, args.warmup, args.blas_threads, impls, args.optimizer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
