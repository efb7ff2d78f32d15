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

# Lint, the suite, then the mutation gate on the pure rules (a boundary rule without a test that can fail fails CI).
test: lint
	$(PY) -m pytest
	$(MAKE) mutation-gate

bench: $(INSTALLED)
	$(PY) -m bench

# The scale-out curve on PostgreSQL, 1 -> 2 -> 4 server processes (~5 min; BENCHMARKS.md).
bench-scale: $(INSTALLED)
	$(PY) -m bench.scale

# mutmut over the pure rules (server/domain/, server/ratelimit/algorithm.py) and the money paths of
# server/services/ ([tool.mutmut] in pyproject.toml), from scratch each time; writes MUTATION.md and fails under 95% on the pure rules. ~3.5 min on 2 cores.
mutation: $(INSTALLED)
	rm -rf mutants
	start=$$(date +%s); $(VENV)/bin/mutmut run --max-children 2 > mutants.log 2>&1 || { tail -40 mutants.log; exit 1; }; \
	$(PY) tools/mutation_report.py --report-seconds $$(( $$(date +%s) - start ))

# The same gate on the pure rules alone (~1 min), run by `make test`; MUTATION.md is left as it is.
mutation-gate: $(INSTALLED)
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children 2 'server.domain.*' 'server.ratelimit.algorithm.*' > mutants.log 2>&1 || { tail -40 mutants.log; exit 1; }
	$(PY) tools/mutation_report.py

clean:
	rm -rf $(VENV) mutants mutants.log billing.db billing.db-wal billing.db-shm outbox
