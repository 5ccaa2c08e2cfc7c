# One entry point for humans and CI. `make demo` sets up .venv and runs the end-to-end demo;
# `make test` runs the test suite (slow tests too when CI=true).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test test-all lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Chromium (Debian package) for the report tests; they skip without it, except under CI=true.
browser:
	bash .ci/install-chromium

demo: setup
	$(VENV)/bin/aurorahash demo

test: setup
	$(PY) -m pytest

test-all: setup
	$(PY) -m pytest --runslow

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) benchmarks/bench_knn.py
	$(PY) benchmarks/bench_map.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
