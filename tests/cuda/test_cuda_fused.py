"""The CUDA twins of fastact.fused and of prelu against the CPU kernels, through the public
functions (device input dispatches to fastact.cuda). Small sizes, blocks of 8 threads and at
most 3 blocks (conftest of test_cuda_sim), so every kernel loops and reduces across blocks."""

from __future__ import annotations

import numpy as np
import pytest

import fastact as fa
from fastact import _config, fused
from tests.cuda.test_cuda_sim import MAX_ULP, assert_ulp, to_host

cuda = pytest.importorskip("numba.cuda")
DTYPES = [np.float32, np.float64]
#: float64 sums in another order than the CPU's (per block, then atomics)
SUM_RTOL = {np.float32: 1e-6, np.float64: 1e-13}


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    monkeypatch.setattr(_config, "CUDA_BLOCK_SIZE", 8)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 3)
    monkeypatch.setattr(_config, "CUDA_REDUCE_ROWS", 3)


def dev(a):
    a = np.asarray(a)
    return cuda.to_device(a if a.ndim == 0 else np.ascontiguousarray(a))


def assert_close(got, want, dtype):
    """Within a few float eps of the largest magnitude: the simulator computes without the FMA
    contractions of the compiled CPU kernels, and the softmax gradient cancels (p - 1)."""
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(got, want, rtol=4 * eps, atol=4 * eps * np.abs(want).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_matches_cpu(dtype, rng):
    logits = (rng.standard_normal((37, 5)) * 4).astype(dtype)
    logits[0] = [1e4, -1e4, 0, 3, -2]  # huge logits: no overflow, no NaN
    labels = rng.integers(0, 5, 37)
    loss, grad = fused.softmax_cross_entropy(dev(logits), dev(labels))
    cpu_loss, cpu_grad = fused.softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, cpu_loss, rtol=SUM_RTOL[dtype])
    assert_close(to_host(grad), cpu_grad, dtype)
    probs = fused.softmax(dev(logits))
    assert_close(to_host(probs), fused.softmax(logits), dtype)
    out = cuda.device_array((37, 5), dtype)
    _, returned = fused.softmax_cross_entropy(dev(logits), dev(labels), out=out)
    assert returned is out
    in_place = dev(logits)  # out=logits: the labelled logit is read before the row is written
    loss2, returned = fused.softmax_cross_entropy(in_place, dev(labels), out=in_place)
    assert returned is in_place
    np.testing.assert_allclose(loss2, cpu_loss, rtol=SUM_RTOL[dtype])
    assert_close(to_host(in_place), cpu_grad, dtype)
    for bad in (-1, 5):
        wrong = labels.copy()
        wrong[3] = bad
        with pytest.raises(ValueError, match=r"labels must be in \[0, 5\)"):
            fused.softmax_cross_entropy(dev(logits), dev(wrong))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(13, 5), (9, 4), (7, 200), (2, 1)], ids=str)
def test_softmax_rows_shared_by_threads_match_cpu(shape, dtype, rng, monkeypatch):
    """Rows of >= 4 classes shared by 3 threads (an odd tree; two rows per block of 8), 6 from
    192 classes (doubled, one row per block), one thread per row below 4 classes."""
    monkeypatch.setattr(_config, "CUDA_ROW_THREADS_MIN_CLASSES", 4)
    monkeypatch.setattr(_config, "CUDA_ROW_THREADS", 3)
    rows, classes = shape
    blocks, (tx, ty) = fa.cuda._grid_rows(rows, classes)
    assert (tx, ty) == {5: (3, 2), 4: (3, 2), 200: (6, 1), 1: (1, 8)}[classes]
    logits = (rng.standard_normal(shape) * 4).astype(dtype)
    logits[0, :2] = [1e4, -1e4][: min(2, classes)]  # huge logits: no overflow, no NaN
    if rows > 2:
        logits[1] = -np.inf
        logits[1, -1] = 0.0  # one finite logit: probability 1
    labels = rng.integers(0, classes, rows).astype(np.uint32)
    labels[0] = classes - 1  # the label's column in the last thread's share
    loss, grad = fused.softmax_cross_entropy(dev(logits), dev(labels))
    cpu_loss, cpu_grad = fused.softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(loss, cpu_loss, rtol=SUM_RTOL[dtype])
    assert_close(to_host(grad), cpu_grad, dtype)
    assert_close(to_host(fused.softmax(dev(logits))), fused.softmax(logits), dtype)
    in_place = dev(logits)  # the labelled logit is read before any thread writes the row
    loss2, _ = fused.softmax_cross_entropy(in_place, dev(labels), out=in_place)
    np.testing.assert_allclose(loss2, cpu_loss, rtol=SUM_RTOL[dtype])
    assert_close(to_host(in_place), cpu_grad, dtype)
    wrong = labels.astype(np.int64)
    wrong[-1], wrong[0] = classes, -1
    with pytest.raises(ValueError, match=r"2 label\(s\) are not"):  # counted once per row
        fused.softmax_cross_entropy(dev(logits), dev(wrong))


