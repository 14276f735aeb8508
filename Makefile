# The two commands of the quick start: `make demo` and `make test`.
# Each creates .venv (Python 3.11+) and installs what it needs into it, once: `make demo` the
# package with the `demo` extra (what demo/ imports), `make test` with the `test` extra (the
# demo's needs plus the toolchain). pip prints what it downloads and installs as it goes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# One stamp per extra; installing `test` also satisfies `demo` (the test extra holds it).
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint typecheck unit venv clean bench

venv: $(TEST_STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version'
	@echo "==> creating the virtual environment $(VENV) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)
	@echo "==> upgrading pip in $(VENV)"
	$(BIN)/python -m pip install --upgrade --progress-bar on pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@echo "==> installing agent-bootstrap and what the demo needs into $(VENV) (first run only; about half a minute)"
	$(BIN)/python -m pip install --progress-bar on -e '.[demo]'
	@touch $(DEMO_STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	@echo "==> installing agent-bootstrap and the test toolchain into $(VENV) (first run only; about a minute)"
	$(BIN)/python -m pip install --progress-bar on -e '.[test]'
	@touch $(TEST_STAMP) $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	@echo "==> running the demo (python -m demo): the whole path on loopback, a few seconds"
	$(BIN)/python -m demo

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

unit: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(TEST_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
