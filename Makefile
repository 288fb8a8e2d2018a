# Two entry points for a fresh clone: `make serve` and `make test`. Both create .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup browser serve test lint openapi bench

setup: $(VENV)/.installed browser

# The status-page test renders / in Debian's headless Chromium: installed here when missing
# and we are root (as on a fresh CI machine); otherwise install the 'chromium' package yourself.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	fi

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

# The committed OpenAPI snapshot (tests/api/openapi.json), after a deliberate API change.
openapi: setup
	$(BIN)/python -m tests.api.openapi_snapshot

bench: setup
	$(BIN)/python bench/engine.py
