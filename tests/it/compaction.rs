//! Compaction: a partition of many recent small files becomes one latest-wins file (older files
//! keep their own expiry); readers see every
//! row exactly once whether a compaction finished, was killed at any write, or was re-run; a
//! batch the load stage has not loaded keeps its own file and still loads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{NaiveDate, TimeZone, Utc};
use polars::prelude::*;
use shoplake::compact::{Compactor, REFRESH_AGE, SETTLED_FOR};
use shoplake::contract::Registry;
use shoplake::ingest::{IngestSettings, Ingestor};
use shoplake::quality::QualityGate;
use shoplake::stages::load::{BatchLoad, Loader};
use shoplake::storage::{LocalStore, ObjectStore};
use shoplake::warehouse::{RecordingExecutor, Warehouse};

use crate::support::faulty::{Fault, FaultyStore};

const BATCHES: i64 = 10;

fn day(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 1).unwrap() + chrono::Duration::days(n)
}

struct Lake {
    dir: tempfile::TempDir,
    local: Arc<LocalStore>,
    registry: Arc<Registry>,
}

fn loader(store: Arc<dyn ObjectStore>, registry: Arc<Registry>) -> Loader {
    Loader::new(
        store,
        Arc::new(RecordingExecutor::new()),
        Warehouse {
            schema: "shoplake".into(),
            copy_role_arn: "arn:aws:iam::1:role/copy".into(),
        },
        registry,
    )
}

impl Lake {
    fn empty() -> Lake {
        let dir = tempfile::tempdir().unwrap();
        Lake {
            local: Arc::new(LocalStore::new(dir.path()).unwrap()),
            dir,
            registry: Arc::new(Registry::builtin()),
        }
    }

    /// Ingests the raw file at `key` (`force`: again, as `lake ingest --force`); its batch id.
    async fn ingest_file(&self, key: &str, force: bool) -> String {
        let settings = IngestSettings {
            force,
            ..IngestSettings::default()
        };
        Ingestor::new(self.local.clone(), self.registry.clone(), settings)
            .ingest(key)
            .await
            .unwrap()
            .manifest
            .batch_id
    }

    /// `BATCHES` daily orders exports, all in one partition (orders of 1 March, EU), each
    /// updating earlier orders and adding new ones; all gated and loaded. Then one more batch,
    /// ingested but not gated (so not loaded). Returns the lake and that batch's id.
    async fn build() -> (Lake, String) {
        Lake::build_in(&["EU"]).await
    }

    /// As [`Lake::build`], the orders spread over `regions` (order `i` in region `i` modulo
    /// their number): a partition per region, every batch writing to each.
    async fn build_in(regions: &[&str]) -> (Lake, String) {
        let lake = Lake::empty();
        for n in 1..=BATCHES {
            let batch = lake.ingest_in(n, regions).await;
            let now = Utc.from_utc_datetime(&day(n).and_hms_opt(2, 0, 0).unwrap());
            QualityGate::new(lake.local.clone(), lake.registry.clone())
                .evaluate("orders", &batch, now)
                .await
                .unwrap();
        }
        let report = loader(lake.local.clone(), lake.registry.clone())
            .load_pending(Utc::now())
            .await
            .unwrap();
        assert_eq!(
            report
                .batches
                .iter()
                .filter(|b| matches!(b, BatchLoad::Loaded { .. }))
                .count(),
            BATCHES as usize
        );
        let late = lake.ingest_in(BATCHES + 1, regions).await;
        (lake, late)
    }

    async fn ingest_in(&self, n: i64, regions: &[&str]) -> String {
        let mut body = String::from(
            "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
        );
        // Orders 0..5n exist by batch n; batch n adds five and rewrites some even ones (odd
        // ones keep their first version: losing any file's rows shows in the view).
        for i in 0..5 * n {
            if i >= 5 * (n - 1) || (i % 3 == (n % 3) && i % 2 == 0) {
                let status =
                    ["placed", "paid", "shipped", "delivered"][(n as usize + i as usize) % 4];
                let region = regions[i as usize % regions.len()];
                body += &format!(
                    "O{i},C{i},2026-03-01T09:00:00Z,{status},{region},EUR,{i}.50,1,{}T0{}:00:00Z\n",
                    day(n),
                    i % 10
                );
            }
        }
        self.ingest_csv(n, body).await
    }

    /// Ingests `body` as the orders export of day `n` (arrived at 01:00 that day).
    async fn ingest_csv(&self, n: i64, body: String) -> String {
        let key = self.put_export(n, body).await;
        self.ingest_file(&key, false).await
    }

