# Everything runs from a project-local virtualenv (.venv) and a project-local Node folder (.tools/node),
# so a fresh machine with Python >= 3.11, make, node and npm is enough.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NODE_DIR := .tools/node
NODE_PACKAGES := @modelcontextprotocol/inspector@2.12.0 @modelcontextprotocol/sdk@1.32.0 @stoplight/prism-cli@5.16.0 @anthropic-ai/mcpb@2.1.2

.PHONY: help install demo test lint typecheck pytest node-tools wheelhouse mcpb format wheel-check bench clean

help:
	@echo "make demo   - set up and run a scripted session against the embedded Polar double"
	@echo "make test   - ruff, pyright and the whole pytest suite (installs what it needs)"
	@echo "make format - apply ruff's formatter and safe fixes"
	@echo "make mcpb   - the MCP Bundle for Claude Desktop: dist/polar-mcp-<version>.mcpb"
	@echo "make bench  - benchmarks, written to docs/BENCHMARKS.md"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# PostgreSQL and headless Chromium for tests/realparts: installed once with apt-get (as root on Debian);
# elsewhere the script says what to install and those tests skip. `make pytest` (so `make test`) runs it;
# once the parts are there it is a few file tests.
.PHONY: system-deps
system-deps:
	scripts/system-deps.sh

pytest: system-deps

$(NODE_DIR)/.installed: Makefile
	mkdir -p $(NODE_DIR)
	npm install --silent --no-audit --no-fund --prefix $(NODE_DIR) $(NODE_PACKAGES)
	touch $@

node-tools: $(NODE_DIR)/.installed

demo: install
	$(BIN)/python -m polar_mcp.walkthrough

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/pyright

# The packaging tests launch the bundle offline: its dependencies come from this local wheelhouse.
wheelhouse: install
	$(BIN)/python packaging/mcpb/build.py wheelhouse > /dev/null

pytest: install node-tools wheelhouse
	$(BIN)/pytest -n 4

test: lint typecheck pytest

# Launch without cloning, proven: build the wheel, install it into a fresh virtualenv, run it.
wheel-check: install
	rm -rf dist .wheel-check
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .
	$(PYTHON) -m venv .wheel-check
	.wheel-check/bin/python -m pip install --quiet dist/polar_mcp-*.whl
	.wheel-check/bin/polar-mcp --help > /dev/null
	.wheel-check/bin/polar-mcp list --demo --limit 3
	rm -rf .wheel-check

# The MCP Bundle, validated then packed by the official CLI (@anthropic-ai/mcpb).
mcpb: install node-tools
	$(BIN)/python packaging/mcpb/build.py bundle

# Benchmarks are not tests: polar-sdk (the peer compared against) is installed for them only.
# The servers under test run from a virtualenv holding polar-mcp as users install it (wheel and runtime
# dependencies only); the harness, the double and the peer (polar-sdk) run from .venv.
bench: install
	$(BIN)/python -m pip install --quiet 'polar-sdk>=1,<2'
	rm -rf .bench-venv && $(PYTHON) -m venv .bench-venv
	.bench-venv/bin/python -m pip install --quiet '.[hosted]'
	POLAR_MCP_BENCH_PYTHON=$(CURDIR)/.bench-venv/bin/python $(BIN)/python -m bench.run --write docs/BENCHMARKS.md

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .tools .cache dist build .wheel-check .bench-venv .pytest_cache .ruff_cache
