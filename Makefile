# The two commands of the README: `make run` and `make test`. Both install what is missing.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8080

.PHONY: tools install run test test-unit test-integration test-e2e lint fixtures clean

$(STAMP): requirements/base.txt requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.0.1 || true
	$(BIN)/pip install --quiet -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Audio tools used to make test fixtures (ffmpeg decodes are the reference durations).
tools:
	@command -v ffmpeg >/dev/null && command -v sox >/dev/null && command -v espeak-ng >/dev/null && command -v lame >/dev/null \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg sox libsox-fmt-all lame espeak-ng >/dev/null)

run: install
	PORT=$(PORT) $(BIN)/call-downloader run

test: install tools
	$(BIN)/ruff check shared functions tests
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check shared functions tests

clean:
	rm -rf $(VENV) .data .pytest_cache
