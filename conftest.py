"""Repository-wide pytest setup.

Benchmarks run once each, as smoke tests, unless timing is asked for: ``pytest`` disables
pytest-benchmark's timing, ``pytest --benchmark-only`` (or ``--benchmark-enable``) times them.
(``--benchmark-disable`` in pyproject's addopts would make ``--benchmark-only`` an error.)
"""

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    option = config.option
    if hasattr(option, "benchmark_disable") and not (
        getattr(option, "benchmark_only", False) or getattr(option, "benchmark_enable", False)
    ):
        option.benchmark_disable = True
