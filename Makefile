# draftflow: `make run` does the whole nightly loop on the embedded corpus; `make test` runs the suite.
# Both create .venv on first use and install the project into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of PyTorch that lies on this machine's disk; a bare `torch` would pull a multi-GB
# CUDA wheel. Override on a GPU box, e.g. `make install TORCH_SPEC='torch==2.13.0'` with a CUDA index.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install system-deps run serve stop test test-faults test-fast test-floors lint format clean-data

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## Debian packages the tests use: a real PostgreSQL server and Chromium for the web desk's browser test
system-deps:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v chromium >/dev/null; then \
		echo "postgresql and chromium are installed"; \
	else \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			--no-install-recommends postgresql chromium; \
	fi

## run the nightly flow on the embedded default corpus (pass more flags with ARGS="...")
run: $(STAMP)
	$(BIN)/draftflow run $(ARGS)

## a local production-like setup: Prefect server (127.0.0.1:4200), work pools, deployments, workers
serve: $(STAMP)
	$(BIN)/draftflow serve $(ARGS)

## stop what `make serve` started
stop: $(STAMP)
	$(BIN)/draftflow stop

## lint, format and type checks + the test suite, slow end-to-end tests included (CI runs this, then test-faults)
test: system-deps $(STAMP) lint
	$(BIN)/python -m pytest -m "not faults" --durations=25 $(PYTEST_ARGS)

## fault injection: kill -9 at every stage boundary, two runs at once, a Prefect server restart (CI runs it too)
test-faults: $(STAMP)
	$(BIN)/python -m pytest -m faults --durations=15 $(PYTEST_ARGS)

## the suite without the slow end-to-end tests
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## every direct dependency at its floor (a venv of its own, .venv-floors), then the fast tests
test-floors:
	TORCH_SPEC="$(TORCH_SPEC)" PYTHON="$(PYTHON)" bash .ci/floors

## ruff (lint and format) and mypy over the project's packages
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
