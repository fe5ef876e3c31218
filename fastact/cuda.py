"""CUDA twins of fastact's kernels: the same scalar definitions, compiled for the GPU.

Every public activation (``fastact.sigmoid``, ``fastact.gelu_backward``, ...) runs on the GPU
when its array arguments are CUDA device arrays: numba device arrays, or anything with
``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors), and numba's simulator arrays
under ``NUMBA_ENABLE_CUDASIM=1``. The result is a new array of the first argument's kind (a
CuPy array for CuPy input, a PyTorch tensor on the input's device for PyTorch input, allocated
by that library; else a numba device array), or ``out`` itself when given (a device array of
the result's shape and dtype; it may be the input). NumPy input never touches CUDA, and
``import fastact`` never imports ``numba.cuda``: this module imports it on first use.

The kernels are generated (``fastact/_cuda_kernels.py``, ``python -m fastact._codegen``) from
``fastact.activations``: grid-stride loops over the elements, calling the very functions the
CPU kernels call. :func:`bias_act` / :func:`bias_act_backward` are the fused bias + activation
epilogues on device (the bias gradient summed per row block, then across blocks, in float64).

Device rules (stricter than NumPy's): float32 and float64 only; contiguous arrays (C or
Fortran order) of any shape; a backward's two arrays have the same shape, dtype and layout (no
broadcasting); kernels run on numba's default stream, asynchronously, on numba's current GPU
(CuPy and PyTorch arrays must be there, and their library's current stream a default one).
Temporaries (partial sums, loss totals) are scratch arrays kept per thread and reused by the
next call: :func:`release_scratch` frees them.
"""

from __future__ import annotations

import math
import numbers
import sys
import threading

import numpy as np

from fastact import _config
from fastact._api import on_device, typed_params

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_kernels_module = None
_fused_module = None


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
#: ``__cuda_array_interface__`` streams whose work fastact's launches (numba's default stream)
#: are ordered with, both ways: none given (the producer guarantees it), the legacy default
#: stream (1) and the per-thread default stream (2), which synchronize with each other
_DEFAULT_STREAMS = (None, 1, 2)


def _check_device_and_stream(func: str, name: str, value, interface: dict) -> None:
    """A CuPy array or PyTorch tensor must be on numba's current GPU, where fastact launches
    (another GPU's memory would fault there), and its library's current stream must be a
    default stream: fastact's kernels run on the default stream, which the other streams'
    work may not wait for (PyTorch's and non-blocking CuPy streams), so that work could read
    a result before it is written, or reuse its memory. Any other library's array must name
    a default stream (or none) in its ``__cuda_array_interface__``, for the same reason."""
    from numba import cuda

    lib = _library(value)
    stream = interface.get("stream")
    advice = "call fastact outside the stream context (after synchronizing the stream)"
    if lib == "torch":  # PyTorch exports no stream: ask it
        import torch

        device = value.device
        index = device.index if device.index is not None else torch.cuda.current_device()
        other_stream = torch.cuda.current_stream(device) != torch.cuda.default_stream(device)
        context = "used inside torch.cuda.stream(...)"
    elif lib == "cupy":
        index = value.device.id
        other_stream = stream not in _DEFAULT_STREAMS
        context = "used inside a CuPy stream (with cupy.cuda.Stream(): ...)"
    else:  # another library: its device is not known here
        index = None
        other_stream = stream not in _DEFAULT_STREAMS
        context = (
            f"a {type(value).__name__} on CUDA stream {stream!r} (its __cuda_array_interface__)"
        )
        advice = "synchronize that stream and pass the array on the default stream"
    if other_stream:
        raise ValueError(
            f"fastact.{func}: {name} is {context}; fastact's kernels run on the default "
            f"stream, which that stream does not wait for: {advice}"
        )
    if index is None:
        return
    current = cuda.get_current_device().id
    if index != current:
        raise ValueError(
            f"fastact.{func}: {name} is on GPU {index}, fastact runs on numba's current GPU "
            f"{current}: call it inside `with numba.cuda.gpus[{index}]:`"
        )


def _view(func: str, name: str, value):
    """``value`` as a numba device array (a view, no copy): numba's own arrays as they are, the
    others through ``__cuda_array_interface__`` (checked by :func:`_check_device_and_stream`)."""
    from numba import cuda

    if getattr(type(value), "__cuda_ndarray__", False):
        return value
    try:
        interface = value.__cuda_array_interface__
    except AttributeError:
        raise TypeError(
            f"fastact.{func}: {name} is a {type(value).__name__}, the other arrays "
            f"are on the GPU; pass CUDA device arrays for all of them "
            f"(numba.cuda.to_device, cupy.asarray, tensor.cuda())"
        ) from None
    except Exception as exc:  # e.g. a PyTorch tensor that requires grad: use .detach()
        raise TypeError(
            f"fastact.{func}: {name} is a CUDA array that numba cannot use here "
            f"({type(exc).__name__}: {exc})"
        ) from None
    _check_device_and_stream(func, name, value, interface)
    try:  # on a default stream (checked): nothing for the host to wait for
        return cuda.from_cuda_array_interface(interface, owner=value, sync=False)
    except Exception as exc:
        raise TypeError(
            f"fastact.{func}: {name} is a CUDA array that numba cannot use here "
            f"({type(exc).__name__}: {exc})"
        ) from None


