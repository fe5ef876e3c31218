"""Argument checking, dtype rules, ``out=``, and dispatch to the compiled kernels.

NumPy's conventions, as a ufunc would apply them:

* float32 and float64 keep their dtype; float16 is computed in float32 and returned as
  float16; integers and booleans are computed in float64. Mixed inputs of a backward follow
  ``np.result_type``. Complex, object, string and longdouble inputs raise TypeError.
* Any shape, 0-d (returns a NumPy scalar without ``out``), empty, Python scalars and lists,
  non-contiguous views. Contiguous arrays run through the fast 1-D kernels (serial below
  ``PARALLEL_THRESHOLD`` elements, multi-threaded above); any other layout through the same
  serial kernel, chunk by chunk along ``np.nditer``.
* Backward arguments broadcast against each other with NumPy's rules.
* ``out`` must be an ndarray of exactly the result's shape and dtype (ValueError/TypeError
  naming ``out`` otherwise); with ``out`` nothing is allocated except for float16 results or
  when ``out`` partially overlaps an input (then the result goes through a temporary, as
  NumPy ufuncs do). ``out`` may be an input itself (in place).
* Inputs are never modified, unless they are also ``out``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from fastact._config import PARALLEL_THRESHOLD

# bound once: one global lookup on the fastest path instead of a global and an attribute
_empty = np.empty
_ndarray = np.ndarray

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


# --------------------------------------------------------------------------- argument checks
def as_array(func: str, name: str, value) -> np.ndarray:
    """``value`` as an ndarray of a supported dtype, or a TypeError that says what to pass."""
    if type(value) is np.ndarray:
        array = value
    else:
        if on_device(value):
            raise TypeError(
                f"fastact.{func}: {name} is a CUDA device array and the other arrays are "
                "on the host: pass all of them on the GPU, or copy it to the host first "
                "(.copy_to_host(), cupy.asnumpy, .cpu().numpy())"
            )
        if isinstance(value, np.ma.MaskedArray):  # its mask would be dropped silently
            raise TypeError(
                f"fastact.{func}: {name} is a masked array; fastact computes on every "
                f"element: pass {name}.filled(fill_value) or {name}.data"
            )
        try:
            array = np.asarray(value)
        except MemoryError:
            raise
        except Exception as exc:  # e.g. torch: a tensor that requires grad (RuntimeError)
            raise TypeError(
                f"fastact.{func}: {name} must be array-like with a real numeric dtype, "
                f"got {type(value).__name__} ({exc})"
            ) from None
    kind = array.dtype.kind
    if (kind == "f" and array.dtype.itemsize <= 8) or kind in "iub":
        return array
    what = "float128/longdouble" if kind == "f" else str(array.dtype)
    raise TypeError(
        f"fastact.{func}: {name} must have a real floating-point, integer or boolean "
        f"dtype (float16/32/64, int, bool), got {what}; convert it with "
        f".astype(np.float32) or .real first"
    )


def on_device(value) -> bool:
    """True for CUDA device arrays (see fastact.cuda.is_device_array; no CUDA import here)."""
    try:
        return hasattr(value, "__cuda_array_interface__") or bool(
            getattr(type(value), "__cuda_ndarray__", False)
        )
    except RuntimeError:  # a CUDA tensor that cannot export it (requires grad): the device
        return True  # code says why, as a TypeError


def result_dtypes(*dtypes: np.dtype) -> tuple[np.dtype, np.dtype]:
    """(dtype the kernel computes in, dtype returned) for the given input dtypes."""
    result = np.result_type(*dtypes)
    if result.kind != "f":
        return _F64, _F64
    if result.itemsize < 4:
        return _F32, result
    return result, result


def check_param(func: str, name: str, value, rule: str) -> float:
    """A numeric parameter as a float, or a clear error (see ``activations.Param.rule``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"fastact.{func}: {name} must be a real number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float64
        raise ValueError(f"fastact.{func}: {name} must be finite, got {value!r}") from None
    if math.isnan(v) or (rule != "any" and math.isinf(v)):
        raise ValueError(f"fastact.{func}: {name} must be finite, got {value!r}")
    if rule == "positive" and not v > 0:
        raise ValueError(f"fastact.{func}: {name} must be > 0, got {value!r}")
    if rule == "nonnegative" and not v >= 0:
        raise ValueError(f"fastact.{func}: {name} must be >= 0, got {value!r}")
    return v


def param_in(func: str, name: str, value: float, rule: str, dtype) -> np.floating:
    """A parameter that passed ``check_param``, rounded to the dtype the kernel computes in,
    where its rule must still hold: a finite float64 value can overflow float32 and a positive
    one can round to 0 (inf is fine where the rule is "any": a clamp at inf)."""
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        v = dtype.type(value)
    if rule != "any" and not np.isfinite(v):
        raise ValueError(
            f"fastact.{func}: {name} = {value!r} overflows {dtype.name} (the dtype of the "
            f"computation): |{name}| must be at most {float(np.finfo(dtype).max):.6g}"
        )
    if rule == "positive" and not v > 0:
        raise ValueError(
            f"fastact.{func}: {name} = {value!r} rounds to 0 in {dtype.name} (the dtype of "
            f"the computation); it must be > 0 there"
        )
    return v


def typed_params(func: str, spec, a: float, b: float, dtype) -> tuple:
    """An activation's checked parameters (a, b) in ``dtype``, each checked again by
    ``param_in`` (unused slots: 0)."""
    values = (a, b)
    typed = [param_in(func, p.name, v, p.rule, dtype) for p, v in zip(spec.params, values)]
    typed += [np.dtype(dtype).type(0)] * (2 - len(typed))
    return typed[0], typed[1]


def check_out(func: str, out, shape: tuple, dtype: np.dtype) -> None:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"fastact.{func}: out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(
            f"fastact.{func}: out has dtype {out.dtype}, the result has dtype {dtype}; "
            f"pass out with dtype {dtype}"
        )
    if out.shape != shape:
        raise ValueError(f"fastact.{func}: out has shape {out.shape}, the result has shape {shape}")
    if not out.flags.writeable:
        raise ValueError(f"fastact.{func}: out is read-only")