def test_softmax_row_launch_shapes(monkeypatch):
    monkeypatch.setattr(_config, "CUDA_BLOCK_SIZE", 256)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 8192)
    grid = fa.cuda._grid_rows
    assert grid(1000, 10) == (4, (1, 256))  # few classes: one thread per row
    assert grid(1000, 31) == (4, (1, 256))
    assert grid(1000, 32) == (125, (32, 8))  # a warp per row
    assert grid(1000, 2047) == (125, (32, 8))
    assert grid(1000, 2048) == (250, (64, 4))  # 32 columns or more per thread
    assert grid(64, 50_000) == (64, (256, 1))  # up to the block
    assert grid(10**7, 1000) == (8192, (32, 8))  # grid-stride beyond the block limit


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_matches_cpu(dtype, rng):
    logits = (rng.standard_normal((9, 7)) * 5).astype(dtype)
    logits[0, :3] = [1e4, -1e4, 0]
    targets = rng.integers(0, 2, (9, 7)).astype(dtype)
    loss, grad = fused.binary_cross_entropy_with_logits(dev(logits), dev(targets))
    cpu_loss, cpu_grad = fused.binary_cross_entropy_with_logits(logits, targets)
    np.testing.assert_allclose(loss, cpu_loss, rtol=SUM_RTOL[dtype])
    assert_ulp(to_host(grad), cpu_grad, MAX_ULP)
    targets[2, 2] = 1.5
    with pytest.raises(ValueError, match=r"targets must be probabilities in \[0, 1\]"):
        fused.binary_cross_entropy_with_logits(dev(logits), dev(targets))


