"""128-bit loads and stores for the CUDA kernels: four consecutive elements in one instruction.

``load4(a, k)`` returns ``a[4k], a[4k+1], a[4k+2], a[4k+3]`` and ``store4(a, k, v0, v1, v2, v3)``
writes them, for a C-contiguous float32 or float64 device array whose data starts on a 16-byte
boundary (the caller checks: ``fastact.cuda._aligned``). ``k`` counts groups of four in the
array's flat (C-order) data, whatever its number of dimensions: group k of a (rows, cols)
matrix with cols % 4 == 0 is row ``4k // cols``, columns ``4k % cols`` to ``4k % cols + 3``.
On a GPU they compile to one ``ld.global.v4.f32`` / ``st.global.v4.f32`` (two ``.v2.f64`` for
float64): a warp moves 512 contiguous bytes per instruction, where numba's indexing emits one
32-bit load per element.
PyTorch's elementwise kernels load the same way.

Numba cannot express a vector load (LLVM's load-store vectorizer needs an alignment it cannot
prove), so these are intrinsics: an LLVM load of ``<4 x T>`` with ``align 16``. Under numba's
CUDA simulator they are plain Python, which also checks the alignment the GPU needs (a
misaligned vector access faults on a GPU).
"""

from __future__ import annotations

import numpy as np
from numba import config, cuda

from fastact._config import CUDA_DEVICE
from fastact._config import CUDA_VECTOR_BYTES as VECTOR_BYTES

if config.ENABLE_CUDASIM:  # type: ignore[attr-defined]

    def _flat(a, k):
        """The array's flat data (a view) after checking the alignment of group k."""
        data = np.asarray(getattr(a, "_ary", a))  # the simulator's in-kernel array wraps NumPy
        if not data.flags.c_contiguous:
            raise AssertionError("fastact: a 128-bit access needs a C-contiguous array")
        start = data.ctypes.data + 4 * int(k) * data.itemsize
        if start % VECTOR_BYTES:
            raise AssertionError(f"fastact: a 128-bit access at {start:#x} is not 16-byte aligned")
        return data.reshape(-1)

    @cuda.jit(**CUDA_DEVICE)
    def load4(a, k):
        """a[4k], a[4k+1], a[4k+2], a[4k+3] (the simulator's twin: checks the alignment)."""
        flat = _flat(a, k)
        i = 4 * int(k)
        return flat[i], flat[i + 1], flat[i + 2], flat[i + 3]

    @cuda.jit(**CUDA_DEVICE)
    def store4(a, k, v0, v1, v2, v3):
        """a[4k:4k+4] = v0, v1, v2, v3 (the simulator's twin: checks the alignment)."""
        flat = _flat(a, k)
        i = 4 * int(k)
        flat[i] = v0
        flat[i + 1] = v1
        flat[i + 2] = v2
        flat[i + 3] = v3

else:
    from llvmlite import ir
    from numba import types
    from numba.cuda.core.errors import NumbaTypeError
    from numba.cuda.extending import intrinsic

    def _vector_pointer(context, builder, array_type, array, k, k_type):
        """A pointer to flat element 4k of ``array`` as a <4 x T> pointer."""
        data = context.make_array(array_type)(context, builder, value=array).data
        first = builder.mul(
            context.cast(builder, k, k_type, types.uint64), ir.Constant(ir.IntType(64), 4)
        )
        element = context.get_value_type(array_type.dtype)
        return builder.bitcast(builder.gep(data, [first]), ir.VectorType(element, 4).as_pointer())

    def _check_types(func, array, k):
        if not (
            isinstance(array, types.Array)
            and array.layout == "C"
            and array.dtype in (types.float32, types.float64)
        ):
            raise NumbaTypeError(f"{func} needs a C-contiguous float32/float64 array, got {array}")
        if not isinstance(k, types.Integer):
            raise NumbaTypeError(f"{func} needs an integer group index, got {k}")

    @intrinsic
    def load4(typingctx, a, k):
        """a[4k], a[4k+1], a[4k+2], a[4k+3] in one 128-bit load (a's data 16-byte aligned)."""
        _check_types("load4", a, k)
        sig = types.UniTuple(a.dtype, 4)(a, k)

        def codegen(context, builder, sig, args):
            pointer = _vector_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            vector = builder.load(pointer, align=VECTOR_BYTES)
            values = [
                builder.extract_element(vector, ir.Constant(ir.IntType(32), j)) for j in range(4)
            ]
            return context.make_tuple(builder, sig.return_type, values)

        return sig, codegen

    @intrinsic
    def store4(typingctx, a, k, v0, v1, v2, v3):
        """a[4k:4k+4] = v0, v1, v2, v3 in one 128-bit store (a's data 16-byte aligned)."""
        _check_types("store4", a, k)
        sig = types.void(a, k, v0, v1, v2, v3)

        def codegen(context, builder, sig, args):
            array_type = sig.args[0]
            element = context.get_value_type(array_type.dtype)
            vector = ir.Constant(ir.VectorType(element, 4), ir.Undefined)
            for j in range(4):
                value = context.cast(builder, args[2 + j], sig.args[2 + j], array_type.dtype)
                vector = builder.insert_element(vector, value, ir.Constant(ir.IntType(32), j))
            pointer = _vector_pointer(context, builder, array_type, args[0], args[1], sig.args[1])
            builder.store(vector, pointer, align=VECTOR_BYTES)

        return sig, codegen
