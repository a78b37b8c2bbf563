//! The generated Redshift SQL executed on a real engine: PostgreSQL (support/postgres.rs), through
//! the one translation in `src/warehouse/translate.rs` and `PostgresExecutor`. Lakes are built
//! with the `lake` binary, so COPY reads the very Parquet files the pipeline wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use polars::prelude::*;
use shoplake::contract::Registry;
use shoplake::stages::load::{BatchLoad, Loader};
use shoplake::storage::{LocalStore, ObjectStore};
use shoplake::warehouse::{PostgresExecutor, SqlExecutor, Warehouse, WarehouseError};

use crate::support::postgres::{self, rows};
use crate::support::{files, lake, read_parquet};

/// Forwards to PostgreSQL and remembers every batch (to replay one); can slip a statement in
/// before a batch's first `DROP TABLE` (to make a batch fail after its MERGE).
#[derive(Debug)]
pub struct Tee {
    inner: PostgresExecutor,
    pub batches: Mutex<Vec<Vec<String>>>,
    pub inject: Mutex<Option<String>>,
}

#[async_trait]
impl SqlExecutor for Tee {
    async fn execute_batch(&self, sqls: &[String]) -> Result<(), WarehouseError> {
        let mut sqls = sqls.to_vec();
        if let Some(bad) = self.inject.lock().unwrap().clone()
            && let Some(i) = sqls.iter().position(|s| s.starts_with("DROP TABLE"))
        {
            sqls.insert(i, bad);
        }
        self.batches.lock().unwrap().push(sqls.clone());
        self.inner.execute_batch(&sqls).await
    }

    async fn query_i64(&self, sql: &str) -> Result<i64, WarehouseError> {
        self.inner.query_i64(sql).await
    }

    async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        self.inner.query_rows(sql).await
    }
}

