# The two commands of the README: `make run` and `make test`. Both install what is missing.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UI_STAMP := frontend/node_modules/.installed
PORT ?= 8080

.PHONY: tools install ui run test test-py test-ui lint clean

$(STAMP): requirements/base.txt requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.0.1 || true
	$(BIN)/pip install --quiet -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# System tools: audio tools make test fixtures (ffmpeg decodes are the reference durations);
# Chromium runs the UI's end-to-end tests.
tools:
	@bash infra/local/install-tools.sh

$(UI_STAMP): frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $(UI_STAMP)

# The operator UI, built into frontend/dist (served by `make run` at /).
ui: $(UI_STAMP)
	cd frontend && npm run build

run: install
	@if [ -f frontend/package.json ]; then $(MAKE) --no-print-directory ui; fi
	PORT=$(PORT) exec $(BIN)/call-downloader run

test: install tools
	$(BIN)/ruff check shared functions tests
	@if [ -f frontend/package.json ]; then $(MAKE) --no-print-directory ui && (cd frontend && npx vitest run); fi
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check shared functions tests

clean:
	rm -rf $(VENV) .data .pytest_cache frontend/node_modules frontend/dist

-include infra/tools/deploy.mk
-include infra/drill/drill.mk
-include infra/bench/bench.mk
