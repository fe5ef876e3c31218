"""CUDA twins of fastact's kernels: the same scalar definitions, compiled for the GPU.

Every public activation (``fastact.sigmoid``, ``fastact.gelu_backward``, ...) runs on the GPU
when its array arguments are CUDA device arrays: numba device arrays, or anything with
``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors), and numba's simulator arrays
under ``NUMBA_ENABLE_CUDASIM=1``. The result is a new numba device array (wrap it with
``cupy.asarray`` or ``torch.as_tensor``, no copy), or ``out`` itself when given (a device
array of the result's shape and dtype; it may be the input). NumPy input never touches CUDA,
and ``import fastact`` never imports ``numba.cuda``: this module imports it on first use.

The kernels are generated (``fastact/_cuda_kernels.py``, ``python -m fastact._codegen``) from
``fastact.activations``: grid-stride loops over the elements, calling the very functions the
CPU kernels call. :func:`bias_act` / :func:`bias_act_backward` are the fused bias + activation
epilogues on device (the bias gradient summed per row block, then across blocks, in float64).

Device rules (stricter than NumPy's): float32 and float64 only; contiguous arrays (C or
Fortran order) of any shape; a backward's two arrays have the same shape, dtype and layout (no
broadcasting); kernels run on numba's default stream, asynchronously.
"""

from __future__ import annotations

import numpy as np

from fastact import _config
from fastact._api import on_device

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_kernels_module = None


