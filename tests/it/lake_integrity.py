"""Reads every dataset of a lake (processed/**/*.parquet) and gold (gold/**/*.parquet) with
DuckDB's glob and pyarrow's dataset reader, as a data engineer's script would, and prints per
table the rows each sees and how many rows repeat a (key, batch) pair (used by chaos tests)."""
import json
import os
import sys

import duckdb
import pyarrow.dataset as ds

lake = sys.argv[1]
report = {}
con = duckdb.connect()
tables = [("processed", d) for d in sorted(os.listdir(f"{lake}/processed"))] if os.path.isdir(f"{lake}/processed") else []
if os.path.isdir(f"{lake}/gold"):
    # gold/report/ holds the HTML report, not a table.
    tables += [("gold", d) for d in sorted(os.listdir(f"{lake}/gold")) if d != "report"]
for layer, name in tables:
    glob = f"{lake}/{layer}/{name}/**/*.parquet"
    rel = con.sql(f"select * from read_parquet('{glob}', hive_partitioning=true)")
    # Silver: a key once per batch. Gold: one row per value of its leading date and text columns
    # (day, region, currency; and payment method in payment_methods_daily).
    leading = []
    for column, kind in zip(rel.columns, rel.types):
        if str(kind) not in ("DATE", "VARCHAR"):
            break
        leading.append(column)
    key = ", ".join(rel.columns[:1] if layer == "processed" else leading)
    batch = "_batch_id" if "_batch_id" in rel.columns else "'gold'"
    rows = con.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true)").fetchall()[0][0]
    repeats = con.sql(
        f"select coalesce(sum(n - 1), 0) from (select count(*) n from read_parquet('{glob}', hive_partitioning=true) group by {key}, {batch})"
    ).fetchall()[0][0]
    table = ds.dataset(f"{lake}/{layer}/{name}", format="parquet", partitioning="hive").to_table()
    report[f"{layer}/{name}"] = {"duckdb_rows": rows, "pyarrow_rows": table.num_rows, "repeats": int(repeats)}
print(json.dumps(report))
