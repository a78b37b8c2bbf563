//! The referential check's cost does not grow with history: the same payments batch, checked
//! against 8 and against 80 days of orders (and payments), downloads the same bytes within a
//! fixed margin, and still finds its orphan.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{NaiveDate, TimeZone, Utc};
use shoplake::contract::Registry;
use shoplake::ingest::{IngestSettings, Ingestor};
use shoplake::quality::QualityGate;
use shoplake::storage::{LocalStore, ObjectStore};

use crate::support::faulty::FaultyStore;

const WINDOW_DAYS: u32 = 2;

/// The header of a payments export.
const PAYMENTS_HEADER: &str =
    "payment_id,order_id,payment_ts,method,status,amount,currency,updated_at\n";

/// The built-in contracts, payments referencing orders at most `window` days older.
fn registry(dir: &std::path::Path, window: u32) -> Arc<Registry> {
    let registry = crate::support::edited_contracts(dir, |_, text| {
        text.replace("window_days = 90", &format!("window_days = {window}"))
    });
    assert_eq!(
        registry.get("payments").unwrap().quality.references[0].window_days,
        Some(window),
        "the test contract declares the window"
    );
    Arc::new(registry)
}

/// A local lake for these tests: its directory, store and ingestor under `registry`.
struct Lake {
    dir: tempfile::TempDir,
    local: Arc<LocalStore>,
    store: Arc<dyn ObjectStore>,
    ingestor: Ingestor,
}

impl Lake {
    fn new(registry: Arc<Registry>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let local = Arc::new(LocalStore::new(dir.path()).unwrap());
        let store: Arc<dyn ObjectStore> = local.clone();
        let ingestor = Ingestor::new(store.clone(), registry, IngestSettings::default());
        Lake {
            dir,
            local,
            store,
            ingestor,
        }
    }

    /// Ingests `body` as the export `key`, written `n` days in; its manifest.
    async fn ingest(&self, key: &str, body: String, n: i64) -> shoplake::manifest::Manifest {
        put_raw(self.dir.path(), &self.local, key, body, n).await;
        self.ingestor.ingest(key).await.unwrap().manifest
    }
}

fn day(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Duration::days(n)
}

/// Writes a raw export whose modification time (so batch id) is `n` days in.
async fn put_raw(root: &std::path::Path, store: &LocalStore, key: &str, body: String, n: i64) {
    store.put(key, Bytes::from(body)).await.unwrap();
    let at = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            Utc.from_utc_datetime(&day(n).and_hms_opt(23, 0, 0).unwrap())
                .timestamp() as u64,
        );
    std::fs::File::options()
        .write(true)
        .open(root.join(key))
        .unwrap()
        .set_modified(at)
        .unwrap();
}

fn orders_csv(n: i64) -> String {
    let mut s = String::from(
        "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
    );
    for i in 0..40 {
        s += &format!(
            "O{n}-{i},C{i},{d}T09:00:00Z,paid,EU,EUR,10.00,1,{d}T09:00:00Z\n",
            d = day(n)
        );
    }
    s
}

/// Payments of day `n` for that day's orders; the last batch adds one orphan and one payment
/// too old to verify.
fn payments_csv(n: i64, last: bool) -> String {
    payments_with(n, last)
}

/// Payments of day `n` for that day's orders, with (`defects`) one orphan and one payment too
/// old to verify.
fn payments_with(n: i64, defects: bool) -> String {
    let mut s = String::from(PAYMENTS_HEADER);
    for i in 0..40 {
        // Paid the day after the order, within the window.
        s += &format!(
            "P{n}-{i},O{}-{i},{d}T10:00:00Z,card,succeeded,10.00,EUR,{d}T10:00:00Z\n",
            n - 1,
            d = day(n)
        );
    }
    if defects {
        s += &format!(
            "PGHOST,GHOST,{d}T10:00:00Z,card,succeeded,10.00,EUR,{d}T10:00:00Z\n",
            d = day(n)
        );
        // Dated before the retained history: its order may have expired.
        s += &format!(
            "POLD,O0-1,{d}T10:00:00Z,card,refunded,10.00,EUR,{e}T10:00:00Z\n",
            d = day(n - 400),
            e = day(n)
        );
    }
    s
}

