# Everything a fresh machine needs: Python 3.11+ and make. The first target run builds .venv from the lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast chaos bench loadtest migrate lock clean

help: ## Show the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the pinned dependencies

run: $(STAMP) ## Start the whole stack on embedded servers (Ctrl-C stops it)
	$(BIN)/python -m control_plane.run

# The suite's tests mostly wait on servers: pytest-xdist runs test files on PYTEST_WORKERS processes, each with
# servers of its own (0: one process, as `python -m pytest` runs it).
PYTEST_WORKERS ?= 2

test: $(STAMP) ## Run every test, the chaos suite too (starts its own PostgreSQL, Valkey and SQS endpoint)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: $(STAMP) ## Unit and property tests only
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile tests/unit tests/property $(PYTEST_ARGS)

chaos: $(STAMP) ## Only the bank test under real faults (kills, stops, restarts) against a `make run` stack
	$(BIN)/python -m pytest -q tests/chaos $(PYTEST_ARGS)

bench: $(STAMP) ## Benchmarks: ratios measured side by side in one run
	$(BIN)/python -m loadtests.bench $(BENCH_ARGS)

loadtest: $(STAMP) ## Locust headless against `make run`; LOADTEST_ARGS: --previous, --host..., Locust options
	$(BIN)/python -m loadtests.run $(LOADTEST_ARGS)

migrate: $(STAMP) ## Apply migrations to LEDGER_DATABASE_URL
	$(BIN)/python -m cell.store.migrate "$$LEDGER_DATABASE_URL"

lock: ## Re-pin requirements.lock from pyproject.toml (needs the registry)
	rm -rf /tmp/lockvenv && $(PYTHON) -m venv /tmp/lockvenv
	/tmp/lockvenv/bin/pip install --quiet --upgrade pip && /tmp/lockvenv/bin/pip install --quiet -e '.[dev]'
	/tmp/lockvenv/bin/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean: ## Remove .venv and the local data under .ledger/
	rm -rf $(VENV) .ledger