pub fn warehouse() -> Warehouse {
    Warehouse {
        schema: "shoplake".into(),
        copy_role_arn: "arn:aws:iam::000000000000:role/copy".into(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    lake: PathBuf,
    exports: PathBuf,
    store: Arc<LocalStore>,
    tee: Arc<Tee>,
    loader: Loader,
    client: tokio_postgres::Client,
}

/// An empty lake and a fresh database `name` with the warehouse schema created.
async fn fixture(name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let exports = dir.path().join("exports");
    std::fs::create_dir_all(&lake).unwrap();
    std::fs::create_dir_all(&exports).unwrap();
    let store = Arc::new(LocalStore::new(&lake).unwrap());
    let server = postgres::server();
    let url = server.fresh_database(name).await;
    let tee = Arc::new(Tee {
        inner: PostgresExecutor::connect(&url, store.clone())
            .await
            .unwrap(),
        batches: Mutex::default(),
        inject: Mutex::default(),
    });
    let loader = Loader::new(
        store.clone(),
        tee.clone(),
        warehouse(),
        Arc::new(Registry::builtin()),
    );
    loader.ensure_schema().await.unwrap();
    let client = server.client(name).await;
    Fixture {
        _dir: dir,
        lake,
        exports,
        store,
        tee,
        loader,
        client,
    }
}

const ORDERS: &str = "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n";

impl Fixture {
    /// Ingests one export with `lake ingest` and checks it with `lake quality`; its batch id.
    fn ingest(&self, dataset: &str, file: &str, csv: &str) -> String {
        let path = self.exports.join(file);
        std::fs::write(&path, csv).unwrap();
        let l = self.lake.to_str().unwrap();
        let (ok, out, err) = lake(&[
            "ingest",
            "--json",
            "--lake",
            l,
            "--dataset",
            dataset,
            path.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        let summary: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        let batch = summary["batch_id"].as_str().unwrap().to_owned();
        let (ok, _, err) = lake(&["quality", "--lake", l, "--batch", &batch]);
        assert!(ok, "{err}");
        batch
    }

    async fn load(&self, dataset: &str, batch: &str) -> BatchLoad {
        self.loader.load_batch(dataset, batch).await.unwrap()
    }

    async fn orders(&self) -> Vec<Vec<Option<String>>> {
        rows(&self.client, "SELECT order_id, status, total_amount, updated_at, customer_region, order_date, _batch_id FROM shoplake.orders ORDER BY order_id").await
    }

    async fn ledger(&self) -> Vec<Vec<Option<String>>> {
        rows(&self.client, "SELECT dataset, batch_id, rows_loaded FROM shoplake.load_ledger ORDER BY dataset, batch_id").await
    }

    /// The batch statements sent for `batch` (the one writing its ledger row).
    fn statements_of(&self, batch: &str) -> Vec<String> {
        self.tee
            .batches
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|b| {
                b.iter()
                    .any(|s| s.contains("load_ledger (dataset") && s.contains(batch))
            })
            .cloned()
            .unwrap_or_else(|| panic!("no load of {batch} was sent"))
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

#[tokio::test]
async fn batches_loaded_out_of_order_keep_the_latest_version_and_a_replay_changes_nothing() {
    let f = fixture("pg_out_of_order").await;
    let b1 = f.ingest(
        "orders",
        "orders-1.csv",
        &format!("{ORDERS}o1,c1,2026-11-20T10:00:00Z,placed,EU,EUR,10.00,1,2026-11-20T10:00:00Z\no2,c2,2026-11-20T11:00:00Z,placed,NA,USD,20.50,2,2026-11-20T11:00:00Z\n"),
    );
    let b2 = f.ingest(
        "orders",
        "orders-2.csv",
        &format!("{ORDERS}o1,c1,2026-11-20T10:00:00Z,paid,EU,EUR,10.00,1,2026-11-21T09:00:00Z\no3,c3,2026-11-21T08:00:00Z,paid,APAC,JPY,1234567890123456.78,3,2026-11-21T08:00:00Z\n"),
    );
    // The later batch first: the earlier one must not bring o1's old version back.
    assert!(matches!(
        f.load("orders", &b2).await,
        BatchLoad::Loaded { rows: 2, .. }
    ));
    assert!(matches!(
        f.load("orders", &b1).await,
        BatchLoad::Loaded { rows: 2, .. }
    ));
    let want = vec![
        vec![
            s("o1"),
            s("paid"),
            s("10.00"),
            s("2026-11-21 09:00:00"),
            s("EU"),
            s("2026-11-20"),
            s(&b2),
        ],
        vec![
            s("o2"),
            s("placed"),
            s("20.50"),
            s("2026-11-20 11:00:00"),
            s("NA"),
            s("2026-11-20"),
            s(&b1),
        ],
        // Money is exact: sixteen integer digits survive Parquet, COPY and MERGE.
        vec![
            s("o3"),
            s("paid"),
            s("1234567890123456.78"),
            s("2026-11-21 08:00:00"),
            s("APAC"),
            s("2026-11-21"),
            s(&b2),
        ],
    ];
    assert_eq!(f.orders().await, want);
    let ledger = f.ledger().await;
    assert_eq!(ledger.len(), 2, "{ledger:?}");

    // Replaying a loaded batch's very statements (a second run that missed the ledger lookup)
    // succeeds and changes nothing: the ledger is checked again inside the transaction.
    for batch in [&b1, &b2] {
        let statements = f.statements_of(batch);
        f.tee.inner.execute_batch(&statements).await.unwrap();
    }
    assert_eq!(f.orders().await, want);
    assert_eq!(f.ledger().await, ledger);
    // And through the loader: the ledger says it is loaded, so nothing is sent.
    let sent = f.tee.batches.lock().unwrap().len();
    assert!(matches!(
        f.load("orders", &b1).await,
        BatchLoad::Skipped { .. }
    ));
    assert_eq!(f.tee.batches.lock().unwrap().len(), sent);
}

/// The lake's version of every key of a dataset: greatest `updated_at`, then the later ingestion
/// (as gold and the lake's readers pick it): key → (updated_at µs, batch id).
fn lake_latest(lake_dir: &Path, dataset: &str, key: &str) -> BTreeMap<String, (i64, String)> {
    let registry = Registry::builtin();
    let df = shoplake::silver::read::scan_dataset(lake_dir, registry.get(dataset).unwrap())
        .unwrap()
        .sort_by_exprs(
            [col("updated_at"), col("_ingested_at"), col("_batch_id")],
            SortMultipleOptions::default(),
        )
        .unique_stable(Some(cols([key])), UniqueKeepStrategy::Last)
        .select([
            col(key),
            col("updated_at")
                .dt()
                .timestamp(TimeUnit::Microseconds)
                .alias("u"),
            col("_batch_id"),
        ])
        .collect()
        .unwrap();
    let keys = df.column(key).unwrap().str().unwrap().clone();
    let micros = df.column("u").unwrap().i64().unwrap().clone();
    let batches = df.column("_batch_id").unwrap().str().unwrap().clone();
    (0..df.height())
        .map(|i| {
            (
                keys.get(i).unwrap().to_owned(),
                (micros.get(i).unwrap(), batches.get(i).unwrap().to_owned()),
            )
        })
        .collect()
}

/// The warehouse's rows of a dataset: key → (updated_at µs, batch id).
async fn warehouse_latest(
    client: &tokio_postgres::Client,
    dataset: &str,
    key: &str,
) -> BTreeMap<String, (i64, String)> {
    let got = rows(
        client,
        &format!("SELECT {key}, (EXTRACT(EPOCH FROM updated_at) * 1000000)::bigint, _batch_id FROM shoplake.{dataset}"),
    )
    .await;
    let map: BTreeMap<String, (i64, String)> = got
        .iter()
        .map(|r| {
            (
                r[0].clone().unwrap(),
                (
                    r[1].as_ref().unwrap().parse().unwrap(),
                    r[2].clone().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(map.len(), got.len(), "every key exactly once in {dataset}");
    map
}

// Multi-threaded: the lake's reader (polars' lazy engine) blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_updated_at_keeps_the_later_ingested_version_as_the_lake_does() {
    let f = fixture("pg_ties").await;
    let row = |status: &str| {
        format!("{ORDERS}o9,c1,2026-11-20T10:00:00Z,{status},EU,EUR,10.00,1,2026-11-20T12:00:00Z\n")
    };
    let first = f.ingest("orders", "orders-a.csv", &row("placed"));
    let second = f.ingest("orders", "orders-b.csv", &row("shipped"));
    let lake = lake_latest(&f.lake, "orders", "order_id");
    assert_eq!(lake["o9"].1, second, "the lake keeps the later ingestion");
    // Loaded in the opposite order, the warehouse must still agree with the lake.
    f.load("orders", &second).await;
    f.load("orders", &first).await;
    assert_eq!(
        warehouse_latest(&f.client, "orders", "order_id").await,
        lake
    );
    assert_eq!(f.orders().await[0][1], s("shipped"));
}

#[tokio::test]
async fn a_failing_statement_rolls_the_whole_batch_back() {
    let f = fixture("pg_rollback").await;
    let b1 = f.ingest(
        "orders",
        "orders-1.csv",
        &format!("{ORDERS}o1,c1,2026-11-20T10:00:00Z,placed,EU,EUR,10.00,1,2026-11-20T10:00:00Z\n"),
    );
    let b2 = f.ingest(
        "orders",
        "orders-2.csv",
        &format!("{ORDERS}o1,c1,2026-11-20T10:00:00Z,paid,EU,EUR,10.00,1,2026-11-21T10:00:00Z\no2,c2,2026-11-21T10:00:00Z,paid,NA,USD,5.00,1,2026-11-21T10:00:00Z\n"),
    );
    f.load("orders", &b1).await;
    let (orders, ledger) = (f.orders().await, f.ledger().await);

    // A statement after the MERGE and the ledger insert fails: none of the batch may remain.
    let bad = "INSERT INTO shoplake.orders (order_id) VALUES ('broken')".to_owned();
    *f.tee.inject.lock().unwrap() = Some(bad.clone());
    let err = f
        .loader
        .load_batch("orders", &b2)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("null value") && err.contains(&bad), "{err}");
    assert_eq!(f.orders().await, orders);
    assert_eq!(f.ledger().await, ledger);

    // Nothing was left behind either (no staging table): the batch loads cleanly afterwards.
    *f.tee.inject.lock().unwrap() = None;
    assert!(matches!(
        f.load("orders", &b2).await,
        BatchLoad::Loaded { rows: 2, .. }
    ));
    assert_eq!(f.orders().await.len(), 2);
    assert_eq!(f.orders().await[0][1], s("paid"));
}

/// A `daily_kpis` row: every value as text but the floats, which are compared as numbers.
type KpiRow = (Vec<Option<String>>, Vec<Option<f64>>);

/// Every row of the gold `daily_kpis` Parquet files as text in the warehouse's spelling (floats
/// as numbers, compared apart): the independent reading the warehouse is compared with.
fn gold_rows(lake_dir: &Path) -> Vec<KpiRow> {
    let mut out = Vec::new();
    for file in files(&lake_dir.join("gold/daily_kpis")) {
        let df = read_parquet(&file);
        for row in 0..df.height() {
            let (mut text, mut floats) = (Vec::new(), Vec::new());
            for c in df.columns() {
                match c.get(row).unwrap() {
                    AnyValue::Null if c.dtype() == &DataType::Float64 => floats.push(None),
                    AnyValue::Float64(v) => floats.push(Some(v)),
                    AnyValue::Null => text.push(None),
                    AnyValue::Date(d) => text.push(Some(
                        (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                            + chrono::Days::new(d as u64))
                        .to_string(),
                    )),
                    AnyValue::Decimal(v, _, scale) => {
                        let cents = v.unsigned_abs();
                        let unit = 10u128.pow(scale as u32);
                        let sign = if v < 0 { "-" } else { "" };
                        text.push(Some(format!(
                            "{sign}{}.{:0>scale$}",
                            cents / unit,
                            cents % unit
                        )));
                    }
                    AnyValue::String(v) => text.push(Some(v.to_owned())),
                    AnyValue::StringOwned(v) => text.push(Some(v.to_string())),
                    AnyValue::Int64(v) => text.push(Some(v.to_string())),
                    other => panic!("unexpected gold value {other:?} in {}", c.name()),
                }
            }
            out.push((text, floats));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `daily_kpis` in the warehouse, split like [`gold_rows`].
async fn warehouse_kpis(client: &tokio_postgres::Client) -> Vec<KpiRow> {
    let floats = ["retention_rate", "payment_success_rate"];
    let columns = shoplake::gold::kpis::COLUMNS;
    let text: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| !floats.contains(c))
        .collect();
    let got = rows(
        client,
        &format!(
            "SELECT {}, {} FROM shoplake.daily_kpis",
            text.join(", "),
            floats.join(", ")
        ),
    )
    .await;
    let mut out: Vec<_> = got
        .into_iter()
        .map(|mut r| {
            let f = r.split_off(text.len());
            (
                r,
                f.into_iter()
                    .map(|v| v.map(|v| v.parse().unwrap()))
                    .collect(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn a_gold_month_is_replaced_all_or_nothing() {
    let f = fixture("pg_gold_month").await;
    let b1 = f.ingest(
        "orders",
        "orders-1.csv",
        &format!("{ORDERS}o1,c1,2026-11-20T10:00:00Z,paid,EU,EUR,10.00,1,2026-11-20T10:00:00Z\no2,c2,2026-11-20T11:00:00Z,paid,EU,EUR,0.05,1,2026-11-20T11:00:00Z\n"),
    );
    let (ok, _, err) = lake(&["aggregate", "--lake", f.lake.to_str().unwrap()]);
    assert!(ok, "{err}");
    f.load("orders", &b1).await;
    assert_eq!(f.loader.load_changed_months().await.unwrap(), ["2026-11"]);
    let gold = gold_rows(&f.lake);
    assert_eq!(gold.len(), 1);
    assert_eq!(gold[0].0[5], s("10.05"), "revenue, exact");
    assert_eq!(warehouse_kpis(&f.client).await, gold);

    // A replacement whose COPY fails leaves the month as it was (the DELETE is rolled back).
    let missing = f.store.uri("gold/daily_kpis/month=2026-11/missing.parquet");
    let err = f
        .tee
        .execute_batch(&warehouse().replace_month("2026-11", &missing))
        .await
        .unwrap_err();
    assert!(
        matches!(err, WarehouseError::Failed { ref statement, .. } if statement.starts_with("COPY")),
        "{err}"
    );
    assert_eq!(warehouse_kpis(&f.client).await, gold);
    // A replacement that succeeds replaces the month, never adds to it.
    let file = files(&f.lake.join("gold/daily_kpis"))[0].clone();
    let key = file
        .strip_prefix(&f.lake)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    f.tee
        .execute_batch(&warehouse().replace_month("2026-11", &f.store.uri(&key)))
        .await
        .unwrap();
    assert_eq!(warehouse_kpis(&f.client).await, gold);
}

/// `lake run` then `lake load --postgres` twice: every table holds the lake's latest version of
/// every key exactly once, `daily_kpis` equals gold, the star-schema views give gold's numbers,
/// and the second load changes nothing.
// Multi-threaded: the lake's reader (polars' lazy engine) blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_load_postgres_leaves_the_lake_and_gold_in_the_warehouse() {
    let server = postgres::server();
    let url = server.fresh_database("pg_lake_load").await;
    let dir = tempfile::tempdir().unwrap();
    let (input, lake_dir) = (dir.path().join("in"), dir.path().join("lake"));
    let (ok, _, err) = lake(&[
        "generate",
        "--out",
        input.to_str().unwrap(),
        "--customers",
        "60",
        "--orders",
        "300",
        "--seed",
        "16",
        "--defect-rate",
        "0.05",
        "--end-date",
        "2026-11-21",
        "--days",
        "40",
    ]);
    assert!(ok, "{err}");
    let l = lake_dir.to_str().unwrap();
    let (ok, _, err) = lake(&["run", "--lake", l, input.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = lake(&["load", "--lake", l, "--postgres", &url, "--json"]);
    assert!(ok, "{err}\n{out}");
    assert!(out.contains("\"outcome\":\"loaded\""), "{out}");

    let client = server.client("pg_lake_load").await;
    let snapshot = async |client: &tokio_postgres::Client| {
        let mut all = Vec::new();
        for table in [
            "customers",
            "orders",
            "payments",
            "daily_kpis",
            "load_ledger",
        ] {
            let order = if table == "load_ledger" {
                "dataset, batch_id"
            } else {
                "1, 2, 3"
            };
            let cols = if table == "load_ledger" {
                "dataset, batch_id, rows_loaded"
            } else {
                "*"
            };
            all.push(
                rows(
                    client,
                    &format!("SELECT {cols} FROM shoplake.{table} ORDER BY {order}"),
                )
                .await,
            );
        }
        all
    };
    for (dataset, key) in [
        ("customers", "customer_id"),
        ("orders", "order_id"),
        ("payments", "payment_id"),
    ] {
        let lake = lake_latest(&lake_dir, dataset, key);
        assert!(lake.len() > 20, "{dataset}: {}", lake.len());
        assert_eq!(
            warehouse_latest(&client, dataset, key).await,
            lake,
            "{dataset}"
        );
    }
    let gold = gold_rows(&lake_dir);
    assert!(gold.len() > 40, "{}", gold.len());
    assert_eq!(warehouse_kpis(&client).await, gold);

    // The star schema gives gold's order numbers for every (day, region, currency) with orders.
    let from_views = rows(&client, "SELECT f.date_key, f.customer_region, f.currency, COUNT(*), SUM(CASE WHEN f.status = 'cancelled' THEN 1 ELSE 0 END), COALESCE(SUM(CASE WHEN f.status IN ('paid', 'shipped', 'delivered') THEN f.total_amount END), 0.00), COUNT(DISTINCT CASE WHEN f.status <> 'cancelled' THEN f.customer_id END) FROM shoplake.fact_orders AS f JOIN shoplake.dim_date AS d ON d.date_key = f.date_key GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").await;
    let from_gold: Vec<Vec<Option<String>>> = gold
        .iter()
        .filter(|(t, _)| t[3].as_deref() != Some("0"))
        .map(|(t, _)| {
            vec![
                t[0].clone(),
                t[1].clone(),
                t[2].clone(),
                t[3].clone(),
                t[4].clone(),
                t[5].clone(),
                t[7].clone(),
            ]
        })
        .collect();
    assert_eq!(from_views, from_gold);

    let before = snapshot(&client).await;
    let (ok, out, err) = lake(&["load", "--lake", l, "--postgres", &url, "--json"]);
    assert!(ok, "{err}");
    assert!(
        !out.contains("\"outcome\":\"loaded\""),
        "nothing is loaded twice: {out}"
    );
    assert_eq!(
        snapshot(&client).await,
        before,
        "a second load changes nothing"
    );
}

/// Outbox alerts of one type.
fn outbox(lake_dir: &Path, alert_type: &str) -> Vec<String> {
    files(&lake_dir.join("outbox"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(alert_type))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// `lake load --postgres` outcomes by batch id, and whether the command succeeded.
fn load_cli(
    lake_dir: &Path,
    url: &str,
    extra: &[&str],
) -> (bool, BTreeMap<String, serde_json::Value>) {
    let mut args = vec![
        "load",
        "--lake",
        lake_dir.to_str().unwrap(),
        "--postgres",
        url,
        "--json",
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = lake(&args);
    // One JSON object: the load report.
    let outcomes = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|report| report["batches"].as_array().cloned().unwrap_or_default())
        .map(|v| (v["batch_id"].as_str().unwrap().to_owned(), v))
        .collect();
    let _ = err;
    (ok, outcomes)
}

#[tokio::test]
async fn a_batch_that_cannot_load_is_recorded_alerted_once_retried_and_never_blocks_the_others() {
    let f = fixture("pg_isolation").await;
    let url = postgres::server().url("pg_isolation");
    let csv = |id: &str, day: u32| {
        format!(
            "{ORDERS}{id},c1,2026-11-{day}T10:00:00Z,paid,EU,EUR,10.00,1,2026-11-{day}T10:00:00Z\n"
        )
    };
    let b1 = f.ingest("orders", "orders-1.csv", &csv("o1", 19));
    let b2 = f.ingest("orders", "orders-2.csv", &csv("o2", 20));
    let b3 = f.ingest("orders", "orders-3.csv", &csv("o3", 21));
    let (ok, _, err) = lake(&["aggregate", "--lake", f.lake.to_str().unwrap()]);
    assert!(ok, "{err}");
    // Batch 2's Parquet file becomes unreadable: its COPY fails.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(f.lake.join(format!("manifests/orders/{b2}.json"))).unwrap(),
    )
    .unwrap();
    let file = f.lake.join(manifest["files"][0]["key"].as_str().unwrap());
    let original = std::fs::read(&file).unwrap();
    std::fs::write(&file, b"not parquet").unwrap();

    let (ok, outcomes) = load_cli(&f.lake, &url, &[]);
    assert!(
        !ok,
        "a failed batch makes the command fail, after loading the rest"
    );
    assert_eq!(outcomes[&b1]["outcome"], "loaded");
    assert_eq!(outcomes[&b3]["outcome"], "loaded");
    assert_eq!(outcomes[&b2]["outcome"], "failed");
    assert_eq!(outcomes[&b2]["attempts"], 1);
    let keys =
        || async { rows(&f.client, "SELECT order_id FROM shoplake.orders ORDER BY 1").await };
    assert_eq!(keys().await, [[s("o1")], [s("o3")]]);
    assert_eq!(
        warehouse_kpis(&f.client).await,
        gold_rows(&f.lake),
        "gold still loads"
    );
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(f.lake.join(format!("runs/load_failures/orders/{b2}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["attempts"], 1);
    assert!(
        record["statement"]
            .as_str()
            .unwrap()
            .starts_with("COPY stage_raw_orders"),
        "{record}"
    );
    assert!(
        record["error"].as_str().unwrap().contains("Parquet"),
        "{record}"
    );
    let alerts = outbox(&f.lake, "load_failed");
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].contains(&b2) && alerts[0].contains("{\"retry\": \"<batch_id>\"}"),
        "{}",
        alerts[0]
    );

    // Later runs retry it (and page no more), a bounded number of times.
    for attempt in 2..=shoplake::stages::load::MAX_LOAD_ATTEMPTS {
        let (_, outcomes) = load_cli(&f.lake, &url, &[]);
        assert_eq!(outcomes[&b2]["outcome"], "failed");
        assert_eq!(outcomes[&b2]["attempts"], attempt);
    }
    let (ok, outcomes) = load_cli(&f.lake, &url, &[]);
    assert!(ok);
    assert_eq!(outcomes[&b2]["reason"], "retries_exhausted");
    assert_eq!(outbox(&f.lake, "load_failed").len(), 1, "exactly one alert");

    // An operator skips it (recorded with who and why), then fixes the file and retries it.
    let l = f.lake.to_str().unwrap();
    let (ok, _, err) = lake(&[
        "load",
        "--lake",
        l,
        "--skip",
        &b2,
        "--by",
        "dana",
        "--reason",
        "re-export pending",
    ]);
    assert!(ok, "{err}");
    let (_, outcomes) = load_cli(&f.lake, &url, &[]);
    assert_eq!(outcomes[&b2]["reason"], "skipped_by_operator");
    std::fs::write(&file, original).unwrap();
    let (ok, outcomes) = load_cli(&f.lake, &url, &["--retry", &b2]);
    assert!(ok);
    assert_eq!(outcomes[&b2]["outcome"], "loaded");
    assert_eq!(keys().await, [[s("o1")], [s("o2")], [s("o3")]]);
    assert!(
        !f.lake
            .join(format!("runs/load_failures/orders/{b2}.json"))
            .exists()
    );
    let (ok, _, err) = lake(&[
        "load", "--lake", l, "--skip", &b2, "--by", "dana", "--reason", "x",
    ]);
    assert!(!ok && err.contains("no load failure is recorded"), "{err}");
}

/// The built-in contracts in a directory, with `change` applied to customers.toml.
fn contracts_with(dir: &Path, change: impl Fn(String) -> String) -> Registry {
    std::fs::create_dir_all(dir).unwrap();
    crate::support::edited_contracts(dir, |name, text| {
        if name == "customers" {
            change(text)
        } else {
            text
        }
    })
}

#[tokio::test]
async fn a_new_optional_contract_column_reaches_the_warehouse_and_a_type_change_stops_the_load() {
    let f = fixture("pg_schema_change").await;
    let dir = f.lake.parent().unwrap().join("contracts");
    let new_column = |t: String| {
        // Before the [quality] table: a new optional column.
        t.replacen("\n[quality]", "\n[[columns]]\nname = \"loyalty_tier\"\ntype = \"string\"\nmax_bytes = 32\n\n[quality]", 1)
    };
    let registry = contracts_with(&dir.join("v2"), new_column);
    let loader = |registry: Registry| {
        Loader::new(
            f.store.clone(),
            f.tee.clone(),
            warehouse(),
            Arc::new(registry),
        )
    };
    loader(registry).ensure_schema().await.unwrap();
    let columns = "SELECT column_name, data_type, character_maximum_length, is_nullable FROM information_schema.columns WHERE table_schema = 'shoplake' AND table_name = 'customers' AND column_name = 'loyalty_tier'";
    assert_eq!(
        rows(&f.client, columns).await,
        [[s("loyalty_tier"), s("character varying"), s("32"), s("YES")]]
    );
    // Idempotent: a second run has nothing to add.
    let sent = f.tee.batches.lock().unwrap().len();
    loader(contracts_with(&dir.join("v2b"), new_column))
        .ensure_schema()
        .await
        .unwrap();
    assert_eq!(
        f.tee.batches.lock().unwrap().len(),
        sent + 1,
        "only the DDL batch"
    );

    // signup_date becomes a timestamp: the load stops, naming the column and what to do.
    let retyped = contracts_with(&dir.join("v3"), |t| {
        new_column(t).replacen(
            "name = \"signup_date\"\ntype = \"date\"",
            "name = \"signup_date\"\ntype = \"timestamp\"",
            1,
        )
    });
    let err = loader(retyped)
        .ensure_schema()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("column `signup_date`")
            && err.contains("TIMESTAMP in the contract")
            && err.contains("To go on:"),
        "{err}"
    );
}

/// A batch spread over more identity partitions than one BatchExecuteStatement can load (3
/// statements each, at most 40 in all) fails alone, saying why; nothing is sent for it.
#[tokio::test]
async fn a_batch_too_large_for_one_data_api_call_fails_alone_and_says_why() {
    let server = postgres::server();
    let url = server.fresh_database("pg_too_many_groups").await;
    let dir = tempfile::tempdir().unwrap();
    let contracts = dir.path().join("contracts");
    std::fs::create_dir(&contracts).unwrap();
    // The built-in datasets too: the star-schema views read them.
    for name in ["customers", "orders", "payments"] {
        let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("contracts/{name}.toml"));
        std::fs::copy(builtin, contracts.join(format!("{name}.toml"))).unwrap();
    }
    let kinds: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
    std::fs::write(
        contracts.join("events.toml"),
        format!(
            "name = \"events\"\nkey = \"event_id\"\nversion_column = \"updated_at\"\npartition_by = [{{ name = \"kind\", source = \"kind\" }}]\n\
             [[columns]]\nname = \"event_id\"\ntype = \"string\"\nrequired = true\n\
             [[columns]]\nname = \"kind\"\ntype = \"enum\"\nrequired = true\nvalues = [{}]\n\
             [[columns]]\nname = \"updated_at\"\ntype = \"timestamp\"\nrequired = true\n\
             [quality]\nreject_rate = {{ warn = 0.5, fail = 0.9 }}\n",
            kinds.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")
        ),
    )
    .unwrap();
    let csv: String = std::iter::once("event_id,kind,updated_at\n".to_owned())
        .chain(
            kinds
                .iter()
                .enumerate()
                .map(|(i, k)| format!("e{i},{k},2026-11-21T10:00:00Z\n")),
        )
        .collect();
    let file = dir.path().join("events.csv");
    std::fs::write(&file, csv).unwrap();
    let lake_dir = dir.path().join("lake");
    let (c, l) = (contracts.to_str().unwrap(), lake_dir.to_str().unwrap());
    let (ok, _, err) = lake(&[
        "--contracts",
        c,
        "ingest",
        "--lake",
        l,
        "--dataset",
        "events",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = lake(&["--contracts", c, "quality", "--lake", l]);
    assert!(ok, "{err}");
    let (ok, out, _) = lake(&[
        "--contracts",
        c,
        "load",
        "--lake",
        l,
        "--postgres",
        &url,
        "--json",
    ]);
    assert!(!ok);
    let report: serde_json::Value = out
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap();
    let failed = report["batches"][0].clone();
    assert_eq!(failed["outcome"], "failed", "{out}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("44 statements (12 partition groups) exceed the 40"),
        "{error}"
    );
    let client = server.client("pg_too_many_groups").await;
    assert_eq!(
        rows(&client, "SELECT COUNT(*) FROM shoplake.events").await,
        [[s("0")]]
    );
}
