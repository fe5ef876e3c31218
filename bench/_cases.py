"""What the benchmarks run: cases, data, implementations, checks, the copy ceiling.

Shared by the pytest-benchmark suite (``bench/bench_activations.py``), the regression gate
(``tools/perf_gate.py``) and the report (``tools/bench_report.py``), so all three time the
same calls on the same data. Plain Python, no pytest.

* Cases come from ``fastact.activations.ACTIVATIONS``: every public row gives a forward and a
  backward case; a non-public variant reached through a string argument (``gelu_tanh`` =
  ``gelu(approximate='tanh')``) gives two more. A new row is benchmarked automatically by
  fastact and numpy (scipy/torch only where the tables below name an equivalent).
* Implementations: ``fastact``; ``numpy`` = ``fastact.reference`` (plain NumPy, allocates its
  temporaries, no ``out``); ``scipy`` where ``scipy.special`` has the op; ``torch`` where
  torch is importable (zero-copy ``torch.from_numpy`` views, ``out=`` wherever torch has an
  out variant, intra-op threads = ``numba.get_num_threads()``).
* Data: seeded normal * 4 (both tails of every activation), no exact zeros (kinks), the same
  arrays for every implementation.
"""

from __future__ import annotations

import functools
import math
import os
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np
from numba import get_num_threads, njit, prange

import fastact
from fastact import reference
from fastact.activations import ACTIVATIONS, SELU_ALPHA, SELU_SCALE

SIZES = {"1e3": 1_000, "1e5": 100_000, "1e6": 1_000_000, "16e6": 16_000_000}
SMOKE_SIZES = ("1e3", "1e5")  # sizes used when benchmarks are disabled (the default pytest run)
DTYPES = ("float32", "float64")
IMPLS = ("fastact", "numpy", "scipy", "torch")

#: The representative subset of ``pytest bench --quick``.
QUICK_OPS = ("sigmoid", "relu", "gelu", "silu", "tanh", "sigmoid_backward", "relu_backward")
QUICK_DTYPES = ("float32",)
QUICK_SIZES = ("1e3", "1e6")

SEED = 20240607


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One benchmarked operation, e.g. ``sigmoid`` or ``gelu_tanh_backward``."""

    op: str  # benchmark name
    activation: str  # row of ACTIVATIONS
    backward: bool
    func: str  # the public fastact / reference function
    kwargs: dict = field(default_factory=dict, hash=False, compare=False)
    grad_from: str = "x"  # what a backward takes besides grad_output: 'x' or 'output'
    params: dict = field(default_factory=dict, hash=False, compare=False)  # defaults


def _case_list() -> list[Case]:
    cases = []
    for spec in ACTIVATIONS.values():
        if spec.public:
            func, kwargs = spec.name, {}
        else:  # a variant: find the public function with the choice argument that picks it
            owner = next(
                (a for a in ACTIVATIONS.values() if a.choice and spec.name in a.choice[1].values()),
                None,
            )
            if owner is None:
                continue
            arg, variants = owner.choice
            value = next(k for k, v in variants.items() if v == spec.name)
            func, kwargs = owner.name, {arg: value}
        params = {p.name: p.default for p in spec.params}
        for backward in (False, True):
            op = spec.name + ("_backward" if backward else "")
            cases.append(
                Case(
                    op,
                    spec.name,
                    backward,
                    func + ("_backward" if backward else ""),
                    kwargs,
                    spec.grad_from,
                    params,
                )
            )
    return cases


CASES = {c.op: c for c in _case_list()}


# --------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=1)
def base_data(dtype: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, grad_output) of one dtype and size: seeded normal, x scaled by 4, no zeros."""
    rng = np.random.default_rng(SEED + size)
    x = rng.standard_normal(size, dtype=np.float64) * 4.0
    x[x == 0.0] = 0.5
    g = rng.standard_normal(size, dtype=np.float64)
    return x.astype(dtype), g.astype(dtype)


def _forward_reference(case: Case, x: np.ndarray) -> np.ndarray:
    fwd = case.func[: -len("_backward")] if case.backward else case.func
    with np.errstate(all="ignore"):
        return np.asarray(getattr(reference, fwd)(x, **case.kwargs), dtype=x.dtype)


@functools.lru_cache(maxsize=2)
def inputs_and_reference(op: str, dtype: str, size: int) -> tuple[tuple, np.ndarray]:
    """The inputs of a case and fastact.reference's result on them."""
    case = CASES[op]
    x, g = base_data(dtype, size)
    if case.backward:
        v = x
        if case.grad_from == "output":
            v = _forward_reference(case, x)
        inputs = (g, v)
        with np.errstate(all="ignore"):
            ref = np.asarray(getattr(reference, case.func)(g, v, **case.kwargs), dtype=dtype)
    else:
        inputs = (x,)
        ref = _forward_reference(case, x)
    return inputs, ref