    /// Puts `body` as the orders export of day `n`, arrived at 01:00 that day; its key.
    async fn put_export(&self, n: i64, body: String) -> String {
        let key = format!("raw/orders/{}.csv", day(n));
        self.local.put(&key, Bytes::from(body)).await.unwrap();
        let at = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                Utc.from_utc_datetime(&day(n).and_hms_opt(1, 0, 0).unwrap())
                    .timestamp() as u64,
            );
        std::fs::File::options()
            .write(true)
            .open(self.dir.path().join(&key))
            .unwrap()
            .set_modified(at)
            .unwrap();
        key
    }

    /// Every silver row as a reader scans it: (order_id, status, updated_at, _ingested_at,
    /// _batch_id), from all files.
    fn rows(&self) -> Vec<(String, String, i64, i64, String)> {
        let contract = self.registry.get("orders").unwrap();
        let df = shoplake::silver::read::scan_dataset(self.dir.path(), contract)
            .unwrap()
            .collect()
            .unwrap();
        let s = |c: &str| -> Vec<String> {
            let col = df.column(c).unwrap().cast(&DataType::String).unwrap();
            let ca = col.str().unwrap();
            (0..ca.len())
                .map(|i| ca.get(i).unwrap().to_owned())
                .collect()
        };
        let i = |c: &str| -> Vec<i64> {
            let col = df.column(c).unwrap().cast(&DataType::Int64).unwrap();
            let ca = col.i64().unwrap();
            (0..ca.len()).map(|i| ca.get(i).unwrap()).collect()
        };
        let (k, st, up, ing, b) = (
            s("order_id"),
            s("status"),
            i("updated_at"),
            i("_ingested_at"),
            s("_batch_id"),
        );
        (0..k.len())
            .map(|n| (k[n].clone(), st[n].clone(), up[n], ing[n], b[n].clone()))
            .collect()
    }

    /// What every reader (gold, the warehouse MERGE) makes of the rows: per key, the greatest
    /// (updated_at, _ingested_at, _batch_id), and how many identical copies of that row the
    /// files hold (more than one only while a killed compaction awaits its re-run).
    fn view(&self) -> BTreeMap<String, (String, i64, String)> {
        let mut out: BTreeMap<String, (i64, i64, String, String)> = BTreeMap::new();
        for (k, status, up, ing, batch) in self.rows() {
            let e = out
                .entry(k)
                .or_insert((i64::MIN, i64::MIN, String::new(), String::new()));
            if (up, ing, batch.clone()) > (e.0, e.1, e.2.clone()) {
                *e = (up, ing, batch, status);
            }
        }
        out.into_iter()
            .map(|(k, (up, _, batch, status))| (k, (status, up, batch)))
            .collect()
    }

    /// Sets when the silver files named in `names` were written.
    fn written_at(&self, names: &[String], at: chrono::DateTime<Utc>) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(at.timestamp() as u64);
        for path in crate::support::files(&self.dir.path().join("processed/orders")) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if names.contains(&name) {
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_modified(at)
                    .unwrap();
            }
        }
    }

    /// Asserts that every orders silver file has its key list, holding exactly its keys, and
    /// that no list outlives its file (`silver::file_keys`).
    async fn assert_key_lists_match_the_files(&self, context: &str) {
        crate::support::assert_key_lists_match_the_files(self.dir.path(), context);
    }

    fn files(&self) -> Vec<String> {
        crate::support::files(&self.dir.path().join("processed/orders"))
            .into_iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_of_many_files_becomes_one_latest_wins_file_and_the_late_batch_keeps_its_own() {
    let (lake, late) = Lake::build().await;
    let before = lake.view();
    assert_eq!(lake.files().len(), BATCHES as usize + 1);
    let report = Compactor::new(lake.local.clone(), lake.registry.clone())
        .compact("orders", Utc::now())
        .await
        .unwrap();
    assert_eq!((report.partitions, report.files_in), (1, BATCHES as usize));
    assert!(report.rows_out < report.rows_in, "{report:?}");
    assert_eq!(lake.view(), before, "readers see the same latest rows");
    lake.assert_key_lists_match_the_files("after compaction")
        .await;
    let mut files = lake.files();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.contains(&format!("part-{late}.parquet")), "{files:?}");
    // Each key exactly once among the compacted rows, lineage kept.
    let compacted: Vec<_> = lake.rows().into_iter().filter(|r| r.4 != late).collect();
    assert_eq!(compacted.len() as u64, report.rows_out);
    let keys: std::collections::BTreeSet<&String> = compacted.iter().map(|r| &r.0).collect();
    assert_eq!(keys.len(), compacted.len());
    assert!(
        compacted.iter().any(|r| r.4 != compacted[0].4),
        "batch ids kept"
    );

    // Idempotent: nothing left to do.
    let again = Compactor::new(lake.local.clone(), lake.registry.clone())
        .compact("orders", Utc::now())
        .await
        .unwrap();
    assert_eq!(again.partitions, 0);

    // The late batch still gates and loads from its own file.
    let now = Utc.from_utc_datetime(&day(BATCHES + 1).and_hms_opt(2, 0, 0).unwrap());
    QualityGate::new(lake.local.clone(), lake.registry.clone())
        .evaluate("orders", &late, now)
        .await
        .unwrap();
    let report = loader(lake.local.clone(), lake.registry.clone())
        .load_pending(Utc::now())
        .await
        .unwrap();
    assert!(
        matches!(&report.batches[..], [BatchLoad::Loaded { batch_id, .. }] if *batch_id == late),
        "{:?}",
        report.batches
    );
}

