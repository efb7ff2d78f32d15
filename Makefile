# Two commands: `make run` and `make test`. Everything installs into .venv from PyPI.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install generate run test bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(INSTALLED)

generate: $(INSTALLED)
	$(PY) tools/codegen.py generated

run: $(INSTALLED)
	$(VENV)/bin/billing-stack

test: $(INSTALLED)
	$(PY) -m pytest

bench: $(INSTALLED)
	$(PY) -m bench

clean:
	rm -rf $(VENV) billing.db billing.db-wal billing.db-shm outbox
