//! Crashes at every write: each stage is run over a store that faults its Nth write (refused,
//! or done and then reported failed), then retried on a healthy store. The lake must end equal
//! to an uninterrupted run's, with no temporary object or claim left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::TimeZone;
use polars::prelude::*;
use serde_json::Value;
use shoplake::alert::OutboxNotifier;
use shoplake::catalog::LocalCatalog;
use shoplake::contract::Registry;
use shoplake::stages::aggregate::{AggregateRequest, Aggregator};
use shoplake::stages::alert::{AlertRequest, AlertService, AlertSettings};
use shoplake::stages::ingest::{IngestRequest, IngestService};
use shoplake::stages::load::Loader;
use shoplake::stages::quality::QualityService;
use shoplake::storage::{LocalStore, ObjectStore};
use shoplake::warehouse::{RecordingExecutor, Warehouse};

use crate::support::faulty::{Fault, FaultyStore};
use crate::support::files;

const CUSTOMERS: &str = "customer_id,email,customer_region,signup_date,updated_at\n\
C1,a@x.io,EU,2026-10-01,2026-11-20T00:00:00Z\n\
C2,b@x.io,NA,2026-10-02,2026-11-20T00:00:00Z\n\
C3,not-an-email,APAC,2026-10-03,2026-11-20T00:00:00Z\n";

fn orders_csv() -> String {
    let mut csv = String::from(
        "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
    );
    for i in 0..40 {
        let (day, region) = (19 + i % 3, ["EU", "NA", "APAC", "LATAM", "MEA"][i % 5]);
        let status = if i % 7 == 0 { "cancelled" } else { "paid" };
        csv += &format!(
            "O{i},C{},2026-11-{day}T10:00:00Z,{status},{region},EUR,{}.50,1,2026-11-{day}T10:00:00Z\n",
            i % 3 + 1,
            i + 1
        );
    }
    csv += "O99,C1,yesterday,paid,EU,EUR,1.00,1,2026-11-20T10:00:00Z\n";
    csv
}

const PAYMENTS: &str = "payment_id,order_id,payment_ts,method,status,amount,currency,updated_at\n\
P1,O1,2026-11-20T11:00:00Z,card,succeeded,2.50,EUR,2026-11-20T11:00:00Z\n\
P2,O2,2026-11-21T11:00:00Z,paypal,failed,3.50,EUR,2026-11-21T11:00:00Z\n\
P3,O404,2026-11-21T12:00:00Z,card,refunded,1.00,EUR,2026-11-21T12:00:00Z\n";