def _device(func: str, name: str, value):
    """``value`` as a numba device array (a view, no copy), checked for dtype."""
    array = _view(func, name, value)
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


def _span(a) -> tuple[int, int]:
    """The device memory of a contiguous device array, as a byte range [start, end)."""
    interface = getattr(a, "__cuda_array_interface__", None)
    if interface is None:  # numba's CUDA simulator: a wrapped NumPy array
        interface = np.asarray(a).__array_interface__
    start = interface["data"][0]
    return start, start + a.size * np.dtype(a.dtype).itemsize


def _aligned(*arrays) -> np.bool_:
    """Whether every array's data starts on a 16-byte boundary: the generated elementwise
    kernels then load and store four elements per instruction (fastact._cuda_memory). Fresh
    allocations are (numba, CuPy and PyTorch align them to 256 bytes); views that start
    mid-way may not be, and take the kernels' element-wise loop."""
    return np.bool_(all(_span(a)[0] % _config.CUDA_VECTOR_BYTES == 0 for a in arrays))


def _overlap(a, b) -> str:
    """How two contiguous device arrays share memory: "" (not at all), "same" (the same
    elements: same bytes and shape) or "partly"."""
    if not (a.size and b.size):
        return ""
    (a0, a1), (b0, b1) = _span(a), _span(b)
    if not (a0 < b1 and b0 < a1):
        return ""
    return "same" if (a0, a1) == (b0, b1) and tuple(a.shape) == tuple(b.shape) else "partly"


#: NumPy dtypes as PyTorch's (the results fastact allocates for PyTorch input)
_TORCH_DTYPES = {"float32": "float32", "float64": "float64", "bool": "bool"}


def _library(value) -> str:
    """The array library of a user's device array: "cupy" (a cupy.ndarray), "torch" (a
    torch.Tensor, subclasses included) or "numba" (anything else: numba device arrays, other
    ``__cuda_array_interface__`` objects). Only libraries already imported are asked."""
    for lib, kind in (("torch", "Tensor"), ("cupy", "ndarray")):
        module = sys.modules.get(lib)
        if module is not None and isinstance(value, getattr(module, kind, ())):
            return lib
    return "numba"


def _allocate(like, shape: tuple, dtype: np.dtype, order: str = "C"):
    """A new array of ``like``'s library, or None for numba (see :func:`_empty`)."""
    lib = _library(like)
    if lib == "cupy":
        import cupy

        with like.device:  # on like's GPU, not CuPy's current one
            return cupy.empty(shape, dtype, order=order)
    if lib == "torch":
        import torch

        torch_dtype = getattr(torch, _TORCH_DTYPES[dtype.name])
        if order == "F":  # the reversed shape, C-contiguous, seen transposed
            array = torch.empty(shape[::-1], dtype=torch_dtype, device=like.device)
            return array.permute(*reversed(range(len(shape))))
        return torch.empty(shape, dtype=torch_dtype, device=like.device)
    return None


def _empty(like, shape: tuple, dtype, order: str = "C"):
    """A new result array of ``like``'s kind: a CuPy array for CuPy input, a PyTorch tensor on
    ``like``'s device for PyTorch input (allocated by that library, from its memory pool), else
    a numba device array. Returns (a numba view the kernels write, the array to return)."""
    from numba import cuda

    dtype = np.dtype(dtype)
    array = _allocate(like, tuple(shape), dtype, order)
    if array is None:
        array = cuda.device_array(shape, dtype, order=order)
        return array, array
    # allocated on the library's current stream, a default one (_check_device_and_stream):
    # ordered with fastact's launches, nothing to wait for
    return cuda.as_cuda_array(array, sync=False), array


def _out(func: str, out, shape: tuple, dtype: np.dtype, order: str, inputs=(), like=None):
    """(the array the kernel writes, the array to return): ``out`` checked, or a new one of
    ``like``'s kind (the caller's first array: see :func:`_empty`). ``inputs``: (name, device
    array) that ``out`` may be, but may not partly overlap (the kernels read and write element
    by element; the CPU goes through a temporary there)."""
    if out is None:
        return _empty(like, shape, dtype, order)
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
    for name, a in inputs:
        if _overlap(array, a) == "partly":
            raise ValueError(
                f"fastact.{func}: out partly overlaps {name}; on the GPU pass a separate out, "
                f"or {name} itself"
            )
    return array, out


# --------------------------------------------------------------------------- scratch
#: The temporaries of fastact's own launches (partial sums, per-column coefficients, loss
#: totals), kept per thread: {slot: (context, device array)}
_SCRATCH = threading.local()


