# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV  := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# The integration tests start moto (and read the lake with DuckDB/pyarrow) with this Python.
export MOTO_PYTHON := $(CURDIR)/$(VENV)/bin/python
# cfn-lint and SAM need a region even offline.
export AWS_DEFAULT_REGION ?= us-east-1
TEMPLATE  := infra/template.yaml
FUNCTIONS := $(notdir $(wildcard functions/*))
STAGE     ?= prod

.PHONY: setup build test infra-check lint bench bench-history demo deploy clean fuzz $(addprefix invoke-,$(FUNCTIONS))

setup: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $@

## Release zips for Lambda (Graviton): target/arm64/lambda/<function>/bootstrap.zip. A target dir
## of its own, so the cross build neither waits for nor invalidates the native one.
build: setup
	CARGO_TARGET_DIR=$${CARGO_TARGET_DIR:-target}/arm64 cargo lambda build --release --arm64 --output-format zip $(addprefix -p ,$(FUNCTIONS))

## Unit, property and integration tests (moto on 127.0.0.1, started and stopped by the tests),
## the bench scripts' own arithmetic (scripts/test_*.py), then the template checks.
test: setup
	cargo test --workspace
	python3 -m unittest discover --start-directory scripts --pattern 'test_*.py'
	$(MAKE) --no-print-directory infra-check

## The parser/processor property tests with 100,000 cases each (release build; `make test` runs
## 300): arbitrary bytes and mutated exports never panic and keep every row accounted for.
fuzz: setup
	SHOPLAKE_FUZZ_CASES=$${SHOPLAKE_FUZZ_CASES:-100000} cargo test --release --test it properties -- --nocapture

## cfn-lint (zero errors and warnings) and checkov (no failed checks; skips are inline, with reasons).
infra-check: setup
	cfn-lint $(TEMPLATE)
	checkov --skip-download --quiet --compact --framework cloudformation -f $(TEMPLATE)

## Formatting and lints, warnings as errors; the template checks.
lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(MAKE) --no-print-directory infra-check

## Ingest throughput and memory against DuckDB, binary sizes and cold-start time (release build).
bench: setup
	bash scripts/bench.sh

## The next night's ingest, quality and aggregate on one lake grown to 7, 90 and 365 daily
## exports, against DuckDB recomputing the KPIs; the envelope the template's Lambdas allow.
bench-history: setup
	bash scripts/bench_history.sh

## The pipeline end to end: `lake` on a local directory, then every Lambda through
## `cargo lambda watch` + `cargo lambda invoke` against S3, SNS, Glue and Redshift on moto.
demo: setup
	bash scripts/demo.sh

## One function with its sample event from events/ (upstream functions run first to give it data).
$(addprefix invoke-,$(FUNCTIONS)): invoke-%: setup
	bash scripts/demo.sh --invoke $*

## Build with SAM (cargo-lambda) and deploy; the first run asks for the parameters (--guided).
deploy: setup
	pip install --quiet --disable-pip-version-check aws-sam-cli==1.170.0
	sam build --beta-features --template-file $(TEMPLATE)
	if [ -f samconfig.toml ]; then sam deploy; else sam deploy --guided --capabilities CAPABILITY_NAMED_IAM --parameter-overrides StageName=$(STAGE); fi

clean:
	cargo clean
	rm -rf $(VENV) .aws-sam "$${TMPDIR:-/tmp}/shoplake-demo" "$${TMPDIR:-/tmp}/shoplake-bench" "$${TMPDIR:-/tmp}/shoplake-bench-history"
