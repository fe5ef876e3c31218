"""pytest configuration of the benchmark suite (see docs/benchmarks.md).

* ``pytest``: pyproject passes ``--benchmark-disable``; every benchmark then runs once as a
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
    group.addoption("--quick", action="store_true", default=False,
                    help="fastact bench: only the representative subset (sigmoid, relu, gelu, silu, "
                         "tanh forward, sigmoid/relu backward; float32; n=1e3 and 1e6)")


def pytest_configure(config):
    config.addinivalue_line("markers", "quick: the representative benchmark subset (pytest bench --quick)")
