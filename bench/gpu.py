"""fastact's CUDA kernels on a real GPU: correctness against the CPU kernels, then speed.

    python bench/gpu.py                          # every kernel, float32 and float64 (~3 min on an H100)
    python bench/gpu.py --only relu,gelu --dtypes float32 --size 64M
    python bench/gpu.py --simulate               # no GPU: numba's simulator, tiny sizes

1. Correctness: every kernel (forward, backward, bias+activation forward, its backward with
   the bias-gradient reduction) on fresh random data with special values at the front, written
   into outputs poisoned with NaN (never zeros), against fastact's CPU kernels: the same
   NaN / inf / signed-zero pattern and at most ``--max-ulp`` ULP apart (the bias gradient to a
   relative 1e-5 / 1e-12 of its absolute sum). The check size stays below fastact's parallel
   threshold, so the CPU side compiles only its serial kernels.
2. Speed: CUDA events around each kernel after warm-up, at ``--size`` elements (default 256M,
   1 GiB per float32 array: enough to fill an H100/H200), as the median of ``--repeat`` runs;
   the effective bandwidth (bytes read + written / time) next to a device-to-device copy of
   the same size (the bandwidth ceiling), and PyTorch / CuPy equivalents on the same buffers
   when they are installed (``act(x + b)`` as two ops for the fused rows). The elementwise rows
   go through the public functions with ``out=``; the fused rows time the kernel launches
   (``fastact.cuda.bias_act`` allocates its outputs, numba's allocator is not what is measured).

Each failure and each timing row prints as it comes (float32 first: checked, then timed); the
tables come again last, also when a time limit's SIGTERM cuts the run short (what was
measured by then). Exit status 1 if any check failed or the run was cut short.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from _gpu_common import gpu_time, parse_size, ulp_distance


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="elements per array when timing (default 256M)",
    )
    p.add_argument(
        "--check-size",
        type=parse_size,
        default=None,
        help="elements per correctness check (default 30000)",
    )
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--only", default="", help="comma-separated activation names (default: all)")
    p.add_argument("--repeat", type=int, default=7, help="timed runs per kernel (median)")
    p.add_argument(
        "--max-ulp", type=int, default=8, help="largest ULP distance from the CPU accepted"
    )
    p.add_argument("--no-timing", action="store_true", help="correctness only")
    p.add_argument("--no-fused", action="store_true", help="skip the fused training ops")
    p.add_argument(
        "--simulate",
        action="store_true",
        help="numba's CUDA simulator (no GPU): tiny sizes, small blocks",
    )
    args = p.parse_args(argv)
    if args.simulate:
        args.size = args.size or 96
        args.check_size = args.check_size or 64
        args.repeat = 1
    args.size = args.size or (256 << 20)
    args.check_size = args.check_size or 30000
    return args


ARGS = parse()
if ARGS.simulate:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported
    sys.setswitchinterval(1e-4)  # the simulator's barriers: see tests/cuda/conftest.py
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

import fastact as fa  # noqa: E402
from fastact import _config, fused, reference  # noqa: E402
from fastact.activations import ACTIVATIONS, SELU_ALPHA, SELU_SCALE  # noqa: E402

if ARGS.simulate:  # one Python thread per GPU thread: few of them, still several blocks
    _config.CUDA_BLOCK_SIZE = 8
    _config.CUDA_MAX_BLOCKS = 4
    _config.CUDA_BIAS_MIN_ROWS = 2
    _config.CUDA_REDUCE_ROWS = 3

#: (public function, keyword arguments, registry name) of every kernel
VARIANTS = [(n, {}, n) for n, s in ACTIVATIONS.items() if s.public] + [
    ("gelu", {"approximate": "tanh"}, "gelu_tanh")
]
BIAS_COLS = 1024


def label(name, kw):
    return name + "".join(f"_{v}" for v in kw.values())


# --------------------------------------------------------------------------- checks
def sample(rng, n, dtype, with_specials=True):
    scale = np.repeat([0.3, 3.0, 30.0], -(-n // 3))[:n]
    x = (rng.standard_normal(n) * scale).astype(dtype)
    if with_specials:
        s = reference.special_values(dtype)[:n]
        x[: s.size] = s
    return x


def poisoned(shape, dtype):
    return cuda.to_device(np.full(shape, np.nan, dtype))


def check(name, kw, reg, dtype, rng, failures):
    """Every kernel of one activation and dtype against the CPU; returns the max ULP seen."""
    n = ARGS.check_size
    worst = 0

    def record(what, got, want, g=None):
        """got vs want; for a backward, differences within 8 eps |g| count as equal (a
        cancellation such as 1 - y*y rounds differently with and without an FMA)."""
        nonlocal worst
        if g is not None:
            with np.errstate(invalid="ignore"):
                close = np.abs(got - want) <= 8 * np.finfo(dtype).eps * np.abs(g)
            got = np.where(close, want, got)
        ulp, problem = ulp_distance(got, want)
        if problem or ulp > ARGS.max_ulp:
            failures.append(
                f"{label(name, kw)} {what} {np.dtype(dtype).name}: {problem or f'{ulp} ULP'}"
            )
        worst = max(worst, ulp)

    fwd, bwd = getattr(fa, name), getattr(fa, f"{name}_backward")
    x = sample(rng, n, dtype)
    g = sample(rng, n, dtype, with_specials=False)
    cpu_y = fwd(x, **kw)
    out = poisoned(n, dtype)
    fwd(cuda.to_device(x), **kw, out=out)
    record("forward", out.copy_to_host(), cpu_y)
    v = cpu_y if ACTIVATIONS[reg].grad_from == "output" else x
    out = poisoned(n, dtype)
    bwd(cuda.to_device(g), cuda.to_device(v), **kw, out=out)
    record("backward", out.copy_to_host(), bwd(g, v, **kw), g)

    cols = min(BIAS_COLS, max(1, n // 8))
    rows = max(1, n // cols)
    X = sample(rng, rows * cols, dtype).reshape(rows, cols)
    B = sample(rng, cols, dtype, with_specials=False)
    G = sample(rng, rows * cols, dtype, with_specials=False).reshape(rows, cols)
    G[0] = 0  # the special values of row 0 stay out of the bias gradient (0 * inf = NaN)
    cpu_out, cpu_saved = fused.bias_act(X, B, name, **kw)
    out = poisoned((rows, cols), dtype)
    _, saved = fa.cuda.bias_act(cuda.to_device(X), cuda.to_device(B), name, out=out, **kw)
    record("bias forward", out.copy_to_host(), cpu_out)
    if saved is not out:
        record("bias forward (saved x + b)", saved.copy_to_host(), cpu_saved)
    cpu_pre, cpu_bias = fused.bias_act_backward(G, cpu_saved, name, **kw)
    pre, grad_bias = fa.cuda.bias_act_backward(cuda.to_device(G), saved, name, **kw)
    record("bias backward", pre.copy_to_host(), cpu_pre, G)
    got = grad_bias.copy_to_host()
    rel = 1e-5 if dtype == np.float32 else 1e-12
    scale = np.nansum(np.abs(cpu_pre[1:]), axis=0) + np.finfo(dtype).tiny
    err = np.abs(got.astype(np.float64) - cpu_bias) / scale
    same_nan = (np.isnan(got) == np.isnan(cpu_bias)).all()
    if not same_nan or np.nanmax(err, initial=0.0) > rel:
        failures.append(
            f"{label(name, kw)} bias gradient {np.dtype(dtype).name}: relative error "
            f"{np.nanmax(err, initial=0.0):.3g} (NaN pattern {'same' if same_nan else 'differs'})"
        )
    return worst


# --------------------------------------------------------------------------- timing
@cuda.jit(**_config.CUDA_KERNEL)
def fill_uniform(out, seed, scale):
    """out[i] = scale * u, u in [-1, 1) from a hash of (i, seed): no host data, no transfer."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        h = (i * 2654435761 + seed) & 0xFFFFFFFF
        h ^= h >> 16
        h = (h * 0x45D9F3B) & 0xFFFFFFFF
        h ^= h >> 16
        h = (h * 0x45D9F3B) & 0xFFFFFFFF
        h ^= h >> 16
        out[i] = scale * (h * (2.0 / 4294967296.0) - 1.0)