/// Builds `history` days of orders and payments, then checks one more payments batch; returns
/// the bytes that check downloaded and its referential facts.
async fn check_after(history: i64) -> (u64, f64, usize, String) {
    let (bytes, rate, keys, message, _) = check_with(history, WINDOW_DAYS, true).await;
    (bytes, rate, keys, message)
}

/// `check_after` with the contract's window `window` and a last batch with or without defects;
/// also how many silver files the check listed.
async fn check_with(history: i64, window: u32, defects: bool) -> (u64, f64, usize, String, usize) {
    let (lake, registry) = lake_with(history, window).await;
    let last = history + 1;
    let key = format!("raw/payments/{}.csv", day(last));
    let batch = lake
        .ingest(&key, payments_with(last, defects), last)
        .await
        .batch_id;
    let counting = Arc::new(FaultyStore::counting(lake.store.clone()));
    let (rate, keys, message) = referential(counting.clone(), registry, &batch, last)
        .await
        .unwrap();
    (
        counting.bytes_read(),
        rate,
        keys,
        message,
        counting.processed_listed(),
    )
}

/// A lake of `history` days of orders (and payments from the second day), payments
/// referencing orders at most `window` days older.
async fn lake_with(history: i64, window: u32) -> (Lake, Arc<Registry>) {
    let contracts = tempfile::tempdir().unwrap();
    let registry = registry(contracts.path(), window);
    let lake = Lake::new(registry.clone());
    for n in 1..=history {
        let key = format!("raw/orders/{}.csv", day(n));
        lake.ingest(&key, orders_csv(n), n).await;
        if n > 1 {
            let key = format!("raw/payments/{}.csv", day(n));
            lake.ingest(&key, payments_csv(n, false), n).await;
        }
    }
    (lake, registry)
}

/// The referential check of the payments batch `batch`, evaluated at the end of day `last`
/// through `store`: its observed rate, offending keys and message.
async fn referential(
    store: Arc<dyn ObjectStore>,
    registry: Arc<Registry>,
    batch: &str,
    last: i64,
) -> Result<(f64, usize, String), shoplake::quality::QualityError> {
    let gate = QualityGate::new(store, registry);
    let now = Utc.from_utc_datetime(&day(last).and_hms_opt(23, 30, 0).unwrap());
    let report = gate.evaluate("payments", batch, now).await?;
    let check = report
        .checks
        .iter()
        .find(|c| c.check == "referential_integrity")
        .unwrap()
        .clone();
    Ok((
        check.observed.unwrap(),
        check.offending_keys.len(),
        check.message,
    ))
}

