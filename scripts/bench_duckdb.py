"""The DuckDB peer of `lake ingest` for `make bench`: the orders contract's rules in SQL.

  bench_duckdb.py CSV OUT_DIR THREADS   prints {"rows_written": N} as JSON

Same work as ours: every column read as text and typed row by row (a bad row is dropped, not
fatal), the contract's rules (required, timestamps, enums, upper-cased currency of three letters,
decimal(18,2) >= 0 with at most two decimals, int32 >= 1; enums match in any case and are
stored as the contract spells them), latest-wins dedup by order_id on
updated_at, and a hive-partitioned zstd Parquet write by order_date (UTC) and customer_region.
Equal versions of a key tie-break arbitrarily here (ours: the later line), which clean exports
never have.
"""
import json
import sys

import duckdb

csv, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute("SET TimeZone = 'UTC'")
con.execute("SET preserve_insertion_order = false")

COLUMNS = ["order_id", "customer_id", "order_ts", "status", "customer_region", "currency",
           "total_amount", "item_count", "updated_at"]
columns = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in COLUMNS) + "}"

query = f"""
COPY (
  WITH src AS (
    SELECT * FROM read_csv('{csv}', header = true, auto_detect = false, columns = {columns},
                           quote = '"', escape = '"', strict_mode = false)
  ),
  typed AS (
    SELECT trim(order_id) AS order_id, trim(customer_id) AS customer_id,
           TRY_CAST(trim(order_ts) AS TIMESTAMPTZ) AS order_ts,
           lower(trim(status)) AS status, upper(trim(customer_region)) AS customer_region,
           upper(trim(currency)) AS currency,
           trim(total_amount) AS total_amount_text,
           TRY_CAST(trim(total_amount) AS DECIMAL(18, 2)) AS total_amount,
           TRY_CAST(trim(item_count) AS INTEGER) AS item_count,
           TRY_CAST(trim(updated_at) AS TIMESTAMPTZ) AS updated_at
    FROM src
  ),
  valid AS (
    SELECT * FROM typed
    WHERE coalesce(order_id, '') <> '' AND coalesce(customer_id, '') <> ''
      AND order_ts IS NOT NULL AND updated_at IS NOT NULL
      AND status IN ('placed', 'paid', 'shipped', 'delivered', 'cancelled', 'returned')
      AND customer_region IN ('NA', 'EU', 'APAC', 'LATAM', 'MEA')
      AND regexp_full_match(currency, '[A-Z]{{3}}')
      AND regexp_full_match(total_amount_text, '[+-]?[0-9]+(\\.[0-9]{{1,2}})?')
      AND total_amount >= 0
      AND item_count >= 1
  )
  SELECT order_id, customer_id, order_ts, status, currency, total_amount, item_count, updated_at,
         CAST(timezone('UTC', order_ts) AS DATE) AS order_date, customer_region
  FROM valid
  QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY updated_at DESC) = 1
) TO '{out}' (FORMAT PARQUET, PARTITION_BY (order_date, customer_region), COMPRESSION zstd)
"""
written = con.execute(query).fetchone()[0]
print(json.dumps({"rows_written": written}))