def random_device(n, dtype, seed, scale=6.0):
    a = cuda.device_array(n, dtype)
    fill_uniform[fa.cuda._grid_1d(n)](a, seed, scale)
    return a


def torch_ops(name, kw, reg):
    """(forward(x), backward(g, v)) in PyTorch for an activation, or None."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
    except Exception:
        return None
    F, A = torch.nn.functional, torch.ops.aten
    p = {prm.name: prm.default for prm in ACTIVATIONS[reg].params}
    approximate = kw.get("approximate", "none")
    ops = {
        "sigmoid": (torch.sigmoid, A.sigmoid_backward),
        "log_sigmoid": (
            F.logsigmoid,
            lambda g, x: A.log_sigmoid_backward(g, x, torch.empty(0, device=x.device)),
        ),
        "tanh": (torch.tanh, A.tanh_backward),
        "softplus": (
            lambda x: F.softplus(x, p["beta"], p["threshold"]),
            lambda g, x: A.softplus_backward(g, x, p["beta"], p["threshold"]),
        ),
        "relu": (F.relu, lambda g, x: A.threshold_backward(g, x, 0)),
        "relu6": (F.relu6, lambda g, x: A.hardtanh_backward(g, x, 0.0, 6.0)),
        "leaky_relu": (
            lambda x: F.leaky_relu(x, p["negative_slope"]),
            lambda g, x: A.leaky_relu_backward(g, x, p["negative_slope"], False),
        ),
        "elu": (
            lambda x: F.elu(x, p["alpha"]),
            lambda g, x: A.elu_backward(g, p["alpha"], 1.0, 1.0, False, x),
        ),
        "celu": (
            lambda x: F.celu(x, p["alpha"]),
            lambda g, x: A.elu_backward(g, p["alpha"], 1.0, 1.0 / p["alpha"], False, x),
        ),
        "selu": (F.selu, lambda g, x: A.elu_backward(g, SELU_ALPHA, SELU_SCALE, 1.0, False, x)),
        "gelu": (
            lambda x: F.gelu(x, approximate=approximate),
            lambda g, x: A.gelu_backward(g, x, approximate=approximate),
        ),
        "silu": (F.silu, A.silu_backward),
        "mish": (F.mish, A.mish_backward),
        "hard_sigmoid": (F.hardsigmoid, A.hardsigmoid_backward),
        "hard_swish": (F.hardswish, A.hardswish_backward),
        "hard_tanh": (
            lambda x: F.hardtanh(x, p["min_val"], p["max_val"]),
            lambda g, x: A.hardtanh_backward(g, x, p["min_val"], p["max_val"]),
        ),
    }
    return ops.get(name)


def cupy_forward(name, kw):
    try:
        import cupy as cp
        import cupyx.scipy.special as sp

        cp.cuda.runtime.getDeviceCount()
    except Exception:
        return None
    ops = {
        "sigmoid": lambda x, o: sp.expit(x, out=o),
        "tanh": lambda x, o: cp.tanh(x, out=o),
        "relu": lambda x, o: cp.maximum(x, 0, out=o),
        "log_sigmoid": lambda x, o: sp.log_expit(x, out=o),
    }
    if name not in ops or kw:
        return None
    return lambda x, o: ops[name](cp.asarray(x), cp.asarray(o))


def bench(dtype, variants, errors, entry):
    """Timings (ms) for one dtype into ``entry`` (a dict): the copy's time ("copy_ms") first,
    then a row per activation ("rows"), each printed as soon as it is measured (a run cut
    short keeps what it measured); an error skips the row, noted in ``errors``."""
    n = ARGS.size
    item = np.dtype(dtype).itemsize
    cols = min(BIAS_COLS, n)
    rows = n // cols
    n2 = rows * cols
    x = random_device(n, dtype, 1)
    g = random_device(n, dtype, 2, 1.0)
    y = cuda.device_array(n, dtype)
    aux = cuda.device_array(n, dtype)
    pre = cuda.device_array(n, dtype)
    bias = random_device(cols, dtype, 3, 1.0)
    x2, g2, y2, aux2, pre2 = (a[:n2].reshape(rows, cols) for a in (x, g, y, aux, pre))
    copy_ms = gpu_time(lambda: y.copy_to_device(x), ARGS.repeat)  # cudaMemcpy device to device
    k = fa.cuda.kernels()
    partials = {}  # the bias gradient's float64 partial sums, by their number of rows

    def partial_rows(m):
        if m not in partials:
            partials[m] = cuda.device_array((m, cols), np.float64)
        return partials[m]

    grad_bias = cuda.device_array(cols, dtype)
    # the bias kernels' element loop (a thread per column), next to the 128-bit loop they take
    grid_e = fa.cuda._grid_2d(rows, cols)
    grid_eb = fa.cuda._grid_2d(rows, cols, _config.CUDA_BIAS_MIN_ROWS)
    partial_e = partial_rows(grid_eb[0][1] * grid_eb[1][1])
    no = np.bool_(False)
    tt = torch_tensor()
    if tt is not None:  # PyTorch's copy kernel beats cudaMemcpy on H200 (0.51 vs 0.61 ms at 1 GiB)
        tx_, ty_ = tt(x), tt(y)
        copy_ms = min(copy_ms, gpu_time(lambda: ty_.copy_(tx_), ARGS.repeat))
        del tx_, ty_
    entry["copy_ms"] = copy_ms
    print(table_header(dtype, copy_ms), flush=True)
    for name, kw, reg in variants:
        row = {"name": label(name, kw)}
        try:
            fwd, bwd = getattr(fa, name), getattr(fa, f"{name}_backward")
            spec = ACTIVATIONS[reg]
            a, b = (
                np.dtype(dtype).type(v)
                for v in (tuple(p.default for p in spec.params) + (0.0, 0.0))[:2]
            )
            row["fwd"] = gpu_time(lambda: fwd(x, **kw, out=y), ARGS.repeat)
            v = y if spec.grad_from == "output" else x
            row["bwd"] = gpu_time(lambda: bwd(g, v, **kw, out=pre), ARGS.repeat)
            saves = not spec.fused_saves_output  # writes x + b for the backward
            kf = getattr(k, f"{reg}_bias_forward")
            kb = getattr(k, f"{reg}_bias_backward")
            saved2 = aux2 if saves else y2
            row["bias_fwd"] = gpu_time(
                lambda: fa.cuda._launch_bias_forward(kf, x2, bias, y2, saved2, (a, b)),
                ARGS.repeat,
            )

            def bias_backward():
                partial = fa.cuda._launch_bias_backward(kb, g2, saved2, pre2, (a, b), partial_rows)
                k.column_sums[fa.cuda._grid_columns(cols)](partial, grad_bias)

            def bias_backward_element():
                kb[grid_eb](g2, saved2, pre2, partial_e, a, b, no)
                k.column_sums[fa.cuda._grid_columns(cols)](partial_e, grad_bias)

            row["bias_bwd"] = gpu_time(bias_backward, ARGS.repeat)
            row["bias_fwd_element"] = gpu_time(
                lambda: kf[grid_e](x2, bias, y2, saved2, a, b, no), ARGS.repeat
            )
            row["bias_bwd_element"] = gpu_time(bias_backward_element, ARGS.repeat)
        except Exception as exc:
            errors.append(failure(row["name"], exc))
            print(f"{row['name']:<32} error: {errors[-1]}", flush=True)
            continue
        row["bytes"] = {
            "fwd": 2 * n * item,
            "bwd": 3 * n * item,
            "bias_fwd": (3 if saves else 2) * n2 * item,
            "bias_bwd": 3 * n2 * item,
        }
        row["bytes"]["bias_fwd_element"] = row["bytes"]["bias_fwd"]
        row["bytes"]["bias_bwd_element"] = row["bytes"]["bias_bwd"]
        ops = torch_ops(name, kw, reg) if tt is not None else None
        if ops is not None:
            try:
                tf, tb = ops
                tx, tg, tv, tb_ = tt(x), tt(g), tt(v), tt(bias)
                tx2, tg2 = tt(x2), tt(g2)
                row["torch_fwd"] = gpu_time(lambda: tf(tx), ARGS.repeat)
                row["torch_bwd"] = gpu_time(lambda: tb(tg, tv), ARGS.repeat)
                row["torch_bias_fwd"] = gpu_time(lambda: tf(tx2 + tb_), ARGS.repeat)
                tsaved = tt(saved2)
                row["torch_bias_bwd"] = gpu_time(lambda: tb(tg2, tsaved).sum(0), ARGS.repeat)
            except Exception as exc:
                errors.append(failure(f"torch {row['name']}", exc))
        cp_fwd = cupy_forward(name, kw)
        if cp_fwd is not None:
            try:
                row["cupy_fwd"] = gpu_time(lambda: cp_fwd(x, y), ARGS.repeat)
            except Exception as exc:
                errors.append(failure(f"cupy {row['name']}", exc))
        entry["rows"].append(row)
        print(table_row(dtype, copy_ms, row), flush=True)


def failure(what, exc):
    """The note of an error that skipped ``what``: its type and the start of its message."""
    return f"{what}: {type(exc).__name__}: {str(exc)[:200]}"


def torch_tensor():
    """A function making a PyTorch CUDA tensor of a device array (no copy), or None without
    PyTorch with CUDA."""
    try:
        import torch

        return (lambda a: torch.as_tensor(a, device="cuda")) if torch.cuda.is_available() else None
    except Exception:
        return None


def release_memory():
    """Frees what one dtype's timings left: PyTorch's cached blocks, numba's pending frees."""
    import gc

    gc.collect()
    if "torch" in sys.modules and torch_tensor() is not None:
        sys.modules["torch"].cuda.empty_cache()
    if not ARGS.simulate:
        cuda.current_context().deallocations.clear()


