"""Reads a lake directory the way a data engineer would, with no options beyond hive
partitioning, and prints what DuckDB and pyarrow see as JSON (used by ingest_local.rs)."""
import json
import sys

import duckdb
import pyarrow.dataset as ds

lake = sys.argv[1]
report = {"duckdb": {}, "pyarrow": {}}
con = duckdb.connect()
for dataset in ["customers", "orders", "payments"]:
    rel = con.sql(f"select * from read_parquet('{lake}/processed/{dataset}/**/*.parquet')")
    types = dict(zip(rel.columns, [str(t) for t in rel.types]))
    rows = con.sql(f"select count(*) from read_parquet('{lake}/processed/{dataset}/**/*.parquet')").fetchall()[0][0]
    report["duckdb"][dataset] = {"rows": rows, **types}
    table = ds.dataset(f"{lake}/processed/{dataset}", format="parquet", partitioning="hive").to_table()
    entry = {"rows": table.num_rows, **{f.name: str(f.type) for f in table.schema}}
    if "customer_region" in table.column_names:
        entry["regions"] = sorted(set(table.column("customer_region").to_pylist()))
    report["pyarrow"][dataset] = entry
print(json.dumps(report))
