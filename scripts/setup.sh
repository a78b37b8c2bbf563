#!/usr/bin/env bash
# Installs what `make test` and `make demo` need that a fresh machine may lack: a Python venv
# (.venv) with moto, cargo-lambda, DuckDB and pyarrow from PyPI; Debian packages via apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found. Install the Rust toolchain (https://rustup.rs) and re-run." >&2
  exit 1
fi

apt_install() {
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "error: please install: $*" >&2
    exit 1
  fi
}

command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv python3-pip
command -v curl >/dev/null 2>&1 || apt_install curl
# PostgreSQL 15 or newer (it has MERGE): the engine the warehouse tests run the generated SQL on
# (they start and stop their own server) and the local warehouse of `lake load --postgres`.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 || apt_install postgresql
# The KPI report's browser test renders the page in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt_install --no-install-recommends chromium
  else
    echo "setup: chromium not found; the report's browser test will be skipped (install Debian's chromium to run it)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv 2>/dev/null || { apt_install python3-venv && python3 -m venv .venv; }
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
echo "setup: .venv ready ($(.venv/bin/python -c 'import moto; print("moto", moto.__version__)'), $(.venv/bin/cargo-lambda lambda --version 2>/dev/null | head -1))"
