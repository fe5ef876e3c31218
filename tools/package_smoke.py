"""Smoke test of an installed fastact (run by tools/check_package.py in a clean venv).

Run with the venv's interpreter from outside the repository. Checks that ``fastact`` is the
installed copy (not the source tree) with the metadata's version, that a few kernels agree
with NumPy formulas in float32 and float64 (one multi-threaded), that a fused op and the
``fastact`` command (``info``, ``--help``) work, and reports whether the kernel disk cache is
on. ``--expect-cache on|off`` fails when the cache state differs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
from importlib import metadata

import numpy as np


def check_kernels(fa) -> None:
    rng = np.random.default_rng(0)
    for dtype, rtol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        x = (rng.standard_normal(2000) * 5).astype(dtype)
        x[:3] = [-1000.0, 0.0, 1000.0]  # saturation: no overflow warning, exact limits
        e = np.exp(-np.abs(x.astype(np.float64)))  # sigmoid, stable: exp never overflows
        s = np.where(x >= 0, 1, e) / (1 + e)
        y = fa.sigmoid(x).astype(np.float64)
        checks = {
            "sigmoid": (fa.sigmoid(x), s),
            "relu": (fa.relu(x), np.maximum(x, 0)),
            "silu": (fa.silu(x), x * s),
            "leaky_relu_backward": (
                fa.leaky_relu_backward(np.ones_like(x), x, negative_slope=0.1),
                np.where(x > 0, 1.0, 0.1),
            ),
            "sigmoid_backward": (
                fa.sigmoid_backward(np.ones_like(x), y.astype(dtype)),
                y * (1 - y),
            ),
        }
        for name, (got, want) in checks.items():
            assert got.dtype == dtype, (name, got.dtype, dtype)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-30, err_msg=name)
        out = np.empty_like(x)
        assert fa.sigmoid(x, out=out) is out
    big = rng.standard_normal(1 << 16).astype(np.float32)  # a multi-threaded kernel
    np.testing.assert_allclose(fa.gelu(big, approximate="tanh"), _gelu_tanh(big), rtol=1e-4)
    from fastact import fused

    x = rng.standard_normal((64, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    y, _ = fused.bias_act(x, b, "relu")
    np.testing.assert_allclose(y, np.maximum(x + b, 0), rtol=1e-6)


def _gelu_tanh(x):
    x = x.astype(np.float64)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def check_cli(expect_cache: str | None) -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "fastact")  # the entry-point script
    info = subprocess.run([exe, "info"], capture_output=True, text=True, check=False)
    assert info.returncode == 0 and not info.stderr, (info.returncode, info.stderr)
    import fastact

    assert f"fastact      {fastact.__version__}" in info.stdout, info.stdout
    if expect_cache is not None:
        assert f"cache        {expect_cache}" in info.stdout, info.stdout
    usage = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False)
    assert usage.returncode == 0 and "demo" in usage.stdout, usage


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--expect-cache", choices=("on", "off"))
    args = parser.parse_args()

    import fastact
    from fastact import _config

    site = sysconfig.get_paths()["purelib"]
    where = os.path.dirname(os.path.abspath(fastact.__file__))
    assert where == os.path.join(site, "fastact"), f"imported {where}, not the installed copy"
    assert fastact.__version__ == metadata.version("fastact"), fastact.__version__
    cache = "on" if _config.CACHE else "off"
    if args.expect_cache is not None:
        assert cache == args.expect_cache, f"kernel cache {cache}, expected {args.expect_cache}"
    check_kernels(fastact)
    check_cli(args.expect_cache)
    print(f"fastact {fastact.__version__} from {where}: kernels, fused ops, CLI ok (cache {cache})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
