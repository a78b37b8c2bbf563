"""The DuckDB peer of the aggregate for `make bench-history`: the gold KPIs in SQL over silver.

  bench_history_duckdb.py LAKE OUT_DIR THREADS   a full recompute; prints {"kpi_rows", "method_rows"}
  bench_history_duckdb.py --compare LAKE OUT_DIR  gold against that recompute (not timed)

The same work the aggregate's full recompute does: every silver file of orders and payments, the
latest version of each key (greatest updated_at, then _ingested_at, then _batch_id), then
`daily_kpis` and `payment_methods_daily` as src/gold/kpis.rs and src/gold/methods.rs define them
(each customer's first non-cancelled order over all of silver for new/returning; a payment's
region is its order's when the order lies within the payments contract's window_days = 90
before it, else UNKNOWN; averages rounded half away from zero to the cent), each
table written as one zstd Parquet file.
"""
import json
import sys

import duckdb

# Only the columns the KPIs use are read (DuckDB at its best: Parquet projection pushdown).
LATEST = """SELECT {columns} FROM (SELECT {columns}, row_number() OVER (
    PARTITION BY {key} ORDER BY updated_at DESC, _ingested_at DESC, _batch_id DESC) rn
  FROM read_parquet('{lake}/processed/{ds}/**/*.parquet', hive_partitioning = true)) WHERE rn = 1"""
ORDER_COLUMNS = "order_id, customer_id, status, currency, total_amount, order_date, customer_region"
PAYMENT_COLUMNS = "payment_id, order_id, status, method, amount, currency, payment_date"

DAILY_KPIS = """
WITH first_day AS (
  SELECT customer_id, min(order_date) first_date FROM o WHERE status <> 'cancelled' GROUP BY ALL
), by_orders AS (
  SELECT order_date kpi_date, customer_region, currency,
    count(*) orders_placed,
    count(*) FILTER (WHERE status = 'cancelled') orders_cancelled,
    coalesce(sum(total_amount) FILTER (WHERE status IN ('paid', 'shipped', 'delivered')), 0) revenue,
    count(*) FILTER (WHERE status IN ('paid', 'shipped', 'delivered')) revenue_orders,
    count(DISTINCT customer_id) FILTER (WHERE status <> 'cancelled') active_customers,
    count(DISTINCT customer_id) FILTER (WHERE status <> 'cancelled' AND order_date = first_date)
      new_customers
  FROM o LEFT JOIN first_day USING (customer_id) GROUP BY ALL
), by_payments AS (
  SELECT payment_date kpi_date, coalesce(CASE WHEN o.order_date BETWEEN p.payment_date - INTERVAL 90 DAY AND p.payment_date
    THEN o.customer_region END, 'UNKNOWN') customer_region,
    p.currency,
    count(*) FILTER (WHERE p.status IN ('succeeded', 'failed')) payments_attempted,
    count(*) FILTER (WHERE p.status = 'succeeded') payments_succeeded,
    count(*) FILTER (WHERE p.status = 'failed') payments_failed,
    coalesce(sum(amount) FILTER (WHERE p.status = 'refunded'), 0) refunded_amount
  FROM p LEFT JOIN o USING (order_id) GROUP BY ALL
), joined AS (
  SELECT kpi_date, customer_region, currency,
    coalesce(orders_placed, 0) orders_placed, coalesce(orders_cancelled, 0) orders_cancelled,
    coalesce(revenue, 0) revenue, coalesce(revenue_orders, 0) revenue_orders,
    coalesce(active_customers, 0) active_customers, coalesce(new_customers, 0) new_customers,
    coalesce(payments_attempted, 0) payments_attempted,
    coalesce(payments_succeeded, 0) payments_succeeded,
    coalesce(payments_failed, 0) payments_failed, coalesce(refunded_amount, 0) refunded_amount
  FROM by_orders FULL JOIN by_payments USING (kpi_date, customer_region, currency)
)
SELECT kpi_date, customer_region, currency, orders_placed, orders_cancelled,
  CAST(revenue AS DECIMAL(18, 2)) revenue,
  -- Revenue is never negative, so half away from zero is half up on whole cents.
  CASE WHEN revenue_orders > 0 THEN CAST(
    (CAST(revenue * 100 AS HUGEINT) * 2 + revenue_orders) // (2 * revenue_orders) AS DECIMAL(18, 0))
    / 100 END::DECIMAL(18, 2) avg_order_value,
  active_customers, new_customers, active_customers - new_customers returning_customers,
  CASE WHEN active_customers > 0 THEN (active_customers - new_customers) / active_customers END
    retention_rate,
  payments_attempted, payments_succeeded, payments_failed,
  CASE WHEN payments_attempted > 0 THEN payments_succeeded / payments_attempted END
    payment_success_rate,
  CAST(refunded_amount AS DECIMAL(18, 2)) refunded_amount
FROM joined ORDER BY kpi_date, customer_region, currency
"""

