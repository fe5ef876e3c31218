"""pytest configuration of the benchmark suite (see docs/benchmarks.md).

* ``pytest``: the root conftest.py disables timing; every benchmark then runs once as a
  smoke test (correctness check + one call) at the small sizes only (1e3, 1e5).
* ``pytest bench --benchmark-enable``: the full suite, every size (1e3 .. 16e6).
* ``pytest bench --quick --benchmark-enable``: the representative subset (``-m quick``
  selects the same items).
"""

from __future__ import annotations

import os
import sys

# the suite's helpers live next to this file (also under --import-mode=importlib)
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_addoption(parser):
    group = parser.getgroup("fastact benchmarks")
    group.addoption(
        "--quick",
        action="store_true",
        default=False,
        help="fastact bench: only the representative subset (sigmoid, relu, gelu, silu, "
        "tanh forward, sigmoid/relu backward; float32; n=1e3 and 1e6)",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "quick: the representative benchmark subset (pytest bench --quick)"
    )


def _data_block(item):
    """(size, dtype, 0 for the copy ceiling / 1 for an activation) of a bench_activations item,
    None for any other item."""
    spec = getattr(item, "callspec", None)
    if spec is None or os.path.basename(str(item.path)) != "bench_activations.py":
        return None
    params = spec.params
    if "size" not in params or "dtype" not in params:
        return None
    import _cases

    sizes = list(_cases.SIZES)
    size = sizes.index(params["size"]) if params["size"] in sizes else len(sizes)
    return size, params["dtype"], 0 if item.originalname == "test_copy_ceiling" else 1


def pytest_collection_modifyitems(config, items):
    """Order bench_activations' items by (size, dtype), each block starting with its copy
    ceiling, so that the ceiling is measured next to (and on the same data as) the
    activations it is compared with; then --quick keeps only the bench items marked
    ``quick`` (other bench files included)."""
    where = [i for i, item in enumerate(items) if _data_block(item) is not None]
    block = sorted((items[i] for i in where), key=_data_block)  # stable: op order kept
    for i, item in zip(where, block):
        items[i] = item
    if not config.getoption("quick", False):
        return
    keep, drop = [], []
    for item in items:
        folder = os.path.dirname(os.path.abspath(str(item.path)))
        in_bench = folder == _HERE or folder.startswith(_HERE + os.sep)
        (drop if in_bench and item.get_closest_marker("quick") is None else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
