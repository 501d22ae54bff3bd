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
	bash deploy/local/install-go-tools.sh

# Two distributions, both editable: the runtime (with its test extras) and dev/ (simulators,
# local stack, demo, samples), in one pip command so `writeback-dev`'s requirement on `writeback`
# resolves to this checkout.
$(VENV)/.installed: pyproject.toml dev/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' -e dev
	touch $@

stack-build: $(VENV)/.installed
	$(PY) -m writeback_dev.localstack

bench: deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) .stack deploy/local/*/target deploy/local/tools