/// A windowed check searches the order files' key lists, not the files: with every orders file
/// overwritten by as many zero bytes, the check finds the same. A list of another size than
/// its file's is not its file's (a file rewritten since): the file is read then, here garbage,
/// so the check fails rather than trust the list.
#[tokio::test]
async fn a_windowed_check_searches_the_order_files_key_lists_not_the_files() {
    let (lake, registry) = lake_with(10, WINDOW_DAYS).await;
    let last = 11;
    let key = format!("raw/payments/{}.csv", day(last));
    let batch = lake
        .ingest(&key, payments_with(last, true), last)
        .await
        .batch_id;
    let root = lake.dir.path();
    let orders = crate::support::files(&root.join("processed/orders"));
    let lists = crate::support::files(&root.join("keys/orders"));
    assert_eq!(
        lists.len(),
        orders.len(),
        "ingest wrote a key list per orders file"
    );
    assert!(
        crate::support::files(&root.join("keys")).len() == lists.len(),
        "only orders, the parent of a windowed rule, keeps key lists"
    );

    let expected = referential(lake.store.clone(), registry.clone(), &batch, last)
        .await
        .unwrap();
    // 42 rows: 40 found in the window, one orphan, one unverifiable.
    assert_eq!((expected.1, expected.0), (1, 1.0 / 42.0), "{}", expected.2);
    // Lists deleted between the listing and their fetch (an ingest retry clears a name's
    // lists before writing it again): the files are read instead.
    let gone: Arc<dyn ObjectStore> = Arc::new(
        crate::support::faulty::FaultyStore::gone_when_fetched(lake.store.clone(), "keys/"),
    );
    let without = referential(gone, registry.clone(), &batch, last)
        .await
        .unwrap();
    assert_eq!(
        without, expected,
        "lists gone when fetched: the files give the same facts"
    );
    for path in &orders {
        let size = std::fs::metadata(path).unwrap().len() as usize;
        std::fs::write(path, vec![0u8; size]).unwrap();
    }
    let from_lists = referential(lake.store.clone(), registry.clone(), &batch, last)
        .await
        .unwrap();
    assert_eq!(from_lists, expected, "the lists alone give the same facts");

    for list in &lists {
        let name = list.to_string_lossy().into_owned();
        let (stem, size) = name.trim_end_matches(".keys").rsplit_once('-').unwrap();
        let other: u64 = size.parse::<u64>().unwrap() + 1;
        std::fs::rename(list, format!("{stem}-{other}.keys")).unwrap();
    }
    let err = referential(lake.store.clone(), registry, &batch, last)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("processed/orders/"),
        "the files themselves were read: {err}"
    );
}

/// A day searched at two steps of one check, for its own rows and then for the next day's
/// (paid the day after their orders), has its order files' key lists fetched once.
#[tokio::test]
async fn a_day_searched_again_for_the_next_day_s_rows_is_fetched_once() {
    let (lake, registry) = lake_with(10, WINDOW_DAYS).await;
    let last = 11;
    let mut body = String::from(PAYMENTS_HEADER);
    for (n, prefix) in [(last, "PX"), (last - 1, "PY")] {
        for i in 0..5 {
            body += &format!(
                "{prefix}{i},O{}-{i},{d}T10:00:00Z,card,succeeded,10.00,EUR,{e}T10:00:00Z\n",
                n - 1,
                d = day(n),
                e = day(last)
            );
        }
    }
    let key = format!("raw/payments/{}.csv", day(last));
    let batch = lake.ingest(&key, body, last).await.batch_id;
    let counting = Arc::new(FaultyStore::counting(lake.store.clone()));
    let (rate, _, message) = referential(counting.clone(), registry, &batch, last)
        .await
        .unwrap();
    assert_eq!(rate, 0.0, "{message}");
    let root = lake.dir.path();
    let twice_searched = root.join(format!("keys/orders/order_date={}", day(last - 1)));
    let lists = crate::support::files(&twice_searched);
    assert!(!lists.is_empty());
    for list in lists {
        let key = list
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(counting.gets_of(&key), 1, "{key} fetched once");
    }
}

/// Each row's reference is looked for in its own window: a payment whose order is dated after
/// it is an orphan, even when another row's search reads the order's day.
#[tokio::test]
async fn a_reference_is_found_only_within_its_own_row_s_window() {
    let (lake, registry) = lake_with(10, WINDOW_DAYS).await;
    let last = 11;
    let mut body = String::from(PAYMENTS_HEADER);
    // Paid today for yesterday's order: the search reads yesterday's orders.
    body += &format!(
        "PA,O{}-0,{d}T10:00:00Z,card,succeeded,10.00,EUR,{d}T10:00:00Z\n",
        last - 1,
        d = day(last)
    );
    // Dated five days ago, naming an order of yesterday: outside its window [-7, -5].
    body += &format!(
        "PB,O{}-1,{d}T10:00:00Z,card,succeeded,10.00,EUR,{e}T10:00:00Z\n",
        last - 1,
        d = day(last - 5),
        e = day(last)
    );
    let key = format!("raw/payments/{}.csv", day(last));
    let batch = lake.ingest(&key, body, last).await.batch_id;
    let (rate, keys, message) = referential(lake.store.clone(), registry, &batch, last)
        .await
        .unwrap();
    assert_eq!((rate, keys), (0.5, 1), "{message}");
    assert!(message.contains("1 of 2 rows"), "{message}");
}