def pick(func: str, arg: str, value, variants: dict):
    """The variant that a string argument (e.g. gelu's ``approximate``) selects."""
    try:
        return variants[value]
    except (KeyError, TypeError):
        options = " or ".join(repr(k) for k in variants)
        raise ValueError(f"fastact.{func}: {arg} must be {options}, got {value!r}") from None


# --------------------------------------------------------------------------- running kernels
def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
        and a.shape == b.shape
    )


def _overlaps(out: np.ndarray, *inputs: np.ndarray) -> bool:
    """True when ``out`` shares memory with an input without being exactly that input."""
    return any(np.may_share_memory(out, a) and not _same_view(out, a) for a in inputs)


def _flat(a: np.ndarray, order: Literal["C", "F"]) -> np.ndarray:
    return a if a.ndim == 1 else a.reshape(-1, order=order)


def _common_order(*arrays: np.ndarray) -> Literal["C", "F"] | None:
    """'C' or 'F' when all arrays are contiguous in that order, else None."""
    if all(a.flags.c_contiguous for a in arrays):
        return "C"
    if all(a.flags.f_contiguous for a in arrays):
        return "F"
    return None


def run(serial, parallel, arrays: tuple, out: np.ndarray, params: tuple) -> None:
    """Apply a kernel ``kernel(*arrays, out, a, b)`` elementwise; arrays have out's shape
    (or broadcast to it)."""
    order = _common_order(out, *arrays) if all(a.shape == out.shape for a in arrays) else None
    if order is not None:
        kernel = parallel if out.size >= PARALLEL_THRESHOLD else serial
        kernel(*(_flat(a, order) for a in arrays), _flat(out, order), *params)
        return
    op_flags: list[list[Literal["readonly", "writeonly"]]] = [["readonly"]] * len(arrays)
    it = np.nditer(
        arrays + (out,),
        flags=["external_loop", "zerosize_ok"],
        op_flags=op_flags + [["writeonly"]],
        order="K",
    )
    with it:
        for chunks in it:
            serial(*chunks, *params)


