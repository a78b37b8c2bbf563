"""Recomputes daily_kpis from silver with DuckDB SQL (an independent implementation of the
issue's definitions) and prints, as JSON, how many gold rows disagree (used by gold_local.rs)."""
import json
import sys

import duckdb

lake = sys.argv[1]
con = duckdb.connect()
latest = """select * from (select *, row_number() over (
    partition by {key} order by updated_at desc, _ingested_at desc, _batch_id desc) rn
  from read_parquet('{lake}/processed/{ds}/**/*.parquet', hive_partitioning=true)) where rn = 1"""
con.sql(f"create view o as {latest.format(key='order_id', lake=lake, ds='orders')}")
con.sql(f"create view p as {latest.format(key='payment_id', lake=lake, ds='payments')}")
con.sql("""create view first_day as select customer_id, min(order_date) first_date
           from o where status <> 'cancelled' group by all""")
con.sql("""create view by_orders as select order_date d, customer_region r, currency c,
    count(*) orders_placed,
    count(*) filter (where status = 'cancelled') orders_cancelled,
    coalesce(sum(total_amount) filter (where status in ('paid','shipped','delivered')), 0) revenue,
    count(distinct customer_id) filter (where status <> 'cancelled') active_customers,
    count(distinct customer_id) filter (where status <> 'cancelled' and order_date = first_date) new_customers
  from o left join first_day using (customer_id) group by all""")
# A payment takes its order's region when the order lies within the payments contract's
# reference window (window_days = 90) before it, as gold defines it.
con.sql("""create view by_payments as select payment_date d, coalesce(case when o.order_date between p.payment_date - interval 90 day and p.payment_date
        then o.customer_region end, 'UNKNOWN') r, p.currency c,
    count(*) filter (where p.status in ('succeeded','failed')) payments_attempted,
    count(*) filter (where p.status = 'succeeded') payments_succeeded,
    count(*) filter (where p.status = 'failed') payments_failed,
    coalesce(sum(amount) filter (where p.status = 'refunded'), 0) refunded_amount
  from p left join o using (order_id) group by all""")
con.sql(f"create view gold as select * from read_parquet('{lake}/gold/daily_kpis/**/*.parquet', hive_partitioning=true)")
keys = "g.kpi_date = s.d and g.customer_region = s.r and g.currency = s.c"
report = {
    "gold_rows": con.sql("select count(*) from gold").fetchall()[0][0],
    "expected_rows": con.sql("select count(*) from (select d, r, c from by_orders union select d, r, c from by_payments)").fetchall()[0][0],
    "order_mismatches": con.sql(f"""select count(*) from by_orders s left join gold g on {keys}
        where g.kpi_date is null or g.orders_placed <> s.orders_placed or g.orders_cancelled <> s.orders_cancelled
           or g.revenue <> s.revenue or g.active_customers <> s.active_customers or g.new_customers <> s.new_customers
           or g.returning_customers <> s.active_customers - s.new_customers""").fetchall()[0][0],
    "payment_mismatches": con.sql(f"""select count(*) from by_payments s left join gold g on {keys}
        where g.kpi_date is null or g.payments_attempted <> s.payments_attempted or g.payments_succeeded <> s.payments_succeeded
           or g.payments_failed <> s.payments_failed or g.refunded_amount <> s.refunded_amount""").fetchall()[0][0],
    "types": {name: str(t) for name, t in zip(con.sql("select * from gold").columns, con.sql("select * from gold").types)},
}
print(json.dumps(report))
