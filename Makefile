# Two commands: `make run` and `make test`. Everything installs into .venv from PyPI.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
MUTATION_INSTALLED := $(VENV)/.installed-mutation

.PHONY: install generate run test bench mutation clean

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

$(MUTATION_INSTALLED): $(INSTALLED)
	$(PY) -m pip install --quiet -e '.[test,mutation]'
	touch $@

# mutmut over server/domain/ and the money paths of server/services/ ([tool.mutmut] in pyproject.toml),
# from scratch each time; writes MUTATION.md and fails under 95% on server/domain/. ~1.5 min on 2 cores.
mutation: $(MUTATION_INSTALLED)
	rm -rf mutants
	start=$$(date +%s); $(VENV)/bin/mutmut run --max-children 2 > mutants.log 2>&1 || { tail -40 mutants.log; exit 1; }; \
	$(PY) tools/mutation_report.py --seconds $$(( $$(date +%s) - start ))

clean:
	rm -rf $(VENV) mutants mutants.log billing.db billing.db-wal billing.db-shm outbox
