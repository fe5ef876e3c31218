"""fastact's CUDA kernels against the CPU kernels and fastact.reference, through the public
functions (device dispatch) and fastact.cuda.bias_act.

Under the simulator (``NUMBA_ENABLE_CUDASIM=1``) each GPU thread is a Python thread: sizes are
small, and the block size and block count are shrunk so that every input spans several blocks
and every thread loops (grid-stride). On a real GPU (``FASTACT_CUDA_TESTS=1``) the same tests
compare the compiled PTX's results with the CPU's, within a few ULP.
"""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest

import fastact as fa
from fastact import _config, fused, reference
from fastact.activations import ACTIVATIONS
from tests.conftest import VARIANTS, backward_arg, variant_id
from tests.cuda.conftest import SIMULATOR

cuda = pytest.importorskip("numba.cuda")

#: The simulator runs the very scalar functions the CPU kernels inline: results agree to 1 ULP
#: (FMA contraction may differ between a vectorized loop and a scalar call). Compiled PTX:
#: NVVM contracts and schedules differently, a few ULP.
MAX_ULP = 1 if SIMULATOR else 4
#: fastact.fused's CPU kernels inline the activation into a 2-D loop, contracted differently
#: from the elementwise kernels: gelu's float64 tail differs by up to 3 ULP between the two
FUSED_MAX_ULP = MAX_ULP + 3
RTOL = {np.float32: 2e-6, np.float64: 1e-13}
DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    """Blocks of 8 threads, at most 3 blocks: 24 threads, so 50 elements need a grid stride."""
    monkeypatch.setattr(_config, "CUDA_BLOCK_SIZE", 8)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 3)
    monkeypatch.setattr(_config, "CUDA_BIAS_MIN_ROWS", 2)
    monkeypatch.setattr(_config, "CUDA_REDUCE_ROWS", 3)  # column sums: a tree of odd halves


def registry_name(name, kw):
    return "gelu_tanh" if kw.get("approximate") == "tanh" else name


def special(dtype):
    return reference.special_values(dtype)