def bytes_moved(inputs: tuple, out_nbytes: int) -> int:
    """Bytes a call reads and writes at least once (inputs + output), for GB/s."""
    return sum(a.nbytes for a in inputs) + out_nbytes


# --------------------------------------------------------------------------- implementations
@functools.cache
def torch_module():
    """torch with intra-op threads = numba's threads, or None when it is not importable."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(get_num_threads())
    return torch


@functools.cache
def scipy_special():
    try:
        import scipy.special
    except ImportError:
        return None
    return scipy.special


# scipy.special equivalents: op -> ufunc name (all take out=)
SCIPY_OPS = {"sigmoid": "expit", "log_sigmoid": "log_expit", "softplus": "softplus"}


def _torch_table(torch):
    """op -> builder(p, tensors, out_tensor) -> zero-arg callable. Forwards use the public
    functions with out= (torch._C._nn for the nn ops); backwards the aten backward ops that
    autograd runs (``torch.ops.aten.<op>_backward.grad_input``), as those take ``out``."""
    nn, aten = torch._C._nn, torch.ops.aten

    def fwd(f, *args, **kw):
        return lambda p, t, o: (
            lambda: f(t[0], *[a(p) if callable(a) else a for a in args], out=o, **kw)
        )

    def bwd(name, *args, overload="grad_input", out_kw="grad_input", self_arg=True):
        op = getattr(getattr(aten, name), overload)

        def build(p, t, o):
            g, v = t
            vals = [a(p) if callable(a) else a for a in args]
            call_args = (g, v, *vals) if self_arg else (g, *vals, v)
            if out_kw is None:
                return lambda: op(*call_args)
            kw = {out_kw: o}
            return lambda: op(*call_args, **kw)

        return build

    def log_sigmoid_bwd(p, t, o):
        g, x = t
        buffer = aten.log_sigmoid_forward.default(x)[1]  # what autograd saves (setup)
        op = aten.log_sigmoid_backward.grad_input
        return lambda: op(g, x, buffer, grad_input=o)

    beta = lambda p: p["beta"]  # noqa: E731
    thr = lambda p: p["threshold"]  # noqa: E731
    alpha = lambda p: p["alpha"]  # noqa: E731
    slope = lambda p: p["negative_slope"]  # noqa: E731
    lo = lambda p: p["min_val"]  # noqa: E731
    hi = lambda p: p["max_val"]  # noqa: E731
    inv_alpha = lambda p: 1.0 / p["alpha"]  # noqa: E731
    return {
        "sigmoid": fwd(torch.sigmoid),
        "log_sigmoid": fwd(nn.log_sigmoid),
        "tanh": fwd(torch.tanh),
        "softplus": fwd(nn.softplus, beta, thr),
        "relu": fwd(aten.relu.out),  # torch.relu has no out=
        "relu6": fwd(nn.hardtanh, 0.0, 6.0),  # what torch's relu6 calls
        "leaky_relu": fwd(nn.leaky_relu, slope),
        "elu": fwd(nn.elu, alpha, 1.0, 1.0),
        "celu": fwd(aten.celu.out, alpha),  # torch.celu has no out=
        "selu": fwd(nn.elu, SELU_ALPHA, SELU_SCALE, 1.0),  # = aten::selu, which has no out=
        "gelu": fwd(nn.gelu, approximate="none"),
        "gelu_tanh": fwd(nn.gelu, approximate="tanh"),
        "silu": fwd(nn.silu),
        "mish": fwd(nn.mish),
        "hard_sigmoid": fwd(nn.hardsigmoid),
        "hard_swish": fwd(nn.hardswish),
        "hard_tanh": fwd(nn.hardtanh, lo, hi),
        "sigmoid_backward": bwd("sigmoid_backward"),
        "log_sigmoid_backward": log_sigmoid_bwd,
        "tanh_backward": bwd("tanh_backward"),
        "softplus_backward": bwd("softplus_backward", beta, thr),
        "relu_backward": bwd("threshold_backward", 0.0),
        "relu6_backward": bwd("hardtanh_backward", 0.0, 6.0),
        "leaky_relu_backward": bwd("leaky_relu_backward", slope, False),
        "elu_backward": bwd("elu_backward", alpha, 1.0, 1.0, False, self_arg=False),
        "celu_backward": bwd("elu_backward", alpha, 1.0, inv_alpha, False, self_arg=False),
        "selu_backward": bwd("elu_backward", SELU_ALPHA, SELU_SCALE, 1.0, False, self_arg=False),
        "gelu_backward": lambda p, t, o: (
            lambda: aten.gelu_backward.grad_input(t[0], t[1], approximate="none", grad_input=o)
        ),
        "gelu_tanh_backward": lambda p, t, o: (
            lambda: aten.gelu_backward.grad_input(t[0], t[1], approximate="tanh", grad_input=o)
        ),
        "silu_backward": bwd("silu_backward"),
        "mish_backward": bwd("mish_backward", overload="default", out_kw=None),  # no out variant
        "hard_sigmoid_backward": bwd("hardsigmoid_backward"),
        "hard_swish_backward": bwd("hardswish_backward", overload="out", out_kw="out"),
        "hard_tanh_backward": bwd("hardtanh_backward", lo, hi),
    }


# ops that torch.ops.aten / scipy.special know (static, so test ids do not depend on imports)
TORCH_OPS = frozenset(
    f"{name}{suffix}"
    for name in (
        "sigmoid",
        "log_sigmoid",
        "tanh",
        "softplus",
        "relu",
        "relu6",
        "leaky_relu",
        "elu",
        "celu",
        "selu",
        "gelu",
        "gelu_tanh",
        "silu",
        "mish",
        "hard_sigmoid",
        "hard_swish",
        "hard_tanh",
    )
    for suffix in ("", "_backward")
)


def has_impl(impl: str, op: str) -> bool:
    """Whether ``impl`` has an equivalent of ``op`` (regardless of it being installed)."""
    if impl in ("fastact", "numpy"):
        return True
    if impl == "scipy":
        return op in SCIPY_OPS
    if impl == "torch":
        return op in TORCH_OPS
    return False


class Unavailable(Exception):
    """The implementation is not installed (the benchmark is skipped)."""


@dataclass
class Prepared:
    """A ready-to-time call: ``call()`` runs it; ``result(ret)`` turns its return into the
    NumPy result (outside the timed region)."""

    call: object
    result: object
    uses_out: bool
    inputs: tuple
    out_nbytes: int


def prepare(impl: str, op: str, dtype: str, size: int) -> Prepared:
    """Bind ``impl``'s version of ``op`` to the case's data and a preallocated output."""
    case = CASES[op]
    inputs, ref = inputs_and_reference(op, dtype, size)
    out = np.empty(size, dtype)
    out_nbytes = out.nbytes
    if impl == "fastact":
        f = getattr(fastact, case.func)
        kw = dict(case.kwargs, out=out)
        return Prepared(lambda: f(*inputs, **kw), np.asarray, True, inputs, out_nbytes)
    if impl == "numpy":
        f = getattr(reference, case.func)
        kw = dict(case.kwargs)
        return Prepared(lambda: f(*inputs, **kw), np.asarray, False, inputs, out_nbytes)
    if impl == "scipy":
        sp = scipy_special()
        if sp is None or not hasattr(sp, SCIPY_OPS.get(op, "")):
            raise Unavailable(f"scipy.special.{SCIPY_OPS.get(op)} is not available")
        f = getattr(sp, SCIPY_OPS[op])
        x = inputs[0]
        return Prepared(lambda: f(x, out=out), np.asarray, True, inputs, out_nbytes)
    if impl == "torch":
        torch = torch_module()
        if torch is None:
            raise Unavailable("torch is not importable")
        builder = _torch_table(torch)[op]
        tensors = tuple(torch.from_numpy(a) for a in inputs)  # zero-copy views
        out_t = torch.from_numpy(out)
        call = builder(case.params, tensors, out_t)
        return Prepared(call, lambda ret: ret.numpy(), True, inputs, out_nbytes)
    raise ValueError(f"unknown implementation {impl!r}")


# --------------------------------------------------------------------------- checks
#: Tolerances of the correctness check before timing: assert_allclose(got, reference,
#: rtol, atol=rtol * max|reference|). The atol term covers the zeros of a result where
#: relative error is meaningless (the backward of silu/mish/gelu crosses zero; tanh's
#: 1 - y^2 cancels at |y| -> 1, also in the float32 reference). fastact is held close to
#: the reference; other libraries get a looser tolerance (torch's float32 kernels compute in
#: float32, its float64 hardsigmoid_backward uses a float32 1/6): the check is that they
#: compute the same function, the test suite checks fastact's accuracy.
RTOL = {"fastact": {"float32": 1e-5, "float64": 1e-12}, "other": {"float32": 2e-4, "float64": 1e-6}}


def check_result(impl: str, op: str, dtype: str, size: int, got) -> None:
    """assert_allclose(got, fastact.reference(...)) with the implementation's tolerance.

    A parallel numba pass decides (assert_allclose itself takes ~1 s at 16e6 elements);
    np.testing.assert_allclose runs only to report a mismatch."""
    _, ref = inputs_and_reference(op, dtype, size)
    got = np.asarray(got)
    assert got.dtype == np.dtype(dtype), f"{impl} {op}: result dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{impl} {op}: result shape {got.shape}, expected {ref.shape}"
    rtol = RTOL["fastact" if impl == "fastact" else "other"][dtype]
    atol = rtol * float(_max_abs(ref.reshape(-1)))
    if _count_mismatches(got.reshape(-1), ref.reshape(-1), rtol, atol):
        np.testing.assert_allclose(
            got,
            ref,
            rtol=rtol,
            atol=atol,
            err_msg=f"{impl} {op} {dtype} n={size} vs fastact.reference",
        )


@njit(parallel=True, nogil=True, cache=True)
def _max_abs(a):
    m = 0.0
    for i in prange(a.size):
        v = abs(np.float64(a[i]))
        m = max(m, 0.0 if np.isnan(v) else v)  # the reduction form prange recognizes
    return m


@njit(parallel=True, nogil=True, cache=True)
def _count_mismatches(got, ref, rtol, atol):
    """Elements failing assert_allclose's rule |got - ref| <= atol + rtol |ref| (NaN == NaN,
    equal infinities match)."""
    bad = 0
    for i in prange(got.size):
        a = np.float64(got[i])
        b = np.float64(ref[i])
        ok = a == b or (np.isnan(a) and np.isnan(b)) or abs(a - b) <= atol + rtol * abs(b)
        if not ok:
            bad += 1
    return bad


# --------------------------------------------------------------------------- memory
def traced_call(call):
    """(call's return value, peak bytes allocated during the call beyond what was allocated
    before it), as tracemalloc sees them: Python and NumPy allocations, not torch's."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        ret = call()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return ret, max(int(peak), 0)


