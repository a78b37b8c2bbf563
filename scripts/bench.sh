#!/usr/bin/env bash
# `make bench`: release builds, then scripts/bench.py (ours vs DuckDB, zips, init time).
#   BENCH_SIZES=1000000,10000000  rows per export     BENCH_RUNS=3     runs per size and tool
#   BENCH_BUDGET_MB=256           our memory budget   BENCH_DATA=...   where exports are cached
# The figures land in target/bench/ingest.json (and on stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}

echo "== release build (native, for the timed runs and the init measurement)"
# --workspace: the same feature set as every other build of the workspace, so nothing rebuilds twice.
cargo build --release --workspace --bins
echo "== release build (arm64 zips, as deployed: make build)"
# Its own target dir: a cross build shares host artifacts with the native one and would
# otherwise wait on (and invalidate) its lock.
make --no-print-directory build

# Cached exports and scratch output live outside the clone's sources (the 10M export is ~880 MB).
DATA=${BENCH_DATA:-$TARGET/bench/data}
WORK=${BENCH_WORK:-${TMPDIR:-/tmp}/shoplake-bench}
python3 scripts/bench.py \
  --lake "$TARGET/release/lake" \
  --functions-dir "$TARGET/release" \
  --zips-dir "$TARGET/arm64/lambda" \
  --sizes "${BENCH_SIZES:-1000000,10000000}" \
  --runs "${BENCH_RUNS:-3}" \
  --budget-mb "${BENCH_BUDGET_MB:-256}" \
  --data-dir "$DATA" \
  --work-dir "$WORK" \
  --out "$TARGET/bench/ingest.json"
rm -rf "$WORK"