/// The same lake directory, emptied and given the same exports with the same modification
/// times, so every trial has the same batch ids as the baseline.
fn fresh_lake(lake: &Path) {
    let _ = std::fs::remove_dir_all(lake);
    let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
    for (dataset, body) in [
        ("customers", CUSTOMERS.to_owned()),
        ("orders", orders_csv()),
        ("payments", PAYMENTS.to_owned()),
    ] {
        let dir = lake.join("raw").join(dataset);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{dataset}.csv"));
        std::fs::write(&path, body).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
}

fn registry() -> Arc<Registry> {
    Arc::new(Registry::builtin())
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap()
}

async fn ingest_all(store: Arc<dyn ObjectStore>) -> Result<(), String> {
    ingest_with(store, false, registry()).await
}

/// The contracts after a change that moves files: orders partitioned by day only.
fn repartitioned() -> Arc<Registry> {
    let dir = tempfile::tempdir().unwrap();
    Arc::new(crate::support::edited_contracts(
        dir.path(),
        |name, mut text| {
            if name == "orders" {
                let from = text.find("partition_by").unwrap();
                // The list spans lines up to a `]` of its own.
                let to = from + text[from..].find("\n]").unwrap() + 2;
                text.replace_range(
                from..to,
                r#"partition_by = [{ name = "order_date", source = "order_ts", transform = "utc_date" }]"#,
            );
            }
            text
        },
    ))
}

/// After a contract change, `lake ingest --force`: every batch rewritten under other names.
async fn ingest_forced(store: Arc<dyn ObjectStore>) -> Result<(), String> {
    ingest_with(store, true, repartitioned()).await
}

/// After the same change, an ordinary delivery.
async fn ingest_changed(store: Arc<dyn ObjectStore>) -> Result<(), String> {
    ingest_with(store, false, repartitioned()).await
}

async fn ingest_with(
    store: Arc<dyn ObjectStore>,
    force: bool,
    registry: Arc<Registry>,
) -> Result<(), String> {
    ingest_these(store, force, registry, &["customers", "orders", "payments"]).await
}

async fn ingest_these(
    store: Arc<dyn ObjectStore>,
    force: bool,
    registry: Arc<Registry>,
    datasets: &[&str],
) -> Result<(), String> {
    let stores = store.clone();
    let settings = shoplake::ingest::IngestSettings {
        force,
        ..Default::default()
    };
    let service = IngestService::new(Arc::new(move |_| stores.clone()), registry, settings)
        .with_catalog(Arc::new(LocalCatalog::new(store, "shoplake")));
    for dataset in datasets {
        let key = format!("raw/{dataset}/{dataset}.csv");
        service
            .ingest(IngestRequest::object("lake", &key))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What `lake quality` does: stale claims swept, verdicts never alerted re-sent, unchecked
/// batches checked and alerted.
async fn check_and_alert(store: Arc<dyn ObjectStore>) -> Result<(), String> {
    shoplake::state::LakeState::new(store.clone())
        .sweep_claims("claims/")
        .await
        .map_err(|e| e.to_string())?;
    let stores = store.clone();
    let quality = QualityService::new(Arc::new(move |_| stores.clone()), registry());
    let alerts = AlertService::new(
        store.clone(),
        Arc::new(OutboxNotifier::new(store.clone())),
        AlertSettings::default(),
    );
    let mut reports = quality
        .unalerted_reports("lake")
        .await
        .map_err(|e| e.to_string())?;
    reports.extend(
        quality
            .check_unchecked("lake", now())
            .await
            .map_err(|e| e.to_string())?,
    );
    for r in reports {
        alerts
            .handle_all(vec![AlertRequest::Quality(Box::new(r))], now())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn aggregate(store: Arc<dyn ObjectStore>) -> Result<(), String> {
    // A few customers per first-order bucket: a crash can fall between the buckets' writes.
    Aggregator::new(store.clone(), registry(), std::env::temp_dir())
        .with_bucket_customers(2)
        .with_catalog(Arc::new(LocalCatalog::new(store, "shoplake")))
        .aggregate(AggregateRequest::Scheduled {})
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// As [`aggregate`], with every changed first-order bucket's night kept as a delta beside its
/// base (never folded): a crash can fall between the deltas' writes. Four customers a bucket,
/// so the next night's five customers stay in the two buckets [`aggregate`] made of three (more
/// would double them, and doubling writes bases).
async fn aggregate_with_deltas(store: Arc<dyn ObjectStore>) -> Result<(), String> {
    Aggregator::new(store.clone(), registry(), std::env::temp_dir())
        .with_bucket_customers(4)
        .with_delta_share(0)
        .with_catalog(Arc::new(LocalCatalog::new(store.clone(), "shoplake")))
        .aggregate(AggregateRequest::Scheduled {})
        .await
        .map_err(|e| e.to_string())?;
    let pointer = store
        .get(shoplake::layout::AGGREGATE_STATE_KEY)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no aggregate state")?;
    let pointer: serde_json::Value = serde_json::from_slice(&pointer).map_err(|e| e.to_string())?;
    let deltas = pointer["first_orders_deltas"]
        .as_array()
        .map_or(0, |d| d.iter().filter(|k| k.is_string()).count());
    if deltas < 2 {
        return Err(format!(
            "the night should write a delta in each of its two buckets: {pointer}"
        ));
    }
    Ok(())
}

/// A second night's orders, ingested: new customers, and C1's first order cancelled (its first
/// order day moves: a search), so the nightly aggregate after it changes every first-order bucket.
async fn ingest_next_night(store: Arc<dyn ObjectStore>) -> Result<(), String> {
    let root = store
        .local_root()
        .expect("set up on a local lake")
        .to_owned();
    let path = root.join("raw/orders/orders-2.csv");
    std::fs::write(
        &path,
        "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n\
         O100,C4,2026-11-21T15:00:00Z,paid,EU,EUR,5.00,1,2026-11-21T15:00:00Z\n\
         O101,C5,2026-11-21T16:00:00Z,paid,NA,EUR,6.00,1,2026-11-21T16:00:00Z\n\
         O3,C1,2026-11-19T10:00:00Z,cancelled,LATAM,EUR,4.50,1,2026-11-21T18:00:00Z\n",
    )
    .map_err(|e| e.to_string())?;
    // The same batch id in every trial.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| {
            f.set_modified(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_100_000),
            )
        })
        .map_err(|e| e.to_string())?;
    let stores = store.clone();
    IngestService::new(
        Arc::new(move |_| stores.clone()),
        registry(),
        Default::default(),
    )
    .with_catalog(Arc::new(LocalCatalog::new(store, "shoplake")))
    .ingest(IngestRequest::object("lake", "raw/orders/orders-2.csv"))
    .await
    .map(drop)
    .map_err(|e| e.to_string())
}

async fn load(store: Arc<dyn ObjectStore>) -> Result<(), String> {
    let warehouse = Warehouse {
        schema: "shoplake".into(),
        copy_role_arn: "arn:aws:iam::1:role/copy".into(),
    };
    Loader::new(
        store,
        Arc::new(RecordingExecutor::new()),
        warehouse,
        registry(),
    )
    .load_pending(now())
    .await
    .map(drop)
    .map_err(|e| e.to_string())
}

/// Fields that record when something ran, not what it produced.
const CLOCK_FIELDS: &[&str] = &[
    "ingested_at",
    "evaluated_at",
    "loaded_at",
    "handled_at",
    "sent_at",
];

fn without_clock(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !CLOCK_FIELDS.contains(&k.as_str()));
            map.values_mut().for_each(without_clock);
        }
        Value::Array(items) => items.iter_mut().for_each(without_clock),
        _ => {}
    }
}