@pytest.mark.parametrize("block", [7, 12])
def test_block_reductions_with_odd_block_sizes(block, monkeypatch, rng):
    """The shared-memory block sum for block sizes that are not powers of two."""
    monkeypatch.setattr(_config, "CUDA_BLOCK_SIZE", block)
    logits = rng.standard_normal(101)
    targets = rng.uniform(0, 1, 101)
    loss, _ = fused.binary_cross_entropy_with_logits(dev(logits), dev(targets))
    cpu_loss, _ = fused.binary_cross_entropy_with_logits(logits, targets)
    np.testing.assert_allclose(loss, cpu_loss, rtol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_mask_scale_and_seed(dtype, rng):
    x = rng.standard_normal((40, 25)).astype(dtype)
    y, mask = fused.dropout(dev(x), 0.3, 7)
    y, mask = to_host(y), to_host(mask)
    assert mask.dtype == np.bool_ and mask.shape == x.shape
    assert 0.6 < mask.mean() < 0.8  # 1000 draws: p = 0.3 +- 5 sigma
    np.testing.assert_array_equal(y, np.where(mask, x * dtype(1 / 0.7), 0).astype(dtype))
    again = to_host(fused.dropout(dev(x), 0.3, 7)[1])
    np.testing.assert_array_equal(mask, again)  # same seed, same mask
    other = to_host(fused.dropout(dev(x), 0.3, 8)[1])
    assert (other != mask).any()
    g = rng.standard_normal(x.shape).astype(dtype)
    dx = to_host(fused.dropout_backward(dev(g), dev(mask), 0.3))
    np.testing.assert_array_equal(dx, fused.dropout_backward(g, mask, 0.3))
    assert not to_host(fused.dropout(dev(x), 1.0, 0)[1]).any()
    assert to_host(fused.dropout(dev(x), 0.0, 0)[1]).all()


def test_counter_uniform_is_uniform():
    from fastact._cuda_fused import counter_uniform

    u = np.array([counter_uniform(np.uint64(12345), i) for i in range(20000)])
    assert u.min() >= 0 and u.max() < 1
    np.testing.assert_array_equal(u * 2**24, np.round(u * 2**24))  # exact in float32
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - 2000) < 5 * np.sqrt(2000))  # chi-by-eye, 5 sigma per bin


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, max_blocks", [((19, 6), 3), ((9, 70), 1)])
def test_batch_norm_matches_cpu(shape, max_blocks, dtype, training, monkeypatch, rng):
    """(9, 70) with one block: the column sums loop over three strips of 32 columns."""
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", max_blocks)
    f = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gamma = rng.uniform(0.5, 2, f).astype(dtype)
    beta = rng.standard_normal(f).astype(dtype)
    rm, rv = rng.standard_normal(f).astype(dtype), rng.uniform(0.5, 2, f).astype(dtype)
    d_rm, d_rv = dev(rm), dev(rv)
    y, cache = fused.batch_norm(dev(x), dev(gamma), dev(beta), d_rm, d_rv, training)
    cpu_y, cpu_cache = fused.batch_norm(x, gamma, beta, rm, rv, training)
    tol = 64 * np.finfo(dtype).eps
    np.testing.assert_allclose(to_host(y), cpu_y, rtol=tol, atol=tol)
    np.testing.assert_allclose(to_host(d_rm), rm, rtol=tol, atol=tol)
    np.testing.assert_allclose(to_host(d_rv), rv, rtol=tol, atol=tol)
    g = rng.standard_normal(x.shape).astype(dtype)
    dx, dgamma, dbeta = fused.batch_norm_backward(dev(g), cache)
    cpu = fused.batch_norm_backward(g, cpu_cache)
    for got, want in zip((dx, dgamma, dbeta), cpu):
        np.testing.assert_allclose(to_host(got), want, rtol=tol * 16, atol=tol * 16)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_pass_batch_statistics_against_exact_ones(dtype, rng):
    """batch_norm_moments shifts each column by its first value, so var = S2/n - (S1/n)^2
    cancels at most (mean - shift)^2 / var <= n. Against exact rational statistics: a column
    far from 0, one whose first value is an outlier (that worst case), a constant one
    (variance exactly 0)."""
    from fractions import Fraction

    n = 64
    x = rng.standard_normal((n, 3))
    x[:, 0] += 1e8 if dtype == np.float64 else 1e4
    x[0, 1] = 1e6
    x[:, 2] = 3.0
    x = x.astype(dtype)
    ones, zeros = np.ones(3, dtype), np.zeros(3, dtype)
    d_rm, d_rv = dev(zeros), dev(ones)
    fused.batch_norm(dev(x), dev(ones), dev(zeros), d_rm, d_rv, True, momentum=1.0)
    rm, rv = to_host(d_rm), to_host(d_rv)
    tol = 1e-13 if dtype == np.float64 else np.finfo(dtype).eps  # float32: one rounding
    for j in range(2):
        values = [Fraction(float(v)) for v in x[:, j]]
        mean = sum(values) / n
        var = sum((v - mean) ** 2 for v in values) / (n - 1)  # the running one: unbiased
        assert abs(Fraction(float(rm[j])) - mean) <= tol * abs(mean), (j, rm[j], float(mean))
        assert abs(Fraction(float(rv[j])) - var) <= tol * var, (j, rv[j], float(var))
    assert rm[2] == 3 and rv[2] == 0


