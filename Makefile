# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV  := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# The integration tests start moto (and read the lake with DuckDB/pyarrow) with this Python.
export MOTO_PYTHON := $(CURDIR)/$(VENV)/bin/python

.PHONY: setup test lint demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $@

## Unit, property and integration tests (moto on 127.0.0.1, started and stopped by the tests).
test: setup
	cargo test --workspace

## Formatting and lints, warnings as errors.
lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## The pipeline end to end: `lake` on a local directory, then the ingest Lambda through
## `cargo lambda watch` + `cargo lambda invoke` against S3 on a local moto server.
demo: setup
	bash scripts/demo.sh

clean:
	cargo clean
	rm -rf $(VENV) "$${TMPDIR:-/tmp}/shoplake-demo"
