# Two entry points for a fresh clone: `make serve` and `make test`. Both create .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup serve test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

serve: setup
	$(BIN)/vecroute serve

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check app worker tests bench
	$(BIN)/mypy app worker

bench: setup
	$(BIN)/python bench/engine.py