fn parquet_rows(path: &Path) -> String {
    let df = ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap();
    let df = df.drop("_ingested_at").unwrap_or(df);
    let mut rows: Vec<String> = (0..df.height())
        .map(|i| format!("{:?}", df.get_row(i).unwrap().0))
        .collect();
    rows.sort();
    format!("{:?} {}", df.get_column_names(), rows.join("\n"))
}

/// What the lake holds, by key, with clock fields and lineage times left out. `_tmp/` (scratch)
/// and `claims/` are checked apart; `alerts/` state is timing, and `outbox/` is counted apart.
fn snapshot(lake: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for path in files(lake) {
        let key = path
            .strip_prefix(lake)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if ["_tmp/", "claims/", "alerts/", "outbox/", "raw/"]
            .iter()
            .any(|p| key.starts_with(p))
        {
            continue;
        }
        let text = if key.ends_with(".parquet") {
            parquet_rows(&path)
        } else if key.ends_with(".json") {
            let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            without_clock(&mut v);
            if key.starts_with("runs/load/") {
                // The day's run record tells what that run did; a retry did the rest.
                v = Value::Null;
            }
            if key == "runs/loaded/gold_months.json" {
                // Month → ETag of the gold object loaded: the ETag is the file's mtime here.
                v = Value::from(v.as_object().unwrap().keys().cloned().collect::<Vec<_>>());
            }
            v.to_string()
        } else {
            String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()
        };
        out.insert(key, text);
    }
    out
}

/// Nothing half-written or held is left: no file in any scratch but the lock files, no claim.
fn assert_clean(lake: &Path, what: &str) {
    let scratch: Vec<PathBuf> = files(&lake.join("_tmp"))
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            ![".owner.lock", "cas.lock", ".creation.lock"].contains(&name.as_ref())
        })
        .collect();
    assert!(
        scratch.is_empty(),
        "{what}: temporary files left: {scratch:?}"
    );
    let claims = files(&lake.join("claims"));
    assert!(claims.is_empty(), "{what}: claims left: {claims:?}");
    for f in files(lake) {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            !name.starts_with('.') || name.ends_with(".lock"),
            "{what}: {f:?}"
        );
    }
}

fn outbox(lake: &Path) -> usize {
    files(&lake.join("outbox")).len()
}

type StageFn =
    fn(Arc<dyn ObjectStore>) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// Runs `setup` then `stage` cleanly for the baseline; then, for every write of the stage and
/// both kinds of fault, `setup`, the faulted stage (which must fail), and a healthy retry.
async fn crash_at_every_write(name: &str, setup: &[StageFn], stage: StageFn) {
    crash_then(name, setup, stage, stage).await;
}

