"""NumPy conventions: dtypes, shapes, views, out=, broadcasting, errors; against the reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastact as fa
from fastact import reference
from fastact._config import PARALLEL_THRESHOLD
from fastact.activations import ACTIVATIONS
from tests.conftest import call_backward, call_forward


def fa_grad_from(name):
    return ACTIVATIONS[name].grad_from


RTOL = {np.float32: 2e-6, np.float64: 1e-13}


def assert_same(got, want, dtype, atol=0.0):
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_allclose(
        got, want, rtol=RTOL[dtype], atol=max(atol, np.finfo(dtype).tiny * 16)
    )


def sample(rng, shape, dtype):
    return (rng.standard_normal(shape) * 5).astype(dtype)


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_backward_match_reference(variant, dtype, rng):
    name, kw = variant
    x = sample(rng, (7, 33), dtype)
    g = sample(rng, (7, 33), dtype)
    wide = np.float64
    # the reference evaluated in float64 on the same inputs, rounded to the dtype
    want = call_forward(name, x.astype(wide), kw, reference).astype(dtype)
    assert_same(call_forward(name, x, kw), want, dtype)
    v = call_forward(name, x, kw) if fa_grad_from(name) == "output" else x
    want = getattr(reference, f"{name}_backward")(g.astype(wide), v.astype(wide), **kw).astype(
        dtype
    )
    # backward: absolute floor of a few eps * |g| (cancellation in e.g. 1 - y*y, x/3 + 1/2)
    floor = 8 * np.finfo(dtype).eps * np.abs(g).max()
    assert_same(getattr(fa, f"{name}_backward")(g, v, **kw), want, dtype, atol=floor)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parallel_path_matches_serial(variant, dtype, rng):
    name, kw = variant
    x = sample(rng, PARALLEL_THRESHOLD + 17, dtype)
    big = call_forward(name, x, kw)
    small = np.concatenate([call_forward(name, part, kw) for part in np.array_split(x, 8)])
    # vectorized loop bodies and their scalar remainders may contract to FMA differently:
    # an element's result can differ by 1 ULP with its position in a chunk, never more
    np.testing.assert_array_max_ulp(big, small, maxulp=1)
    g = sample(rng, x.shape, dtype)
    big = call_backward(name, g, x, kw)
    parts = zip(np.array_split(g, 8), np.array_split(x, 8))
    small = np.concatenate([call_backward(name, gp, xp, kw) for gp, xp in parts])
    np.testing.assert_array_max_ulp(big, small, maxulp=1)


SPECIAL = np.array(
    [
        -np.inf,
        -1e30,
        -1e4,
        -1000.0,
        -100.0,
        -20.0,
        -1.0,
        -1e-30,
        -0.0,
        0.0,
        1e-30,
        1.0,
        20.0,
        100.0,
        1000.0,
        1e4,
        1e30,
        np.inf,
        np.nan,
    ]
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_match_reference_without_warnings(variant, dtype):
    name, kw = variant
    x = np.concatenate([SPECIAL, [np.finfo(dtype).max, -np.finfo(dtype).max]]).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = call_forward(name, x, kw)
        gx = call_backward(name, np.ones_like(x), x, kw)
    with np.errstate(over="ignore"):  # float64 results beyond float32's range become inf
        want = call_forward(name, x.astype(np.float64), kw, reference).astype(dtype)
    # the NumPy reference rounds -x/sqrt(2) before erfc: it loses digits in gelu's left tail
    # (tests/test_accuracy.py checks the tails against mpmath instead)
    rtol = (1e3 if name == "gelu" else 4) * np.finfo(dtype).eps
    np.testing.assert_allclose(y, want, rtol=rtol, equal_nan=True)
    assert np.isnan(y[-3]), "NaN must propagate"
    assert not np.isnan(y[:-3]).any()
    assert not np.isnan(gx[:-3]).any()
    # -0.0 and +0.0 give the same value; odd functions keep the sign of zero
    zero = x == 0
    assert (y[zero] == y[zero][0]).all()


def test_exact_special_values():
    assert fa.sigmoid(-np.inf) == 0.0 and fa.sigmoid(np.inf) == 1.0
    assert fa.sigmoid(np.float32(-100.0)) == np.float32(3.7200760e-44)  # subnormal, not 0
    assert fa.log_sigmoid(-1000.0) == -1000.0
    assert fa.softplus(1000.0) == 1000.0
    assert fa.softplus(-1000.0) == 0.0
    assert fa.tanh(-0.0) == 0.0 and np.signbit(fa.tanh(-0.0))
    assert fa.relu(-0.0) == 0.0 and not np.signbit(fa.relu(-0.0))
    assert fa.silu(-np.inf) == 0.0 and fa.gelu(-np.inf) == 0.0 and fa.mish(-np.inf) == 0.0
    assert fa.gelu(np.inf) == np.inf and fa.mish(np.inf) == np.inf
    assert fa.sigmoid_backward(1.0, fa.sigmoid(0.0)) == 0.25  # the maximum of sigmoid'


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize(
    "dtype, result",
    [
        (np.float16, np.float16),
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int8, np.float64),
        (np.int64, np.float64),
        (np.uint16, np.float64),
        (np.bool_, np.float64),
    ],
)
def test_dtype_rules(dtype, result):
    x = np.array([-3, -1, 0, 1, 2]).astype(dtype)
    y = fa.sigmoid(x)
    assert y.dtype == result
    np.testing.assert_allclose(y, reference.sigmoid(x.astype(np.float64)), rtol=1e-3)
    gy = fa.sigmoid_backward(x, y)
    assert gy.dtype == result


def test_mixed_backward_dtypes_follow_result_type():
    g = np.ones(4, np.float32)
    assert fa.relu_backward(g, np.ones(4, np.float64)).dtype == np.float64
    assert fa.relu_backward(g, np.ones(4, np.int32)).dtype == np.float64
    assert fa.relu_backward(g, np.ones(4, np.float16)).dtype == np.float32


def test_python_scalars_and_lists():
    y = fa.sigmoid(0.0)
    assert isinstance(y, np.float64) and y == 0.5
    assert fa.relu([-1, 2]).tolist() == [0.0, 2.0]
    assert isinstance(fa.tanh(np.array(0.5)), np.float64)  # 0-d in, scalar out (as ufuncs)


# --------------------------------------------------------------------------- shapes and views
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (5, 4, 3)])
def test_shapes(shape, rng):
    x = sample(rng, shape, np.float64)
    y = fa.gelu(x)
    assert np.shape(y) == shape
    np.testing.assert_allclose(y, reference.gelu(x), rtol=1e-13)


@pytest.mark.parametrize("view", ["strided", "transposed", "reversed", "fortran", "column"])
def test_non_contiguous_views(variant, view, rng):
    name, kw = variant
    base = sample(rng, (12, 10), np.float32)
    x = {
        "strided": base[::2, ::3],
        "transposed": base.T,
        "reversed": base[::-1, ::-2],
        "fortran": np.asfortranarray(base),
        "column": base[:, 3],
    }[view]
    before = base.copy()
    y = call_forward(name, x, kw)
    np.testing.assert_array_equal(y, call_forward(name, np.ascontiguousarray(x), kw))
    g = np.ones_like(x)
    np.testing.assert_array_equal(
        call_backward(name, g, x, kw), call_backward(name, g, np.ascontiguousarray(x), kw)
    )
    np.testing.assert_array_equal(base, before)  # input untouched


def test_backward_broadcasts_like_numpy(rng):
    g = sample(rng, (3, 1), np.float64)
    x = sample(rng, (1, 4), np.float64)
    got = fa.silu_backward(g, x)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, reference.silu_backward(g, x), rtol=1e-13)
    with pytest.raises(ValueError, match="silu_backward.*do not broadcast"):
        fa.silu_backward(np.ones(3), np.ones(4))


# --------------------------------------------------------------------------- out=
def test_out_is_filled_and_returned(rng):
    x = sample(rng, (4, 5), np.float32)
    out = np.full_like(x, np.nan)
    assert fa.sigmoid(x, out=out) is out
    np.testing.assert_array_equal(out, fa.sigmoid(x))


def test_out_in_place_and_views(rng):
    x = sample(rng, (6, 8), np.float64)
    want = fa.elu(x, 0.5)
    y = x.copy()
    assert fa.elu(y, 0.5, out=y) is y
    np.testing.assert_array_equal(y, want)
    out = np.zeros((8, 6)).T  # non-contiguous out
    fa.elu(x, 0.5, out=out)
    np.testing.assert_array_equal(out, want)
    g = np.ones_like(x)
    fa.relu_backward(g, x, out=g)  # in place on grad_output
    np.testing.assert_array_equal(g, (x > 0).astype(float))


def test_out_partially_overlapping_input_is_handled():
    x = np.arange(-5.0, 5.0)
    want = fa.relu(x[1:])
    fa.relu(x[1:], out=x[:-1])
    np.testing.assert_array_equal(x[:-1], want)


def test_out_float16():
    x = np.linspace(-3, 3, 7).astype(np.float16)
    out = np.empty_like(x)
    fa.tanh(x, out=out)
    np.testing.assert_array_equal(out, fa.tanh(x))


@pytest.mark.parametrize(
    "out, err, msg",
    [
        (np.empty(4, np.float64), TypeError, "out has dtype float64"),
        (np.empty(5, np.float32), ValueError, "out has shape"),
        ([0.0] * 4, TypeError, "out must be a numpy.ndarray"),
    ],
)
def test_bad_out(out, err, msg):
    with pytest.raises(err, match=msg):
        fa.sigmoid(np.ones(4, np.float32), out=out)


def test_read_only_out():
    out = np.empty(3)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        fa.relu(np.ones(3), out=out)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "x, what",
    [
        (np.ones(3, complex), "complex128"),
        (np.array(["a"]), "<U1"),
        (np.array([object()]), "object"),
        ("abc", "<U3"),
        ([1, [2, 3]], "array-like"),
    ],
)
def test_bad_input_types(x, what):
    with pytest.raises(TypeError, match=r"fastact\.sigmoid: x must .*") as info:
        fa.sigmoid(x)
    assert what in str(info.value)
    with pytest.raises(TypeError, match="relu_backward: grad_output"):
        fa.relu_backward(x, np.ones(3))


@pytest.mark.parametrize(
    "call, err, msg",
    [
        (
            lambda: fa.gelu(np.ones(2), approximate="bogus"),
            ValueError,
            "approximate must be 'none' or 'tanh'",
        ),
        (
            lambda: fa.leaky_relu(np.ones(2), float("nan")),
            ValueError,
            "negative_slope must be finite",
        ),
        (
            lambda: fa.leaky_relu(np.ones(2), "0.1"),
            TypeError,
            "negative_slope must be a real number",
        ),
        (lambda: fa.elu(np.ones(2), -1.0), ValueError, "alpha must be >= 0"),
        (lambda: fa.celu(np.ones(2), 0.0), ValueError, "alpha must be > 0"),
        (lambda: fa.softplus(np.ones(2), beta=0), ValueError, "beta must be > 0"),
        (lambda: fa.softplus(np.ones(2), beta=np.inf), ValueError, "beta must be finite"),
        (lambda: fa.hard_tanh(np.ones(2), 1.0, -1.0), ValueError, "min_val .* must be <= max_val"),
        (
            lambda: fa.elu_backward(np.ones(2), np.ones(2), alpha=True),
            TypeError,
            "alpha must be a real",
        ),
        (
            lambda: fa.prelu(np.ones((2, 3)), np.ones(2)),
            ValueError,
            "weight must be a scalar or a 1-D array of length 3",
        ),
        (
            lambda: fa.prelu(np.ones((2, 3)), np.array([1, np.nan, 1])),
            ValueError,
            "weight must be finite",
        ),
        (
            lambda: fa.prelu_backward(np.ones((2, 2)), np.ones((2, 3)), 0.25),
            ValueError,
            "grad_output with shape \\(2, 2\\) does not broadcast",
        ),
    ],
)
def test_bad_arguments(call, err, msg):
    with pytest.raises(err, match=msg):
        call()


def test_params_change_results():
    x = np.array([-2.0, 3.0])
    np.testing.assert_allclose(fa.leaky_relu(x, 0.2), [-0.4, 3.0])
    np.testing.assert_allclose(fa.hard_tanh(x, -1.5, 2.5), [-1.5, 2.5])
    np.testing.assert_allclose(
        fa.softplus(x, beta=2.0, threshold=5.0), reference.softplus(x, 2.0, 5.0)
    )
    np.testing.assert_allclose(
        fa.celu_backward(np.ones(2), x, 2.0), reference.celu_backward(np.ones(2), x, 2.0)
    )


# --------------------------------------------------------------------------- prelu
@pytest.mark.parametrize(
    "shape, wshape", [((5,), ()), ((4, 3), (3,)), ((2, 3, 4, 5), (3,)), ((2, 3), (1,))]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prelu_matches_reference(shape, wshape, dtype, rng):
    x = sample(rng, shape, dtype)
    w = rng.uniform(0.05, 0.5, wshape).astype(dtype)
    g = sample(rng, shape, dtype)
    assert_same(fa.prelu(x, w), reference.prelu(x, w), dtype)
    gi, gw = fa.prelu_backward(g, x, w)
    ri, rw = reference.prelu_backward(g, x, w)
    assert_same(gi, ri, dtype)
    assert gw.shape == np.shape(w) and gw.dtype == dtype
    np.testing.assert_allclose(gw, rw, rtol=RTOL[dtype] * 10)


def test_prelu_weight_gradient_by_finite_differences(rng):
    x = sample(rng, (6, 3, 2), np.float64)
    w = np.array([0.1, 0.25, 0.4])
    g = sample(rng, x.shape, np.float64)
    _, gw = fa.prelu_backward(g, x, w)
    for c in range(3):
        e = np.zeros(3)
        e[c] = 1e-6
        fd = (np.sum(g * fa.prelu(x, w + e)) - np.sum(g * fa.prelu(x, w - e))) / 2e-6
        assert gw[c] == pytest.approx(fd, rel=1e-6)


# --------------------------------------------------------------------------- properties
finite_or_special = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float32, hnp.array_shapes(min_dims=0, max_dims=3, max_side=6), elements=finite_or_special
    )
)
def test_property_forward_matches_reference_float32(x):
    for name in (
        "sigmoid",
        "log_sigmoid",
        "softplus",
        "silu",
        "relu",
        "leaky_relu",
        "elu",
        "mish",
        "tanh",
    ):
        got = getattr(fa, name)(x)
        with np.errstate(over="ignore"):
            want = getattr(reference, name)(x.astype(np.float64)).astype(np.float32)
        np.testing.assert_allclose(
            got,
            want,
            rtol=8 * np.finfo(np.float32).eps,
            atol=np.finfo(np.float32).smallest_subnormal * 4,
            equal_nan=True,
        )


@settings(max_examples=60, deadline=None)
@given(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))
def test_property_sigmoid_bounded_and_monotone(a, b):
    sa, sb = fa.sigmoid(np.array([a, b]))
    assert 0.0 <= sa <= 1.0 and 0.0 <= sb <= 1.0
    if a < b:
        assert sa <= sb
    assert 0.0 <= fa.sigmoid_backward(1.0, sa) <= 0.25


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hot_path_read_only_unaligned_and_views(dtype):
    """The hot path calls a cached compiled entry point for aligned C-contiguous arrays: read-only
    inputs, unaligned buffers and views must still give the reference's result."""
    x = np.linspace(-5, 5, 101).astype(dtype)
    want = reference.sigmoid(x.astype(np.float64)).astype(dtype)
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_allclose(fa.sigmoid(ro), want, rtol=4 * np.finfo(dtype).eps)
    np.testing.assert_allclose(fa.sigmoid(x), want, rtol=4 * np.finfo(dtype).eps)
    np.testing.assert_allclose(fa.sigmoid(ro), want, rtol=4 * np.finfo(dtype).eps)
    raw = np.zeros(x.nbytes + 1, np.uint8)[1:]
    unaligned = raw.view(dtype)
    unaligned[:] = x
    assert not unaligned.flags.aligned
    np.testing.assert_allclose(fa.sigmoid(unaligned), want, rtol=4 * np.finfo(dtype).eps)
    g = np.ones_like(x)
    y = fa.sigmoid(x)
    out = np.empty_like(x)
    back = fa.sigmoid_backward(g, y, out=out)
    assert back is out
    np.testing.assert_allclose(back, y * (1 - y), rtol=8 * np.finfo(dtype).eps)
    view = np.empty(2 * x.size, dtype)[::2]  # a strided out: the general path
    np.testing.assert_allclose(fa.sigmoid(x, out=view), want, rtol=4 * np.finfo(dtype).eps)
    inplace = x.copy()
    assert fa.sigmoid(inplace, out=inplace) is inplace
    np.testing.assert_allclose(inplace, want, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_hot_call_in_place_runs_the_kernel_once(dtype):
    """The first hot-path call of an op and dtype finds the compiled entry point: in place, it
    must still apply the op once (forward and backward)."""
    from fastact import _functions

    op = _functions._SIGMOID
    op._ready[0].clear()
    op._ready[1].clear()
    x = np.array([0.0, 1.0], dtype)
    assert fa.sigmoid(x, out=x) is x
    np.testing.assert_allclose(x, [0.5, 1 / (1 + np.exp(-1.0))], rtol=4 * np.finfo(dtype).eps)
    op._ready[0].clear()
    op._ready[1].clear()
    g = np.ones(2, dtype)
    fa.sigmoid_backward(g, np.full(2, 0.5, dtype), out=g)
    np.testing.assert_array_equal(g, [0.25, 0.25])
    elu = _functions._ELU
    elu._ready[0].clear()
    z = np.array([-1.0, 2.0], dtype)
    fa.elu(z, alpha=0.5, out=z)  # non-default parameter through the cached entry
    np.testing.assert_allclose(z, [0.5 * np.expm1(-1.0), 2.0], rtol=4 * np.finfo(dtype).eps)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        fa.elu(np.zeros(3, dtype), alpha=np.array([1.0, 2.0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fastest_path_matches_the_general_path(dtype):
    """Small arrays with default parameters and no out= skip most checks once the entry point
    exists: same results as the general path (strided input) for 1-D, 2-D and 0-d arrays,
    forward and backward; non-default parameters still apply."""
    rng = np.random.default_rng(11)
    for shape in [(7,), (3, 5), ()]:
        x = np.asarray(rng.standard_normal(shape) * 4, dtype)
        strided = np.repeat(x.reshape(-1), 2)[::2].reshape(shape)
        for _ in range(2):  # the second call takes the fastest path
            y = fa.gelu(x)
            gx = fa.gelu_backward(x, x)
        assert type(y) is type(fa.gelu(strided)) and np.shape(y) == shape
        np.testing.assert_array_equal(y, fa.gelu(strided))
        np.testing.assert_array_equal(gx, fa.gelu_backward(strided, strided))
    x = np.linspace(-2, 2, 9).astype(dtype)
    fa.elu(x)
    fa.elu_backward(x, x)
    np.testing.assert_array_equal(fa.elu(x, alpha=0.5), fa.elu(np.repeat(x, 2)[::2], alpha=0.5))
    assert not np.array_equal(fa.elu(x, alpha=0.5), fa.elu(x))
    np.testing.assert_array_equal(
        fa.elu_backward(x, x, alpha=0.5), fa.elu_backward(x, np.repeat(x, 2)[::2], alpha=0.5)
    )
    assert not np.array_equal(fa.elu_backward(x, x, alpha=0.5), fa.elu_backward(x, x))
    frozen = x.copy()
    frozen.flags.writeable = False  # read-only input: not the fastest path, same result
    np.testing.assert_array_equal(fa.gelu(frozen), fa.gelu(x))
    np.testing.assert_array_equal(fa.gelu_backward(frozen, frozen), fa.gelu_backward(x, x))


# --------------------------------------------------------------------------- compute dtype
def test_parameters_are_checked_in_the_compute_dtype():
    """A parameter finite in float64 that overflows float32, or a positive one that rounds to
    0 there, is refused with the name of the parameter (it became inf or 0 in the kernel, with
    an overflow warning or a NaN result); where inf is allowed (softplus' threshold) it is
    used quietly. float64 computations take the same values."""
    x32, x64 = np.float32([0.0, -1.0]), np.array([0.0, -1.0])
    with pytest.raises(ValueError, match="negative_slope = 1e\\+39 overflows float32"):
        fa.leaky_relu(x32, 1e39)
    with pytest.raises(ValueError, match="alpha = 1e-46 rounds to 0 in float32"):
        fa.celu(x32, alpha=1e-46)
    with pytest.raises(ValueError, match="negative_slope = 1e\\+39 overflows float32"):
        fa.leaky_relu_backward(np.ones(2, np.float32), x32, 1e39)
    with pytest.raises(ValueError, match="weight overflows float32"):
        fa.prelu(x32, 1e39)
    with pytest.raises(ValueError, match="alpha must be finite"):
        fa.elu(x64, 10**400)  # an int beyond float64
    np.testing.assert_array_equal(fa.leaky_relu(x64, 1e39), [0.0, -1e39])
    np.testing.assert_array_equal(fa.celu(x64, alpha=1e-46), [0.0, -1e-46])
    np.testing.assert_array_equal(
        fa.softplus(x32, threshold=1e39), fa.softplus(x32, threshold=np.inf)
    )


def test_float16_results_beyond_its_range_are_inf_without_warning():
    """float16 inputs compute in float32; results beyond float16's range become inf, as a
    cast does, and no overflow warning escapes (pytest turns RuntimeWarnings into errors)."""
    big = np.float16([65504.0])
    assert fa.selu(big)[0] == np.inf
    assert fa.elu(np.float16([-1.0]), alpha=1e6)[0] == -np.inf
    out = np.empty(1, np.float16)
    assert fa.selu(big, out=out)[0] == np.inf
    assert fa.prelu(np.full((1, 3), -60000, np.float16), [2.0, 2.0, 2.0])[0, 0] == -np.inf


def test_prelu_keeps_0d_arrays_0d():
    """As every other activation: a 0-d input gives a scalar, out= may be 0-d, and the
    backward takes 0-d arrays and Python scalars."""
    assert fa.prelu(np.array(-2.0), 0.5) == fa.leaky_relu(np.array(-2.0), 0.5) == -1.0
    assert np.ndim(fa.prelu(np.array(-2.0), 0.5)) == 0
    out = np.empty(())
    assert fa.prelu(np.array(-2.0), 0.5, out=out) is out and out == -1.0
    grad_x, grad_w = fa.prelu_backward(1.0, -2.0, 0.5)
    assert grad_x == 0.5 and grad_w == -2.0 and np.ndim(grad_x) == 0


def test_prelu_out_may_overlap_the_weight():
    """As NumPy's ufuncs: the result is as if the inputs were read before out is written,
    also when out shares memory with the slopes (the weight read as a view, no copy). The
    slopes are out's elements 1-3: the first row's writes replace slopes the second row reads."""
    x = -np.arange(1.0, 7.0).reshape(2, 3)
    slopes = [0.1, 0.2, 0.3]
    buf = np.zeros((2, 3))
    buf.ravel()[1:4] = slopes
    np.testing.assert_array_equal(fa.prelu(x, buf.ravel()[1:4], out=buf), fa.prelu(x, slopes))
    buf = np.zeros((2, 3))
    buf.ravel()[1:4] = slopes
    g = np.full((2, 3), 2.0)
    grad_x, grad_w = fa.prelu_backward(g, x, buf.ravel()[1:4], out=buf)
    want_x, want_w = fa.prelu_backward(g, x, np.array(slopes))
    np.testing.assert_array_equal(grad_x, want_x)
    np.testing.assert_array_equal(grad_w, want_w)


def test_softplus_with_a_subnormal_beta():
    """log(2) / beta and the like overflow: inf, as the formula's value, not NaN (the
    correction of beta x's rounding is left out where it is not finite)."""
    for dtype, beta in ((np.float32, 1e-39), (np.float64, 1e-310)):
        x = np.array([-np.inf, 0.0, 1.0], dtype)
        assert fa.softplus(x, beta=beta).tolist() == [0.0, np.inf, np.inf]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_the_layout(dtype):
    """Contiguous input runs the vectorized loop, a strided view the scalar one: the same
    bits for every forward and backward (LLVM contracting a*b + c*d into either fma would
    differ between the two; float64 gelu did, by 1 ULP, before its fmas were explicit)."""
    from fastact.activations import ACTIVATIONS

    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 3, 3000), rng.normal(0, 30, 1000)]).astype(dtype)
    g = rng.normal(size=x.size).astype(dtype)

    def strided(a):
        return np.repeat(a, 2)[::2]

    for name, spec in ACTIVATIONS.items():
        kw = {} if spec.public else {"approximate": "tanh"}  # gelu's tanh form
        public = name if spec.public else "gelu"
        forward, backward = getattr(fa, public), getattr(fa, f"{public}_backward")
        y = forward(x, **kw)
        np.testing.assert_array_equal(y, forward(strided(x), **kw), err_msg=name)
        v = y if spec.grad_from == "output" else x
        np.testing.assert_array_equal(
            backward(g, v, **kw), backward(strided(g), strided(v), **kw), err_msg=name
        )


def test_python_scalars_take_the_arrays_dtype():
    """NumPy 2's rule for Python scalars (NEP 50), as scipy.special's ufuncs: a Python int or
    float next to a float32 array gives float32; one too large for float32 gives float64
    (no overflow warning); NumPy scalars and arrays promote as usual."""
    a = np.ones(4, np.float32)
    assert fa.silu_backward(a, 0.5).dtype == np.float32
    assert fa.silu_backward(0.5, a).dtype == np.float32
    assert fa.silu_backward(a, 3).dtype == np.float32
    np.testing.assert_array_equal(fa.silu_backward(a, 0.5), fa.silu_backward(a, np.float32(0.5)))
    assert fa.silu_backward(a, 1e39).dtype == np.float64
    assert fa.silu_backward(a, np.float64(0.5)).dtype == np.float64
    assert fa.silu_backward(a, np.array(0.5)).dtype == np.float64
    assert fa.silu_backward(0.5, 0.5).dtype == np.float64
    assert fa.silu_backward(np.ones(2, np.float16), 0.5).dtype == np.float16
    assert fa.relu_backward(1e5, np.ones(3, np.float16)).dtype == np.float64  # beyond float16


def test_prelu_backward_promotes_and_broadcasts_as_the_other_backwards():
    x = np.float32([[-1.0, 2.0], [3.0, -4.0]])
    w = np.float32([0.5, 0.25])
    assert fa.prelu_backward(np.ones((2, 2)), x, w)[0].dtype == np.float64
    grad_x, grad_w = fa.prelu_backward(1.0, x, w)  # a Python scalar takes x's dtype
    assert grad_x.dtype == np.float32 and grad_w.dtype == np.float32
    full_x, full_w = fa.prelu_backward(np.ones((2, 2), np.float32), x, w)
    np.testing.assert_array_equal(grad_x, full_x)
    np.testing.assert_array_equal(grad_w, full_w)
    row_x, row_w = fa.prelu_backward(np.float32([1.0, 2.0]), x, w)  # broadcast along rows
    np.testing.assert_array_equal(row_w, fa.prelu_backward(np.float32([[1, 2], [1, 2]]), x, w)[1])