def public_name(spec) -> str:
    """The public function that reaches an activation (a variant: the function with the choice)."""
    if spec.public:
        return spec.name
    from fastact.activations import ACTIVATIONS

    return next(
        a.name for a in ACTIVATIONS.values() if a.choice and spec.name in a.choice[1].values()
    )


# --------------------------------------------------------------------------- Dask / xarray
#: Ops by name, so that work sent to Dask workers names its op instead of pickling it.
OPS: dict = {}


def _container(x) -> str:
    """'dask' or 'xarray' for those array types (checked without importing them), else ''."""
    module = type(x).__module__
    if module.startswith("dask.array") and hasattr(x, "map_blocks"):
        return "dask"
    if module.startswith("xarray.") and hasattr(x, "variable") and hasattr(x, "copy"):
        return "xarray"
    return ""


def _forward_block(name, block, a, b):
    return OPS[name].forward(block, None, a, b)


def _backward_block(name, g, v, a, b):
    return OPS[name].backward(g, v, None, a, b)


def _lazy_forward(op, kind, x, out, a, b):
    """Dask: chunk by chunk, lazily (a Dask array back). xarray: same object type with its
    coordinates and attributes (lazy too when it holds a Dask array)."""
    func = op.public_name
    if out is not None:
        raise TypeError(f"fastact.{func}: out= is not supported for {kind} arrays")
    if kind == "xarray":
        return x.copy(data=op.forward(x.data, None, a, b))
    import functools

    compute, result = result_dtypes(as_array(func, "x", np.empty(0, x.dtype)).dtype)
    op._params(func, (a, b), compute)  # validate now (in the workers' dtype), not in them
    return x.map_blocks(functools.partial(_forward_block, op.name, a=a, b=b), dtype=result)


def _lazy_backward(op, g, v, out, a, b):
    import functools

    from dask.array.core import elemwise

    func = f"{op.public_name}_backward"
    if out is not None:
        raise TypeError(f"fastact.{func}: out= is not supported for Dask arrays")
    # the side that is not a Dask array: a Python scalar passes as it is (each chunk then
    # takes the array's dtype, as eagerly), anything else becomes an array here; every
    # dtype checked as the eager path would
    given = (g, v)
    g, v = (
        value
        if _container(value) == "dask" or type(value) in (int, float)
        else as_array(func, name, value)
        for name, value in (("grad_output", g), (op.vname, v))
    )
    dtypes = tuple(  # a Dask array's dtype from its metadata: nothing is computed
        as_array(func, name, np.empty(0, np.result_type(value))).dtype
        for name, value in (("grad_output", g.dtype if hasattr(g, "dtype") else g),
                            (op.vname, v.dtype if hasattr(v, "dtype") else v))
    )  # fmt: skip
    compute, result = result_dtypes(*_strong_dtypes(given, dtypes))
    op._params(func, (a, b), compute)  # validate now (in the workers' dtype), not in them
    return elemwise(functools.partial(_backward_block, op.name, a=a, b=b), g, v, dtype=result)