#[tokio::test]
async fn a_referential_check_reads_the_same_bytes_against_ten_times_the_history() {
    let (small, rate_small, keys_small, msg_small) = check_after(8).await;
    let (large, rate_large, keys_large, msg_large) = check_after(80).await;
    // The batch's own files, the window's order partitions and at most `volume.history`
    // manifests: the same at both histories, give or take the sizes of the records read.
    let margin = small / 10;
    assert!(
        large <= small + margin,
        "bytes read grew with history: {small} at 8 days, {large} at 80"
    );
    assert!(small > 0);
    for (rate, keys, msg) in [
        (rate_small, keys_small, &msg_small),
        (rate_large, keys_large, &msg_large),
    ] {
        // 42 rows: 40 found in the window, one orphan, one unverifiable.
        assert_eq!((keys, rate), (1, 1.0 / 42.0), "{msg}");
        assert!(msg.contains("1 of 42 rows"), "{msg}");
        assert!(msg.contains("1 row(s) unverifiable"), "{msg}");
    }
}

/// The window is searched nearest days first: a batch whose orders are all a day before its
/// payments reads those days, whether the contract allows 2 days or 90 (before, the check read
/// the whole window's partitions: 45 times the bytes at 90 days). An orphan still makes it read
/// its row's window, and is still found.
#[tokio::test]
async fn a_referential_check_reads_the_days_its_parents_are_on_not_the_whole_window() {
    let (narrow, rate_narrow, _, msg_narrow, _) = check_with(80, 2, false).await;
    let (wide, rate_wide, _, msg_wide, wide_files) = check_with(80, 90, false).await;
    assert_eq!(
        (rate_narrow, rate_wide),
        (0.0, 0.0),
        "{msg_narrow} / {msg_wide}"
    );
    assert!(
        wide <= narrow + narrow / 10,
        "a 90-day window read {wide} bytes, a 2-day one {narrow}: the search did not stop"
    );
    let (with_orphan, rate, keys, msg, orphan_files) = check_with(80, 90, true).await;
    assert_eq!((keys, rate), (1, 1.0 / 42.0), "{msg}");
    // Counted in order files listed: each is searched in its key list, a few hundred bytes.
    assert!(
        orphan_files > 5 * wide_files && with_orphan > wide,
        "the orphan's row is looked for in its whole window ({orphan_files} vs {wide_files} \
         order files listed, {with_orphan} vs {wide} bytes)"
    );
}

fn customers_csv(n: i64) -> String {
    let mut s = String::from(
        "customer_id,email,first_name,last_name,customer_region,country,signup_date,updated_at\n",
    );
    // The same customers every day, a newer version of each: history grows, keys do not.
    for i in 0..40 {
        s += &format!(
            "C{i},c{i}@example.com,A,B,EU,DE,2025-12-01,{d}T0{h}:00:00Z\n",
            d = day(n),
            h = i % 10
        );
    }
    s
}

/// Orders of day `n` naming customers C0..C39, and in the last batch one customer that was
/// never exported.
fn orders_for_customers_csv(n: i64, last: bool) -> String {
    let mut s = String::from(
        "order_id,customer_id,order_ts,status,customer_region,currency,total_amount,item_count,updated_at\n",
    );
    for i in 0..40 {
        s += &format!(
            "O{n}-{i},C{i},{d}T09:00:00Z,paid,EU,EUR,10.00,1,{d}T09:00:00Z\n",
            d = day(n)
        );
    }
    if last {
        s += &format!(
            "OGHOST,CGHOST,{d}T09:00:00Z,paid,EU,EUR,10.00,1,{d}T09:00:00Z\n",
            d = day(n)
        );
    }
    s
}

