# The first commands a user runs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/jaxagree demo

test: $(STAMP)
	$(BIN)/ruff check jaxagree tests benchmarks notebooks docs
	$(BIN)/python -m pytest -q -n 2 --durations=25

# Also the tests marked slow (full benchmark quick runs): before a release or a merge.
test-all: $(STAMP)
	$(BIN)/ruff check jaxagree tests benchmarks notebooks docs
	$(BIN)/python -m pytest -q -n 2 --durations=25 --runslow

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) jaxagree-demo .pytest_cache .hypothesis
