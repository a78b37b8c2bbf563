#!/usr/bin/env bash
# `make bench-history`: release build of `lake`, then scripts/bench_history.py (the next night's
# ingest, quality and aggregate at growing history, against DuckDB's recompute of the KPIs).
#   BENCH_HISTORY_H=7,90,365     history sizes (days) measured (one lake grown to the largest)
#   BENCH_HISTORY_SCALE=1        rows per day against issue 15's shop (~30k orders/day)
#   BENCH_HISTORY_RUNS=3         repetitions of each measured night (medians)
#   BENCH_HISTORY_ROUNDS=5       interleaved rounds of the measured nights after the growth
#                                (the targets and the envelope use them; 0: skip)
#   BENCH_HISTORY_AGGREGATE_EVERY=1  nights between aggregates while building history
#   BENCH_HISTORY_PROBE=10:31    a second lake at 10x the daily volume, its night after 31 days
#                                measured too: the envelope's slope in the volume (none: skip)
#   BENCH_HISTORY_WORK=...       where the lake grows (removed afterwards; a few GB at scale 1)
#   BENCH_HISTORY_KEEP=1         keep the lakes (main/, probe/), and the lake before each measured
#                                night (before-night-<date>: to run it again with another binary)
# The figures land in target/bench/history.json (and on stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}

echo "== release build (native)"
# --workspace: the same feature set as `make bench`'s build, so neither rebuilds the other.
cargo build --release --workspace --bins

python3 scripts/bench_history.py \
  --lake "$TARGET/release/lake" \
  --work-dir "${BENCH_HISTORY_WORK:-${TMPDIR:-/tmp}/shoplake-bench-history}" \
  --out "$TARGET/bench/history.json" \
  --horizons "${BENCH_HISTORY_H:-7,90,365}" \
  --scale "${BENCH_HISTORY_SCALE:-1}" \
  --runs "${BENCH_HISTORY_RUNS:-3}" \
  --aggregate-every "${BENCH_HISTORY_AGGREGATE_EVERY:-1}" \
  --interleaved-rounds "${BENCH_HISTORY_ROUNDS:-5}" \
  --volume-probe "${BENCH_HISTORY_PROBE:-10:31}" \
  ${BENCH_HISTORY_KEEP:+--keep}