# the simulator runs the kernels on NumPy scalars, which warn at inf - inf (a GPU does not)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_batch_statistics_of_a_column_that_starts_with_inf():
    """Its shift is 0, not inf (inf - inf would make every value NaN): the mean is inf and the
    variance NaN, as the CPU's two passes give."""
    x = np.array([[np.inf, 1.0], [2.0, 1.0], [3.0, 2.0]])
    ones, zeros = np.ones(2), np.zeros(2)
    d_rm, d_rv = dev(zeros), dev(ones)
    fused.batch_norm(dev(x), dev(ones), dev(zeros), d_rm, d_rv, True, momentum=1.0)
    cpu_rm, cpu_rv = zeros.copy(), ones.copy()
    fused.batch_norm(x, ones, zeros, cpu_rm, cpu_rv, True, momentum=1.0)
    # a few float64 roundings apart (a GPU may contract into FMAs); NaN where the CPU's is
    np.testing.assert_allclose(to_host(d_rm), cpu_rm, rtol=1e-15)
    np.testing.assert_allclose(to_host(d_rv), cpu_rv, rtol=1e-15)
    assert cpu_rm[0] == np.inf and np.isnan(cpu_rv[0]) and cpu_rv[1] == 1 / 3


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizers_match_cpu(dtype, nesterov, rng):
    """143 elements on 24 threads: the kernels' four-element loop, then the remainder (plain
    SGD passes an empty velocity: the simulator would raise on a read of it)."""
    p = rng.standard_normal((11, 13)).astype(dtype)
    g = rng.standard_normal((11, 13)).astype(dtype)
    v = rng.standard_normal((11, 13)).astype(dtype)
    dp, dv = dev(p), dev(v)
    kw = dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=nesterov)
    fused.sgd_update(dp, dev(g), dv, **kw)
    fused.sgd_update(p, g, v, **kw)
    assert_close(to_host(dp), p, dtype)
    assert_close(to_host(dv), v, dtype)
    fused.sgd_update(dp, dev(g), lr=0.1)  # plain SGD: no velocity
    fused.sgd_update(p, g, lr=0.1)
    assert_close(to_host(dp), p, dtype)
    m, s = np.zeros_like(p), np.zeros_like(p)
    dm, ds = dev(m), dev(s)
    for step in (1, 2, 3):
        fused.adam_update(dp, dev(g), dm, ds, step, lr=0.01, weight_decay=0.1)
        fused.adam_update(p, g, m, s, step, lr=0.01, weight_decay=0.1)
    assert_close(to_host(dp), p, dtype)
    assert_close(to_host(dm), m, dtype)


@pytest.mark.parametrize("n", [143, 5])
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_kernels_sum_the_gradient_squares(dtype, n, rng):
    """The MLP's gradient norms: with slot >= 0, sgd and adam add the float64 sum of g^2 to
    squares[slot] (the four-element loop and the remainder, several blocks), nothing else."""
    k = fa.cuda.fused_kernels()
    g = rng.standard_normal(n).astype(dtype)
    want = np.sum(g.astype(np.float64) ** 2)
    t = dtype
    for kernel, states in (("sgd", 1), ("adam", 2)):
        p = dev(rng.standard_normal(n).astype(dtype))
        arrays = [dev(np.zeros(n, dtype)) for _ in range(states)]
        squares = dev(np.array([5.0, 7.0, 11.0]))
        if kernel == "sgd":
            scalars = (t(0.1), t(0.9), t(0.0), False)
        else:
            scalars = (t(0.01), t(0.9), t(0.1), t(0.999), t(0.001), t(1.0), t(1e-8), t(0.0))
        getattr(k, kernel)[fa.cuda._grid_1d(n)](p, dev(g), *arrays, *scalars, squares, 1)
        got = to_host(squares)
        np.testing.assert_allclose(got, [5.0, 7.0 + want, 11.0], rtol=1e-14)


