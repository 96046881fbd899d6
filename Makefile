# pyro-mcp developer targets. `make demo` sets everything up on a fresh Debian 12 host and
# runs a real sandbox; `make check` runs setup, lint, types, the whole test suite (real
# sandboxes), the use-case smoke packs and dist-check.
SHELL := /bin/bash
UV ?= uv
PYRO := $(UV) run --frozen pyro
ENVIRONMENT ?= debian:12

USE_CASE_ENVIRONMENT ?= debian:12
SMOKE := $(UV) run --frozen python scripts/workspace_use_case_smoke.py --environment $(USE_CASE_ENVIRONMENT)
STORIES := cold-start-validation repro-fix-loop parallel-workspaces untrusted-inspection review-eval

.PHONY: help setup host demo check lint typecheck test test-fast inspector-check bench doctor clean \
	smoke-use-cases $(addprefix smoke-,$(STORIES)) dist-check

help:
	@echo "setup      host packages (runsc, qemu, mmdebstrap …), uv sync, build $(ENVIRONMENT)"
	@echo "demo       setup, then: pyro run $(ENVIRONMENT) -- git --version"
	@echo "check      ruff, mypy --strict, pytest (guest-backed tests boot real sandboxes),"
	@echo "           the MCP Inspector CLI check, the use-case smoke packs and dist-check"
	@echo "test       pytest only;  test-fast: unit tests only (no sandboxes)"
	@echo "inspector-check   the MCP Inspector CLI drives pyro mcp serve (stdio and HTTP)"
	@echo "bench      speed figures beside the bare engine, measured in the same run"
	@echo "doctor     pyro doctor"
	@echo "smoke-use-cases   the five use-case stories on real workspaces (USE_CASE_ENVIRONMENT)"
	@echo "smoke-<story>     one story: $(STORIES)"
	@echo "dist-check        build sdist+wheel, install in a clean venv, run pyro from there"

host:
	@bash scripts/host-setup.sh

setup: host
	@$(UV) sync --frozen --quiet
	@$(PYRO) env pull $(ENVIRONMENT)

demo: setup
	$(PYRO) run $(ENVIRONMENT) -- git --version

lint:
	$(UV) run --frozen ruff check src tests scripts examples
	$(UV) run --frozen ruff format --check src tests scripts examples

typecheck:
	$(UV) run --frozen mypy

test:
	$(UV) run --frozen pytest -q

test-fast:
	$(UV) run --frozen pytest -q -m "not guest"

check: setup lint typecheck test inspector-check smoke-use-cases dist-check

# A real external MCP client: the pinned MCP Inspector CLI (.ci/inspector) drives
# `pyro mcp serve` over stdio and streamable HTTP (scripts/inspector_check.py).
inspector-check: setup
	$(UV) run --frozen python scripts/inspector_check.py

bench: setup
	$(UV) run --frozen python scripts/bench.py

doctor:
	$(PYRO) doctor

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache dist build

smoke-use-cases: setup
	$(SMOKE) --scenario all

$(addprefix smoke-,$(STORIES)): smoke-%: setup
	$(SMOKE) --scenario $*

dist-check: setup
	bash scripts/dist-check.sh