def peak_bytes(call) -> int:
    """Peak bytes allocated during one call (see ``traced_call``)."""
    return traced_call(call)[1]


# --------------------------------------------------------------------------- copy ceiling
@njit(parallel=True, nogil=True, cache=True)
def parallel_copy(src, dst):
    """The bandwidth ceiling: a numba prange copy (reads n, writes n elements)."""
    for i in prange(src.size):
        dst[i] = src[i]


@njit(nogil=True, cache=True)
def serial_copy(src, dst):
    for i in range(src.size):
        dst[i] = src[i]


def copy_kernel(size: int):
    """("parallel" | "serial", kernel): the copy that matches fastact's own dispatch, parallel
    from fastact._config.PARALLEL_THRESHOLD elements on (below it a parallel region costs
    more than the copy, and fastact runs its serial kernels there too)."""
    from fastact._config import PARALLEL_THRESHOLD

    if size >= PARALLEL_THRESHOLD:
        return "parallel", parallel_copy
    return "serial", serial_copy


def prepare_copy(dtype: str, size: int, kernel=None) -> Prepared:
    x, _ = base_data(dtype, size)
    out = np.empty(size, dtype)
    copy = kernel or copy_kernel(size)[1]
    copy(x, out)  # compile / warm up
    return Prepared(lambda: copy(x, out), lambda ret: out, True, (x,), out.nbytes)