METHODS = """
SELECT payment_date kpi_date, coalesce(CASE WHEN o.order_date BETWEEN p.payment_date - INTERVAL 90 DAY AND p.payment_date
    THEN o.customer_region END, 'UNKNOWN') customer_region, p.currency,
  p.method payment_method, count(*) payments,
  count(*) FILTER (WHERE p.status = 'succeeded') payments_succeeded,
  count(*) FILTER (WHERE p.status = 'failed') payments_failed,
  count(*) FILTER (WHERE p.status = 'pending') payments_pending,
  count(*) FILTER (WHERE p.status = 'refunded') payments_refunded,
  CAST(coalesce(sum(amount) FILTER (WHERE p.status = 'succeeded'), 0) AS DECIMAL(18, 2))
    succeeded_amount,
  CAST(coalesce(sum(amount) FILTER (WHERE p.status = 'refunded'), 0) AS DECIMAL(18, 2))
    refunded_amount
FROM p LEFT JOIN o USING (order_id) GROUP BY ALL ORDER BY ALL
"""

# Columns compared exactly (rates as derived doubles: rounded, so both sides' division agrees).
KPI_COLUMNS = """CAST(kpi_date AS VARCHAR) kpi_date, customer_region, currency, orders_placed,
  orders_cancelled, CAST(revenue AS VARCHAR) revenue, CAST(avg_order_value AS VARCHAR) aov,
  active_customers, new_customers, returning_customers, round(retention_rate, 9) rr,
  payments_attempted, payments_succeeded, payments_failed, round(payment_success_rate, 9) psr,
  CAST(refunded_amount AS VARCHAR) refunded_amount"""
METHOD_COLUMNS = """CAST(kpi_date AS VARCHAR) kpi_date, customer_region, currency, payment_method,
  payments, payments_succeeded, payments_failed, payments_pending, payments_refunded,
  CAST(succeeded_amount AS VARCHAR) succeeded_amount, CAST(refunded_amount AS VARCHAR) refunded"""


def recompute(lake, out, threads):
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    for table, key, ds, columns in (("o", "order_id", "orders", ORDER_COLUMNS),
                                    ("p", "payment_id", "payments", PAYMENT_COLUMNS)):
        latest = LATEST.format(key=key, lake=lake, ds=ds, columns=columns)
        con.execute(f"CREATE TEMP TABLE {table} AS {latest}")
    rows = {}
    for name, query in (("kpi_rows", DAILY_KPIS), ("method_rows", METHODS)):
        path = f"{out}/{'daily_kpis' if name == 'kpi_rows' else 'payment_methods_daily'}.parquet"
        con.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
        rows[name] = con.execute(f"SELECT count(*) FROM '{path}'").fetchone()[0]
    print(json.dumps(rows))


def compare(lake, out):
    """Rows of gold that DuckDB's recompute does not have, and the other way round."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    result = {}
    for table, columns in (("daily_kpis", KPI_COLUMNS), ("payment_methods_daily", METHOD_COLUMNS)):
        gold = (f"SELECT {columns} FROM read_parquet('{lake}/gold/{table}/**/*.parquet', "
                f"hive_partitioning = true)")
        peer = f"SELECT {columns} FROM '{out}/{table}.parquet'"
        only_gold = con.execute(f"SELECT count(*) FROM ({gold} EXCEPT ALL {peer})").fetchone()[0]
        only_peer = con.execute(f"SELECT count(*) FROM ({peer} EXCEPT ALL {gold})").fetchone()[0]
        result[table] = {"only_gold": only_gold, "only_duckdb": only_peer}
    result["equal"] = all(r["only_gold"] == 0 and r["only_duckdb"] == 0
                          for r in result.values())
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        recompute(sys.argv[1], sys.argv[2], int(sys.argv[3]))
