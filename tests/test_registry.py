"""Every activation has every generated piece; generated files are current; jit flags live in _config."""

from __future__ import annotations

import inspect
import os
import re

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
