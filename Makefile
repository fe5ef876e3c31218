# Two commands: `make demo` runs the main job, `make test` runs the tests.
# Both create (or reuse) a local virtual environment in .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LINT_PATHS := fastact bench tools tests conftest.py
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint docs package-check bench accuracy gpu-wheels clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,study,lint,docs,packaging]'
	rm -f $(VENV)/.installed-*; touch $(STAMP)

demo: $(STAMP)
	$(PY) -m fastact demo --out results

# The fast checks first (lint, docs, packaging: ~1 min), then the test suites.
test: $(STAMP) lint docs package-check
	$(PY) -m pytest -q
	$(PY) -m pytest -q -m slow
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -q tests/cuda
	$(PY) tools/perf_gate.py

# ruff (lint + format) and mypy (configured in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

# the documentation site (mkdocs.yml) into site/; warnings are errors
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# sdist + wheel, their contents, the wheel in a clean venv (also read-only): tools/check_package.py
package-check: $(STAMP)
	$(PY) tools/check_package.py

bench: $(STAMP)
	$(PY) -m pytest bench --benchmark-enable --benchmark-only

accuracy: $(STAMP)
	$(PY) tools/accuracy_report.py

# For a lent GPU machine with Python 3.12 and NumPy 2.5 (numba-cuda 0.30 needs NumPy < 2.5) and
# no network: NumPy 2.4's wheel into .whl/, to carry there (docs/gpu.md, "How to rerun")
gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  -d .whl numpy==2.4.6

clean:
	rm -rf $(VENV) build dist site *.egg-info
