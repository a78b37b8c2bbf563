#!/usr/bin/env bash
# `make demo`: the pipeline end to end on this machine, with no AWS account.
#   1. the embedded default: `lake generate` (with defects) → `lake ingest` → `lake show`, gold,
#      and `lake load --postgres` into a throwaway PostgreSQL queried through the star schema
#   2. the ingest Lambda: `cargo lambda watch` + `cargo lambda invoke` with the events in events/,
#      reading and writing S3 on a moto server on 127.0.0.1.
# Exits non-zero if any stage fails; the emulator and the watcher are stopped in every case.
#
# `demo.sh --invoke FUNCTION` (`make invoke-FUNCTION`) runs only the Lambda part, up to FUNCTION:
# what it needs upstream is invoked first, then FUNCTION with its sample event, whose response is
# printed in full.
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY=""
if [ "${1:-}" = "--invoke" ]; then
  ONLY="${2:?usage: demo.sh --invoke ingest|quality|alert|aggregate|load|compact}"
  [ -d "functions/$ONLY" ] || { echo "no function crate functions/$ONLY" >&2; exit 2; }
fi
DEMO="${TMPDIR:-/tmp}/shoplake-demo"   # outside the watched crates: writes there trigger no rebuilds
# The names infra/template.yaml gives with StageName=demo in moto's account and region.
STAGE=demo
BUCKET="shoplake-$STAGE-data-123456789012-us-east-1"
GLUE_DATABASE="shoplake_$STAGE"
TODAY=$(date -u +%F)
rm -rf "$DEMO" && mkdir -p "$DEMO/events"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; echo "port $1 never opened" >&2; return 1; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# A throwaway PostgreSQL on 127.0.0.1 (as `postgres` when run as root: it refuses root), loaded
# with `lake load --postgres`, then a query over the star-schema views.
pg_demo() {
  local bin port dir url as=()
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$bin/initdb" ] || { echo "  PostgreSQL is not installed (make setup installs it)" >&2; return 1; }
  port=$(free_port); dir="$DEMO/postgres"; mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; as=(setpriv --reuid=postgres --regid=postgres --init-groups); fi
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync > "$dir/initdb.log"
  "${as[@]}" "$bin/postgres" -D "$dir/data" -h 127.0.0.1 -p "$port" -k "$dir" -c fsync=off > "$dir/server.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port"
  url="postgresql://postgres@127.0.0.1:$port/postgres"
  echo "  \$ lake load --lake $DEMO/lake --postgres $url"
  "$LAKE" load --lake "$DEMO/lake" --postgres "$url" | tail -2 | cut -c1-160 | sed 's/^/  /'
  "$bin/psql" -X -q "$url" -c "SELECT d.year_month, f.customer_region, COUNT(*) AS orders,
      SUM(CASE WHEN f.status IN ('paid', 'shipped', 'delivered') THEN f.total_amount ELSE 0 END) AS revenue,
      COUNT(DISTINCT f.payment_method) AS payment_methods
    FROM shoplake.fact_orders AS f JOIN shoplake.dim_date AS d ON d.date_key = f.date_key
    GROUP BY 1, 2 ORDER BY 1, 2"
}

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

step "Building (debug): the lake CLI and every function (the first build compiles for minutes)"
cargo build --workspace --bins
# Built: from here on cargo (and cargo lambda) only say something when it matters.
export CARGO_TERM_QUIET=true
LAKE=${CARGO_TARGET_DIR:-target}/debug/lake

step "1. Embedded: generate a week of exports with 5% defects, ingest them into $DEMO/lake"
"$LAKE" generate --json --out "$DEMO/exports" --customers 400 --orders 3000 --defect-rate 0.05 --days 7 \
  | python3 scripts/demo_tools.py - expected
if [ -z "$ONLY" ]; then
for ds in customers orders payments; do
  "$LAKE" ingest --json --lake "$DEMO/lake" --dataset "$ds" "$DEMO/exports/$ds.csv" > "$DEMO/ingest-$ds.json"