def _scratch(slot: str, shape, dtype=np.float64):
    """A device array for one call's temporaries: a view of a buffer kept per thread (and CUDA
    context) and ``slot`` (one per temporary a call holds at once), grown when too small. Each
    numba allocation is a cuMemAlloc (and a cuMemFree later, which waits for the GPU), so
    repeated calls reuse these instead. Safe: fastact launches in order on numba's default
    stream, and no scratch array outlives the call (or the launches) it was taken for. The
    largest are the column reductions' float64 partial sums: CUDA_MAX_BLOCKS x
    CUDA_BLOCK_SIZE of them at most (16 MiB), or one row where the columns alone are more.
    :func:`release_scratch` frees them. The same shape gives the same view object: a launch
    types each array object it is given, once per object (see ``bench/gpu_host_cost.py``)."""
    from numba import config, cuda

    dtype = np.dtype(dtype)
    shape = (int(shape),) if isinstance(shape, numbers.Integral) else tuple(map(int, shape))
    size = math.prod(shape)
    # numba keeps one Context object per GPU (a new one after cuda.close()); the simulator
    # makes one on each call, for its single device
    context = _SIMULATOR if config.ENABLE_CUDASIM else cuda.current_context()  # type: ignore[attr-defined]
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (slot, dtype.str, id(context))  # the context is held with its buffer: a live id
    held = buffers.get(key)
    if held is None or held[0] is not context or held[1].size < size:
        # (context, buffer, {shape: view of the buffer})
        held = buffers[key] = (context, cuda.device_array(max(1, size), dtype), {})
    views = held[2]
    view = views.get(shape)
    if view is None:
        if len(views) >= 16:
            views.clear()
        view = views[shape] = held[1][:size].reshape(shape)
    return view


_SIMULATOR = object()


def release_scratch() -> None:
    """Frees the device memory fastact keeps for its temporaries in this thread (mostly the
    float64 partial sums of the column reductions: up to 16 MiB for each of the two a call
    may hold, more only past two million columns, on each GPU used). They come back on the
    next call that needs them."""
    _SCRATCH.__dict__.pop("buffers", None)


def _zeros(slot: str, shape):
    """A float64 scratch array set to 0 on the device (no host copy, nothing to wait for)."""
    array = _scratch(slot, shape)
    flat = _scratch(slot, array.size)
    if flat.size:
        fused_kernels().zero[_grid_1d(flat.size)](flat)
    return array


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