def is_available() -> bool:
    """True when CUDA kernels can run here: numba-cuda is installed and finds a GPU and its
    driver (or ``NUMBA_ENABLE_CUDASIM=1`` selects numba's simulator). Never raises."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:
        return False


def is_device_array(x) -> bool:
    """True for CUDA device arrays: ``__cuda_array_interface__`` (numba, CuPy, PyTorch CUDA
    tensors) or a numba device array (the simulator's arrays have no interface)."""
    return on_device(x)


def kernels():
    """The generated CUDA kernels (``fastact._cuda_kernels``), imported on first use."""
    global _kernels_module
    if _kernels_module is None:
        try:
            from fastact import _cuda_kernels
        except ImportError as exc:
            raise RuntimeError(
                f"fastact's CUDA kernels need numba-cuda: pip install 'fastact[cuda]' ({exc})"
            ) from None
        _kernels_module = _cuda_kernels
    return _kernels_module


# --------------------------------------------------------------------------- arrays
def _device(func: str, name: str, value):
    """``value`` as a numba device array (a view, no copy), checked for dtype."""
    from numba import cuda

    if getattr(type(value), "__cuda_ndarray__", False):
        array = value
    elif hasattr(value, "__cuda_array_interface__"):
        try:
            array = cuda.as_cuda_array(value)
        except Exception as exc:
            raise TypeError(
                f"fastact.{func}: {name} is a CUDA array that numba cannot use here "
                f"({type(exc).__name__}: {exc})"
            ) from None
    else:
        raise TypeError(
            f"fastact.{func}: {name} is a {type(value).__name__}, the other arrays "
            f"are on the GPU; pass CUDA device arrays for all of them "
            f"(numba.cuda.to_device, cupy.asarray, tensor.cuda())"
        )
    if np.dtype(array.dtype) not in _FLOATS:
        raise TypeError(
            f"fastact.{func}: {name} has dtype {array.dtype}; on the GPU fastact "
            f"computes float32 and float64 only: convert it with .astype(float32)"
        )
    return array


def _order(func: str, name: str, array) -> str:
    if array.is_c_contiguous():
        return "C"
    if array.is_f_contiguous():
        return "F"
    raise ValueError(
        f"fastact.{func}: {name} is a non-contiguous device array; pass a contiguous "
        f"one (e.g. cupy.ascontiguousarray, tensor.contiguous(), or a copy)"
    )


def _flat(array, order: str):
    return array.reshape(array.size) if array.ndim == 0 else array.ravel(order=order)


def _out(func: str, out, shape: tuple, dtype: np.dtype, order: str):
    """(the array the kernel writes, the array to return): ``out`` checked, or a new one."""
    from numba import cuda

    if out is None:
        array = cuda.device_array(shape, dtype, order=order)
        return array, array
    if not is_device_array(out):
        raise TypeError(
            f"fastact.{func}: out is a {type(out).__name__}, the input is on the GPU; "
            f"pass a CUDA device array (or no out)"
        )
    array = _device(func, "out", out)
    if np.dtype(array.dtype) != dtype:
        raise TypeError(
            f"fastact.{func}: out has dtype {array.dtype}, the result has dtype {dtype}"
        )
    if tuple(array.shape) != tuple(shape):
        raise ValueError(
            f"fastact.{func}: out has shape {tuple(array.shape)}, the result has shape "
            f"{tuple(shape)}"
        )
    if array.size > 1 and _order(func, "out", array) != order:
        raise ValueError(f"fastact.{func}: out must have the input's memory order ({order})")
    return array, out


# --------------------------------------------------------------------------- launches
def _grid_1d(n: int) -> tuple[int, int]:
    threads = _config.CUDA_BLOCK_SIZE
    return min(-(-n // threads), _config.CUDA_MAX_BLOCKS), threads


def _grid_2d(rows: int, cols: int, min_rows: int = 1) -> tuple[tuple, tuple]:
    """Blocks of (tx, ty) threads, tx along the features: the smallest power-of-two
    fraction of the block size (>= one warp) that covers ``cols``, so narrow matrices keep
    the block busy with several rows; each thread then takes >= ``min_rows`` rows."""
    block = _config.CUDA_BLOCK_SIZE
    tx = block
    while tx // 2 >= max(cols, 32) and tx > 1:
        tx //= 2
    ty = max(1, block // tx)
    bx = min(-(-cols // tx), _config.CUDA_MAX_BLOCKS)
    by = max(1, min(-(-rows // (ty * min_rows)), _config.CUDA_MAX_BLOCKS // bx))
    return (bx, by), (tx, ty)


def forward(op, x, out, a, b):
    """``op`` (a ``fastact._api.Op``) on a device array: called by the public functions."""
    func = op.public_name
    x = _device(func, "x", x)
    dtype = np.dtype(x.dtype)
    params = op._params(func, (a, b), dtype)
    order = _order(func, "x", x) if x.size > 1 else "C"
    target, result = _out(func, out, tuple(x.shape), dtype, order)
    n = x.size
    if n:
        blocks, threads = _grid_1d(n)
        kernel = getattr(kernels(), f"{op.name}_forward")
        kernel[blocks, threads](_flat(x, order), _flat(target, order), *params)
    return result


def _check_pair(func, name_a, a, name_b, b):
    """Two device arrays of one shape and dtype (no broadcasting or casting on the GPU)."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"fastact.{func}: {name_a} has shape {tuple(a.shape)}, {name_b} has "
            f"shape {tuple(b.shape)}; on the GPU they must be equal (no broadcasting)"
        )
    if a.dtype != b.dtype:
        raise TypeError(
            f"fastact.{func}: {name_a} is {a.dtype}, {name_b} is {b.dtype}; on the "
            f"GPU they must have the same dtype"
        )


def backward(op, grad_output, v, out, a, b):
    """The backward of ``op`` on device arrays (same shape, dtype and layout)."""
    func = f"{op.public_name}_backward"
    g = _device(func, "grad_output", grad_output)
    v = _device(func, op.vname, v)
    _check_pair(func, "grad_output", g, op.vname, v)
    dtype = np.dtype(g.dtype)
    params = op._params(func, (a, b), dtype)
    order = _order(func, "grad_output", g) if g.size > 1 else "C"
    if v.size > 1 and _order(func, op.vname, v) != order:
        raise ValueError(
            f"fastact.{func}: grad_output and {op.vname} must have the same memory order"
        )
    target, result = _out(func, out, tuple(g.shape), dtype, order)
    n = g.size
    if n:
        blocks, threads = _grid_1d(n)
        kernel = getattr(kernels(), f"{op.name}_backward")
        kernel[blocks, threads](_flat(g, order), _flat(v, order), _flat(target, order), *params)
    return result


# --------------------------------------------------------------------------- bias + activation
def _matrix(func: str, name: str, value, ndim: int):
    array = _device(func, name, value)
    if array.ndim != ndim:
        raise ValueError(f"fastact.{func}: {name} must be {ndim}-D, got shape {tuple(array.shape)}")
    if array.size > 1 and not array.is_c_contiguous():
        raise ValueError(f"fastact.{func}: {name} must be a C-contiguous device array")
    return array


def bias_act(x, bias, activation, *, out=None, **params):
    """``activation(x + bias)`` on the GPU, in one pass: as :func:`fastact.fused.bias_act`,
    for C-contiguous (batch, features) device arrays of one float dtype.

    Returns ``(out, saved)``: ``saved`` is what :func:`bias_act_backward` needs, the output
    itself for sigmoid and tanh (``saved is out``), else the pre-activation ``x + bias``.
    """
    from numba import cuda

    from fastact.fused import resolve_activation

    func = "bias_act"
    spec, a, b = resolve_activation(func, activation, params)
    x = _matrix(func, "x", x, 2)
    bias = _matrix(func, "bias", bias, 1)
    if bias.shape[0] != x.shape[1]:
        raise ValueError(
            f"fastact.{func}: bias has length {bias.shape[0]}, x has {x.shape[1]} "
            f"features (x.shape[1]); pass one bias per feature"
        )
    if bias.dtype != x.dtype:
        raise TypeError(
            f"fastact.{func}: bias is {bias.dtype}, x is {x.dtype}; on the GPU they must "
            f"have the same dtype"
        )
    dtype = np.dtype(x.dtype)
    target, result = _out(func, out, tuple(x.shape), dtype, "C")
    saved = target if spec.grad_from == "output" else cuda.device_array(x.shape, dtype)
    rows, cols = x.shape
    if x.size:
        blocks, threads = _grid_2d(rows, cols)
        kernel = getattr(kernels(), f"{spec.name}_bias_forward")
        kernel[blocks, threads](x, bias, target, saved, dtype.type(a), dtype.type(b))
    return result, (result if saved is target else saved)


def bias_act_backward(grad_output, saved, activation, **params):
    """Backward of :func:`bias_act` on the GPU: ``(grad_pre, grad_bias)``, as
    :func:`fastact.fused.bias_act_backward` (the bias gradient accumulated in float64, returned
    in the input's dtype)."""
    from numba import cuda

    from fastact.fused import resolve_activation

    func = "bias_act_backward"
    spec, a, b = resolve_activation(func, activation, params)
    g = _matrix(func, "grad_output", grad_output, 2)
    saved = _matrix(func, "saved", saved, 2)
    _check_pair(func, "grad_output", g, "saved", saved)
    dtype = np.dtype(g.dtype)
    rows, cols = g.shape
    grad_pre = cuda.device_array(g.shape, dtype)
    grad_bias = cuda.device_array(cols, dtype)
    if cols:
        blocks, threads = _grid_2d(rows, cols, _config.CUDA_BIAS_MIN_ROWS)
        partial = cuda.device_array((blocks[1] * threads[1], cols), np.float64)
        k = kernels()
        getattr(k, f"{spec.name}_bias_backward")[blocks, threads](
            g, saved, grad_pre, partial, dtype.type(a), dtype.type(b)
        )
        k.sum_partials[_grid_1d(cols)](partial, grad_bias)  # float64 sums, stored in dtype
    return grad_pre, grad_bias
