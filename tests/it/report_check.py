"""Compares the data tables of a KPI report page with gold, read with DuckDB, for the page's
range, and recomputes payment_methods_daily from silver with DuckDB SQL (an independent
implementation). Prints JSON counts of rows and of disagreements (used by report.rs).

usage: report_check.py LAKE PAGE FROM TO"""
import datetime
import decimal
import json
import sys
from html.parser import HTMLParser

import duckdb

lake, page, start, end = sys.argv[1:5]


class Tables(HTMLParser):
    """Collects the header names and the `data-v` of every cell of each table with an id."""

    def __init__(self):
        super().__init__()
        self.tables, self.current, self.row = {}, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "id" in attrs:
            self.current = self.tables.setdefault(attrs["id"], {"columns": [], "rows": []})
        elif self.current is None:
            return
        elif tag == "th":
            self.current["columns"].append(None)
        elif tag == "tr":
            self.row = []
        elif tag == "td":
            self.row.append(attrs.get("data-v"))

    def handle_data(self, data):
        if self.current is not None and self.current["columns"] and self.current["columns"][-1] is None:
            self.current["columns"][-1] = data

    def handle_endtag(self, tag):
        if tag == "table":
            self.current = None
        elif tag == "tr" and self.current is not None and self.row:
            self.current["rows"].append(self.row)
            self.row = None


parser = Tables()
with open(page, encoding="utf-8") as f:
    parser.feed(f.read())

con = duckdb.connect()


def gold(table):
    rel = con.sql(
        f"select * exclude (month) from read_parquet('{lake}/gold/{table}/**/*.parquet', hive_partitioning=true) "
        f"where kpi_date between date '{start}' and date '{end}'"
    )
    return rel.columns, rel.fetchall()


def same(cell, value):
    if value is None:
        return cell == ""
    if isinstance(value, float):
        return cell != "" and float(cell) == value
    if isinstance(value, datetime.date):
        return cell == value.isoformat()
    if isinstance(value, decimal.Decimal):
        return cell == str(value)
    return cell == str(value)


report = {}
for table, keys in (("daily_kpis", 3), ("payment_methods_daily", 4)):
    columns, rows = gold(table)
    shown = parser.tables.get(table, {"columns": [], "rows": []})
    text = lambda v: v.isoformat() if isinstance(v, datetime.date) else str(v)
    by_key = {tuple(text(v) for v in row[:keys]): row for row in rows}
    mismatches = []
    for cells in shown["rows"]:
        row = by_key.pop(tuple(cells[:keys]), None)
        if row is None or len(cells) != len(row) or not all(same(c, v) for c, v in zip(cells, row)):
            mismatches.append({"page": cells, "gold": [str(v) for v in row] if row else None})
    report[table] = {
        "columns_match": shown["columns"] == columns,
        "page_columns": shown["columns"],
        "gold_columns": columns,
        "gold_rows": len(rows),
        "page_rows": len(shown["rows"]),
        "mismatches": len(mismatches),
        "first_mismatches": mismatches[:3],
        "missing_from_page": len(by_key),
    }

latest = """select * from (select *, row_number() over (
    partition by {key} order by updated_at desc, _ingested_at desc, _batch_id desc) rn
  from read_parquet('{lake}/processed/{ds}/**/*.parquet', hive_partitioning=true)) where rn = 1"""
con.sql(f"create view o as {latest.format(key='order_id', lake=lake, ds='orders')}")
con.sql(f"create view p as {latest.format(key='payment_id', lake=lake, ds='payments')}")
con.sql("""create view expected as select payment_date d, coalesce(case when o.order_date between p.payment_date - interval 90 day and p.payment_date
        then o.customer_region end, 'UNKNOWN') r, p.currency c,
    p.method m, count(*) payments,
    count(*) filter (where p.status = 'succeeded') payments_succeeded,
    count(*) filter (where p.status = 'failed') payments_failed,
    count(*) filter (where p.status = 'pending') payments_pending,
    count(*) filter (where p.status = 'refunded') payments_refunded,
    coalesce(sum(amount) filter (where p.status = 'succeeded'), 0) succeeded_amount,
    coalesce(sum(amount) filter (where p.status = 'refunded'), 0) refunded_amount
  from p left join o using (order_id) group by all""")
con.sql(f"create view g as select * from read_parquet('{lake}/gold/payment_methods_daily/**/*.parquet', hive_partitioning=true)")
report["methods_sql"] = {
    "gold_rows": con.sql("select count(*) from g").fetchall()[0][0],
    "expected_rows": con.sql("select count(*) from expected").fetchall()[0][0],
    "mismatches": con.sql("""select count(*) from expected s left join g on g.kpi_date = s.d
        and g.customer_region = s.r and g.currency = s.c and g.payment_method = s.m
        where g.kpi_date is null or g.payments <> s.payments or g.payments_succeeded <> s.payments_succeeded
           or g.payments_failed <> s.payments_failed or g.payments_pending <> s.payments_pending
           or g.payments_refunded <> s.payments_refunded or g.succeeded_amount <> s.succeeded_amount
           or g.refunded_amount <> s.refunded_amount""").fetchall()[0][0],
    "succeeded_amount_type": str(con.sql("select succeeded_amount from g limit 0").types[0]),
}
print(json.dumps(report, default=str))
