"""One training epoch of the 784-256-256-10 ReLU MLP on a GPU: MLP(device='cuda') vs PyTorch.

    python bench/gpu_mlp.py [--epochs 3] [--samples 60000]

The task of bench/_mlp_cases.py (60,000 x 784 float32, batch 128, SGD momentum 0.9, lr 0.01),
on the GPU: fastact with CuPy's cuBLAS for the matrix products (when CuPy is installed), fastact
with its own matmul kernel (FASTACT_CUDA_MATMUL=numba), and torch.nn on CUDA with the same
initialization. Each: the median seconds per epoch over ``--epochs`` epochs after one warm-up
epoch (compilation), and the test accuracy after those epochs; the own-matmul epochs also
with numba's own marshalling of array arguments (fastact's launch extension off:
``fastact._cuda_launch``). Prints a table last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _mlp_cases as M
from _gpu_common import counting_launches, gpu_time, numba_argument_path


def fastact_epochs(X, y, X_test, y_test, epochs, matmul, score=True):
    """(seconds of each epoch, test accuracy after ``epochs`` more, NaN unless ``score``)."""
    from numba import cuda

    from fastact.mlp import MLP

    os.environ["FASTACT_CUDA_MATMUL"] = matmul
    make = lambda n: MLP(M.HIDDEN, "relu", optimizer="sgd", lr=M.LR, momentum=M.MOMENTUM,  # noqa: E731
                         batch_size=M.BATCH, epochs=n, seed=0, device="cuda")  # fmt: skip
    make(1).fit(X[:2048], y[:2048])  # compile every kernel (and the CuPy handles)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        clf = make(1).fit(X, y)  # one epoch, the data copied to the GPU included
        cuda.synchronize()
        times.append(time.perf_counter() - start)
    if not score:
        return times, float("nan")
    clf = make(epochs).fit(X, y)
    return times, clf.score(X_test, y_test)


def numba_argument_epochs(X, y, X_test, y_test, epochs):
    """fastact_epochs with the own matmul and numba's own marshalling of array arguments (the
    launch extension of fastact._cuda_launch off), no accuracy: what the extension saves."""
    with numba_argument_path():
        return fastact_epochs(X, y, X_test, y_test, epochs, "numba", score=False)


def launch_costs(repeat=2000):
    """Host microseconds per call, launched ``repeat`` times then one synchronize (the GPU work
    is tiny: what is measured is the launch path). fastact's zero kernel (one array), its sgd
    kernel (9 arguments, as the MLP's update of all its parameters, sgd_segments) and, with
    CuPy, one batch's matrix product: the three kinds of call an MLP step makes (20 launches
    with fastact's own matmul); the two kernels also with numba's own argument marshalling
    (the launch extension of fastact._cuda_launch off). bench/gpu_host_cost.py measures the
    same path without a GPU."""
    from numba import cuda

    import fastact as fa

    k = fa.cuda.fused_kernels()

    def per_call(fn):
        fn()
        cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        cuda.synchronize()
        return (time.perf_counter() - start) / repeat * 1e6

    f = np.float32
    zeros = cuda.device_array(256, np.float64)
    p, g, v = (cuda.to_device(np.zeros(256, f)) for _ in range(3))
    squares, slot = fa.cuda._no_squares()
    zero = lambda: k.zero[1, 256](zeros)  # noqa: E731
    sgd = lambda: k.sgd[1, 256](p, g, v, f(0.01), f(0.9), f(0.0), False, squares, slot)  # noqa: E731
    costs = {
        "numba launch: zero (1 array)": per_call(zero),
        "numba launch: sgd (9 arguments)": per_call(sgd),
    }
    with numba_argument_path():
        costs["  numba's argument path: zero"] = per_call(zero)
        costs["  numba's argument path: sgd"] = per_call(sgd)
    try:
        import cupy

        a, b = cupy.ones((M.BATCH, 784), f), cupy.ones((784, 256), f)
        c = cupy.empty((M.BATCH, 256), f)
        costs["CuPy matmul 128x784 @ 784x256"] = per_call(lambda: cupy.matmul(a, b, out=c))
    except Exception as exc:
        print(f"CuPy matmul not timed: {type(exc).__name__}: {exc}", file=sys.stderr)
    return costs


#: The matrix products of one step of the 784-256-256-10 network at batch 128: (m, k, n) of
#: c (m x n) = op(a) @ op(b), trans_a, trans_b. Forward x @ W per layer; backward dW = x^T g
#: per layer and dX = g W^T for the upper two.
STEP_PRODUCTS = [
    ((128, 784, 256), False, False), ((128, 256, 256), False, False),
    ((128, 256, 10), False, False), ((256, 128, 10), True, False),
    ((128, 10, 256), False, True), ((256, 128, 256), True, False),
    ((128, 256, 256), False, True), ((784, 128, 256), True, False),
]  # fmt: skip


def matmul_times(repeat=20):
    """GPU milliseconds (CUDA events, median of ``repeat``) of one step's matrix products
    (STEP_PRODUCTS, float32), each checked against NumPy first (outputs pre-filled with NaN):
    fastact's tiled kernel, the naive one it replaced and, with CuPy, cuBLAS. Returns
    ({implementation: total ms per step}, the worst |error| / (|exact| + 1) of the two
    kernels)."""
    from _gpu_naive_matmul import naive_matmul as naive
    from numba import cuda

    import fastact as fa
    from fastact.cuda import _grid_2d, _grid_tiles

    k = fa.cuda.fused_kernels()
    rng = np.random.default_rng(0)
    try:
        import cupy
    except Exception:
        cupy = None
    totals = {"fastact tiled": 0.0, "naive (before)": 0.0, **({"CuPy": 0.0} if cupy else {})}
    worst = 0.0
    for (m, depth, n), ta, tb in STEP_PRODUCTS:
        a = rng.standard_normal((depth, m) if ta else (m, depth)).astype(np.float32)
        b = rng.standard_normal((n, depth) if tb else (depth, n)).astype(np.float32)
        want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
        da, db = cuda.to_device(a), cuda.to_device(b)
        runs = {
            "fastact tiled": lambda c: k.matmul[_grid_tiles(m, n)](da, db, c, ta, tb),
            "naive (before)": lambda c: naive[_grid_2d(m, n)](da, db, c, ta, tb),
        }
        for name, run in runs.items():
            c = cuda.to_device(np.full((m, n), np.nan, np.float32))
            run(c)
            got = c.copy_to_host()
            error = float(np.max(np.abs(got - want) / (np.abs(want) + 1)))
            worst = max(worst, error) if error == error else float("inf")  # NaN: not written
            totals[name] += gpu_time(lambda: run(c), repeat)
        if cupy is not None:
            ca, cb = cupy.asarray(a), cupy.asarray(b)
            cc = cupy.empty((m, n), np.float32)
            totals["CuPy"] += gpu_time(
                lambda: cupy.matmul(ca.T if ta else ca, cb.T if tb else cb, out=cc), repeat
            )
    return totals, worst


def launches_per_step(X, y):
    """numba kernel launches per training step of MLP(device='cuda') with fastact's own
    matmul (FASTACT_CUDA_MATMUL=numba: the matrix products are launches too), over one
    epoch."""
    from fastact.mlp import MLP

    os.environ["FASTACT_CUDA_MATMUL"] = "numba"
    with counting_launches() as count:
        MLP(M.HIDDEN, "relu", optimizer="sgd", lr=M.LR, momentum=M.MOMENTUM,
            batch_size=M.BATCH, epochs=1, seed=0, device="cuda").fit(X, y)  # fmt: skip
    return count[0] / -(-len(X) // M.BATCH)


def torch_epochs(X, y, X_test, y_test, epochs):
    import torch

    torch.manual_seed(0)
    dev = torch.device("cuda")
    Xd, yd = torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)
    layers, sizes = [], (X.shape[1], *M.HIDDEN)
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], M.CLASSES)).to(dev)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                layer.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=M.LR, momentum=M.MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)

    def epoch():
        order = torch.from_numpy(rng.permutation(len(X))).to(dev)
        for s in range(0, len(X), M.BATCH):
            idx = order[s : s + M.BATCH]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(Xd[idx]), yd[idx]).backward()
            opt.step()
        torch.cuda.synchronize()

    epoch()  # warm-up
    times = []
    for _ in range(epochs - 1):
        start = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - start)
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(X_test).to(dev)).argmax(1).cpu().numpy()
    return times, float(np.mean(pred == y_test))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--samples", type=int, default=M.FULL[0])
    p.add_argument("--test-samples", type=int, default=M.FULL[1])
    p.add_argument("--features", type=int, default=M.FULL[2])
    args = p.parse_args(argv)
    X, y, X_test, y_test = M.data(args.samples, args.test_samples, args.features)
    rows = []
    for label, run in (
        ("fastact (CuPy matmul)", lambda: fastact_epochs(X, y, X_test, y_test, args.epochs, "")),
        (
            "fastact (own matmul)",
            lambda: fastact_epochs(X, y, X_test, y_test, args.epochs, "numba"),
        ),
        (
            "  numba's argument path",
            lambda: numba_argument_epochs(X, y, X_test, y_test, args.epochs),
        ),
        ("PyTorch CUDA", lambda: torch_epochs(X, y, X_test, y_test, args.epochs + 1)),
    ):
        try:
            times, acc = run()
            rows.append((label, statistics.median(times), acc))
            # each row as it comes too: gpu_all.sh may stop this script before the table
            print(f"{label}: {rows[-1][1]:.3f} s / epoch, test accuracy {acc:.4f}", flush=True)
        except Exception as exc:
            rows.append((label, float("nan"), float("nan")))
            print(f"{label}: {type(exc).__name__}: {exc}", file=sys.stderr)
    try:
        from numba import cuda

        name = cuda.get_current_device().name
        name = name.decode() if isinstance(name, bytes) else name
    except Exception:
        name = "?"
    print(f"\n{name}: {args.samples} x {X.shape[1]}, {X.shape[1]}-256-256-10 ReLU, batch {M.BATCH}, "
          f"SGD momentum; median of {args.epochs} epochs")  # fmt: skip
    print(f"{'implementation':<24}{'s / epoch':>10}{'test acc':>10}")
    for label, t, acc in rows:
        print(f"{label:<24}{t:>10.3f}{acc:>10.4f}")
    try:
        steps = launches_per_step(X[: 20 * M.BATCH], y[: 20 * M.BATCH])
        print(f"fastact (own matmul): {steps:.1f} launches per step")
        for what, us in launch_costs().items():
            print(f"  {what:<36}{us:8.1f} us per call (host)")
    except Exception as exc:
        print(f"launch costs: {type(exc).__name__}: {exc}", file=sys.stderr)
    try:
        totals, worst = matmul_times()
        print(f"one step's 8 matrix products (float32; fastact's kernels against NumPy: worst "
              f"|error| / (|exact| + 1) = {worst:.1e}), GPU time:")  # fmt: skip
        for what, ms in totals.items():
            print(f"  {what:<36}{ms * 1e3:8.1f} us per step (GPU)")
    except Exception as exc:
        print(f"matmul times: {type(exc).__name__}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