def _grid_tiles(rows: int, cols: int) -> tuple[tuple, tuple]:
    """Blocks of the matmul kernel (fastact/_cuda_fused.py): one per MATMUL_TILE x
    MATMUL_TILE tile of the (rows, cols) product, up to ``CUDA_MAX_BLOCKS`` in all (the
    kernel's grid-stride loop takes the rest); MATMUL_TILE x MATMUL_TILE // 4 threads each."""
    tile = fused_kernels().MATMUL_TILE
    bx = max(1, min(-(-cols // tile), _config.CUDA_MAX_BLOCKS))
    by = max(1, min(-(-rows // tile), _config.CUDA_MAX_BLOCKS // bx))
    return (bx, by), (tile, tile // 4)


def _grid_columns(cols: int) -> tuple[int, tuple]:
    """Blocks for the column sums (``_column_total`` in fastact/_cuda_kernels.py): (tx, ty)
    threads, tx along the columns (a warp, or the smallest power of two >= cols), ty =
    ``CUDA_REDUCE_ROWS`` along the rows (at most ``CUDA_MAX_THREADS`` in all: the shared-memory
    slots); each block takes whole strips of tx columns."""
    tx = 32
    while tx // 2 >= cols and tx > 1:
        tx //= 2
    ty = max(1, min(_config.CUDA_REDUCE_ROWS, _config.CUDA_MAX_THREADS // tx))
    return min(-(-cols // tx), _config.CUDA_MAX_BLOCKS), (tx, ty)


def _grid_rows(rows: int, cols: int) -> tuple[int, tuple]:
    """Blocks for the row-wise softmax kernels: (tx, ty) threads, tx sharing a row (1 below
    ``CUDA_ROW_THREADS_MIN_CLASSES`` classes; else ``CUDA_ROW_THREADS``, a warp, doubled while
    every thread keeps >= 32 columns, up to the block), ty = block // tx rows per block."""
    block = _config.CUDA_BLOCK_SIZE
    tx = 1
    if cols >= _config.CUDA_ROW_THREADS_MIN_CLASSES:
        tx = min(_config.CUDA_ROW_THREADS, block)
        while tx * 2 <= block and tx * 64 <= cols:
            tx *= 2
    ty = block // tx
    return min(-(-rows // ty), _config.CUDA_MAX_BLOCKS), (tx, ty)


def _softmax_cross_entropy_into(x, labels, grad, total, bad):
    """The launch of the softmax cross-entropy kernel (no checks; fastact.cuda and the MLP)."""
    lowest = np.dtype(x.dtype).type(-np.inf)
    fused_kernels().softmax_cross_entropy[_grid_rows(*x.shape)](x, labels, grad, total, bad, lowest)


def _launch_elementwise(kernel, arrays, params):
    """A generated forward or backward kernel on flat arrays (inputs, then the target): the
    128-bit loop with a thread per group of four when every array starts on 16 bytes, else
    the element loop with a thread per element."""
    n = arrays[0].size
    vector = _aligned(*arrays)
    blocks, threads = _grid_1d(-(-n // 4) if vector else n)
    kernel[blocks, threads](*arrays, *params, vector)


def _bias_vector(cols: int, *arrays) -> np.bool_:
    """Whether a generated bias kernel takes its 128-bit loop: four columns a thread, so the
    columns must come in fours (then every row starts on 16 bytes when the matrix does)."""
    return np.bool_(cols % 4 == 0 and _aligned(*arrays))


def _launch_bias_forward(kernel, x, bias, out, saved, params):
    """A generated bias + activation forward on (rows, cols) matrices: a thread per group of
    four columns with 128-bit accesses when ``_bias_vector``, else a thread per column."""
    rows, cols = x.shape
    vector = _bias_vector(cols, x, out, saved)
    kernel[_grid_2d(rows, cols // 4 if vector else cols)](x, bias, out, saved, *params, vector)


def _launch_bias_backward(kernel, g, saved, grad_pre, params, partial_rows):
    """A generated bias + activation backward, laid out as :func:`_launch_bias_forward`; each
    thread sums >= ``CUDA_BIAS_MIN_ROWS`` rows of its column, or four times that of its four
    columns on the 128-bit loop (row blocks: at most 1/16, or 1/64, of the rows; 256M
    elements of 1024 features: 2048 and 4096 under the block limit). ``partial_rows(n)``
    gives the (n, cols) float64 array of the row blocks' partial sums, which is returned for
    ``column_sums`` to add up."""
    rows, cols = g.shape
    vector = _bias_vector(cols, g, saved, grad_pre)
    min_rows = _config.CUDA_BIAS_MIN_ROWS * (4 if vector else 1)
    blocks, threads = _grid_2d(rows, cols // 4 if vector else cols, min_rows)
    partial = partial_rows(blocks[1] * threads[1])
    kernel[blocks, threads](g, saved, grad_pre, partial, *params, vector)
    return partial


def forward(op, x, out, a, b):
    """``op`` (a ``fastact._api.Op``) on a device array: called by the public functions."""
    func = op.public_name
    x, like = _device(func, "x", x), x
    dtype = np.dtype(x.dtype)
    params = op._params(func, (a, b), dtype)
    order = _order(func, "x", x) if x.size > 1 else "C"
    target, result = _out(func, out, tuple(x.shape), dtype, order, [("x", x)], like)
    n = x.size
    if n:
        kernel = getattr(kernels(), f"{op.name}_forward")
        _launch_elementwise(kernel, [_flat(a, order) for a in (x, target)], params)
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
    g, like = _device(func, "grad_output", grad_output), grad_output
    v = _device(func, op.vname, v)
    _check_pair(func, "grad_output", g, op.vname, v)
    dtype = np.dtype(g.dtype)
    params = op._params(func, (a, b), dtype)
    order = _order(func, "grad_output", g) if g.size > 1 else "C"
    if v.size > 1 and _order(func, op.vname, v) != order:
        raise ValueError(
            f"fastact.{func}: grad_output and {op.vname} must have the same memory order"
        )
    target, result = _out(
        func, out, tuple(g.shape), dtype, order, [("grad_output", g), (op.vname, v)], like
    )
    n = g.size
    if n:
        kernel = getattr(kernels(), f"{op.name}_backward")
        _launch_elementwise(kernel, [_flat(a, order) for a in (g, v, target)], params)
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
    itself for sigmoid, tanh, relu, relu6 and hard_tanh (``saved is out``), else the
    pre-activation ``x + bias``.
    """
    from fastact.fused import resolve_activation

    func = "bias_act"
    spec, a, b = resolve_activation(func, activation, params)
    x, like = _matrix(func, "x", x, 2), x
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
    a, b = typed_params(func, spec, a, b, dtype)
    target, result = _out(func, out, tuple(x.shape), dtype, "C", [("x", x), ("bias", bias)], like)
    saved, saved_result = (
        (target, result) if spec.fused_saves_output else _empty(like, tuple(x.shape), dtype)
    )
    if x.size:
        kernel = getattr(kernels(), f"{spec.name}_bias_forward")
        _launch_bias_forward(kernel, x, bias, target, saved, (a, b))
    return result, saved_result


def bias_act_backward(grad_output, saved, activation, **params):
    """Backward of :func:`bias_act` on the GPU: ``(grad_pre, grad_bias)``, as
    :func:`fastact.fused.bias_act_backward` (the bias gradient accumulated in float64, returned
    in the input's dtype)."""
    from fastact.fused import resolve_activation

    func = "bias_act_backward"
    spec, a, b = resolve_activation(func, activation, params)
    g, like = _matrix(func, "grad_output", grad_output, 2), grad_output
    saved = _matrix(func, "saved", saved, 2)
    _check_pair(func, "grad_output", g, "saved", saved)
    dtype = np.dtype(g.dtype)
    a, b = typed_params(func, spec, a, b, dtype)
    rows, cols = g.shape
    grad_pre, grad_pre_result = _empty(like, tuple(g.shape), dtype)
    grad_bias, grad_bias_result = _empty(like, (cols,), dtype)
    if cols:
        k = kernels()
        partial = _launch_bias_backward(
            getattr(k, f"{spec.name}_bias_backward"), g, saved, grad_pre, (a, b),
            lambda n: _scratch("partial", (n, cols)),
        )  # fmt: skip
        k.column_sums[_grid_columns(cols)](partial, grad_bias)  # float64, stored in dtype
    return grad_pre_result, grad_bias_result


# --------------------------------------------------------------------------- fused training ops
# The device twins of fastact.fused (the public functions there call these for device input):
# the same argument checks, the kernels of fastact/_cuda_fused.py. Device arrays must be
# C-contiguous and of one float dtype; losses come back as Python floats (one synchronization).
def fused_kernels():
    """The CUDA kernels of the fused ops (``fastact._cuda_fused``), imported on first use
    (kept, as ``kernels()``'s: an import statement per launch costs ~0.5 us)."""
    global _fused_module
    if _fused_module is None:
        kernels()  # the same clear error without numba-cuda
        from fastact import _cuda_fused

        _fused_module = _cuda_fused
    return _fused_module


def _like(func: str, name: str, value, reference, shape=None):
    """``value`` as a C-contiguous device array of ``reference``'s dtype (and ``shape``)."""
    array = _matrix(func, name, value, len(shape if shape is not None else reference.shape))
    if array.dtype != reference.dtype:
        raise TypeError(
            f"fastact.{func}: {name} is {array.dtype}, {reference.dtype} expected (on the GPU "
            f"the arrays of one call share a dtype)"
        )
    want = tuple(reference.shape if shape is None else shape)
    if tuple(array.shape) != want:
        raise ValueError(f"fastact.{func}: {name} has shape {tuple(array.shape)}, {want} expected")
    return array


def _new_or_out(func: str, out, reference, inputs=(), like=None):
    """``out`` checked, or a new C-contiguous array of ``like``'s kind (see :func:`_empty`)
    with ``reference``'s shape and dtype: (the array the kernel writes, the one to return)."""
    target, result = _out(
        func, out, tuple(reference.shape), np.dtype(reference.dtype), "C", inputs, like
    )
    if target.size > 1 and not target.is_c_contiguous():
        raise ValueError(f"fastact.{func}: out must be C-contiguous")
    return target, result


def _loss_sums():
    """The loss kernels' float64 [total, bad count], zeroed scratch: (both, total, bad)."""
    sums = _zeros("loss", 2)
    return sums, sums[0:1], sums[1:2]


def softmax(logits, *, out=None):
    """Row-wise softmax on the GPU (as :func:`fastact.fused.softmax`)."""
    func = "softmax"
    x = _logits(func, logits)
    target, result = _new_or_out(func, out, x, [("logits", x)], logits)
    lowest = np.dtype(x.dtype).type(-np.inf)
    fused_kernels().softmax[_grid_rows(*x.shape)](x, target, lowest)
    return result


def _logits(func, logits):
    x = _matrix(func, "logits", logits, 2)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"fastact.{func}: logits must have at least one row and one class, got shape "
            f"{tuple(x.shape)}"
        )
    return x


def softmax_cross_entropy(logits, labels, *, out=None):
    """``(loss, grad)`` of the mean softmax cross-entropy on the GPU (as
    :func:`fastact.fused.softmax_cross_entropy`). ``labels``: a device array of integer class
    indices (out-of-range labels are counted on the device and raise ValueError)."""
    func = "softmax_cross_entropy"
    x = _logits(func, logits)
    y = _device_any(func, "labels", labels)
    if np.dtype(y.dtype).kind not in "iu":
        raise TypeError(f"fastact.{func}: labels must be integer class indices, got {y.dtype}")
    if tuple(y.shape) != (x.shape[0],):
        raise ValueError(
            f"fastact.{func}: labels must have shape ({x.shape[0]},) (one per row of logits), "
            f"got {tuple(y.shape)}"
        )
    target, result = _new_or_out(func, out, x, [("logits", x), ("labels", y)], logits)
    sums, total, bad = _loss_sums()
    rows, classes = x.shape
    if out is not None:  # every label checked before out (maybe the logits) is written
        fused_kernels().count_bad_labels[_grid_1d(rows)](y, np.int64(classes), bad)
        _bad_labels(func, classes, bad.copy_to_host()[0], " (out was not written)")
    _softmax_cross_entropy_into(x, y, target, total, bad)
    loss, wrong = sums.copy_to_host()
    _bad_labels(func, classes, wrong, "")
    return float(loss) / rows, result


def _bad_labels(func, classes, count, untouched):
    if count:
        raise ValueError(
            f"fastact.{func}: labels must be in [0, {classes}) (logits has {classes} classes); "
            f"{int(count)} label(s) are not{untouched}"
        )


def binary_cross_entropy_with_logits(logits, targets, *, out=None):
    """``(loss, grad)`` of the mean binary cross-entropy with logits on the GPU (as
    :func:`fastact.fused.binary_cross_entropy_with_logits`; targets outside [0, 1] raise)."""
    func = "binary_cross_entropy_with_logits"
    x = _device(func, "logits", logits)
    if x.size == 0:
        raise ValueError(f"fastact.{func}: logits is empty")
    x = _like(func, "logits", x, x)
    t = _like(func, "targets", targets, x)
    target, result = _new_or_out(func, out, x, [("logits", x), ("targets", t)], logits)
    sums, total, bad = _loss_sums()
    n = x.size
    k = fused_kernels()
    if out is not None:  # every target checked before out (maybe the logits) is written
        k.count_bad_targets[_grid_1d(n)](_flat(t, "C"), bad)
        _bad_targets(func, bad.copy_to_host()[0], " (out was not written)")
    k.bce_with_logits[_grid_1d(n)](_flat(x, "C"), _flat(t, "C"), _flat(target, "C"), total, bad)
    loss, wrong = sums.copy_to_host()
    _bad_targets(func, wrong, "")
    return float(loss) / n, result


def _bad_targets(func, count, untouched):
    if count:
        raise ValueError(
            f"fastact.{func}: targets must be probabilities in [0, 1] (e.g. 0/1 labels), got "
            f"{int(count)} value(s) outside it or NaN{untouched}"
        )


def _device_any(func: str, name: str, value):
    """A device array of any dtype (labels, masks), C-contiguous."""
    if not is_device_array(value):
        raise TypeError(
            f"fastact.{func}: {name} is a {type(value).__name__}, the other arrays are on the "
            f"GPU; pass a CUDA device array"
        )
    array = _view(func, name, value)
    if array.size > 1 and not array.is_c_contiguous():
        raise ValueError(f"fastact.{func}: {name} must be a C-contiguous device array")
    return array


def dropout_seed(rng) -> np.uint64:
    """The 64-bit seed of a device dropout mask: from an int, a numpy Generator (advanced by
    one draw) or None (fresh entropy)."""
    from fastact.fused import as_generator

    return np.uint64(as_generator("dropout", rng).integers(0, 2**63))


def dropout(x, p, rng=None, *, out=None):
    """Inverted dropout on the GPU: ``(y, mask)`` as :func:`fastact.fused.dropout`. The mask
    comes from a counter-based hash of (seed, index) drawn on the device: the seed is taken
    from ``rng`` (an int or a Generator), so the same seed gives the same mask on any GPU (not
    the CPU's mask: that one comes from the Generator's stream)."""
    from fastact.fused import _dropout_p

    func = "dropout"
    p, scale = _dropout_p(func, p)
    x, like = _device(func, "x", x), x
    if x.size > 1 and not x.is_c_contiguous():
        raise ValueError(f"fastact.{func}: x must be a C-contiguous device array")
    target, result = _new_or_out(func, out, x, [("x", x)], like)
    mask, mask_result = _empty(like, tuple(x.shape), np.bool_)
    t = np.dtype(x.dtype).type
    seed = dropout_seed(rng)  # checked (and drawn) whatever the size, as on the CPU
    if x.size:
        fused_kernels().dropout[_grid_1d(x.size)](
            _flat(x, "C"), seed, t(p), t(scale), _flat(target, "C"), _flat(mask, "C")
        )
    return result, mask_result


def dropout_backward(grad_output, mask, p, *, out=None):
    """Backward of :func:`dropout` on the GPU."""
    from fastact.fused import _dropout_p

    func = "dropout_backward"
    p, scale = _dropout_p(func, p)
    g = _device(func, "grad_output", grad_output)
    if g.size > 1 and not g.is_c_contiguous():
        raise ValueError(f"fastact.{func}: grad_output must be a C-contiguous device array")
    m = _device_any(func, "mask", mask)
    if np.dtype(m.dtype) != np.bool_ or tuple(m.shape) != tuple(g.shape):
        raise ValueError(
            f"fastact.{func}: mask must be the boolean mask dropout returned, of grad_output's "
            f"shape {tuple(g.shape)}; got {m.dtype} with shape {tuple(m.shape)}"
        )
    target, result = _new_or_out(func, out, g, [("grad_output", g), ("mask", m)], grad_output)
    if g.size:
        fused_kernels().dropout_backward[_grid_1d(g.size)](
            _flat(g, "C"), _flat(m, "C"), np.dtype(g.dtype).type(scale), _flat(target, "C")
        )
    return result


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """1-D batch normalization on the GPU: ``(y, cache)`` as :func:`fastact.fused.batch_norm`
    (running statistics updated in place on the device)."""
    from fastact.fused import BatchNormCache, _batch_norm_scalars

    func = "batch_norm"
    x, like = _matrix(func, "x", x, 2), x
    n, f = x.shape
    momentum, eps = _batch_norm_scalars(func, n, training, momentum, eps)
    vectors = [
        _like(func, name, value, x, (f,))
        for name, value in (
            ("gamma", gamma),
            ("beta", beta),
            ("running_mean", running_mean),
            ("running_var", running_var),
        )
    ]
    dtype = np.dtype(x.dtype)
    y, y_result = _empty(like, tuple(x.shape), dtype)
    xhat, _ = _empty(like, tuple(x.shape), dtype)  # the cache holds numba views
    inv_std, _ = _empty(like, (f,), dtype)
    center = _scratch("center", (f,), dtype)
    g_, b_, mean_, var_ = vectors
    _batch_norm_into(
        x, g_, b_, mean_, var_, bool(training), momentum, eps, y, xhat, center, inv_std
    )
    gamma_copy, _ = _empty(like, (f,), dtype)
    gamma_copy.copy_to_device(vectors[0])
    return y_result, BatchNormCache(xhat, gamma_copy, inv_std, bool(training))


def _batch_norm_into(x, gamma, beta, running_mean, running_var, training, momentum, eps, y, xhat,
                     center, inv_std):  # fmt: skip
    """The launches of a batch-norm forward (no checks; y may be x): the column moments by row
    blocks (scratch arrays: :func:`_scratch`), their totals (mean, variance), then y."""
    k = fused_kernels()
    rows, cols = x.shape
    if not cols:
        return
    if training:
        blocks, threads = _grid_2d(rows, cols, _config.CUDA_BIAS_MIN_ROWS)
        partial_sum = _scratch("partial", (blocks[1] * threads[1], cols))
        partial_squares = _scratch("partial 2", (blocks[1] * threads[1], cols))
        k.batch_norm_moments[blocks, threads](x, partial_sum, partial_squares)
    else:  # unused with fixed statistics
        partial_sum = partial_squares = _scratch("partial", (1, cols))
    columns, (tx, ty) = _grid_columns(cols)  # fixed statistics: nothing to sum, one row
    k.batch_norm_stats[columns, (tx, ty if training else 1)](
        x, partial_sum, partial_squares, rows, running_mean, running_var, training, momentum,
        eps, center, inv_std,
    )  # fmt: skip
    if rows:
        k.batch_norm_apply[_grid_2d(rows, cols)](x, gamma, beta, center, inv_std, y, xhat)


def batch_norm_backward(grad_output, cache):
    """Backward of :func:`batch_norm` on the GPU: ``(dx, dgamma, dbeta)``."""
    from fastact.fused import BatchNormCache

    func = "batch_norm_backward"
    if not isinstance(cache, BatchNormCache):
        raise TypeError(f"fastact.{func}: cache must be the BatchNormCache batch_norm returned")
    if not is_device_array(cache.xhat):
        raise TypeError(
            f"fastact.{func}: cache is on the host (batch_norm ran there) and grad_output on "
            f"the GPU: pass grad_output as a NumPy array"
        )
    g = _like(func, "grad_output", grad_output, cache.xhat)
    dtype = np.dtype(g.dtype)
    results = [_empty(grad_output, shape, dtype) for shape in (g.shape, g.shape[1:], g.shape[1:])]
    _batch_norm_backward_into(g, cache, *(target for target, _ in results))
    return tuple(result for _, result in results)


def _batch_norm_backward_into(g, cache, dx, dgamma, dbeta):
    """The launches of a batch-norm backward (no checks): the row blocks' sums of g and
    g xhat, their totals and dx's coefficients per column (scratch arrays), then dx."""
    rows, cols = g.shape
    if not cols:
        return
    k = fused_kernels()
    dtype = np.dtype(g.dtype)
    coef = [_scratch(f"coefficient {i}", (cols,), dtype) for i in range(3)]
    blocks, threads = _grid_2d(rows, cols, _config.CUDA_BIAS_MIN_ROWS)
    partial_g = _scratch("partial", (blocks[1] * threads[1], cols))
    partial_gx = _scratch("partial 2", (blocks[1] * threads[1], cols))
    k.batch_norm_backward_partials[blocks, threads](g, cache.xhat, partial_g, partial_gx)
    k.batch_norm_backward_sums[_grid_columns(cols)](
        partial_g, partial_gx, rows, cache.gamma, cache.inv_std, cache.training, dgamma, dbeta,
        *coef,
    )  # fmt: skip
    if rows:
        k.batch_norm_backward_apply[_grid_2d(rows, cols)](g, cache.xhat, *coef, dx)


def _param_state(func, param, grad, *states):
    p = _device(func, "param", param)
    if p.size > 1 and not p.is_c_contiguous():
        raise ValueError(f"fastact.{func}: param must be a C-contiguous device array")
    arrays = [_like(func, "grad", grad, p, tuple(p.shape))]
    for name, value in states:
        if not is_device_array(value):
            raise ValueError(
                f"fastact.{func}: {name} must be a device array with param's shape "
                f"{tuple(p.shape)} and dtype {p.dtype} (start from zeros)"
            )
        arrays.append(_like(func, name, value, p, tuple(p.shape)))
    flat = [_flat(a, "C") for a in [p, *arrays]]
    _apart_on_device(func, list(zip(["param", "grad", *(n for n, _ in states)], flat)))
    return flat


def _apart_on_device(func, named):
    """As fastact.fused's check for host arrays: the updated arrays share no memory with each
    other or with grad, which may be param itself."""
    for i, (name_a, a) in enumerate(named):
        for name_b, b in named[i + 1 :]:
            kind = _overlap(a, b)
            if kind and not (kind == "same" and {name_a, name_b} == {"param", "grad"}):
                raise ValueError(
                    f"fastact.{func}: {name_a} and {name_b} share memory; each needs its own array"
                )


def _no_squares():
    """The optimizer kernels' (squares, slot) when no gradient norm is wanted (the MLP's
    DeviceOps asks for them): an empty float64 array, never touched, and slot -1."""
    from numba import cuda

    return cuda.device_array(0, np.float64), -1


def sgd_update(param, grad, velocity=None, *, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """One SGD step on a device ``param``, in place (as :func:`fastact.fused.sgd_update`)."""
    from fastact._api import check_param, param_in

    func = "sgd_update"
    lr = check_param(func, "lr", lr, "nonnegative")
    momentum = check_param(func, "momentum", momentum, "nonnegative")
    weight_decay = check_param(func, "weight_decay", weight_decay, "nonnegative")
    if nesterov and momentum == 0:
        raise ValueError(f"fastact.{func}: nesterov needs momentum > 0")
    states = [] if momentum == 0 and velocity is None else [("velocity", velocity)]
    arrays = _param_state(func, param, grad, *states)
    p, g = arrays[0], arrays[1]
    v = arrays[2] if states else p[:0]
    dt = np.dtype(p.dtype)
    lr, momentum, weight_decay = (
        param_in(func, name, value, "nonnegative", dt)
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay))
    )
    if p.size:
        fused_kernels().sgd[_grid_1d(p.size)](
            p, g, v, lr, momentum, weight_decay, bool(nesterov), *_no_squares()
        )


def adam_update(param, grad, m, v, step, *, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0):  # fmt: skip
    """One Adam step on a device ``param``, in place (as :func:`fastact.fused.adam_update`)."""
    from fastact.fused import _adam_scalars

    func = "adam_update"
    p, g, m_flat, v_flat = _param_state(func, param, grad, ("m", m), ("v", v))
    scalars = _adam_scalars(func, np.dtype(p.dtype), step, lr, beta1, beta2, eps, weight_decay)
    if p.size:
        fused_kernels().adam[_grid_1d(p.size)](p, g, m_flat, v_flat, *scalars, *_no_squares())


# --------------------------------------------------------------------------- prelu
def _prelu_args(func, x, weight):
    x = _device(func, "x", x)
    if x.size > 1 and not x.is_c_contiguous():
        raise ValueError(f"fastact.{func}: x must be a C-contiguous device array")
    channels = x.shape[1] if x.ndim >= 2 else 1
    w = _device(func, "weight", weight)
    if w.dtype != x.dtype:
        raise TypeError(
            f"fastact.{func}: weight is {w.dtype}, x is {x.dtype}: on the GPU they must match"
        )
    if w.ndim > 1 or w.size not in (1, channels):
        raise ValueError(
            f"fastact.{func}: weight must be a scalar or a 1-D array of length {channels} "
            f"(x.shape[1], the channel axis), got shape {tuple(w.shape)}"
        )
    w = w.reshape(w.size)
    slopes = w.copy_to_host()  # one per channel: a small copy, checked as on the CPU
    if not np.isfinite(slopes).all():
        raise ValueError(f"fastact.{func}: weight must be finite")
    if w.size != channels:  # one slope for every channel
        from numba import cuda

        w = cuda.to_device(np.full(channels, slopes[0], dtype=x.dtype))
    inner = int(np.prod(x.shape[2:])) if x.ndim >= 2 else max(x.size, 1)
    return x, w, channels, inner


def prelu(x, weight, out=None):
    """PReLU on the GPU (as :func:`fastact.prelu`)."""
    func = "prelu"
    like = x
    x, w, channels, inner = _prelu_args(func, x, weight)
    target, result = _new_or_out(func, out, x, [("x", x), ("weight", w)], like)
    if x.size:
        fused_kernels().prelu_forward[_grid_1d(x.size)](
            _flat(x, "C"), w, _flat(target, "C"), channels, inner
        )
    return result


def prelu_backward(grad_output, x, weight, out=None):
    """Backward of :func:`prelu` on the GPU: ``(grad_input, grad_weight)`` (grad_weight summed
    in float64, returned with weight's shape and dtype)."""
    func = "prelu_backward"
    like = grad_output
    x, w, channels, inner = _prelu_args(func, x, weight)
    g = _like(func, "grad_output", grad_output, x)
    target, result = _new_or_out(func, out, x, [("grad_output", g), ("x", x), ("weight", w)], like)
    grad_w = _zeros("prelu", channels)  # float64 sums, read back below
    if x.size:
        _prelu_backward_into(
            _flat(g, "C"), _flat(x, "C"), w, _flat(target, "C"), grad_w, channels, inner
        )
    weight_shape = tuple(weight.shape)
    total = grad_w.copy_to_host()
    if int(np.prod(weight_shape)) == 1:
        total = np.asarray(total.sum())
    with np.errstate(over="ignore"):  # float32 beyond its range: inf, as on the CPU
        total = total.astype(x.dtype)
    grad_weight, grad_weight_result = _empty(weight, weight_shape, x.dtype)
    grad_weight.copy_to_device(total.reshape(weight_shape))
    return result, grad_weight_result


def _prelu_backward_into(g, x, w, out, grad_w, channels, inner):
    """The launch (grad_w: zeroed float64, one per channel, accumulated into)."""
    per_channel = x.size // channels
    threads = _config.CUDA_BLOCK_SIZE
    parts = max(
        1, min(-(-per_channel // 16), _config.CUDA_MAX_BLOCKS * threads // max(channels, 1))
    )
    bx = min(-(-parts // threads), _config.CUDA_MAX_BLOCKS)
    by = min(channels, max(1, _config.CUDA_MAX_BLOCKS // bx))
    fused_kernels().prelu_backward[(bx, by), (threads, 1)](g, x, w, out, grad_w, channels, inner)
