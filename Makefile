# Fresh machine: `make demo` sets up and runs the demo; `make test` sets up and runs the checks and tests.
VENV ?= .venv
PYTHON ?= python3
UV_VERSION = 0.13.9
BIN = $(VENV)/bin
EXTRAS ?= dev,web

.PHONY: setup demo test lint typecheck unit soak bench bench-flow clean

setup: $(VENV)/.installed-$(EXTRAS)

# Installs exactly the versions in constraints.txt (the lock, resolved once with every extra,
# Apache Airflow included): a fresh install is reproducible.
$(VENV)/.installed-$(EXTRAS): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(BIN)/esb demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# Two test processes (pytest-xdist): most tests wait on a broker, a database or an ERP process, so two
# halve the wall time on 2 cores. Tests marked `broker_exclusive` stop the shared broker: they run alone after.
unit: setup
	$(BIN)/pytest -q -n 2 -m "not broker_exclusive" --durations=20
	$(BIN)/pytest -q -m broker_exclusive --durations=5

test: lint typecheck unit

# The fault-injection runs of issue 8 at their full counts (500 orders, 20 SIGKILLs, each crash point 3 times,
# broker restarts); `make test` runs the same tests with small counts. One field: SOAK_ORDERS=2000 make soak.
soak: setup
	SOAK=1 $(BIN)/pytest -m soak -s --durations=20 tests/soak tests/flows

bench: setup
	$(BIN)/python bench/transport_throughput.py

# Orders/s place -> settled through 1, 2 and 4 worker processes next to raw zeep calls (RabbitMQ + PostgreSQL,
# 20 ms ERP latency); BENCH_FLOW_ARGS="--transport embedded" for embedded + SQLite.
bench-flow: setup
	$(BIN)/python bench/full_flow.py $(BENCH_FLOW_ARGS)

# Re-resolve the lock after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile -q pyproject.toml --all-extras --python-version 3.11 -o constraints.txt

clean:
	rm -rf .esb .pytest_cache .mypy_cache .ruff_cache