/// A day's export of 20000 orders in one partition (larger than the small files together,
/// whose Parquet footers make most of their bytes), then eight nights each paying a few of
/// them and adding one: nine files, all gated and loaded. Returns the lake and the name of the
/// export's file.
async fn a_large_file_and_eight_small_ones() -> (Lake, String) {
    let lake = Lake::empty();
    let header = "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n";
    let row = |i: usize, n: i64, status: &str| {
        format!(
            "O{i},C{i},2026-03-01T09:00:00Z,{status},EU,EUR,{i}.50,1,{}T05:00:00Z\n",
            day(n)
        )
    };
    let mut body = String::from(header);
    for i in 0..20_000 {
        body += &row(i, 1, "placed");
    }
    let mut batches = vec![lake.ingest_csv(1, body).await];
    for n in 2..=9 {
        let mut body = String::from(header);
        for i in (0..20_000).skip(n as usize).step_by(3000) {
            body += &row(i, n, "paid");
        }
        body += &row(20_000 + n as usize, n, "placed");
        batches.push(lake.ingest_csv(n, body).await);
    }
    for (n, batch) in (1..).zip(&batches) {
        let now = Utc.from_utc_datetime(&day(n).and_hms_opt(2, 0, 0).unwrap());
        QualityGate::new(lake.local.clone(), lake.registry.clone())
            .evaluate("orders", batch, now)
            .await
            .unwrap();
    }
    loader(lake.local.clone(), lake.registry.clone())
        .load_pending(Utc::now())
        .await
        .unwrap();
    let large = format!("part-{}.parquet", batches[0]);
    (lake, large)
}

fn bytes_of(lake: &Lake, name: &str) -> Vec<u8> {
    let path = crate::support::files(&lake.dir.path().join("processed/orders"))
        .into_iter()
        .find(|p| p.ends_with(name))
        .unwrap_or_else(|| panic!("{name} is gone"));
    std::fs::read(path).unwrap()
}