/// As [`crash_at_every_write`], with `retry` run after the crash instead of the stage itself.
async fn crash_then(name: &str, setup: &[StageFn], stage: StageFn, retry: StageFn) {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let prepare = async |lake: &Path| {
        fresh_lake(lake);
        for step in setup {
            let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(lake).unwrap());
            step(store).await.unwrap();
        }
    };
    prepare(&lake).await;
    let counting = Arc::new(FaultyStore::counting(Arc::new(
        LocalStore::new(&lake).unwrap(),
    )));
    stage(counting.clone()).await.unwrap();
    let writes = counting.writes();
    drop(counting);
    let baseline = snapshot(&lake);
    let emails = outbox(&lake);
    assert!(writes > 2, "{name}: {writes} writes");

    for nth in 1..=writes {
        for fault in [Fault::Fail, Fault::Abort] {
            let what = format!("{name}, {fault:?} at write {nth} of {writes}");
            prepare(&lake).await;
            let faulty = Arc::new(FaultyStore::failing(
                Arc::new(LocalStore::new(&lake).unwrap()),
                nth,
                fault,
            ));
            let crashed = stage(faulty.clone()).await;
            assert!(crashed.is_err(), "{what}: the fault was not reported");
            let faulted = faulty.faulted().unwrap_or_default();
            drop(faulty);
            let healthy: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&lake).unwrap());
            retry(healthy.clone())
                .await
                .unwrap_or_else(|e| panic!("{what}: the retry failed: {e}"));
            drop(healthy);
            let got = snapshot(&lake);
            for (key, want) in &baseline {
                assert_eq!(got.get(key), Some(want), "{what}: {key}");
            }
            let extra: Vec<&String> = got.keys().filter(|k| !baseline.contains_key(*k)).collect();
            assert!(extra.is_empty(), "{what}: extra objects {extra:?}");
            // Never a lost page. Twice only when the crash fell between a publish and its
            // record: the publish itself done but unanswered, or the record that follows it.
            let sent = outbox(&lake);
            let between = (fault == Fault::Abort && faulted.starts_with("outbox/"))
                || faulted.starts_with("alerts/sent/");
            assert!(
                sent == emails || (between && sent == emails + 1),
                "{what} ({faulted}): {sent} emails, uninterrupted {emails}"
            );
            assert_clean(&lake, &what);
        }
    }
}

macro_rules! stage {
    ($f:ident) => {
        |s: Arc<dyn ObjectStore>| -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>>>> {
            Box::pin($f(s))
        }
    };
}

#[tokio::test]
async fn ingest_crashed_at_any_write_then_retried_equals_an_uninterrupted_run() {
    crash_at_every_write("ingest", &[], stage!(ingest_all)).await;
}

/// A contract change, then a forced re-run that dies at any write, then an ordinary delivery.
/// The delivery may replay the old batch (the rewrite had not begun) or finish the new one, but
/// never replay a manifest whose files the rewrite already removed: every file a manifest names
/// exists, and silver holds exactly the rows the manifests say.
#[tokio::test]
async fn a_forced_rewrite_crashed_at_any_write_then_delivered_again_loses_no_row() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let counting = || {
        fresh_lake(&lake);
        Arc::new(FaultyStore::counting(Arc::new(
            LocalStore::new(&lake).unwrap(),
        )))
    };
    let store = counting();
    ingest_all(store.clone()).await.unwrap();
    let before = store.writes();
    ingest_forced(store.clone()).await.unwrap();
    let writes = store.writes() - before;
    for nth in 1..=writes {
        for fault in [Fault::Fail, Fault::Abort] {
            let what = format!("forced rewrite, {fault:?} at write {nth} of {writes}");
            fresh_lake(&lake);
            let healthy: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&lake).unwrap());
            ingest_all(healthy.clone()).await.unwrap();
            let faulty = Arc::new(FaultyStore::failing(healthy.clone(), nth, fault));
            assert!(ingest_forced(faulty).await.is_err(), "{what}");
            ingest_changed(healthy)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_silver_is_what_the_manifests_say(&lake, &what);
            crate::support::assert_key_lists_match_the_files(&lake, &what);
        }
    }
}

/// No pending record is left, every file a manifest names exists, silver holds exactly the rows
/// the manifests say (no file outside them) and nothing temporary is left.
fn assert_silver_is_what_the_manifests_say(lake: &Path, what: &str) {
    for manifest in files(&lake.join("manifests")) {
        assert!(
            !manifest.to_string_lossy().contains("_pending"),
            "{what}: {manifest:?}"
        );
        let m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        let mut rows = 0;
        for f in m["files"].as_array().unwrap() {
            let path = lake.join(f["key"].as_str().unwrap());
            assert!(
                path.exists(),
                "{what}: the manifest names a missing {path:?}"
            );
            rows += f["rows"].as_u64().unwrap();
        }
        let dataset = m["dataset"].as_str().unwrap();
        let in_silver: usize = files(&lake.join("processed").join(dataset))
            .iter()
            .map(|p| {
                ParquetReader::new(std::fs::File::open(p).unwrap())
                    .finish()
                    .unwrap()
                    .height()
            })
            .sum();
        assert_eq!(in_silver as u64, rows, "{what}: {dataset}");
        assert_eq!(m["rows_written"].as_u64(), Some(rows), "{what}");
    }
    assert_clean(lake, what);
}

