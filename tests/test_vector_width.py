"""fastact._math.wide_vectors: every CPU loop kernel asks LLVM for 512-bit vectors.

The attribute changes only the vector width LLVM aims for, never the results (checked in
tools/performance_report.py's run, bit for bit, and here on one kernel); on a CPU with AVX-512
the loop then uses zmm registers.
"""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest
from numba import njit

from fastact import _config, _kernels, _prelu, fused, mlp
from fastact import activations as act
from fastact._math import wide_vectors

OPTIONS = dict(_config.SERIAL, cache=False)  # inspect_asm needs code compiled in this process


@njit(**OPTIONS)
def _wide_sigmoid(x, out):
    wide_vectors()
    zero = x[0] * 0
    for i in range(x.size):
        out[i] = act.sigmoid(x[i], zero, zero)


@njit(**OPTIONS)
def _narrow_sigmoid(x, out):
    zero = x[0] * 0
    for i in range(x.size):
        out[i] = act.sigmoid(x[i], zero, zero)


def _host_has_avx512():
    try:
        with open("/proc/cpuinfo") as fh:
            return "avx512f" in fh.read()
    except OSError:
        return False


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_results_as_the_default_width(dtype):
    x = (np.random.default_rng(0).standard_normal(5003) * 30).astype(dtype)
    wide, narrow = np.empty_like(x), np.empty_like(x)
    _wide_sigmoid(x, wide)
    _narrow_sigmoid(x, narrow)
    np.testing.assert_array_equal(wide, narrow)


def test_the_attribute_reaches_llvm():
    x = np.ones(64, np.float32)
    _wide_sigmoid(x, np.empty_like(x))
    sig = _wide_sigmoid.signatures[0]
    assert '"prefer-vector-width"="512"' in _wide_sigmoid.inspect_llvm(sig)
    if _host_has_avx512():
        assert "zmm" in _wide_sigmoid.inspect_asm(sig)


def _loop_kernels(module):
    """(name, source) of the module's jitted functions that contain a for loop, except the
    scalar helpers (inlined into the kernels that call them)."""
    for name, obj in vars(module).items():
        py = getattr(obj, "py_func", None)
        if py is None or py.__module__ != module.__name__:
            continue
        if obj.targetoptions.get("inline") == "always":
            continue
        tree = ast.parse(inspect.getsource(py).lstrip())
        if any(isinstance(node, ast.For) for node in ast.walk(tree)):
            yield name, tree


@pytest.mark.parametrize("module", [_kernels, fused, _prelu, mlp], ids=lambda m: m.__name__)
def test_every_loop_kernel_asks_for_wide_vectors(module):
    """Serial kernels call wide_vectors() in their body, parallel ones in their prange loop
    (numba compiles a prange body as a function of its own)."""
    missing = []
    for name, tree in _loop_kernels(module):
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "wide_vectors"
        ]
        pranges = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.For)
            and isinstance(node.iter, ast.Call)
            and getattr(node.iter.func, "id", None) == "prange"
        ]
        in_prange = all(
            any(isinstance(stmt, ast.Expr) and stmt.value in calls for stmt in loop.body)
            for loop in pranges
        )
        if not calls or not in_prange:
            missing.append(name)
    assert not missing, f"{module.__name__}: loop kernels without wide_vectors(): {missing}"