# --------------------------------------------------------------------------- timing (tools)
def calibrate(call, min_time: float = 0.01) -> int:
    """Calls per batch so that one batch takes at least ``min_time`` seconds."""
    loops = 1
    while True:
        t = batch_time(call, loops)
        if t * loops >= min_time or loops >= 1 << 20:
            return loops
        loops = max(loops * 2, int(math.ceil(min_time / max(t, 1e-9) * 1.2)))


def batch_time(call, loops: int) -> float:
    """Seconds per call, from one batch of ``loops`` calls."""
    timer = time.perf_counter
    t0 = timer()
    for _ in range(loops):
        call()
    return (timer() - t0) / loops


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def fastact_call_no_out(op: str, dtype: str, size: int):
    """fastact's call of ``op`` without ``out=`` (allocates exactly its result)."""
    case = CASES[op]
    inputs, _ = inputs_and_reference(op, dtype, size)
    f = getattr(fastact, case.func)
    kw = dict(case.kwargs)
    return lambda: f(*inputs, **kw)


def benchmarks_enabled(config) -> bool:
    """Whether benchmarks are timed, as pytest-benchmark decides it: --benchmark-disable (set by the root conftest.py) unless
    --benchmark-enable; --benchmark-skip or xdist also mean no timing."""
    if config.getoption("benchmark_skip", False):
        return False
    if config.getoption("dist", "no") != "no" or os.environ.get("PYTEST_XDIST_WORKER"):
        return False
    return not (
        config.getoption("benchmark_disable", False)
        and not config.getoption("benchmark_enable", False)
    )