/// Two forced rewrites of orders after two contract changes, the first killed at a write, the
/// second killed at any write, then an ordinary delivery: the first attempt's files, which
/// neither the manifest nor the second attempt names, are still cleaned up (no orphan read as
/// silver).
#[tokio::test]
async fn two_forced_rewrites_killed_in_a_row_then_delivered_again_leave_no_orphan() {
    let root = tempfile::tempdir().unwrap();
    // Ingested where every attempt runs (a source's path names its batch), then kept aside.
    let (base, lake) = (root.path().join("base"), root.path().join("lake"));
    fresh_lake(&lake);
    ingest_all(Arc::new(LocalStore::new(&lake).unwrap()))
        .await
        .unwrap();
    copy_dir(&lake, &base);
    let forced_orders =
        |store, registry| async move { ingest_these(store, true, registry, &["orders"]).await };
    let store = Arc::new(FaultyStore::counting(Arc::new(
        LocalStore::new(&lake).unwrap(),
    )));
    forced_orders(store.clone(), repartitioned()).await.unwrap();
    let writes = store.writes();
    // Where the first rewrite dies: at its first delete of an old file (every new file and
    // list written, nothing deleted), and at its manifest (every old file deleted). The
    // deletes and the manifest follow the uploads, so their numbers do not vary.
    let at: [fn(&str) -> bool; 2] = [
        |k| k.starts_with("processed/orders/") && k.contains("customer_region="),
        |k| k.starts_with("manifests/orders/") && !k.contains("_pending"),
    ];
    let points = at.map(|m| store.first_write(m).expect("written"));
    for first in points {
        let mut second = 1;
        loop {
            let what = format!(
                "first rewrite killed at write {first} of {writes}, the second at write {second}"
            );
            copy_dir(&base, &lake);
            let healthy: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&lake).unwrap());
            let faulty = Arc::new(FaultyStore::failing(healthy.clone(), first, Fault::Fail));
            assert!(
                forced_orders(faulty, repartitioned()).await.is_err(),
                "{what}"
            );
            // Back to the first contracts, forced again (new names once more), killed.
            let faulty = Arc::new(FaultyStore::failing(healthy.clone(), second, Fault::Fail));
            let finished = forced_orders(faulty, registry()).await.is_ok();
            ingest_all(healthy)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_silver_is_what_the_manifests_say(&lake, &what);
            crate::support::assert_key_lists_match_the_files(&lake, &what);
            if finished {
                break;
            }
            second += 1;
        }
    }
}

/// `to` made a copy of `from` (removed first), modification times kept: a raw file's names
/// its batch.
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    for file in files(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
        let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&target)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
}

#[tokio::test]
async fn quality_and_alerts_crashed_at_any_write_lose_no_verdict_and_no_page() {
    crash_at_every_write("quality", &[stage!(ingest_all)], stage!(check_and_alert)).await;
}

#[tokio::test]
async fn aggregate_crashed_at_any_write_then_retried_equals_an_uninterrupted_run() {
    crash_at_every_write(
        "aggregate",
        &[stage!(ingest_all), stage!(check_and_alert)],
        stage!(aggregate),
    )
    .await;
}

/// The nightly path: a state from the night before, then a night that rewrites its first-order
/// buckets (written one by one during the run, before gold and the pointer).
#[tokio::test]
async fn nightly_aggregate_crashed_at_any_write_then_retried_equals_an_uninterrupted_run() {
    crash_at_every_write(
        "nightly aggregate",
        &[
            stage!(ingest_all),
            stage!(aggregate),
            stage!(ingest_next_night),
        ],
        stage!(aggregate),
    )
    .await;
}

/// The nightly path with the first-order buckets' changes written as deltas.
#[tokio::test]
async fn nightly_aggregate_writing_deltas_crashed_at_any_write_then_retried_equals_an_uninterrupted_run()
 {
    crash_at_every_write(
        "nightly aggregate (deltas)",
        &[
            stage!(ingest_all),
            stage!(aggregate),
            stage!(ingest_next_night),
        ],
        stage!(aggregate_with_deltas),
    )
    .await;
}

#[tokio::test]
async fn load_crashed_at_any_write_then_retried_equals_an_uninterrupted_run() {
    crash_at_every_write(
        "load",
        &[
            stage!(ingest_all),
            stage!(check_and_alert),
            stage!(aggregate),
        ],
        stage!(load),
    )
    .await;
}