done
echo "  and a late orders export whose job dropped the total_amount column:"
head -50 "$DEMO/exports/orders.csv" | cut -d, -f1-6,8- > "$DEMO/exports/orders-late.csv"
if "$LAKE" ingest --lake "$DEMO/lake" --dataset orders "$DEMO/exports/orders-late.csv" > /dev/null 2> "$DEMO/late.err"; then
  echo "  the broken export was accepted: this is a bug" >&2; exit 1
fi
sed 's/^/  /' "$DEMO/late.err"
"$LAKE" show --lake "$DEMO/lake"

step "Quality gate: a verdict per batch, and the alert emails it caused (outbox/ in the lake)"
# Exit code 3: a batch failed its gate (a verdict shown above, not an error of the demo).
"$LAKE" quality --lake "$DEMO/lake" || [ $? -eq 3 ]

step "Gold: daily KPIs recomputed from silver (latest version of every key), last 3 days"
"$LAKE" aggregate --lake "$DEMO/lake" --days 3

step "Warehouse: the lake loaded into a throwaway PostgreSQL (the SQL sent to Redshift), star schema queried"
pg_demo
step "KPI report: one self-contained HTML page (charts, totals, quality verdicts, the gold rows)"
"$LAKE" report --lake "$DEMO/lake" --out "$DEMO/report.html"
fi

step "2. Lambda: ingest through cargo lambda against S3 on moto (127.0.0.1)"
MOTO_PORT=$(free_port)
# The launcher corrects moto's redshift-data for the Rust SDK and logs every statement.
MOTO_REDSHIFT_LOG="$DEMO/redshift.jsonl" python3 tests/it/support/moto_launcher.py -H 127.0.0.1 -p "$MOTO_PORT" > "$DEMO/moto.log" 2>&1 &
PIDS+=($!)
wait_port "$MOTO_PORT"
ENDPOINT="http://127.0.0.1:$MOTO_PORT"
S3="python3 scripts/demo_tools.py $ENDPOINT"
$S3 create-bucket "$BUCKET"
$S3 create-glue-database "$GLUE_DATABASE"
for ds in customers orders payments; do
  key="raw/$ds/$TODAY/$ds export.csv"
  $S3 upload "$BUCKET" "$key" "$DEMO/exports/$ds.csv"
  $S3 event "events/ingest-$ds.json" "$BUCKET" "$key" "$DEMO/events/ingest-$ds.json"
  echo "  uploaded s3://$BUCKET/$key"
done

TOPIC=$($S3 create-topic "shoplake-$STAGE-alerts")
echo "  bucket $BUCKET, topic $TOPIC, Glue database $GLUE_DATABASE"

INVOKE_PORT=$(free_port)
(
  export AWS_ENDPOINT_URL="$ENDPOINT" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
  exec cargo lambda watch --quiet --timeout 300 --invoke-address 127.0.0.1 --invoke-port "$INVOKE_PORT" \
    --env-var "AWS_ENDPOINT_URL=$ENDPOINT,AWS_REGION=us-east-1,AWS_ACCESS_KEY_ID=testing,AWS_SECRET_ACCESS_KEY=testing,RUST_LOG=info" \
    --env-var "ALERT_TOPIC_ARN=$TOPIC,LAKE_BUCKET=$BUCKET,GLUE_DATABASE=$GLUE_DATABASE,LAKE_WORK_DIR=$DEMO/work" \
    --env-var "REDSHIFT_WORKGROUP=shoplake,REDSHIFT_DATABASE=dev,REDSHIFT_COPY_ROLE_ARN=arn:aws:iam::123456789012:role/shoplake-copy"
) > "$DEMO/watch.log" 2>&1 &
PIDS+=($!)
wait_port "$INVOKE_PORT"
invoke() { timeout 320 cargo lambda invoke "$1" --invoke-address 127.0.0.1 --invoke-port "$INVOKE_PORT" --data-file "$2" > "$3"; }
# With --invoke FUNCTION: after FUNCTION has run, print its response and stop.
done_if() {
  if [ "$ONLY" = "$1" ]; then
    step "Response of $1 to $2"
    python3 -m json.tool "$3"
    exit 0
  fi
}
for ds in customers orders payments; do
  echo "  \$ cargo lambda invoke ingest --data-file events/ingest-$ds.json   (rewritten to the uploaded key)"
  invoke ingest "$DEMO/events/ingest-$ds.json" "$DEMO/invoke-$ds.json"
  python3 scripts/demo_tools.py - batch "$DEMO/invoke-$ds.json"