@pytest.mark.parametrize(
    "shape, weight", [((6, 4, 5), "vector"), ((50,), "scalar"), ((7, 3), "vector")]
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu_matches_cpu(dtype, shape, weight, rng):
    x = rng.standard_normal(shape).astype(dtype)
    channels = shape[1] if len(shape) > 1 else 1
    w = rng.uniform(0, 0.5, channels).astype(dtype) if weight == "vector" else np.array(0.2, dtype)
    g = rng.standard_normal(shape).astype(dtype)
    assert_ulp(to_host(fa.prelu(dev(x), dev(w))), fa.prelu(x, w), 0)
    gi, gw = fa.prelu_backward(dev(g), dev(x), dev(w))
    cpu_gi, cpu_gw = fa.prelu_backward(g, x, w)
    assert_ulp(to_host(gi), cpu_gi, 0)
    assert gw.shape == cpu_gw.shape
    np.testing.assert_allclose(to_host(gw), cpu_gw, rtol=SUM_RTOL[dtype], atol=1e-12)
    d_g = dev(g)  # out=grad_output: the slope gradient reads g before it is overwritten
    gi2, gw2 = fa.prelu_backward(d_g, dev(x), dev(w), out=d_g)
    assert gi2 is d_g
    assert_ulp(to_host(gi2), cpu_gi, 0)
    np.testing.assert_allclose(to_host(gw2), cpu_gw, rtol=SUM_RTOL[dtype], atol=1e-12)


def test_fused_errors_name_the_argument():
    x = dev(np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="labels must be integer"):
        fused.softmax_cross_entropy(x, dev(np.zeros(4, np.float32)))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        fused.softmax_cross_entropy(x, dev(np.zeros(3, np.int64)))
    with pytest.raises(TypeError, match="labels is a ndarray"):
        fused.softmax_cross_entropy(x, np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="on the host"):
        fused.softmax_cross_entropy(np.zeros((4, 3)), dev(np.zeros(4, np.int64)))
    with pytest.raises(ValueError, match="p is the probability"):
        fused.dropout(x, 1.5)
    with pytest.raises(ValueError, match="mask must be the boolean mask"):
        fused.dropout_backward(x, dev(np.zeros((4, 3), np.float32)), 0.5)
    with pytest.raises(TypeError, match="gamma is float64"):
        z = dev(np.zeros(3, np.float32))
        fused.batch_norm(x, dev(np.ones(3)), z, z, z, True)
    with pytest.raises(ValueError, match="velocity must be a device array"):
        fused.sgd_update(x, x, np.zeros((4, 3), np.float32), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="step must be an integer"):
        fused.adam_update(
            x, x, dev(np.zeros((4, 3), np.float32)), dev(np.zeros((4, 3), np.float32)), 0
        )
    with pytest.raises(ValueError, match="weight must be a scalar or a 1-D array of length 3"):
        fa.prelu(x, dev(np.zeros(2, np.float32)))


def test_optimizer_state_must_not_share_memory_on_the_device():
    """As on the host (tests/test_fused.py): state arrays that share memory with param or
    with each other are refused; grad may be param itself."""
    p = dev(np.ones(4, np.float32))
    state = dev(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="param and velocity share memory"):
        fused.sgd_update(p, dev(np.ones(4, np.float32)), p, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="m and v share memory"):
        fused.adam_update(p, dev(np.ones(4, np.float32)), state, state, 1)
    q = dev(np.full(4, 2.0, np.float32))
    fused.sgd_update(q, q, lr=0.25)  # grad is param: q -= 0.25 q
    np.testing.assert_array_equal(to_host(q), 1.5)


def test_out_partly_overlapping_an_input_is_refused_on_the_device():
    """The kernels read and write element by element: an out that is a shifted view of an
    input would read overwritten values (the CPU goes through a temporary). out may be the
    input itself."""
    buf = dev(np.arange(1.0, 42.0))
    with pytest.raises(ValueError, match="out partly overlaps x"):
        fa.relu(buf[0:40], out=buf[1:41])
    with pytest.raises(ValueError, match="out partly overlaps grad_output"):
        fa.relu_backward(buf[0:40], buf[0:40], out=buf[1:41])
    with pytest.raises(ValueError, match="out partly overlaps x"):
        fused.dropout(buf[0:40], 0.0, 1, out=buf[1:41])
    x = dev(np.arange(-3.0, 3.0))
    assert fa.relu(x, out=x) is x
    np.testing.assert_array_equal(to_host(x), [0, 0, 0, 0, 1, 2])


def test_a_bad_label_leaves_out_and_the_logits_unchanged_on_the_device(rng):
    logits = rng.standard_normal((4, 3))
    work = dev(logits)
    with pytest.raises(ValueError, match="labels must be in"):
        fused.softmax_cross_entropy(work, dev(np.array([0, 1, 2, 3])), out=work)
    np.testing.assert_array_equal(to_host(work), logits)
    z = dev(logits.reshape(-1))
    with pytest.raises(ValueError, match="targets must be probabilities"):
        fused.binary_cross_entropy_with_logits(z, dev(np.full(12, 1.5)), out=z)
    np.testing.assert_array_equal(to_host(z), logits.reshape(-1))
    loss, grad = fused.softmax_cross_entropy(work, dev(np.array([0, 1, 2, 0])), out=work)
    want = fused.softmax_cross_entropy(logits, np.array([0, 1, 2, 0]))
    assert grad is work and abs(loss - want[0]) < 1e-12
    np.testing.assert_allclose(to_host(grad), want[1], rtol=1e-12)


def test_host_and_device_mixtures_are_named(rng):
    x = rng.standard_normal((6, 3))
    ones, zeros = np.ones(3), np.zeros(3)
    _, cache = fused.batch_norm(dev(x), dev(ones), dev(zeros), dev(zeros), dev(ones), True)
    with pytest.raises(TypeError, match="cache is on the GPU"):
        fused.batch_norm_backward(np.ones((6, 3)), cache)
    _, host_cache = fused.batch_norm(x, ones, zeros, zeros.copy(), ones.copy(), True)
    with pytest.raises(TypeError, match="cache is on the host"):
        fused.batch_norm_backward(dev(np.ones((6, 3))), host_cache)
    _, mask = fused.dropout(dev(x.reshape(-1)), 0.5, 0)
    with pytest.raises(TypeError, match="mask is a CUDA device array"):
        fused.dropout_backward(np.ones(18), mask, 0.5)


def test_device_prelu_and_dropout_check_as_the_cpu():
    x = dev(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="weight must be finite"):
        fa.prelu(x, dev(np.array([np.nan, 0.1, 0.1], np.float32)))
    with pytest.raises(TypeError, match="rng must be"):
        fused.dropout(dev(np.empty(0, np.float32)), 0.5, rng="abc")
    big = dev(np.array([3e38, 3e38], np.float32))
    grad_x, grad_w = fa.prelu_backward(big, dev(np.array([-1.0, -1.0], np.float32)),
                                       dev(np.array([0.1], np.float32)))  # fmt: skip
    assert to_host(grad_w)[0] == -np.inf  # as the CPU: inf, no overflow warning


def test_temporaries_are_scratch_reused_by_the_next_call(rng, count_allocations):
    """The reductions' partial sums (the batch statistics' too), per-column coefficients and the
    loss totals are scratch arrays kept per thread (fastact.cuda._scratch): a repeated call
    allocates its results only and copies nothing from the host; a larger call grows the
    buffers, and alternating shapes stay right."""
    fa.cuda.release_scratch()

    def cases(rows):
        x = rng.standard_normal((rows, 6))
        ones, zeros, g = np.ones(6), np.zeros(6), rng.standard_normal((rows, 6))
        labels = rng.integers(0, 6, rows)
        host = (x, ones, zeros, g, labels)
        return host, [dev(a) for a in host]

    def run(device, host):
        x, ones, zeros, g, labels = device
        y, cache = fused.batch_norm(x, ones, zeros, dev(zeros), dev(ones), True)
        dx, dgamma, dbeta = fused.batch_norm_backward(g, cache)
        pre, grad_bias = fused.bias_act_backward(g, x, "silu")
        loss, grad = fused.softmax_cross_entropy(x, labels)
        hx, hones, hzeros, hg, hlabels = host
        want_y, want_cache = fused.batch_norm(hx, hones, hzeros, hzeros.copy(), hones.copy(), True)
        tol = dict(rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(to_host(y), want_y, **tol)
        for got, want in zip((dx, dgamma, dbeta), fused.batch_norm_backward(hg, want_cache)):
            np.testing.assert_allclose(to_host(got), want, **tol)
        np.testing.assert_allclose(to_host(grad_bias), fused.bias_act_backward(hg, hx, "silu")[1])
        np.testing.assert_allclose(loss, fused.softmax_cross_entropy(hx, hlabels)[0], rtol=1e-13)

    small, large = cases(19), cases(40)
    allocated = count_allocations()
    run(small[1], small[0])  # (the two running-statistics vectors: to_device, in run)
    first = len(allocated)
    allocated.clear()
    run(small[1], small[0])
    # results only: y, xhat, inv_std, gamma's copy; dx, dgamma, dbeta; grad_pre, grad_bias;
    # the loss gradient; + the running statistics' two copies
    assert len(allocated) == 4 + 3 + 2 + 1 + 2 < first
    allocated.clear()
    run(large[1], large[0])  # more row blocks: the partial sums grow
    run(small[1], small[0])
    fa.cuda.release_scratch()
    allocated.clear()
    run(small[1], small[0])
    assert len(allocated) == first


def test_scratch_is_kept_per_thread():
    """Two threads never share a scratch buffer (numba may give each its own default stream)."""
    import threading

    fa.cuda.release_scratch()
    here = fa.cuda._scratch("partial", (4, 3))
    assert fa.cuda._span(fa.cuda._scratch("partial", (2, 6))) == fa.cuda._span(here)
    there = []
    thread = threading.Thread(target=lambda: there.append(fa.cuda._scratch("partial", (4, 3))))
    thread.start()
    thread.join()
    assert fa.cuda._span(there[0]) != fa.cuda._span(here)
    grown = fa.cuda._scratch("partial", (5, 3))  # larger: a new buffer, then reused
    assert fa.cuda._span(fa.cuda._scratch("partial", (3,)))[0] == fa.cuda._span(grown)[0]
    assert fa.cuda._scratch("partial", (3,), np.float32).dtype == np.float32


def test_scratch_gives_the_same_view_for_the_same_shape():
    """A launch types each array object once (numba caches it on the object): the scratch
    hands out one view per slot, dtype and shape, not a new one per call."""
    fa.cuda.release_scratch()
    first = fa.cuda._scratch("partial", (4, 3))
    assert fa.cuda._scratch("partial", [4, 3]) is first
    assert fa.cuda._scratch("partial", (3, 4)) is not first
    assert fa.cuda._scratch("partial", (3, 4)).shape == (3, 4)
    assert fa.cuda._scratch("partial", 12).shape == (12,)
    assert fa.cuda._scratch("partial", (4, 3), np.float32) is not first
    grown = fa.cuda._scratch("partial", (8, 3))  # a new buffer: new views
    assert fa.cuda._scratch("partial", (4, 3)) is not first
    assert fa.cuda._span(fa.cuda._scratch("partial", (4, 3)))[0] == fa.cuda._span(grown)[0]
    for n in range(1, 40):  # the views kept per buffer are bounded
        fa.cuda._scratch("partial", (n,))
    (views,) = [
        held[2] for key, held in fa.cuda._SCRATCH.buffers.items() if key[:2] == ("partial", "<f8")
    ]
    assert 0 < len(views) <= 16
    assert fa.cuda._scratch("partial", (0, 3)).shape == (0, 3)


def test_labels_and_targets_are_counted_before_out_is_written(rng):
    """With out given, a kernel counts the bad labels (targets) before the loss kernel writes:
    the count is exact, whatever the integer type, and out keeps its values."""
    logits = rng.standard_normal((6, 4))
    for labels in (
        np.array([0, 4, 1, -1, 3, 9], np.int32),
        np.array([0, 2**64 - 1, 1, 4, 3, 2], np.uint64),
    ):
        work = dev(logits)
        want = int(((labels.astype(np.float64) < 0) | (labels.astype(np.float64) >= 4)).sum())
        with pytest.raises(ValueError, match=rf"{want} label\(s\) are not \(out was not written\)"):
            fused.softmax_cross_entropy(work, dev(labels), out=work)
        np.testing.assert_array_equal(to_host(work), logits)
        with pytest.raises(ValueError, match=rf"{want} label\(s\) are not$"):
            fused.softmax_cross_entropy(dev(logits), dev(labels))
    z = dev(logits.reshape(-1))
    targets = np.full(24, 0.5)
    targets[[1, 5, 9]] = [np.nan, -1e-300, 1 + 1e-15]
    with pytest.raises(ValueError, match=r"got 3 value\(s\) outside it or NaN \(out was not"):
        fused.binary_cross_entropy_with_logits(z, dev(targets), out=z)
    np.testing.assert_array_equal(to_host(z), logits.reshape(-1))
    targets[[1, 5, 9]] = [0.0, -0.0, 1.0]  # the ends are in
    loss, grad = fused.binary_cross_entropy_with_logits(z, dev(targets), out=z)
    want_loss, want_grad = fused.binary_cross_entropy_with_logits(logits.reshape(-1), targets)
    assert grad is z and abs(loss - want_loss) < 1e-12
    np.testing.assert_allclose(to_host(z), want_grad, rtol=1e-12)


@pytest.mark.parametrize(
    "optimizer, momentum, nesterov",
    [("sgd", 0.0, False), ("sgd", 0.9, False), ("sgd", 0.9, True), ("adam", 0.0, False)],
)
def test_segment_updates_equal_one_launch_per_parameter(optimizer, momentum, nesterov, rng):
    """sgd_segments / adam_segments (the MLP's update of every parameter in one launch) give
    each segment what sgd / adam give it alone, bit for bit: its weight decay or none, its
    sum of squares added to its slot or to none; the gaps between segments are not touched.
    Segment lengths around the four-element loop's edges; small blocks: several per segment."""
    k = fa.cuda.fused_kernels()
    f = np.float32
    lengths, starts, end = [1, 7, 64, 3, 129], [], 0
    for n in lengths:
        starts.append(end)
        end += n + 5  # a gap
    decays, slots = [True, False, True, False, True], [0, -1, 1, -1, 2]
    p, g, m, v = (rng.standard_normal(end).astype(f) for _ in range(4))
    v = np.abs(v)  # adam's second moment
    scalars = {"sgd": (f(0.1), f(momentum), f(0.01), nesterov),
               "adam": tuple(f(x) for x in (0.01, 0.9, 0.1, 0.999, 0.001, 1.2, 1e-8, 0.01))}  # fmt: skip
    one = dict(p=dev(p), m=dev(m), v=dev(v), squares=dev(np.zeros(3)))
    for a, n, decay, slot in zip(starts, lengths, decays, slots):
        part = slice(a, a + n)
        args = [one["p"][part], dev(g[part])] + ([one["m"][part]] if optimizer == "adam" else [])
        args.append(one["v"][part])
        values = list(scalars[optimizer])
        values[2 if optimizer == "sgd" else 7] = values[2 if optimizer == "sgd" else 7] * decay
        grid = fa.cuda._grid_1d(n)
        getattr(k, optimizer)[grid](*args, *values, one["squares"], slot)
    seg = dict(p=dev(p), m=dev(m), v=dev(v), squares=dev(np.zeros(3)))
    table = [dev(np.array([starts, np.add(starts, lengths), decays, slots], np.int64))]
    states = [seg["m"]] if optimizer == "adam" else []
    getattr(k, f"{optimizer}_segments")[fa.cuda._grid_1d(max(lengths))](
        seg["p"], dev(g), *states, seg["v"], *scalars[optimizer], *table, seg["squares"]
    )
    for name in ("p", "m", "v"):
        np.testing.assert_array_equal(to_host(seg[name]), to_host(one[name]), err_msg=name)
    np.testing.assert_allclose(to_host(seg["squares"]), to_host(one["squares"]), rtol=1e-15)
    assert to_host(seg["squares"])[2] > 0
    gaps = np.ones(end, bool)
    for a, n in zip(starts, lengths):
        gaps[a : a + n] = False
    for name, before in (("p", p), ("m", m), ("v", v)):
        np.testing.assert_array_equal(to_host(seg[name])[gaps], before[gaps], err_msg=name)