class Op:
    """An activation's public entry points: argument handling around its generated kernels."""

    def __init__(self, spec, kernels_module):
        OPS[spec.name] = self
        self.spec = spec
        self.name = spec.name
        self.public_name = public_name(spec)
        k = kernels_module
        self.forward_kernels = (
            getattr(k, f"{spec.name}_forward_serial"),
            getattr(k, f"{spec.name}_forward_parallel"),
        )
        self.backward_kernels = (
            getattr(k, f"{spec.name}_backward_serial"),
            getattr(k, f"{spec.name}_backward_parallel"),
        )
        self.vname = "output" if spec.grad_from == "output" else "x"
        self._default_params = tuple(p.default for p in spec.params) + (0.0,) * (
            2 - len(spec.params)
        )
        # the defaults already typed per dtype: no scalar conversion on the hot path
        self._typed_defaults = {
            dt: (dt.type(self._default_params[0]), dt.type(self._default_params[1]))
            for dt in (_F32, _F64)
        }
        # the serial kernels' compiled entry points, forward and backward: per dtype,
        # (entry point, typed default a, typed default b), once compiled; the fastest path's
        # one lookup per call
        self._ready: tuple[dict, dict] = ({}, {})
        # an op without parameters ignores a and b: the fastest path need not check them
        self._paramless = not spec.params

    def _entry(self, which: int, kernel, args: tuple):
        """The compiled entry point of a serial kernel for these argument types (aligned,
        writeable C-contiguous arrays of one float dtype, scalars of that dtype), cached per
        dtype: calling it skips the dispatcher's type matching (~0.2 us of a ~1.5 us call).
        Compiled (or loaded from the disk cache) through ``kernel.compile``, never run here:
        the caller runs it once (running it here too would apply an in-place op twice). If
        numba's internals differ, the dispatcher itself is used."""
        # read-only inputs type differently in numba: only cache the writeable-array version
        if not all(a.flags.writeable for a in args if isinstance(a, np.ndarray)):
            return kernel
        from numba import typeof

        try:
            sig = tuple(typeof(a) for a in args)
            kernel.compile(sig)
            entry = kernel.overloads[sig].entry_point
        except Exception:  # numba internals moved: the dispatcher still works
            return kernel
        dtype = args[0].dtype
        self._ready[which][dtype] = (entry, *self._typed_defaults[dtype])
        return entry

    def _are_defaults(self, a, b) -> bool:
        """Whether a and b are the op's default parameters, as Python floats."""
        return (
            type(a) is float
            and type(b) is float
            and a == self._default_params[0]
            and b == self._default_params[1]
        )

    def _params(self, func: str, values: tuple, dtype: np.dtype) -> tuple:
        if self._are_defaults(*values):
            return self._typed_defaults[dtype]
        checked = [check_param(func, p.name, v, p.rule) for p, v in zip(self.spec.params, values)]
        values = tuple(checked) + values[len(checked) :]
        problem = self.spec.validate(*values) if self.spec.validate else ""
        if problem:
            raise ValueError(f"fastact.{func}: {problem}")
        return typed_params(func, self.spec, values[0], values[1], dtype)

    def forward(self, x, out, a, b):
        # fastest path (small arrays, where the call's overhead is the cost): a new result,
        # the default parameters, an aligned C-contiguous float32/float64 array of fewer than
        # PARALLEL_THRESHOLD elements, the serial kernel's entry point already compiled
        # (flags.carray: aligned, writeable, C-contiguous; every test costs ~30-70 ns of a
        # ~1.5 us call, so there are as few as possible)
        if out is None and type(x) is _ndarray:
            ready = self._ready[0].get(x.dtype)
            if (
                ready is not None
                and x.size < PARALLEL_THRESHOLD
                and x.flags.carray
                and (self._paramless or self._are_defaults(a, b))
            ):
                res = _empty(x.shape, x.dtype)
                if x.ndim == 1:
                    ready[0](x, res, ready[1], ready[2])
                    return res
                ready[0](x.reshape(-1), res.reshape(-1), ready[1], ready[2])
                return res if res.ndim else res[()]
        func = self.public_name
        # hot path: an aligned C-contiguous float32/float64 array; out absent, or of its kind
        if type(x) is np.ndarray:
            typed = self._typed_defaults.get(x.dtype)
            flags = x.flags
            if typed is not None and flags.c_contiguous and flags.aligned:
                res = (
                    np.empty(x.shape, x.dtype)
                    if out is None
                    else _hot_out(out, x.shape, x.dtype, (x,))
                )
                if res is not None:
                    if not self._are_defaults(a, b):
                        typed = self._params(func, (a, b), x.dtype)
                    xf = x if x.ndim == 1 else x.reshape(-1)
                    rf = res if res.ndim == 1 else res.reshape(-1)
                    if x.size >= PARALLEL_THRESHOLD:
                        self.forward_kernels[1](xf, rf, *typed)
                    else:
                        ready = self._ready[0].get(x.dtype)
                        if ready is None:
                            entry = self._entry(0, self.forward_kernels[0], (xf, rf) + typed)
                        else:
                            entry = ready[0]
                        entry(xf, rf, typed[0], typed[1])
                    return res if (out is not None or res.ndim) else res[()]
        if on_device(x):
            from fastact import cuda

            return cuda.forward(self, x, out, a, b)
        kind = _container(x)
        if kind:
            return _lazy_forward(self, kind, x, out, a, b)
        x = as_array(func, "x", x)
        compute, result = result_dtypes(x.dtype)
        params = self._params(func, (a, b), compute)
        return _apply(func, self.forward_kernels, (x,), x.shape, compute, result, out, params)

    def backward(self, grad_output, v, out, a, b):
        # fastest path: as forward's, for two same-shape arrays of one dtype
        g = grad_output
        if out is None and type(g) is _ndarray and type(v) is _ndarray:
            ready = self._ready[1].get(g.dtype)
            if (
                ready is not None
                and g.size < PARALLEL_THRESHOLD
                and v.dtype == g.dtype
                and g.shape == v.shape
                and g.flags.carray
                and v.flags.carray
                and (self._paramless or self._are_defaults(a, b))
            ):
                res = _empty(g.shape, g.dtype)
                if g.ndim == 1:
                    ready[0](g, v, res, ready[1], ready[2])
                    return res
                ready[0](g.reshape(-1), v.reshape(-1), res.reshape(-1), ready[1], ready[2])
                return res if res.ndim else res[()]
        func = f"{self.public_name}_backward"
        if on_device(grad_output) or on_device(v):
            from fastact import cuda

            return cuda.backward(self, grad_output, v, out, a, b)
        # hot path: same-shape aligned C-contiguous arrays of one float dtype
        g = grad_output
        if type(g) is np.ndarray and type(v) is np.ndarray and g.dtype == v.dtype:
            typed = self._typed_defaults.get(g.dtype)
            gflags, vflags = g.flags, v.flags
            if (
                typed is not None
                and g.shape == v.shape
                and gflags.c_contiguous
                and vflags.c_contiguous
                and gflags.aligned
                and vflags.aligned
            ):
                res = (
                    np.empty(g.shape, g.dtype)
                    if out is None
                    else _hot_out(out, g.shape, g.dtype, (g, v))
                )
                if res is not None:
                    if not self._are_defaults(a, b):
                        typed = self._params(func, (a, b), g.dtype)
                    gf = g if g.ndim == 1 else g.reshape(-1)
                    vf = v if v.ndim == 1 else v.reshape(-1)
                    rf = res if res.ndim == 1 else res.reshape(-1)
                    if g.size >= PARALLEL_THRESHOLD:
                        self.backward_kernels[1](gf, vf, rf, *typed)
                    else:
                        ready = self._ready[1].get(g.dtype)
                        if ready is None:
                            entry = self._entry(1, self.backward_kernels[0], (gf, vf, rf) + typed)
                        else:
                            entry = ready[0]
                        entry(gf, vf, rf, typed[0], typed[1])
                    return res if (out is not None or res.ndim) else res[()]
        kinds = {_container(grad_output), _container(v)}
        if "xarray" in kinds:
            raise TypeError(f"fastact.{func}: pass xarray's .data (NumPy or Dask arrays)")
        if "dask" in kinds:
            return _lazy_backward(self, grad_output, v, out, a, b)
        given = (grad_output, v)
        g = as_array(func, "grad_output", grad_output)
        v = as_array(func, self.vname, v)
        try:
            shape = np.broadcast_shapes(g.shape, v.shape)
        except ValueError:
            raise ValueError(
                f"fastact.{func}: grad_output with shape {g.shape} and {self.vname} "
                f"with shape {v.shape} do not broadcast together"
            ) from None
        compute, result = result_dtypes(*_strong_dtypes(given, (g.dtype, v.dtype)))
        params = self._params(func, (a, b), compute)
        return _apply(func, self.backward_kernels, (g, v), shape, compute, result, out, params)