done
done_if ingest events/ingest-payments.json "$DEMO/invoke-payments.json"
echo "  redelivering the orders event (S3 delivers at least once):"
timeout 320 cargo lambda invoke ingest --invoke-address 127.0.0.1 --invoke-port "$INVOKE_PORT" \
  --data-file "$DEMO/events/ingest-orders.json" > "$DEMO/invoke-orders-again.json"
python3 scripts/demo_tools.py - batch "$DEMO/invoke-orders-again.json" --replayed

echo "  quality function on each manifest, alert function on its on-success destination record:"
for ds in customers orders payments; do
  python3 scripts/demo_tools.py - manifest-event events/quality-orders.json "$BUCKET" "$DEMO/invoke-$ds.json" "$DEMO/events/quality-$ds.json"
  invoke quality "$DEMO/events/quality-$ds.json" "$DEMO/quality-$ds.json"
  python3 scripts/demo_tools.py - destination "$DEMO/quality-$ds.json" "$DEMO/events/alert-$ds.json"
  done_if quality events/quality-orders.json "$DEMO/quality-$ds.json"
  invoke alert "$DEMO/events/alert-$ds.json" "$DEMO/alert-$ds.json"
done
done_if alert "the quality function's destination record" "$DEMO/alert-payments.json"

echo "  the 02:00 UTC schedule: aggregate, then load into Redshift (Data API):"
invoke aggregate events/aggregate-schedule.json "$DEMO/aggregate.json"
python3 scripts/demo_tools.py - show-json "$DEMO/aggregate.json"
done_if aggregate events/aggregate-schedule.json "$DEMO/aggregate.json"
$S3 kpis "$BUCKET" 3
invoke load events/load-schedule.json "$DEMO/load.json"
python3 scripts/demo_tools.py - show-load "$DEMO/load.json" "$DEMO/redshift.jsonl"
done_if load events/load-schedule.json "$DEMO/load.json"

echo "  the 03:00 UTC compaction (partitions with 8 or more small files of loaded batches, or 2 or more quiet for 48 hours):"
invoke compact events/compact-schedule.json "$DEMO/compact.json"
python3 scripts/demo_tools.py - show-json "$DEMO/compact.json"
done_if compact events/compact-schedule.json "$DEMO/compact.json"

echo "  the 04:00 UTC SLA check (the load above recorded its run) and the 5-minute digest flush:"
invoke alert events/alert-sla-check.json "$DEMO/alert-sla.json"
python3 scripts/demo_tools.py - show-json "$DEMO/alert-sla.json"
invoke alert events/alert-flush-digest.json "$DEMO/alert-flush.json"
python3 scripts/demo_tools.py - show-json "$DEMO/alert-flush.json"
echo "  the 15-minute arrival check (exports that landed after 01:45 UTC today count as late):"
invoke alert events/alert-arrival-check.json "$DEMO/alert-arrivals.json"
python3 scripts/demo_tools.py - show-json "$DEMO/alert-arrivals.json"

step "Alert emails published to SNS (moto)"
$S3 emails "$TOPIC"

step "Lake in s3://$BUCKET (moto)"
$S3 tree "$BUCKET"
echo
echo "Function logs (JSON): $DEMO/watch.log   Local lake: $DEMO/lake"
if [ -f "$DEMO/report.html" ]; then
  echo "KPI report (open it in a browser; it needs no network): $DEMO/report.html"
fi