/// The first compaction of [`a_large_file_and_eight_small_ones`], still updated (its files are
/// fresh): the eight small files become one, the day's export stays as it was. Its report.
async fn merge_the_small_ones(lake: &Lake, large: &str, now: chrono::DateTime<Utc>) -> u64 {
    let before = lake.view();
    let large_bytes = bytes_of(lake, large);
    let report = Compactor::new(lake.local.clone(), lake.registry.clone())
        .compact("orders", now)
        .await
        .unwrap();
    assert_eq!((report.partitions, report.files_in), (1, 8), "{report:?}");
    assert_eq!(
        report.rows_in, report.rows_out,
        "each small file has its own orders"
    );
    let files = lake.files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        bytes_of(lake, large),
        large_bytes,
        "the large file is not rewritten"
    );
    assert_eq!(lake.view(), before, "readers see the same latest rows");
    report.rows_out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_still_updated_has_its_small_files_merged_and_is_rewritten_whole_once_settled()
{
    let (lake, large) = a_large_file_and_eight_small_ones().await;
    let before = lake.view();
    let written = Utc::now();
    let merged = merge_the_small_ones(&lake, &large, written).await;
    let compactor = || Compactor::new(lake.local.clone(), lake.registry.clone());
    // Nothing more while it is still updated: two files are not `min_files`.
    let again = compactor().compact("orders", written).await.unwrap();
    assert_eq!(again.partitions, 0, "{again:?}");
    // Settled: the whole partition once, each order's latest version only.
    let settled = compactor()
        .compact("orders", written + chrono::TimeDelta::hours(49))
        .await
        .unwrap();
    assert_eq!(
        (settled.partitions, settled.files_in),
        (1, 2),
        "{settled:?}"
    );
    assert_eq!(settled.rows_in, 20_000 + merged, "{settled:?}");
    assert_eq!(settled.rows_out, 20_008, "{settled:?}");
    assert_eq!(lake.files().len(), 1);
    assert_eq!(lake.view(), before, "readers see the same latest rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_half_as_old_as_a_rewrite_may_take_is_rewritten_with_the_small_ones() {
    let (lake, large) = a_large_file_and_eight_small_ones().await;
    let before = lake.view();
    let now = Utc::now();
    merge_the_small_ones(&lake, &large, now).await;
    // Two files each time a compaction looks, still updated.
    let compactor = Compactor::new(lake.local.clone(), lake.registry.clone()).with_min_files(2);
    let compactor = || compactor.compact("orders", now);
    let young = compactor().await.unwrap();
    assert_eq!(
        young.partitions, 0,
        "one small file has nothing to merge with: {young:?}"
    );
    lake.written_at(
        std::slice::from_ref(&large),
        now - REFRESH_AGE + chrono::TimeDelta::hours(1),
    );
    let not_yet = compactor().await.unwrap();
    assert_eq!(not_yet.partitions, 0, "{not_yet:?}");
    lake.written_at(
        std::slice::from_ref(&large),
        now - REFRESH_AGE - chrono::TimeDelta::hours(1),
    );
    let aged = compactor().await.unwrap();
    assert_eq!((aged.partitions, aged.files_in), (1, 2), "{aged:?}");
    assert_eq!(aged.rows_out, 20_008, "{aged:?}");
    let files = lake.files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(lake.view(), before, "readers see the same latest rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_of_fewer_files_than_min_files_is_compacted_once_settled() {
    let (lake, late) = Lake::build().await;
    let before = lake.view();
    // More than the partition's files: only the settle rule can compact it.
    let compactor = |hours| {
        Compactor::new(lake.local.clone(), lake.registry.clone())
            .with_min_files(BATCHES as usize + 5)
            .with_settle_hours(hours)
    };
    let written = Utc::now();
    let still_updated = compactor(48).compact("orders", written).await.unwrap();
    assert_eq!(still_updated.partitions, 0, "its files are fresh");
    let later = written + chrono::TimeDelta::hours(49);
    let not_yet = compactor(72).compact("orders", later).await.unwrap();
    assert_eq!(not_yet.partitions, 0, "49 hours is not 72");
    // Long quiet: left to expire as it is (a rewrite would give its rows another year).
    let long_after =
        written + chrono::TimeDelta::hours(48) + SETTLED_FOR + chrono::TimeDelta::hours(1);
    let long_quiet = compactor(48).compact("orders", long_after).await.unwrap();
    assert_eq!(long_quiet.partitions, 0, "settled over a week ago");
    let settled = compactor(48).compact("orders", later).await.unwrap();
    assert_eq!(
        (settled.partitions, settled.files_in),
        (1, BATCHES as usize),
        "the loaded files are compacted, the late batch's is not: {settled:?}"
    );
    assert_eq!(lake.view(), before, "readers see the same latest rows");
    let files = lake.files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.contains(&format!("part-{late}.parquet")), "{files:?}");
    // The compacted file and the late batch's are two files, but the late one is not
    // eligible: a settled partition of one eligible file is left as it is.
    let again = compactor(48)
        .compact("orders", later + chrono::TimeDelta::hours(49))
        .await
        .unwrap();
    assert_eq!(again.partitions, 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_takes_only_young_files_so_old_rows_keep_their_own_expiry() {
    let (lake, late) = Lake::build().await;
    let before = lake.view();
    // Whole seconds, as the file times set below: the bound itself is tested exactly.
    let now = Utc.timestamp_opt(Utc::now().timestamp(), 0).unwrap();
    let loaded: Vec<String> = lake
        .files()
        .into_iter()
        .filter(|f| *f != format!("part-{late}.parquet"))
        .collect();
    let compactor = || Compactor::new(lake.local.clone(), lake.registry.clone()).with_min_files(4);
    // A quiet partition written over a year ago: enough files, but a rewrite would give its
    // rows a second year (the lifecycle rule counts from when a file was written).
    let long_ago = now - chrono::TimeDelta::days(400);
    lake.written_at(&loaded, long_ago);
    let quiet = compactor().compact("orders", now).await.unwrap();
    assert_eq!(quiet.partitions, 0, "{quiet:?}");
    // Then it gains late files: only those are compacted, among themselves.
    let (old, young) = loaded.split_at(4);
    lake.written_at(young, now - chrono::TimeDelta::days(2));
    let report = compactor().compact("orders", now).await.unwrap();
    assert_eq!(
        (report.partitions, report.files_in),
        (1, young.len()),
        "{report:?}"
    );
    let files = lake.files();
    for name in old {
        assert!(files.contains(name), "{name} was rewritten: {files:?}");
    }
    assert!(young.iter().all(|name| !files.contains(name)), "{files:?}");
    assert_eq!(
        files.len(),
        old.len() + 2,
        "old files, the output, the late batch's"
    );
    assert_eq!(lake.view(), before, "readers see the same latest rows");
    // A file written exactly at the bound is still taken, one a second older is not.
    let just_past = now - shoplake::compact::MAX_INPUT_AGE - chrono::TimeDelta::seconds(1);
    lake.written_at(old, just_past);
    let again = compactor().compact("orders", now).await.unwrap();
    assert_eq!(again.partitions, 0, "{again:?}");
    lake.written_at(old, now - shoplake::compact::MAX_INPUT_AGE);
    let at_bound = compactor().compact("orders", now).await.unwrap();
    assert_eq!(
        (at_bound.partitions, at_bound.files_in),
        (1, old.len() + 1),
        "{at_bound:?}"
    );
    assert_eq!(lake.view(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_period_longer_than_the_input_age_looks_back_as_far_for_its_inputs() {
    let (lake, _late) = Lake::build().await;
    let before = lake.view();
    let now = Utc::now();
    // Every file, the late batch's too, written 45 days ago: settled under a 40-day period.
    lake.written_at(&lake.files(), now - chrono::TimeDelta::days(45));
    let settled = Compactor::new(lake.local.clone(), lake.registry.clone())
        .with_min_files(BATCHES as usize + 5)
        .with_settle_hours(40 * 24)
        .compact("orders", now)
        .await
        .unwrap();
    assert_eq!(
        (settled.partitions, settled.files_in),
        (1, BATCHES as usize),
        "files older than MAX_INPUT_AGE but within the settle look-back are taken: {settled:?}"
    );
    assert_eq!(lake.view(), before);
}

/// Kills a compaction of [`Lake::build_in`]`(regions)` at each of `writes` (refused, then
/// aborted), then re-runs it: readers see every row once throughout, and the re-run leaves one
/// compacted file per region beside the late batch's, each row once, no record.
async fn killed_at_each_write_and_rerun(regions: &[&str], writes: &[usize]) {
    for &nth in writes {
        for fault in [Fault::Fail, Fault::Abort] {
            let (lake, late) = Lake::build_in(regions).await;
            let before = lake.view();
            let faulty = Arc::new(FaultyStore::failing(lake.local.clone(), nth, fault));
            let killed = Compactor::new(faulty.clone(), lake.registry.clone())
                .compact("orders", Utc::now())
                .await;
            assert!(killed.is_err(), "write {nth} ({fault:?}) ends the run");
            assert_eq!(
                lake.view(),
                before,
                "after a kill at write {nth} ({fault:?}, {:?})",
                faulty.faulted()
            );
            // The re-run (its claim taken over: the killed run's owner is gone) finishes it.
            tokio::time::sleep(Duration::from_millis(10)).await;
            let rerun = Compactor::new(lake.local.clone(), lake.registry.clone());
            let report = match rerun.compact("orders", Utc::now()).await {
                Ok(r) => r,
                Err(e) => panic!("re-run after write {nth} ({fault:?}): {e}"),
            };
            assert_eq!(lake.view(), before, "after the re-run ({nth}, {fault:?})");
            let files = lake.files();
            assert_eq!(
                files.len(),
                2 * regions.len(),
                "per region one compacted file and the late batch's: {files:?} {report:?}"
            );
            let rows = lake.rows();
            let compacted: Vec<_> = rows.iter().filter(|r| r.4 != late).collect();
            let keys: std::collections::BTreeSet<&String> =
                compacted.iter().map(|r| &r.0).collect();
            assert_eq!(keys.len(), compacted.len(), "every row exactly once");
            assert!(
                crate::support::files(&lake.dir.path().join("runs/compact")).is_empty(),
                "no compaction record left"
            );
            lake.assert_key_lists_match_the_files(&format!("re-run after write {nth} ({fault:?})"))
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_killed_at_any_write_leaves_every_row_once_and_a_rerun_finishes_it() {
    // Writes of a run: claim, record, the output's key list, output, BATCHES deletes, their
    // BATCHES key lists' deletes, record delete, claim release.
    let b = BATCHES as usize;
    killed_at_each_write_and_rerun(&["EU"], &[2, 3, 4, 8, b + 4, b + 10, 2 * b + 5]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_written_before_it_named_the_key_lists_still_has_them_deleted() {
    // Killed at the first of the inputs' deletes (writes: claim, record, the output's list,
    // the output, then the deletes): the record names the inputs' lists, all still there.
    // Rewritten as a release before `input_lists` wrote it, the re-run must find them by
    // listing the partition.
    let b = BATCHES as usize;
    let (lake, _) = Lake::build_in(&["EU"]).await;
    let before = lake.view();
    let faulty = Arc::new(FaultyStore::failing(lake.local.clone(), 5, Fault::Fail));
    let killed = Compactor::new(faulty.clone(), lake.registry.clone())
        .compact("orders", Utc::now())
        .await;
    assert!(killed.is_err(), "the kill ends the run");
    let root = lake.dir.path();
    let records = crate::support::files(&root.join("runs/compact"));
    let [record] = records.as_slice() else {
        panic!("one compaction record is left: {records:?}");
    };
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    let named = json
        .as_object_mut()
        .unwrap()
        .remove("input_lists")
        .expect("the record names its inputs' key lists");
    let named = named.as_array().unwrap();
    assert_eq!(named.len(), b, "one list per input");
    for list in named {
        let list = list.as_str().unwrap();
        assert!(root.join(list).is_file(), "{list} is still there");
    }
    std::fs::write(record, serde_json::to_vec(&json).unwrap()).unwrap();

    tokio::time::sleep(Duration::from_millis(10)).await;
    Compactor::new(lake.local.clone(), lake.registry.clone())
        .compact("orders", Utc::now())
        .await
        .unwrap();
    assert_eq!(lake.view(), before);
    lake.assert_key_lists_match_the_files("re-run of a record without input_lists")
        .await;
}

/// A forced re-ingest after a contract change writes its batch's names again: one with other
/// keys, and one partition's file dropped. Each file keeps a list made from it and none
/// outlives a dropped file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_re_ingest_leaves_each_file_its_own_key_list_and_none_of_a_dropped_one() {
    let lake = forced_re_ingest_after_a_contract_change(true).await;
    lake.assert_key_lists_match_the_files("forced re-ingest")
        .await;
}

/// The same, under a contract that no longer keeps key lists for orders (no reference window
/// names them): the earlier attempt's lists go too, so none is left to be read as the list of
/// a rewritten file should the window come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_re_ingest_that_keeps_no_key_lists_leaves_none_of_the_earlier_attempt() {
    let lake = forced_re_ingest_after_a_contract_change(false).await;
    let left = crate::support::files(&lake.dir.path().join("keys/orders"));
    assert!(
        left.is_empty(),
        "no key list outlives the re-ingest: {left:?}"
    );
}

/// A lake with one orders export (three orders, EU and NA) ingested, then forced again under a
/// contract that stops accepting `placed` (so O1 alone is left, in EU's file, and NA's file is
/// dropped), keeping key lists or not (`keeps_lists`: the payments → orders reference window).
async fn forced_re_ingest_after_a_contract_change(keeps_lists: bool) -> Lake {
    let lake = Lake::empty();
    let mut body = String::from(
        "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
    );
    for (id, status, region) in [
        ("O1", "paid", "EU"),
        ("O2", "placed", "EU"),
        ("O3", "placed", "NA"),
    ] {
        body += &format!(
            "{id},C1,2026-03-01T09:00:00Z,{status},{region},EUR,1.50,1,2026-03-01T10:00:00Z\n"
        );
    }
    let key = lake.put_export(1, body).await;
    let first = lake.ingest_file(&key, false).await;
    assert_eq!(lake.files().len(), 2);
    lake.assert_key_lists_match_the_files("first ingest").await;

    // The same export (so the same batch id and file names) forced again.
    let contracts = tempfile::tempdir().unwrap();
    let edited = crate::support::edited_contracts(contracts.path(), |name, mut text| {
        if name == "orders" {
            text = text.replace("values = [\"placed\", ", "values = [");
        }
        if name == "payments" && !keeps_lists {
            let window = ", window_days = 90 }";
            assert!(
                text.contains(window),
                "payments reference orders within a window"
            );
            text = text.replace(window, " }");
        }
        text
    });
    let changed = Arc::new(edited);
    assert_eq!(
        shoplake::silver::file_keys::is_kept(&changed, "orders"),
        keeps_lists
    );
    let settings = IngestSettings {
        force: true,
        ..IngestSettings::default()
    };
    let forced = Ingestor::new(lake.local.clone(), changed, settings)
        .ingest(&key)
        .await
        .unwrap()
        .manifest;
    assert_eq!(
        forced.batch_id, first,
        "a forced re-ingest keeps its batch id"
    );
    assert_eq!(forced.rows_written, 1, "{forced:?}");
    assert_eq!(
        lake.files().len(),
        1,
        "NA's file dropped: {:?}",
        lake.files()
    );
    lake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_rewritten_together_and_killed_at_any_write_leave_every_row_once() {
    // Three partitions rewritten at once: a kill stops the others where they are.
    killed_at_each_write_and_rerun(
        &["EU", "NA", "APAC"],
        &[2, 3, 4, 6, 9, 14, 22, 30, 38, 50, 66],
    )
    .await;
}

/// The gold KPIs of March as a backfill computes them from the lake now.
async fn gold_of_march(lake: &Lake) -> DataFrame {
    use shoplake::stages::aggregate::{AggregateRequest, Aggregator};
    let work = tempfile::tempdir().unwrap();
    Aggregator::new(lake.local.clone(), lake.registry.clone(), work.path())
        .aggregate(AggregateRequest::Range {
            from: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
        })
        .await
        .unwrap();
    let key = shoplake::layout::gold_month_key(shoplake::layout::DAILY_KPIS, "2026-03");
    crate::support::read_parquet(&lake.dir.path().join(key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kpis_are_the_same_before_after_and_in_the_middle_of_a_compaction() {
    let (lake, _late) = Lake::build().await;
    let before = gold_of_march(&lake).await;
    let placed = before
        .column("orders_placed")
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap();
    assert_eq!(
        placed.i64().unwrap().get(0),
        Some(5 * (BATCHES + 1)),
        "every order of 1 March once, the late batch's too: {before}"
    );
    let faulty = Arc::new(FaultyStore::failing(lake.local.clone(), 5, Fault::Abort));
    assert!(
        Compactor::new(faulty, lake.registry.clone())
            .compact("orders", Utc::now())
            .await
            .is_err()
    );
    assert!(
        gold_of_march(&lake).await.equals_missing(&before),
        "killed midway"
    );
    Compactor::new(lake.local.clone(), lake.registry.clone())
        .compact("orders", Utc::now())
        .await
        .unwrap();
    assert!(
        gold_of_march(&lake).await.equals_missing(&before),
        "compacted"
    );
}

/// A lake whose clock the test keeps: every file is dated when the night wrote it.
struct Night {
    lake: Lake,
    /// Batches to mark loaded on a later night: (night, batch).
    late: std::sync::Mutex<Vec<(usize, String)>>,
}

impl Night {
    fn new() -> Self {
        Night {
            lake: Lake::empty(),
            late: Default::default(),
        }
    }

    /// Ingests an export of orders on `dates` (two regions a date), uploaded at `at`; its
    /// silver files are dated `at`. Returns its batch id.
    async fn ingest(&self, n: usize, dates: &[NaiveDate], at: chrono::DateTime<Utc>) -> String {
        self.ingest_with(n, dates, at, at, false).await
    }

    /// [`Self::ingest`], its raw file uploaded at `uploaded` (its batch id's time) and its silver
    /// files written at `written`; `force` ingests the same raw object again (same batch id, a
    /// rewritten manifest).
    async fn ingest_with(
        &self,
        n: usize,
        dates: &[NaiveDate],
        uploaded: chrono::DateTime<Utc>,
        written: chrono::DateTime<Utc>,
        force: bool,
    ) -> String {
        let at = uploaded;
        let key = format!("raw/orders/night-{n:03}.csv");
        let mut body = String::from(
            "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
        );
        for (i, date) in dates.iter().enumerate() {
            for (r, region) in ["EU", "NA"].iter().enumerate() {
                // Orders O<date>-<r> again and again: each night a newer version.
                body += &format!(
                    "O{date}-{r},C{i},{date}T09:00:00Z,paid,{region},EUR,1{n}.00,1,{}\n",
                    at.format("%Y-%m-%dT%H:%M:%SZ")
                );
            }
        }
        self.lake.local.put(&key, Bytes::from(body)).await.unwrap();
        self.date(&self.lake.dir.path().join(&key), at);
        let batch = self.lake.ingest_file(&key, force).await;
        self.date_new_files(written);
        batch
    }

    /// Marks a batch loaded: the compaction takes only loaded batches' files (the load itself
    /// is tested above).
    async fn loaded(&self, batch: &str) {
        self.lake
            .local
            .put(
                &shoplake::layout::loaded_marker_key("orders", batch),
                Bytes::new(),
            )
            .await
            .unwrap();
    }

    fn date(&self, path: &std::path::Path, at: chrono::DateTime<Utc>) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(at.timestamp() as u64))
            .unwrap();
    }

    /// Files written just now (the wall clock is later than the test's) are dated `at`.
    fn date_new_files(&self, at: chrono::DateTime<Utc>) {
        let cut = SystemTime::UNIX_EPOCH + Duration::from_secs(at.timestamp() as u64);
        for path in crate::support::files(&self.lake.dir.path().join("processed")) {
            if std::fs::metadata(&path).unwrap().modified().unwrap() > cut {
                self.date(&path, at);
            }
        }
    }

    async fn compact(&self, now: chrono::DateTime<Utc>, full: bool) -> (CompactSummary, usize) {
        if full {
            self.lake
                .local
                .delete(&shoplake::layout::compact_cursor_key("orders"))
                .await
                .unwrap();
        }
        let counting = Arc::new(FaultyStore::counting(self.lake.local.clone()));
        let report = Compactor::new(counting.clone(), self.lake.registry.clone())
            .with_min_files(3)
            .compact("orders", now)
            .await
            .unwrap();
        self.date_new_files(now);
        let summary = CompactSummary {
            partitions: report.partitions,
            files_in: report.files_in,
            rows_in: report.rows_in,
            rows_out: report.rows_out,
            files: self.files_per_partition(),
        };
        (summary, counting.processed_listed())
    }

    /// Per partition directory, its number of files.
    fn files_per_partition(&self) -> BTreeMap<String, usize> {
        let root = self.lake.dir.path().join("processed/orders");
        let mut out = BTreeMap::new();
        for path in crate::support::files(&root) {
            let dir = path.parent().unwrap().strip_prefix(&root).unwrap();
            *out.entry(dir.display().to_string()).or_default() += 1;
        }
        out
    }
}

#[derive(Debug, PartialEq, Eq)]
struct CompactSummary {
    partitions: usize,
    files_in: usize,
    rows_in: u64,
    rows_out: u64,
    files: BTreeMap<String, usize>,
}

/// The nightly compaction lists the directories that may hold a file it can take (those its
/// cursor kept, and those the night's batches wrote to), not all of silver, and compacts exactly
/// what a listing of everything would: 45 nights three days apart, each writing today's orders
/// and updates of 2 and 5 days back, some nights one of 60 days back (an old directory the
/// cursor had dropped comes back through the night's manifest), some batches loaded only 2
/// nights later (their directories wait in the cursor with no new manifest), on two lakes
/// alike, one with its cursor and one listing everything every night.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_night_lists_only_the_partitions_recent_batches_wrote_to_and_compacts_the_same() {
    let (cursor, full) = (Night::new(), Night::new());
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    // Silver files listed per night, with the cursor and in full.
    let mut listed: Vec<(usize, usize)> = Vec::new();
    for n in 0..45 {
        let today = start + chrono::TimeDelta::days(3 * n as i64);
        let date = |back: i64| (today - chrono::TimeDelta::days(back)).date_naive();
        let mut dates = vec![date(0), date(2), date(5)];
        if n % 7 == 6 {
            dates.push(date(60));
        }
        let upload = today + chrono::TimeDelta::hours(1);
        for lake in [&cursor, &full] {
            let batch = lake.ingest(n, &dates, upload).await;
            lake.late
                .lock()
                .unwrap()
                .push((n + if n % 5 == 2 { 2 } else { 0 }, batch));
            let due: Vec<String> = {
                let mut late = lake.late.lock().unwrap();
                let (due, wait) = late.drain(..).partition(|(at, _)| *at <= n);
                *late = wait;
                due.into_iter().map(|(_, b)| b).collect()
            };
            for batch in due {
                lake.loaded(&batch).await;
            }
        }
        let now = today + chrono::TimeDelta::hours(3);
        let (a, listed_a) = cursor.compact(now, false).await;
        let (b, listed_b) = full.compact(now, true).await;
        assert_eq!(
            a, b,
            "night {n}: the cursor's compaction differs from a full listing's"
        );
        listed.push((listed_a, listed_b));
    }
    let compacted: usize = cursor
        .files_per_partition()
        .values()
        .filter(|f| **f == 1)
        .count();
    assert!(
        compacted > 10,
        "the nights compacted partitions: {compacted}"
    );
    // Nights 15-29 against 30-44: the cursor's listing stays as it was (the look-back, 31
    // days, spans about 11 nights), a full listing grows with the history.
    let sum = |nights: std::ops::Range<usize>, pick: fn(&(usize, usize)) -> usize| -> usize {
        listed[nights].iter().map(pick).sum()
    };
    let (cursor_before, cursor_after) = (sum(15..30, |l| l.0), sum(30..45, |l| l.0));
    let (full_before, full_after) = (sum(15..30, |l| l.1), sum(30..45, |l| l.1));
    assert!(
        cursor_after * 10 <= cursor_before * 11 && full_after * 10 >= full_before * 14,
        "silver files listed, nights 15-29 then 30-44: {cursor_before} then {cursor_after} with the cursor, {full_before} then {full_after} in full"
    );
}

/// A run whose clock was 40 days ahead drops a directory as too old; once the clock is right
/// again, the next run lists everything rather than trust that, and compacts the directory as a
/// full listing does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_set_back_makes_the_cursor_list_everything_again() {
    let (cursor, full) = (Night::new(), Night::new());
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    for lake in [&cursor, &full] {
        for n in 0..2 {
            let at = t0 + chrono::TimeDelta::hours(n as i64 + 1);
            let batch = lake.ingest(n, &[t0.date_naive()], at).await;
            lake.loaded(&batch).await;
        }
    }
    for now in [
        t0 + chrono::TimeDelta::days(40),
        t0 + chrono::TimeDelta::days(3),
    ] {
        let (a, _) = cursor.compact(now, false).await;
        let (b, _) = full.compact(now, true).await;
        assert_eq!(a, b, "at {now}");
    }
    assert!(
        cursor.files_per_partition().values().all(|f| *f == 1),
        "{:?}",
        cursor.files_per_partition()
    );
}

/// A forced re-ingest keeps its batch id and rewrites its manifest, here with rows of a date
/// 60 days back: the cursor reads the rewritten manifest again (its ETag changed) and lists
/// the directory, as a full listing would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_rewritten_by_a_forced_re_ingest_is_read_again() {
    let (cursor, full) = (Night::new(), Night::new());
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let old = (t0 - chrono::TimeDelta::days(60)).date_naive();
    let mut first = Vec::new();
    for lake in [&cursor, &full] {
        for n in 0..2 {
            let at = t0 + chrono::TimeDelta::hours(n as i64 + 1);
            let batch = lake.ingest(n, &[t0.date_naive()], at).await;
            lake.loaded(&batch).await;
            first.push(batch);
        }
    }
    let (a, _) = cursor
        .compact(t0 + chrono::TimeDelta::hours(3), false)
        .await;
    let (b, _) = full.compact(t0 + chrono::TimeDelta::hours(3), true).await;
    assert_eq!(a, b);
    for lake in [&cursor, &full] {
        for n in 0..2 {
            let at = t0 + chrono::TimeDelta::hours(n as i64 + 1);
            let again = t0 + chrono::TimeDelta::days(1);
            let batch = lake.ingest_with(n, &[old], at, again, true).await;
            assert!(first.contains(&batch), "the same batch id");
        }
    }
    let (a, _) = cursor.compact(t0 + chrono::TimeDelta::days(4), false).await;
    let (b, _) = full.compact(t0 + chrono::TimeDelta::days(4), true).await;
    assert!(b.partitions > 0, "{b:?}");
    assert_eq!(a, b);
}
