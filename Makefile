# Two entry points for a fresh clone: `make serve` and `make test`. Both create .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup browser serve test lint openapi bench constraints

setup: $(VENV)/.installed browser

# The console test drives Debian's headless Chromium with Playwright: installed here when
# missing and we are root (as on a fresh CI machine); otherwise install 'chromium' yourself.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	fi

# `make serve` installs the service alone (no test tools, no Ray, no browser).
$(VENV)/.service: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

# The suite's tools on top: the Python client (its own package, clients/python) with its
# LangChain extra, and the cluster extra (Ray), so that the suite tests sharded collections.
$(VENV)/.installed: $(VENV)/.service clients/python/pyproject.toml
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,cluster]' -e 'clients/python[langchain]'
	touch $@

serve: $(VENV)/.service
	$(BIN)/vecroute serve

# Two workers, a test file each at a time (module fixtures stay in one process); each has
# its own PostgreSQL database. The path is absolute: the session leaves the checkout for an
# empty directory (tests/hermetic.py) before the workers collect.
test: setup
	$(BIN)/pytest -n 2 --dist loadfile $(CURDIR)/tests

lint: setup
	$(BIN)/ruff check app worker tests bench clients/python
	$(BIN)/ruff format --check app worker tests bench clients/python
	$(BIN)/mypy app worker clients/python/vecroute_client

# The committed OpenAPI snapshot (tests/api/openapi.json), after a deliberate API change.
openapi: setup
	$(BIN)/python -m tests.api.openapi_snapshot

bench: setup
	$(BIN)/python bench/engine.py

# After a dependency change in pyproject.toml: install it without the old pins, then write
# the venv's releases to constraints.txt (its header kept); then `make test`.
constraints:
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,cluster]' -e 'clients/python[langchain]'
	{ grep '^#' constraints.txt; $(BIN)/pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.new
	mv constraints.new constraints.txt
