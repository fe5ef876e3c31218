"""Every activation has every generated piece; generated files are current; jit flags live in _config."""

from __future__ import annotations

import inspect
import os
import re

import numpy as np
import pytest

import fastact as fa
from fastact import _codegen, _kernels, reference
from fastact.activations import ACTIVATIONS

PACKAGE = os.path.dirname(fa.__file__)


def test_generated_files_are_current():
    assert _codegen.stale_files() == [], "run: python -m fastact._codegen"


def test_every_activation_has_every_piece():
    for name, spec in ACTIVATIONS.items():
        for kind in ("forward_serial", "forward_parallel", "backward_serial", "backward_parallel"):
            assert hasattr(_kernels, f"{name}_{kind}"), (name, kind)
        assert spec.grad_from in ("x", "output")
        public = (
            name
            if spec.public
            else next(
                a.name for a in ACTIVATIONS.values() if a.choice and name in a.choice[1].values()
            )
        )
        for module in (fa, reference):
            assert callable(getattr(module, public)) and callable(
                getattr(module, f"{public}_backward")
            )
        assert public in fa.__all__ and f"{public}_backward" in fa.__all__


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", [n for n, s in ACTIVATIONS.items() if s.mask_from_output])
def test_mask_from_output_activations_get_the_same_gradient_from_the_output(name, dtype):
    """The claim behind ``mask_from_output`` (the fused epilogue saves only the output): the
    x-based gradient is the same when given forward(x) instead of x, at the kinks, the
    special values, across the range, and for several parameter values."""
    spec = ACTIVATIONS[name]
    assert spec.grad_from == "x" and spec.fused_saves_output
    rng = np.random.default_rng(3)
    kinks = [0.0, -0.0, 6.0, -1.0, 1.0, -2.0, 2.0, 0.5]
    x = np.concatenate(
        [
            reference.special_values(dtype),
            np.array(kinks, dtype),
            np.nextafter(np.array(kinks, dtype), dtype(np.inf)),
            np.nextafter(np.array(kinks, dtype), dtype(-np.inf)),
            (rng.standard_normal(2000) * 4).astype(dtype),
        ]
    )
    g = rng.standard_normal(x.size).astype(dtype)
    param_sets = [{}]
    if name == "hard_tanh":
        param_sets += [dict(min_val=-2.0, max_val=0.5), dict(min_val=0.5, max_val=0.5)]
    for params in param_sets:
        y = getattr(fa, name)(x, **params)
        from_x = getattr(fa, f"{name}_backward")(g, x, **params)
        from_y = getattr(fa, f"{name}_backward")(g, y, **params)
        np.testing.assert_array_equal(from_y, from_x)


def test_public_signatures_follow_torch_names():
    assert list(inspect.signature(fa.leaky_relu).parameters) == ["x", "negative_slope", "out"]
    assert list(inspect.signature(fa.softplus_backward).parameters) == [
        "grad_output",
        "x",
        "beta",
        "threshold",
        "out",
    ]
    assert list(inspect.signature(fa.sigmoid_backward).parameters) == [
        "grad_output",
        "output",
        "out",
    ]
    assert inspect.signature(fa.gelu).parameters["approximate"].default == "none"
    assert fa.sigmoid.__doc__.splitlines()[2].strip().startswith("``1 / (1 + exp(-x))``")


def test_jit_flags_only_in_config():
    """Kernels take their options from fastact._config, never spell them out."""
    flag = re.compile(
        r"(fastmath\s*=|error_model\s*=|parallel\s*=\s*True|cache\s*=\s*True|@(njit|jit|vectorize)\(|cuda\.jit\()"
    )
    for name in os.listdir(PACKAGE):
        if name.endswith(".py") and name != "_config.py":
            with open(os.path.join(PACKAGE, name), encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if flag.search(line) and "**" not in line:
                        raise AssertionError(
                            f"{name}:{lineno}: jit option outside _config: {line.strip()}"
                        )


def test_no_forbidden_fastmath_flags():
    from fastact import _config

    assert not {"nnan", "ninf", "reassoc", "fast"} & set(_config.FASTMATH)
    assert _config.ERROR_MODEL == "numpy"