/// `history` days of customers, then an orders batch checked once (building the customers' key
/// index from silver, once per lake), then the measured check of the next orders batch.
async fn orders_check_after(history: i64) -> (u64, f64, Vec<String>, String) {
    let registry = Arc::new(Registry::builtin());
    let lake = Lake::new(registry.clone());
    let store = lake.store.clone();
    for n in 1..=history {
        let key = format!("raw/customers/{}.csv", day(n));
        lake.ingest(&key, customers_csv(n), n).await;
    }
    let gate = QualityGate::new(store.clone(), registry.clone());
    let mut batches = vec![];
    for (n, last) in [(history + 1, false), (history + 2, true)] {
        let key = format!("raw/orders/{}.csv", day(n));
        let manifest = lake
            .ingest(&key, orders_for_customers_csv(n, last), n)
            .await;
        batches.push(manifest.batch_id);
    }
    let now = Utc.from_utc_datetime(&day(history + 2).and_hms_opt(23, 30, 0).unwrap());
    gate.evaluate("orders", &batches[0], now).await.unwrap();

    let counting = Arc::new(FaultyStore::counting(store.clone()));
    let gate = QualityGate::new(counting.clone(), registry);
    let report = gate.evaluate("orders", &batches[1], now).await.unwrap();
    let check = report
        .checks
        .iter()
        .find(|c| c.check == "referential_integrity")
        .unwrap()
        .clone();
    (
        counting.bytes_read(),
        check.observed.unwrap(),
        check.breakdown.iter().map(|t| t.what.clone()).collect(),
        check.message,
    )
}

#[tokio::test]
async fn a_check_against_a_dimension_reads_its_key_index_not_its_history() {
    let (small, rate_small, missing_small, msg_small) = orders_check_after(8).await;
    let (large, rate_large, missing_large, msg_large) = orders_check_after(80).await;
    let margin = small / 10;
    assert!(
        large <= small + margin,
        "bytes read grew with the customers' history: {small} at 8 days, {large} at 80"
    );
    for (rate, missing, msg) in [
        (rate_small, &missing_small, &msg_small),
        (rate_large, &missing_large, &msg_large),
    ] {
        assert_eq!(rate, 1.0 / 41.0, "{msg}");
        assert_eq!(missing, &["CGHOST"], "the missing customer, named: {msg}");
    }
}

/// The gate fetches a batch's files once for all its checks (key uniqueness, every reference):
/// each check fetching them again had cost the H=365 night 160 files per check.
#[tokio::test]
async fn a_batch_s_files_are_fetched_once_for_every_check() {
    let contracts = tempfile::tempdir().unwrap();
    let registry = registry(contracts.path(), WINDOW_DAYS);
    let lake = Lake::new(registry.clone());
    for n in 1..=3 {
        let key = format!("raw/orders/{}.csv", day(n));
        lake.ingest(&key, orders_csv(n), n).await;
    }
    let key = format!("raw/payments/{}.csv", day(4));
    let manifest = lake.ingest(&key, payments_with(4, true), 4).await;
    assert!(!manifest.files.is_empty());

    let counting = Arc::new(FaultyStore::counting(lake.store.clone()));
    let gate = QualityGate::new(counting.clone(), registry);
    let now = Utc.from_utc_datetime(&day(4).and_hms_opt(23, 30, 0).unwrap());
    let report = gate
        .evaluate("payments", &manifest.batch_id, now)
        .await
        .unwrap();
    for check in ["key_uniqueness", "referential_integrity"] {
        assert!(
            report.checks.iter().any(|c| c.check == check),
            "{check} ran: {:?}",
            report.checks.iter().map(|c| &c.check).collect::<Vec<_>>()
        );
    }
    for file in &manifest.files {
        assert_eq!(counting.gets_of(&file.key), 1, "{} fetched once", file.key);
    }
}
