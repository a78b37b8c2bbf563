#!/usr/bin/env bash
# `make bench`: release builds, then scripts/bench.py (ours vs DuckDB on five export shapes,
# zips, init time).
#   BENCH_SHAPES=one-day,60-days,30-days-10M,one-day-gz,s3   BENCH_RUNS=3   runs per shape and tool
#   BENCH_SCALE=1                 rows multiplier (0.01: a quick check of the bench itself)
#   BENCH_BUDGET_MB=819           our memory budget   BENCH_DATA=...   where exports are cached
# The figures land in target/bench/ingest.json and ingest-budget-256.json (and on stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}

echo "== release build (native, for the timed runs and the init measurement)"
# --workspace: the same feature set as every other build of the workspace, so nothing rebuilds twice.
cargo build --release --workspace --bins
echo "== release build (arm64 zips, as deployed: make build)"
# Its own target dir: a cross build shares host artifacts with the native one and would
# otherwise wait on (and invalidate) its lock. Built with the repository's release profile
# whatever the caller's CARGO_PROFILE_* variables say (a debug-info build for `perf` of the
# native binaries, say): the zip sizes and init times describe what is deployed.
mapfile -t profile_vars < <(compgen -e | grep '^CARGO_PROFILE_' || true)
env "${profile_vars[@]/#/--unset=}" make --no-print-directory build

# Cached exports and scratch output live outside the clone's sources (the 10M export is ~880 MB).
DATA=${BENCH_DATA:-$TARGET/bench/data}
WORK=${BENCH_WORK:-${TMPDIR:-/tmp}/shoplake-bench}
run() {
  python3 scripts/bench.py \
    --lake "$TARGET/release/lake" \
    --functions-dir "$TARGET/release" \
    --zips-dir "$TARGET/arm64/lambda" \
    --data-dir "$DATA" \
    --work-dir "$WORK" \
    "$@"
}
# Speed and memory as deployed: the template gives ingest 2048 MB, and the budget defaults to
# 40% of the function's memory.
run --shapes "${BENCH_SHAPES:-one-day,60-days,30-days-10M,one-day-gz,s3}" \
  --scale "${BENCH_SCALE:-1}" --runs "${BENCH_RUNS:-3}" \
  --budget-mb "${BENCH_BUDGET_MB:-819}" --out "$TARGET/bench/ingest.json"
# The memory bound: the 10M-row export under a 256 MiB budget (issue 14: peak RSS under 300 MiB).
run --shapes 30-days-10M --scale "${BENCH_SCALE:-1}" --runs 1 --budget-mb 256 --no-lambda \
  --rss-limit-mib 300 \
  --out "$TARGET/bench/ingest-budget-256.json"
rm -rf "$WORK"