def _strong_dtypes(given: tuple, dtypes: tuple) -> list:
    """Of the ``dtypes`` of the arguments ``given``, those that decide the result's dtype: a
    Python int or float next to an array takes the array's dtype (NumPy 2's rule for Python
    scalars, NEP 50) when it fits in it (one that would overflow counts as float64: no
    overflow warning, no inf); all of them when every argument is a Python scalar."""
    strong = [dt for v, dt in zip(given, dtypes) if type(v) not in (int, float)]
    if not strong or len(strong) == len(dtypes):
        return list(dtypes)
    result = result_dtypes(*strong)[1]  # float16 arrays: the scalar must fit float16
    with np.errstate(over="ignore"):
        fits = all(
            not math.isfinite(v) or math.isfinite(result.type(v))
            for v in given
            if type(v) in (int, float)
        )
    return strong if fits else list(dtypes)


def _apart(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the two arrays cannot share memory: two distinct arrays that own their
    buffers never do (a quick answer); views are checked by np.may_share_memory."""
    return (a.flags.owndata and b.flags.owndata) or not np.may_share_memory(a, b)


def _hot_out(out, shape, dtype, inputs):
    """The array a hot-path kernel writes: a new one, or ``out`` when it is a C-contiguous
    ndarray of the right shape and dtype that is an input or overlaps none; else None (the
    general path then checks ``out`` and reports what is wrong)."""
    if out is None:
        return np.empty(shape, dtype)
    if (
        type(out) is np.ndarray
        and out.shape == shape
        and out.dtype == dtype
        and out.flags.c_contiguous
        and out.flags.writeable
        and all(out is a or _apart(out, a) for a in inputs)
    ):
        return out
    return None


def _apply(func, kernels: tuple[Any, Any], inputs, shape, compute, result, out, params):
    """Cast inputs to the compute dtype, choose where the result goes, run, return."""
    inputs = tuple(a if a.dtype == compute else a.astype(compute) for a in inputs)
    if out is not None:
        check_out(func, out, shape, result)
    target = out
    if out is None or result != compute or _overlaps(out, *inputs):
        order: Literal["C", "F"] = (
            "F" if inputs[0].flags.f_contiguous and not inputs[0].flags.c_contiguous else "C"
        )
        target = np.empty(shape, compute, order=order)
    run(*kernels, inputs, target, params)
    return finish(out, target, result)


def contiguous_target(func, out, shape, compute, result, *inputs):
    """Where a kernel that needs C-contiguous arrays writes: ``out`` itself when it is one of
    the compute dtype and overlaps no input (exactly an input is fine), else a new array;
    ``out`` is checked first (shape and result dtype)."""
    if out is None:
        return np.empty(shape, compute)
    check_out(func, out, shape, result)
    if out.dtype == compute and out.flags.c_contiguous and not _overlaps(out, *inputs):
        return out
    return np.empty(shape, compute)


def finish(out, target: np.ndarray, result: np.dtype):
    """What a function returns: ``out`` (filled from ``target`` if it went through a
    temporary), else ``target`` in the result dtype, a NumPy scalar when 0-d."""
    if out is not None:
        if target is not out:
            with np.errstate(over="ignore"):  # float16: beyond its range is inf, no warning
                np.copyto(out, target, casting="unsafe")
        return out
    if target.dtype != result:
        with np.errstate(over="ignore"):
            target = target.astype(result)
    return target if target.ndim else target[()]
