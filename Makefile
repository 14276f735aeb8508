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

# Release hygiene (docs/operations.md, "Versions and releases"). The image installs exactly what
# the lock files pin, every file checked against its sha256: requirements.lock holds the runtime
# dependencies of pyproject.toml (transitive included), requirements-build.lock what builds the
# project's wheel ([build-system] requires). Both are resolved for the image's Python (Debian
# 12's CPython 3.11 on x86_64 Linux) from wheels only, and list the hashes of every wheel of a
# pinned version: an arm64 build installs from them too (resolving for aarch64 gives the same
# files today). `make lock` keeps the pins it can; `make lock LOCK_ARGS=--upgrade` moves every
# pin to the newest version pyproject.toml allows.
LOCK       := requirements.lock
BUILD_LOCK := requirements-build.lock
SBOM       := sbom.cdx.json
LOCK_ARGS  ?=
LOCK_FLAGS := --generate-hashes --only-binary :all: --python-version 3.11 \
              --python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock'
# `make image`: the Dockerfile's OCI labels. VERSION is pyproject.toml's (read when used);
# SOURCE_URL is not guessed from git (a remote's URL may carry a credential): pass it.
IMAGE      ?= agent-bootstrap
VERSION     = $(shell $(PYTHON) -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
REVISION    = $(shell git rev-parse HEAD)
SOURCE_URL ?=

.PHONY: demo test lint typecheck unit venv clean bench lock sbom image

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

lock: $(TEST_STAMP)
	@echo "==> resolving $(LOCK) and $(BUILD_LOCK) from pyproject.toml (pinned, with hashes)"
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) $(LOCK_ARGS) --output-file $(LOCK)
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	  | $(BIN)/uv pip compile - $(LOCK_FLAGS) $(LOCK_ARGS) --output-file $(BUILD_LOCK)

# The image's Python packages as a CycloneDX 1.6 JSON SBOM, from $(LOCK) (offline, reproducible:
# no timestamp or serial number). Git-ignored: publish it beside the image. A lock file has no
# dependency graph, which cyclonedx-python-lib warns about on every run: that warning is muted.
sbom: $(TEST_STAMP)
	@echo "==> writing $(SBOM) (CycloneDX) from $(LOCK)"
	PYTHONWARNINGS=ignore::UserWarning:cyclonedx.model.bom $(BIN)/cyclonedx-py requirements $(LOCK) --pyproject pyproject.toml --output-reproducible \
	  --of JSON --output-file $(SBOM)

# Needs a Docker engine (none in CI). Labels: version, revision, source, licenses.
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
	  --build-arg SOURCE_URL=$(SOURCE_URL) -t $(IMAGE):$(VERSION) .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info $(SBOM)
