# The two commands a newcomer needs: `make run` and `make test`. Everything else is a step of them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test deps system-deps stack-build bench clean

run: deps
	$(VENV)/bin/writeback dev

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

deps: system-deps $(VENV)/.installed stack-build

system-deps:
	bash deploy/local/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

stack-build: $(VENV)/.installed
	$(PY) -m writeback.localstack

bench: deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) .stack deploy/local/*/target