def inputs(dtype, rng, n=50):
    """Special values, then random ones over several scales: n + 31 elements."""
    scale = np.repeat([0.5, 4.0, 30.0], -(-n // 3))[:n]
    return np.concatenate([special(dtype), (rng.standard_normal(n) * scale).astype(dtype)])


def assert_ulp(got, want, maxulp=MAX_ULP):
    """Same NaNs, same infinities, same zeros (signs included), the rest within maxulp."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_array_equal(np.isinf(got[finite]), np.isinf(want[finite]))
    np.testing.assert_array_equal(
        np.signbit(got[finite]) & (got[finite] == 0), np.signbit(want[finite]) & (want[finite] == 0)
    )
    np.testing.assert_array_max_ulp(got[finite], want[finite], maxulp=maxulp)


def to_host(a):
    return a.copy_to_host()


# --------------------------------------------------------------------------- elementwise
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_forward_and_backward_match_cpu_and_reference(variant, dtype, rng):
    name, kw = variant
    x = inputs(dtype, rng)
    g = (rng.standard_normal(x.size) * 3).astype(dtype)
    v = np.asarray(backward_arg(name, x, kw), dtype)  # the output for sigmoid/tanh, else x
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cpu_y = getattr(fa, name)(x, **kw)
        cpu_g = getattr(fa, f"{name}_backward")(g, v, **kw)
    dev_y = getattr(fa, name)(cuda.to_device(x), **kw)
    dev_g = getattr(fa, f"{name}_backward")(cuda.to_device(g), cuda.to_device(v), **kw)
    assert fa.cuda.is_device_array(dev_y) and fa.cuda.is_device_array(dev_g)
    assert_ulp(to_host(dev_y), cpu_y)
    assert_ulp(to_host(dev_g), cpu_g)

    # and fastact.reference (float64) on the finite random part, as tests/test_api.py does
    k = special(dtype).size
    xs, gs, vs = x[k:].astype(np.float64), g[k:].astype(np.float64), v[k:].astype(np.float64)
    want = getattr(reference, name)(xs, **kw).astype(dtype)
    np.testing.assert_allclose(
        to_host(dev_y)[k:], want, rtol=RTOL[dtype], atol=np.finfo(dtype).tiny * 16
    )
    want = getattr(reference, f"{name}_backward")(gs, vs, **kw).astype(dtype)
    floor = 8 * np.finfo(dtype).eps * np.abs(gs).max()
    np.testing.assert_allclose(to_host(dev_g)[k:], want, rtol=RTOL[dtype], atol=floor)


@pytest.mark.parametrize(
    "name, kw",
    [
        ("leaky_relu", {"negative_slope": 0.2}),
        ("elu", {"alpha": 0.5}),
        ("celu", {"alpha": 2.0}),
        ("softplus", {"beta": 2.0, "threshold": 5.0}),
        ("hard_tanh", {"min_val": -0.5, "max_val": 2.0}),
    ],
)
def test_parameters_reach_the_kernels(name, kw, rng):
    x = inputs(np.float64, rng, 20)
    assert_ulp(to_host(getattr(fa, name)(cuda.to_device(x), **kw)), getattr(fa, name)(x, **kw))
    g = np.ones_like(x)
    dev = getattr(fa, f"{name}_backward")(cuda.to_device(g), cuda.to_device(x), **kw)
    assert_ulp(to_host(dev), getattr(fa, f"{name}_backward")(g, x, **kw))


# --------------------------------------------------------------------------- shapes, out=
@pytest.mark.parametrize("order", ["C", "F"])
def test_nd_arrays_keep_shape_and_order(order, rng):
    x = np.asarray(rng.standard_normal((5, 3, 4)), order=order)
    y = fa.silu(cuda.to_device(x))
    assert tuple(y.shape) == x.shape
    assert_ulp(to_host(y), fa.silu(x))
    g = np.asarray(rng.standard_normal(x.shape), order=order)
    assert_ulp(
        to_host(fa.silu_backward(cuda.to_device(g), cuda.to_device(x))), fa.silu_backward(g, x)
    )


def test_out_on_device_and_in_place(rng):
    x = rng.standard_normal(40).astype(np.float32)
    out = cuda.device_array(40, np.float32)
    assert fa.mish(cuda.to_device(x), out=out) is out
    assert_ulp(to_host(out), fa.mish(x))
    d = cuda.to_device(x)
    assert fa.gelu(d, approximate="tanh", out=d) is d  # in place
    assert_ulp(to_host(d), fa.gelu(x, approximate="tanh"))
    g = np.ones(40, np.float32)
    dg = cuda.to_device(g)
    assert fa.relu_backward(dg, cuda.to_device(x), out=dg) is dg
    assert_ulp(to_host(dg), fa.relu_backward(g, x))


def test_zero_d_and_empty():
    y = fa.sigmoid(cuda.to_device(np.array(0.0)))
    assert tuple(y.shape) == () and to_host(y)[()] == 0.5
    e = fa.tanh(cuda.to_device(np.empty((0, 3), np.float32)))
    assert tuple(e.shape) == (0, 3) and e.dtype == np.float32


def offset_copy(a, offset):
    """``a`` on the device, starting ``offset`` elements into a fresh allocation (which starts
    on 256 bytes): offset 0 is 16-byte aligned, 1 is not."""
    base = cuda.device_array(a.size + offset, a.dtype)
    view = base[offset:]
    view.copy_to_device(a)
    return view


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 4, 5, 97, 203])
@pytest.mark.parametrize("name", ["sigmoid", "gelu"])
def test_vector_and_element_loops_agree(name, n, dtype, rng):
    """The elementwise kernels take 128-bit groups of four when every array starts on 16 bytes
    (the simulator's load4/store4 assert it), else the element loop. 24 threads: 203 elements
    are 50 groups (the two-group loop, then one group) and 3 more."""
    x = (rng.standard_normal(n) * 4).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    v = np.asarray(backward_arg(name, x, {}), dtype)
    want_y, want_g = getattr(fa, name)(x), getattr(fa, f"{name}_backward")(g, v)
    for offsets in [(0, 0, 0), (1, 1, 1), (0, 1, 0), (1, 0, 0), (0, 0, 1)]:
        dx, dout = offset_copy(x, offsets[0]), offset_copy(np.full(n, np.nan, dtype), offsets[1])
        assert fa.cuda._aligned(dx, dout) == (offsets[:2] == (0, 0))
        assert getattr(fa, name)(dx, out=dout) is dout
        assert_ulp(to_host(dout), want_y)
        dg, dv = offset_copy(g, offsets[0]), offset_copy(v, offsets[2])
        got = getattr(fa, f"{name}_backward")(dg, dv, out=dout)
        assert_ulp(to_host(got), want_g)


@pytest.mark.parametrize("n", [3, 7, 11])
def test_one_thread_covers_the_groups_and_the_last_elements(n, monkeypatch):
    monkeypatch.setattr(_config, "CUDA_BLOCK_SIZE", 1)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 1)
    x = np.linspace(-3, 3, n)
    assert_ulp(to_host(fa.silu(cuda.to_device(x))), fa.silu(x))
    assert_ulp(
        to_host(fa.silu_backward(cuda.to_device(x), cuda.to_device(x))), fa.silu_backward(x, x)
    )


def test_vector_accesses_check_their_alignment():
    """Under the simulator load4/store4 fail where a GPU would fault: the vector path must
    never see a view that starts off a 16-byte boundary."""
    x = offset_copy(np.arange(8, dtype=np.float32), 1)
    out = cuda.device_array(8, np.float32)
    zero = np.float32(0)
    with pytest.raises(AssertionError, match="16-byte aligned"):
        fa.cuda.kernels().relu_forward[1, 8](x, out, zero, zero, np.bool_(True))


def test_errors_say_what_to_pass():
    d = cuda.to_device(np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="float32 and float64 only"):
        fa.relu(cuda.to_device(np.zeros(4, np.int32)))
    with pytest.raises(TypeError, match="x is a ndarray"):
        fa.relu_backward(d, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="no broadcasting"):
        fa.relu_backward(d, cuda.to_device(np.zeros((2, 4), np.float32)))
    with pytest.raises(TypeError, match="same dtype"):
        fa.relu_backward(d, cuda.to_device(np.zeros(4)))
    with pytest.raises(ValueError, match="non-contiguous"):
        fa.relu(cuda.to_device(np.zeros((4, 6), np.float32))[:, ::2])
    with pytest.raises(TypeError, match="out has dtype"):
        fa.relu(d, out=cuda.device_array(4, np.float64))
    with pytest.raises(ValueError, match="out has shape"):
        fa.relu(d, out=cuda.device_array(5, np.float32))
    with pytest.raises(TypeError, match="pass a CUDA device array"):
        fa.relu(d, out=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        fa.celu(d, alpha=0.0)
    with pytest.raises(TypeError, match="weight is a float"):
        fa.prelu(d, 0.25)  # device x, host weight


def test_numpy_input_stays_on_the_cpu():
    x = np.linspace(-3, 3, 11)
    assert type(fa.gelu(x)) is np.ndarray
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        fa.gelu(x, out=cuda.device_array(11))


# --------------------------------------------------------------------------- bias + activation
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_bias_act_matches_cpu(variant, dtype, rng):
    """13 x 5: blocks of 8 x 1 threads, 2 row blocks of >= 2 rows, partial bias sums added up."""
    name, kw = variant
    x = (rng.standard_normal((13, 5)) * 3).astype(dtype)
    x[0] = special(dtype)[[0, 14, 15, -2, -1]]  # -inf, -0, 0, inf, nan in the first row
    bias = rng.standard_normal(5).astype(dtype)
    g = rng.standard_normal((13, 5)).astype(dtype)
    cpu_out, cpu_saved = fused.bias_act(x, bias, name, **kw)
    out, saved = fa.cuda.bias_act(cuda.to_device(x), cuda.to_device(bias), name, **kw)
    assert_ulp(to_host(out), cpu_out, FUSED_MAX_ULP)
    if ACTIVATIONS[registry_name(name, kw)].fused_saves_output:
        assert saved is out
    else:
        np.testing.assert_array_equal(to_host(saved), cpu_saved)
    g[0] = 0.0  # keep the NaN/inf row out of the bias gradient
    cpu_pre, cpu_bias = fused.bias_act_backward(g, cpu_saved, name, **kw)
    pre, grad_bias = fa.cuda.bias_act_backward(cuda.to_device(g), saved, name, **kw)
    assert_ulp(to_host(pre), cpu_pre, FUSED_MAX_ULP)
    assert grad_bias.dtype == dtype and tuple(grad_bias.shape) == (5,)
    # float64 partial sums in another order than the CPU's: equal up to the final rounding
    floor = 8 * np.finfo(dtype).eps * np.abs(cpu_pre[1:]).sum(axis=0).max()  # row 0: 0 * inf = NaN
    np.testing.assert_allclose(
        to_host(grad_bias), cpu_bias, rtol=4 * np.finfo(dtype).eps, atol=floor
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(13, 8), (2, 4), (1, 12), (5, 160), (0, 8)])
@pytest.mark.parametrize("name", ["silu", "relu"])
def test_bias_vector_and_element_loops_agree(name, shape, dtype, rng):
    """With cols % 4 == 0 and every matrix on 16 bytes, the bias kernels take four columns a
    thread with 128-bit accesses (the simulator's load4/store4 assert the alignment); a matrix
    that starts mid-way takes the element loop. silu saves x + b, relu its output. 24 threads:
    13 rows are pairs of rows, then one; 160 columns (40 groups) loop over the columns."""
    rows, cols = shape
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    bias = rng.standard_normal(cols).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    want_out, want_saved = fused.bias_act(x, bias, name)
    want_pre, want_bias = fused.bias_act_backward(g, want_saved, name)
    floor = 8 * np.finfo(dtype).eps * np.abs(want_pre).sum(axis=0).max(initial=0.0)

    def matrix(a, offset):
        return offset_copy(a.ravel(), offset).reshape(shape) if a.size else cuda.to_device(a)

    for x_off, out_off, g_off in [(0, 0, 0), (1, 0, 0), (0, 1, 1), (1, 1, 0)]:
        dx, dout = matrix(x, x_off), matrix(np.full(shape, np.nan, dtype), out_off)
        out, saved = fa.cuda.bias_act(dx, cuda.to_device(bias), name, out=dout)
        if x.size:
            assert fa.cuda._bias_vector(cols, dx, dout, saved) == (x_off == out_off == 0)
        assert out is dout
        assert_ulp(to_host(out), want_out, FUSED_MAX_ULP)
        np.testing.assert_array_equal(to_host(saved), want_saved)
        dg = matrix(g, g_off)
        pre, grad_bias = fa.cuda.bias_act_backward(dg, saved, name)
        if x.size:
            saved_off = out_off if saved is out else 0  # else x + b, in a fresh array
            assert fa.cuda._bias_vector(cols, dg, saved, pre) == (g_off == saved_off == 0)
        assert_ulp(to_host(pre), want_pre, FUSED_MAX_ULP)
        np.testing.assert_allclose(
            to_host(grad_bias), want_bias, rtol=4 * np.finfo(dtype).eps, atol=floor
        )


@pytest.mark.parametrize("shape, block", [((37, 3), 64), ((3, 70), 8), ((1, 1), 8), ((0, 4), 8)])
def test_bias_act_launch_shapes(shape, block, monkeypatch, rng):
    """Narrow matrices (2-D blocks: 32 x 2 threads), wide ones (3 column blocks), tiny, empty."""
    monkeypatch.setattr(_config, "CUDA_BLOCK_SIZE", block)
    x = rng.standard_normal(shape)
    bias = rng.standard_normal(shape[1])
    g = rng.standard_normal(shape)
    out, saved = fa.cuda.bias_act(cuda.to_device(x), cuda.to_device(bias), "gelu")
    cpu_out, cpu_saved = fused.bias_act(x, bias, "gelu")
    assert_ulp(to_host(out), cpu_out, FUSED_MAX_ULP)
    pre, grad_bias = fa.cuda.bias_act_backward(cuda.to_device(g), saved, "gelu")
    cpu_pre, cpu_bias = fused.bias_act_backward(g, cpu_saved, "gelu")
    assert_ulp(to_host(pre), cpu_pre, FUSED_MAX_ULP)
    np.testing.assert_allclose(to_host(grad_bias), cpu_bias, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize(
    "rows, cols, reduce_rows, max_blocks",
    [(50, 3, 3, 3), (13, 100, 4, 1), (1, 40, 3, 2), (0, 5, 3, 3), (29, 1, 1, 3), (5, 33, 8, 1)],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_column_sums_launch_shapes(rows, cols, reduce_rows, max_blocks, dtype, monkeypatch, rng):
    """column_sums (the bias gradient's second stage, the MLP's output-layer bias gradient):
    threads along the rows of a block share each column's sum; columns beyond a strip of 32
    per block loop (wide matrices, one block); no rows sums to 0."""
    monkeypatch.setattr(_config, "CUDA_REDUCE_ROWS", reduce_rows)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", max_blocks)
    a = rng.standard_normal((rows, cols)).astype(dtype) * 10.0 ** rng.integers(-3, 4, (rows, cols))
    out = cuda.to_device(np.full(cols, np.nan, dtype))
    fa.cuda.kernels().column_sums[fa.cuda._grid_columns(cols)](cuda.to_device(a), out)
    exact = a.astype(np.float64).sum(axis=0)
    # float64 sums in two orders: within rows * eps of the sum of magnitudes (loose bound)
    floor = rows * np.finfo(np.float64).eps * np.abs(a).astype(np.float64).sum(axis=0).max()
    got = to_host(out)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, exact.astype(dtype), rtol=np.finfo(dtype).eps, atol=floor)


@pytest.mark.parametrize("reduce_rows", [0, 1, 32, 64, 4096])
@pytest.mark.parametrize("cols", [1, 5, 16, 17, 32, 1000])
def test_column_sum_blocks_fit_the_shared_memory(cols, reduce_rows, monkeypatch):
    """_grid_columns never asks for more threads than the shared-memory slots (1024), whatever
    CUDA_REDUCE_ROWS says; a warp (or the smallest power of two >= cols) along the columns."""
    monkeypatch.setattr(_config, "CUDA_REDUCE_ROWS", reduce_rows)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 8192)
    blocks, (tx, ty) = fa.cuda._grid_columns(cols)
    assert 1 <= ty and tx * ty <= _config.CUDA_MAX_THREADS
    assert tx == min(32, 1 << (cols - 1).bit_length()) and blocks * tx >= cols > (blocks - 1) * tx


def test_bias_act_errors():
    x = cuda.to_device(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="pass one bias per feature"):
        fa.cuda.bias_act(x, cuda.to_device(np.zeros(3, np.float32)), "relu")
    with pytest.raises(TypeError, match="same dtype"):
        fa.cuda.bias_act(x, cuda.to_device(np.zeros(4)), "relu")
    with pytest.raises(ValueError, match="unknown activation"):
        fa.cuda.bias_act(x, cuda.to_device(np.zeros(4, np.float32)), "swish")
    with pytest.raises(TypeError, match="pass CUDA device arrays"):
        fa.cuda.bias_act(x, np.zeros(4, np.float32), "relu")


def test_every_activation_has_cuda_kernels():
    k = fa.cuda.kernels()
    for name in ACTIVATIONS:
        for kind in ("forward", "backward", "bias_forward", "bias_backward"):
            assert hasattr(k, f"{name}_{kind}"), (name, kind)


# --------------------------------------------------------------------------- other libraries
@pytest.mark.skipif(SIMULATOR, reason="needs a GPU: CuPy / PyTorch CUDA arrays")
def test_cupy_and_torch_arrays_give_results_of_their_kind(rng):
    x = rng.standard_normal((40, 25)).astype(np.float32)
    g = rng.standard_normal((40, 25)).astype(np.float32)
    bias = rng.standard_normal(25).astype(np.float32)
    ran = 0
    try:
        import torch

        if torch.cuda.is_available():
            tx, tg = torch.as_tensor(x, device="cuda"), torch.as_tensor(g, device="cuda")
            y = fa.silu(tx)
            assert isinstance(y, torch.Tensor) and y.device == tx.device
            assert y.dtype == torch.float32 and tuple(y.shape) == x.shape
            assert_ulp(y.cpu().numpy(), fa.silu(x))
            assert_ulp(fa.silu_backward(tg, tx).cpu().numpy(), fa.silu_backward(g, x))
            out = torch.empty_like(tx)
            assert fa.gelu(tx, out=out) is out
            assert_ulp(out.cpu().numpy(), fa.gelu(x))
            yf = fa.tanh(tx.T)  # Fortran order in, Fortran order out
            assert isinstance(yf, torch.Tensor) and yf.stride() == tx.T.stride()
            assert_ulp(yf.cpu().numpy(), fa.tanh(x.T))
            tb = torch.as_tensor(bias, device="cuda")
            out, saved = fused.bias_act(tx, tb, "elu")
            assert isinstance(out, torch.Tensor) and isinstance(saved, torch.Tensor)
            assert_ulp(out.cpu().numpy(), fused.bias_act(x, bias, "elu")[0], FUSED_MAX_ULP)
            grad_pre, grad_bias = fused.bias_act_backward(tg, saved, "elu")
            assert isinstance(grad_pre, torch.Tensor) and tuple(grad_bias.shape) == (25,)
            kept, mask = fused.dropout(tx, 0.5, rng=3)
            assert isinstance(kept, torch.Tensor) and mask.dtype == torch.bool
            with pytest.raises(TypeError, match="x is a CUDA array that numba cannot use"):
                fa.relu(tx.clone().requires_grad_(True))  # PyTorch's own message: .detach()
            side = torch.cuda.Stream()
            with torch.cuda.stream(side), pytest.raises(ValueError, match="torch.cuda.stream"):
                fa.relu(tx)
            ran += 1
    except ImportError:
        pass
    try:
        import cupy

        cx = cupy.asarray(x)
        y = fa.mish(cx)
        assert isinstance(y, cupy.ndarray) and y.dtype == np.float32
        assert_ulp(cupy.asnumpy(y), fa.mish(x))
        yf = fa.tanh(cupy.asfortranarray(cx))
        assert isinstance(yf, cupy.ndarray) and yf.flags.f_contiguous
        assert_ulp(cupy.asnumpy(yf), fa.tanh(x))
        loss, grad = fused.softmax_cross_entropy(cx, cupy.arange(40) % 25)
        assert isinstance(grad, cupy.ndarray)
        numba_in = fa.relu(cuda.to_device(x))  # numba in, numba out
        assert getattr(type(numba_in), "__cuda_ndarray__", False)
        ran += 1
    except ImportError:
        pass
    if not ran:
        pytest.skip("neither PyTorch with CUDA nor CuPy is installed")


class _Unexportable:
    """A device array whose interface cannot be read (as a PyTorch tensor that requires grad)."""

    @property
    def __cuda_array_interface__(self):
        raise RuntimeError("cannot export a tensor that requires grad: use .detach()")


def test_an_array_that_cannot_export_its_interface_is_a_clear_type_error():
    assert fa.cuda.is_device_array(_Unexportable())
    with pytest.raises(TypeError, match=r"relu: x is a CUDA array that numba cannot use.*detach"):
        fa.relu(_Unexportable())
    x = cuda.to_device(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="relu_backward: .* numba cannot use"):
        fa.relu_backward(x, _Unexportable())


class _OtherLibraryArray:
    """Another library's device array (neither PyTorch's nor CuPy's), on ``stream``. Its
    memory is never read: the simulator has no from_cuda_array_interface, and the refusal
    comes first."""

    def __init__(self, stream):
        self.stream = stream

    @property
    def __cuda_array_interface__(self):
        return {"shape": (2,), "typestr": "<f4", "data": (0, False), "version": 3,
                "strides": None, "stream": self.stream}  # fmt: skip


def test_another_librarys_array_on_a_non_default_stream_is_refused():
    """fastact's kernels run on the default stream: another library's array must name a
    default stream (or none), as CuPy's; numba would not order that stream's work with them."""
    from fastact.cuda import _check_device_and_stream

    for stream in (None, 1, 2):  # none given, the legacy and the per-thread default streams
        array = _OtherLibraryArray(stream)
        _check_device_and_stream("relu", "x", array, array.__cuda_array_interface__)
    with pytest.raises(ValueError, match=r"relu: x is a _OtherLibraryArray on CUDA stream 1234"):
        fa.relu(_OtherLibraryArray(1234))
    x = cuda.to_device(np.array([-1.0, 2.0], np.float32))
    with pytest.raises(ValueError, match=r"relu_backward: x is .* stream 1234.* synchronize"):
        fa.relu_backward(x, _OtherLibraryArray(1234))
    assert x.copy_to_host().tolist() == [-1.0, 2.0]


class _FakeDevice:
    """A CuPy device (``.id``, a context manager) or a torch.device (``.index``)."""

    def __init__(self, index, entered):
        self.id = self.index = index
        self._entered = entered

    def __enter__(self):
        self._entered.append(self.id)

    def __exit__(self, *exc):
        self._entered.pop()


@pytest.fixture
def fake_libraries(monkeypatch):
    """Stand-ins for torch and cupy (CUDA arrays need a GPU), numba's current GPU being 0:
    they exercise fastact.cuda's device and stream rules, not the libraries."""
    entered, state = [], {"torch_stream": "default"}
    torch = types.ModuleType("torch")
    torch.Tensor = type("Tensor", (), {})
    torch.cuda = types.SimpleNamespace(
        current_stream=lambda device: state["torch_stream"],
        default_stream=lambda device: "default",
        current_device=lambda: 0,
    )
    cupy = types.ModuleType("cupy")
    cupy.ndarray = type("ndarray", (), {})
    cupy.empty = lambda shape, dtype, order: ("cupy array", shape, order, list(entered))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(cuda, "get_current_device", lambda: types.SimpleNamespace(id=0))

    def make(lib, device=0):
        array = (torch.Tensor if lib == "torch" else cupy.ndarray)()
        array.device = _FakeDevice(device, entered)
        return array

    return make, state


def test_cupy_and_torch_arrays_must_be_on_numbas_gpu_and_default_stream(fake_libraries):
    from fastact.cuda import _check_device_and_stream

    make, state = fake_libraries
    for stream in (None, 1, 2):  # none given, the legacy and the per-thread default streams
        _check_device_and_stream("relu", "x", make("cupy"), {"stream": stream})
    with pytest.raises(ValueError, match=r"relu: x is used inside a CuPy stream"):
        _check_device_and_stream("relu", "x", make("cupy"), {"stream": 0x7F3A2C004E80})
    with pytest.raises(ValueError, match=r"x is on GPU 1, .* numba.cuda.gpus\[1\]"):
        _check_device_and_stream("relu", "x", make("cupy", device=1), {"stream": 1})
    _check_device_and_stream("relu", "x", make("torch"), {"version": 2})
    with pytest.raises(ValueError, match=r"grad_output is on GPU 2"):
        _check_device_and_stream("relu", "grad_output", make("torch", device=2), {})
    state["torch_stream"] = "side"
    with pytest.raises(ValueError, match=r"inside torch.cuda.stream"):
        _check_device_and_stream("relu", "x", make("torch"), {"version": 2})
    _check_device_and_stream("relu", "x", cuda.to_device(np.ones(2)), {})  # numba's own


def test_cupy_results_are_allocated_on_the_inputs_gpu(fake_libraries):
    from fastact.cuda import _allocate, _library

    make, _ = fake_libraries
    like = make("cupy", device=3)
    assert _library(like) == "cupy" and _library(make("torch")) == "torch"
    assert _allocate(like, (2, 5), np.dtype(np.float32), "F") == ("cupy array", (2, 5), "F", [3])


def test_results_are_allocated_by_the_inputs_library():
    """fastact.cuda._allocate: the array library of the first argument allocates the result
    (checked with CPU tensors where PyTorch is installed; the launch itself needs a GPU)."""
    from fastact.cuda import _allocate, _library

    assert _library(cuda.to_device(np.zeros(3))) == "numba"
    assert _allocate(cuda.to_device(np.zeros(3)), (3,), np.dtype(np.float32)) is None
    torch = pytest.importorskip("torch")
    like = torch.zeros(2, dtype=torch.float64)
    assert _library(like) == "torch"
    for dtype, want in [(np.float32, torch.float32), (np.float64, torch.float64),
                        (np.bool_, torch.bool)]:  # fmt: skip
        c = _allocate(like, (3, 4, 5), np.dtype(dtype))
        assert isinstance(c, torch.Tensor) and c.dtype == want and c.device == like.device
        assert tuple(c.shape) == (3, 4, 5) and c.is_contiguous()
        f = _allocate(like, (3, 4, 5), np.dtype(dtype), order="F")
        assert tuple(f.shape) == (3, 4, 5) and f.stride() == (1, 3, 12)
    assert tuple(_allocate(like, (), np.dtype(np.float32)).shape) == ()
