# pyro-mcp developer targets. `make demo` sets everything up on a fresh Debian 12 host and
# runs a real sandbox; `make check` runs lint, types and the whole test suite (real sandboxes).
SHELL := /bin/bash
UV ?= uv
PYRO := $(UV) run --frozen pyro
ENVIRONMENT ?= debian:12

.PHONY: help setup host env demo check lint typecheck test test-fast bench doctor clean

help:
	@echo "setup      host packages (runsc, qemu, mmdebstrap …), uv sync, build $(ENVIRONMENT)"
	@echo "demo       setup, then: pyro run $(ENVIRONMENT) -- git --version"
	@echo "check      ruff, mypy --strict, pytest (guest-backed tests boot real sandboxes)"
	@echo "test       pytest only;  test-fast: unit tests only (no sandboxes)"
	@echo "bench      speed figures beside the bare engine, measured in the same run"
	@echo "doctor     pyro doctor"

host:
	@bash scripts/host-setup.sh

setup: host
	@$(UV) sync --frozen --quiet
	@$(PYRO) env pull $(ENVIRONMENT)

demo: setup
	$(PYRO) run $(ENVIRONMENT) -- git --version

lint:
	$(UV) run --frozen ruff check src tests scripts
	$(UV) run --frozen ruff format --check src tests scripts

typecheck:
	$(UV) run --frozen mypy

test:
	$(UV) run --frozen pytest -q

test-fast:
	$(UV) run --frozen pytest -q -m "not guest"

check: setup lint typecheck test

bench: setup
	$(UV) run --frozen python scripts/bench.py

doctor:
	$(PYRO) doctor

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache dist build