# --------------------------------------------------------------------------- fused training ops
def check_fused(dtype, rng, failures):
    """The fused ops on the GPU against the CPU (outputs poisoned with NaN where an ``out``
    exists); relative errors, as the sums are taken in another order."""
    n = ARGS.check_size
    rows, cols, classes = max(2, n // 64), 64, 10
    eps = np.finfo(dtype).eps

    def close(what, got, want, tol=64):
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        scale = np.abs(want).max() if want.size else 1.0
        err = float(np.abs(got - want).max() / (scale or 1.0)) if want.size else 0.0
        if not np.isfinite(got).all() or err > tol * eps:
            failures.append(f"fused {what} {np.dtype(dtype).name}: relative error {err:.3g}")

    # 10 classes: one thread per row; 3000: 64 threads a row, 4 rows a block (barriers)
    for r, classes in ((rows, 10), (max(2, n // 3000), 3000)):
        logits = (rng.standard_normal((r, classes)) * 5).astype(dtype)
        logits[0, :2] = [1e4, -1e4]
        labels = rng.integers(0, classes, r)
        out = poisoned((r, classes), dtype)
        d_logits = cuda.to_device(logits)
        loss, _ = fused.softmax_cross_entropy(d_logits, cuda.to_device(labels), out=out)
        cpu_loss, cpu_grad = fused.softmax_cross_entropy(logits, labels)
        close(f"softmax_cross_entropy loss ({classes} classes)", [loss], [cpu_loss])
        close(f"softmax_cross_entropy grad ({classes} classes)", out.copy_to_host(), cpu_grad)
        out = poisoned((r, classes), dtype)
        fused.softmax(d_logits, out=out)
        close(f"softmax ({classes} classes)", out.copy_to_host(), fused.softmax(logits))
    t = rng.integers(0, 2, n).astype(dtype)
    x = sample(rng, n, dtype, with_specials=False)
    out = poisoned(n, dtype)
    loss, _ = fused.binary_cross_entropy_with_logits(cuda.to_device(x), cuda.to_device(t), out=out)
    cpu_loss, cpu_grad = fused.binary_cross_entropy_with_logits(x, t)
    close("bce loss", [loss], [cpu_loss])
    close("bce grad", out.copy_to_host(), cpu_grad)
    out = poisoned(n, dtype)
    _, mask = fused.dropout(cuda.to_device(x), 0.25, 1, out=out)
    mask = mask.copy_to_host()
    close("dropout", out.copy_to_host(), np.where(mask, x * dtype(1 / 0.75), 0))
    if abs(mask.mean() - 0.75) > 6 * np.sqrt(0.25 * 0.75 / n):
        failures.append(f"fused dropout {np.dtype(dtype).name}: kept {mask.mean():.4f}, want 0.75")
    X = (rng.standard_normal((rows, cols)) * 2 + 1).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, cols).astype(dtype), rng.standard_normal(cols).astype(dtype)
    rm, rv = np.zeros(cols, dtype), np.ones(cols, dtype)
    d_rm, d_rv = cuda.to_device(rm), cuda.to_device(rv)
    y, cache = fused.batch_norm(cuda.to_device(X), cuda.to_device(gamma), cuda.to_device(beta), d_rm, d_rv, True)  # fmt: skip
    cpu_y, cpu_cache = fused.batch_norm(X, gamma, beta, rm, rv, True)
    close("batch_norm", y.copy_to_host(), cpu_y)
    close("batch_norm running_var", d_rv.copy_to_host(), rv)
    G = rng.standard_normal((rows, cols)).astype(dtype)
    for what, got, want in zip(("dx", "dgamma", "dbeta"), fused.batch_norm_backward(cuda.to_device(G), cache), fused.batch_norm_backward(G, cpu_cache)):  # fmt: skip
        close(f"batch_norm_backward {what}", got.copy_to_host(), want, tol=1024)
    P, Gp = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    dp, dv = cuda.to_device(P), cuda.to_device(np.zeros(n, dtype))
    v = np.zeros(n, dtype)
    for _ in range(2):
        fused.sgd_update(dp, cuda.to_device(Gp), dv, lr=0.1, momentum=0.9, nesterov=True)
        fused.sgd_update(P, Gp, v, lr=0.1, momentum=0.9, nesterov=True)
    close("sgd_update", dp.copy_to_host(), P)
    dm, ds = cuda.to_device(np.zeros(n, dtype)), cuda.to_device(np.zeros(n, dtype))
    m, s2 = np.zeros(n, dtype), np.zeros(n, dtype)
    for step in (1, 2):
        fused.adam_update(dp, cuda.to_device(Gp), dm, ds, step, weight_decay=0.01)
        fused.adam_update(P, Gp, m, s2, step, weight_decay=0.01)
    close("adam_update", dp.copy_to_host(), P)
    x3 = sample(rng, rows * cols, dtype).reshape(rows, cols)
    w = rng.uniform(0, 0.5, cols).astype(dtype)
    out = poisoned((rows, cols), dtype)
    fa.prelu(cuda.to_device(x3), cuda.to_device(w), out=out)
    ulp, problem = ulp_distance(out.copy_to_host(), fa.prelu(x3, w))
    if problem or ulp:
        failures.append(f"fused prelu {np.dtype(dtype).name}: {problem or f'{ulp} ULP'}")


def bench_fused(dtype, errors, rows, copy_ms):
    """Milliseconds of the fused ops at --size elements (softmax CE: 10 and 1000 classes per
    row, the latter also with one thread per row as before 2026-11-27; batch norm: 1024
    features), with PyTorch's equivalents (fused optimizers, autograd for the losses) when
    present: rows of (name, fastact ms, torch ms or None, bytes moved) appended to ``rows``,
    each printed as it is measured; an op that fails is noted in ``errors`` and skipped."""
    n = ARGS.size
    item = np.dtype(dtype).itemsize
    x = random_device(n, dtype, 11, 3.0)
    g = random_device(n, dtype, 12, 1.0)
    out = cuda.device_array(n, dtype)
    mask = cuda.device_array(n, np.bool_)
    tt = torch_tensor()
    if tt is not None:
        import torch
    print(table_fused_header(dtype), flush=True)

    def add(name, fn, torch_fn, moved):
        try:
            ms = gpu_time(fn, ARGS.repeat)
        except Exception as exc:
            errors.append(failure(name, exc))
            print(f"  {name:<38} error: {errors[-1]}", flush=True)
            return
        tms = None
        if torch_fn is not None:
            try:
                tms = gpu_time(torch_fn, ARGS.repeat)
            except Exception as exc:
                errors.append(failure(f"torch {name}", exc))
        rows.append((name, ms, tms, moved))
        print(table_fused_row(dtype, copy_ms, rows[-1]), flush=True)

    def torch_loss(name, logits, target):
        """PyTorch's loss ``name`` (torch.nn.functional) and its autograd backward on copies
        of the device arrays, or None without PyTorch."""
        if tt is None:
            return None
        try:  # copies: PyTorch's memory, which may run short at --size
            t_logits, t_target = tt(logits).clone().requires_grad_(True), tt(target)
        except Exception as exc:
            errors.append(failure(f"torch {name}", exc))
            return None

        def run():
            t_logits.grad = None
            getattr(torch.nn.functional, name)(t_logits, t_target).backward()

        return run

    def one_thread_per_row(fn):  # the narrow rows' kernel shape on wide rows, for comparison
        def run():
            saved = _config.CUDA_ROW_THREADS_MIN_CLASSES
            _config.CUDA_ROW_THREADS_MIN_CLASSES = 1 << 62
            try:
                fn()
            finally:
                _config.CUDA_ROW_THREADS_MIN_CLASSES = saved

        return run

    for classes in (10, 1000):
        r = n // classes
        if not r:  # --simulate's few elements
            continue
        logits = x[: r * classes].reshape(r, classes)
        labels = cuda.to_device(np.random.default_rng(0).integers(0, classes, r))
        grad = out[: r * classes].reshape(r, classes)
        torch_ce = torch_loss("cross_entropy", logits, labels)

        def ce(logits=logits, labels=labels, grad=grad):
            fused.softmax_cross_entropy(logits, labels, out=grad)

        add(f"softmax_cross_entropy {classes} classes", ce, torch_ce, 2 * r * classes * item)
        if classes >= _config.CUDA_ROW_THREADS_MIN_CLASSES:
            add("  the same, one thread per row", one_thread_per_row(ce), None,
                2 * r * classes * item)  # fmt: skip
            t_logits = tt(logits) if tt is not None else None
            add(f"softmax {classes} classes", lambda lg=logits, gr=grad: fused.softmax(lg, out=gr),
                (lambda t=t_logits: torch.softmax(t, 1)) if tt is not None else None,
                2 * r * classes * item)  # fmt: skip
    tx = tt(x) if tt is not None else None
    add("dropout p=0.5 (+ mask)", lambda: fused.dropout(x, 0.5, 0, out=out),
        (lambda: torch.nn.functional.dropout(tx, 0.5, True)) if tt is not None else None,
        2 * n * item + n)  # fmt: skip
    k = fa.cuda.fused_kernels()
    seed = fa.cuda.dropout_seed(0)
    t = np.dtype(dtype).type
    add("  the same, mask preallocated", lambda: k.dropout[fa.cuda._grid_1d(n)](x, seed, t(0.5), t(2), out, mask), None, 2 * n * item + n)  # fmt: skip
    add(
        "dropout_backward",
        lambda: fused.dropout_backward(g, mask, 0.5, out=out),
        None,
        2 * n * item + n,
    )
    cols = min(1024, n // 8)
    X = x[: (n // cols) * cols].reshape(n // cols, cols)
    vec = [random_device(cols, dtype, 20 + i, 1.0) for i in range(4)]

    def bn():
        return fused.batch_norm(X, vec[0], vec[1], vec[2], vec[3], True)

    tX = tt(X) if tt is not None else None
    tvec = [tt(v_) for v_ in vec] if tt is not None else None
    add("batch_norm forward (training)", bn,
        (lambda: torch.nn.functional.batch_norm(tX, tvec[2], tvec[3], tvec[0], tvec[1], True)) if tt is not None else None,
        4 * X.size * item)  # fmt: skip
    # the same launches into preallocated arrays (as the MLP): the kernels without numba's
    # allocations (cuMemAlloc for y and xhat, then a cuMemFree that waits for the GPU)
    Y, XH = (cuda.device_array(X.shape, dtype) for _ in range(2))
    center, inv_std = (cuda.device_array(cols, dtype) for _ in range(2))
    add("  the same, outputs preallocated", lambda: fa.cuda._batch_norm_into(X, *vec, True, 0.1, 1e-5, Y, XH, center, inv_std), None, 4 * X.size * item)  # fmt: skip
    _, cache = bn()
    G = g[: X.size].reshape(X.shape)
    add("batch_norm backward", lambda: fused.batch_norm_backward(G, cache), None, 4 * X.size * item)
    DX, DG, DB = cuda.device_array(X.shape, dtype), cuda.device_array(cols, dtype), cuda.device_array(cols, dtype)  # fmt: skip
    add("  the same, outputs preallocated", lambda: fa.cuda._batch_norm_backward_into(G, cache, DX, DG, DB), None, 4 * X.size * item)  # fmt: skip
    slopes = random_device(cols, dtype, 25, 0.25)
    tw = tt(slopes) if tt is not None else None
    add("prelu (a slope per feature)", lambda: fa.prelu(X, slopes, out=Y),
        (lambda: torch.nn.functional.prelu(tX, tw)) if tt is not None else None,
        2 * X.size * item)  # fmt: skip
    add("prelu_backward (+ slope gradient)", lambda: fa.prelu_backward(G, X, slopes, out=DX), None,
        3 * X.size * item)  # fmt: skip
    targets = cuda.to_device((np.arange(n) % 2).astype(dtype))
    torch_bce = torch_loss("binary_cross_entropy_with_logits", x, targets)
    # with out: the targets are checked (read) once before the loss kernel reads them again
    add("bce_with_logits (loss + gradient)", lambda: fused.binary_cross_entropy_with_logits(x, targets, out=out), torch_bce, 4 * n * item)  # fmt: skip
    p_, v_, m_, s_ = (random_device(n, dtype, 30 + i, 1.0) for i in range(4))
    fa.cuda.fused_kernels().zero[fa.cuda._grid_1d(n)](s_)  # Adam's second moment: >= 0
    add(
        "sgd_update (momentum)",
        lambda: fused.sgd_update(p_, g, v_, lr=0.01, momentum=0.9),
        None,
        5 * n * item,
    )
    add("adam_update", lambda: fused.adam_update(p_, g, m_, s_, 3), None, 7 * n * item)
    if tt is not None:
        try:
            tp = torch.nn.Parameter(tt(p_).clone())
            tp.grad = tt(g).clone()
        except Exception as exc:
            errors.append(failure("torch optimizers", exc))
            return
        for name, opt in (("torch SGD (fused=True)", torch.optim.SGD([tp], lr=0.01, momentum=0.9, fused=True)),
                          ("torch Adam (fused=True)", torch.optim.Adam([tp], fused=True))):  # fmt: skip
            try:
                rows.append((name, gpu_time(opt.step, ARGS.repeat), None, 0))
                print(table_fused_row(dtype, copy_ms, rows[-1]), flush=True)
            except Exception as exc:
                errors.append(failure(name, exc))


def table_fused_header(dtype):
    n = ARGS.size
    return f"\nfused ops, {np.dtype(dtype).name}, {n:,} elements: ms (GB/s)        PyTorch ms"


def table_fused_row(dtype, copy_ms, row):
    name, ms, tms, moved = row
    copy_gbs = 2 * ARGS.size * np.dtype(dtype).itemsize / copy_ms / 1e6
    bw = f"({moved / ms / 1e6:,.0f} GB/s, {moved / ms / 1e6 / copy_gbs:.0%})" if moved else ""
    return f"  {name:<38} {ms:8.3f} {bw:<22} {'' if tms is None else f'{tms:8.3f}'}"


def table_fused(dtype, copy_ms, rows):
    print(table_fused_header(dtype))
    for row in rows:
        print(table_fused_row(dtype, copy_ms, row))


def table_header(dtype, copy_ms):
    n = ARGS.size
    item = np.dtype(dtype).itemsize
    copy_gbs = 2 * n * item / copy_ms / 1e6
    return (
        f"\n{np.dtype(dtype).name}: {n:,} elements ({n * item / 2**30:.2f} GiB per array); "
        f"fastest device-to-device copy {copy_ms:.3f} ms = {copy_gbs:,.0f} GB/s (read + write)\n"
        "ms (% of the copy's bandwidth)   fwd              bwd              bias fwd         "
        "bias bwd         | torch fwd  bwd     bias f  bias b | cupy fwd"
    )


def _cell(dtype, copy_ms, r, key):
    copy_gbs = 2 * ARGS.size * np.dtype(dtype).itemsize / copy_ms / 1e6
    ms = r[key]
    pct = r["bytes"][key] / ms / 1e6 / copy_gbs * 100
    return f"{ms:7.3f} ({pct:3.0f}%)"


def table_row(dtype, copy_ms, r):
    def cell(key):
        return _cell(dtype, copy_ms, r, key)

    def other(key):
        return f"{r[key]:7.3f}" if key in r else "      -"

    return (
        f"{r['name']:<32} {cell('fwd'):<16} {cell('bwd'):<16} {cell('bias_fwd'):<16} "
        f"{cell('bias_bwd'):<16} | {other('torch_fwd')} {other('torch_bwd')} "
        f"{other('torch_bias_fwd')} {other('torch_bias_bwd')} | {other('cupy_fwd')}"
    )


def table(dtype, copy_ms, rows):
    print(table_header(dtype, copy_ms))
    for r in rows:
        print(table_row(dtype, copy_ms, r))
    print(
        "bias + activation, the element loop (a thread per column; the table's bias columns "
        "take the 128-bit loop):\nms (% of the copy's bandwidth)   bias fwd         bias bwd"
    )
    for r in rows:
        print(
            f"{r['name']:<32} {_cell(dtype, copy_ms, r, 'bias_fwd_element'):<16} "
            f"{_cell(dtype, copy_ms, r, 'bias_bwd_element')}"
        )


def print_failures(failures, shown):
    """Prints the failures after the first ``shown``; returns how many are shown now."""
    for f in failures[shown:]:
        print("FAILED:", f, flush=True)
    return len(failures)


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    """Per dtype: the checks (each failure printed as found), then the timings (each row
    printed as measured); the tables again at the end, also when a time limit's SIGTERM
    (`timeout`) or Ctrl-C cuts the run short: what was measured by then."""
    signal.signal(signal.SIGTERM, _interrupted)
    t0 = time.perf_counter()
    if not fa.cuda.is_available():
        print(
            "no CUDA GPU here (numba.cuda.is_available() is False): run with --simulate",
            file=sys.stderr,
        )
        return 2
    dev = cuda.get_current_device()
    name = getattr(dev, "name", b"simulator")
    print(
        f"device: {name.decode() if isinstance(name, bytes) else name}; numba {__import__('numba').__version__}"
        f"{'; SIMULATOR' if ARGS.simulate else ''}",
        flush=True,
    )
    only = {s for s in ARGS.only.split(",") if s}
    variants = [v for v in VARIANTS if not only or v[0] in only or label(v[0], v[1]) in only]
    dtypes = [np.dtype(d).type for d in ARGS.dtypes.split(",")]
    rng = np.random.default_rng(int(time.time()))  # fresh data each run
    failures, worst, checked = [], {}, []
    results, errors, fused_results = [], [], []
    cut_short = None
    try:
        for dtype in dtypes:
            t1 = time.perf_counter()
            shown = len(failures)
            for name, kw, reg in variants:
                worst[(label(name, kw), dtype)] = check(name, kw, reg, dtype, rng, failures)
                shown = print_failures(failures, shown)
            if not ARGS.no_fused:
                check_fused(dtype, rng, failures)
                shown = print_failures(failures, shown)
            checked.append(dtype)
            print(
                f"correctness, {np.dtype(dtype).name}: {len(variants)} activations, 4 kernels "
                f"each{', the fused ops' if not ARGS.no_fused else ''}, "
                f"{ARGS.check_size:,} elements, in {time.perf_counter() - t1:.0f} s "
                f"(compilation included)",
                flush=True,
            )
            if ARGS.no_timing:
                continue
            t2 = time.perf_counter()
            entry = {"copy_ms": None, "rows": []}
            results.append((dtype, entry))
            bench(dtype, variants, errors, entry)
            if not ARGS.no_fused:
                fused_results.append((dtype, entry["copy_ms"], []))
                bench_fused(dtype, errors, fused_results[-1][2], entry["copy_ms"])
            print(f"timing, {np.dtype(dtype).name}: {time.perf_counter() - t2:.0f} s", flush=True)
            release_memory()
    except KeyboardInterrupt as exc:
        cut_short = f"cut short ({exc or 'interrupted'}) after {time.perf_counter() - t0:.0f} s"
        print(f"\n{cut_short}: the tables below hold what was measured by then", flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the run
    for e in errors:
        print("note:", e)
    for dtype, entry in results:
        if entry["copy_ms"] is not None:
            table(dtype, entry["copy_ms"], entry["rows"])
    for dtype, copy_ms, rows in fused_results:
        table_fused(dtype, copy_ms, rows)
    print(
        "\nmax ULP vs the CPU (beyond 8 eps |g| in backward passes): "
        + (
            ", ".join(f"{n}/{np.dtype(d).name}={u}" for (n, d), u in worst.items() if u)
            or "0 everywhere"
        )
    )
    if failures:
        print(f"\nFAILED: {len(failures)} check(s):")
        for f in failures:
            print("  " + f)
        return 1
    if cut_short:
        print(f"\n{cut_short}; no check failed (checked: "
              f"{', '.join(np.dtype(d).name for d in checked) or 'none'})")  # fmt: skip
        return 1
    print(
        f"\nall kernels match the CPU (<= {ARGS.max_ulp} ULP; {time.perf_counter() - t0:.0f} s in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
