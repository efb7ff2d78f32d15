# Two commands: `make run` and `make test`. Everything installs into .venv from PyPI.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install generate run lint test bench bench-scale mutation mutation-gate clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@

install: $(INSTALLED)

generate: $(INSTALLED)
	$(PY) tools/codegen.py generated

run: $(INSTALLED)
	$(VENV)/bin/billing-stack

# ruff (lint and format), mypy, and the layer contract (import-linter, [tool.importlinter] in
# pyproject.toml); `make test` runs them first.
lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# Lint, the suite, then the mutation gate (a boundary without a test that can fail fails CI).
test: lint
	$(PY) -m pytest
	$(MAKE) mutation-gate

bench: $(INSTALLED)
	$(PY) -m bench

# The scale-out curve on PostgreSQL, 1 -> 2 -> 4 server processes (~5 min; BENCHMARKS.md).
bench-scale: $(INSTALLED)
	$(PY) -m bench.scale

# The mutation gate ([tool.mutation-gate] in pyproject.toml; tools/mutation_report.py). `mutation`
# re-runs mutmut on every gated module and rewrites MUTATION.json (committed) and MUTATION.md;
# `mutation-gate` (run by `make test`) re-runs only the modules whose source or tests changed since
# MUTATION.json, then checks every module against its threshold. MUTATION.md gives the run times.
mutation: $(INSTALLED)
	$(PY) tools/mutation_report.py --all

mutation-gate: $(INSTALLED)
	$(PY) tools/mutation_report.py

clean:
	rm -rf $(VENV) mutants mutants.log billing.db billing.db-wal billing.db-shm outbox
